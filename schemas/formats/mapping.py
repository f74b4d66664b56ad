"""The input formats (SPEC section 8) and their mapping to section 1's fields: which event names become which
vitals types, which events are not activity, and where each field is read. Pure data: the defaults are SPEC 8's
table; the settings (``[input.segment]``, ``[input.posthog]``) derive their mappings from them
(:func:`with_overrides`).

A field is read from the first of its *paths* whose value is present and not null; a path is a tuple of keys
into nested objects (``("context", "device", "id")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

FORMATS = ("vitals", "segment", "posthog")

Path = tuple[str, ...]

# Segment's semantic events (https://segment.com/docs/connections/spec/semantic/) with a meaning for the rules
SEGMENT_EVENT_TYPES: Mapping[str, str] = MappingProxyType({
    "Order Completed": "payment",
    "Signed In": "login",
    "Application Opened": "login",
    "Signed Out": "logout",
    "Product Shared": "share",
    "Cart Shared": "share",
    "Product Reviewed": "comment",
})
POSTHOG_EVENT_TYPES: Mapping[str, str] = MappingProxyType({"$pageview": "page_view", "$screen": "page_view"})
# Segment: message types; PostHog: event names. Not activity: counted, not applied.
SEGMENT_NOT_ACTIVITY = frozenset({"identify", "group", "alias"})
POSTHOG_NOT_ACTIVITY = frozenset({"$identify", "$set", "$groupidentify", "$create_alias", "$merge_dangerously"})
# the Segment message types that are activity: track (its event name through the map), page and screen
SEGMENT_PAGE_TYPES = frozenset({"page", "screen"})
PAGE_VIEW = "page_view"

# the label values NotActivity.kind takes: these names, else "other" (a configured name is not a label value)
NOT_ACTIVITY_KINDS = SEGMENT_NOT_ACTIVITY | POSTHOG_NOT_ACTIVITY


@dataclass(frozen=True)
class FormatMapping:
    """One format's mapping. ``event_types``: source event names to vitals types (unmapped names kept as they
    are); ``not_activity``: Segment message types or PostHog event names that are not activity. The paths:
    each field read from the first path present (not null). ``app_id``: paths holding the app id itself;
    ``app_key``: paths holding a key (PostHog's api_key or token) looked up in the ``apps`` table."""

    event_types: Mapping[str, str]
    not_activity: frozenset[str]
    event_id: tuple[Path, ...]
    user_id: tuple[Path, ...]
    ts: tuple[Path, ...]
    app_id: tuple[Path, ...]
    app_key: tuple[Path, ...]
    device_id: tuple[Path, ...]
    amount: tuple[Path, ...]


_SEGMENT = FormatMapping(
    event_types=SEGMENT_EVENT_TYPES,
    not_activity=SEGMENT_NOT_ACTIVITY,
    event_id=(("messageId",),),
    user_id=(("userId",), ("anonymousId",)),
    ts=(("timestamp",), ("originalTimestamp",)),
    app_id=(("context", "app", "namespace"),),
    app_key=(),
    device_id=(("context", "device", "id"),),
    amount=(("properties", "revenue"), ("properties", "total")),
)
_POSTHOG = FormatMapping(
    event_types=POSTHOG_EVENT_TYPES,
    not_activity=POSTHOG_NOT_ACTIVITY,
    event_id=(("uuid",),),
    user_id=(("distinct_id",),),
    ts=(("timestamp",),),
    app_id=(),
    app_key=(("api_key",), ("token",)),
    device_id=(("properties", "$device_id"),),
    amount=(("properties", "revenue"),),
)
_DEFAULTS = {"segment": _SEGMENT, "posthog": _POSTHOG}

# the fields a configuration may set, each a list of dotted paths (``"context.device.id"``)
PATH_FIELDS = ("event_id", "user_id", "ts", "app_id", "app_key", "device_id", "amount")


def default_mapping(fmt: str) -> FormatMapping:
    """SPEC 8's mapping of ``fmt`` ("segment" or "posthog"); ValueError for any other name."""
    try:
        return _DEFAULTS[fmt]
    except KeyError:
        raise ValueError(f"no mapping for input format {fmt!r} (mapped formats: segment, posthog)") from None


def parse_path(dotted: str) -> Path:
    """``"context.device.id"`` as a path; ValueError for an empty one or an empty key."""
    parts = tuple(dotted.split("."))
    if not dotted or any(not part for part in parts):
        raise ValueError(f"{dotted!r} is not a dotted field path (keys separated by dots)")
    return parts


def with_overrides(base: FormatMapping, event_types: Mapping[str, str] | None = None,
                   not_activity: frozenset[str] | None = None,
                   paths: Mapping[str, tuple[Path, ...]] | None = None) -> FormatMapping:
    """``base`` with ``event_types`` merged over its map, ``not_activity`` (when given) replacing its set and
    ``paths`` (field name to paths, see PATH_FIELDS) replacing the fields named."""
    merged = MappingProxyType({**base.event_types, **(event_types or {})})
    changes: dict[str, object] = {"event_types": merged}
    if not_activity is not None:
        changes["not_activity"] = frozenset(not_activity)
    for field, value in (paths or {}).items():
        if field not in PATH_FIELDS:
            raise ValueError(f"{field!r} is not a field of an input mapping ({', '.join(PATH_FIELDS)})")
        changes[field] = tuple(value)
    return replace(base, **changes)  # type: ignore[arg-type]
