"""Segments through the real engine (``UserPartition``, its C loop and its Python loop): the changes it leaves
in ``Outputs.segment_changes`` equal the brute-force oracle's (tests/oracle_segments.py) on random histories,
also across a crash and a replay from the committed offset; ``processing.segments = false`` leaves none."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event
from schemas.segments import SegmentChange, make_change
from streams.config.settings import load_settings
from streams.engine import extensions
from streams.engine import segments as S
from streams.engine.partition import Outputs, UserPartition
from streams.engine.state import UserState, encode, user_key
from streams.engine.store import RulesByApp, StateStore
from tests.oracle_segments import segment_changes
from tests.unit.test_segments import VARIANT, histories

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

Row = tuple[str, str, str, str, str | None, int, int]


def rows(changes: list[SegmentChange]) -> list[Row]:
    return [(c.app_id, c.user_id, c.dimension, c.segment, c.previous, c.changed_at, c.triggered_at) for c in changes]


def engine_changes(events: list[Event], chunk: int = 5, crash_at: int | None = None, committed: int = 0,
                   segments: bool = True) -> list[SegmentChange]:
    """One event per message, a flush (drain) every ``chunk`` events; with ``crash_at``: the worker dies there
    (what it decided but did not flush is sent already, as the flush job would have), recovers from the
    flushed records and replays from offset ``committed`` (at most the last flush)."""
    rules = RulesByApp(load_settings(env={}, processing={"segments": segments}))
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), rules)
    out = Outputs()
    end = len(events) if crash_at is None else crash_at
    flushed = 0
    for start in range(0, end, chunk):
        window = events[start: min(start + chunk, end)]
        part.apply([("t", start + i, None, [e], -1) for i, e in enumerate(window)], out)
        if start + chunk <= end:
            part.drain()
            part.drain_meta()
            flushed = start + chunk
    if crash_at is None:
        return out.segment_changes
    sent = list(out.segment_changes)
    part = UserPartition(0, StateStore(data), rules)
    replay_from = min(committed, flushed)
    part.load([k for k in data if k[:1] != b"\x00"], replay_from)
    out = Outputs()
    for start in range(replay_from, len(events), chunk):
        window = events[start: start + chunk]
        part.apply([("t", start + i, None, [e], -1) for i, e in enumerate(window)], out)
        part.drain()
        part.drain_meta()
    return sent + out.segment_changes


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_engine_changes_equal_the_oracle(events: list[Event]) -> None:
    got = engine_changes(events)
    assert sorted(rows(got), key=repr) == sorted(segment_changes(events), key=repr)
    assert len({c.change_id for c in got}) == len(got)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.floats(0, 1), st.floats(0, 1))
def test_crash_and_replay_give_the_same_changes(events: list[Event], crash: float, commit: float) -> None:
    """Deduplicated by change_id (what a consumer does), the changes equal the oracle's: a replay decides
    the same changes with the same ids and loses none."""
    crash_at = int(crash * len(events))
    got = engine_changes(events, crash_at=crash_at, committed=int(commit * crash_at))
    unique = {c.change_id: c for c in got}
    assert sorted(rows(list(unique.values())), key=repr) == sorted(segment_changes(events), key=repr)


def test_segments_off_decides_nothing() -> None:
    events = [Event(f"e{d}", "u", "login", 1_767_225_600_000 + d * 86_400_000) for d in range(12)]
    assert engine_changes(events, segments=False) == []
    assert {c.dimension for c in engine_changes(events)} == {"lifecycle", "potential"}


def test_state_round_trip_keeps_segments() -> None:
    """The segment fields survive the changelog encoding, and records written before them decode with none."""
    rules = RulesByApp(load_settings(env={}))
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), rules)
    out = Outputs()
    events = [Event(f"e{d}", "u", "login", 1_767_225_600_000 + d * 86_400_000) for d in range(10)]
    part.apply([("t", i, None, [e], -1) for i, e in enumerate(events)], out)
    part.drain()
    state = part.store.get(b"default\x1fu")
    assert state is not None and state.seg[0] != -1 and state.seg[2] == 0  # new, high_potential
    assert encode(state) == data[b"default\x1fu"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.integers(0, 70), st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 1),
                                                      st.sampled_from([0, 1, 50_000_000, 100_000_000, 500_000_000]),
                                                      st.just(0), st.just(0), st.just(0)), max_size=40),
       st.integers(0, 70), st.integers(0, 70),
       st.tuples(st.sampled_from([-1, 0, 1, 2, 3, 4]), st.sampled_from([-1, 0, 1, 2, 3]),
                 st.sampled_from([-1, 0, 1, 2]), st.integers(-1, 70)),
       st.sampled_from([S.DEFAULT, VARIANT[0]]),
       st.text(st.characters(blacklist_characters="\x1f", blacklist_categories=("Cs",)), min_size=1, max_size=8),
       st.text(st.characters(blacklist_categories=("Cs",)), max_size=200), st.integers(0, 2**62))
def test_one_pass_close_equals_the_reference_functions(days: dict, first: int, day: int, seg: tuple,
                                                       segment_settings: S.SegmentSettings, app_id: str,
                                                       user_id: str, wm: int) -> None:
    """``close_day_and_next`` (the engine's) equals ``close_day`` then ``next_change_day`` (the definitions),
    and a visit (the C extension's ``segment_visit`` and its twin ``segments.visit``) says the next change
    day exactly when nothing changes, else the new segments, the next change day and the changes as
    ``make_change`` builds them (ids and evidence included; any key, also one beyond a hash block)."""
    state = UserState(first_ts=first * 86_400_000, days={d: c for d, c in days.items() if c[0] or c[1] or c[3]})
    b = S.SegmentState(*seg)
    expected = S.close_day(state, b, day, segment_settings)
    expected_next = S.next_change_day(state, b, day, segment_settings)
    a = S.SegmentState(*seg)
    changes, next_day = S.close_day_and_next(state, a, day, segment_settings)
    assert changes == expected and a == b
    assert next_day == expected_next
    c = extensions.engine(extensions.BUILT)
    params = S.visit_params(segment_settings)
    key = user_key(app_id, user_id)
    records = [make_change(app_id, user_id, x.dimension, x.segment, x.previous, x.changed_at, wm, x.evidence)
               for x in expected]
    for visit in (S.visit, c.segment_visit if c is not None else S.visit):  # the Python twin, the C extension
        visited = visit(state.days, state.first_ts, seg, day, params, key, wm)
        if not expected:
            assert visited == expected_next
            continue
        assert isinstance(visited, tuple)
        new_seg, next_day, changes = visited
        assert (S.SegmentState(*new_seg), next_day) == (b, expected_next)
        assert changes == records
        assert [msgspec.json.encode(x) for x in changes] == [msgspec.json.encode(x) for x in records]


def test_window_sums_beyond_64_bits_fall_back_to_python() -> None:
    days = {5: (1, 1, 0, 10, 0, 0, 0), 9: (2, 0, 1, 2**70, 0, 0, 0), 10: (1, 0, 1, 2**62, 0, 0, 0)}
    c = extensions.engine(extensions.BUILT)
    params = S.visit_params(S.DEFAULT)
    if c is not None:
        key = b"app\x1fu"
        assert c.segment_visit(days, 0, (-1, -1, -1, -1), 10, params, key, 1) is None
        small = {d: v for d, v in days.items() if d != 9}
        assert c.segment_visit(small, 0, (-1, -1, -1, -1), 10, params, key, 1) is None  # 2**62 + 10: beyond 2**53
        assert c.segment_visit({1: (1, 0, 0, 2**62), 2: (1, 0, 0, 2**62)}, 0, (-1, -1, -1, -1), 10,
                               params, key, 1) is None  # the sum overflows
        fits = {5: (1, 1, 0, 2**53 - 1)}
        assert c.segment_visit(fits, 0, (-1, -1, -1, -1), 10, params, key, 1) == S.visit(
            fits, 0, (-1, -1, -1, -1), 10, params, key, 1)
    state = UserState(first_ts=0, days=days)  # type: ignore[arg-type]
    changes, _ = S.close_day_and_next(state, S.SegmentState(), 10, S.DEFAULT)
    assert [(x.dimension, x.segment) for x in changes if x.dimension == "value"] == [("value", "high")]
