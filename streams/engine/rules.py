"""The rules of SPEC section 3 as pure functions over a user's (or device's) state.

No Kafka, no Faust, no clock: each function takes the state, the event or the watermark and
the thresholds, updates the episode bookkeeping in the state and returns the decisions
(``Decision``) the caller turns into alerts. The batch oracle in the tests and the streaming
engine call these same functions only where the spec defines the same thing; the oracle
recomputes the counts independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

from schemas import alerts as A
from schemas.time_units import HOUR_MS
from streams.config.settings import RuleSettings
from streams.engine.state import (
    AMOUNT_MICROS,
    DAY_MS,
    EVENTS,
    NONE,
    OPEN_DROP,
    OPEN_HOLLOW,
    OPEN_NO_INTERACTION,
    OPEN_NO_LOGIN_LONG,
    OPEN_NO_LOGIN_SHORT,
    PAYMENTS,
    POSTS,
    SOCIAL,
    DeviceState,
    UserState,
)


@dataclass(frozen=True, slots=True)
class Decision:
    status: Literal["open", "resolved"]
    rule: str
    episode_start: int
    evidence: dict[str, Any]


# ---- absence rules (churn ladder levels 0, 2, 3) ----------------------------------------------

ABSENCE = (
    (A.NO_LOGIN_SHORT, OPEN_NO_LOGIN_SHORT),
    (A.NO_INTERACTION, OPEN_NO_INTERACTION),
    (A.NO_LOGIN_LONG, OPEN_NO_LOGIN_LONG),
)


def absence_period_ms(rule: str, rules: RuleSettings) -> int:
    if rule == A.NO_LOGIN_SHORT:
        return rules.no_login_short_h * HOUR_MS
    if rule == A.NO_LOGIN_LONG:
        return rules.no_login_long_d * DAY_MS
    return rules.no_interaction_d * DAY_MS


def absence_deadline(state: UserState, rule: str, slot: int, rules: RuleSettings) -> int:
    """The watermark at which ``rule`` opens an episode for this user, or NONE (not armed)."""
    if state.open[slot] != NONE:
        return NONE
    if rule == A.NO_INTERACTION:
        since = state.last_engage if state.last_engage != NONE else state.first_ts
    else:
        since = state.last_login  # login rules apply to users with at least one login
    if since == NONE:
        return NONE
    return since + absence_period_ms(rule, rules)


def fire_absence(state: UserState, rule: str, slot: int, watermark: int, rules: RuleSettings) -> Decision | None:
    """Open the episode when the watermark has reached the deadline."""
    deadline = absence_deadline(state, rule, slot, rules)
    if deadline == NONE or watermark < deadline:
        return None
    state.set_open(slot, deadline)
    since_field = "last_engagement_ts" if rule == A.NO_INTERACTION else "last_login_ts"
    since = deadline - absence_period_ms(rule, rules)
    return Decision(
        "open",
        rule,
        deadline,
        {
            since_field: since,
            "deadline": deadline,
            "watermark": watermark,
            "threshold_ms": absence_period_ms(rule, rules),
            "no_engagement_yet": rule == A.NO_INTERACTION and state.last_engage == NONE,
        },
    )


def on_activity(state: UserState, ts: int, is_login: bool, is_engagement: bool) -> list[Decision]:
    """Record a login/engagement and resolve the absence episodes it ends.

    An episode ends with the next login (engagement for level 2): an event at or after the
    episode's start. A late event from before the deadline cannot end it.
    """
    decisions: list[Decision] = []
    if is_login:
        if ts > state.last_login:
            state.last_login = ts
        for rule, slot in ((A.NO_LOGIN_SHORT, OPEN_NO_LOGIN_SHORT), (A.NO_LOGIN_LONG, OPEN_NO_LOGIN_LONG)):
            start = state.open[slot]
            if start != NONE and ts >= start:
                state.set_open(slot, NONE)
                decisions.append(Decision("resolved", rule, start, {"login_ts": ts}))
    if is_engagement:
        if ts > state.last_engage:
            state.last_engage = ts
        start = state.open[OPEN_NO_INTERACTION]
        if start != NONE and ts >= start:
            state.set_open(OPEN_NO_INTERACTION, NONE)
            decisions.append(Decision("resolved", A.NO_INTERACTION, start, {"engagement_ts": ts}))
    return decisions


# ---- day rules (evaluated when day D closes) -----------------------------------------------------


@lru_cache(maxsize=64)
def _ratio(ratio: float) -> tuple[int, int]:
    """A configured ratio as the exact fraction its decimal text means (0.7 -> 7/10)."""
    exact = Fraction(repr(ratio))
    return exact.numerator, exact.denominator


def at_most_ratio(recent: int, base: int, ratio: float) -> bool:
    """``recent <= ratio * base``, exactly (in floats 0.7 * 90 is 62.99999999999999 < 63)."""
    num, den = _ratio(ratio)
    return recent * den <= num * base


def activity_drop_holds(state: UserState, day: int, rules: RuleSettings) -> tuple[bool, dict[str, Any]]:
    w = rules.activity_drop_window_d
    recent = state.total(EVENTS, day - w + 1, day)
    base = state.total(EVENTS, day - 2 * w + 1, day - w)
    holds = base >= rules.activity_drop_min_base and at_most_ratio(recent, base, rules.activity_drop_ratio)
    return holds, {
        "recent_events": recent,
        "base_events": base,
        "min_base": rules.activity_drop_min_base,
        "max_ratio": rules.activity_drop_ratio,
        "window_days": w,
    }


def hollow_holds(state: UserState, day: int, rules: RuleSettings, evidence: bool = False
                 ) -> tuple[bool, dict[str, Any]]:
    """Whether the hollow activity holds at the close of ``day``, and its evidence (computed
    whenever it holds, or when ``evidence`` asks for it: an episode that resolves)."""
    first = day - rules.hollow_window_d + 1
    active = state.active_days(first, day)
    if active < rules.hollow_min_active_days and not evidence:  # cheap exit: most users are not daily actives
        return False, {}
    amount = state.total(AMOUNT_MICROS, first, day) / 1_000_000
    posts = state.total(POSTS, day - rules.hollow_post_window_d + 1, day)
    social = state.total(SOCIAL, first, day)
    holds = (
        amount <= rules.hollow_max_payment and posts < rules.hollow_posts_below and social < rules.hollow_social_below
    )
    return holds, {
        "active_days": active,
        "payment_amount": amount,
        "payments": state.total(PAYMENTS, first, day),
        "content_posts": posts,
        "social": social,
        "min_active_days": rules.hollow_min_active_days,
        "max_payment": rules.hollow_max_payment,
        "posts_below": rules.hollow_posts_below,
        "social_below": rules.hollow_social_below,
    }


def day_scan(state: UserState, day: int, rules: RuleSettings) -> tuple[bool, bool, bool]:
    """Whether the activity drop and the hollow activity hold at the close of ``day``, and
    whether either could hold at a later close with only the counts the state has now (False:
    nothing to evaluate until the user has new events or episodes). The same arithmetic as
    ``activity_drop_holds`` and ``hollow_holds``, in as few passes as the state allows."""
    days = state.days
    w = rules.activity_drop_window_d
    mid = day - w
    first_drop = mid - w + 1
    later_drop = day + 2 - 2 * w  # the earliest day in any later close's drop windows (<= mid + 1)
    recent = base = later_events = 0
    for d, c in days.items():
        if d > mid:
            n = c[EVENTS]
            later_events += n
            if d <= day:
                recent += n
        elif d >= first_drop:
            n = c[EVENTS]
            base += n
            if d >= later_drop:
                later_events += n
    min_base = rules.activity_drop_min_base
    drop = base >= min_base and at_most_ratio(recent, base, rules.activity_drop_ratio)
    min_active = rules.hollow_min_active_days
    if len(days) < min_active:  # every day held has events: too few for the hollow rule, now or later
        return drop, False, later_events >= min_base
    first = day - rules.hollow_window_d + 1
    first_post = day - rules.hollow_post_window_d + 1
    later_hollow = first + 1
    active = amount = posts = social = later_active = 0
    for d, c in days.items():
        if c[EVENTS] > 0 and d >= later_hollow:
            later_active += 1
        if first <= d <= day:
            if c[EVENTS] > 0:
                active += 1
            amount += c[AMOUNT_MICROS]
            social += c[SOCIAL]
            if d >= first_post:
                posts += c[POSTS]
    hollow = (
        active >= min_active
        and amount / 1_000_000 <= rules.hollow_max_payment
        and posts < rules.hollow_posts_below
        and social < rules.hollow_social_below
    )
    return drop, hollow, later_events >= min_base or later_active >= min_active


def close_day(state: UserState, day: int, rules: RuleSettings) -> list[Decision]:
    """Evaluate the day rules at the close of ``day``; open on rising, resolve on falling edge."""
    decisions: list[Decision] = []
    start_of_day = day * DAY_MS
    for rule, slot, check in ((A.ACTIVITY_DROP, OPEN_DROP, activity_drop_holds), (A.HOLLOW, OPEN_HOLLOW, hollow_holds)):
        holds, evidence = check(state, day, rules)
        opened = state.open[slot]
        if holds and opened == NONE:
            state.set_open(slot, start_of_day)
            decisions.append(Decision("open", rule, start_of_day, evidence | {"day": day}))
        elif not holds and opened != NONE:
            state.set_open(slot, NONE)
            if not evidence:  # the cheap exit above: the numbers that ended the episode
                evidence = hollow_holds(state, day, rules, evidence=True)[1]
            decisions.append(Decision("resolved", rule, opened, evidence | {"day": day}))
    return decisions


def day_rules_may_hold(state: UserState, day: int, rules: RuleSettings) -> bool:
    """False when no day rule can hold or change for this user at the close of ``day``."""
    if state.open[OPEN_DROP] != NONE or state.open[OPEN_HOLLOW] != NONE:
        return True
    oldest = day - max(2 * rules.activity_drop_window_d, rules.hollow_window_d) + 1
    return state.last_active_day >= oldest


# ---- bot rules -------------------------------------------------------------------------------------


def count_minute(state: UserState, ts: int, rules: RuleSettings) -> Decision | None:
    """Count an on-time event in its UTC minute; the first minute of a day to reach the
    threshold opens one ``fake.burst`` alert for that day."""
    minute = ts // 60_000
    count = state.minutes.get(minute, 0) + 1
    state.minutes[minute] = count
    if count < rules.burst_events_per_minute:
        return None
    return burst_reached(state, ts, count, rules)


def burst_reached(state: UserState, ts: int, count: int, rules: RuleSettings) -> Decision | None:
    """The minute of ``ts`` holds ``count`` >= threshold events: open the day's alert once."""
    day = ts // DAY_MS
    if day in state.burst_days:
        return None
    state.burst_days = (*state.burst_days, day)
    minute = ts // 60_000
    return Decision(
        "open",
        A.BURST,
        minute * 60_000,
        {"events_in_minute": count, "threshold": rules.burst_events_per_minute, "minute_start": minute * 60_000},
    )


def add_device_user(state: DeviceState, day: int, user_id: str, rules: RuleSettings) -> Decision | None:
    """Record a user seen on a device that day; open ``fake.device_farm`` once per day."""
    if day in state.alerted:
        return None
    users = state.users.get(day)
    if users is None:
        users = state.users[day] = []
    if user_id in users:
        return None
    users.append(user_id)
    if len(users) < rules.device_farm_users:
        return None
    state.alerted.append(day)
    seen = sorted(users)
    del state.users[day]
    return Decision(
        "open",
        A.DEVICE_FARM,
        day * DAY_MS,
        {"distinct_users": len(seen), "threshold": rules.device_farm_users, "day": day, "user_ids": seen},
    )


__all__ = [
    "ABSENCE",
    "Decision",
    "absence_deadline",
    "activity_drop_holds",
    "add_device_user",
    "burst_reached",
    "close_day",
    "count_minute",
    "day_rules_may_hold",
    "day_scan",
    "fire_absence",
    "hollow_holds",
    "on_activity",
]
