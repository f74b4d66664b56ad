"""Segment sizes as Prometheus gauges (SPEC section 7): ``vitals_segment_users{app_id, dimension, segment}``,
the users whose current segment of the dimension it is.

Design: a periodic query of ``user_segments FINAL`` grouped by (app label, dimension, segment), run off the
hot path (the caller runs :meth:`SegmentGauges.refresh` in the flush executor, from the worker's slow-gauges
timer; it queries at most every ``every_s`` seconds; ``vitals worker`` also reads it once at startup, before
consuming, streams/cli/worker.py). The table is the one source of truth every worker
writes, so the sizes are exact after a restart (nothing to rebuild: the first refresh reads them) and with
several workers (each worker exports the whole figure, not its partitions' share: aggregate across workers
with ``max``, never ``sum``; the dashboard does). Per-partition counts kept in state would be exact only
once every partition's counts were recovered and summed across workers, and would cost state on the hot path.

Labels are bounded: ``app_id`` through :class:`streams.ops.metrics.AppLabels` (configured apps by name, every
other app pooled as ``other``, in the query itself: the result has at most (configured apps + 1) x 12 rows),
``dimension`` and ``segment`` the names of SPEC section 7 (any other name: ``other``). A refresh sets
every app label's segments (0 for an empty one: a segment that emptied does not keep its last size).
Before the first refresh no series exist (a zero would be wrong after a restart)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from schemas.segments import DIMENSIONS
from streams.config.clickhouse_dsn import qualified
from streams.engine.segments import LIFECYCLE_SEGMENTS, POTENTIAL_SEGMENTS, VALUE_SEGMENTS
from streams.ops.metrics import OTHER_APP, AppLabels, Metrics

log = logging.getLogger(__name__)

BY_DIMENSION = dict(zip(DIMENSIONS, (LIFECYCLE_SEGMENTS, VALUE_SEGMENTS, POTENTIAL_SEGMENTS), strict=True))
SEGMENTS = frozenset(s for segments in BY_DIMENSION.values() for s in segments)
MAX_ROWS = 10_000  # a bound on the answer whatever the table holds (it holds far fewer groups)


class Reader(Protocol):
    """What the gauges need of :class:`sinks.clickhouse.ClickHouse`."""

    database: str

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...


def sizes_sql(database: str) -> str:
    """(app label, dimension, segment, users) of ``user_segments FINAL``; ``%(apps)s``: the configured apps."""
    return f"""
SELECT if(has(%(apps)s, app_id), toString(app_id), '{OTHER_APP}') AS app, toString(dimension) AS dim,
       toString(segment) AS seg, count() AS users
FROM {qualified(database, 'user_segments')} FINAL
GROUP BY app, dim, seg
ORDER BY app, dim, seg
LIMIT {MAX_ROWS}"""


def pool(rows: Iterable[Sequence[Any]], labels: AppLabels) -> dict[tuple[str, str, str], int]:
    """The query's rows summed per bounded label set (unknown dimensions dropped, unknown segments ``other``)."""
    out: dict[tuple[str, str, str], int] = {}
    for app, dim, seg, users in rows:
        if dim not in DIMENSIONS:
            continue
        key = (labels(str(app)), str(dim), str(seg) if seg in SEGMENTS else "other")
        out[key] = out.get(key, 0) + int(users)
    return out


class SegmentGauges:
    """``SegmentGauges(ch, metrics, labels).refresh()``: call it from a periodic task off the event loop
    (the worker's ``slow_gauges`` timer, in the flush executor, beside ``gauges.product_gauges``). It queries
    at most every ``every_s`` seconds (the first call queries) and returns whether it did. A failed query
    raises (the caller logs it, as for the product gauges) and is retried at the next call."""

    def __init__(self, ch: Reader, metrics: Metrics, labels: AppLabels, every_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ch, self.metrics, self.labels = ch, metrics, labels
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None
        # every label set a refresh sets: each app label's segments of SPEC section 7 (0 when empty)
        self._space = {(app, dim, seg) for app in labels.values for dim, segs in BY_DIMENSION.items()
                       for seg in segs}

    def refresh(self) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        configured = sorted(v for v in self.labels.values if v != OTHER_APP)
        rows = self.ch.query(sizes_sql(self.ch.database), {"apps": configured})
        sizes = pool(rows, self.labels)
        for key in self._space | sizes.keys():  # a segment emptied reads 0, not its last size
            self.metrics.segment_users.labels(*key).set(sizes.get(key, 0))
        self._space |= sizes.keys()  # an ``other`` segment once seen
        self._last = now
        return True
