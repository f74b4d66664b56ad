"""Crash points for fault-injection tests, off unless ``VITALS_FAULTS_FILE`` is set.

The file holds a JSON list of ``[point, n]`` pairs. A worker takes the first pair when it
starts and, the n-th time it passes that point, removes the pair from the file and dies at once
(``os._exit(137)``, as after SIGKILL: no flush, no commit, no cleanup). Its supervisor starts a
new worker, which takes the next pair; when the list is empty the worker runs normally. So one
test drives a worker through a planned sequence of crashes, each at an exact place.

Points (in the order a batch passes them):

* ``batch`` — after the engine applied a batch, before anything of it left the process;
* ``taken`` — a flush job was just taken (state drained, alerts of the last batches maybe in flight);
* ``kafka`` — after alerts, dead letters, reroutes and device observations were delivered;
* ``clickhouse`` — in the middle of a ClickHouse insert (from the sink thread);
* ``inserted`` — after the ClickHouse insert, before the changelogs;
* ``gated`` — after the event outcome gates reached the changelog, before the changed states
  (streams/worker/outcome_gates.py);
* ``changelog`` — after the changelogs were delivered, before the source offsets are acknowledged;
* ``recovery`` — while the tables are being restored from their changelogs.

One more kind of plan entry is an outage, not a crash: ``["clickhouse_outage", seconds]`` makes every
ClickHouse write of the sinks fail as the retriable outage it would be (``SinkBackpressure``: the
flush job retries it) from the first write on, for that many seconds; the engine itself stays up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sinks.base import SinkBackpressure
from streams.ops.exit_codes import KILLED

log = logging.getLogger("vitals.faults")

POINTS = ("batch", "taken", "kafka", "clickhouse", "inserted", "gated", "changelog", "recovery")
OUTAGES = ("clickhouse_outage",)


class Faults:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.point: str | None = None
        self.after = 0
        self.passed = 0
        self.until = 0.0  # the end of an outage (time.monotonic)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        raw = env.get("VITALS_FAULTS_FILE")
        return cls(Path(raw) if raw else None)

    def load(self) -> None:
        """Take the first planned crash (call once at startup)."""
        if self.path is None or not self.path.exists():
            return
        plan = json.loads(self.path.read_text())
        if plan:
            point, after = plan[0]
            if point not in POINTS + OUTAGES:
                raise ValueError(f"unknown fault point {point!r}; known: {', '.join(POINTS + OUTAGES)}")
            self.point, self.after = str(point), int(after)
            log.warning("fault injection: this worker dies at pass %d of %r", self.after, self.point)

    def outage(self, point: str) -> None:
        """Raise the retriable error of an outage of ``point`` while one is planned and lasts."""
        if point != self.point:
            return
        now = time.monotonic()
        if not self.passed:  # the outage begins at the first write
            self.passed, self.until = 1, now + self.after
            log.warning("fault injection: a %s of %d s begins", point, self.after)
        if now < self.until:
            raise SinkBackpressure(min(1.0, self.until - now))

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.passed += 1
        if self.passed < self.after:
            return
        assert self.path is not None
        plan = json.loads(self.path.read_text())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan[1:]))
        tmp.replace(self.path)
        log.warning("fault injection: dying at %r", point)
        if point == "clickhouse":  # die while the insert is running, not before it
            threading.Timer(0.002, os._exit, (KILLED,)).start()
            return
        os._exit(KILLED)
