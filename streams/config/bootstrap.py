"""The Kafka bootstrap servers setting, ``host:port[,host:port...]``, parsed and checked when the settings
are built, so that a typo stops vitals with one line instead of a client's traceback later."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

# a host name (letters, digits, '-', '_', dots) or an IPv4 address; IPv6 goes in brackets
_HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")


class Server(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bootstrap(text: str) -> list[Server]:
    """The servers of a bootstrap list; ValueError saying what is wrong with it (not naming the setting)."""
    if not text.strip():
        raise ValueError("no server given (host:port, comma-separated)")
    return [_parse_server(entry.strip()) for entry in text.split(",")]


def _parse_server(entry: str) -> Server:
    if not entry:
        raise ValueError("an empty entry in the list (a stray comma?)")
    if "://" in entry:
        raise ValueError(f"{entry!r}: give host:port, without a scheme")
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{entry!r}: an IPv6 address is written [address]:port")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = entry.rpartition(":")
        if not colon:
            raise ValueError(f"{entry!r} has no port (host:port)")
        if ":" in host:
            raise ValueError(f"{entry!r}: an IPv6 address is written [address]:port")
        if not host:
            raise ValueError(f"{entry!r} has no host")
        if not _HOST_NAME.match(host):
            raise ValueError(f"host {host!r} is not a host name or address")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return Server(host, port)
