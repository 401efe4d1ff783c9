"""The warm runner: a fork server that starts jobs by forking an already-warm process.

Starting a fresh interpreter for every job costs ~0.1-0.2 s of CPU before the task does anything
(interpreter start-up, then importing xpmfs, orjson, filelock and the task's module). A worker
therefore keeps one *zygote*: a single-threaded child process that has imported the runner and,
once seen, each task's modules; for every job it forks, and the fork runs the job at once.

Why a separate process and not a fork of the worker itself: the worker has threads (watchdog,
runner reapers), and forking a threaded process can copy a lock held by another thread into the
child, where nobody will ever release it.

Protocol (a Unix socket pair; one JSON line per message):

* worker → zygote: ``{"job": <job folder>, "env": {...}, "stdout": <path>, "stderr": <path>,
  "preload": [<type reference>, ...], "sys_path": [...]}``. ``env`` holds the
  variables the job sets on top of the environment the zygote started with, which is its
  worker's: a job's environment differs from it by a handful of variables, so the request need
  not carry the forty others.
* zygote → worker: ``{"pid": <child pid>}`` once forked, then
  ``{"pid": <child pid>, "exit": <code, negative for a signal>}`` when it ends; or
  ``{"job": ..., "error": "..."}`` when it could not fork (the worker then starts the job the
  fresh way). Each request gets its reply in request order, and a child's reply always comes
  before its exit, so the worker sends a request and goes on without waiting for the answer.

Ahead of time: once it has started a job, the zygote forks the process for the next one, which
waits on a pipe; the next request goes down that pipe, so a job does not wait for its own fork
(a fork and the child's first steps take over a millisecond of a busy machine, on every job's
critical path). A request that brought a new module or workspace makes the zygote warmer than
that spare fork, which is then let go (the zygote closes its pipe) and the job forked anew.

Lifetimes: the zygote runs in a session of its own, so that signals meant for the worker's process
group (a terminal's Ctrl-C) reach the worker alone, which stops as it must and then closes the
zygote's socket. The zygote dies with its worker (``PR_SET_PDEATHSIG``) and each forked job dies
with the zygote, so a worker's death still ends every run it holds the lock of; a spare fork ends
when its pipe closes with the zygote. Imported task modules go stale when their source changes:
before each job the zygote checks the modification times of the files it imported for tasks, and
exits (code 75) when one changed; the worker starts a new one.

No filelock: filelock registers ``os.register_at_fork`` hooks that run Python code in both
processes on every fork; they made each fork 0.5 ms dearer (a third of a bare fork of this
process) and a hundred pages more to copy. The zygote holds no lock and the jobs it forks run
under their worker's, so nothing it imports may import :mod:`xpmfs.lock`: the modules on this
path (``job``, ``cache``, ``experiment``, ``workspace``) import it where a lock is taken.

Environment: a fork starts from the zygote's environment with the request's changes applied. What
a task's module set in ``os.environ`` when the zygote imported it stays, unless the job's own
environment sets the same name: as in a fresh runner, where that import happens in the job itself.
"""

from __future__ import annotations

import collections
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ._process import _prctl, die_with_parent

ENV_PARENT = "XPMFS_ZYGOTE_PARENT"  # the worker's pid: the zygote dies with it
ENV_FD = "XPMFS_ZYGOTE_FD"  # the zygote's end of the socket pair
EXIT_STALE = 75
REFUSED = -1000  # the return code of a job the zygote did not fork (it never ran)
SPAWN_TIMEOUT = 30.0  # seconds to wait for the zygote's reply before giving up on a pid


def serve(sock: socket.socket) -> int:
    """The zygote's loop: start a job per request until the worker closes the socket; return
    the zygote's exit code."""
    return _Server(sock).serve()


class _Server:
    """The zygote's side of the socket: its forked jobs, its spare fork, the modules it warmed.

    Lean on purpose: every page it writes between two forks is copied once per fork (the fork
    shares them with the new child), so it does little between requests.
    """

    def __init__(self, sock: socket.socket) -> None:
        from . import runner  # warm up (the zygote only, not the worker): all a job needs but its task
        from .serialization import load_class

        _prctl()  # libc loaded and prctl resolved once here, not in every fork (die_with_parent)
        self.runner: Any = runner
        self.load_class = load_class  # bound once: an import statement per request writes to shared pages
        self.sock = sock
        self.watched: dict[str, float] = {}  # source files of preloaded task modules -> mtime
        self.preloaded: set[object] = set()  # type references already imported and resolved
        self.children: set[int] = set()  # forked jobs, reported to the worker when they end
        self.spare: tuple[int, int] | None = None  # (pid, request pipe) of the child forked ahead of time
        self.wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
        self.inherited = (sock.fileno(), self.wake_read, wake_write)  # the zygote's descriptors, which no job keeps

    def serve(self) -> int:
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self.wake_read, select.POLLIN)
        received = b""  # requests arrive back to back: one read may hold several lines, or part of one
        while True:
            for fd, _ in poller.poll():
                if fd == self.wake_read:
                    os.read(self.wake_read, 4096)
                    self.reap()
                    continue
                data = self.sock.recv(1 << 16)
                if not data:
                    return 0  # the worker is gone or done with us
                received += data
                while b"\n" in received:
                    line, received = received.split(b"\n", 1)
                    code = self.start(line, orjson.loads(line))
                    if code is not None:
                        return code

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(orjson.dumps(message) + b"\n")

    def reap(self) -> None:
        """Tell the worker of each forked job that ended; forget a spare that died waiting."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.send({"pid": pid, "exit": os.waitstatus_to_exitcode(status)})
            elif self.spare is not None and self.spare[0] == pid:  # killed waiting: fork another later
                os.close(self.spare[1])
                self.spare = None
            # else a spare let go (see drop_spare): it was never a job

    def start(self, line: bytes, request: dict[str, Any]) -> int | None:
        """Start the job of ``request`` (or refuse it); an exit code when this zygote must end."""
        if _stale(self.watched):
            self.send({"job": request["job"], "error": "stale"})
            return EXIT_STALE
        try:
            fresh = self.warm_up(request)  # whether this request made the zygote warmer than its spare
        except Exception as error:  # the task's module does not import: let the fresh path report it
            self.send({"job": request["job"], "error": f"{type(error).__name__}: {error}"})
            return None
        if fresh:
            self.drop_spare()  # forked before this request's modules or workspace: less warm than we are
        pid = self.hand_to_spare(line) if self.spare is not None else None
        if pid is None:
            # Objects that exist now are never collected in a fork: leave them out of its GC
            # passes, which would otherwise touch (and so copy) every page of the heap.
            gc.freeze()
            pid = os.fork()
            if pid == 0:
                _child(request, self.runner, self.inherited)
        self.children.add(pid)
        self.send({"pid": pid})
        self.fork_spare()  # for the next request, while this job runs
        return None

    def warm_up(self, request: dict[str, Any]) -> bool:
        """Import what ``request`` needs (its import path, its task's modules, its workspace);
        return whether anything was new."""
        fresh = _extend_path(request.get("sys_path", ()))
        for ref in request.get("preload", ()):
            key = (ref.get("module"), ref.get("qualname"), ref.get("file")) if isinstance(ref, dict) else repr(ref)
            if key not in self.preloaded:
                cls = self.load_class(ref, "preload")
                _watch(cls, self.watched)
                _resolve_fields(cls)
                self.preloaded.add(key)
                fresh = True
        try:
            return self.runner.open_workspace_of(request["job"]) or fresh  # once per workspace
        except Exception:  # a damaged format file: the fork reports it in its job
            return fresh

    def drop_spare(self) -> None:
        if self.spare is not None:
            os.close(self.spare[1])  # it reads the end of its pipe, and exits
            self.spare = None

    def fork_spare(self) -> None:
        try:
            read, write = os.pipe()
        except OSError:
            return  # out of descriptors: the next job is forked when it comes, as without spares
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:  # out of processes or memory: not worth failing the jobs running now for
            os.close(read)
            os.close(write)
            return
        if pid == 0:
            os.close(write)
            _spare(read, self.runner, self.inherited)
        os.close(read)
        self.spare = (pid, write)

    def hand_to_spare(self, line: bytes) -> int | None:
        """Give ``line`` to the spare and return its pid; ``None`` if it died meanwhile."""
        assert self.spare is not None
        (pid, write), self.spare = self.spare, None
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(write, view) :]
        except BrokenPipeError:  # killed, and not reaped yet: reap() will not report it
            return None
        finally:
            os.close(write)
        return pid


def _extend_path(entries: Iterable[str]) -> bool:
    """Put a job's ``sys_path`` entries first on the import path; return whether one was new."""
    added = False
    for entry in reversed(list(entries)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
            added = True
    return added


def _spare(read: int, runner: Any, inherited: tuple[int, ...]) -> None:
    """In a fork made ahead of time: wait for a request on the pipe ``read``, then run its job.

    The zygote writes the request and closes the pipe; a pipe closed with nothing in it means
    this spare is not needed (the zygote grew warmer since, or is ending).
    """
    try:
        _detach(inherited)  # what every job's set-up does first, done while waiting
        data = b""
        while chunk := os.read(read, 1 << 16):
            data += chunk
        os.close(read)
        if not data:
            os._exit(0)
        request = orjson.loads(data)
    except BaseException:
        os._exit(1)
    _extend_path(request.get("sys_path", ()))
    _child(request, runner, None)


def _detach(inherited: tuple[int, ...]) -> None:
    """A fork's first steps: leave the zygote's descriptors (``inherited``; holding them would
    hide the zygote's death), its session, its signal set-up and its stdin."""
    for fd in inherited:
        os.close(fd)
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _child(request: dict[str, Any], runner: Any, inherited: tuple[int, ...] | None) -> None:
    """In the fork: become the job's runner, exactly as ``python <name>.py`` would.

    ``inherited`` are the zygote's descriptors, to close; ``None`` in a spare fork, which has set
    itself up this far already (see _spare).
    """
    code = 1
    try:
        if inherited is not None:
            _detach(inherited)
        mode = os.O_WRONLY | os.O_CREAT | os.O_APPEND  # never truncated: see DirectLauncher.start_fresh
        for target, path in ((1, request["stdout"]), (2, request["stderr"])):
            fd = os.open(path, mode, 0o644)
            os.dup2(fd, target)
            os.close(fd)
        os.environ.update(request["env"])
        os.chdir(request["job"])
        code = runner.run_folder(request["job"])  # absolute: the worker sends os.fspath(job)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _resolve_fields(cls: Any) -> None:
    """Resolve a configuration class's fields and make its ``X.C`` once here, not in every fork.

    Resolving evaluates annotations; ``X.C`` is a class made on first use, which the job's
    ``from_dict`` asks for: made in the fork it cost 64 page faults and ~0.27 ms a job
    (``profile_jobs.py first-call "xp_xpmfs.Touch.C" --setup "import xp_xpmfs"``).
    """
    from ._classinfo import is_config_class
    from .config import config_type

    if is_config_class(cls):
        try:
            config_type(cls)  # resolves its fields (class_info) first
        except Exception:  # the fork meets the same error and reports it in its job
            pass


def _watch(cls: Any, watched: dict[str, float]) -> None:
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    path = getattr(module, "__file__", None)
    if path and path not in watched:
        try:
            watched[path] = os.stat(path).st_mtime
        except OSError:
            pass


def _stale(watched: dict[str, float]) -> bool:
    for path, mtime in watched.items():
        try:
            if os.stat(path).st_mtime != mtime:
                return True
        except OSError:
            return True
    return False


class ForkedProcess:
    """A job asked of the zygote, looking like the ``subprocess.Popen`` the worker expects.

    :meth:`Zygote.spawn` returns at once: the zygote's reply (the child's pid, or a refusal)
    arrives later, which spares the worker a round trip per job. ``pid`` waits for it; a refused
    job (``refused`` says why) ends at once with :data:`REFUSED` and never ran.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self.returncode: int | None = None
        self.refused: str | None = None
        self._answered = threading.Event()
        self._ended = threading.Event()

    @property
    def pid(self) -> int | None:
        """The child's pid (waiting for the zygote's reply if needed); ``None`` if refused."""
        self._answered.wait(SPAWN_TIMEOUT)
        return self._pid

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        self._ended.wait(timeout)
        return self.returncode

    def _forked(self, pid: int) -> None:
        self._pid = pid
        self._answered.set()

    def _refuse(self, reason: str) -> None:
        self.refused = reason
        self._answered.set()
        self._end(REFUSED)

    def _end(self, code: int) -> None:
        self.returncode = code
        self._ended.set()


class Zygote:
    """The worker's end: starts the zygote and asks it to fork jobs.

    ``on_exit`` is called (from a reader thread) whenever a forked job ends or is refused. Call
    :meth:`spawn` from one thread only (the worker's main loop).
    """

    def __init__(self, on_exit: Callable[[], None], environ: dict[str, str] | None = None) -> None:
        self._on_exit = on_exit
        ours, theirs = socket.socketpair()
        # The environment the zygote starts with (the worker's): each request's "env" adds to it.
        env = dict(os.environ if environ is None else environ)
        env[ENV_PARENT] = str(os.getpid())
        env[ENV_FD] = str(theirs.fileno())
        # Its own session: a terminal's Ctrl-C (SIGINT to the worker's process group) must not
        # reach it; the worker stops, then ends the zygote by closing the socket.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xpmfs.zygote"],
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self._sock = ours
        self._asked: collections.deque[ForkedProcess] = collections.deque()  # awaiting a reply, in order
        self._forked: dict[int, ForkedProcess] = {}
        self._gone = False  # the zygote ended: nothing more will be answered
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="xpmfs-zygote", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        """Whether the zygote may still answer: its socket is open (a ``poll()`` per job would
        cost a system call and a lock; a request sent to a zygote that died meanwhile is refused,
        and its job started afresh)."""
        return not self._gone

    def spawn(self, request: dict[str, Any]) -> ForkedProcess | None:
        """Ask for a fork of a job and return without waiting; ``None`` if the zygote is gone.

        ``request["env"]`` holds the variables the job sets on top of the zygote's ``environ``.
        """
        process = ForkedProcess()
        with self._lock:
            if self._gone or not self.alive:
                return None
            self._asked.append(process)
        try:
            self._sock.sendall(orjson.dumps(request) + b"\n")
        except OSError:
            with self._lock:
                if process in self._asked:
                    self._asked.remove(process)
                    return None
            return process  # the reader ended it meanwhile (refused: the worker starts it afresh)
        return process

    def close(self) -> None:
        try:
            # shutdown(), not just close(): the reader thread's file object keeps the socket
            # open, and the zygote only leaves when it reads the end of its requests.
            self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _read(self) -> None:
        stream = self._sock.makefile("rb")
        try:
            for line in stream:
                self._dispatch(orjson.loads(line))
        except (OSError, ValueError):
            pass  # the zygote died mid-message (killed): same as its end below
        # The zygote is gone: a job it forked has died with it (PR_SET_PDEATHSIG); one it had not
        # forked yet never started.
        with self._lock:
            self._gone = True
            orphans, self._forked = list(self._forked.values()), {}
            unanswered, self._asked = list(self._asked), collections.deque()
        for process in orphans:
            process._end(-signal.SIGKILL)
        for process in unanswered:
            process._refuse("the warm runner ended")
        self._on_exit()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exit" in message:
            with self._lock:
                process = self._forked.pop(message["pid"], None)
            if process is not None:
                process._end(message["exit"])
                self._on_exit()
            return
        # A reply to the oldest request: the zygote answers in order, and always before the
        # exit of the child it forked.
        with self._lock:
            process = self._asked.popleft()
            if "pid" in message:
                self._forked[message["pid"]] = process
        if "pid" in message:
            process._forked(message["pid"])
        else:
            process._refuse(str(message.get("error", "refused")))
            self._on_exit()


def main() -> int:
    if sys.path and sys.path[0] == os.getcwd():
        # `python -m` put the worker's folder first on the import path; a fresh runner does not
        # have it, so neither may a fork (it could shadow a task's module).
        del sys.path[0]

    # Popped: the zygote's environment must be the one its worker computes requests against.
    parent = int(os.environ.pop(ENV_PARENT))
    die_with_parent(parent)
    fd = int(os.environ.pop(ENV_FD))
    return serve(socket.socket(fileno=fd))


if __name__ == "__main__":
    sys.exit(main())
