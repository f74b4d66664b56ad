"""Input formats (SPEC section 8): the pure mapping of Segment and PostHog events to section 1's events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import MIN_TS_MS, Reason, validate
from schemas.formats import (
    FORMATS,
    NotActivity,
    Rejected,
    default_mapping,
    event_doc,
    parse_path,
    to_event,
    to_vitals,
    with_overrides,
)

SEG = default_mapping("segment")
PH = default_mapping("posthog")
TS = "2026-11-01T10:00:00.000+00:00"
TS_MS = 1_793_527_200_000


def seg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": None,
                            "messageId": "m1", "timestamp": TS, "properties": {"revenue": 12.5},
                            "context": {"app": {"namespace": "shop"}, "device": {"id": "d1"}}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def ph(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"event": "$pageview", "distinct_id": "u2", "uuid": "p1", "timestamp": TS,
                            "properties": {"$device_id": "d2", "$lib": "posthog-python"}}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def test_formats_and_defaults() -> None:
    assert FORMATS == ("vitals", "segment", "posthog")
    assert SEG.event_types["Order Completed"] == "payment"
    assert SEG.event_types["Signed In"] == SEG.event_types["Application Opened"] == "login"
    assert SEG.event_types["Signed Out"] == "logout"
    assert SEG.event_types["Product Shared"] == "share"
    assert SEG.not_activity == {"identify", "group", "alias"}
    assert PH.event_types["$pageview"] == PH.event_types["$screen"] == "page_view"
    assert {"$identify", "$set", "$groupidentify"} <= PH.not_activity
    with pytest.raises(ValueError):
        default_mapping("vitals")


def test_segment_track_payment() -> None:
    assert to_vitals(seg(), "segment", SEG) == {
        "event_id": "m1", "user_id": "u1", "type": "payment", "ts": TS_MS, "app_id": "shop", "device_id": "d1",
        "amount": 12.5, "props": {"revenue": 12.5}}


def test_segment_fallbacks() -> None:
    event = seg(userId=None, anonymousId="anon-1", timestamp=..., originalTimestamp="2026-11-01T10:00:00Z",
                properties={"total": 3}, context={})
    assert to_vitals(event, "segment", SEG, default_app_id="src") == {
        "event_id": "m1", "user_id": "anon-1", "type": "payment", "ts": TS_MS, "app_id": "src", "amount": 3.0,
        "props": {"total": 3}}
    # RudderStack's empty userId for an anonymous user
    assert to_vitals(seg(userId="", anonymousId="a2"), "segment", SEG)["user_id"] == "a2"  # type: ignore[index]
    # revenue before total
    assert to_vitals(seg(properties={"revenue": 2, "total": 9}), "segment", SEG)["amount"] == 2.0  # type: ignore[index]


def test_segment_types() -> None:
    for mtype in ("page", "screen"):
        out = to_vitals(seg(type=mtype, event=..., properties={"name": "Home"}), "segment", SEG)
        assert isinstance(out, dict) and out["type"] == "page_view" and "amount" not in out
    assert to_vitals(seg(event="Video Played"), "segment", SEG)["type"] == "Video Played"  # type: ignore[index]
    for mtype in ("identify", "group", "alias"):
        assert to_vitals(seg(type=mtype, event=...), "segment", SEG) == NotActivity(mtype)
    unknown = to_vitals(seg(type="bogus"), "segment", SEG)
    assert isinstance(unknown, Rejected) and unknown.reason is Reason.BAD_TYPE


def test_segment_override_and_mapping() -> None:
    assert to_vitals(seg(), "segment", SEG, app_id="keyed")["app_id"] == "keyed"  # type: ignore[index]
    custom = with_overrides(SEG, {"Checkout Done": "payment", "Order Completed": "purchase"})
    assert custom.event_types["Signed In"] == "login"
    out = to_vitals(seg(event="Checkout Done"), "segment", custom)
    assert isinstance(out, dict) and out["type"] == "payment"
    out = to_vitals(seg(), "segment", custom)
    assert isinstance(out, dict) and out["type"] == "purchase"
    paths = with_overrides(SEG, paths={"user_id": (parse_path("context.traits.uid"),)})
    out = to_vitals(seg(context={"traits": {"uid": "t9"}}), "segment", paths)
    assert isinstance(out, dict) and out["user_id"] == "t9"
    with pytest.raises(ValueError):
        parse_path("a..b")
    with pytest.raises(ValueError):
        with_overrides(SEG, paths={"nope": ()})


def test_posthog() -> None:
    assert to_vitals(ph(), "posthog", PH) == {
        "event_id": "p1", "user_id": "u2", "type": "page_view", "ts": TS_MS, "app_id": "default",
        "device_id": "d2", "props": {"$device_id": "d2", "$lib": "posthog-python"}}
    apps = {"phc_key": "blog", "tok": "news"}
    assert to_vitals(ph(api_key="phc_key"), "posthog", PH, apps=apps)["app_id"] == "blog"  # type: ignore[index]
    assert to_vitals(ph(token="tok"), "posthog", PH, apps=apps)["app_id"] == "news"  # type: ignore[index]
    assert to_vitals(ph(token="other"), "posthog", PH, apps=apps, default_app_id="src")["app_id"] == "src"  # type: ignore[index]
    out = to_vitals(ph(timestamp=..., event="$screen"), "posthog", PH, sent_at="2026-11-01T10:00:00Z")
    assert isinstance(out, dict) and out["ts"] == TS_MS and out["type"] == "page_view"
    pay = to_vitals(ph(event="purchase", properties={"revenue": 5}), "posthog",
                    with_overrides(PH, {"purchase": "payment"}))
    assert isinstance(pay, dict) and pay["type"] == "payment" and pay["amount"] == 5.0
    for name in ("$identify", "$set", "$groupidentify"):
        assert to_vitals(ph(event=name), "posthog", PH) == NotActivity(name)
    custom = with_overrides(PH, not_activity=PH.not_activity | {"$feature_flag_called"})
    assert to_vitals(ph(event="$feature_flag_called"), "posthog", custom) == NotActivity("other")


@pytest.mark.parametrize(("fmt", "event", "reason"), [
    ("segment", seg(messageId=...), Reason.MISSING_FIELD),
    ("segment", seg(userId=None), Reason.MISSING_FIELD),
    ("segment", seg(userId=7), Reason.BAD_TYPE),
    ("segment", seg(userId="x" * 129), Reason.BAD_LENGTH),
    ("segment", seg(type=...), Reason.MISSING_FIELD),
    ("segment", seg(event=...), Reason.MISSING_FIELD),
    ("segment", seg(event=["x"]), Reason.BAD_TYPE),
    ("segment", seg(timestamp=...), Reason.MISSING_FIELD),
    ("segment", seg(timestamp="yesterday"), Reason.BAD_TS),
    ("segment", seg(timestamp="1999-12-31T23:59:59Z"), Reason.TS_OUT_OF_RANGE),
    ("segment", seg(properties={}), Reason.MISSING_AMOUNT),
    ("segment", seg(properties={"revenue": -1}), Reason.BAD_AMOUNT),
    ("segment", seg(properties={"revenue": "12"}), Reason.BAD_AMOUNT),
    ("segment", seg(context={"device": {"id": 5}}), Reason.BAD_TYPE),
    ("segment", seg(context={"app": {"namespace": "n" * 65}}), Reason.BAD_LENGTH),
    ("segment", ["not", "an", "object"], Reason.NOT_OBJECT),
    ("posthog", ph(uuid=...), Reason.MISSING_FIELD),
    ("posthog", ph(distinct_id=12), Reason.BAD_TYPE),
    ("posthog", ph(timestamp=...), Reason.MISSING_FIELD),
    ("posthog", ph(event=...), Reason.MISSING_FIELD),
    ("posthog", "text", Reason.NOT_OBJECT),
])
def test_rejected(fmt: str, event: object, reason: Reason) -> None:
    out = to_vitals(event, fmt, default_mapping(fmt))
    assert isinstance(out, Rejected), out
    assert out.reason is reason and out.message


def test_non_payment_amount_is_lenient() -> None:
    out = to_vitals(seg(event="Cart Viewed", properties={"total": "12"}), "segment", SEG)
    assert isinstance(out, dict) and "amount" not in out


def test_to_event_checks_the_record_time() -> None:
    out = to_event(seg(), "segment", SEG, TS_MS - 2 * 86_400_000)
    assert isinstance(out, Rejected) and out.reason is Reason.TS_OUT_OF_RANGE
    event = to_event(seg(), "segment", SEG, TS_MS)
    assert not isinstance(event, (Rejected, NotActivity)) and event.ts == TS_MS and event.amount == 12.5


# hypothesis: random Segment/PostHog objects, some well-formed, some with fields of any type
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
IDS = st.text(min_size=0, max_size=140) | JSON
TIMES = (st.integers(min_value=MIN_TS_MS - 10, max_value=4_102_444_800_000)
         | st.sampled_from([TS, "2026-11-01T10:00:00Z", "2026-11-01 10:00", "2026-11-01T10:00:00.5-08:00"]) | JSON)
NUMBERS = st.integers(min_value=-5, max_value=10**12) | st.floats(allow_nan=True) | JSON


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.just(...) | value


SEGMENT_EVENTS = st.fixed_dictionaries({
    "type": maybe(st.sampled_from(["track", "page", "screen", "identify", "group", "alias", "bogus"]) | JSON),
    "event": maybe(st.sampled_from(["Order Completed", "Signed In", "x"]) | IDS),
    "userId": maybe(IDS), "anonymousId": maybe(IDS), "messageId": maybe(IDS),
    "timestamp": maybe(TIMES), "originalTimestamp": maybe(TIMES),
    "properties": maybe(st.fixed_dictionaries({"revenue": maybe(NUMBERS), "total": maybe(NUMBERS)}) | JSON),
    "context": maybe(st.fixed_dictionaries({"app": maybe(st.fixed_dictionaries({"namespace": maybe(IDS)}) | JSON),
                                            "device": maybe(st.fixed_dictionaries({"id": maybe(IDS)}) | JSON)})
                     | JSON),
}).map(lambda d: {k: v for k, v in d.items() if v is not ...})
POSTHOG_EVENTS = st.fixed_dictionaries({
    "event": maybe(st.sampled_from(["$pageview", "$screen", "$identify", "$set", "buy"]) | IDS),
    "distinct_id": maybe(IDS), "uuid": maybe(IDS), "timestamp": maybe(TIMES),
    "api_key": maybe(st.sampled_from(["k1", "k2"]) | JSON), "token": maybe(st.sampled_from(["k1"]) | JSON),
    "properties": maybe(st.fixed_dictionaries({"revenue": maybe(NUMBERS), "$device_id": maybe(IDS)}) | JSON),
}).map(lambda d: {k: v for k, v in d.items() if v is not ...})
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(out: object) -> None:
    assert isinstance(out, (dict, NotActivity, Rejected))
    if isinstance(out, dict):
        event = validate(out, out["ts"])  # type: ignore[arg-type]
        assert out == event_doc(event)
    elif isinstance(out, NotActivity):
        assert out.kind in {"identify", "group", "alias", "$identify", "$set", "$groupidentify", "$create_alias",
                            "$merge_dangerously", "other"}
    else:
        assert isinstance(out.reason, Reason) and out.message


@PROPERTY
@given(SEGMENT_EVENTS | JSON, st.sampled_from(["segment", "posthog"]))
def test_segment_objects_never_raise(obj: object, fmt: str) -> None:
    check(to_vitals(obj, fmt, default_mapping(fmt)))


@PROPERTY
@given(POSTHOG_EVENTS, maybe(TIMES))
def test_posthog_objects_never_raise(obj: dict[str, Any], sent_at: Any) -> None:
    out = to_vitals(obj, "posthog", PH, apps={"k1": "app1"}, sent_at=None if sent_at is ... else sent_at)
    check(out)
    if isinstance(out, dict) and obj.get("api_key") == "k1":
        assert out["app_id"] == "app1"
