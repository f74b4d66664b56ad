"""A fetch's records decoded and routed to the partitions of their users (streams/engine/routing.py)."""

from __future__ import annotations

import orjson
import pytest

from streams.engine.partition import Outputs
from streams.engine.partitioner import PartitionCache
from streams.engine.routing import route, slices
from tests.records import Rec

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

NOW = 1_790_000_000_000
PARTITIONS = 8
home = PartitionCache(PARTITIONS)


def event(event_id: str, user: str) -> dict[str, object]:
    return {"event_id": event_id, "user_id": user, "type": "view", "ts": NOW - 1000}


def users_on(partition: int, n: int) -> list[str]:
    found = [u for u in (f"user-{i}" for i in range(1000)) if home(u) == partition]
    return found[:n]


def test_a_batch_message_keeps_its_events_in_place_and_sends_a_mis_keyed_one_to_its_partition() -> None:
    (mine,) = users_on(3, 1)
    (other,) = users_on(5, 1)
    value = orjson.dumps([event("a", mine), event("b", other), event("c", mine)])
    out = Outputs()
    routed = route([Rec("ev", 3, 7, mine.encode(), value)], NOW, home, out)
    assert list(routed) == [3]
    [(topic, offset, key, events, _)] = routed[3]
    assert (topic, offset, key) == ("ev", 7, mine.encode())
    # the event that left keeps its index: "c" is still the third event (its replay position)
    assert [e.event_id if e is not None else None for e in events] == ["a", None, "c"]
    [(partition, reroute_key, reroute_value)] = out.reroutes
    assert (partition, reroute_key) == (5, other.encode())
    assert orjson.loads(reroute_value)["event_id"] == "b"
    assert out.by_app()[("default", "rerouted")] == 1


def test_invalid_events_become_dead_letters_with_their_source_position() -> None:
    (mine,) = users_on(1, 1)
    out = Outputs()
    routed = route([Rec("ev", 1, 4, None, b"{not json"), Rec("ev", 1, 5, None, orjson.dumps(event("x", mine)))],
                   NOW, home, out)
    assert [(o, [e.event_id for e in evs if e]) for _t, o, _k, evs, _ts in routed[1]] == [(4, []), (5, ["x"])]
    [dead] = out.dead_letters
    assert (dead.topic, dead.partition, dead.offset, dead.invalid.reason) == ("ev", 1, 4, "not_json")
    assert out.by_app()[("", "invalid:not_json")] == 1


def test_slices_cover_every_message_once_in_order() -> None:
    recs = [Rec("ev", 0, i, None, b"x" * size) for i, size in enumerate([3, 3, 3, 10, 1, 0, 2])]
    parts = slices(recs, 6)
    assert [[r.offset for r in part] for part in parts] == [[0, 1], [2, 3], [4, 5, 6]]
    assert slices([], 6) == []
    assert [len(p) for p in slices(recs, 1 << 20)] == [7]


def test_an_invalid_event_keeps_its_place_so_the_others_keep_their_batch_index() -> None:
    (mine,) = users_on(2, 1)
    value = orjson.dumps([event("a", mine), {"event_id": "bad"}, event("c", mine)])
    out = Outputs()
    [(_topic, _offset, _key, events, _ts)] = route([Rec("ev", 2, 9, None, value)], NOW, home, out)[2]
    assert [e.event_id if e is not None else None for e in events] == ["a", None, "c"]
    [dead] = out.dead_letters
    assert (dead.invalid.index, dead.invalid.reason) == (1, "missing_field")


def test_too_far_in_the_future_is_judged_against_the_record_timestamp() -> None:
    """SPEC section 1: ``ts`` more than a day ahead of its record's timestamp is invalid, whatever the
    wall clock says, so a replay of history decides the same as live processing."""
    (mine,) = users_on(6, 1)
    day = 86_400_000
    then = NOW - 400 * day  # a record of history, replayed today
    ahead = dict(event("ahead", mine), ts=then + day + 1)
    within = dict(event("within", mine), ts=then + day)
    out = Outputs()
    routed = route([Rec("ev", 6, 0, None, orjson.dumps([ahead, within]), then)], NOW, home, out)
    [(_t, _o, _k, events, record_ts)] = routed[6]
    assert record_ts == then
    assert [e.event_id if e is not None else None for e in events] == [None, "within"]
    [dead] = out.dead_letters
    assert (dead.invalid.reason, dead.invalid.index) == ("ts_out_of_range", 0)
    # a record without a timestamp is judged against the wall clock
    out = Outputs()
    route([Rec("ev", 6, 1, None, orjson.dumps(dict(event("x", mine), ts=NOW + day + 1)))], NOW, home, out)
    assert [d.invalid.reason for d in out.dead_letters] == ["ts_out_of_range"]
