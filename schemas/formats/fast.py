"""The Segment events SDKs send, converted without the general path's lookups: a tight function for SPEC 8's
default field paths that takes only the regular case (every field of the expected type, the event valid) and
returns None for anything else, which :func:`schemas.formats.convert.to_event` then decides. Its results are
to_event's (tests/unit/test_formats.py compares the two on random events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.events import MAX_FUTURE_MS, MAX_PAYMENT_AMOUNT, MIN_TS_MS, Event
from schemas.formats.convert import ts_ms
from schemas.formats.mapping import SEGMENT_PAGE_TYPES, FormatMapping, default_mapping

_SEGMENT = default_mapping("segment")
_PATHS = ("event_id", "user_id", "ts", "app_id", "app_key", "device_id", "amount")


def segment_fast_applies(mapping: FormatMapping) -> bool:
    """Whether :func:`segment_fast` may be used for ``mapping``: its paths are the defaults and no activity type
    is configured as not activity."""
    return (all(getattr(mapping, name) == getattr(_SEGMENT, name) for name in _PATHS)
            and not mapping.not_activity & (SEGMENT_PAGE_TYPES | {"track"}))


def segment_fast(obj: Any, now_ms: int, event_types: Mapping[str, str], default_app_id: str) -> Event | None:
    """A regular Segment track/page/screen event as an Event, or None (the general path decides)."""
    if type(obj) is not dict:
        return None
    mtype = obj.get("type")
    if mtype == "track":
        name = obj.get("event")
        if type(name) is not str:
            return None
        etype = event_types.get(name, name)
    elif mtype == "page" or mtype == "screen":
        etype = "page_view"
    else:
        return None
    event_id = obj.get("messageId")
    user_id = obj.get("userId")
    if user_id is None or user_id == "":
        user_id = obj.get("anonymousId")
    if (type(event_id) is not str or type(user_id) is not str or type(etype) is not str
            or not 0 < len(event_id) <= 128 or not 0 < len(user_id) <= 128 or not 0 < len(etype) <= 64):
        return None
    ts = obj.get("timestamp")
    if ts is None or ts == "":
        ts = obj.get("originalTimestamp")
    if type(ts) is not str:
        return None
    try:
        ms = ts_ms(ts)
    except Exception:
        return None
    if ms < MIN_TS_MS or ms > now_ms + MAX_FUTURE_MS:
        return None
    app_id: Any = None
    device_id: Any = None
    context = obj.get("context")
    if type(context) is dict:
        app = context.get("app")
        if type(app) is dict:
            app_id = app.get("namespace")
            if app_id == "":
                app_id = None
        device = context.get("device")
        if type(device) is dict:
            device_id = device.get("id")
            if device_id == "":
                device_id = None
    elif context is not None and context != "":
        return None
    if app_id is None:
        app_id = default_app_id
    if type(app_id) is not str or not 0 < len(app_id) <= 64:
        return None
    if device_id is not None and (type(device_id) is not str or not 0 < len(device_id) <= 128):
        return None
    props = obj.get("properties")
    amount = 0.0
    if type(props) is dict:
        raw = props.get("revenue")
        if raw is None or raw == "":
            raw = props.get("total")
        if raw is not None and raw != "":
            if (type(raw) is int or type(raw) is float) and 0 <= raw <= MAX_PAYMENT_AMOUNT:
                amount = float(raw)
            else:
                return None
        elif etype == "payment":
            return None
    elif etype == "payment":
        return None
    else:
        props = None
    return Event(event_id, user_id, etype, ms, app_id, device_id, amount, props)  # type: ignore[arg-type]
