"""Segments (SPEC section 7): each definition at its boundaries, and the incremental functions driven through
the day index against the naive oracle (tests/oracle_segments.py) on random histories."""

from __future__ import annotations

import itertools
import json

import jsonschema  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_DIR
from schemas.events import Event
from schemas.segments import change_id, decode_change, encode_change
from streams.engine import segments as S
from streams.engine.indexes import ChangeDayIndex
from streams.engine.state import UserState
from tests.oracle_segments import Cfg, segment_changes
from tests.segment_driver import Driver

H = 3_600_000
D = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a day start
DAY0 = T0 // D
_ids = itertools.count()
SCHEMA = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "segment.schema.json").read_text()))


def ev(day: int, type_: str = "view", user: str = "u", amount: float = 0.0, hour: int = 12) -> Event:
    return Event(f"e{next(_ids)}", user, type_, T0 + day * D + hour * H, amount=amount)


def run(*events: Event, until: int) -> Driver:
    """Events in the order given, then a clock user's event closing every day up to ``until``."""
    driver = Driver()
    for event in events:
        driver.send(event)
    driver.send(Event(f"e{next(_ids)}", "clock", "view", T0 + (until + 1) * D + H))
    return driver


def changes(driver: Driver, dimension: str, user: str = "u") -> list[tuple[str, str | None, int]]:
    """(segment, previous, day of changed_at) of one user's changes in one dimension."""
    return [(c.segment, c.previous, c.changed_at // D - DAY0) for c in driver.changes
            if c.user_id == user and c.dimension == dimension]


# ---- lifecycle ----------------------------------------------------------------------------------------------


def test_lifecycle_new_then_dormant_then_churned() -> None:
    d = run(ev(0), until=40)
    # new while F >= D-6 (days 0..6); dormant from D = 7 (active in D-29..D-7); churned once day 0 < D-29
    assert changes(d, "lifecycle") == [("new", None, 0), ("dormant", "new", 7), ("churned", "dormant", 30)]


def test_lifecycle_recent_window_edge_d6_vs_d7() -> None:
    d = run(ev(0), ev(14), until=25)
    # day 14: active in 8..14, not in 1..7: resurrecting; day 20: 14 = D-6 still recent; day 21: 14 = D-7, dormant
    assert changes(d, "lifecycle") == [("new", None, 0), ("dormant", "new", 7), ("resurrecting", "dormant", 14),
                                       ("dormant", "resurrecting", 21)]


def test_lifecycle_returning_needs_both_windows() -> None:
    d = run(ev(0), ev(6), ev(9), until=30)
    # day 7 (F = 0 = D-7: not new): active in 1..7 (6) and in -6..0 (0): returning; day 13: 6 = D-7 and 9 in
    # D-6..D: returning still; day 16: 9 = D-7, nothing recent: dormant
    assert changes(d, "lifecycle") == [("new", None, 0), ("returning", "new", 7), ("dormant", "returning", 16)]


def test_lifecycle_starts_at_the_first_active_day() -> None:
    d = run(ev(5), until=8)
    assert changes(d, "lifecycle") == [("new", None, 5)]


# ---- value --------------------------------------------------------------------------------------------------


def test_value_thresholds_exactly() -> None:
    for amounts, tier in [((100.0,), "low"), ((100.5,), "mid"), ((499.0,), "mid"), ((250.0, 250.0), "high"),
                          ((500.0,), "high"), ((0.5,), "low")]:
        d = run(*[ev(0, "payment", amount=a) for a in amounts], until=1)
        assert changes(d, "value") == [(tier, None, 0)], amounts


def test_value_falls_to_none_after_30_days_and_never_payers_have_none() -> None:
    d = run(ev(0, "payment", amount=50.0), ev(0, "view", user="v"), ev(0, "payment", user="w"), until=40)
    assert changes(d, "value") == [("low", None, 0), ("none", "low", 30)]  # day 0 leaves D-29..D at D = 30
    assert changes(d, "value", "v") == [] and changes(d, "value", "w") == []  # a payment of 0 is no spending


def test_value_moves_up_and_down() -> None:
    d = run(ev(0, "payment", amount=80.0), ev(3, "payment", amount=30.0), ev(10, "payment", amount=400.0), until=45)
    # 80, 110, 510; day 0 leaves at 30 (430), day 3 at 33 (400: still mid), day 10 at 40
    assert changes(d, "value") == [("low", None, 0), ("mid", "low", 3), ("high", "mid", 10), ("mid", "high", 30),
                                   ("none", "mid", 40)]


# ---- potential ----------------------------------------------------------------------------------------------


def logins(first: int, last: int, user: str = "u") -> list[Event]:
    return [ev(d, "login", user) for d in range(first, last + 1)]


def test_potential_entry_after_seven_login_days() -> None:
    d = run(*logins(0, 6), until=8)
    assert changes(d, "potential") == [("high_potential", None, 6)]
    (entry,) = [c for c in d.changes if c.dimension == "potential"]
    assert entry.evidence["login_days"] == 7 and entry.evidence["payment_amount_window"] == 0


def test_potential_streak_broken_on_one_day() -> None:
    d = run(*logins(0, 2), *logins(4, 9), until=12)
    assert changes(d, "potential") == []  # day 9's window 3..9 misses day 3; 4..9 is six days


def test_potential_needs_no_payment_in_30_days() -> None:
    d = run(ev(0, "payment", amount=5.0), *logins(1, 31), until=32)
    assert changes(d, "potential") == [("high_potential", None, 30)]  # day 0 leaves D-29..D at D = 30


def test_potential_lapses_when_entry_plus_30_closes() -> None:
    d = run(*logins(0, 6), until=40)
    assert changes(d, "potential") == [("high_potential", None, 6), ("lapsed", "high_potential", 36)]


def test_potential_converts_on_day_entry_plus_30_not_31() -> None:
    pay30 = ev(36, "payment", amount=9.0, hour=23)
    d = run(*logins(0, 6), pay30, until=40)
    conv = [c for c in d.changes if c.dimension == "potential" and c.segment == "converted"]
    assert changes(d, "potential") == [("high_potential", None, 6), ("converted", "high_potential", 36)]
    assert conv[0].changed_at == pay30.ts and conv[0].triggered_at < pay30.ts  # decided on the event
    d = run(*logins(0, 6), ev(37, "payment", amount=9.0, hour=0), until=40)
    assert changes(d, "potential") == [("high_potential", None, 6), ("lapsed", "high_potential", 36)]


def test_potential_reentry_at_a_later_close() -> None:
    d = run(*logins(0, 40), until=41)  # logins every day, never a payment: lapse at 36, enter again at 37
    assert changes(d, "potential") == [("high_potential", None, 6), ("lapsed", "high_potential", 36),
                                       ("high_potential", "lapsed", 37)]
    d = run(*logins(0, 6), ev(8, "payment", amount=1.0), *logins(20, 45), until=46)
    # converted on day 8; the payment blocks entry until it leaves D-29..D at D = 38
    assert changes(d, "potential") == [("high_potential", None, 6), ("converted", "high_potential", 8),
                                       ("high_potential", "converted", 38)]


def test_late_login_counts_at_the_next_close_not_retroactively() -> None:
    late = ev(3, "login")
    driver = Driver()
    for event in [*logins(0, 2), *logins(4, 7)]:
        driver.send(event)
    driver.send(Event("c1", "clock", "view", T0 + 7 * D + 2 * H))  # closes day 6 (not 7)
    driver.send(late)  # day 3's login, after day 3 (and 6) closed
    driver.send(Event("c2", "clock", "view", T0 + 9 * D + 2 * H))
    assert changes(driver, "potential") == [("high_potential", None, 7)]  # not 6: decided once, never revised


# ---- the index ----------------------------------------------------------------------------------------------


def test_next_change_day() -> None:
    state = UserState(first_ts=T0 + H, days={DAY0: (1, 0, 0, 0, 0, 0, 0), DAY0 + 3: (1, 1, 1, 5_000_000, 0, 0, 0)})
    seg = S.SegmentState()
    assert S.next_change_day(state, seg, DAY0 + 3) == DAY0 + 7  # F + 7, day 0 leaves D-6..D
    assert S.next_change_day(state, seg, DAY0 + 7) == DAY0 + 10
    assert S.next_change_day(state, seg, DAY0 + 17) == DAY0 + 30
    assert S.next_change_day(state, seg, DAY0 + 33) == S.NONE
    seg.potential, seg.potential_day = 0, DAY0 + 20
    assert S.next_change_day(state, seg, DAY0 + 33) == DAY0 + 50


def test_change_day_index() -> None:
    ix = ChangeDayIndex()
    ix.set(b"a", 5)
    ix.set(b"b", 7)
    ix.set(b"a", 9)
    ix.set(b"c", 6)
    ix.set(b"c", -1)
    assert len(ix) == 2 and ix.pop_through(7) == {b"b"} and ix.pop_through(8) == set()
    assert ix.pop_through(9) == {b"a"} and len(ix) == 0


def test_change_record() -> None:
    d = run(ev(0), until=1)
    (c,) = [c for c in d.changes if c.user_id == "u"]
    assert c.change_id == change_id("default", "u", "lifecycle", "new", T0)
    assert decode_change(encode_change(c)) == c and c.schema_version == 1 and c.kafka_key == b"u"


# ---- incremental == oracle --------------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn, max_users: int = 4, max_steps: int = 40, span_days: int = 80) -> list[Event]:
    users = [(draw(st.sampled_from(["default", "a2"])), f"u{i}") for i in range(draw(st.integers(1, max_users)))]
    t = T0 + draw(st.integers(0, D - 1))
    end = T0 + span_days * D
    out: list[Event] = []
    for _ in range(draw(st.integers(1, max_steps))):
        t += draw(st.sampled_from([0, H, D, D, 2 * D, 6 * D, 7 * D, 13 * D, 23 * D, 30 * D])) + draw(
            st.integers(0, 3 * H))
        if t > end:
            break
        app, user = draw(st.sampled_from(users))
        kind = draw(st.sampled_from(["login", "login", "view", "payment"]))
        amount = draw(st.sampled_from([0.0, 1.0, 50.0, 100.0, 0.5, 400.0, 500.0])) if kind == "payment" else 0.0
        out.append(Event(f"e{len(out)}", user, kind, t, app_id=app, amount=amount))
        if draw(st.integers(0, 3)) == 0:  # a run of daily logins (a high-potential streak, or one day short)
            for _ in range(draw(st.integers(5, 9))):
                t += D + draw(st.integers(-2 * H, 2 * H))
                out.append(Event(f"e{len(out)}", user, "login", t, app_id=app))
    keyed = []  # delivery order: bounded disorder, late events (hours, days)
    for i, e in enumerate(out):
        jitter = draw(st.sampled_from([0, 0, 0, 0, 30 * 60_000, 3 * H, 2 * D]))
        keyed.append((e.ts + jitter, i, e))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [e for _, _, e in keyed]


# other windows (all within the 32 days of counters the state keeps): a lapse later than any window, a value
# window shorter than the no-payment one — the index must not lean on the defaults
VARIANT = (S.SegmentSettings(lifecycle_window_days=5, lifecycle_churn_days=20, value_window_days=10,
                             value_high_at_least=400.0, value_mid_above=50.0, potential_streak_days=4,
                             potential_no_payment_days=12, potential_convert_days=40),
           Cfg(window=5, churn=20, value_window=10, high=400, mid=50, streak=4, no_payment=12, convert=40))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.booleans())
def test_incremental_equals_oracle(events: list[Event], variant: bool) -> None:
    segment_settings, cfg = VARIANT if variant else (S.DEFAULT, Cfg())
    driver = Driver(segment_settings)
    for event in events:
        driver.send(event)
    expected = segment_changes(events, cfg)
    assert sorted(driver.rows(), key=repr) == sorted(expected, key=repr)
    assert len({c.change_id for c in driver.changes}) == len(driver.changes)
    for change in driver.changes:
        SCHEMA.validate(json.loads(encode_change(change)))


def test_on_payment_window_and_amount() -> None:
    entry = DAY0 + 6
    for ts, micros, converts in [(entry * D, 1, True), (entry * D - 1, 5_000_000, False),  # a late payment of before
                                 ((entry + 31) * D - 1, 1, True), ((entry + 31) * D, 1, False),
                                 (entry * D + H, 0, False)]:  # a payment of 0 spends nothing
        seg = S.SegmentState(potential=S.HIGH_POTENTIAL, potential_day=entry)
        change = S.on_payment(seg, ts, micros)
        assert (change is not None) == converts, (ts - entry * D, micros)
        if change is not None:
            assert (change.segment, change.previous, change.changed_at) == ("converted", "high_potential", ts)
            assert (seg.potential, seg.potential_day) == (S.CONVERTED, ts // D)
    for potential in (S.NONE, S.CONVERTED, S.LAPSED):  # only a high-potential user converts
        assert S.on_payment(S.SegmentState(potential=potential, potential_day=entry), entry * D, 1) is None
