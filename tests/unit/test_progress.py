"""Progress lines: plain lines off a terminal, one rewritten line on one; rate, ETA, final line once."""

from __future__ import annotations

import io

import pytest

from streams.devtools.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_with_rate_eta_and_extra() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("process", total=1000, unit="msg", stream=out, clock=clock)
    clock.t += 2
    p.update(200, extra="lag 800")
    clock.t += 1  # below the 2 s interval: no line
    p.update(300, extra="lag 700")
    clock.t += 1
    p.update(400, extra="lag 600")
    lines = out.getvalue().splitlines()
    assert lines == [
        "process: 200/1,000 (20%) 100 msg/s ETA 8s lag 800",
        "process: 400/1,000 (40%) 100 msg/s ETA 6s lag 600",
    ]


def test_eta_uses_the_recent_rate() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("replay", total=10_000, stream=out, clock=clock, window_s=10)
    clock.t += 100  # a slow start: nothing for 100 s
    p.update(0)
    for _ in range(5):  # then 200 events/s
        clock.t += 5
        p.update(p.samples[-1][1] + 1000)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("replay: 5,000/10,000 (50%) 40 events/s")
    assert "ETA 25s" in last


def test_final_line_once_and_terminal_rewrites_in_place() -> None:
    out, clock = Terminal(), Clock()
    p = Progress("produce", total=10, unit="msg", stream=out, clock=clock)
    clock.t += 1
    p.update(10)
    p.update(10)
    p.done()
    text = out.getvalue()
    assert text.count("produce: 10/10") == 1
    assert text.startswith("\r\x1b[2K") and text.endswith("\n")


def test_done_without_updates_reports_elapsed_and_disabled_prints_nothing() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("generate", total=None, stream=out, clock=clock)
    clock.t += 3
    p.done()
    assert out.getvalue() == "generate: 0 0 events/s in 3.0s\n"
    quiet = io.StringIO()
    q = Progress("x", total=5, enabled=False, stream=quiet)
    q.update(5)
    q.done()
    assert quiet.getvalue() == ""


def _run(out: io.StringIO) -> str:
    clock = Clock()
    p = Progress("produce", total=100, unit="msg", stream=out, clock=clock)
    for done in (10, 50, 100):
        clock.t += 3
        p.update(done, extra="lag 5")
    p.done()
    return out.getvalue()


def test_no_escape_codes_off_a_terminal_or_on_a_dumb_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    plain = _run(io.StringIO())
    assert "\x1b" not in plain and "\r" not in plain and len(plain.splitlines()) == 3
    assert "\x1b[2K" in _run(Terminal())  # the control: a terminal does get the line rewritten
    monkeypatch.setenv("TERM", "dumb")
    assert _run(Terminal()) == plain
