"""Garbage collection at the pipeline's pace instead of Python's allocation counter.

Python collects its young generation every ``gen0`` net allocations of container objects. A
worker allocates them by the million (the rows, changelog records and device observations a
flush job takes, the records the consumer thread parses ahead), and most of them live until
their flush job is done: every automatic collection walks the live ones, and the survivors again
in the older generations. On the batch benchmark the collector ran 364 young and 33 middle
collections in a 21-second run, 2.5 s of it (bench/HISTORY.md, "Garbage collection").

Paced collection turns the automatic collector off. Reference counting frees what it always
freed (nearly everything: states, rows and records hold no cycles); the cycles that remain
(asyncio and Kafka client internals) wait for a full collection, made on the event loop once a
flush job is done and the last one is ``full_interval_s`` old. The trade is a longer pause at
that moment, measured by the ``vitals_gc_seconds`` histogram.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import Histogram


class PacedCollector:
    """A full collection every ``full_interval_s``, at the end of a flush job (see the module doc)."""

    def __init__(self, full_interval_s: float, seconds: Histogram,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.full_interval_s = full_interval_s
        self.seconds = seconds
        self.clock = clock
        self.last_full = clock()
        self.full_collections = 0

    def start(self) -> None:
        """Turn Python's automatic collection off (at worker startup, after ``gc.freeze``)."""
        gc.disable()
        self.last_full = self.clock()

    def after_flush(self) -> None:
        """Collect everything if the last full collection is ``full_interval_s`` old."""
        started = self.clock()
        if started - self.last_full < self.full_interval_s:
            return
        gc.collect()
        self.last_full = self.clock()
        self.full_collections += 1
        self.seconds.observe(self.last_full - started)
