"""Events older than the days the state keeps (SPEC section 2: counted exactly once however late,
never dead-lettered for lateness, no alert retracted): the engine's side. The ledger and the rows it
recomputes are tested on the embedded ClickHouse (tests/integration/test_late_events.py)."""

from __future__ import annotations

import pytest

from schemas.events import Event
from streams.config.settings import load_settings
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition
from streams.engine.state import event_hash
from streams.engine.store import activity_rows

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

D = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def apply(part: UserPartition, events: list[Event], first: int) -> Outputs:
    out = Outputs()
    part.apply([("t", first + i, None, [e], -1) for i, e in enumerate(events)], out)
    return out


def test_an_event_45_days_late_is_counted_through_the_ledger_not_dead_lettered() -> None:
    part = UserPartition(0, StateStore({}), RulesByApp(load_settings(env={})))
    apply(part, [Event("now", "u", "login", T0 + 50 * D)], 0)
    old = [Event("pay", "u", "payment", T0 + 5 * D, amount=12.5), Event("post", "v", "content_post", T0 + 5 * D),
           Event("post", "v", "content_post", T0 + 5 * D),  # a second copy within the horizon: a duplicate
           Event("pay", "u", "payment", T0 + 5 * D, amount=12.5)]
    out = apply(part, old, 1)
    assert out.dead_letters == [] and out.alerts == []
    day = (T0 + 5 * D) // D
    assert out.cold == [("default", "u", day, event_hash("pay"), (1, 0, 1, 12_500_000, 0, 0, 0)),
                        ("default", "v", day, event_hash("post"), (1, 0, 0, 0, 1, 0, 0))]
    assert out.by_app()[("default", "late:beyond_state")] == 2 and out.by_app()[("default", "duplicate")] == 2
    assert not any(r[2] == day for r in activity_rows(out.dirty_rows, {0: part.store}))  # none from the state
    state = part.store.get(b"default\x1fu")
    assert state is not None and set(state.days) == {(T0 + 50 * D) // D}  # the ledger has the counters
    # a user first seen through an old event: its state knows when it was first active
    v = part.store.get(b"default\x1fv")
    assert v is not None and v.first_ts == T0 + 5 * D and v.days == {}


def test_a_late_engagement_of_any_age_ends_the_episode_it_comes_after() -> None:
    """SPEC sections 2 and 3: a late event cannot retract an alert, but an engagement at or after an
    episode's start ends it, however late it arrives (an offline phone syncing six weeks)."""
    part = UserPartition(0, StateStore({}), RulesByApp(load_settings(env={})))
    apply(part, [Event("first", "u", "view", T0)], 0)
    out = apply(part, [Event("clock", "w", "view", T0 + 100 * D)], 1)  # u's 60 days without interaction
    [opened] = [a for a in out.alerts if a.user_id == "u" and a.rule == "churn.no_interaction_60d"]
    assert (opened.status, opened.episode_start) == ("open", T0 + 60 * D)
    out = apply(part, [Event("synced", "u", "comment", T0 + 61 * D)], 2)  # 39 days behind the watermark
    [resolved] = [a for a in out.alerts if a.user_id == "u"]
    assert (resolved.status, resolved.alert_id) == ("resolved", opened.alert_id)
    assert out.by_app()[("default", "late:beyond_state")] == 1 and len(out.cold) == 1


def test_a_copy_of_an_event_the_state_remembers_is_a_duplicate_even_past_the_retention() -> None:
    settings = load_settings(env={}, rules__dedup_horizon_s=40 * 86_400)  # remember ids for 40 days
    part = UserPartition(0, StateStore({}), RulesByApp(settings))
    apply(part, [Event("e1", "u", "view", T0)], 0)
    apply(part, [Event("clock", "w", "view", T0 + 35 * D)], 1)  # day T0 is now beyond the 32 days kept
    out = apply(part, [Event("e1", "u", "view", T0), Event("e2", "u", "view", T0)], 2)
    assert out.by_app()[("default", "duplicate")] == 1
    assert [(c[1], c[3]) for c in out.cold] == [("u", event_hash("e2"))]
