"""``[collect]``: the settings of ``vitals collect``, the HTTP collector (SPEC section 8).

Write keys (Segment) and project tokens (PostHog) map to app ids: ``apps = {"<key>" = "<app_id>"}``. A key is
a secret: never printed, not even in a configuration error (which names its app instead).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from streams.config.errors import ConfigError

DEFAULT_PORT = 8090
DEFAULT_HOST = "127.0.0.1"
MAX_KEY_CHARS = 256
MAX_APP_CHARS = 64  # an event's app_id (SPEC section 1)


class CollectSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # write key or token -> app id
    apps: dict[str, str] = {}
    # how long a request waits for Kafka to acknowledge its records before it is answered 503
    produce_timeout_s: float = 10.0
    # requests handled at once; the others wait for a turn (bounded memory: each holds at most 1 MiB twice)
    max_concurrent_requests: int = 64
    # how long a SIGTERM waits for the requests in flight to finish
    shutdown_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"collect.port out of range (0-65535): {self.port}", key="collect.port")
        if not self.host:
            raise ConfigError("collect.host must not be empty", key="collect.host")
        for index, (key, app) in enumerate(self.apps.items()):
            if not key or len(key) > MAX_KEY_CHARS or not key.isprintable() or ":" in key:
                # the key itself is a secret: the message names its app and position only
                raise ConfigError(f"collect.apps: the key of app {app!r} (entry {index + 1}) must be "
                                  f"1..{MAX_KEY_CHARS} printable characters without ':'", key="collect.apps")
            if not 0 < len(app) <= MAX_APP_CHARS:
                raise ConfigError(f"collect.apps: entry {index + 1}: an app id must have 1..{MAX_APP_CHARS} characters",
                                  key="collect.apps")
        for name in ("produce_timeout_s", "shutdown_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"collect.{name} must be a positive number of seconds", key=f"collect.{name}")
        if not 1 <= self.max_concurrent_requests <= 10_000:
            raise ConfigError("collect.max_concurrent_requests must be in [1, 10000]",
                              key="collect.max_concurrent_requests")

    def __repr__(self) -> str:  # never print the keys
        return f"CollectSettings(host={self.host!r}, port={self.port}, apps={len(self.apps)} keys)"

    def __rich_repr__(self) -> Any:
        yield "host", self.host
        yield "port", self.port
