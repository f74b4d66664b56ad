"""Progress for long commands: a live line on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
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
    ) -> None:
        self.label, self.total, self.unit, self.enabled, self.stream = label, total, unit, enabled, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_print = 0.0
        self.every_s = every_s if not self.tty else 0.2

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last_print < self.every_s and (self.total is None or done < self.total):
            return
        self.last_print = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        text = f"{self.label}: {done:,}"
        if self.total:
            text += f"/{self.total:,} ({100 * done / self.total:.0f}%)"
            if rate > 0 and done < self.total:
                text += f" ETA {(self.total - done) / rate:.0f}s"
        text += f" {rate:,.0f} {self.unit}/s"
        if extra:
            text += f" {extra}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, extra: str = "") -> None:
        if not self.enabled:
            return
        self.last_print = 0.0
        self.update(self.total or 0, extra) if self.total else None
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
