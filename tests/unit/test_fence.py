"""The alert fence (streams/worker/fence.py): alerts already on the topic are held back once, nothing else."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from schemas.alerts import make_alert
from streams.worker.fence import FENCE_MARGIN_MS, AlertFence, ReplayFence


def alert(user: str, status: str = "open", start: int = 60_000):  # type: ignore[no-untyped-def]
    return make_alert(status, "fake.burst", "default", user, start, start, {})


def record(a, ts: int = 1_000) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
    return orjson.dumps({"alert_id": a.alert_id, "status": a.status, "rule": a.rule}), ts


def test_held_back_once_and_only_what_was_read() -> None:
    fence = AlertFence()
    sent = [alert("u1"), alert("u2"), alert("u2", "resolved")]
    assert fence.add_records([record(a) for a in sent] + [(b"not json", 1), (None, 1), (b'{"alert_id": "x"}', 1)]) == 3
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


class Source:
    """The fence's Kafka reads, in memory: the alerts topic's records (value, timestamp), the source ends."""

    def __init__(self, records: list[tuple[bytes, int]], ends: dict[tuple[str, int], int]) -> None:
        self.records, self.ends, self.reads = records, ends, []  # type: ignore[var-annotated]

    async def alerts_since(self, since_ms: int | None, per_partition: int) -> list[tuple[bytes | None, int]]:
        self.reads.append(since_ms)
        return [(v, ts) for v, ts in self.records if since_ms is None or ts >= since_ms][-per_partition:]

    async def replay_ends(self, partitions: set[int]) -> dict[tuple[str, int], int]:
        return {tp: end for tp, end in self.ends.items() if tp[1] in partitions}


def test_replay_fence_reads_from_the_earliest_stamp_and_empties_after_the_replay() -> None:
    import asyncio

    a1, a2, a3 = alert("u1"), alert("u2"), alert("u3")
    source = Source([record(a1, 5_000), record(a2, 20_000), record(a3, 30_000)], {("ev", 0): 100})

    async def scenario() -> None:
        fence = ReplayFence(source)
        fence.start([25_000, 15_000], {0, 1})
        # read in the background: a job taken meanwhile is stamped no later than the read's start
        assert fence.stamp({}, taken_ms=80_000) == 15_000
        assert list(await fence.to_send([a2, alert("u9")])) == [alert("u9")]  # waits for the read
        assert source.reads == [15_000] and len(fence.alerts) == 1
        assert fence.replay_ends == {("ev", 0): 100}
        # while replaying, a job's stamp is no later than the alerts still held (sent before this worker)
        assert fence.stamp({("ev", 0): 80}, taken_ms=90_000) == 30_000
        # past where the topic ended: nothing can match any more, the stamp is the take time's
        assert fence.stamp({("ev", 0): 100}, taken_ms=95_000) == 95_000 - FENCE_MARGIN_MS
        assert len(fence.alerts) == 0 and not fence.replay_ends

    asyncio.run(scenario())


def test_replay_fence_skips_partitions_never_flushed() -> None:
    import asyncio

    source = Source([record(alert("u1"), 7_500)], {("ev", 0): 10})

    async def scenario() -> None:
        fence = ReplayFence(source)
        fence.start([-1, -1], {0})
        assert not fence.reads, "nothing flushed, nothing to fence"
        fence.start([-1, 7_000], {0})
        fence.stamp({("ev", 0): 10}, taken_ms=60_000)  # a job past the end, taken before the read finished
        await fence.ready()
        assert source.reads == [7_000] and len(fence.alerts) == 1
        assert not fence.replay_ends, "a replay already passed is not waited for"
        assert ReplayFence(None).stamp({}, 50_000) == 50_000 - FENCE_MARGIN_MS

    asyncio.run(scenario())
