"""Loading results back: the configuration of a job folder, written by xpmfs or by experimaestro 2.x.

``from_task_dir(WS/jobs/<type id>/<job id>)`` reads ``__xpm__/spec.json`` (xpmfs) or, failing
that, ``params.json`` (experimaestro, versions 1 to 3, read by :func:`xpmfs.experimaestro_layout.read_params`),
and rebuilds the configuration; ``as_instance=True`` builds the task's object instead, as the job
does. Analysis notebooks work on either kind of workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError
from .serialization import from_dict

SPEC_FILE = Path("__xpm__") / "spec.json"  # xpmfs.job.Job.spec_path, relative to the job folder
PARAMS_FILE = "params.json"  # experimaestro_layout.PARAMS_FILE


def _config_data(folder: Path) -> dict[str, Any]:
    spec = folder / SPEC_FILE
    if spec.exists():
        try:
            record = orjson.loads(spec.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            raise ConfigError(str(spec), f"cannot read the job's spec ({error})") from error
        config = record.get("config") if isinstance(record, dict) else None
        if not isinstance(config, dict):
            raise ConfigError(str(spec), "has no 'config' object", "is it an xpmfs job spec?")
        return config
    if (folder / PARAMS_FILE).exists():
        from .experimaestro_layout import read_params

        workspace = folder.parent.parent.parent  # WS/jobs/<type id>/<job id>
        return read_params(folder, workspace).config
    raise ConfigError(
        str(folder),
        f"is not a job folder: it has neither {SPEC_FILE} (xpmfs) nor {PARAMS_FILE} (experimaestro)",
        "give the folder WS/jobs/<type id>/<job id>",
    )


def from_task_dir(path: str | Path, as_instance: bool = False, partial_loading: bool | None = None) -> Any:
    """The configuration of the job in folder ``path`` (an object of its class with ``as_instance``).

    The task knows its job folder (``jobpath``); classes are imported as the job would import them.
    ``partial_loading`` is accepted for experimaestro (xpmfs loads the whole tree).
    """
    folder = Path(path).absolute()
    config: Any = from_dict(_config_data(folder))  # a ConfigMixin
    config.__xpm__.set_jobpath(folder)
    if as_instance:
        from .config import instantiate_job

        return instantiate_job(config)[0]
    return config


__all__ = ["from_task_dir"]
