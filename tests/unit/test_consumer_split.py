"""The lean consumption path's split of one fetch (streams/consumer.py), without a broker."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from faust.types import TP

from streams.consumer import split_fetch


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


def test_inactive_partitions_and_records_below_the_read_offset_are_left_out() -> None:
    ev0, ev1, ev2 = TP("ev", 0), TP("ev", 1), TP("ev", 2)
    records = {ev0: recs("ev", 0, 3, 4, 5), ev1: recs("ev", 1, 1), ev2: recs("ev", 2, 2)}
    read: dict[TP, int | None] = {ev0: 4}
    fetched, others = split_fetch(records, {ev0}, {ev2}, {"ev": "users"}, read)
    # ev1 is paused (not active, nothing buffered): its records stay out; ev2 is buffered: in
    assert [(r.partition, r.offset) for r in fetched["users"]] == [(0, 4), (0, 5), (2, 2)]
    assert others == {}
    assert read == {ev0: 5, ev2: 2}


def test_a_fetch_wholly_below_the_read_offset_hands_nothing_over() -> None:
    ev0 = TP("ev", 0)
    read: dict[TP, int | None] = {ev0: 10}
    fetched, others = split_fetch({ev0: recs("ev", 0, 7, 8)}, None, set(), {"ev": "users"}, read)
    assert fetched == {} and others == {} and read == {ev0: 10}
