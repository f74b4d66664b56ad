"""The sink buffer (sinks/base.py) and a flush's activity columns (sinks/columns.py, and their C
builder in streams/engine/c/columns.c), without I/O."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.base import BatchingSink, SinkBackpressure
from sinks.columns import ActivityColumns, ActivityRow
from streams.engine import extensions
from streams.engine.partition import activity_columns
from streams.engine.state import UserState
from streams.engine.store import StateStore, activity_rows


class Recording(BatchingSink[ActivityColumns]):
    def __init__(self, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.written: list[list[ActivityColumns]] = []
        self.fail = False

    def rows_in(self, item: ActivityColumns) -> int:
        return item.rows

    def write(self, batch: Sequence[ActivityColumns]) -> None:
        if self.fail:
            raise SinkBackpressure(0.1)
        self.written.append(list(batch))


ROW: ActivityRow = ("default", "u1", 20_454, 3, 1, 1, 12_500_000, 0, 2, 0)


def test_the_cap_counts_rows_of_chunks_and_a_failed_write_keeps_them() -> None:
    sink = Recording(cap_rows=5)
    sink.add(ActivityColumns.from_rows([ROW] * 3))
    with pytest.raises(SinkBackpressure):
        sink.add(ActivityColumns.from_rows([ROW] * 3))  # 6 rows > 5
    sink.extend([ActivityColumns.from_rows([ROW] * 2)])
    assert sink.buffered == 5
    sink.fail = True
    with pytest.raises(SinkBackpressure):
        sink.flush()
    assert sink.buffered == 5 and len(sink.buffer) == 2  # nothing cleared
    sink.fail = False
    assert sink.flush() == 5
    assert sink.buffered == 0 and sink.buffer == []
    assert [c.rows for c in sink.written[0]] == [3, 2]


rows_strategy = st.lists(st.tuples(
    st.sampled_from(["default", "shop", "ü"]),
    st.text(max_size=200),  # no lone surrogates: hypothesis leaves them out
    st.integers(0, 0xFFFF),
    *(st.integers(0, 2**64 - 1) for _ in range(3)),
    st.integers(-(2**127), 2**127 - 1),
    *(st.integers(0, 2**64 - 1) for _ in range(3)),
), max_size=30)


@given(rows_strategy, rows_strategy)
def test_columns_hold_the_rows_and_join(first: list[ActivityRow], second: list[ActivityRow]) -> None:
    a, b = ActivityColumns.from_rows(first), ActivityColumns.from_rows(second)
    assert a.to_rows() == first
    assert ActivityColumns.join([a, b]).to_rows() == first + second
    assert ActivityColumns.join([a, b]).block_columns()[-1] == ("version", "UInt64", a.values[3] + b.values[3])


def test_values_out_of_a_column_range_are_refused() -> None:
    with pytest.raises(OverflowError):
        ActivityColumns.from_rows([("a", "u", 0x10000, *ROW[3:])])  # beyond Date
    with pytest.raises(OverflowError):
        ActivityColumns.from_rows([(*ROW[:3], -1, *ROW[4:])])  # a negative count
    with pytest.raises(OverflowError):
        ActivityColumns.from_rows([(*ROW[:6], 2**127, *ROW[7:])])  # beyond Int128


def states(rows: list[ActivityRow]) -> tuple[dict[tuple[bytes, int, str, str, int], None], StateStore]:
    """A store whose changed states hold ``rows`` (users keyed by app and id, a few days each)."""
    store = StateStore({})
    dirty: dict[tuple[bytes, int, str, str, int], None] = {}
    for app, user, day, *counters in rows:
        key = f"{app}\x1f{user}".encode()
        state = store.dirty.setdefault(key, UserState(0, days={}))
        state.days[day] = tuple(counters)  # type: ignore[assignment]
        dirty[(key, day, app, user, 0)] = None
    return dirty, store


@pytest.mark.skipif(not extensions.BUILT, reason="the engine's C extension is not built")
@given(rows_strategy)
def test_c_builds_what_python_builds(rows: list[ActivityRow]) -> None:
    dirty, store = states(rows)
    python = activity_columns(dirty, {0: store}, native=False)
    assert activity_columns(dirty, {0: store}, native=True) == python
    assert python == ActivityColumns.from_rows(activity_rows(dirty, {0: store}))  # type: ignore[arg-type]


@pytest.mark.skipif(not extensions.BUILT, reason="the engine's C extension is not built")
def test_c_refuses_what_python_refuses() -> None:
    for bad in [("a", "u", 0x10000, *ROW[3:]), (*ROW[:3], -1, *ROW[4:]), (*ROW[:6], 2**127, *ROW[7:])]:
        dirty, store = states([bad])  # type: ignore[list-item]
        for native in (False, True):
            with pytest.raises(OverflowError):
                activity_columns(dirty, {0: store}, native=native)


@pytest.mark.skipif(not extensions.BUILT, reason="the engine's C extension is not built")
def test_rows_of_unchanged_states_are_read_from_the_store_and_missing_ones_skipped() -> None:
    dirty, store = states([ROW])
    key = next(iter(store.dirty))
    store.drain()  # encoded into the store's data: no longer changed
    dirty[(b"default\x1fgone", 1, "default", "gone", 0)] = None
    for native in (False, True):
        assert activity_columns(dirty, {0: store}, native=native).to_rows() == [ROW]
    assert key in store.data
