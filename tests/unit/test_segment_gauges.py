"""Segment-size gauges (streams/ops/segment_gauges.py) on the real embedded engine: the sizes equal the
users' latest segments computed in Python, a segment that empties reads 0, a restarted worker (a new
ClickHouse client, new metrics) reads the same, two workers writing disjoint users both export the whole
figure, labels stay bounded under an app-id flood, and queries are throttled."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import Event
from schemas.segments import SegmentChange, make_change
from sinks.clickhouse import ClickHouse
from sinks.segments import SegmentSink
from streams.ops.metrics import AppLabels, Metrics
from streams.ops.segment_gauges import SegmentGauges
from tests.segment_driver import Driver

D = 86_400_000
H = 3_600_000
T0 = 1_767_225_600_000


def history() -> list[Event]:
    """Users of two configured apps and many other apps: daily logins (high potential), payers, a lapse."""
    events = []
    for i in range(12):
        app = ("default", "shop", f"tenant-{i}")[i % 3]
        for d in range(0, 9 if i % 2 else 3):
            events.append(Event(f"l{i}-{d}", f"u{i}", "login", T0 + d * D + (i + 1) * 60_000, app_id=app))
        if i % 4 == 0:
            events.append(Event(f"p{i}", f"u{i}", "payment", T0 + 10 * D + H, app_id=app, amount=150.0 * i))
    events.append(Event("clock", "clock", "view", T0 + 60 * D, app_id="default"))
    return sorted(events, key=lambda e: e.ts)


def changes() -> list[SegmentChange]:
    driver = Driver()
    for event in history():
        driver.send(event)
    return driver.changes


def expected(rows: list[SegmentChange], labels: AppLabels) -> Counter[tuple[str, str, str]]:
    latest: dict[tuple[str, str, str], SegmentChange] = {}
    for c in sorted(rows, key=lambda c: (c.changed_at, c.segment == "converted")):
        latest[(c.app_id, c.user_id, c.dimension)] = c
    return Counter((labels(app), dim, c.segment) for (app, _, dim), c in latest.items())


def exported(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    return {(s.labels["app_id"], s.labels["dimension"], s.labels["segment"]): s.value
            for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
            for s in family.samples if s.name == "vitals_segment_users"}


def test_sizes_restart_two_workers_and_an_emptied_segment(tmp_path: Path) -> None:
    labels = AppLabels(["shop"])
    rows = changes()
    assert {c.dimension for c in rows} == {"lifecycle", "value", "potential"}
    dsn = f"chdb://{tmp_path / 'ch'}"
    ch = ClickHouse(dsn)
    ch.ensure_schema()
    half = len(rows) // 2  # two workers: disjoint halves of the changes, one database
    SegmentSink(ch, 10_000).write(rows[:half])
    SegmentSink(ch, 10_000).write(rows[half:])
    want = expected(rows, labels)
    assert {app for app, _, _ in want} == {"default", "shop", "other"}
    first, second = Metrics(), Metrics()
    assert SegmentGauges(ch, first, labels).refresh() and SegmentGauges(ch, second, labels).refresh()
    nonzero = [{k: v for k, v in exported(m).items() if v} for m in (first, second)]
    assert nonzero[0] == nonzero[1] == {k: float(n) for k, n in want.items()}
    assert len(exported(first)) == 3 * 12  # every app label's segments, 0 when empty

    # everyone of shop's lifecycle segment moves on: the old series reads 0, not its last value
    gauges = SegmentGauges(ch, first, labels, every_s=0)
    shop_now = {(c.user_id): c for c in sorted(rows, key=lambda c: c.changed_at)
                if c.app_id == "shop" and c.dimension == "lifecycle"}
    later = T0 + 90 * D
    moved = [make_change("shop", u, "lifecycle", "resurrecting", c.segment, later, later, {})
             for u, c in shop_now.items()]
    SegmentSink(ch, 10_000).write(moved)
    gauges.refresh()
    got = exported(first)
    assert got[("shop", "lifecycle", "resurrecting")] == len(shop_now)
    for app, dim, seg in want:
        if app == "shop" and dim == "lifecycle" and seg != "resurrecting":
            assert got[(app, dim, seg)] == 0
    ch.close()

    restarted = ClickHouse(dsn)  # a restart: nothing in memory, the same figures from the first refresh
    again = Metrics()
    SegmentGauges(restarted, again, labels).refresh()
    assert {k: v for k, v in exported(again).items() if v} == {k: v for k, v in got.items() if v}
    restarted.close()


class Counting:
    database = "vitals"

    def __init__(self, rows: list[tuple[str, str, str, int]]) -> None:
        self.rows, self.calls = rows, 0

    def query(self, sql: str, parameters: dict[str, object] | None = None) -> list[tuple[str, str, str, int]]:
        self.calls += 1
        assert parameters == {"apps": ["default", "shop"]} and "FINAL" in sql and "LIMIT" in sql
        return self.rows


def test_throttled_and_bounded_labels() -> None:
    now = [0.0]
    rows = [("default", "value", "high", 3), ("other", "value", "high", 5), ("other", "value", "weird", 1),
            ("shop", "unknown_dimension", "x", 9)]
    ch = Counting(rows)
    metrics = Metrics()
    gauges = SegmentGauges(ch, metrics, AppLabels(["shop"]), every_s=60, clock=lambda: now[0])
    assert gauges.refresh() and not gauges.refresh()
    now[0] = 61.0
    assert gauges.refresh() and ch.calls == 2
    assert {k: v for k, v in exported(metrics).items() if v} == {
        ("default", "value", "high"): 3, ("other", "value", "high"): 5, ("other", "value", "other"): 1}
    assert len(exported(metrics)) == 3 * 12 + 1
