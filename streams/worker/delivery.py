"""Kafka outputs that survive a broker outage: records are re-sent until Kafka acknowledges them.

The pipeline hands every output record (alert, dead letter, reroute, device observation,
changelog entry) to :func:`send_records`, which batches them per topic partition and returns
what is in flight. :func:`deliver` waits for the acknowledgements and re-sends the records of
every batch that failed with a retriable error (broker down, leader moving, timeout), with
exponential backoff and jitter, until all are acknowledged. Source offsets are committed only
after that, so a worker that waits out an outage loses nothing; a record whose acknowledgement
was lost may be written twice, which every consumer of these topics tolerates (stable alert ids,
dead letters identified by their source position, idempotent changelog writes).

Errors that retrying cannot fix (authorisation, record too large) raise at once: loudly, not
by looping forever.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from sinks.base import RetryPolicy
from streams.engine.partitioner import home_partition

# topic, partition (None: the producer's partitioner on the key), key, value
OutRecord = tuple[str, int | None, bytes | None, bytes | None]  # value None: a tombstone (a deleted key)


def retriable(exc: BaseException) -> bool:
    """Whether waiting and re-sending can succeed (by exception type, never by message text)."""
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError | asyncio.TimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


@dataclass
class InFlight:
    """Batches handed to the producer and the futures of their acknowledgements."""

    batches: list[tuple[list[OutRecord], asyncio.Future[Any] | None]] = field(default_factory=list)
    failed_to_send: BaseException | None = None

    def __len__(self) -> int:
        return sum(len(records) for records, _ in self.batches)

    def extend(self, other: InFlight) -> None:
        self.batches += other.batches
        self.failed_to_send = self.failed_to_send or other.failed_to_send


async def send_records(producer: AIOKafkaProducer, records: Sequence[OutRecord],
                       partition_of: Callable[[bytes, int], int] = home_partition) -> InFlight:
    """Hand records to the producer in per-partition batches; a send that raises a retriable
    error leaves its records in the result without a future, to be re-sent by :func:`deliver`.
    A keyed record without a partition goes where the producer's default partitioner would put
    it (murmur2 of the key over the topic's partitions), in a batch: ``producer.send`` costs
    several times more per record (alerts are sent this way, one to a few per user run)."""
    inflight = InFlight()
    grouped: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
    counts: dict[str, int] = {}  # partitions per topic, from the producer's metadata
    for record in records:
        topic, partition, key = record[0], record[1], record[2]
        if partition is None and key is not None:
            if topic not in counts:  # asked once per topic and call, also when it fails
                counts[topic] = await _partition_count(producer, topic)
            if counts[topic]:
                partition = partition_of(key, counts[topic])
        if partition is None:  # unkeyed, or no metadata (the send fails and is retried by ``deliver``)
            await _send_one(producer, record, inflight)
            continue
        grouped[(topic, partition)].append(record)
    for (topic, partition), group in grouped.items():
        batch = producer.create_batch()
        in_batch: list[OutRecord] = []
        for record in group:
            if batch.append(key=record[2], value=record[3], timestamp=None) is None:
                if in_batch:
                    await _send_batch(producer, batch, topic, partition, in_batch, inflight)
                batch, in_batch = producer.create_batch(), []
                if batch.append(key=record[2], value=record[3], timestamp=None) is None:  # larger than a batch
                    await _send_one(producer, record, inflight)
                    continue
            in_batch.append(record)
        if in_batch:
            await _send_batch(producer, batch, topic, partition, in_batch, inflight)
    return inflight


async def _partition_count(producer: AIOKafkaProducer, topic: str) -> int:
    """The topic's partition count as the producer knows it (0 if it cannot learn it now)."""
    try:
        return len(await producer.partitions_for(topic))
    except KafkaError as exc:
        if not retriable(exc):
            raise
        return 0


async def _send_batch(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int, records: list[OutRecord], inflight: InFlight
) -> None:
    try:
        inflight.batches.append((records, await producer.send_batch(batch, topic, partition=partition)))
    except KafkaError as exc:
        if not retriable(exc):
            raise
        inflight.batches.append((records, None))
        inflight.failed_to_send = exc


async def _send_one(producer: AIOKafkaProducer, record: OutRecord, inflight: InFlight) -> None:
    topic, partition, key, value = record
    try:
        inflight.batches.append(([record], await producer.send(topic, value, key=key, partition=partition)))
    except KafkaError as exc:
        if not retriable(exc):
            raise
        inflight.batches.append(([record], None))
        inflight.failed_to_send = exc


async def deliver(
    producer: Callable[[], Any],
    inflight: InFlight,
    policy: RetryPolicy,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_retry: Callable[[int, BaseException], None] = lambda attempt, exc: None,
    rng: random.Random | None = None,
    partition_of: Callable[[bytes, int], int] = home_partition,
) -> dict[tuple[str, int], int]:
    """Wait until every record in flight is acknowledged, re-sending failed batches; return the
    last offset acknowledged per (topic, partition).

    ``producer`` is an async callable returning the producer to re-send with. Raises the last
    error if ``should_stop()`` turns true while records are still undelivered.
    """
    rng = rng or random.Random()
    attempt = 0
    acked: dict[tuple[str, int], int] = {}
    while True:
        failed: list[OutRecord] = []
        last: BaseException | None = inflight.failed_to_send
        for records, fut in inflight.batches:
            if fut is None:
                failed += records
                continue
            try:
                meta = await fut
            except KafkaError as exc:
                if not retriable(exc):
                    raise
                failed += records
                last = exc
                continue
            offset = getattr(meta, "offset", None)
            if isinstance(offset, int):  # a batch's metadata carries its first offset
                tp = (records[0][0], meta.partition)
                acked[tp] = max(acked.get(tp, -1), offset + len(records) - 1)
        if not failed:
            return acked
        assert last is not None
        if should_stop():
            raise last
        on_retry(attempt, last)
        await asyncio.sleep(policy.delay(attempt, rng))
        attempt += 1
        inflight = await send_records(await producer(), failed, partition_of)
