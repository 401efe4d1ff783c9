"""What an experiment run saves (``xp.save(obj, name)``) and what another loads back (``xp.load``).

A run's folder is ``experiments/<experiment>/runs/<run>/`` (spec/workspace.md). ``xp.save`` writes
``data/<name>/`` there with :func:`xpmfs.definition.save` (experimaestro 2.7's definition format);
``xp.resultspath`` is ``results/`` there, for the experiment's own files. experimaestro 2.7 keeps a
run in ``experiments/<experiment>/<run>/`` with the same ``data/<name>/`` inside: loading reads
either layout, so a workspace experimaestro made (adopted, spec/adopt.md) gives its saved data back.
"""

from __future__ import annotations

from pathlib import Path

from .definition import DEFINITION_FILE, OLD_DEFINITION_FILE
from .errors import OptionError
from .workspace import EXPERIMENT_RUNS

DATA_DIR = "data"
"""In a run's folder: one folder per ``xp.save`` name."""
RESULTS_DIR = "results"
"""In a run's folder: ``xp.resultspath``, left to the experiment's code."""


def check_name(name: str, where: str) -> str:
    """``name`` if it can name a folder of saved data (one path component), else :class:`OptionError`."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        raise OptionError(where, f"{name!r} cannot name a folder", "give a plain name such as 'default' or 'results'")
    return name


def _definition(folder: Path) -> Path | None:
    """The definition file :func:`xpmfs.definition.load` would read in ``folder``, if there is one."""
    for file_name in (DEFINITION_FILE, OLD_DEFINITION_FILE):
        if (folder / file_name).is_file():
            return folder / file_name
    return None


def _folders(path: Path) -> list[Path]:
    return [entry for entry in path.iterdir() if entry.is_dir()] if path.is_dir() else []


def find(experiments_dir: Path, experiment: str, name: str, run: str | None = None) -> Path:
    """The folder of ``experiment``'s data saved as ``name``: in run ``run``, else the latest saved.

    "Latest" is the most recently written save of that name, in any run of either layout
    (experimaestro takes its latest run folder, whether it saved ``name`` or not).
    Raises :class:`FileNotFoundError` saying where it looked.
    """
    check_name(experiment, "xp.load(reference)")
    check_name(name, "xp.load(name=...)")
    base = experiments_dir / experiment
    if run is not None:
        check_name(run, "xp.load(run_id=...)")
        candidates = [base / EXPERIMENT_RUNS / run / DATA_DIR / name, base / run / DATA_DIR / name]
    else:
        run_folders = [*_folders(base / EXPERIMENT_RUNS), *(f for f in _folders(base) if f.name != EXPERIMENT_RUNS)]
        candidates = [folder / DATA_DIR / name for folder in run_folders]
    saved = {folder: file for folder in candidates if (file := _definition(folder)) is not None}
    if not saved:
        which = f"run {run!r} of experiment {experiment!r}" if run is not None else f"experiment {experiment!r}"
        raise FileNotFoundError(
            f"{base}: no data saved as {name!r} by {which} (looked for {DATA_DIR}/{name}/{DEFINITION_FILE} "
            f"in {base / EXPERIMENT_RUNS}/<run>/ and {base}/<run>/); save it with xp.save(obj, name={name!r})"
        )
    return max(saved, key=lambda folder: saved[folder].stat().st_mtime_ns)
