"""Paced garbage collection: automatic collection off, cycles collected at the worker's pace."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streams.ops.metrics import Metrics
from streams.ops.paced_gc import PacedCollector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def automatic_gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_cycles_live_until_the_full_collection_of_the_interval(automatic_gc_restored: None) -> None:
    metrics = Metrics(CollectorRegistry())
    clock = Clock()
    collector = PacedCollector(60.0, metrics.gc_seconds, clock)
    collector.start()
    assert not gc.isenabled()
    garbage = cycle()
    for _ in range(50_000):  # far past Python's automatic threshold: nothing collects it
        [[]]  # noqa: B018
    assert garbage() is not None
    clock.now += 59.0
    collector.after_flush()
    assert garbage() is not None and collector.full_collections == 0
    clock.now += 1.0
    collector.after_flush()
    assert garbage() is None and collector.full_collections == 1
    assert metrics.registry.get_sample_value("vitals_gc_seconds_count") == 1
    collector.after_flush()  # the next one is an interval later again
    assert collector.full_collections == 1
