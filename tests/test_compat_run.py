"""experimaestro 2.7.0's own configuration tests keep passing against xpmfs (tools/compat).

The product goal is that an experimaestro user changes the import and nothing else; issue 19
judges it with the compatibility run: experimaestro's tests, unmodified, behind a mapping of names
only. This test runs it (about 30 s) and fails on any test that stops passing, so the figure in
the README cannot quietly go back. The tests known to fail need experimaestro internals that xpmfs
does not offer; one that starts passing must be taken off the list.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT

#: The failing tests, each with why (the first words of its error are checked too).
KNOWN_FAILURES = {
    # experimaestro's scheduler Job / JobContext (the experiment layer's internals)
    "core/test_validation.py::test_validation_path_generator": "NotImplementedError: compat shim: Job",
    "core/test_validation.py::test_validation_constant": "NotImplementedError: compat shim: Job",
    # expects pydantic_core.ValidationError; xpmfs's ConfigError gives the location in `where`
    "core/test_validation.py::test_nested_generic_error_reports_location_path": "",
    # experimaestro's ConfigWalk visitor class
    "test_serializers.py::test_taskstub_config_walk": "",
    # polls experimaestro's task.job.scheduler_state
    "test_partial_paths.py::test_partial_concurrent_processes": "",
}
#: Tests that pass today (tools/compat/run: 298 of 303).
PASSING = 298


def _compat(work: Path) -> ModuleType:
    """tools/compat/compat.py as a module, writing under ``work`` instead of ``.bench/compat``."""
    spec = importlib.util.spec_from_file_location("xpmfs_compat_run", ROOT / "tools" / "compat" / "compat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.BENCH = work
    kept = ROOT / ".bench" / "compat" / module.WHEEL.name  # downloaded once by tools/compat/run
    module.WHEEL = kept if kept.exists() else work / kept.name
    return module


@pytest.mark.timeout(600)
def test_experimaestro_configuration_tests_pass_against_xpmfs(tmp_path: Path, experimaestro_python: Path) -> None:
    compat = _compat(tmp_path / "compat")
    try:
        wheel = compat.ensure_wheel()
    except Exception as error:  # no package index here, and no wheel kept from an earlier run
        pytest.skip(f"experimaestro {compat.VERSION}'s wheel cannot be had: {error}")
    shim = compat.build_shim(wheel)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XPM_TEST_TIMEOUT_MULTIPLIER": "3"}
    env["PYTHONPATH"] = f"{shim}:{compat.BENCH / 'test-only'}"
    report = compat.run(shim, Path(sys.executable), compat.FILES, env, shim / "experimaestro" / "tests")
    per_file, failures = compat.outcomes(report)

    failed = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in failures}
    new = sorted(set(failed) - set(KNOWN_FAILURES))
    assert not new, "experimaestro tests that stopped passing:\n" + "\n".join(f"{t}: {failed[t]}" for t in new)
    fixed = sorted(set(KNOWN_FAILURES) - set(failed))
    assert not fixed, f"these pass now: take them off KNOWN_FAILURES and raise PASSING: {fixed}"
    for test, start in KNOWN_FAILURES.items():
        assert failed[test].startswith(start), f"{test} fails for another reason now: {failed[test]}"
    passed = sum(counts["passed"] for counts in per_file.values())
    assert passed >= PASSING, f"{passed} experimaestro tests pass, {PASSING} did (a file no longer imports?)"
