"""Producing generated histories into Kafka (batched, explicit partitions)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from streams.generator import History
from streams.kafka_io import new_producer, send_many
from streams.progress import Progress
from streams.settings import Settings


async def wait_for_partitions(producer: AIOKafkaProducer, topic: str, partitions: int, timeout_s: float = 30) -> None:
    """A topic created a moment ago may not be in every broker's metadata yet: wait for all its partitions."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(await producer.partitions_for(topic)) < partitions:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topic {topic} did not show {partitions} partitions within {timeout_s:.0f}s")
        await producer.client.force_metadata_update()
        await asyncio.sleep(0.2)


async def produce_history(settings: Settings, history: History, progress: bool = False, chunk: int = 20_000) -> int:
    producer = new_producer(settings.kafka, linger_ms=20)
    await producer.start()
    shown = Progress("produce", total=len(history.messages), unit="msg", enabled=progress)
    try:
        await wait_for_partitions(producer, settings.events_topic, history.config.partitions)
        msgs = history.messages
        for start in range(0, len(msgs), chunk):
            part = msgs[start : start + chunk]
            futures = await send_many(producer, settings.events_topic, [(m.partition, m.key, m.value) for m in part])
            await asyncio.gather(*futures)
            shown.update(start + len(part))
        shown.done()
    finally:
        await producer.stop()
    return len(history.messages)

