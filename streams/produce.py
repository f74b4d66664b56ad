"""Producing generated histories into Kafka (batched, explicit partitions)."""

from __future__ import annotations

import asyncio

from streams.generator import History
from streams.kafka_io import new_producer, send_many
from streams.progress import Progress
from streams.settings import Settings


async def produce_history(settings: Settings, history: History, progress: bool = False, chunk: int = 20_000) -> int:
    producer = new_producer(settings.kafka, linger_ms=20)
    await producer.start()
    shown = Progress("produce", total=len(history.messages), unit="msg", enabled=progress)
    try:
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

