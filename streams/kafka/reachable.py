"""Before a worker or a command starts its Kafka clients: every bootstrap server's name resolves, and one
of them accepts a TCP connection (a plain socket: the clients' own retries end in tracebacks).

A name that does not resolve is a configuration error (one line, exit code 2). A broker that refuses
connections may just not be up yet: it is waited for, up to ``kafka.startup_wait_s``, with a line on
stderr every :data:`LINE_EVERY_S` seconds, then it is a configuration error too.
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from streams.config.bootstrap import Server, parse_bootstrap
from streams.config.settings import ConfigError, KafkaSettings, Sources

LINE_EVERY_S = 10.0  # the waiting line, at most this often
RETRY_EVERY_S = 1.0
CONNECT_TIMEOUT_S = 3.0

AddrInfo = tuple[Any, ...]


def _resolve(server: Server, cite: str) -> list[AddrInfo] | None:
    """The server's addresses; None while the resolver itself fails (retried); ConfigError for a name
    that does not exist."""
    try:
        return socket.getaddrinfo(server.host, server.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the DNS server did not answer: try again
            return None
        raise ConfigError(f"Kafka host {server.host!r} ({cite}) does not resolve: {exc.strerror}",
                          key="kafka.bootstrap") from None


def _connect(addresses: list[AddrInfo], timeout_s: float) -> str | None:
    """None once one of ``addresses`` accepts a connection, else why none did."""
    reason = "no address"
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout_s)
                sock.connect(address)
                return None
        except TimeoutError:
            reason = f"no answer within {timeout_s:g} s"
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                reason = "connection refused"
            else:
                text = exc.strerror or type(exc).__name__
                reason = text[:1].lower() + text[1:]
    return reason


def unreachable(servers: list[Server], cite: str, timeout_s: float = CONNECT_TIMEOUT_S) -> list[tuple[Server, str]]:
    """Each server with why it cannot be reached now; an empty list once one of them accepts a connection."""
    addresses = {server: _resolve(server, cite) for server in servers}  # every name checked first
    failed = []
    for server, found in addresses.items():
        reason = "temporary failure in name resolution" if found is None else _connect(found, timeout_s)
        if reason is None:
            return []
        failed.append((server, reason))
    return failed


def _describe(failed: list[tuple[Server, str]]) -> tuple[str, str]:
    where = ",".join(str(server) for server, _ in failed)
    reasons = {reason for _, reason in failed}
    why = reasons.pop() if len(reasons) == 1 else "; ".join(f"{server}: {reason}" for server, reason in failed)
    return where, why


def not_reachable(kafka: KafkaSettings, cite: str) -> str | None:
    """None when a bootstrap server accepts a connection now, else where and why not (no waiting: for a
    command that can do without Kafka); ConfigError for a name that does not resolve."""
    failed = unreachable(parse_bootstrap(kafka.bootstrap), cite)
    if not failed:
        return None
    where, why = _describe(failed)
    return f"Kafka at {where} ({cite}) is not reachable: {why}"


def wait_for_kafka(kafka: KafkaSettings, sources: Sources, out: TextIO | None = None,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once a bootstrap server accepts a connection; ConfigError for a name that does not resolve,
    or when none did within ``kafka.startup_wait_s``."""
    servers = parse_bootstrap(kafka.bootstrap)  # checked when the settings were built
    cite = sources.cite("kafka.bootstrap")
    deadline = clock() + kafka.startup_wait_s
    last_line = float("-inf")
    while failed := unreachable(servers, cite):
        where, why = _describe(failed)
        now = clock()
        if now >= deadline:
            raise ConfigError(f"Kafka at {where} ({cite}) is not reachable: {why} (waited "
                              f"{kafka.startup_wait_s:g} s, kafka.startup_wait_s); start the broker or fix the "
                              "bootstrap servers", key="kafka.bootstrap")
        if now - last_line >= LINE_EVERY_S:
            print(f"vitals: waiting for Kafka at {where} ({cite}): {why}; retrying", file=out or sys.stderr, flush=True)
            last_line = now
        sleep(min(RETRY_EVERY_S, deadline - now))
