"""Per-app configuration: overridable thresholds, partition-wide settings rejected loudly."""

from __future__ import annotations

import pytest

from streams.config.settings import ConfigError, load_settings

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop


def test_app_overrides_merge_with_the_defaults() -> None:
    settings = load_settings(env={}, apps={"shop": {"rules": {"burst_events_per_minute": 300}}})
    assert settings.rules_for("shop").burst_events_per_minute == 300
    assert settings.rules_for("other").burst_events_per_minute == settings.rules.burst_events_per_minute


def test_per_app_lateness_is_rejected_since_the_watermark_is_per_partition() -> None:
    with pytest.raises(ConfigError, match="allowed_lateness_s is partition-wide"):
        load_settings(env={}, apps={"shop": {"rules": {"allowed_lateness_s": 60}}})


def test_unknown_store_fails_at_startup() -> None:
    with pytest.raises(ConfigError, match="memory or rocksdb"):
        load_settings(env={}, processing={"store": "leveldb"})
    assert load_settings(env={}, processing={"store": "rocksdb"}).processing.store == "rocksdb"
    assert load_settings(env={"VITALS_STORE": "rocksdb"}).processing.store == "rocksdb"
    with pytest.raises(ConfigError, match="memory or rocksdb"):
        load_settings(env={"VITALS_STORE": "disk"})


def test_outcomes_are_counted_per_app() -> None:
    from schemas.events import Event
    from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition

    t0 = 1_767_225_600_000
    events = [Event("e1", "u1", "view", t0, app_id="shop"), Event("e1", "u1", "view", t0, app_id="shop"),
              Event("e2", "u1", "view", t0 + 1000), Event("e3", "u2", "view", t0 + 2000, app_id="shop"),
              Event("e4", "u3", "view", t0 - 10 * 3_600_000)]  # late, default app
    part = UserPartition(0, StateStore({}), RulesByApp(load_settings(env={})))
    out = Outputs()
    part.apply([("t", i, None, [e], -1) for i, e in enumerate(events)], out)
    assert dict(out.by_app()) == {("shop", "accepted"): 2, ("shop", "duplicate"): 1, ("default", "accepted"): 1,
                                  ("default", "late"): 1}
    assert out.outcome("accepted") == 3


@pytest.mark.parametrize(("key", "value"), [
    ("activity_drop_ratio", float("nan")), ("hollow_max_payment", float("inf")), ("retention_alert_below", 2.0),
    ("complaint_rate_alert_above", 1.5), ("burst_events_per_minute", 0), ("device_farm_users", 0),
    ("activity_drop_window_d", 0), ("dedup_horizon_s", -1),
])
def test_thresholds_no_rule_can_work_with_fail_at_startup(key: str, value: float) -> None:
    """nan passed a ``< 0`` check and then broke (ratio) or silently disabled (payment) a rule."""
    with pytest.raises(ConfigError, match=f"rules.{key}"):
        load_settings(env={}, **{f"rules__{key}": value})
    with pytest.raises(ConfigError, match=f"rules.{key}"):  # per app as well
        load_settings(env={}, apps={"shop": {"rules": {key: value}}}).rules_for("shop")
