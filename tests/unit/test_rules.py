"""Rule edges on the pure engine (no Kafka, no Faust): thresholds exactly, one below, one above."""

from __future__ import annotations

import pytest

from schemas.alerts import alert_id
from schemas.events import Event
from streams.config.settings import load_settings
from streams.engine.devices import DeviceObservations, DevicePartition
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition
from streams.engine.state import NONE

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

H = 3_600_000
D = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a day start
_seq = iter(range(10**9))


class Harness:
    def __init__(self, **rules: object) -> None:
        self.settings = load_settings(env={}, **{f"rules__{k}": v for k, v in rules.items()})
        self.part = UserPartition(0, StateStore({}), RulesByApp(self.settings))
        self.out = Outputs()

    def send(self, ts: int, type_: str = "view", user: str = "u", record_ts: int = -1, **kw: object) -> list:
        """One event in a message of its own (``record_ts``: the Kafka record's timestamp; none by default)."""
        before = len(self.out.alerts)
        eid = str(kw.pop("event_id", f"e{next(_seq)}"))
        event = Event(eid, user, type_, ts, **kw)  # type: ignore[arg-type]
        self.part.apply([("t", next(_seq), None, [event], record_ts)], self.out)
        return self.out.alerts[before:]

    def tick(self, ts: int) -> list:
        """Advance stream time with another user's event."""
        return [a for a in self.send(ts, "view", user="clock") if a.user_id != "clock"]

    def rules(self, name: str) -> list[tuple[str, int]]:
        return [(a.status, a.episode_start) for a in self.out.alerts if a.rule == name and a.user_id == "u"]


def test_no_login_72h_fires_exactly_at_deadline_and_resolves_on_login() -> None:
    h = Harness()
    h.send(T0, "login")
    deadline = T0 + 72 * H
    assert h.tick(deadline + H - 1) == []  # watermark one ms before the deadline
    fired = h.tick(deadline + H)  # watermark == deadline
    (alert,) = [a for a in fired if a.rule == "churn.no_login_72h"]
    (step,) = [a for a in fired if a.rule == "recall.step"]  # the playbook's first step comes with it
    assert (step.episode_start, step.evidence["episode_alert_id"], step.level) == (deadline, alert.alert_id, 0)
    assert (alert.rule, alert.status, alert.episode_start, alert.triggered_at, alert.level) == (
        "churn.no_login_72h", "open", deadline, deadline, 0)
    assert alert.alert_id == alert_id("default", "churn.no_login_72h", "u", deadline)
    (resolved,) = [a for a in h.send(deadline + 2 * H, "login") if a.rule == "churn.no_login_72h"]
    assert (resolved.status, resolved.alert_id) == ("resolved", alert.alert_id)


def test_login_exactly_at_deadline_prevents_the_alert() -> None:
    h = Harness()
    h.send(T0, "login")
    h.send(T0 + 72 * H, "login")  # in order: applied before the watermark reaches its deadline
    assert h.rules("churn.no_login_72h") == []


def test_late_login_cannot_retract_an_open_episode() -> None:
    h = Harness()
    h.send(T0, "login")
    h.tick(T0 + 80 * H)
    assert h.rules("churn.no_login_72h") == [("open", T0 + 72 * H)]
    h.send(T0 + 71 * H, "login")  # too late and before the deadline: no resolution
    assert h.rules("churn.no_login_72h") == [("open", T0 + 72 * H)]
    assert h.out.outcome("late") == 1


def test_login_rules_need_a_login_and_interaction_rule_uses_first_event() -> None:
    h = Harness()
    h.send(T0, "logout")
    h.tick(T0 + 60 * D + H)
    assert h.rules("churn.no_login_72h") == [] and h.rules("churn.no_login_90d") == []
    assert h.rules("churn.no_interaction_60d") == [("open", T0 + 60 * D)]


def test_no_login_90d_and_engagement_resolution() -> None:
    h = Harness()
    h.send(T0, "login")
    h.tick(T0 + 90 * D + H)
    assert ("open", T0 + 90 * D) in h.rules("churn.no_login_90d")
    h.send(T0 + 90 * D + 2 * H, "like")
    assert h.rules("churn.no_interaction_60d") == [("open", T0 + 60 * D), ("resolved", T0 + 60 * D)]


def _two_weeks(h: Harness, base: int, recent: int) -> None:
    """``base`` events on day 0 and ``recent`` on day 7, then close day 7."""
    for i in range(base):
        h.send(T0 + H + i)
    for i in range(recent):
        h.send(T0 + 7 * D + H + i)
    h.tick(T0 + 8 * D + H)


def test_activity_drop_threshold_edges() -> None:
    # 0.7 x 90 and 0.7 x 170 are just below 63 and 119 in floats: the comparison is exact
    for base, recent, fires in [(10, 7, True), (10, 8, False), (9, 0, False), (20, 14, True), (20, 15, False),
                                (90, 63, True), (90, 64, False), (170, 119, True)]:
        h = Harness()
        _two_weeks(h, base, recent)
        assert bool(h.rules("churn.activity_drop")) == fires, (base, recent)


def test_activity_drop_opens_on_rising_and_resolves_on_falling_edge() -> None:
    h = Harness()
    _two_weeks(h, 10, 0)
    assert h.rules("churn.activity_drop") == [("open", T0 + 7 * D)]
    h.tick(T0 + 15 * D + H)  # day 14 closes: B (days 1..7) is 0 < 10
    assert h.rules("churn.activity_drop")[-1][0] == "resolved"


def _hollow(h: Harness, days: int = 10, amount: float = 0, posts: int = 0, social: int = 0) -> None:
    for d in range(days):
        h.send(T0 + d * D + H, "login")
    if amount:
        h.send(T0 + H + 1, "payment", amount=amount)
    for i in range(posts):
        h.send(T0 + (days - 1) * D + H + 10 + i, "content_post")
    for i in range(social):
        h.send(T0 + H + 100 + i, "like")
    h.tick(T0 + days * D + H)


def test_hollow_activity_edges() -> None:
    cases = [({}, True), ({"days": 9}, False), ({"amount": 100.0}, True), ({"amount": 100.01}, False),
             ({"posts": 2}, True), ({"posts": 3}, False), ({"social": 9}, True), ({"social": 10}, False)]
    for kwargs, fires in cases:
        h = Harness()
        _hollow(h, **kwargs)  # type: ignore[arg-type]
        assert bool(h.rules("fake.hollow_activity")) == fires, kwargs


def test_hollow_activity_resolution_carries_its_numbers() -> None:
    """The episode ends when the active days in the window fall below 10: the resolved alert
    says so with the numbers and thresholds, as the open one did."""
    h = Harness()
    _hollow(h)
    h.tick(T0 + 40 * D)  # the ten active days leave the 30-day window
    opened, resolved = [a for a in h.out.alerts if a.rule == "fake.hollow_activity"]
    assert (opened.status, resolved.status, resolved.alert_id) == ("open", "resolved", opened.alert_id)
    assert resolved.evidence["active_days"] < resolved.evidence["min_active_days"] == 10
    assert opened.evidence.keys() == resolved.evidence.keys()


def test_burst_threshold_once_per_day() -> None:
    h = Harness()
    for i in range(99):
        h.send(T0 + H + i)
    assert h.rules("fake.burst") == []
    h.send(T0 + H + 500)
    assert h.rules("fake.burst") == [("open", T0 + H)]
    for i in range(100):
        h.send(T0 + 2 * H + i)  # a second burst minute the same day
    assert len(h.rules("fake.burst")) == 1
    for i in range(100):
        h.send(T0 + D + 2 * H + i)
    assert h.rules("fake.burst")[-1] == ("open", T0 + D + 2 * H)


def test_duplicates_counted_once_within_horizon() -> None:
    h = Harness()
    h.send(T0, "view", event_id="same")
    h.send(T0, "view", event_id="same")
    state = h.part.store.get(b"default\x1fu")
    assert state is not None and state.days[T0 // D][0] == 1
    assert h.out.outcome("duplicate") == 1
    before = h.out.outcome("replayed")
    h.part.apply([("t", 5, None, [Event("other", "u", "view", T0)], -1)], h.out)  # an offset already applied
    assert h.out.outcome("replayed") == before + 1
    h.tick(T0 + 27 * H)  # horizon (24 h, kept to the hour) passed
    h.send(T0, "view", event_id="same")
    assert h.out.outcome("duplicate") == 1


def test_per_app_threshold_override() -> None:
    settings = load_settings(env={}, apps={"strict": {"rules": {"burst_events_per_minute": 3}}})
    part = UserPartition(0, StateStore({}), RulesByApp(settings))
    out = Outputs()
    for i in range(3):
        part.apply([("t", i, None, [Event(f"s{i}", "u", "view", T0 + i, app_id="strict")], -1)], out)
    assert [a.rule for a in out.alerts] == ["fake.burst"]


def test_device_farm_fifth_distinct_user() -> None:
    settings = load_settings(env={})
    part = DevicePartition(0, {}, RulesByApp(settings))
    alerts: list = []
    day = T0 // D
    part.apply(DeviceObservations("default", "dev", [(day, f"u{i}", T0 + i) for i in range(4)] * 2), alerts)
    assert alerts == []
    part.apply(DeviceObservations("default", "dev", [(day, "u4", T0 + 10), (day, "u5", T0 + 11)]), alerts)
    (alert,) = alerts
    assert (alert.device_id, alert.user_id, alert.user_ids, alert.episode_start) == (
        "dev", None, ["u0", "u1", "u2", "u3", "u4"], T0)


def test_device_farm_triggered_at_is_the_deciding_watermark() -> None:
    """Before every source partition has reported, the device stage has no watermark of its own:
    the alert carries the watermark of the source whose observations decided it, never -1."""
    settings = load_settings(env={})
    part = DevicePartition(0, {}, RulesByApp(settings), n_sources=8)
    alerts: list = []
    day = T0 // D
    wm = T0 + 5 * H
    part.apply(DeviceObservations("default", "dev", [(day, f"u{i}", T0 + i) for i in range(5)], 3, NONE, wm),
               alerts)
    (alert,) = alerts
    assert part.watermark == NONE
    assert alert.triggered_at == wm
    # a message from a sender that did not set the field: the observation's time less the lateness
    part.apply(DeviceObservations("default", "dev2", [(day, f"u{i}", T0 + i) for i in range(5)], 3), alerts)
    assert alerts[-1].triggered_at == T0 + 4 - settings.rules.allowed_lateness_s * 1000


# ---- SPEC section 2: an event moves stream time at most to its record's timestamp + max_clock_skew


def test_a_fast_client_clock_moves_stream_time_only_to_its_record_timestamp_plus_the_skew() -> None:
    h = Harness()
    h.send(T0, "login", record_ts=T0)
    # a clock 23 h fast: the event counts on its own day, but stream time moves only 5 minutes
    h.send(T0 + 23 * H, "view", user="fast", record_ts=T0 + H)
    assert h.part.meta.stream_time == T0 + H + 300_000
    assert h.part.store.get(b"default\x1ffast").days == {(T0 + 23 * H) // D: (1, 0, 0, 0, 0, 0, 0)}
    # no absence deadline fires early: the login's 72 h are measured on stream time
    assert h.tick(T0 + 71 * H) == []
    (alert,) = [a for a in h.tick(T0 + 73 * H) if a.rule != "recall.step"]
    assert (alert.rule, alert.episode_start) == ("churn.no_login_72h", T0 + 72 * H)


def test_on_time_events_after_a_fast_clock_are_not_late_and_a_real_burst_alerts() -> None:
    h = Harness()
    h.send(T0, record_ts=T0)
    h.send(T0 + 23 * H, user="fast", record_ts=T0)  # 23 h ahead of its record
    burst_minute = T0 + H
    alerts = []
    for i in range(100):  # a real burst an hour later, stamped on time
        alerts += h.send(burst_minute + i, record_ts=burst_minute + i)
    assert [(a.rule, a.episode_start) for a in alerts] == [("fake.burst", burst_minute)]
    assert h.out.by_app()[("default", "late")] == 0


def test_the_skew_is_configurable_and_a_message_without_a_record_timestamp_is_not_capped() -> None:
    h = Harness(max_clock_skew_s=60)
    h.send(T0 + 2 * H, record_ts=T0)
    assert h.part.meta.stream_time == T0 + 60_000
    h.send(T0 + 3 * H)  # no record timestamp
    assert h.part.meta.stream_time == T0 + 3 * H
