"""Segments (SPEC section 7): who a user is now, in three dimensions, as pure functions.

No Kafka, no clock: each function takes a user's ``UserState`` (its per-day counters and first event
time), the user's ``SegmentState`` (the current segment per dimension) and the thresholds, updates the
segment state and returns the changes (``Change``) the caller turns into records
(``schemas.segments.make_change``).

* ``close_day`` — what the close of day D decides: ``lifecycle``, ``value``, ``potential`` entry and lapse.
  ``changed_at`` is the start of D (of the lapse day for a lapse).
* ``on_payment`` — ``potential`` -> ``converted``, decided on the payment event itself (``changed_at`` =
  its ``ts``).
* ``next_change_day`` — the earliest later day at whose close a segment of this user can change with the
  state they have now: a day close visits the users indexed at that day (``indexes.ChangeDayIndex``) and
  the users with events since the last close, no one else.

"Active on day X as known when the deciding day closes": a close reads the counters as they are then and
its decisions are never revised. An event that arrives after D closed, for D or earlier (a late event),
changes nothing already published; it touches its user, so the next close evaluates them with it (a late
login can make a streak hold at the next close, a late payment can raise the next close's value tier).
A late payment from before the entry day does not convert a ``high_potential`` user, and nothing converts
a user after their lapse was decided (day entry + 30 closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

from schemas.segments import LIFECYCLE, POTENTIAL, VALUE, SegmentChange, make_change
from schemas.time_units import DAY_MS
from streams.config.segments import SegmentSettings
from streams.engine.state import AMOUNT_MICROS, EVENTS, LOGINS, NONE, Counts, UserState, split_key

LIFECYCLE_SEGMENTS = ("new", "returning", "resurrecting", "dormant", "churned")
VALUE_SEGMENTS = ("none", "low", "mid", "high")
POTENTIAL_SEGMENTS = ("high_potential", "converted", "lapsed")
NEW, RETURNING, RESURRECTING, DORMANT, CHURNED = range(5)
V_NONE, V_LOW, V_MID, V_HIGH = range(4)
HIGH_POTENTIAL, CONVERTED, LAPSED = range(3)


DEFAULT = SegmentSettings()


class SegmentState(msgspec.Struct, array_like=True, gc=False):
    """A user's current segment per dimension (an index into ``*_SEGMENTS``, or NONE: no record yet).
    msgpack: a 5-byte array of fixints for most users; a day number takes 3 bytes more."""

    lifecycle: int = NONE
    value: int = NONE
    potential: int = NONE
    # high_potential: the entry day; converted / lapsed: the day it was left (re-entry needs a later close)
    potential_day: int = NONE


@dataclass(frozen=True, slots=True)
class Change:
    dimension: str
    segment: str
    previous: str | None
    changed_at: int
    evidence: dict[str, Any]


# ---- windows over the per-day counters ------------------------------------------------------------


def active_days(state: UserState, first: int, last: int) -> int:
    return sum(1 for d, c in state.days.items() if first <= d <= last and c[EVENTS] > 0)


def amount_micros(state: UserState, first: int, last: int) -> int:
    return sum(c[AMOUNT_MICROS] for d, c in state.days.items() if first <= d <= last)


def login_days(state: UserState, first: int, last: int) -> int:
    return sum(1 for d, c in state.days.items() if first <= d <= last and c[LOGINS] > 0)


# ---- the definitions, one per dimension -----------------------------------------------------------------


def lifecycle_of(new: bool, recent: int, before: int, older: int) -> int:
    """SPEC 7's lifecycle from its inputs: first active in the window (``new``), active days in D-6..D
    (``recent``), in D-13..D-7 (``before``), in D-29..D-7 (``older``)."""
    if new:
        return NEW
    if recent and before:
        return RETURNING
    if recent:
        return RESURRECTING
    return DORMANT if older else CHURNED


def lifecycle_at(state: UserState, day: int, s: SegmentSettings = DEFAULT) -> tuple[int, dict[str, Any]] | None:
    """The lifecycle segment at the close of ``day``, or None before the user's first active day F."""
    first = state.first_ts // DAY_MS
    if first > day:
        return None
    w, churn = s.lifecycle_window_days, s.lifecycle_churn_days
    recent = active_days(state, day - w + 1, day)  # D-6..D
    before = active_days(state, day - 2 * w + 1, day - w)  # D-13..D-7
    older = active_days(state, day - churn + 1, day - w)  # D-29..D-7
    segment = lifecycle_of(first >= day - w + 1, recent, before, older)
    return segment, {
        "day": day,
        "first_active_day": first,
        "active_days_recent": recent,
        "active_days_previous": before,
        "active_days_dormant_window": older,
        "window_days": w,
        "churn_days": churn,
    }


def value_tier(micros: int, s: SegmentSettings = DEFAULT) -> int:
    if micros >= s.high_micros:
        return V_HIGH
    if micros > s.mid_micros:
        return V_MID
    return V_LOW if micros > 0 else V_NONE


def value_at(state: UserState, day: int, s: SegmentSettings = DEFAULT) -> tuple[int, dict[str, Any]]:
    micros = amount_micros(state, day - s.value_window_days + 1, day)
    return value_tier(micros, s), {
        "day": day,
        "payment_amount_30d": micros / 1_000_000,
        "window_days": s.value_window_days,
        "high_at_least": s.value_high_at_least,
        "mid_above": s.value_mid_above,
    }


def potential_entry(state: UserState, day: int, s: SegmentSettings = DEFAULT) -> tuple[bool, dict[str, Any]]:
    """Whether the user logged in on each of D-6..D and paid nothing in D-29..D."""
    streak = s.potential_streak_days
    logins = login_days(state, day - streak + 1, day)
    paid = amount_micros(state, day - s.potential_no_payment_days + 1, day)
    return logins == streak and paid == 0, {
        "day": day,
        "login_days": logins,
        "payment_amount_window": paid / 1_000_000,
        "streak_days": streak,
        "no_payment_days": s.potential_no_payment_days,
    }


# ---- transitions -----------------------------------------------------------------------------------------


def _name(names: tuple[str, ...], index: int) -> str | None:
    return None if index == NONE else names[index]


def close_day(state: UserState, seg: SegmentState, day: int, s: SegmentSettings = DEFAULT) -> list[Change]:
    """Decide every dimension at the close of ``day``; update ``seg``; return the changes (only changes)."""
    changes: list[Change] = []
    start = day * DAY_MS
    lifecycle = lifecycle_at(state, day, s)
    if lifecycle is not None and lifecycle[0] != seg.lifecycle:
        changes.append(Change(LIFECYCLE, LIFECYCLE_SEGMENTS[lifecycle[0]], _name(LIFECYCLE_SEGMENTS, seg.lifecycle),
                              start, lifecycle[1]))
        seg.lifecycle = lifecycle[0]
    tier, evidence = value_at(state, day, s)
    if tier != seg.value and (seg.value != NONE or tier != V_NONE):  # a never-payer has no value record
        changes.append(Change(VALUE, VALUE_SEGMENTS[tier], _name(VALUE_SEGMENTS, seg.value), start, evidence))
        seg.value = tier
    if seg.potential == HIGH_POTENTIAL:
        lapse_day = seg.potential_day + s.potential_convert_days
        if day < lapse_day:
            return changes
        changes.append(Change(POTENTIAL, "lapsed", "high_potential", lapse_day * DAY_MS,
                              {"day": lapse_day, "entry_day": seg.potential_day,
                               "convert_days": s.potential_convert_days}))
        seg.potential, seg.potential_day = LAPSED, lapse_day
    if seg.potential == NONE or day > seg.potential_day:  # re-entry: at a later close than the one it left
        enters, evidence = potential_entry(state, day, s)
        if enters:
            changes.append(Change(POTENTIAL, "high_potential", _name(POTENTIAL_SEGMENTS, seg.potential), start,
                                  evidence))
            seg.potential, seg.potential_day = HIGH_POTENTIAL, day
    return changes


def on_payment(seg: SegmentState, ts: int, micros: int, s: SegmentSettings = DEFAULT) -> Change | None:
    """A payment event applied to the user (on time or late): ``converted`` if it is the first payment
    (amount > 0) of a ``high_potential`` user on the entry day .. entry day + 30."""
    if seg.potential != HIGH_POTENTIAL or micros <= 0:
        return None
    entry = seg.potential_day
    day = ts // DAY_MS
    if ts < entry * DAY_MS or day > entry + s.potential_convert_days:
        return None
    seg.potential, seg.potential_day = CONVERTED, day
    return Change(POTENTIAL, "converted", "high_potential", ts,
                  {"entry_day": entry, "payment_ts": ts, "payment_amount": micros / 1_000_000,
                   "days_since_entry": day - entry, "convert_days": s.potential_convert_days})


# ---- the day index --------------------------------------------------------------------------------------


def next_change_day(state: UserState, seg: SegmentState, after: int, s: SegmentSettings = DEFAULT) -> int:
    """The earliest day > ``after`` at whose close ``close_day`` can change a segment of this user, if
    no event reaches them before (an event touches its user: the next close visits them anyway); NONE
    if there is none. Each active day X enters the windows at X and leaves them at X + 7 (D-6..D),
    X + 14 (D-13..D-7) and X + 30 (D-29..D-7, the value and no-payment windows); the first active day
    F stops being ``new`` at F + 7; a ``high_potential`` entry lapses at entry + 30. A streak can only
    complete on a day with a login (an active day)."""
    w = s.lifecycle_window_days
    offsets = sorted({0, w, 2 * w, s.lifecycle_churn_days, s.value_window_days, s.potential_no_payment_days})
    best = NONE
    for d, c in state.days.items():
        if c[EVENTS] <= 0:
            continue
        for k in offsets:
            if d + k > after:
                if best == NONE or d + k < best:
                    best = d + k
                break  # the offsets are sorted: the first one past ``after`` is this day's earliest
    # F + 7 is F's own d + w (F is an active day). The lapse is an offset of the entry day (a login day)
    # only while potential_convert_days is one of the windows: explicit for the other settings.
    if seg.potential == HIGH_POTENTIAL:
        lapse = seg.potential_day + s.potential_convert_days
        if lapse > after and (best == NONE or lapse < best):
            best = lapse
    return best


# ---- the day close in one pass (what the engine runs) ---------------------------------------------------


@lru_cache(maxsize=64)
def _offsets(w: int, churn: int, value_window: int, no_payment: int) -> tuple[int, ...]:
    return tuple(sorted({0, w, 2 * w, churn, value_window, no_payment}))


Sums = tuple[int, int, int, int, int, int, int]
Bounds = tuple[int, int, int, int, int, int, int]


def window_sums(days: dict[int, Counts], bounds: Bounds, offsets: tuple[int, ...]) -> Sums:
    """One pass over a user's days (the twin of the C extension's ``segment_visit``, its first half):
    active days in r0..D, b0..r0-1 and o0..r0-1, payment micros in v0..D and p0..D, login days in k0..D,
    and the earliest day > D at which an active day enters or leaves a window (``offsets``, sorted)."""
    day, r0, b0, o0, v0, k0, p0 = bounds
    recent = before = older = logins = 0
    value_m = paid = 0
    best = NONE
    for d, c in days.items():
        active = c[EVENTS] > 0
        if active:
            for k in offsets:
                if d + k > day:
                    if best == NONE or d + k < best:
                        best = d + k
                    break
        if d > day:
            continue
        if active:
            if d >= r0:
                recent += 1
            elif d >= b0:
                before += 1
            if o0 <= d < r0:
                older += 1
        micros = c[AMOUNT_MICROS]
        if micros:
            if d >= v0:
                value_m += micros
            if d >= p0:
                paid += micros
        if d >= k0 and c[LOGINS] > 0:
            logins += 1
    return recent, before, older, value_m, paid, logins, best


def _bounds(day: int, s: SegmentSettings) -> Bounds:
    w = s.lifecycle_window_days
    return (day, day - w + 1, day - 2 * w + 1, day - s.lifecycle_churn_days + 1, day - s.value_window_days + 1,
            day - s.potential_streak_days + 1, day - s.potential_no_payment_days + 1)


# what ``visit`` reads of the settings: the C extension reads them by position (all but the settings object)
VisitParams = tuple[int, int, int, int, int, int, int, int, tuple[int, ...], SegmentSettings, float, float]
Seg = tuple[int, int, int, int]
Visited = tuple[Seg, int, list[SegmentChange]]


def visit_params(s: SegmentSettings) -> VisitParams:
    """The app's settings as ``visit`` reads them (built once per app: ``holdout.SegmentPlan``)."""
    return (s.lifecycle_window_days, s.lifecycle_churn_days, s.value_window_days, s.potential_no_payment_days,
            s.potential_streak_days, s.potential_convert_days, s.high_micros, s.mid_micros,
            _offsets(s.lifecycle_window_days, s.lifecycle_churn_days, s.value_window_days,
                     s.potential_no_payment_days), s, s.value_high_at_least, s.value_mid_above)


def visit(days: dict[int, Counts], first_ts: int, seg: Seg, day: int, params: VisitParams, key: bytes, wm: int
          ) -> int | Visited:
    """A day close's visit of the user ``key`` (the twin of the C extension's ``segment_visit``): the next
    change day when no segment changes at the close of ``day``; else the new segments, the next change day
    and the changes as records (``triggered_at`` = ``wm``). (The C function returns None for an amount
    beyond 64 bits or a value sum beyond 2**53; this twin never does.)"""
    s = params[9]
    sums = window_sums(days, _bounds(day, s), params[8])
    new = SegmentState(*seg)
    changes, best = close_day_and_next(UserState(first_ts=first_ts, days=days), new, day, s, sums)
    if not changes:
        return best
    app_id, user_id = split_key(key)
    return ((new.lifecycle, new.value, new.potential, new.potential_day), best,
            [make_change(app_id, user_id, c.dimension, c.segment, c.previous, c.changed_at, wm, c.evidence)
             for c in changes])


def close_day_and_next(state: UserState, seg: SegmentState, day: int, s: SegmentSettings = DEFAULT,
                       sums: Sums | None = None) -> tuple[list[Change], int]:
    """``close_day`` and then ``next_change_day(state, seg, day)``, with one pass over the user's days
    instead of one per window (a day close visits every user active since the last one). The two
    reference functions above say what this computes; tests hold the engine to the brute-force oracle.
    ``sums``: the pass's result when the caller has it (:func:`visit`), else it is made here."""
    w, churn = s.lifecycle_window_days, s.lifecycle_churn_days
    r0 = day - w + 1
    if sums is None:
        sums = window_sums(state.days, _bounds(day, s), _offsets(w, churn, s.value_window_days,
                                                                 s.potential_no_payment_days))
    recent, before, older, value_m, paid, logins, best = sums
    changes: list[Change] = []
    start = day * DAY_MS
    first = state.first_ts // DAY_MS
    if first <= day:
        segment = lifecycle_of(first >= r0, recent, before, older)
        if segment != seg.lifecycle:
            changes.append(Change(LIFECYCLE, LIFECYCLE_SEGMENTS[segment], _name(LIFECYCLE_SEGMENTS, seg.lifecycle),
                                  start, {"day": day, "first_active_day": first, "active_days_recent": recent,
                                          "active_days_previous": before, "active_days_dormant_window": older,
                                          "window_days": w, "churn_days": churn}))
            seg.lifecycle = segment
    tier = value_tier(value_m, s)
    if tier != seg.value and (seg.value != NONE or tier != V_NONE):
        changes.append(Change(VALUE, VALUE_SEGMENTS[tier], _name(VALUE_SEGMENTS, seg.value), start,
                              {"day": day, "payment_amount_30d": value_m / 1_000_000,
                               "window_days": s.value_window_days, "high_at_least": s.value_high_at_least,
                               "mid_above": s.value_mid_above}))
        seg.value = tier
    decide = True
    if seg.potential == HIGH_POTENTIAL:
        lapse_day = seg.potential_day + s.potential_convert_days
        if day < lapse_day:
            decide = False
        else:
            changes.append(Change(POTENTIAL, "lapsed", "high_potential", lapse_day * DAY_MS,
                                  {"day": lapse_day, "entry_day": seg.potential_day,
                                   "convert_days": s.potential_convert_days}))
            seg.potential, seg.potential_day = LAPSED, lapse_day
    if decide and (seg.potential == NONE or day > seg.potential_day):
        streak = s.potential_streak_days
        if logins == streak and paid == 0:
            changes.append(Change(POTENTIAL, "high_potential", _name(POTENTIAL_SEGMENTS, seg.potential), start,
                                  {"day": day, "login_days": logins, "payment_amount_window": 0.0,
                                   "streak_days": streak, "no_payment_days": s.potential_no_payment_days}))
            seg.potential, seg.potential_day = HIGH_POTENTIAL, day
    if seg.potential == HIGH_POTENTIAL:
        lapse = seg.potential_day + s.potential_convert_days
        if lapse > day and (best == NONE or lapse < best):
            best = lapse
    return changes, best


__all__ = [
    "DEFAULT",
    "LIFECYCLE_SEGMENTS",
    "POTENTIAL_SEGMENTS",
    "VALUE_SEGMENTS",
    "Change",
    "SegmentSettings",
    "SegmentState",
    "VisitParams",
    "Visited",
    "close_day",
    "close_day_and_next",
    "lifecycle_at",
    "next_change_day",
    "on_payment",
    "potential_entry",
    "value_at",
    "value_tier",
    "visit",
    "visit_params",
    "window_sums",
]
