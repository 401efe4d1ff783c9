"""The ``xpmfs`` command: a thin click shell over library functions.

Every command calls into the library and prints; no logic lives here. One handler turns xpmfs
errors into ``Error: ...`` and exit code 1 (``--debug`` re-raises to show the traceback).
Exit codes: 0 success, 1 an xpmfs error (bad workspace, unknown job...), 2 bad usage (click).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click
import orjson

from ._lazy import lazy_module
from .display import STATE_STYLES, age
from .errors import Error
from .status import Reason, State
from .workspace import Workspace

if TYPE_CHECKING:
    from .catalog import JobInfo, Stream
    from .job import Job
    from .progress import Progress

# The library modules each command calls, loaded when it first uses them: `xpmfs worker`
# (started for every embedded worker) and `--help` do not pay for what other commands need (the
# catalog pulls in progress and the journals, control psutil, top rich and watchdog).
if TYPE_CHECKING:
    from . import adopt as _adopt
    from . import catalog as _catalog
    from . import check as _check
    from . import control as _control
    from . import deprecated as _deprecated
    from . import heartbeat as _heartbeat
    from . import top as _top
    from . import trust as _trust
    from . import worker as _worker
else:
    _adopt, _catalog, _check, _control, _deprecated, _heartbeat, _top, _trust, _worker = (
        lazy_module(f"xpmfs.{name}")
        for name in ("adopt", "catalog", "check", "control", "deprecated", "heartbeat", "top", "trust", "worker")
    )


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader left (`xpmfs ls | head`): not an error worth a word. Point stdout at
            # /dev/null first, or the interpreter's own flush at exit fails on it again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except (Error, OSError) as error:
            # OSError too: a permission denied or a full disk deserves a message, not a traceback.
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """xpmfs: experiments whose whole state is a directory.

    Exit codes: 0 success, 1 an xpmfs error (printed as "Error: ..."), 2 bad usage.

    \b
    Shell completion (bash; zsh and fish alike with zsh_source, fish_source):
        eval "$(_XPMFS_COMPLETE=bash_source xpmfs)"     # in ~/.bashrc

    \b
    Example:
        xpmfs ls ~/ws --state running
        xpmfs top ~/ws
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # File names that are not UTF-8 reach us as lone surrogates (PEP 383): show them escaped
    # rather than die printing them.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def _trusted_users(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            _trust.resolve_user(value)
        except LookupError as error:
            raise click.BadParameter(f"{error}; give a login name or a uid", ctx, param) from None
    return values


trust_option = click.option(
    "--trust-user",
    "trust_users",
    multiple=True,
    metavar="NAME",
    callback=_trusted_users,
    help="Also trust this user (login name or uid); repeatable. A worker runs only jobs whose spec "
    "and script your user or a trusted one owns: in a shared workspace, a spec is code.",
)


@main.command()
@click.argument("workspace", type=click.Path(file_okay=False))
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1), help="Jobs run at once.")
@click.option("--idle-exit", type=click.FloatRange(min=0), help="Exit after this many seconds with nothing to run.")
@click.option(
    "--rescan", default=5.0, show_default=True, type=click.FloatRange(min=0.01), help="Seconds between full rescans."
)
@click.option("--drain", is_flag=True, help="On SIGTERM, let running jobs finish instead of handing them back.")
@trust_option
# An embedded worker's pipe from its experiment (xpmfs.experiment): at its end, finish and exit.
@click.option("--lifeline", type=int, hidden=True)
def worker(
    workspace: str,
    jobs: int,
    idle_exit: float | None,
    rescan: float,
    drain: bool,
    trust_users: tuple[str, ...],
    lifeline: int | None,
) -> None:
    """Claim and run the workspace's jobs until stopped.

    Runs only jobs whose spec (and script) is owned by your user or by a --trust-user; it logs
    any other job once and leaves it queued, untouched.

    \b
    Example:
        xpmfs worker ~/experiments/ws --jobs 4 --idle-exit 60
        xpmfs worker /shared/ws --trust-user alice --trust-user bob
    """
    code = _worker.run_worker(
        workspace,
        jobs=jobs,
        idle_exit=idle_exit,
        rescan=rescan,
        drain=drain,
        trust_users=trust_users,
        lifeline=lifeline,
    )
    sys.exit(code)


@main.command()
@click.argument("workspace", type=click.Path(file_okay=False))
@click.option(
    "--lock-mode",
    type=click.Choice(["local", "shared"]),
    help="local: one host (OS locks, inotify); shared: hosts sharing it over NFS (leases). [default: local]",
)
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), help="Shared mode: seconds a lease lasts.")
def init(workspace: str, lock_mode: str | None, lease: float | None) -> None:
    """Create a workspace, or check that an existing one locks as asked.

    An experiment creates its workspace when it first runs; create it beforehand to start
    workers first (on a cluster, say), or to choose the lock mode once for every process.

    \b
    Example:
        xpmfs init /shared/ws --lock-mode shared     # then: sbatch workers/xpmfs-workers.sbatch /shared/ws
    """
    ws = Workspace.open(workspace, create=True, lock_mode=lock_mode, lease_duration=lease)
    lease_text = f", leases of {ws.lease_duration:g}s" if ws.lock_mode.value == "shared" else ""
    click.echo(f"{ws.path}: workspace ready (lock mode {ws.lock_mode.value}{lease_text})")


@main.command()
@click.argument("workspace", type=click.Path(file_okay=False, exists=True))
@click.option("--dry-run", is_flag=True, help="Say what would be done (jobs by state, problems); change nothing.")
@click.option(
    "--lock-mode",
    type=click.Choice(["local", "shared"]),
    help="The xpmfs workspace's lock mode (as `xpmfs init`). [default: local, or the one recorded]",
)
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), help="Shared mode: seconds a lease lasts.")
def adopt(workspace: str, dry_run: bool, lock_mode: str | None, lease: float | None) -> None:
    """Take over an experimaestro workspace in place, so its finished jobs are found again.

    Adds xpmfs's files (.xpmfs/, each job's __xpm__/, the experiments' jobs.jsonl) and changes
    none of experimaestro's. Done jobs stay done, failed ones failed; unfinished ones become
    runnable again; jobs experimaestro is running are left to it. Safe to interrupt and run
    again; a second run changes nothing. See spec/adopt.md.
    """
    with _adopt.progress_bar(sys.stderr) as progress:
        report = _adopt.adopt(workspace, dry_run=dry_run, progress=progress, lock_mode=lock_mode, lease_duration=lease)
    for line in report.lines():
        click.echo(line)


# -- shared options and helpers ----------------------------------------------------------------

_STATE_CHOICES = [state.value for state in State] + ["unknown"]


def _open(path: str) -> Workspace:
    return Workspace.open(path)


def _parse_tags(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE (e.g. --tag lr=0.1)", ctx, param)
        tags[key] = text
    return tags


workspace_argument = click.argument("workspace", type=click.Path(file_okay=False))
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object a line, for scripts.")


def _complete_job(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of JOB: id prefixes and ``<typeid>/`` of the workspace (files for a path)."""
    from click.shell_completion import CompletionItem

    if incomplete.startswith(("/", ".", "~")):
        return [CompletionItem(incomplete, type="file")]
    return [CompletionItem(name) for name in _catalog.complete_job(ctx.params.get("workspace"), incomplete)]


def job_argument(function: Callable[..., Any]) -> Callable[..., Any]:
    """``JOB`` plus ``--workspace``: how every single-job command names its job."""
    function = click.argument("job", metavar="JOB", shell_complete=_complete_job)(function)
    return click.option(
        "--workspace",
        "-w",
        envvar="XPMFS_WORKSPACE",
        type=click.Path(file_okay=False),
        help="Workspace to look JOB up in (default: the one the current folder is in; env XPMFS_WORKSPACE).",
    )(function)


def _find(workspace: str | None, name: str) -> Job:
    return _catalog.find_job(_open(workspace) if workspace else None, name)


#: `xpmfs ls` writes its table this many lines at a time: one write a line costs as much as
#: reading the job (100,000 jobs: 1.5 s), and a pager still gets its first screen at once.
_LINES_PER_WRITE = 1000


def _state_text(info: JobInfo) -> str:
    text = info.label
    if info.stale:
        text += " (stale)"
    elif info.state is State.FAILED and info.reason is not None:
        text += f" ({info.reason.value if isinstance(info.reason, Reason) else info.reason})"
    return text


def _style_state(info: JobInfo, text: str) -> str:
    *how, colour = STATE_STYLES["stale" if info.stale else info.label].split()
    return click.style(text, fg=colour, bold="bold" in how or None, dim="dim" in how or None)


def _tags_text(tags: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_catalog.tag_text(value)}" for key, value in sorted(tags.items()))


def _time(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "-"


def _progress_text(reported: Progress) -> str:
    text = reported.percent
    if reported.detail:
        text += f"  {reported.detail}"  # level 0's message, then the nested levels
    return text + f"  (reported {age(time.time() - reported.updated)} ago)"


def _json_line(record: Any) -> None:
    try:
        line = orjson.dumps(record).decode()
    except TypeError:
        # orjson refuses lone surrogates (file names that are not UTF-8): write their bytes as
        # visible \xNN escapes instead, which keeps the line valid UTF-8 JSON.
        line = orjson.dumps(_escape_surrogates(record)).decode()
    click.echo(line)


def _escape_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_escape_surrogates(key): _escape_surrogates(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_surrogates(item) for item in value]
    return value


# -- reading -------------------------------------------------------------------------------------


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--experiment`` and ``--tag``: which jobs a command is about (ls, clean)."""
    command = click.option(
        "--tag",
        "-t",
        "tags",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_parse_tags,
        help="Only jobs with this tag (repeatable).",
    )(command)
    return click.option("--experiment", "-e", metavar="NAME", help="Only jobs that this experiment submitted.")(command)


@main.command("ls")
@workspace_argument
@click.option("--state", "-s", type=click.Choice(_STATE_CHOICES), help="Only jobs in this state.")
@selection_options
@json_option
def ls(workspace: str, state: str | None, experiment: str | None, tags: dict[str, str], as_json: bool) -> None:
    """List the jobs of a workspace: state, job, progress, age, tags.

    Columns: state (coloured on a terminal), <typeid>/<first 12 characters of the id>, the
    progress a running job reported, the time since its state last changed, its tags. A state
    marked "(stale)" says running while nobody holds the job's lock: its run crashed (`xpmfs
    check --fix` makes it ready again). --json prints every field, one object a line.

    Exit codes: 0 listed (also when nothing matches), 1 no workspace (or no such experiment)
    there, 2 bad usage (unknown --state, --tag without "=").

    \b
    Example:
        xpmfs ls ~/ws --state failed --tag model=bert
        xpmfs ls ~/ws --json | jq -r 'select(.stale) | .path'
    """
    # The table needs no done job's status.json (--json prints it whole).
    infos = _catalog.list_jobs(_open(workspace), state=state, experiment=experiment, tags=tags, brief=not as_json)
    if as_json:
        for info in infos:
            _json_line(info.to_json())
        return
    now = time.time()
    rows = [
        [
            _state_text(info),
            f"{info.ref.typeid}/{info.ref.jobid[:12]}",
            info.progress.percent if info.progress is not None else "",
            age(now - info.updated) if info.updated else "",
            _tags_text(info.tags),
        ]
        for info in infos
    ]
    # A column that is empty on every line (no job reports progress) is left out.
    shown = [column for column in range(5) if any(row[column] for row in rows)]
    widths = {column: max(len(row[column]) for row in rows) for column in shown}
    lines = []
    for info, row in zip(infos, rows, strict=True):
        cells = []
        for column in shown:
            # Pad outside the styling: escape codes must not count in the width, and trailing
            # spaces must go when click strips the codes (not a terminal).
            text, padding = row[column], " " * (widths[column] - len(row[column]))
            if column == 0:
                text = _style_state(info, text)
            elif column == 3 and text:
                text = click.style(text, dim=True)
            cells.append(padding + text if column == 2 else text + padding)
        lines.append("  ".join(cells).rstrip())
        if len(lines) == _LINES_PER_WRITE:
            click.echo("\n".join(lines))
            lines.clear()
    if lines:
        click.echo("\n".join(lines))


@main.command()
@workspace_argument
@click.option("--experiment", "-e", metavar="NAME", help="Only jobs that this experiment submitted.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and `watch`).")
@click.option(
    "--rescan",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between full rescans (changes in queue/ and workers/ redraw at once).",
)
def top(workspace: str, experiment: str | None, once: bool, rescan: float) -> None:
    """Watch a workspace live: jobs by state, running jobs, failures, workers.

    Running jobs show their host, runtime, the progress they report (xpmfs.progress,
    xpmfs.tqdm) and the last line of their output. Redraws when a job is submitted or ends or a
    worker beats, and every --rescan seconds. Quit with q or Ctrl-C.

    Exit codes: 0 quit (or --once printed), 1 no workspace (or no such experiment) there,
    2 bad usage.

    \b
    Example:
        xpmfs top ~/ws --experiment squares
        xpmfs top ~/ws --once
    """
    sys.exit(_top.run(_open(workspace), experiment, once=once, rescan=rescan))


@main.command()
@job_argument
@json_option
def show(workspace: str | None, job: str, as_json: bool) -> None:
    """Show everything about one job: status, dependencies, output files, lock holder.

    JOB is an id prefix, <typeid>/<idprefix>, or a path (the job's folder or a file in it).

    \b
    Example:
        xpmfs show -w ~/ws 3eee5a80
        xpmfs show ~/ws/jobs/my.task/3eee5a80b576c1ec.../
    """
    found = _catalog.details(_find(workspace, job))
    if as_json:
        _json_line(found.to_json())
        return
    info = found.info
    lines: list[tuple[str, str]] = [
        ("job", info.ref.relpath),
        ("path", info.folder),
        ("state", _style_state(info, _state_text(info))),
        ("queued", "yes" if info.queued else "no"),
    ]
    if info.problem:
        lines.append(("problem", info.problem))
    if info.status is not None:
        # Every field of status.json, so fields added later show up too; reason and message below.
        for name, value in info.status.to_json().items():
            if name in ("state", "reason", "message"):
                continue
            text = _time(value) if isinstance(value, float) else "-" if value is None else str(value)
            lines.append((name.replace("_", " "), text))
    if info.reason is not None:
        lines.append(("reason", info.reason.value if isinstance(info.reason, Reason) else str(info.reason)))
    if info.message:
        lines.append(("message", info.message))
    if info.progress is not None:
        lines.append(("progress", _progress_text(info.progress)))
    if found.last_line is not None:
        lines.append(("last line", found.last_line))
    lines.append(("experiments", ", ".join(info.experiments) or "-"))
    lines.append(("tags", _tags_text(info.tags) or "-"))
    if found.spec is not None:
        lines.append(("launcher", found.spec.launcher.get("type", "?")))
        lines.append(("submitted", _time(found.spec.submitted)))
    else:
        lines.append(("spec", found.spec_problem or "-"))
    lines.append(("dependencies", "-" if not found.dependencies else ""))
    lines += [("", f"{ref.relpath} ({label})") for ref, label in found.dependencies]
    holder = found.holder
    lines.append(
        ("lock", f"held by pid {holder.pid} on {holder.host} since {_time(holder.since)}" if holder else "free")
    )
    if found.cancel_requested:
        lines.append(("cancel", "requested"))
    lines += [("stdout", str(found.stdout)), ("stderr", str(found.stderr)), ("script", str(found.script))]
    width = max(len(key) for key, _value in lines) + 1
    for key, value in lines:
        click.echo(f"{(key + ':') if key else '':<{width}} {value}".rstrip())


@main.command()
@job_argument
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@click.option("--err", "stream", flag_value="err", help="The job's standard error (.err) instead of its output.")
@click.option("--out", "stream", flag_value="out", default=True, hidden=True)
def log(workspace: str | None, job: str, follow: bool, stream: Stream) -> None:
    """Print a job's output (<name>.out), or its errors with --err.

    \b
    Example:
        xpmfs log -w ~/ws -f 3eee5a80
        xpmfs log --err ~/ws/jobs/my.task/3eee5a80.../
    """
    found = _find(workspace, job)
    for chunk in _catalog.read_log(found, stream, follow=follow):
        click.echo(chunk, nl=False)  # bytes go out as they are; echo flushes, so -f shows each chunk at once


@main.command()
@workspace_argument
@json_option
def workers(workspace: str, as_json: bool) -> None:
    """List the workers registered in a workspace: host, pid, slots, heartbeat age, alive.

    \b
    Example:
        xpmfs workers ~/ws
    """
    infos = sorted(_heartbeat.scan(_open(workspace).workers_dir), key=lambda item: (item.record.host, item.record.pid))
    if as_json:
        for info in infos:
            record = info.record
            _json_line(
                {
                    "name": record.name,
                    "host": record.host,
                    "pid": record.pid,
                    "slots": record.jobs,
                    "started": record.started,
                    "heartbeat_interval": record.heartbeat,
                    "heartbeat_age": info.age,
                    "alive": info.alive,
                    "path": str(info.path),
                }
            )
        return
    rows = [
        (
            info.record.host,
            str(info.record.pid),
            f"{info.record.jobs} slot(s)",
            f"beat {info.age:.1f}s ago",
            "alive" if info.alive else "dead",
        )
        for info in infos
    ]
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(5)]
    for info, row in zip(infos, rows, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        cells.append(click.style(row[-1], fg="green" if info.alive else "red"))
        click.echo("  ".join(cells))


# -- acting --------------------------------------------------------------------------------------


@main.command()
@job_argument
def kill(workspace: str | None, job: str) -> None:
    """Stop a job: cancel it if queued, ask it to stop if running (it ends failed, cancelled).

    \b
    Example:
        xpmfs kill -w ~/ws 3eee5a80
    """
    click.echo(_control.kill(_find(workspace, job)).message)


@main.command()
@job_argument
@click.option("--force", is_flag=True, help="Run it again even if it is done.")
def retry(workspace: str | None, job: str, force: bool) -> None:
    """Queue a failed job again (or a done one, with --force).

    \b
    Example:
        xpmfs retry -w ~/ws 3eee5a80
    """
    click.echo(_control.retry(_find(workspace, job), force=force).message)


@main.command()
@workspace_argument
@click.option("--failed", is_flag=True, help="Remove failed jobs' folders.")
@click.option("--done", is_flag=True, help="Remove done jobs' folders (their results too!).")
@click.option("--workers", "dead_workers", is_flag=True, help="Remove dead workers' registrations.")
@selection_options
@click.option("--yes", "-y", is_flag=True, help="Remove for real; without it, only list what would go.")
def clean(
    workspace: str,
    failed: bool,
    done: bool,
    dead_workers: bool,
    experiment: str | None,
    tags: dict[str, str],
    yes: bool,
) -> None:
    """Remove ended jobs' folders and dead workers' registrations.

    Lists what it would remove; --yes removes it. Queued and running jobs are never removed,
    nor jobs that an unfinished job depends on, nor jobs of an experiment that is running.

    \b
    Example:
        xpmfs clean ~/ws --failed            # list the failed jobs it would remove
        xpmfs clean ~/ws --failed --yes      # remove them
    """
    if not (failed or done or dead_workers):
        raise click.UsageError("say what to remove: --failed, --done and/or --workers")
    removals = _control.clean(
        _open(workspace),
        failed=failed,
        done=done,
        workers=dead_workers,
        experiment=experiment,
        tags=tags,
        apply=yes,
    )
    selected = [removal for removal in removals if removal.kept is None]
    for removal in removals:
        if removal.kept is not None:
            click.echo(f"kept: {removal.path}  {removal.description}: {removal.kept}")
        elif removal.removed:
            click.echo(f"removed: {removal.path}  {removal.description}")
        else:
            click.echo(f"would remove: {removal.path}  {removal.description}")
    if not selected:
        click.echo("nothing to remove", err=True)
    elif not yes:
        click.echo(f"{len(selected)} to remove; run again with --yes to remove them", err=True)


@main.command("check")
@workspace_argument
@click.option("--fix", is_flag=True, help="Repair what can be repaired safely.")
@click.option("--no-verify", is_flag=True, help="Do not load each job's task to check its identifier.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Shared lock mode: do not wait lease_duration to prove other hosts' running jobs abandoned.",
)
@trust_option
def check_command(workspace: str, fix: bool, no_verify: bool, no_wait: bool, trust_users: tuple[str, ...]) -> None:
    """Find what crashes left inconsistent in a workspace; repair it with --fix.

    One line per problem: `path: kind: message [fixed]`. Exit code 1 if problems remain
    (warnings, such as a task that cannot be imported here, do not count).

    \b
    Example:
        xpmfs check ~/ws
        xpmfs check ~/ws --fix
    """
    problems = _check.check(
        _open(workspace),
        fix=fix,
        verify=not no_verify,
        lease_wait=not no_wait,
        notify=lambda message: click.echo(message, err=True),
        trust_users=trust_users,
    )
    for problem in problems:
        click.echo(str(problem))
    remaining = [p for p in problems if not p.fix_applied and p.severity == "error"]
    if not problems:
        click.echo("no problems found", err=True)
    if remaining:
        sys.exit(1)


@main.command("deprecated")
@workspace_argument
@click.option("--fix", is_flag=True, help="Link each job's new folder to its old one (jobs that ended well).")
@trust_option
def deprecated_command(workspace: str, fix: bool, trust_users: tuple[str, ...]) -> None:
    """List the jobs whose configuration now hashes elsewhere (a class was deprecated); link them with --fix.

    One line per job: `old -> new: action (detail)`; nothing in a job's folder is changed.
    Loading a job's configuration imports its task's modules.

    \b
    Example:
        xpmfs deprecated ~/ws
        xpmfs deprecated ~/ws --fix
    """
    found = _deprecated.fix_deprecated(_open(workspace), fix=fix, trust_users=trust_users)
    for item in found:
        click.echo(str(item))
    if not found:
        click.echo("no job of a deprecated configuration", err=True)
