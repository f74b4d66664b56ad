"""The segment tables (sinks/segments.py), the alerts' context and holdout columns and the segment views
(sinks/segment_views.py) on the real embedded engine (chdb), each view against an independent Python
computation over the same rows. Segment changes come from the pure functions driven over random histories
(tests/segment_driver.py, whose output tests/unit/test_segments.py checks against the brute-force oracle)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.alerts import Alert, alert_id
from schemas.events import Event
from schemas.segments import SegmentChange
from sinks import alerts as sinks_alerts
from sinks import native_format as native
from sinks import segments as seg_sink
from sinks.alerts import AlertSink
from sinks.base import UNCAPPED
from sinks.clickhouse import ActivitySink, ClickHouse
from sinks.columns import ActivityColumns
from sinks.segments import SegmentSink
from sinks.views import ensure_views
from tests.segment_driver import Driver
from tests.unit.test_segments import histories

D = 86_400_000
H = 3_600_000
EPOCH = date(1970, 1, 1)
TABLES = ("segment_changes", "user_segments", "alerts", "user_activity_daily")


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    ch = ClickHouse(f"chdb://{tmp_path_factory.mktemp('segviews') / 'ch'}")
    ch.ensure_schema()
    ensure_views(ch)
    yield ch
    ch.close()


def fresh(ch: ClickHouse) -> None:
    for table in TABLES:
        ch.client().command(f"TRUNCATE TABLE vitals.{table}")


def count_inserts(ch: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each insert ``ch`` makes from now on (the inserts still go to ClickHouse)."""
    sent: list[int] = []
    insert = ch.insert

    def counted(table: str, cols: list[str], data: list[list[Any]], token: str) -> None:
        sent.append(len(data[0]))
        insert(table, cols, data, token)

    monkeypatch.setattr(ch, "insert", counted)
    return sent


def count_native_inserts(ch: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each Native-format insert ``ch`` makes from now on (they still go to ClickHouse)."""
    sent: list[int] = []
    insert = ch.insert_native

    def counted(table: str, cols: list[str], block: bytes, token: str, partitions: int = 1) -> None:
        sent.append(native_rows(block))
        insert(table, cols, block, token, partitions)

    monkeypatch.setattr(ch, "insert_native", counted)
    return sent


def native_rows(block: bytes) -> int:
    """A Native block's row count: the second LEB128 number of its header."""
    _columns, pos = native.read_leb128(block, 0)
    return native.read_leb128(block, pos)[0]


def day(ms: int) -> date:
    return EPOCH + timedelta(days=ms // D)


def changes_of(events: list[Event]) -> list[SegmentChange]:
    driver = Driver()
    for event in events:
        driver.send(event)
    return driver.changes


def order(c: SegmentChange) -> tuple[int, bool]:
    return c.changed_at, c.segment == "converted"


# ---- the tables ---------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(histories(max_users=5, max_steps=50), st.randoms(use_true_random=False))
def test_tables_hold_each_change_once_and_the_latest_segment(ch: ClickHouse, events: list[Event],
                                                              rnd: random.Random) -> None:
    fresh(ch)
    changes = changes_of(events)
    sink = SegmentSink(ch, 100_000)
    sink.extend(changes)
    assert sink.flush() == len(changes)
    sink.write(changes)  # a retried insert: deduplicated by its tokens
    replay = [c for c in changes if rnd.random() < 0.5]
    rnd.shuffle(replay)  # a replay after a crash, in another order: collapsed by FINAL
    sink.write(replay)
    got = ch.query("SELECT app_id, user_id, dimension, segment, previous, changed_at, triggered_at, change_id, "
                   "evidence, schema_version FROM vitals.segment_changes FINAL")
    assert sorted(got, key=repr) == sorted(((c.app_id, c.user_id, c.dimension, c.segment, c.previous,
                                             c.changed_at, c.triggered_at, c.change_id,
                                             orjson.dumps(c.evidence).decode(), 1) for c in changes), key=repr)
    latest: dict[tuple[str, str, str], SegmentChange] = {}
    for c in sorted(changes, key=order):
        latest[(c.app_id, c.user_id, c.dimension)] = c
    current = ch.query("SELECT app_id, user_id, dimension, segment, changed_at FROM vitals.user_segments FINAL")
    assert sorted(current) == sorted((*k, c.segment, c.changed_at) for k, c in latest.items())


def test_user_segments_tie_goes_to_converted_and_inserts_are_bounded(ch: ClickHouse,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.segments import make_change

    fresh(ch)
    t = 20_000 * D
    entry = make_change("default", "u", "potential", "high_potential", None, t, t + D, {"streak": 7})
    paid = make_change("default", "u", "potential", "converted", "high_potential", t, t + D, {"amount": 1})
    SegmentSink(ch, 10).write([paid])
    SegmentSink(ch, 10).write([entry])  # arrives later, decided earlier: the tie goes to converted
    assert ch.query("SELECT segment FROM vitals.user_segments FINAL") == [("converted",)]
    sent = count_native_inserts(ch, monkeypatch)
    monkeypatch.setattr(seg_sink, "MAX_ROWS", 7)
    many = [make_change("a", "x" * 128 + str(i), "value", "low", None, t, t, {"amount_30d": 1.5}) for i in range(30)]
    SegmentSink(ch, 100).write(many)
    assert max(sent) <= 7 and sum(sent) == 60  # both tables, in runs of at most 7 rows
    monkeypatch.setattr(seg_sink, "MAX_BYTES", 800)  # about 200 bytes a row
    assert all(len(run) <= 4 for run in seg_sink.chunks([(c, b"{}") for c in many]))
    assert ch.query("SELECT count() FROM vitals.segment_changes FINAL WHERE app_id = 'a'") == [(30,)]


def test_alerts_keep_context_and_holdout(ch: ClickHouse) -> None:
    fresh(ch)
    ch.client().command("ALTER TABLE vitals.alerts ADD COLUMN IF NOT EXISTS context String DEFAULT 'null', "
                        "ADD COLUMN IF NOT EXISTS holdout UInt8 DEFAULT 0")  # idempotent on a new table
    context = {"lifecycle": "dormant", "value": "high", "payment_amount_30d": 600.0, "active_days_30d": 3,
               "priority": "P1"}
    alerts = [Alert("a1", "open", "churn.no_login_72h", 0, "default", "u1", None, None, 1, 2, {"x": 1},
                    context=context, holdout=True),
              Alert("a2", "open", "fake.burst", None, "default", "u2", None, None, 1, 2, {})]
    AlertSink(ch, 10).write(alerts)
    got = ch.query("SELECT alert_id, context, holdout FROM vitals.alerts FINAL ORDER BY alert_id")
    assert [(a, orjson.loads(c), h) for a, c, h in got] == [("a1", context, 1), ("a2", None, 0)]


# ---- the views ----------------------------------------------------------------------------------------------


def expected_sizes(changes: list[SegmentChange]) -> dict[tuple[str, date, str, str], int]:
    """Users whose latest change of the dimension by the end of each day is into the segment, on every day
    from the segment's first entry to the app's last change day."""
    last = {app: max(day(c.changed_at) for c in changes if c.app_id == app) for app in {c.app_id for c in changes}}
    first: dict[tuple[str, str, str], date] = {}
    for c in changes:
        key = (c.app_id, c.dimension, c.segment)
        first[key] = min(first.get(key, day(c.changed_at)), day(c.changed_at))
    out = {}
    for (app, dim, segment), start in first.items():
        mine = sorted((c for c in changes if c.app_id == app and c.dimension == dim), key=order)
        d = start
        while d <= last[app]:
            now: dict[str, str] = {}
            for c in mine:
                if day(c.changed_at) <= d:
                    now[c.user_id] = c.segment
            out[(app, d, dim, segment)] = sum(s == segment for s in now.values())
            d += timedelta(days=1)
    return out


def expected_conversion(changes: list[SegmentChange]) -> dict[tuple[str, date], tuple[int, int, int]]:
    by_user: dict[tuple[str, str], list[SegmentChange]] = defaultdict(list)
    for c in changes:
        if c.dimension == "potential":
            by_user[(c.app_id, c.user_id)].append(c)
    out: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (app, _), mine in by_user.items():
        mine.sort(key=order)
        for i, c in enumerate(mine):
            if c.segment != "high_potential":
                continue
            row = out[(app, day(c.changed_at))]
            row[0] += 1
            nxt = mine[i + 1] if i + 1 < len(mine) else None
            row[1] += nxt is not None and nxt.segment == "converted" and nxt.changed_at < c.changed_at + 31 * D
            row[2] += nxt is None
    return {k: (a, b, p) for k, (a, b, p) in out.items()}


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(histories(max_users=6, max_steps=60, span_days=90))
def test_segment_views_equal_a_python_computation(ch: ClickHouse, events: list[Event]) -> None:
    fresh(ch)
    changes = changes_of(events)
    SegmentSink(ch, 100_000).write(changes)
    sizes = expected_sizes(changes)
    got = ch.query("SELECT app_id, day, dimension, segment, users FROM vitals.segment_sizes_daily")
    assert {(a, d, dim, s): n for a, d, dim, s, n in got} == sizes
    assert len(got) == len(sizes)

    moves: dict[tuple[str, date, str, str, str], int] = defaultdict(int)
    for c in changes:
        if c.previous is not None:
            moves[(c.app_id, day(c.changed_at), c.dimension, c.previous, c.segment)] += 1
    expected = {}
    for (app, d, dim, prev, s), n in moves.items():
        size = sizes.get((app, d - timedelta(days=1), dim, prev), 0)
        expected[(app, d, dim, prev, s)] = (n, size, n / size if size else None)
    got = ch.query("SELECT app_id, day, dimension, previous, segment, moved, previous_size, share "
                   "FROM vitals.segment_migrations")
    assert {tuple(r[:5]): (r[5], r[6], r[7]) for r in got} == expected and len(got) == len(expected)

    got = ch.query("SELECT app_id, entry_day, entered, converted, pending, rate, practice_rate "
                   "FROM vitals.high_potential_conversion")
    conv = expected_conversion(changes)
    assert {(a, d): (e, c, p) for a, d, e, c, p, _, _ in got} == conv
    assert all(rate == c / e and practice == 0.38 for _, _, e, c, _, rate, practice in got)


def test_high_potential_conversion_counts_a_conversion_of_day_30_not_31(ch: ClickHouse) -> None:
    """Seven login days, then a payment on entry day + 30 (converted) for one user and entry + 31 (lapsed
    first) for another, through the pure functions."""
    fresh(ch)
    t0 = 20_454 * D
    events = [Event(f"{u}{i}", u, "login", t0 + i * D + 10 * H) for u in ("a", "b") for i in range(7)]
    events += [Event("pa", "a", "payment", t0 + 36 * D + 23 * H, amount=5.0),
               Event("pb", "b", "payment", t0 + 37 * D + H, amount=5.0),
               Event("clock", "c", "view", t0 + 40 * D)]
    changes = changes_of(sorted(events, key=lambda e: e.ts))
    SegmentSink(ch, 100).write(changes)
    assert ch.query("SELECT entered, converted, pending, rate FROM vitals.high_potential_conversion") == [
        (2, 1, 0, 0.5)]
    from streams.report.segment_data import read_segment_data  # what the report reads of the same rows

    data = read_segment_data(ch)
    assert list(data.conversion.values()) == [(2, 1, 0)]
    assert data.migrations["potential"] == {("high_potential", "converted"): (1, 1 / 60),  # 2 users x 30 days
                                            ("high_potential", "lapsed"): (1, 1 / 60)}
    assert data.sizes["potential"]["converted"][max(data.sizes["potential"]["converted"])] == 1


Rows = tuple[list[Alert], list[tuple[Any, ...]]]


@st.composite
def alerts_and_days(draw: st.DrawFn) -> Rows:
    """Random ``churn.no_login_72h`` episodes (open, maybe resolved at some login), fake alerts (per user and
    device farms) and per-user activity days, over a few users and 50 days."""
    base = 20_000
    users = [f"u{i}" for i in range(draw(st.integers(1, 8)))]
    apps = ["default", "shop"]
    alerts: list[Alert] = []
    for _ in range(draw(st.integers(0, 12))):
        app, user = draw(st.sampled_from(apps)), draw(st.sampled_from(users))
        start = (base + draw(st.integers(0, 49))) * D + draw(st.integers(0, D - 1))
        aid = alert_id(app, "churn.no_login_72h", user, start)
        hold = draw(st.booleans())
        alerts.append(Alert(aid, "open", "churn.no_login_72h", 0, app, user, None, None, start, start, {},
                            holdout=hold))
        back = draw(st.sampled_from([None, 0, 1, 72 * H - 1, 72 * H, 72 * H + 1, 9 * D]))
        if back is not None:
            alerts.append(Alert(aid, "resolved", "churn.no_login_72h", 0, app, user, None, None, start,
                                start + back, {"login_ts": start + back}, holdout=hold))
    for _ in range(draw(st.integers(0, 8))):
        app, start = draw(st.sampled_from(apps)), (base + draw(st.integers(0, 49))) * D
        if draw(st.booleans()):
            user = draw(st.sampled_from(users))
            alerts.append(Alert(alert_id(app, "fake.burst", user, start), "open", "fake.burst", None, app, user,
                                None, None, start, start, {}))
        else:
            named = draw(st.lists(st.sampled_from(users), min_size=1, max_size=5, unique=True))
            alerts.append(Alert(alert_id(app, "fake.device_farm", "dev", start), "open", "fake.device_farm", None,
                                app, None, "dev", named, start, start, {}))
    days = {(draw(st.sampled_from(apps)), draw(st.sampled_from(users)), base + draw(st.integers(0, 49)))
            for _ in range(draw(st.integers(1, 60)))}
    unique = {(a.alert_id, a.status): a for a in reversed(alerts)}  # one record per (alert_id, status)
    return list(unique.values()), [(a, u, d, 1, 1, 0, 0, 0, 0, 0) for a, u, d in sorted(days)]


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(alerts_and_days())
def test_recall_uplift_and_fake_excluded_figures_equal_a_python_computation(ch: ClickHouse, rows: Rows) -> None:
    fresh(ch)
    alerts, daily = rows
    AlertSink(ch, 1000).write(alerts)
    ActivitySink(ch, 1000).write([ActivityColumns.from_rows(daily)])

    flags: dict[tuple[str, str], set[int]] = defaultdict(set)
    for a in alerts:
        if a.rule.startswith("fake."):
            for u in (a.user_ids or []) if a.rule == "fake.device_farm" else [a.user_id]:
                flags[(a.app_id, str(u))].add(a.episode_start // D)
    episodes: dict[tuple[str, str], list[Any]] = {}
    recall = [a for a in alerts if a.rule == "churn.no_login_72h"]
    for a in recall:
        if a.status == "open":
            dn = a.episode_start // D
            flagged = any(dn - 29 <= f <= dn for f in flags.get((a.app_id, str(a.user_id)), ()))
            episodes[(a.app_id, a.alert_id)] = [day(a.episode_start), a.holdout, False, flagged]
    for a in recall:
        if a.status == "resolved":
            episodes[(a.app_id, a.alert_id)][2] = a.evidence["login_ts"] - a.episode_start <= 72 * H
    tally: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * 8)
    for (app, _), (d, hold, back, flagged) in episodes.items():
        row = tally[(app, d)]
        for part in (0, 4) if not flagged else (0,):  # raw, and without the fake-flagged users
            row[part + 2 * hold] += 1
            row[part + 2 * hold + 1] += back
    expected = {}
    for key, counts in tally.items():
        figures: list[float] = []
        for o, r, oh, rh in (counts[:4], counts[4:]):
            rate, rate_h = (r / o if o else 0), (rh / oh if oh else 0)
            figures += [o, r, rate, oh, rh, rate_h, rate - rate_h]
        expected[key] = tuple(figures)
    got = ch.query("SELECT app_id, day, opened, recalled, rate, opened_holdout, recalled_holdout, rate_holdout, "
                   "uplift, opened_clean, recalled_clean, rate_clean, opened_holdout_clean, recalled_holdout_clean, "
                   "rate_holdout_clean, uplift_clean FROM vitals.recall_uplift")
    assert {(r[0], r[1]): tuple(r[2:]) for r in got} == expected and len(got) == len(expected)

    active: dict[tuple[str, str], set[int]] = defaultdict(set)
    for app, user, dn, *_ in daily:
        active[(app, user)].add(dn)
    last = max(dn for _, _, dn, *_ in daily)
    out: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0] * 6)
    for who, days in active.items():
        first = min(days)
        for dn in days | {first + 1}:
            if dn > last:
                continue
            flagged = any(dn - 29 <= f <= dn for f in flags.get(who, ()))
            on, cohort = dn in days, first == dn - 1
            row = out[(who[0], dn)]
            for i, counted in enumerate((on, on and not flagged, cohort, cohort and on, cohort and not flagged,
                                         cohort and on and not flagged)):
                row[i] += counted
    got = ch.query("SELECT app_id, toUInt32(day), dau, dau_clean, cohort, retained, retention, cohort_clean, "
                   "retained_clean, retention_clean FROM vitals.active_users_clean")
    want = {k: (d, dc, c, r, r / c if c else 0, cc, rc, rc / cc if cc else 0) for k, (d, dc, c, r, cc, rc)
            in out.items()}
    assert {(r[0], r[1]): tuple(r[2:]) for r in got} == want and len(got) == len(want)


# ---- vitals inspect, and an alerts table of an earlier version ---------------------------------------------


def test_inspect_shows_current_segments_and_last_changes(ch: ClickHouse, capsys: pytest.CaptureFixture[str]) -> None:
    from streams.report.inspection import Found, as_dict, print_text, read_segments

    fresh(ch)
    t0 = 20_454 * D
    events = [Event(f"l{i}", "u", "login", t0 + i * D + 10 * H) for i in range(7)]
    events += [Event("p", "u", "payment", t0 + 9 * D, amount=600.0), Event("clock", "c", "view", t0 + 12 * D)]
    changes = [c for c in changes_of(events) if c.user_id == "u"]
    SegmentSink(ch, 100).write(changes)
    got = read_segments(ch, "default", "u", last_changes=3)
    latest = {c.dimension: c for c in sorted(changes, key=order)}
    assert {d: v["segment"] for d, v in got["current"].items()} == {d: c.segment for d, c in latest.items()}
    assert got["current"]["potential"]["segment"] == "converted" and got["current"]["value"]["segment"] == "high"
    newest = sorted(changes, key=order, reverse=True)[:3]
    assert [(c["dimension"], c["segment"]) for c in got["last_changes"]] == [(c.dimension, c.segment) for c in newest]
    assert read_segments(ch, "default", "nobody") == {"current": {}, "last_changes": []}
    doc = as_dict(Found(0, segments=got), "default", "u", 0)
    print_text(doc)
    out = capsys.readouterr().out
    assert "potential converted since" in out and "high_potential -> converted" in out
    doc = as_dict(Found(0, segments_error="engine busy"), "default", "u", 0)
    print_text(doc)
    assert "segments              not read: engine busy" in capsys.readouterr().out


def test_an_alerts_table_of_an_earlier_version_gets_context_and_holdout(ch: ClickHouse) -> None:
    ch.client().command("DROP TABLE vitals.alerts")
    ch.client().command("""CREATE TABLE vitals.alerts (alert_id String, status LowCardinality(String),
        rule LowCardinality(String), level Nullable(UInt8), app_id LowCardinality(String), user_id Nullable(String),
        device_id Nullable(String), user_ids Array(String), episode_start Int64, triggered_at Int64,
        evidence String, schema_version UInt8) ENGINE = ReplacingMergeTree ORDER BY (app_id, rule, alert_id, status)
        SETTINGS non_replicated_deduplication_window = 1000""")
    ch.client().command("INSERT INTO vitals.alerts (alert_id, status, rule, app_id, episode_start, triggered_at, "
                        "evidence, schema_version) VALUES ('before', 'open', 'fake.burst', 'default', 0, 0, '{}', 1)")
    ch._schema_ready = False  # a worker of this version starting on the earlier database
    ch.ensure_schema()
    ensure_views(ch)
    AlertSink(ch, 10).write([Alert("after", "open", "churn.no_login_72h", 0, "default", "u", None, None, 0, 0, {},
                                   context={"priority": "P3"}, holdout=True)])
    assert ch.query("SELECT alert_id, context, holdout FROM vitals.alerts FINAL ORDER BY alert_id") == [
        ("after", '{"priority":"P3"}', 1), ("before", "null", 0)]
    assert ch.query("SELECT opened, opened_holdout FROM vitals.recall_uplift") == [(0, 1)]


def test_an_alert_flood_is_written_in_bounded_inserts(ch: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush job can hold an alert per user of a partition (a day close, a watermark jump past many
    deadlines): the worker's sink takes them all, each insert holds at most ALERT_INSERT_ROWS."""
    fresh(ch)
    monkeypatch.setattr(sinks_alerts, "ALERT_INSERT_ROWS", 7)
    sent = count_inserts(ch, monkeypatch)
    flood = [Alert(f"a{i}", "open", "churn.no_login_72h", 0, "default", f"u{i}", None, None, 1, 2, {"i": i})
             for i in range(30)]
    sink = AlertSink(ch, UNCAPPED)
    sink.extend(flood)
    assert sink.flush() == 30
    assert sent == [7, 7, 7, 7, 2]
    assert ch.query("SELECT count() FROM vitals.alerts FINAL") == [(30,)]
    # device farms list up to 100 user ids of up to 128 characters: the bytes cut the inserts first
    monkeypatch.setattr(sinks_alerts, "ALERT_INSERT_BYTES", 30_000)
    sent.clear()
    farms = [Alert(f"f{i}", "open", "fake.device_farm", None, "default", None, f"d{i}",
                   [f"{j:0128}" for j in range(100)], 1, 2, {"distinct_users": 100}) for i in range(6)]
    sink.extend(farms)
    assert sink.flush() == 6
    assert sent == [2, 2, 2]  # about 13.7 KB an alert
    assert ch.query("SELECT count(), sum(length(user_ids)) FROM vitals.alerts FINAL WHERE rule = 'fake.device_farm'") \
        == [(6, 600)]
