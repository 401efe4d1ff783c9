"""The experiment's status line (xpmfs.display): a terminal versus a log, with a fake stream and clock."""

from __future__ import annotations

import io
import re

import pytest

from xpmfs.display import PLAIN_INTERVAL, TTY_INTERVAL, Failure, StatusLine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def screen(text: str) -> list[str]:
    """What a terminal shows after ``text``: ``\\r`` returns to the line start, ``ESC[K`` erases to its end."""
    lines, column = [""], 0
    for token in re.split(r"(\r|\n|\x1b\[K)", text):
        if token == "\n":
            lines.append("")
            column = 0
        elif token == "\r":
            column = 0
        elif token == "\x1b[K":
            lines[-1] = lines[-1][:column]
        elif token:
            current = lines[-1].ljust(column)
            lines[-1] = current[:column] + token + current[column + len(token) :]
            column += len(token)
    return lines


def test_terminal_one_line_redrawn_failures_above_and_a_summary() -> None:
    stream, clock = io.StringIO(), Clock()
    line = StatusLine("squares", stream, is_tty=True, clock=clock)
    line.update({"waiting": 3, "ready": 1})
    assert stream.getvalue() == "\rsquares: 0/4 done, 1 ready, 3 waiting  0:00\x1b[K"
    clock.advance(TTY_INTERVAL / 2)
    line.update({"running": 1, "waiting": 3})
    assert stream.getvalue().count("\r") == 1  # too soon: not redrawn
    assert not line.due()
    clock.advance(TTY_INTERVAL)
    assert line.due()
    line.update({"running": 1, "waiting": 2, "done": 1})
    assert screen(stream.getvalue()) == ["squares: 1/4 done, 1 running, 2 waiting  0:00"]
    # A failure is printed at once (rate limit or not), on its own line, above the status line.
    clock.advance(0.01)
    failure = Failure("/ws/jobs/t/abc", "/ws/jobs/t/abc/t.err", "error: RuntimeError: boom")
    line.update({"failed": 1, "waiting": 2, "done": 1}, [failure])
    shown = screen(stream.getvalue())
    assert shown == [
        "squares: failed: t/abc (error: RuntimeError: boom); see /ws/jobs/t/abc/t.err",
        "squares: 1/4 done, 2 waiting, 1 failed  0:00",
    ]
    clock.advance(61)
    line.update({"failed": 1, "waiting": 2, "done": 1}, [failure])  # the same failure: not again
    assert stream.getvalue().count("failed: t/abc") == 1
    assert screen(stream.getvalue())[-1].endswith("1 failed  1:01")
    late = Failure("/elsewhere/x", "/elsewhere/x/x.err")  # given only at the end: printed then
    line.close({"done": 2, "failed": 2}, [failure, late])
    shown = screen(stream.getvalue())
    assert shown == [
        "squares: failed: t/abc (error: RuntimeError: boom); see /ws/jobs/t/abc/t.err",
        "squares: 4 job(s) in 1:01: 2/4 done, 2 failed",
        "squares: failed: /elsewhere/x; see /elsewhere/x/x.err",
        "",
    ]
    before = stream.getvalue()
    line.update({"done": 4})
    line.close()
    assert stream.getvalue() == before  # closed: silent


def test_terminal_line_never_wraps() -> None:
    stream = io.StringIO()  # no fileno: taken as 80 columns
    line = StatusLine("x" * 200, stream, is_tty=True)
    line.update({"done": 1})
    drawn = stream.getvalue()
    assert drawn.startswith("\r") and drawn.endswith("\x1b[K")
    assert len(drawn[1:-3]) < 80 and drawn[1:-3].endswith("…")


def test_log_prints_a_line_only_when_counts_change_and_rate_limited() -> None:
    stream, clock = io.StringIO(), Clock()
    line = StatusLine("squares", stream, is_tty=False, clock=clock)
    line.update({"ready": 2})
    assert stream.getvalue() == "squares: 0/2 done, 2 ready  0:00\n"
    clock.advance(PLAIN_INTERVAL + 1)
    line.update({"ready": 2})  # unchanged: nothing
    assert stream.getvalue().count("\n") == 1
    clock.advance(1)
    line.update({"running": 1, "ready": 1})  # changed, but too soon after the last look
    assert stream.getvalue().count("\n") == 1 and not line.due()
    clock.advance(PLAIN_INTERVAL)
    assert line.due()
    line.update({"running": 1, "ready": 1})
    assert stream.getvalue().splitlines()[-1] == "squares: 0/2 done, 1 running, 1 ready  0:22"
    clock.advance(1)
    line.update({"running": 1, "failed": 1}, [("/ws/jobs/t/1", "/ws/jobs/t/1/t.err")])  # news: at once
    assert stream.getvalue().splitlines()[-2:] == [
        "squares: failed: t/1; see /ws/jobs/t/1/t.err",
        "squares: 0/2 done, 1 running, 1 failed  0:23",
    ]
    clock.advance(1)
    line.close({"done": 1, "failed": 1}, [("/ws/jobs/t/1", "/ws/jobs/t/1/t.err")])
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "squares: 2 job(s) in 0:24: 1/2 done, 1 failed"
    assert stream.getvalue().count("failed: t/1;") == 1  # announced once, not repeated
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()  # plain text for CI logs


def test_terminal_detection_and_context_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert StatusLine(stream=io.StringIO()).is_tty is False
    assert StatusLine(stream=Terminal()).is_tty is True
    monkeypatch.setenv("TERM", "dumb")
    assert StatusLine(stream=Terminal()).is_tty is False
    stream = io.StringIO()
    with StatusLine(stream=stream, is_tty=False) as line:
        line.update({"done": 2, "running": 0})
    assert stream.getvalue().splitlines() == ["2/2 done  0:00", "2 job(s) in 0:00: 2/2 done"]


def test_a_broken_stream_does_not_stop_the_experiment() -> None:
    stream = io.StringIO()
    stream.close()
    line = StatusLine("x", stream, is_tty=True)
    line.update({"done": 1}, [("/j", "/j/x.err")])
    line.close()
    assert line.closed
