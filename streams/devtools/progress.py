"""Progress for long commands: a live line on a terminal, plain log lines otherwise.

A line shows what is done (of the total), the rate, the ETA from the recent rate (the last
``window_s`` seconds, so a slow start does not skew it) and any extra text such as the lag.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "events",
        enabled: bool = True,
        stream: TextIO = sys.stderr,
        every_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = 10.0,
    ) -> None:
        self.label, self.total, self.unit, self.enabled, self.stream = label, total, unit, enabled, stream
        # rewriting a line needs a terminal that understands escape codes: a file, a pipe or a dumb
        # terminal (TERM=dumb, as in editors' shells) gets plain lines
        self.tty = stream.isatty() and os.environ.get("TERM", "") != "dumb"
        self.clock = clock
        self.started = clock()
        self.last_print = float("-inf")
        self.every_s = every_s if not self.tty else 0.2
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque([(self.started, 0)])
        self.final_shown = False

    def recent_rate(self, now: float, done: int) -> float:
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0

    def line(self, done: int, now: float, extra: str = "") -> str:
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        recent = self.recent_rate(now, done)
        text = f"{self.label}: {done:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * min(done, self.total) / self.total:.0f}%)"
        text += f" {rate:,.0f} {self.unit}/s"
        if self.total and done < self.total:
            text += f" ETA {(self.total - done) / recent:,.0f}s" if recent > 0 else " ETA ?"
        if extra:
            text += f" {extra}"
        return text

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = self.clock()
        final = self.total is not None and done >= self.total
        if final and self.final_shown:
            return
        if not final and now - self.last_print < self.every_s:
            self.recent_rate(now, done)
            return
        self.last_print = now
        self.final_shown = final
        self._write(self.line(done, now, extra))

    def _write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, extra: str = "") -> None:
        """The final line (if not shown yet), with the elapsed time."""
        if not self.enabled:
            return
        now = self.clock()
        if not self.final_shown:
            done = self.total if self.total is not None else self.samples[-1][1]
            self._write(self.line(done, now, extra) + f" in {now - self.started:,.1f}s")
            self.final_shown = True
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
