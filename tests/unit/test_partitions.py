"""Inserts split by partition (sinks/partitions.py) and rows taken from a flush's columns, without I/O."""

from __future__ import annotations

import datetime as dt
import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from schemas.time_units import DAY_MS
from sinks.columns import ActivityColumns, ActivityRow
from sinks.partitions import (
    LAST_MONTH,
    MAX_PARTITIONS,
    first_day_of,
    month_of_day,
    months_spanned,
    next_month,
    split,
)

EPOCH = dt.date(1970, 1, 1)


def yyyymm(day: int) -> int:
    date = EPOCH + dt.timedelta(days=day)
    return date.year * 100 + date.month


@given(st.integers(0, (dt.date(9999, 12, 31) - EPOCH).days))
def test_month_of_a_day_as_the_calendar_says(day: int) -> None:
    month = month_of_day(day)
    assert month == yyyymm(day)
    assert first_day_of(month) <= day < first_day_of(next_month(month))
    assert month_of_day(first_day_of(month)) == month


def test_months_at_the_edges() -> None:
    assert [month_of_day(d) for d in (0, 31, 59, 65_535)] == [197001, 197002, 197003, 214906]
    assert month_of_day(10**9) == LAST_MONTH  # ClickHouse's toYYYYMM saturates at December 9999
    assert next_month(201912) == 202001 and months_spanned(201912, 202001) == 2
    assert months_spanned(201001, 201912) == 120


def test_a_batch_within_the_limit_goes_whole() -> None:
    days = [first_day_of(201001), first_day_of(201001) + 40, first_day_of(201001) + 20]
    assert split(days) == [split(days)[0]]
    (group,) = split(days)
    assert (group.first, group.last, group.partitions, group.rows) == (201001, 201002, 2, None)
    assert group.token("t") == "t"  # unchanged: the token of the whole batch, as before splitting
    assert split([]) == []
    far_apart = [first_day_of(200001), first_day_of(203001), first_day_of(200001) + 9]  # 2 months, 30 years apart
    assert split(far_apart) == [split(far_apart)[0]]
    assert (split(far_apart)[0].partitions, split(far_apart)[0].rows) == (2, None)


def test_the_limit_counts_months_holding_rows() -> None:
    months = [200001]
    while len(months) < MAX_PARTITIONS + 1:
        months.append(next_month(months[-1]))
    assert split([first_day_of(m) for m in months[:-1]])[0].rows is None  # 50 months: whole
    groups = split([first_day_of(m) for m in months])  # 51: split
    assert [(g.partitions, g.rows) for g in groups] == [(50, list(range(50))), (1, [50])]


def test_ten_years_of_months_in_groups_of_at_most_the_limit() -> None:
    months = [200001]
    while len(months) < 130:
        months.append(next_month(months[-1]))
    days = [first_day_of(m) + 3 for m in reversed(months)]  # newest first
    groups = split(days)
    assert [g.partitions for g in groups] == [50, 50, 30]
    assert [(g.first, g.last) for g in groups] == [(200001, 200402), (200403, 200804), (200805, 201010)]
    assert sorted(i for g in groups for i in g.rows or []) == list(range(130))
    assert [g.token("abc") for g in groups] == ["abc-200001-200402", "abc-200403-200804", "abc-200805-201010"]


months_strategy = st.sets(st.integers(0, 8000), min_size=1, max_size=300)  # month numbers since 1970-01


@given(months_strategy, st.integers(1, 5), st.integers(1, 120), st.randoms(use_true_random=False))
def test_split_property(months: set[int], per_month: int, limit: int, rng: random.Random) -> None:
    """Every row exactly once, no group over the limit, groups in month order and disjoint, each
    group's rows in its months; the same batch splits the same way (same tokens)."""
    keys = []
    for m in sorted(months):
        first = first_day_of((1970 + m // 12) * 100 + m % 12 + 1)
        keys += [(first + rng.randrange(28)) * DAY_MS + rng.randrange(DAY_MS) for _ in range(per_month)]
    rng.shuffle(keys)
    groups = split(keys, DAY_MS, limit)
    assert split(list(keys), DAY_MS, limit) == groups
    assert [g.token("t") for g in split(list(keys), DAY_MS, limit)] == [g.token("t") for g in groups]
    if len(months) <= limit:  # touches few enough partitions: one insert of the batch as it is
        assert [(g.partitions <= limit, g.rows) for g in groups] == [(True, None)]
        return
    assert sorted(i for g in groups for i in g.rows or []) == list(range(len(keys)))
    assert all(1 <= g.partitions <= limit for g in groups)
    assert sum(g.partitions for g in groups) == len(months)
    assert all(a.last < b.first for a, b in pairwise(groups))
    assert len({g.token("t") for g in groups}) == len(groups)
    for g in groups:
        seen = {month_of_day(keys[i] // DAY_MS) for i in g.rows or []}
        assert len(seen) == g.partitions and min(seen) == g.first and max(seen) == g.last


rows_strategy = st.lists(st.tuples(
    st.sampled_from(["default", "shop", "ü"]),
    st.text(max_size=200),
    st.integers(0, 0xFFFF),
    *(st.integers(0, 2**64 - 1) for _ in range(3)),
    st.integers(-(2**127), 2**127 - 1),
    *(st.integers(0, 2**64 - 1) for _ in range(3)),
), max_size=30)


@given(rows_strategy, st.randoms(use_true_random=False))
def test_take_picks_rows_of_the_columns(rows: list[ActivityRow], rng: random.Random) -> None:
    columns = ActivityColumns.from_rows(rows)
    assert list(columns.days()) == [r[2] for r in rows]
    picked = [[rng.randrange(len(rows)) for _ in range(rng.randrange(len(rows) + 1))] if rows else []
              for _ in range(3)]
    assert list(columns.take(picked)) == [ActivityColumns.from_rows([rows[i] for i in p]) for p in picked]
