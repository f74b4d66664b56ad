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

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson
from aiokafka.errors import KafkaError
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
    """The fence of one worker: read in the background when partitions are built (processing goes on;
    an alert to send waits for it), emptied when their replay is over, and the stamp each flush job
    writes into the partitions' meta records."""

    def __init__(self, source: FenceSource | None, cap: int = FENCE_MAX) -> None:
        self.source = source  # None: no fence (every replayed alert is sent again)
        self.alerts = AlertFence(cap)
        self.replay_ends: dict[TopicPartition, int] = {}  # where the topics ended when the fence was read
        self.processed: dict[TopicPartition, int] = {}  # the offsets the flush jobs taken so far commit
        self.reads: list[asyncio.Future[None]] = []
        self.pending_since: int | None = None  # the earliest time a read in progress reads from (0: all)

    def start(self, stamps: Sequence[int], partitions: set[int]) -> None:
        """Partitions built from their recovered state, stamped as their last flush job wrote them: hold
        back the alerts sent since the earliest stamp, until processing has passed where their source
        partitions end now. Read in the background (:meth:`ready`). A partition never flushed (NONE) is
        not fenced: only a worker that died before its first flush sent alerts of it (duplicates
        possible then; a fresh worker reads nothing)."""
        stamps = [stamp for stamp in stamps if stamp != NONE]  # a partition never flushed: nothing to fence
        if self.source is None or not stamps:
            return
        since = min(stamps)
        self.pending_since = since if self.pending_since is None else min(self.pending_since, since)
        self.reads.append(asyncio.ensure_future(self._read(self.source, since, partitions)))

    async def _read(self, source: FenceSource, since: int | None, partitions: set[int]) -> None:
        started = time.perf_counter()
        n = self.alerts.add_records(await source.alerts_since(since, self.alerts.cap), since)
        for tp, end in (await source.replay_ends(partitions)).items():
            if self.processed.get(tp, -1) < end:  # (a job taken meanwhile may have passed it)
                self.replay_ends[tp] = max(end, self.replay_ends.get(tp, end))
        log.info("alert fence: %d alerts sent since %s held back from replays (read in %.2fs)", n,
                 "the beginning" if since is None else time.strftime("%H:%M:%S", time.gmtime(since / 1000)),
                 time.perf_counter() - started)

    async def ready(self) -> None:
        """Wait for the reads in progress (a failed one is an optimisation lost: duplicates possible)."""
        while self.reads:
            read = self.reads.pop(0)
            try:
                await read
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("could not read the alerts sent before this worker took its partitions (%s): a "
                            "replay may send some again", type(exc).__name__)
        self.pending_since = None

    async def close(self) -> None:
        for read in self.reads:
            read.cancel()
        await asyncio.gather(*self.reads, return_exceptions=True)
        self.reads.clear()

    async def to_send(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        await self.ready()
        return self.alerts.to_send(alerts)

    @property
    def suppressed(self) -> int:
        return self.alerts.suppressed

    def forget(self, assigned: set[int]) -> None:
        """Partitions that left this worker are not replayed here."""
        self.replay_ends = {tp: end for tp, end in self.replay_ends.items() if tp[1] in assigned}
        self.processed = {tp: off for tp, off in self.processed.items() if tp[1] in assigned}

    def stamp(self, offsets: dict[TopicPartition, int], taken_ms: int) -> int:
        """A flush job taken at ``taken_ms`` that commits ``offsets``: its partitions' stamp. A replay
        that reached where the topics ended empties the fence (nothing can match any more)."""
        ends, processed = self.replay_ends, self.processed
        for tp, offset in offsets.items():
            processed[tp] = max(offset, processed.get(tp, offset))
            if offset >= ends.get(tp, offset + 1):
                del ends[tp]
        if not ends and not self.reads and len(self.alerts):
            self.alerts.clear()
        stamp = taken_ms - FENCE_MARGIN_MS
        floor = self.alerts.floor()
        if self.pending_since is not None:  # a read in progress: what it will hold is not known yet
            floor = self.pending_since if floor is None else min(floor, self.pending_since)
        return stamp if floor is None else min(stamp, floor)
