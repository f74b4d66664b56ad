"""The lean consumption path's split of one fetch (streams/worker/consumer.py), without a broker."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from faust.types import TP

from streams.worker.consumer import split_fetch


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


def recs(topic: str, partition: int, *offsets: int) -> list[Rec]:
    return [Rec(topic, partition, o) for o in offsets]


def test_routed_topics_go_to_their_channel_in_offset_order_and_others_to_faust() -> None:
    ev0, ev1, rr0, dev0, cl0 = TP("ev", 0), TP("ev", 1), TP("rr", 0), TP("dev", 0), TP("cl", 0)
    records = {ev0: recs("ev", 0, 5, 6), rr0: recs("rr", 0, 1), ev1: recs("ev", 1, 9), dev0: recs("dev", 0, 3),
               cl0: recs("cl", 0, 7, 8)}
    read: defaultdict[TP, int | None] = defaultdict(lambda: None)
    fetched, others = split_fetch(records, None, set(), {"ev": "users", "rr": "users", "dev": "devices"}, read)
    assert [(r.topic, r.partition, r.offset) for r in fetched["users"]] == [
        ("ev", 0, 5), ("ev", 0, 6), ("rr", 0, 1), ("ev", 1, 9)]
    assert [r.offset for r in fetched["devices"]] == [3]
    assert others == {cl0: records[cl0]}  # a changelog: Faust's per-message path, untouched
    assert dict(read) == {ev0: 6, rr0: 1, ev1: 9, dev0: 3}  # the consumer's read offsets advance


def test_inactive_partitions_are_left_out_and_routed_records_are_not_filtered_by_the_read_offset() -> None:
    ev0, ev1, ev2 = TP("ev", 0), TP("ev", 1), TP("ev", 2)
    records = {ev0: recs("ev", 0, 3, 4, 5), ev1: recs("ev", 1, 1), ev2: recs("ev", 2, 2)}
    read: dict[TP, int | None] = {ev0: 4}
    fetched, others = split_fetch(records, {ev0}, {ev2}, {"ev": "users"}, read)
    # ev1 is paused (not active, nothing buffered): its records stay out; ev2 is buffered: in. ev0's
    # offset 3, below its read offset, is handed over all the same: the pipeline orders the routed
    # partitions itself (a read offset moved on by records fetched before a seek once filtered out
    # the range the seek fetched again: tests/unit/test_reseek.py)
    assert [(r.partition, r.offset) for r in fetched["users"]] == [(0, 3), (0, 4), (0, 5), (2, 2)]
    assert others == {}
    assert read == {ev0: 5, ev2: 2}  # the last record routed, for the diagnostics


class _Thread:
    """Records what the lean consumer asks of Faust's consumer thread (aiokafka's calls)."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.to_beginning: list[TP] = []
        self.read_offset: dict[TP, int | None] = {}
        self.read_during_seek: dict[TP, int | None] = {}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.read_during_seek = dict(self.read_offset)  # what a fetch meanwhile is filtered by
        return self.committed

    def _ensure_consumer(self) -> str:
        return "the aiokafka consumer"

    async def call_thread(self, fun: object, consumer: str, tps: list[TP]) -> None:
        from streams.worker.consumer import seek_to_start

        assert fun is seek_to_start and consumer == "the aiokafka consumer"
        self.to_beginning.extend(tps)


def test_perform_seek_sends_source_partitions_without_a_commit_to_their_beginning() -> None:
    import asyncio
    from types import SimpleNamespace

    from streams.worker.consumer import LeanConsumer

    ev0, ev1, ev2, cl0 = TP("ev", 0), TP("ev", 1), TP("ev", 2), TP("app-users-changelog", 0)
    thread = _Thread({ev0: 7, ev1: None, ev2: 0, cl0: None})
    thread.read_offset = {ev0: 3000, ev1: 40}  # read in the previous assignment, past the committed offsets
    consumer = SimpleNamespace(
        _thread=thread, _read_offset=thread.read_offset, _committed_offset={},
        seek_to_committed=thread.seek_to_committed, _is_changelog_tp=lambda tp: tp.topic.endswith("-changelog"),
        log=SimpleNamespace(info=print), seeks=0)
    asyncio.run(LeanConsumer.perform_seek(consumer))  # type: ignore[arg-type]
    # aiokafka moved ev0 to 7 itself; ev1 and ev2 it left where they were; a changelog is recovery's
    assert thread.to_beginning == [ev1, ev2]
    # a fetch from the committed offsets while the seek awaits the thread is not filtered away
    assert thread.read_during_seek == {ev0: None, ev1: None}
    assert consumer._read_offset == {ev0: 7, ev1: None, ev2: 0, cl0: None}
    assert consumer._committed_offset == {ev0: 7, ev2: None}  # as Faust's own perform_seek
    assert consumer.seeks == 1  # counted once every partition is sought (streams/worker/ordering.py)


def test_the_active_view_follows_the_live_set_and_is_never_empty() -> None:
    from streams.worker.consumer import ActiveView

    live: set[TP] = {TP("ev", 0)}
    view = ActiveView(live)
    assert view and TP("ev", 0) in view and TP("ev", 1) not in view
    live.clear()  # every partition paused meanwhile
    assert view and TP("ev", 0) not in view and len(view) == 0 and list(view) == []
