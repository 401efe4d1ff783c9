"""Compatibility run: experimaestro 2.7.0's own user-facing tests, unmodified, against xpmfs.

What it does (everything it writes lives under the git-ignored ``.bench/compat/``):

1. downloads experimaestro 2.7.0's wheel (``pip download --no-deps``) and extracts it: the wheel
   ships ``experimaestro/tests``;
2. builds a throw-away package named ``experimaestro`` whose modules only *map names* to xpmfs
   (``experimaestro.core.objects.Config`` is ``xpmfs.Config``...). The shim implements nothing:
   a name xpmfs lacks is an ``ImportError``, except the out-of-scope names listed in
   ``OUT_OF_SCOPE`` (so that a test file that merely mentions one still imports; using one fails);
3. copies the chosen test files next to it, with our own minimal ``conftest.py`` (experimaestro's
   resets its scheduler singletons, which xpmfs does not have);
4. runs them with xpmfs's virtual environment and prints pass/fail counts per file.

``--reference`` runs the same files against the real experimaestro in the side venv
(``.bench/venv-experimaestro``), to tell a failure of ours from a test that fails anyway here.
``-v`` prints one line per failing test (its first error line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / ".bench" / "compat"
VERSION = "2.7.0"
WHEEL = BENCH / f"experimaestro-{VERSION}-py3-none-any.whl"
SIDE_VENV = ROOT / ".bench" / "venv-experimaestro"
REFERENCE_COUNTS = BENCH / "reference-counts.json"

# The user-facing tests of the configuration layer.
FILES = [
    "test_identifier.py",
    "test_identifier_stability.py",
    "test_tags.py",
    "test_checkers.py",
    "test_generators.py",
    "test_instance.py",
    "test_xpmconfig.py",
    "test_forward.py",
    "test_outputs.py",
    "test_param.py",
    "test_objects.py",
    "test_partial.py",
    "test_partial_paths.py",
    "test_serializers.py",
    "test_deprecated.py",
    "test_dependencies.py",
    "core/test_generics.py",
    "core/test_types.py",
    "core/test_validation.py",
    "core/test_provenance.py",
]
# Support files the chosen tests import (copied unmodified).
SUPPORT = ["__init__.py", "utils.py", "definitions_types.py", "core/__init__.py", "tasks", "identifier_stability.json"]
# Run by test_partial_concurrent_processes (in subprocesses); it still fails: the script polls
# experimaestro's scheduler internal `task.job.scheduler_state`, which xpmfs has no use for.
SUPPORT += ["partial_reschedule.py", "task_partial.py"]

EXCLUDED = [
    (
        "test_configs_serialization, test_relative_paths",
        "experiment runs' objects.jsonl and params.json path encodings (the experiment layer)",
    ),
    ("test_tokens, test_multitoken, test_token_locking, test_dynamic_locking", "tokens (out of scope)"),
    ("test_actions", "experimaestro Actions (not wanted)"),
    ("test_carbon", "carbon tracking (not wanted)"),
    ("test_mypy", "experimaestro's mypy plugin (its internals)"),
    (
        "test_tasks, test_progress, test_resumable_task, test_transient, test_experiment",
        "scheduler runs (the experiment layer, not the configuration layer)",
    ),
    ("test_grid*, test_mockmodule, test_pre_experiment", "run-experiment CLI (out of scope)"),
    (
        "test_events, test_filewatcher, test_polling, test_*state*, test_remote_state, test_tui_*, "
        "test_webui_*, test_log_viewer",
        "scheduler/server/UI internals",
    ),
    (
        "test_findlauncher, test_*launcher*, test_slurm_generate, test_direct_generate, test_ssh, test_psutils",
        "launcher/connector internals",
    ),
    (
        "test_cleanup, test_folders, test_stray_jobs, test_copy_experiment, test_migrate_v1_to_v2, "
        "test_workspace_triggers",
        "experimaestro's workspace internals",
    ),
    (
        "test_cli_services, test_subservices, test_environment, test_rank_awareness, test_prepare, "
        "test_snippets, test_flaky, test_change_sources, test_async_events, test_tailed_file_pool, "
        "test_warning_system",
        "services, CLI and helpers outside the configuration layer",
    ),
]

# Third-party modules the test files themselves import (not xpmfs dependencies): borrowed from the
# side venv through symlinks placed after the shim on PYTHONPATH.
TEST_ONLY_MODULES = ["pydantic_core", "typing_extensions.py", "typing_inspection"]

# experimaestro module -> xpmfs modules searched, in order, for each name.
MAPPING: dict[str, list[str]] = {
    "experimaestro": ["xpmfs", "xpmfs.partial", "xpmfs.definition"],
    "experimaestro.core": ["xpmfs"],
    "experimaestro.core.objects": ["xpmfs", "xpmfs.config"],
    "experimaestro.core.objects.config": ["xpmfs", "xpmfs.config"],
    "experimaestro.core.objects.config_walk": ["xpmfs.config"],
    "experimaestro.core.partial": ["xpmfs.partial"],
    "experimaestro.core.arguments": ["xpmfs", "xpmfs._classinfo"],
    "experimaestro.core.types": ["xpmfs.types"],
    "experimaestro.core.identifier": ["xpmfs.identifier"],
    "experimaestro.core.context": ["xpmfs.definition"],
    "experimaestro.core.serialization": ["xpmfs.definition", "xpmfs.results"],
    "experimaestro.core.serializers": ["xpmfs.definition"],
    "experimaestro.generators": ["xpmfs.generators", "xpmfs"],
    "experimaestro.checkers": ["xpmfs.checkers"],
    "experimaestro.xpmutils": ["xpmfs", "xpmfs.generators"],
    "experimaestro.click": ["xpmfs"],
    "experimaestro.taskglobals": ["xpmfs.taskglobals", "xpmfs"],
    "experimaestro.settings": ["xpmfs.settings"],
    "experimaestro.scheduler": ["xpmfs", "xpmfs.status", "xpmfs.runmode"],
    "experimaestro.scheduler.workspace": ["xpmfs", "xpmfs.runmode", "xpmfs.settings"],
    "experimaestro.scheduler.jobs": ["xpmfs", "xpmfs.status", "xpmfs.experiment"],
    "experimaestro.tools": ["xpmfs"],
    "experimaestro.tools.jobs": ["xpmfs", "xpmfs.deprecated"],
}

# experimaestro's spelling -> xpmfs's, for the same thing under another name (still only names).
ALIASES = {
    "ConfigInformation": "ConfigInfo",  # cfg.__xpm__
    "Argument": "Field",  # a declared field
    "JobState": "State",  # a job's state (xpmfs.status), with experimaestro's finished()...
    "Workspace": "ExperimentWorkspace",  # Workspace(settings, workspace_settings, run_mode=...)
}

# Names of later issues or not wanted: they resolve to a placeholder that fails when used, so a
# test file that only mentions one (e.g. a default argument ``run_mode=RunMode.NORMAL``) imports.
OUT_OF_SCOPE = {
    "load_xp_info",
    "JobContext",
    # experimaestro internals a few tests import; xpmfs has no such objects, so tests that use them
    # fail, and the others in their file still run.
    "ConfigWalk",
    "Job",
    "JobStateError",
    "Launcher",
}

SHIM_MODULE = '''\
"""Compatibility shim (generated by tools/compat/compat.py): names only, mapped to xpmfs."""
import importlib as _importlib

_SOURCES = {sources!r}
_OUT_OF_SCOPE = {out_of_scope!r}
_ALIASES = {aliases!r}


class _OutOfScope:
    """A name of a later issue: it may be mentioned, but any use fails."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _OutOfScope(self._name + "." + attr)

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(f"compat shim: {{self._name}} is out of scope for xpmfs here")

    def __repr__(self):
        return f"<out of scope: {{self._name}}>"


def __getattr__(name):
    for source in _SOURCES:
        module = _importlib.import_module(source)
        for spelling in (name, _ALIASES.get(name)):
            if spelling is not None and hasattr(module, spelling):
                return getattr(module, spelling)
    if name in _OUT_OF_SCOPE:
        return _OutOfScope(name)
    raise AttributeError(f"compat shim: xpmfs has no {{name}} (for {{__name__}})")
'''

CONFTEST = '''\
"""Minimal harness (the original resets experimaestro's scheduler singletons)."""
import os
import pytest


@pytest.fixture(scope="session")
def xpmdirectory(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workdir")
    os.environ["XPM_WORKDIR"] = str(workdir)
    return workdir
'''

_MARKERS = "anyio tasks config tokens identifier types state launchers connectors workspace serialization"
_MARKERS += " transient slow resumable dynamic deprecation dependencies dependency carbon"
PYTEST_INI = "[pytest]\ntimeout = 60\naddopts = -p no:cacheprovider\njunit_family = xunit1\nmarkers =\n"
PYTEST_INI += "".join(f"    {marker}\n" for marker in _MARKERS.split())


def ensure_wheel() -> Path:
    extracted = BENCH / "wheel"
    if (extracted / "experimaestro" / "tests").is_dir():
        return extracted
    BENCH.mkdir(parents=True, exist_ok=True)
    if not WHEEL.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", f"experimaestro=={VERSION}", "-d", str(BENCH)],
            check=True,
        )
    with zipfile.ZipFile(WHEEL) as wheel:
        wheel.extractall(extracted)
    return extracted


def build_shim(wheel: Path) -> Path:
    shim = BENCH / "shim"
    if shim.exists():
        shutil.rmtree(shim)
    for module, sources in MAPPING.items():
        folder = shim.joinpath(*module.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        text = SHIM_MODULE.format(sources=sources, out_of_scope=sorted(OUT_OF_SCOPE), aliases=ALIASES)
        (folder / "__init__.py").write_text(text)
    copy_tests(wheel / "experimaestro" / "tests", shim / "experimaestro" / "tests")
    (shim / "pytest.ini").write_text(PYTEST_INI)
    extra = BENCH / "test-only"
    extra.mkdir(exist_ok=True)
    site = next((SIDE_VENV / "lib").glob("python3*/site-packages"), None)
    for name in TEST_ONLY_MODULES:
        if site is not None and (site / name).exists() and not (extra / name).exists():
            (extra / name).symlink_to(site / name)
    return shim


def copy_tests(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in [*FILES, *SUPPORT]:
        src = source / name
        dst = target / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    (target / "conftest.py").write_text(CONFTEST)


def build_reference() -> tuple[Path, Path]:
    """Where to run the same files against the real experimaestro: its installed tests."""
    ref = BENCH / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    (ref / "pytest.ini").write_text(PYTEST_INI)
    found = subprocess.run(
        [str(SIDE_VENV / "bin" / "python"), "-c", "import experimaestro; print(experimaestro.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return ref, Path(found.stdout.strip()).parent / "tests"


def run(root: Path, python: Path, selected: list[str], env: dict[str, str], tests_dir: Path) -> Path:
    report = BENCH / ("report-reference.xml" if "reference" in str(root) else "report.xml")
    paths = [str(tests_dir / f) for f in selected]
    command = [str(python), "-m", "pytest", "-q", "-rN", "--continue-on-collection-errors", f"--junitxml={report}"]
    command += ["-c", str(root / "pytest.ini"), "--rootdir", str(root), *paths]
    command += ["-p", "no:xdist"]  # one process: the machine is shared
    subprocess.run(command, check=False, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return report


def outcomes(report: Path) -> tuple[dict[str, Counter[str]], list[str]]:
    """Per test file (relative to ``tests/``): passed/failed/skipped; and one line per failure."""
    per_file: dict[str, Counter[str]] = {}
    failures: list[str] = []
    for case in ET.parse(report).iter("testcase"):
        file = case.get("file") or ""
        key = file.split("tests/", 1)[-1] if file else "(collection)"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                first = (child.get("message") or "").strip().splitlines()
                if first == ["collection failure"]:  # the cause is the last "E" line of the text
                    first = [line[1:].strip() for line in (child.text or "").splitlines() if line.startswith("E ")][-1:]
                failures.append(f"{key}::{case.get('name')}: {first[0][:200] if first else child.tag}")
            elif child.tag == "skipped":
                outcome = "skipped"
        per_file.setdefault(key, Counter())[outcome] += 1
    return per_file, failures


def summarize(per_file: dict[str, Counter[str]], expected: dict[str, int], failures: list[str], verbose: bool) -> None:
    """Print the table; a test that did not run (its file failed to import) counts as failed."""
    total: Counter[str] = Counter()
    print(f"{'file':32} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for key in sorted(expected):
        counts = per_file.get(key, Counter())
        failed = expected[key] - counts["passed"] - counts["skipped"]
        row = Counter(passed=counts["passed"], failed=failed, skipped=counts["skipped"])
        total.update(row)
        print(f"{key:32} {row['passed']:7} {row['failed']:7} {row['skipped']:8}")
    ran = total["passed"] + total["failed"]
    rate = 100 * total["passed"] / ran if ran else 0.0
    print(f"{'TOTAL':32} {total['passed']:7} {total['failed']:7} {total['skipped']:8}   ({rate:.1f}% pass)")
    if verbose:
        print("\nfailures:")
        for line in failures:
            print("  " + line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="test files (relative to experimaestro/tests); default: all chosen")
    parser.add_argument("--reference", action="store_true", help="run against the real experimaestro instead")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each failure")
    parser.add_argument("--excluded", action="store_true", help="say which test files are left out, and why")
    args = parser.parse_args()
    if args.excluded:
        for files, why in EXCLUDED:
            print(textwrap.fill(f"{files}: {why}", subsequent_indent="    "))
        return 0
    selected = args.files or FILES
    wheel = ensure_wheel()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["XPM_TEST_TIMEOUT_MULTIPLIER"] = "3"
    if args.reference:
        made = subprocess.run([str(ROOT / "tools" / "side-venv")], capture_output=True, text=True, check=True)
        python = Path(made.stdout.strip())
        root, tests_dir = build_reference()
        per_file, failures = outcomes(run(root, python, selected, env, tests_dir))
        counts = json.loads(REFERENCE_COUNTS.read_text()) if REFERENCE_COUNTS.exists() else {}
        # Merged: a run of some files keeps the counts of the others.
        counts.update({key: sum(c.values()) for key, c in per_file.items()})
        REFERENCE_COUNTS.write_text(json.dumps(counts, indent=1, sort_keys=True))
    else:
        if not REFERENCE_COUNTS.exists():
            sys.exit("run tools/compat/run --reference once first: it counts the tests of each file")
        counts = json.loads(REFERENCE_COUNTS.read_text())
        root = build_shim(wheel)
        env["PYTHONPATH"] = f"{root}{os.pathsep}{BENCH / 'test-only'}"
        report = run(root, ROOT / ".venv" / "bin" / "python", selected, env, root / "experimaestro" / "tests")
        per_file, failures = outcomes(report)
    summarize(per_file, {f: counts.get(f, 0) for f in selected}, failures, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
