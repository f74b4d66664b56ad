"""Where each setting's value came from (a default, the TOML file, an environment variable, the command),
so that a configuration error names it: ``kafka.bootstrap = '127.0.0.1:notaport' (from
VITALS_KAFKA_BOOTSTRAP): port 'notaport' is not a number``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from streams.config.errors import ConfigError

# file: the TOML file (label: its path); env: a variable (label: its name); argument: a keyword of
# load_settings; other: anything else, the label saying what ("the broker `vitals kafka start` recorded")
Kind = Literal["file", "env", "argument", "other"]


class Sources:
    """The source of every value that is not a default, by dotted key (``kafka.bootstrap``)."""

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[Kind, str]] = {}

    def record(self, key: str, kind: Kind, label: str) -> None:
        self._by_key[key] = (kind, label)

    def record_tree(self, tree: Mapping[str, Any], kind: Kind, label: str, prefix: str = "") -> None:
        for name, value in tree.items():
            if isinstance(value, Mapping):
                self.record_tree(value, kind, label, f"{prefix}{name}.")
            else:
                self.record(f"{prefix}{name}", kind, label)

    def lookup(self, key: str) -> tuple[Kind, str] | None:
        """The source of ``key``, or of the table holding it (``apps.shop.rules``), or None for a default."""
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            found = self._by_key.get(".".join(parts[:end]))
            if found is not None:
                return found
        inside = [source for name, source in self._by_key.items() if name.startswith(f"{key}.")]
        return inside[0] if inside else None

    def origin(self, key: str) -> str:
        """For a message that names the key already: ``from VITALS_APP_ID``, ``from /etc/vitals.toml``,
        ``set by the command`` or ``the default``."""
        found = self.lookup(key)
        if found is None:
            return "the default"
        kind, label = found
        return {"argument": "set by the command", "other": label}.get(kind, f"from {label}")

    def cite(self, key: str) -> str:
        """For a message that does not name the key: ``from VITALS_KAFKA_BOOTSTRAP``, ``from kafka.bootstrap in
        /etc/vitals.toml``, ``kafka.bootstrap, set by the command`` or ``the default kafka.bootstrap``."""
        found = self.lookup(key)
        if found is None:
            return f"the default {key}"
        kind, label = found
        if kind == "env":
            return f"from {label}"
        if kind == "file":
            return f"from {key} in {label}"
        return f"{key}, set by the command" if kind == "argument" else f"{key}: {label}"


_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def explain(exc: msgspec.ValidationError, sources: Sources) -> ConfigError:
    """A :class:`ConfigError` for a settings tree msgspec refused, naming the key and its source.

    A ConfigError a settings class raised (msgspec wraps it, keeping it as the cause) is used as it is,
    completed with its key's source; msgspec's own errors (a wrong type) end with the path of the value,
    `` - at `$.kafka.partitions` ``, turned into the dotted key."""
    cause = exc.__cause__
    if isinstance(cause, ConfigError):
        return with_origin(cause, sources)
    matched = _AT_PATH.match(str(exc))
    if matched is None:
        return ConfigError(f"invalid configuration: {exc}")
    key = re.sub(r"\[[^\]]*\]", "", matched["path"]).strip(".")
    return ConfigError(f"{key} ({sources.origin(key)}): {matched['message']}", key=key)


def with_origin(error: ConfigError, sources: Sources) -> ConfigError:
    """``error`` with the source of its key appended (unchanged if it names no key)."""
    if error.key is None:
        return error
    return ConfigError(f"{error} ({sources.origin(error.key)})", key=error.key)
