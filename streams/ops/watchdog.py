"""Liveness of consumption: notice a partition whose lag stops moving while the worker is free.

Kafka clients recover from most faults on their own, but not from all (a consumer that came
back from a broker outage or a rebalance and no longer fetches, for instance). The watchdog
keeps, per assigned topic partition, the committed offset and when it last moved. A partition
is *stalled* when it has lag (end offset > committed) and its committed offset has not moved
for ``stall_s`` seconds although the worker could have processed it: no rebalance in progress
and no flush blocked on an unavailable sink (those are back-pressure, handled by retries).
The worker then exits with ``streams.ops.exit_codes.STALLED`` and its supervisor starts a fresh one, which
resumes from the committed offsets and the changelogs — crash-only recovery, nothing lost.

Pure logic with an injected clock; the Kafka queries live in the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass
class Stall:
    topic: str
    partition: int
    committed: int
    end: int
    since_s: float


@dataclass
class Watchdog:
    stall_s: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[TopicPartition, tuple[int, float]] = field(default_factory=dict)

    def excuse(self) -> None:
        """The worker could not make progress just now (rebalance, blocked flush): restart the clocks."""
        now = self.clock()
        self._seen = {tp: (committed, now) for tp, (committed, _) in self._seen.items()}

    def observe(self, committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> list[Stall]:
        """Record one observation of the assigned partitions; return those that are stalled."""
        now = self.clock()
        seen: dict[TopicPartition, tuple[int, float]] = {}
        stalled: list[Stall] = []
        for tp, end in ends.items():
            offset = committed.get(tp, 0)
            before = self._seen.get(tp)
            since = before[1] if before is not None and before[0] == offset else now
            seen[tp] = (offset, since)
            if end > offset and now - since >= self.stall_s:
                stalled.append(Stall(tp[0], tp[1], offset, end, now - since))
        self._seen = seen
        return stalled
