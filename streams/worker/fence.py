"""The alert fence: alerts a replay would send again, held back.

Alerts leave as they fire (latency); the state that fired them reaches the changelog with the next
flush job. A worker that dies in between has sent alerts its restored state does not know of, and
the replay of the uncommitted messages fires them again. To keep such duplicates rare (SPEC section
4), every flush job stamps the meta record of each partition it writes with a wall-clock time
(``alerts_after``) before which every alert a replay from that state could fire again was sent: the
job's take time, or earlier while this worker is itself replaying (the alerts it holds back were
sent by a worker before it, at their record's time). A worker that rebuilds partitions reads the
alerts topic from the earliest stamp to its end and holds their ``(alert_id, status)`` here; the
pipeline does not send those again (ClickHouse still gets every alert: its rows are idempotent).
Once processing has passed the source offsets the topics ended at when the fence was read, nothing
can match any more and the fence is emptied.

Never a lost alert: only alerts read back from the topic are held back. Bounded: at most
``FENCE_MAX`` held (the oldest go first) and at most that many read per alerts-topic partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson
from xxhash import xxh3_128_intdigest

from schemas.alerts import Alert
from streams.engine.state import NONE

log = logging.getLogger("vitals.fence")

FENCE_MARGIN_MS = 10_000  # a job's stamp is this much before its take (clock steps, producer clocks)
FENCE_MAX = 200_000  # alerts held at most (~16 MiB)

TopicPartition = tuple[str, int]


class FenceSource(Protocol):
    """What the fence reads from Kafka (streams/worker/app.py gives the worker's)."""

    async def alerts_since(self, since_ms: int | None, per_partition: int) -> list[tuple[bytes | None, int]]:
        """(value, record timestamp) of the alerts topic's records from ``since_ms`` (None: the
        beginning), at most the last ``per_partition`` of each partition."""
        ...

    async def replay_ends(self, partitions: set[int]) -> dict[TopicPartition, int]:
        """The end offsets of the source topics' ``partitions`` (events, reroute, device observations)
        where the group's committed offset is below the end: what a replay processes again ends there."""
        ...


def alert_token(alert_id: str, status: str) -> int:
    return xxh3_128_intdigest(f"{alert_id}\x1f{status}".encode())


class AlertFence:
    """Alerts known to be on the alerts topic already (token -> record timestamp), each held back once."""

    def __init__(self, cap: int = FENCE_MAX) -> None:
        self.cap = cap
        self.held: dict[int, int] = {}  # insertion-ordered: the oldest are dropped first
        self.since = NONE  # the earliest time read from
        self.suppressed = 0

    def __len__(self) -> int:
        return len(self.held)

    def add_records(self, records: Iterable[tuple[bytes | None, int]], since_ms: int | None = None) -> int:
        """Hold the alerts of these alerts-topic records (value, timestamp), read from ``since_ms``
        (a record that is no alert is skipped)."""
        held, n = self.held, 0
        for value, ts in records:
            try:
                doc = orjson.loads(value or b"")
                token = alert_token(doc["alert_id"], doc["status"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not vitals' (the fence only ever holds back what it recognises)
            held[token] = ts
            n += 1
        while len(held) > self.cap:
            del held[next(iter(held))]
        start = 0 if since_ms is None else since_ms
        self.since = start if self.since == NONE else min(self.since, start)
        return n

    def floor(self) -> int | None:
        """The earliest record time of an alert still held (not before the time read from); None: none held."""
        if not self.held:
            return None
        return max(min(self.held.values()), self.since)

    def clear(self) -> None:
        self.held.clear()
        self.since = NONE

    def to_send(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        """The alerts not on the topic yet; a held one is released as it is matched (it fires once
        in a replay)."""
        held = self.held
        if not held:
            return alerts
        out = []
        for alert in alerts:
            token = alert_token(alert.alert_id, alert.status)
            if token in held:
                del held[token]
                self.suppressed += 1
            else:
                out.append(alert)
        return out


class ReplayFence:
    """The fence of one worker: read when partitions are built, emptied when their replay is over,
    and the stamp each flush job writes into the partitions' meta records."""

    def __init__(self, source: FenceSource | None, cap: int = FENCE_MAX) -> None:
        self.source = source  # None: no fence (every replayed alert is sent again)
        self.alerts = AlertFence(cap)
        self.replay_ends: dict[TopicPartition, int] = {}  # where the topics ended when the fence was read

    async def extend(self, stamps: Sequence[int], partitions: set[int]) -> None:
        """Partitions built from their recovered state, stamped as their last flush job wrote them
        (NONE: never flushed): hold back the alerts sent since the earliest stamp, until processing
        has passed where their source partitions end now."""
        if self.source is None or not stamps:
            return
        since = None if NONE in stamps else min(stamps)
        started = time.perf_counter()
        records = await self.source.alerts_since(since, self.alerts.cap)
        n = self.alerts.add_records(records, since)
        for tp, end in (await self.source.replay_ends(partitions)).items():
            self.replay_ends[tp] = max(end, self.replay_ends.get(tp, end))
        log.info("alert fence: %d alerts sent since %s held back from replays (read in %.2fs)", n,
                 "the beginning" if since is None else time.strftime("%H:%M:%S", time.gmtime(since / 1000)),
                 time.perf_counter() - started)

    def to_send(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        return self.alerts.to_send(alerts)

    @property
    def suppressed(self) -> int:
        return self.alerts.suppressed

    def forget(self, assigned: set[int]) -> None:
        """Partitions that left this worker are not replayed here."""
        self.replay_ends = {tp: end for tp, end in self.replay_ends.items() if tp[1] in assigned}

    def stamp(self, offsets: dict[TopicPartition, int], taken_ms: int) -> int:
        """A flush job taken at ``taken_ms`` that commits ``offsets``: its partitions' stamp. A replay
        that reached where the topics ended empties the fence (nothing can match any more)."""
        ends = self.replay_ends
        for tp, offset in offsets.items():
            if offset >= ends.get(tp, offset + 1):
                del ends[tp]
        if not ends and len(self.alerts):
            self.alerts.clear()
        stamp = taken_ms - FENCE_MARGIN_MS
        floor = self.alerts.floor()
        return stamp if floor is None else min(stamp, floor)
