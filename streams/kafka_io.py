"""Kafka plumbing shared by the worker, the generator, the CLI and the tests (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from streams.settings import ConfigError, KafkaSettings, Settings

Record = tuple[int, bytes | None, bytes]  # (partition, key, value)


_WORDS = [struct.Struct(f"<{n}I").unpack_from for n in range(64)]


def murmur2_32_py(data: bytes) -> int:
    """Kafka's murmur2 (unsigned), as ``aiokafka.partitioner.murmur2`` computes it, about twice as
    fast: the 4-byte words unpacked at once, fewer masks (``murmur2_32`` is the C one where the
    extension is built)."""
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in _WORDS[words](data) if words < 64 else struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * m) & 0xFFFFFFFF)
    extra = length & 3
    if extra:
        tail = length - extra
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


try:
    from streams._engine import elsewhere as _elsewhere_c
    from streams._engine import home_partition as _home_c
    from streams._engine import murmur2 as murmur2_32
except ImportError:  # the C extension is not built
    murmur2_32 = murmur2_32_py
    _home_c = _elsewhere_c = None


def home_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka)."""
    return (murmur2_32(key) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """user id -> home partition: murmur2 in C where the extension is built (no cache needed),
    else cached (bounded), as murmur2 in pure Python costs microseconds."""

    def __init__(self, partitions: int, limit: int = 1_000_000) -> None:
        self.partitions = partitions
        self.limit = limit
        self._cache: dict[str, int] = {}

    def __call__(self, user_id: str) -> int:
        if _home_c is not None:
            return _home_c(user_id, self.partitions)
        p = self._cache.get(user_id)
        if p is None:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            p = self._cache[user_id] = home_partition(user_id.encode(), self.partitions)
        return p

    def elsewhere(self, events: list[Any], partition: int) -> list[tuple[int, int]]:
        """(index, home partition) of the events (``Event``, or None: skipped) of one message
        whose user lives on another partition than ``partition``; the loop in C where built (the
        C loop needs ``streams.engine`` imported: it tells the extension the ``Event`` type)."""
        if _elsewhere_c is not None:
            return _elsewhere_c(events, partition, self.partitions)  # type: ignore[no-any-return]
        out = []
        user: str | None = None
        p = partition
        for index, event in enumerate(events):
            if event is None:
                continue
            if event.user_id != user:
                user = event.user_id
                p = self(user)
            if p != partition:
                out.append((index, p))
        return out


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile:
        ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return ctx


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap, "security_protocol": kafka.security_protocol}
    ctx = ssl_context(kafka)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if kafka.security_protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password,
        )
    return kwargs


async def diagnose_connection(kafka: KafkaSettings, timeout_s: float = 15) -> None:
    """Connect once to each bootstrap server; raise :class:`ConfigError` saying why when TLS or SASL
    is refused (aiokafka only logs that and reports "Unable to bootstrap"). The message names the
    server, protocol, mechanism and user, never the password."""
    who = f"user {kafka.sasl_username!r} ({kafka.sasl_mechanism})" if kafka.sasl_username else "the client"
    for server in kafka.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        kwargs = client_kwargs(kafka)
        kwargs.pop("bootstrap_servers")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs), timeout_s
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError) as exc:
            raise ConfigError(
                f"Kafka at {server.strip()} ({kafka.security_protocol}) rejected the credentials of {who}: "
                f"{type(exc).__name__}; check the SASL username, password and mechanism"
            ) from None
        except UnsupportedSaslMechanismError:
            raise ConfigError(
                f"Kafka at {server.strip()} does not enable SASL mechanism {kafka.sasl_mechanism}"
            ) from None
        except ssl.SSLError as exc:
            detail = getattr(exc, "verify_message", None) or exc.reason or type(exc).__name__
            raise ConfigError(
                f"TLS handshake with Kafka at {server.strip()} failed: {detail}; check ssl_cafile and the "
                f"security protocol ({kafka.security_protocol})"
            ) from None
        except (TimeoutError, OSError, KafkaConnectionError):  # unreachable: not a configuration error
            continue
        else:
            conn.close()


async def start_admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    """A started admin client; a refused TLS handshake or SASL login raises :class:`ConfigError`."""
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    try:
        await admin.start()
    except KafkaConnectionError:
        with contextlib.suppress(Exception):
            await admin.close()
        if kafka.security_protocol != "PLAINTEXT":
            await diagnose_connection(kafka)
        raise
    return admin


def new_producer(kafka: KafkaSettings, **extra: Any) -> AIOKafkaProducer:
    options: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": 1 << 20,
        "max_request_size": 8 << 20,
        "enable_idempotence": False,
    }
    options.update(extra)
    return AIOKafkaProducer(**client_kwargs(kafka), **options)


async def send_many(producer: AIOKafkaProducer, topic: str, records: Iterable[Record]) -> list[asyncio.Future[Any]]:
    """Send records in per-partition batches; return the delivery futures (await them all)."""
    by_partition: dict[int, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    for partition, key, value in records:
        by_partition[partition].append((key, value))
    futures: list[asyncio.Future[Any]] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send(topic, value, key=key, partition=partition))
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def topic_partitions(kafka: KafkaSettings, topic: str) -> int | None:
    return (await partition_counts(kafka, [topic])).get(topic)


async def partition_counts(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """Partitions of each of ``topics`` that exists (one admin client for all)."""
    admin = await start_admin(kafka)
    try:
        # describing a missing topic is a metadata request, which auto-creates it with the
        # broker's default partition count where auto-creation is on: look it up first
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        counts: dict[str, int] = {}
        for entry in await admin.describe_topics(wanted) if wanted else []:
            if entry.get("error_code", 0) == 0 and entry.get("partitions"):
                counts[entry["topic"]] = len(entry["partitions"])
        return counts
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, partitions: int) -> None:
    """Create the public and internal topics vitals uses (idempotent)."""
    kafka = settings.kafka
    names = [
        settings.events_topic,
        settings.alerts_topic,
        settings.dlq_topic,
        reroute_topic(settings),
        device_topic(settings),
    ]
    # the tables' changelogs too: Faust would create them as the worker starts, racing its own
    # consumer's first metadata request; a topic that request missed stays unknown to the
    # group's assignor until the next metadata refresh (5 minutes), so its partitions are not
    # assigned and a table partition that moves meanwhile is not recovered
    compacted = {changelog_topic(settings, table) for table in TABLES}
    admin = await start_admin(kafka)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, partitions, kafka.replication_factor,
                            topic_configs={"cleanup.policy": "compact"} if n in compacted else None)
                   for n in [*names, *sorted(compacted)] if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


TABLES = ("users", "devices")  # the Faust tables of streams/app.py


def changelog_topic(settings: Settings, table: str) -> str:
    """Faust's name for a table's changelog topic."""
    return f"{settings.app_id}-{table}-changelog"


def reroute_topic(settings: Settings) -> str:
    return f"{settings.app_id}-reroute"


def device_topic(settings: Settings) -> str:
    return f"{settings.app_id}-device-obs"


async def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    n = await topic_partitions(kafka, topic) or 0
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(n)]
        offsets = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: off for tp, off in offsets.items()}
    finally:
        # aiokafka's coordinator task can surface a CancelledError while stopping a consumer
        # without a group; the offsets are already read
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def group_offsets(kafka: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets, per (topic, partition)."""
    admin = await start_admin(kafka)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
    finally:
        await admin.close()


async def committed_offsets(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int]:
    return {p: offset for (t, p), offset in (await group_offsets(kafka, group)).items() if t == topic}


async def group_lag(kafka: KafkaSettings, group: str, topic: str) -> int:
    ends = await end_offsets(kafka, topic)
    committed = await committed_offsets(kafka, group, topic)
    return sum(end - committed.get(p, 0) for p, end in ends.items())


async def read_since(kafka: KafkaSettings, topic: str, since_ms: int | None, per_partition: int,
                     timeout_s: float = 60) -> list[tuple[bytes | None, int]]:
    """(value, timestamp) of ``topic``'s records with a timestamp at or after ``since_ms`` (None: from the
    beginning), at most the last ``per_partition`` of each partition, up to the end offsets at call time."""
    consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20)
    await consumer.start()
    values: list[tuple[bytes | None, int]] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(await topic_partitions(kafka, topic) or 0)]
        if not parts:
            return values
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: max(0, since_ms) for tp in parts})
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in parts}  # type: ignore[union-attr]
        remaining = set()
        for tp in parts:
            start = max(starts[tp], ends[tp] - per_partition)
            if start < ends[tp]:
                consumer.seek(tp, start)
                remaining.add(tp)
        consumer.pause(*(set(parts) - remaining))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} did not finish in {timeout_s}s")
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=50_000)
            for tp, recs in batch.items():
                values.extend((r.value, r.timestamp) for r in recs if r.offset < ends[tp])
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return values


class KafkaFenceSource:
    """What the alert fence reads (streams/fence.py FenceSource), from the worker's topics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def alerts_since(self, since_ms: int | None, per_partition: int) -> list[tuple[bytes | None, int]]:
        return await read_since(self.settings.kafka, self.settings.alerts_topic, since_ms, per_partition)

    async def replay_ends(self, partitions: set[int]) -> dict[tuple[str, int], int]:
        settings = self.settings
        committed = await group_offsets(settings.kafka, settings.app_id)
        ends: dict[tuple[str, int], int] = {}
        for topic in (settings.events_topic, reroute_topic(settings), device_topic(settings)):
            ends.update({(topic, p): end for p, end in (await end_offsets(settings.kafka, topic)).items()
                         if p in partitions and committed.get((topic, p), 0) < end})
        return ends


async def read_topic(kafka: KafkaSettings, topic: str, timeout_s: float = 120) -> list[Any]:
    """Every record currently in ``topic`` (from the beginning to the end offsets at call time)."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(await topic_partitions(kafka, topic) or 0)]
        if not parts:
            return records
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        remaining = {tp for tp, end in ends.items() if end > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while remaining:
            if loop.time() > deadline:
                raise TimeoutError(f"reading {topic} did not finish in {timeout_s}s")
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for recs in batch.values():
                records.extend(recs)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records
