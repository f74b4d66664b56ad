"""The collector's Kafka side: one idempotent producer (``acks=all``) with vitals' connection settings
(TLS, SASL: streams/kafka/client.py), records sent and every acknowledgement awaited, and whether Kafka is
up now — a request is answered 200 only once Kafka acknowledged all its records, 503 while it cannot be."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.collect.convert import KafkaRecord
from streams.collect.metrics import CollectMetrics
from streams.config.settings import KafkaSettings
from streams.engine.partitioner import home_partition
from streams.kafka.client import new_producer

log = logging.getLogger("vitals.collect")
PROBE_EVERY_S = 1.0


class Unavailable(Exception):
    """Kafka did not acknowledge the records in time, or is known to be down: answer 503."""


class Delivery:
    def __init__(self, kafka: KafkaSettings, metrics: CollectMetrics, timeout_s: float) -> None:
        self.kafka = kafka
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.producer: AIOKafkaProducer | None = None
        self.up = False
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # acks=all and idempotence: a record the broker acknowledged is on every in-sync replica, and the
        # producer's own retries after a lost answer write it once
        self.producer = new_producer(self.kafka, acks="all", enable_idempotence=True, linger_ms=2,
                                     max_batch_size=1 << 20, request_timeout_ms=30_000)
        await self.producer.start()
        self._set_up(True)
        self._probe = asyncio.create_task(self._watch(), name="collect-kafka-probe")

    async def stop(self) -> None:
        """Flush what was sent (every request answered has had its acknowledgements), then close."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self.producer is not None:
            await self.producer.stop()  # flushes the records still pending

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            (log.info if up else log.warning)("Kafka %s", "reachable: accepting requests" if up else
                                               "unavailable: answering 503 until it is back")
            # while it is down, aiokafka logs each failed connection (several a second): said once above instead
            logging.getLogger("aiokafka").setLevel(logging.NOTSET if up else logging.CRITICAL)
        self.up = up
        self.metrics.kafka_up.set(1 if up else 0)

    async def deliver(self, records: Sequence[KafkaRecord]) -> None:
        """Send ``records`` and wait until Kafka acknowledged every one; :class:`Unavailable` otherwise (some
        may still be written later: the SDK's retry then repeats them, and the worker counts an event once)."""
        if not self.up or self.producer is None:
            raise Unavailable("Kafka is unavailable")
        if not records:
            return
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                for (topic, partition), items in (await self._by_partition(records)).items():
                    futures += await self._send(topic, partition, items)
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            for future in futures:  # their outcome is no longer awaited: no "exception never retrieved"
                future.add_done_callback(_consume)
            log.warning("records not acknowledged within %.0f s (%s): answering 503", self.timeout_s,
                        type(exc).__name__)
            self._set_up(False)
            raise Unavailable(type(exc).__name__) from None
        self.metrics.produce.observe(time.perf_counter() - started)

    async def _by_partition(self, records: Sequence[KafkaRecord]
                            ) -> dict[tuple[str, int], list[tuple[bytes | None, bytes]]]:
        """The records by partition: a keyed one on its key's (Kafka's murmur2, in C: the producer's own
        partitioner is pure Python), one without a key (a dead letter) on any."""
        assert self.producer is not None
        counts: dict[str, int] = {}
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for topic, key, value in records:
            count = counts.get(topic)
            if count is None:
                count = counts[topic] = len(await self.producer.partitions_for(topic))
            partition = home_partition(key, count) if key is not None else random.randrange(count)
            grouped.setdefault((topic, partition), []).append((key, value))
        return grouped

    async def _send(self, topic: str, partition: int, items: list[tuple[bytes | None, bytes]]
                    ) -> list[asyncio.Future[Any]]:
        """One partition's records, each appended to the producer's open batch of the partition (shared by the
        requests in flight: an idempotent producer has one batch per partition in flight at a time, so
        batches of their own per request would queue behind each other)."""
        assert self.producer is not None
        return [await self.producer.send(topic, value, key=key, partition=partition) for key, value in items]

    async def reachable(self) -> bool:
        """Whether a broker of the cluster accepts a connection now (aiokafka reconnects as needed)."""
        producer = self.producer
        if producer is None:
            return False
        client = producer.client
        try:
            async with asyncio.timeout(5):
                for broker in client.cluster.brokers():
                    if await client.ready(broker.nodeId):
                        return True
                return bool(await client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False

    async def _watch(self) -> None:
        """Probe Kafka every second: the collector takes requests again once it is back, and ``/health``
        says whether it is."""
        while True:
            self._set_up(await self.reachable())
            await asyncio.sleep(PROBE_EVERY_S)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
