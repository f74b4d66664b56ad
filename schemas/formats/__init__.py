"""INTERIM stand-in for the ``formats`` branch's pure mapping (SPEC section 8), with its API, so that the
collector builds and runs before that branch is merged. The merge replaces this file whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from schemas.events import Reason

FORMATS = ("vitals", "segment", "posthog")

_SEGMENT_TYPES = {"Order Completed": "payment", "Signed In": "login", "Application Opened": "login",
                  "Signed Out": "logout", "Product Shared": "share"}
_POSTHOG_TYPES = {"$pageview": "page_view", "$screen": "page_view"}


@dataclass(frozen=True)
class FormatMapping:
    event_types: Mapping[str, str] = field(default_factory=dict)
    not_activity: frozenset[str] = frozenset()


def default_mapping(fmt: str) -> FormatMapping:
    if fmt == "segment":
        return FormatMapping(_SEGMENT_TYPES, frozenset({"identify", "group", "alias"}))
    if fmt == "posthog":
        return FormatMapping(_POSTHOG_TYPES, frozenset({"$identify", "$set", "$groupidentify"}))
    return FormatMapping()


@dataclass(frozen=True)
class NotActivity:
    kind: str


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    message: str


def _get(obj: Mapping[str, object], *path: str) -> object:
    cur: object = obj
    for name in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(name)
    return cur


def to_vitals(obj: object, fmt: str, mapping: FormatMapping, *, default_app_id: str = "default",
              apps: Mapping[str, str] = {},
              app_id: str | None = None, sent_at: object = None) -> dict[str, object] | NotActivity | Rejected:
    if not isinstance(obj, dict):
        return Rejected(Reason.NOT_OBJECT, "an event must be a JSON object")
    if fmt == "vitals":
        return obj
    out: dict[str, object] = {}
    if fmt == "segment":
        kind = obj.get("type")
        if kind in mapping.not_activity:
            return NotActivity(str(kind))
        if kind == "track":
            name = obj.get("event")
            out["type"] = mapping.event_types.get(name, name) if isinstance(name, str) else name
        elif kind in ("page", "screen"):
            out["type"] = "page_view"
        else:
            return Rejected(Reason.BAD_TYPE, "unknown Segment message type")
        out["event_id"] = obj.get("messageId")
        out["user_id"] = obj.get("userId") or obj.get("anonymousId")
        out["ts"] = obj.get("timestamp") or obj.get("originalTimestamp")
        app = _get(obj, "context", "app", "namespace")
        device = _get(obj, "context", "device", "id")
        props = obj.get("properties")
        amount = _get(obj, "properties", "revenue")
        if amount is None:
            amount = _get(obj, "properties", "total")
    else:
        name = obj.get("event")
        if name in mapping.not_activity:
            return NotActivity(str(name))
        out["type"] = mapping.event_types.get(name, name) if isinstance(name, str) else name
        out["event_id"] = obj.get("uuid")
        out["user_id"] = obj.get("distinct_id")
        out["ts"] = obj.get("timestamp") or sent_at
        key = obj.get("api_key") or obj.get("token")
        app = apps.get(key) if isinstance(key, str) else None
        device = _get(obj, "properties", "$device_id")
        props = obj.get("properties")
        amount = _get(obj, "properties", "revenue")
    out["app_id"] = app_id or (app if isinstance(app, str) and app else default_app_id)
    if device is not None:
        out["device_id"] = device
    if amount is not None:
        out["amount"] = amount
    if isinstance(props, dict):
        out["props"] = props
    return out
