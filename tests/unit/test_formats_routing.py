"""Messages of a mapped input format (SPEC 8) decoded and routed (schemas/formats/batch.py, streams/engine/routing.py):
one event or a RudderStack-style array, not-activity events counted, invalid ones dead-lettered with their index
and the source format, the fast Segment path the same as the general one."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.dead_letters import dead_letter_doc
from schemas.events import MAX_EVENT_BYTES, Reason, _Bad, parse_ts
from schemas.formats import FORMATS, default_mapping, to_event, with_overrides
from schemas.formats.batch import FormatDecoder
from schemas.formats.convert import ts_ms
from schemas.formats.fast import segment_fast, segment_fast_applies
from schemas.formats.mapping import PATH_FIELDS
from streams.config.inputs import FORMATS as CONFIG_FORMATS
from streams.config.inputs import PATH_FIELDS as CONFIG_PATHS
from streams.config.settings import load_settings
from streams.engine.deepjson import dumps_deep
from streams.engine.partition import Outputs
from streams.engine.partitioner import PartitionCache
from streams.engine.routing import input_decoders, input_mappings, route
from tests.records import Rec
from tests.unit.test_formats import SEGMENT_EVENTS, TIMES, seg

NOW = 1_793_527_200_000 + 3_600_000
PARTITIONS = 8
home = PartitionCache(PARTITIONS)
SEG = default_mapping("segment")
DECODERS = {"rudder": FormatDecoder("segment", SEG, "src")}


def users_on(partition: int, n: int) -> list[str]:
    return [u for u in (f"user-{i}" for i in range(1000)) if home(u) == partition][:n]


def test_a_rudderstack_array_keeps_its_events_in_place() -> None:
    mine, mine2 = users_on(2, 2)
    (other,) = users_on(6, 1)
    batch = [seg(userId=mine, messageId="a"), seg(type="identify", event=..., messageId="b"),
             seg(userId=mine2, messageId="c", properties={}),  # a payment without revenue
             seg(userId=other, messageId="d"), seg(userId=mine, type="page", event=..., messageId="e")]
    out = Outputs()
    routed = route([Rec("rudder", 2, 9, mine.encode(), orjson.dumps(batch), NOW)], NOW, home, out, decoders=DECODERS)
    [(topic, offset, _key, events, _ts)] = routed[2]
    assert (topic, offset) == ("rudder", 9)
    assert [e.event_id if e is not None else None for e in events] == ["a", None, None, None, "e"]
    assert events[4] is not None and events[4].type == "page_view" and events[0] is not None
    assert events[0].type == "payment" and events[0].app_id == "shop"
    [dead] = out.dead_letters
    assert (dead.invalid.reason, dead.invalid.index, dead.format) == (Reason.MISSING_AMOUNT, 2, "segment")
    assert orjson.loads(dead.invalid.original)["messageId"] == "c"  # the event's own bytes
    assert dead_letter_doc(dead)["source"]["format"] == "segment"  # type: ignore[index]
    assert out.not_activity == {("segment", "identify"): 1}
    [(p, key, _value)] = out.reroutes
    assert (p, key) == (6, other.encode())


def test_whole_message_reasons() -> None:
    big = seg(properties={"revenue": 1, "blob": "x" * MAX_EVENT_BYTES})
    cases = [(b"{nope", Reason.NOT_JSON), (b"[]", Reason.EMPTY_BATCH), (b"7", Reason.NOT_OBJECT),
             (orjson.dumps(big), Reason.EVENT_TOO_LARGE), (orjson.dumps([seg()] * 1001), Reason.BATCH_TOO_LONG)]
    for value, reason in cases:
        out = Outputs()
        route([Rec("rudder", 0, 1, None, value, NOW)], NOW, home, out, decoders=DECODERS)
        [dead] = out.dead_letters
        assert (dead.invalid.reason, dead.invalid.index, dead.format) == (reason, None, "segment"), value[:20]
    # in a batch, only the oversize event
    events, invalid, _ = DECODERS["rudder"](orjson.dumps([seg(), big]), NOW)
    assert events[0] is not None and events[1] is None
    assert [(i.reason, i.index) for i in invalid] == [(Reason.EVENT_TOO_LARGE, 1)]


def test_a_vitals_topic_beside_records_its_format() -> None:
    out = Outputs()
    route([Rec("ev", 0, 1, None, b"{nope", NOW)], NOW, home, out, decoders=DECODERS)
    assert out.dead_letters[0].format == "vitals"


def test_decoders_from_settings() -> None:
    s = load_settings(env={"VITALS_INPUT_FORMAT": "posthog"})
    [(topic, decoder)] = input_decoders(s).items()
    assert (topic, decoder.fmt, decoder.default_app_id) == ("vitals.events", "posthog", "default")
    assert input_decoders(load_settings(env={})) == {}
    assert DECODERS["rudder"].fast and not segment_fast_applies(input_mappings(
        load_settings(env={"VITALS_INPUT_FORMAT": "segment"}, input__segment__not_activity=["page"]))["segment"])
    custom = input_mappings(load_settings(env={}, input__posthog__user_id=["properties.uid", "distinct_id"],
                                          input__posthog__event_types={"buy": "payment"}))["posthog"]
    assert custom.user_id == (("properties", "uid"), ("distinct_id",))
    assert custom.event_types["buy"] == "payment" and custom.event_types["$pageview"] == "page_view"


def test_posthog_keys_map_through_collect_apps() -> None:
    s = load_settings(env={"VITALS_INPUT_FORMAT": "posthog"}, collect__apps={"phc_blog": "blog"})
    [decoder] = input_decoders(s).values()
    event = {"event": "$pageview", "distinct_id": "u", "uuid": "x", "timestamp": "2026-11-01T10:00:00Z"}
    [mapped], _, _ = decoder(orjson.dumps([dict(event, api_key="phc_blog")]), NOW)
    [other], _, _ = decoder(orjson.dumps([dict(event, token="unknown")]), NOW)
    assert mapped is not None and other is not None and (mapped.app_id, other.app_id) == ("blog", "default")


def test_the_settings_know_the_formats() -> None:
    assert CONFIG_FORMATS == FORMATS
    assert CONFIG_PATHS == PATH_FIELDS


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _maybe(good: object, *values: object) -> st.SearchStrategy[Any]:
    """Mostly ``good``: absent, null, "" or one of ``values`` now and then."""
    return st.sampled_from([good] * 12 + [..., None, "", *values])


AMOUNTS = _maybe(0, 3, 2.5, -1, "12", 1e12, True)
# mostly regular Segment events: the fast path takes many of them
REGULAR_SEGMENT = st.fixed_dictionaries({
    "type": _maybe("track", "page", "screen", "identify", 5), "event": _maybe("Order Completed", "Signed In", "V", 7),
    "userId": _maybe("u1", "x" * 129, 3), "anonymousId": _maybe("a1", 4, ...), "messageId": _maybe("m1", "m2", 9),
    "timestamp": _maybe("2026-11-01T10:00:00.123+01:00", "2026-11-01T10:00:00Z", "2026-11-01", 1_793_527_200_000,
                        "1999-01-01T00:00:00Z", "2026-11-05T10:00:00Z"),
    "originalTimestamp": _maybe("2026-11-01T09:00:00Z"),
    "properties": st.sampled_from([..., None, [], "p"]) | st.fixed_dictionaries({"revenue": AMOUNTS, "total": AMOUNTS}),
    "context": st.sampled_from([..., None, [], "c"]) | st.fixed_dictionaries({
        "app": st.sampled_from([None, 1]) | st.fixed_dictionaries({"namespace": _maybe("shop", "n" * 65, 2)}),
        "device": st.sampled_from([None, 1]) | st.fixed_dictionaries({"id": _maybe("d1", 2, "d" * 129)})}),
}).map(lambda d: {k: (v if not isinstance(v, dict) else {a: b for a, b in v.items() if b is not ...})
                  for k, v in d.items() if v is not ...})


@PROPERTY
@given(REGULAR_SEGMENT | SEGMENT_EVENTS, st.sampled_from(["src", "default"]))
def test_the_fast_path_is_the_general_one(obj: dict[str, Any], app: str) -> None:
    fast = segment_fast(obj, NOW, SEG.event_types, app)
    if fast is not None:
        assert fast == to_event(obj, "segment", SEG, NOW, default_app_id=app)


@PROPERTY
@given(TIMES | st.from_regex(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)", fullmatch=True))
def test_ts_ms_is_parse_ts(value: object) -> None:
    try:
        expected: object = parse_ts(value)
    except _Bad as bad:
        expected = bad.reason
    try:
        got: object = ts_ms(value)
    except _Bad as bad:
        got = bad.reason
    assert got == expected


@pytest.mark.parametrize("value", ["2016-12-31T23:59:60Z", "2026-02-30T00:00:00Z", "2026-11-01T24:00:00Z",
                                   "2026-11-01T10:00:00+24:00", "2026-11-01T10:00:00+05:60", "2026-11-01T10:00:00z"])
def test_ts_ms_edges(value: str) -> None:
    try:
        expected: object = parse_ts(value)
    except _Bad as bad:
        expected = bad.reason
    try:
        got: object = ts_ms(value)
    except _Bad as bad:
        got = bad.reason
    assert got == expected


@pytest.mark.parametrize(("toml", "needle"), [
    ('[input]\nformat = "segmnt"\n', "input.format = 'segmnt': unknown input format"),
    ('[input]\nfromat = "segment"\n', "unknown key input.fromat (did you mean input.format?)"),
    ('[input.segment]\nuser_id = ["userId", "a..b"]\n', "input.segment.user_id: 'a..b' is not a dotted field path"),
    ('[input.posthog]\nevent_types = {"buy" = ""}\n', "input.posthog.event_types: 'buy' maps to ''"),
    ('[input.segment]\nevnt_types = {}\n', "unknown key input.segment.evnt_types"),
    ('[[input.sources]]\ntopic = "rudder"\nformat = "segmnt"\n', "input.sources[0].format = 'segmnt'"),
    ('[[input.sources]]\ntopic = "vitals.events"\n', "input.sources[0].topic = 'vitals.events': the events topic"),
    ('[[input.sources]]\ntopic = "r"\nfromat = "segment"\n', "Object contains unknown field `fromat`"),
])
def test_bad_input_settings_fail_in_one_line(tmp_path: Any, toml: str, needle: str) -> None:
    from streams.config.errors import ConfigError

    path = tmp_path / "vitals.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"VITALS_CONFIG": str(path)})
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_hostile_valid_input_stays_bounded() -> None:
    """A full array of events of 1000 tenants, deep properties, a mis-keyed user: decoded, rerouted (the deep
    properties re-encoded), the not-activity labels bounded whatever the names."""
    deep: Any = "leaf"
    for _ in range(600):
        deep = {"d": deep}
    (mine,) = users_on(0, 1)
    (other,) = users_on(1, 1)
    batch = [seg(userId=mine, messageId=f"m{i}", event="View", context={"app": {"namespace": f"app-{i}"}})
             for i in range(998)]
    batch.append(seg(userId=other, messageId="deep", event="View", properties=deep))
    batch.append(seg(type="identify", event=..., messageId="id"))
    out = Outputs()
    value = dumps_deep(batch)  # deeper than orjson encodes
    routed = route([Rec("rudder", 0, 1, mine.encode(), value, NOW)], NOW, home, out, decoders=DECODERS)
    [(_t, _o, _k, events, _ts)] = routed[0]
    assert len(events) == 1000 and len({e.app_id for e in events if e is not None}) == 998
    [(p, _key, rerouted)] = out.reroutes
    assert p == 1 and orjson.loads(rerouted)["event_id"] == "deep"
    assert out.not_activity == {("segment", "identify"): 1} and not out.dead_letters
    posthog = FormatDecoder("posthog", default_mapping("posthog"))
    names = [{"event": f"$custom_{i}", "distinct_id": "u", "uuid": f"x{i}", "timestamp": "2026-11-01T10:00:00Z"}
             for i in range(50)]
    configured = FormatDecoder("posthog", with_overrides(default_mapping("posthog"),
                                                         not_activity=frozenset(n["event"] for n in names)))
    _, _, kinds = configured(orjson.dumps(names), NOW)
    assert set(kinds) == {"other"}
    assert posthog(orjson.dumps(names), NOW)[2] == []


def test_an_unmapped_format_is_the_callers_mistake() -> None:
    with pytest.raises(ValueError):
        to_event({"type": "track"}, "vitals", SEG, NOW)


def test_a_secondary_source_topics_events_all_go_home_through_the_reroute_topic() -> None:
    (mine,) = users_on(3, 1)
    (other,) = users_on(5, 1)
    batch = [seg(userId=mine, messageId="a"), seg(userId=other, messageId="b"), seg(messageId=...)]
    out = Outputs()
    routed = route([Rec("rudder", 3, 4, mine.encode(), orjson.dumps(batch), NOW)], NOW, home, out,
                   decoders=DECODERS, secondary=("rudder",))
    assert routed == {}  # nothing applied where it is read, not even the events of the partition's own users
    assert [(p, key) for p, key, _ in out.reroutes] == [(3, mine.encode()), (5, other.encode())]
    assert [orjson.loads(v)["app_id"] for _, _, v in out.reroutes] == ["shop", "shop"]
    [dead] = out.dead_letters
    assert (dead.topic, dead.invalid.index, dead.format, dead.invalid.reason) == ("rudder", 2, "segment",
                                                                                "missing_field")
    assert out.by_app()[("shop", "rerouted")] == 2
