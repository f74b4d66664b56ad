"""Events older than the days the state keeps, on the real embedded ClickHouse (chdb): the ledger and
the rows it recomputes. ``user_activity_daily FINAL`` holds the state-written counters plus every late
event once — also when the same late events are written again (a replay after a crash, a redelivery),
in any order with the state's own rows, over ten years of months (one insert per group of months)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sinks.clickhouse import ActivitySink, ClickHouse
from sinks.columns import ActivityColumns
from sinks.late import ColdEvent, LateSink
from sinks.partitions import first_day_of, next_month

pytestmark = pytest.mark.integration

QUERY = ("SELECT app_id, user_id, toUInt32(day), events, logins, payments, payment_amount, content_posts, social, "
         "complaints FROM vitals.user_activity_daily FINAL ORDER BY app_id, user_id, day")
Counts = tuple[int, int, int, int, int, int, int]


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    ch = ClickHouse(f"chdb://{tmp_path_factory.mktemp('late') / 'ch'}")
    ch.ensure_schema()
    yield ch
    ch.close()


def reset(ch: ClickHouse) -> None:
    for table in ("user_activity_daily", "late_events"):
        ch.query(f"TRUNCATE TABLE {ch.table(table)}")


def write_state_rows(ch: ClickHouse, rows: list[tuple[str, str, int, Counts]]) -> None:
    sink = ActivitySink(ch, 1_000_000)
    sink.add(ActivityColumns.from_rows([(a, u, d, *c) for a, u, d, c in rows]))
    sink.flush()


def write_late(ch: ClickHouse, events: list[ColdEvent]) -> None:
    sink = LateSink(ch, 1_000_000)
    sink.extend(events)
    sink.flush()


def expect(state: dict[tuple[str, str, int], Counts], late: list[ColdEvent]) -> list[tuple[object, ...]]:
    total: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * 7)
    for key, counts in state.items():
        total[key] = list(counts)
    for app, user, day, _h, counts in {(e[0], e[1], e[2], e[3]): e for e in late}.values():  # each id once
        for i, n in enumerate(counts):
            total[(app, user, day)][i] += n
    return sorted((a, u, d, c[0], c[1], c[2], Decimal(c[3]).scaleb(-6), *c[4:]) for (a, u, d), c in total.items())


def late_event(app: str, user: str, day: int, n: int) -> ColdEvent:
    return (app, user, day, n, (1, n % 2, n % 3 == 0, (n % 3 == 0) * 1_500_000, 0, n % 5 == 0, 0))  # type: ignore[return-value]


def test_late_events_add_to_the_rows_written_from_state_once_however_often_replayed(ch: ClickHouse) -> None:
    reset(ch)
    day = first_day_of(202601)
    state = {("default", "u", day): (5, 1, 1, 2_000_000, 0, 1, 0), ("default", "v", day + 1): (1, 0, 0, 0, 0, 0, 0)}
    write_state_rows(ch, [(a, u, d, c) for (a, u, d), c in state.items()])
    late = [late_event("default", "u", day, n) for n in range(4)] + [late_event("default", "w", day, 7)]
    write_late(ch, late[:2])
    write_late(ch, late)  # a replay of the first two, then the rest
    write_late(ch, late[3:])  # a redelivery
    assert ch.query(QUERY) == expect(state, late)
    # a later late event on the same day adds to the row that already holds the earlier ones
    more = [late_event("default", "u", day, 9)]
    write_late(ch, more)
    assert ch.query(QUERY) == expect(state, late + more)


def test_ten_years_of_late_months_in_one_flush(ch: ClickHouse) -> None:
    reset(ch)
    months = [201501]
    while len(months) < 130:
        months.append(next_month(months[-1]))
    late = [late_event("default", f"u{k % 3}", first_day_of(m) + k % 20, k) for k, m in enumerate(months * 2)]
    write_late(ch, late)
    write_late(ch, late)
    assert ch.query(QUERY) == expect({}, late)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["u", "v"]), st.integers(0, 40), st.integers(0, 5)), max_size=30),
       st.lists(st.tuples(st.sampled_from(["u", "v"]), st.integers(0, 40)), max_size=6, unique=True),
       st.integers(1, 4))
def test_any_interleaving_of_late_writes_gives_the_batch_sum(ch: ClickHouse, draws: list[tuple[str, int, int]],
                                                              state_keys: list[tuple[str, int]], cuts: int) -> None:
    reset(ch)
    base = first_day_of(202001)
    state = {("app", u, base + d * 30): (3, 1, 0, 0, 1, 0, 0) for u, d in state_keys}
    write_state_rows(ch, [(a, u, d, c) for (a, u, d), c in state.items()])
    late = [late_event("app", u, base + d * 30, n) for u, d, n in draws]
    size = max(1, len(late) // cuts)
    for start in range(0, len(late), size):
        write_late(ch, late[start : start + size])
    write_late(ch, late[: len(late) // 2])  # replayed after a crash
    assert ch.query(QUERY) == expect(state, late)
