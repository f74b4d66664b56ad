"""``vitals collect``'s HTTP server (aiohttp): the Segment and PostHog ingestion routes of SPEC section 8,
``/health`` and ``/metrics``. A request is answered 200 with its counts only after Kafka acknowledged every
record it produced; 400 (unreadable body), 401 (unknown key), 413 (over 1 MiB), 415 (unknown encoding), 503
(Kafka unavailable: the SDKs retry). Keys are secrets: never logged, never echoed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas.formats import FormatMapping
from streams.collect.bodies import (
    MAX_BODY_BYTES,
    BadRequest,
    Envelope,
    basic_user,
    decompress,
    form_body,
    parse_json,
    posthog_envelope,
    posthog_event_key,
    segment_envelope,
)
from streams.collect.convert import Target, convert
from streams.collect.delivery import Delivery, Unavailable
from streams.collect.metrics import CollectMetrics

log = logging.getLogger("vitals.collect")

# route -> the Segment message type a single call carries (None: /v1/batch)
SEGMENT_ROUTES: dict[str, str | None] = {"/v1/batch": None, "/v1/track": "track", "/v1/page": "page",
                                         "/v1/screen": "screen", "/v1/identify": "identify",
                                         "/v1/group": "group", "/v1/alias": "alias"}
POSTHOG_ROUTES = ("/batch/", "/capture/", "/e/", "/batch", "/capture", "/e")
RETRY_AFTER_S = "1"


@dataclass(frozen=True)
class Collector:
    """What a request needs: the key map, the topics, the mappings, the Kafka side and the metrics."""

    apps: Mapping[str, str]  # write key or token -> app id
    events_topic: str
    dlq_topic: str
    delivery: Delivery
    metrics: CollectMetrics
    mappings: Mapping[str, FormatMapping]
    slots: asyncio.Semaphore

    def app_of(self, key: str | None) -> str | None:
        return self.apps.get(key) if key is not None else None


def error(status: int, code: str, message: str) -> web.Response:
    # both SDKs read the reason from the body: Segment's "code"/"message", PostHog's "detail"
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return web.json_response({"code": code, "message": message, "detail": message}, status=status, headers=headers)


async def read_body(request: web.Request) -> bytes:
    """The body as sent, at most MAX_BODY_BYTES (413 beyond, without reading the rest)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(413, "body_too_large", f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(413, "body_too_large", f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def segment_apps(collector: Collector, request: web.Request, envelope: Envelope) -> list[str]:
    key = basic_user(request.headers.get("Authorization")) or envelope.key
    app = collector.app_of(key)
    if app is None:
        raise BadRequest(401, "unknown_write_key", "unknown or missing write key (HTTP Basic user)")
    return [app] * len(envelope.events)


def posthog_apps(collector: Collector, envelope: Envelope) -> list[str]:
    default = collector.app_of(envelope.key)
    apps = []
    for event in envelope.events:
        own = posthog_event_key(event)
        app = collector.app_of(own) if own is not None else default
        if app is None:
            raise BadRequest(401, "unknown_api_key", "unknown or missing api_key (project token)")
        apps.append(app)
    return apps


async def ingest(collector: Collector, request: web.Request, fmt: str) -> web.Response:
    if not collector.delivery.up:  # before reading anything: the SDK retries
        raise Unavailable("Kafka is unavailable")
    header_key = basic_user(request.headers.get("Authorization")) if fmt == "segment" else None
    if header_key is not None and collector.app_of(header_key) is None:  # before the body is even read
        raise BadRequest(401, "unknown_write_key", "unknown write key (HTTP Basic user)")
    raw = await read_body(request)
    encoding = request.headers.get("Content-Encoding")
    if encoding is None and fmt == "posthog" and request.query.get("compression") in ("gzip-js", "gzip"):
        encoding = "gzip"  # posthog-js says so in the query string, not in a header
    data = decompress(raw, encoding)
    if fmt == "posthog" and data[:5] == b"data=":  # posthog-js's form body
        data = form_body(data)
        if len(data) > MAX_BODY_BYTES:
            raise BadRequest(413, "body_too_large", f"body larger than {MAX_BODY_BYTES} bytes")
    doc = parse_json(data)
    if fmt == "segment":
        envelope = segment_envelope(doc, data, SEGMENT_ROUTES[request.path])
        app_ids = segment_apps(collector, request, envelope)
    else:
        envelope = posthog_envelope(doc, data)
        app_ids = posthog_apps(collector, envelope)
    target = Target(collector.events_topic, collector.dlq_topic, f"collect:{collector.metrics.route(request.path)}")
    converted = convert(envelope, fmt, collector.mappings[fmt], target, int(time.time() * 1000), app_ids=app_ids,
                        apps=collector.apps)
    await collector.delivery.deliver(converted.records)
    m = collector.metrics
    m.outcome(fmt, converted.accepted, dict(converted.dead_lettered), dict(converted.not_activity))
    dlq = sum(1 for topic, _, _ in converted.records if topic == collector.dlq_topic)
    m.records.labels("events").inc(len(converted.records) - dlq)
    m.records.labels("dlq").inc(dlq)
    return web.json_response({"status": "ok", **converted.counts()})


def route_handler(collector: Collector, fmt: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        status = 500
        collector.metrics.in_flight.inc()
        try:
            async with collector.slots:
                response = await ingest(collector, request, fmt)
        except BadRequest as bad:
            response = error(bad.status, bad.code, bad.message)
        except Unavailable:
            response = error(503, "kafka_unavailable", "Kafka is unavailable; retry later")
        except Exception:  # never a traceback to the client; the request may be retried
            log.exception("request on %s failed", collector.metrics.route(request.path))
            response = error(500, "internal", "internal error")
        finally:
            collector.metrics.in_flight.dec()
        status = response.status
        collector.metrics.request(request.path, status, time.perf_counter() - started)
        return response

    return handle


def build_app(collector: Collector) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def health(request: web.Request) -> web.Response:
        up = collector.delivery.up and await collector.delivery.reachable()
        return web.json_response({"kafka": "up" if up else "down"}, status=200 if up else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(collector.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    segment, posthog = route_handler(collector, "segment"), route_handler(collector, "posthog")
    app.router.add_routes([web.post(path, segment) for path in SEGMENT_ROUTES])
    app.router.add_routes([web.post(path, posthog) for path in POSTHOG_ROUTES])
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def all_routes() -> tuple[str, ...]:
    return (*SEGMENT_ROUTES, *POSTHOG_ROUTES, "/health", "/metrics")


async def serve(collector: Collector, host: str, port: int, stop: asyncio.Event, shutdown_timeout_s: float,
                bound: Callable[[int], None] | None = None) -> None:
    """Serve until ``stop`` is set; then stop accepting, let the requests in flight finish (each answered
    only once its records are acknowledged), and flush the producer."""
    runner = web.AppRunner(build_app(collector), access_log=None, auto_decompress=False, handle_signals=False,
                           shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        actual = port
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                actual = int(addr[1])
        if bound is not None:
            bound(actual)
        await stop.wait()
        log.info("stopping: no new connections; finishing the requests in flight")
    finally:
        await runner.cleanup()
        await collector.delivery.stop()
