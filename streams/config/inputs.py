"""The input settings (SPEC section 8): the events topic's format, more source topics each with its format and
default tenant, and the Segment and PostHog mappings.

```toml
[input]
format = "segment"          # the events topic's: vitals (default), segment or posthog (VITALS_INPUT_FORMAT)
app_id = "default"          # the events topic's default tenant (events that name none)

[[input.sources]]           # more source topics
topic = "rudderstack.events"
format = "segment"
app_id = "shop"

[input.segment]
event_types = {"Checkout Done" = "payment"}     # merged over SPEC 8's map
user_id = ["userId", "anonymousId"]             # field paths (dotted), the first present wins
```
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from streams.config.errors import ConfigError

# schemas.formats.FORMATS (the settings layer does not import the schemas: a unit test keeps the two equal)
FORMATS = ("vitals", "segment", "posthog")
PATH_FIELDS = ("event_id", "user_id", "ts", "app_id", "app_key", "device_id", "amount")

MAX_SOURCES = 16  # each source topic is subscribed to and read by every worker


class FormatSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``[input.segment]`` / ``[input.posthog]``: event names to vitals types (merged over the defaults), the
    names that are not activity (replacing the defaults), and field paths (replacing the defaults')."""

    event_types: dict[str, str] = {}
    not_activity: list[str] | None = None
    event_id: list[str] | None = None
    user_id: list[str] | None = None
    ts: list[str] | None = None
    app_id: list[str] | None = None
    app_key: list[str] | None = None
    device_id: list[str] | None = None
    amount: list[str] | None = None

    def check(self, fmt: str) -> None:
        """ConfigError for a type out of section 1's length or a path that is no dotted path."""
        for name, vitals_type in self.event_types.items():
            if not 0 < len(vitals_type) <= 64:
                raise ConfigError(f"input.{fmt}.event_types: {name!r} maps to {vitals_type!r}, not a type of 1..64 "
                                  "characters", key=f"input.{fmt}.event_types")
        for name in PATH_FIELDS:
            for dotted in getattr(self, name) or ():
                if not dotted or any(not key for key in dotted.split(".")):
                    raise ConfigError(f"input.{fmt}.{name}: {dotted!r} is not a dotted field path (keys separated "
                                      "by dots)", key=f"input.{fmt}.{name}")

    def paths(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        """The field paths set (field name to paths, each a tuple of keys)."""
        return {name: tuple(tuple(p.split(".")) for p in getattr(self, name))
                for name in PATH_FIELDS if getattr(self, name) is not None}


class SourceSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``[[input.sources]]``: another topic to read, its format and the tenant of its events that name none."""

    topic: str
    format: str = "vitals"
    app_id: str = "default"


def _check_format(fmt: str, key: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"{key} = {fmt!r}: unknown input format (one of {', '.join(FORMATS)})", key=key)


def _check_app(app_id: str, key: str) -> None:
    if not 0 < len(app_id) <= 64:
        raise ConfigError(f"{key} must have 1..64 characters, got {app_id!r}", key=key)


class InputSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    format: str = "vitals"
    app_id: str = "default"
    sources: list[SourceSettings] = []
    segment: FormatSettings = FormatSettings()
    posthog: FormatSettings = FormatSettings()

    def __post_init__(self) -> None:
        _check_format(self.format, "input.format")
        _check_app(self.app_id, "input.app_id")
        if len(self.sources) > MAX_SOURCES:
            raise ConfigError(f"input.sources: at most {MAX_SOURCES} source topics", key="input.sources")
        for i, source in enumerate(self.sources):
            _check_format(source.format, f"input.sources[{i}].format")
            _check_app(source.app_id, f"input.sources[{i}].app_id")
            if not source.topic:
                raise ConfigError(f"input.sources[{i}].topic must not be empty", key="input.sources")
        self.segment.check("segment")
        self.posthog.check("posthog")

    def check_topics(self, events_topic: str, internal: tuple[str, ...]) -> None:
        """A source topic is none of vitals' own and appears once."""
        seen = {events_topic, *internal}
        for i, source in enumerate(self.sources):
            if source.topic in seen:
                raise ConfigError(f"input.sources[{i}].topic = {source.topic!r}: the events topic, an internal topic "
                                  "or another source's", key="input.sources")
            seen.add(source.topic)

    def formats_by_topic(self, events_topic: str) -> Mapping[str, tuple[str, str]]:
        """Every source topic's (format, default app id), the events topic first."""
        out = {events_topic: (self.format, self.app_id)}
        out.update((s.topic, (s.format, s.app_id)) for s in self.sources)
        return out
