"""The ``segment`` input shape (SPEC 8): the batch shape's history with every event written as a Segment Spec
track event, as segment-analytics-python and RudderStack's Kafka destination send them (a JSON array per
message), for a worker reading the topic with ``VITALS_INPUT_FORMAT=segment``. The mapping back gives the same
section 1 events, so the shape's results compare with the batch shape's."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson

from streams.devtools.generator import History

# vitals types back to Segment's semantic event names (SPEC 8's defaults map them to these types)
EVENT_NAMES = {"payment": "Order Completed", "login": "Signed In", "logout": "Signed Out", "share": "Product Shared"}
LIBRARY = {"name": "analytics-python", "version": "2.4.0"}


def _iso(ts: object) -> object:
    if type(ts) is int:
        return datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
    return ts


def segment_event(event: dict[str, object]) -> dict[str, object]:
    """A valid section 1 event as the Segment track event that maps to it."""
    properties = dict(event.get("props") or {})  # type: ignore[call-overload]
    if "amount" in event:
        properties["revenue"] = event["amount"]
    context: dict[str, object] = {"library": LIBRARY}
    if event.get("app_id", "default") != "default":
        context["app"] = {"namespace": event["app_id"]}
    if event.get("device_id") is not None:
        context["device"] = {"id": event["device_id"]}
    etype = str(event["type"])
    return {"type": "track", "event": EVENT_NAMES.get(etype, etype), "userId": event["user_id"], "anonymousId": None,
            "messageId": event["event_id"], "timestamp": _iso(event["ts"]), "properties": properties,
            "context": context, "integrations": {}}


def as_segment(history: History) -> History:
    """``history`` with each message of valid events written in Segment's format (a JSON array); messages holding
    an invalid event are left as they are (dead-lettered in either format)."""
    messages = []
    for m in history.messages:
        if not m.expect_invalid:
            doc = orjson.loads(m.value)
            events = doc if isinstance(doc, list) else [doc]
            m = dataclasses.replace(m, value=orjson.dumps([segment_event(e) for e in events]))
        messages.append(m)
    return dataclasses.replace(history, messages=messages)
