"""The alert fence (streams/fence.py): alerts already on the topic are held back once, nothing else."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from schemas.alerts import make_alert
from streams.fence import AlertFence


def alert(user: str, status: str = "open", start: int = 60_000):  # type: ignore[no-untyped-def]
    return make_alert(status, "fake.burst", "default", user, start, start, {})


def record(a) -> bytes:  # type: ignore[no-untyped-def]
    return orjson.dumps({"alert_id": a.alert_id, "status": a.status, "rule": a.rule})


def test_held_back_once_and_only_what_was_read() -> None:
    fence = AlertFence()
    sent = [alert("u1"), alert("u2"), alert("u2", "resolved")]
    assert fence.add_records([record(a) for a in sent] + [b"not json", None, b'{"alert_id": "x"}']) == 3
    replay = [alert("u1"), alert("u3"), alert("u2", "resolved"), alert("u2")]
    assert list(fence.to_send(replay)) == [alert("u3")]
    assert fence.suppressed == 3 and len(fence) == 0
    assert list(fence.to_send([alert("u1")])) == [alert("u1")], "held back once: a later firing is sent"


def test_bounded_oldest_first() -> None:
    fence = AlertFence(cap=2)
    fence.add_records([record(alert(u)) for u in ("a", "b", "c")])
    assert len(fence) == 2
    assert [a.user_id for a in fence.to_send([alert("a"), alert("b"), alert("c")])] == ["a"]


@given(st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), max_size=12),
       st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), max_size=4, unique=True))
def test_never_loses_an_alert(on_topic: list[str], replayed: list[str]) -> None:
    """Every replayed alert (one firing each, as the engine decides them) is on the topic already or
    sent, never both."""
    fence = AlertFence()
    fence.add_records([record(alert(u)) for u in on_topic])
    sent = {a.user_id for a in fence.to_send([alert(u) for u in replayed])}
    assert set(replayed) <= set(on_topic) | sent
    assert not sent & set(on_topic), "a duplicate of an alert on the topic"
