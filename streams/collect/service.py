"""The collector started from the settings: the port checked, the topics made sure of, the producer started,
the server run until SIGTERM or SIGINT, then a graceful stop (streams/collect/server.py)."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket

from schemas.formats.mapping import NOT_ACTIVITY_KINDS
from streams.collect.delivery import Delivery
from streams.collect.metrics import CollectMetrics
from streams.collect.server import Collector, all_routes, serve
from streams.config.settings import ConfigError, Settings, Sources

log = logging.getLogger("vitals.collect")


def check_port(settings: Settings, sources: Sources) -> None:
    """ConfigError unless the collector can bind its address (as the server will: SO_REUSEADDR)."""
    host, port = settings.collect.host, settings.collect.port
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"collect.host {host!r} ({sources.origin('collect.host')}) does not resolve: "
                          f"{exc.strerror}", key="collect.host") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            why = {errno.EADDRINUSE: "is already in use by another process",
                   errno.EADDRNOTAVAIL: "is not an address of this machine",
                   errno.EACCES: "needs privileges this process does not have"}.get(exc.errno or 0, exc.strerror)
            raise ConfigError(f"collect address {host}:{port} ({sources.cite('collect.port')}) {why}",
                              key="collect.port") from None


async def run(settings: Settings) -> None:
    from streams.kafka.topics import prepare_topics

    await prepare_topics(settings)  # the events and dead-letter topics exist, with the worker's partitions
    from streams.engine.routing import input_mappings

    maps = input_mappings(settings)  # SPEC 8's, with [input.segment] and [input.posthog] over them
    metrics = CollectMetrics(all_routes(), NOT_ACTIVITY_KINDS)
    delivery = Delivery(settings.kafka, metrics, settings.collect.produce_timeout_s)
    await delivery.start()
    collector = Collector(dict(settings.collect.apps), settings.events_topic, settings.dlq_topic, delivery, metrics,
                          maps, asyncio.Semaphore(settings.collect.max_concurrent_requests))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def bound(port: int) -> None:
        log.info("collecting on http://%s:%d (Segment /v1/batch, PostHog /batch/; %d keys) into %s",
                 settings.collect.host, port, len(settings.collect.apps), settings.events_topic)

    await serve(collector, settings.collect.host, settings.collect.port, stop, settings.collect.shutdown_timeout_s,
                bound)
    log.info("stopped: every request answered, the producer flushed")
