"""Kafka clients with vitals' connection settings (TLS, SASL): admin, producer, batched sends, and a
refused handshake or login explained (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.config import local_broker
from streams.config.settings import ConfigError, KafkaSettings

Record = tuple[int, bytes | None, bytes]  # (partition, key, value)


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile:
        ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return ctx


def client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    local_broker.announce(kafka.bootstrap)  # an unconfigured bootstrap: where it came from, said once
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


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


C = TypeVar("C", bound=_Startable)


@contextlib.asynccontextmanager
async def running(client: C) -> AsyncIterator[C]:
    """``client`` (an aiokafka consumer or producer) started, and stopped on every way out, a failed
    start included: aiokafka's own ``async with`` does not stop a client whose ``start`` raised (an
    unreachable broker), which leaves an "Unclosed AIOKafka..." warning and its connections behind."""
    try:
        await client.start()
        yield client
    finally:
        await client.stop()


async def start_admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    """A started admin client; a refused TLS handshake or SASL login raises :class:`ConfigError`."""
    admin = AIOKafkaAdminClient(**client_kwargs(kafka))
    try:
        await admin.start()
    except BaseException as exc:  # closed on every way out (a timeout, a cancellation too)
        with contextlib.suppress(Exception):
            await admin.close()
        if isinstance(exc, KafkaConnectionError) and kafka.security_protocol != "PLAINTEXT":
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
