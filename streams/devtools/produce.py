"""Producing generated histories into Kafka (batched, explicit partitions)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.config.settings import Settings
from streams.devtools.generator import History, Message
from streams.devtools.progress import Progress
from streams.kafka.client import new_producer


async def wait_for_partitions(producer: AIOKafkaProducer, topic: str, partitions: int, timeout_s: float = 30) -> None:
    """A topic created a moment ago may not be in every broker's metadata yet: wait for all its partitions."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(await producer.partitions_for(topic)) < partitions:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} did not show {partitions} partitions within {timeout_s:.0f}s")
        await producer.client.force_metadata_update()
        await asyncio.sleep(0.2)


async def send_messages(producer: AIOKafkaProducer, topic: str, messages: list[Message]) -> list[asyncio.Future[Any]]:
    """Send ``messages`` in per-partition batches (``kafka_io.send_many`` with each record's
    timestamp: ``Message.timestamp``, or the producer's clock where None); return the delivery futures."""
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for m in messages:
        by_partition[m.partition].append(m)
    futures: list[asyncio.Future[Any]] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for m in items:
            if batch.append(key=m.key, value=m.value, timestamp=m.timestamp) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=m.key, value=m.value, timestamp=m.timestamp) is None:
                    futures.append(await producer.send(topic, m.value, key=m.key, partition=partition,
                                                       timestamp_ms=m.timestamp))
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def produce_history(settings: Settings, history: History, progress: bool = False, chunk: int = 20_000) -> int:
    producer = new_producer(settings.kafka, linger_ms=20)
    shown = Progress("produce", total=len(history.messages), unit="msg", enabled=progress)
    try:
        await producer.start()  # inside: a failed start is stopped too
        await wait_for_partitions(producer, settings.events_topic, history.config.partitions)
        msgs = history.messages
        for start in range(0, len(msgs), chunk):
            part = msgs[start : start + chunk]
            futures = await send_messages(producer, settings.events_topic, part)
            await asyncio.gather(*futures)
            shown.update(start + len(part))
        shown.done()
    finally:
        await producer.stop()
    return len(history.messages)

