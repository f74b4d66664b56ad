"""The metrics port, checked at startup before anything else is started: a port another process holds
(another worker's, most often) is a configuration error, one line and exit code 2, not a traceback and a
restart loop. Errors are told apart by errno."""

from __future__ import annotations

import errno
import socket

from streams.config.settings import ConfigError, Settings, Sources


def bind_error(exc: OSError, settings: Settings, sources: Sources) -> ConfigError | None:
    """The configuration error an ``OSError`` of binding the metrics endpoint means, if it means one."""
    port, host = settings.metrics_port, settings.metrics_host
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"metrics port {port} ({sources.cite('metrics_port')}) is already in use by another "
                           "process; choose another port (0: any free one) or stop that process", key="metrics_port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"metrics_host {host!r} ({sources.origin('metrics_host')}) is not an address of this "
                           "machine", key="metrics_host")
    if exc.errno == errno.EACCES:
        return ConfigError(f"metrics port {port} ({sources.cite('metrics_port')}) needs privileges this process "
                           "does not have (ports below 1024)", key="metrics_port")
    return None


def check_metrics_port(settings: Settings, sources: Sources) -> None:
    """ConfigError unless the metrics endpoint can bind its address (port 0: any free port, always can).
    Binds as the endpoint will (SO_REUSEADDR: a port left in TIME_WAIT by a worker that stopped is free)."""
    if settings.metrics_port == 0:
        return
    try:
        found = socket.getaddrinfo(settings.metrics_host, settings.metrics_port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"metrics_host {settings.metrics_host!r} ({sources.origin('metrics_host')}) does not "
                          f"resolve: {exc.strerror}", key="metrics_host") from None
    family, kind, proto, _, address = found[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise bind_error(exc, settings, sources) or exc from None
