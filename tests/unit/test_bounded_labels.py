"""A tenant flood (SPEC section 1: 100k distinct, valid ``app_id``s) adds no metric series and no
per-app memory: every metric with an app label goes through one mapping (configured apps by name,
any other as ``other``), the product gauges pool the other apps, and the per-app rule settings of
unconfigured apps are one shared object (issue 23, part 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.events import Event
from streams.config.settings import Settings, load_settings
from streams.engine.devices import DeviceObservations, DevicePartition
from streams.engine.partition import MessageEvents, Outputs, RulesByApp, StateStore, UserPartition
from streams.ops.gauges import pool_by_label, product_gauges
from streams.ops.metrics import OTHER_APP, AppLabels, Metrics

APPS = 100_000
T0 = 1_767_225_600_000  # 2026-01-01
DAY = 86_400_000
MAX_SERIES = 2_000
MAX_SCRAPE_BYTES = 100_000


def flood_settings() -> Settings:
    """Two configured apps (one with its own thresholds); a burst threshold of 1 for every app
    so each flooding app's user raises an alert (``fake.burst``) on its first event."""
    return load_settings(env={}, rules__burst_events_per_minute=1, apps={
        "shop": {"rules": {"retention_alert_below": 0.25, "burst_events_per_minute": 5}}, "news": {}})


def flood(apps: int) -> list[MessageEvents]:
    """One message per app: a user's event in each of ``apps`` distinct app ids, plus the
    configured apps and ``default``."""
    ids = [f"tenant-{i:06d}" for i in range(apps)] + ["shop", "news", "default"]
    return [("vitals.events", i, None, [Event(f"e{i}", f"u{i}", "view", T0 + i, app_id=app)], T0 + i)
            for i, app in enumerate(ids)]


class FakeClickHouse:
    """What ``product_sql`` returns: (app id, DAU, complainers, cohort, retained) per app."""

    database = "vitals"

    def __init__(self, rows: Sequence[tuple[str, int, int, int, int]]) -> None:
        self.rows = rows

    def query(self, sql: str) -> Sequence[tuple[str, int, int, int, int]]:
        return self.rows


def series(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(exposition.decode()) for s in family.samples}


@pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop
def test_100k_app_ids_keep_the_exposition_small() -> None:
    settings = flood_settings()
    labels, rules, metrics = AppLabels(settings.apps), RulesByApp(settings), Metrics()
    metrics.init_series(("user_activity_daily", "alerts"), ("fake.burst",), labels.values)
    part = UserPartition(0, StateStore({}), rules)
    out = Outputs()
    part.apply(flood(APPS), out)
    assert len({app for app, _ in out.by_app()}) == APPS + 3 and len(out.alerts) == APPS + 2  # shop: threshold 5
    out.messages = APPS + 3
    metrics.record_outputs(out, labels, "vitals.events")
    ch_rows = [(f"tenant-{i:06d}", 10, i % 2, 4, i % 3) for i in range(APPS)]
    ch_rows += [("shop", 100, 3, 50, 10), ("news", 40, 0, 0, 0)]
    product_gauges(FakeClickHouse(ch_rows), metrics, labels, rules)  # type: ignore[arg-type]

    exposition = generate_latest(metrics.registry)
    got = series(exposition)
    print(f"{APPS} app ids: {len(got)} series, {len(exposition)} bytes")
    assert len(got) < MAX_SERIES and len(exposition) < MAX_SCRAPE_BYTES
    app_values = {v for (_, ls) in got for k, v in ls if k in ("app", "app_id")}
    assert app_values == {"shop", "news", "default", OTHER_APP}

    # counts are exact under the pooled label
    assert got[("vitals_events_total", (("app", OTHER_APP), ("outcome", "accepted"), ("reason", "")))] == APPS
    assert got[("vitals_events_total", (("app", "shop"), ("outcome", "accepted"), ("reason", "")))] == 1
    alert = (("app", OTHER_APP), ("rule", "fake.burst"), ("status", "open"))
    assert got[("vitals_alerts_total", alert)] == APPS
    # the product gauges of 'other': DAU summed, the ratios over the pooled users
    other = (("app_id", OTHER_APP),)
    assert got[("vitals_product_dau", other)] == 10 * APPS
    assert got[("vitals_product_complaint_rate_ratio", other)] == pytest.approx((APPS // 2) / (10 * APPS))
    retained = sum(i % 3 for i in range(APPS))
    assert got[("vitals_product_next_day_retention_ratio", other)] == pytest.approx(retained / (4 * APPS))
    # thresholds: a configured app's own, 'other' the defaults (which every unconfigured app uses)
    assert got[("vitals_product_next_day_retention_alert_below", (("app_id", "shop"),))] == 0.25
    assert got[("vitals_product_next_day_retention_alert_below", other)] == settings.rules.retention_alert_below
    assert ("vitals_product_next_day_retention_ratio", (("app_id", "news"),)) not in got  # no cohort: not set
    assert got[("vitals_product_dau", (("app_id", "news"),))] == 40


def test_pooling_sums_per_label() -> None:
    labels = AppLabels(["shop"])
    rows = [("a", 1, 0, 2, 1), ("b", 3, 1, 2, 0), ("shop", 5, 1, 1, 1), ("default", 2, 0, 0, 0)]
    assert pool_by_label(rows, labels) == {OTHER_APP: (4, 1, 4, 1), "shop": (5, 1, 1, 1), "default": (2, 0, 0, 0)}
    assert labels("") == OTHER_APP and labels("default") == "default"
    assert labels.values == ("default", "shop", OTHER_APP)


@pytest.mark.usefixtures("engine_impl")
def test_per_app_rules_stay_bounded_with_100k_apps() -> None:
    """Unconfigured apps share the default rules object and its absence periods: nothing is
    cached per app id, whatever the engine and the device stage look up."""
    settings = flood_settings()
    rules = RulesByApp(settings)
    before = rules.sizes
    assert before == (2, 2)
    shared: set[int] = set()
    for i in range(APPS):
        app = f"tenant-{i:06d}"
        shared.add(id(rules(app)))
        shared.add(id(rules.periods(app)))
    assert len(shared) == 2 and rules("tenant-000001") is settings.rules
    assert rules("shop").burst_events_per_minute == 5 and rules("shop") is rules("shop")
    # through the engine (the C loop calls rules(app) and rules.periods(app) per run) and the device stage
    part = UserPartition(0, StateStore({}), rules)
    part.apply(flood(APPS), Outputs())
    devices = DevicePartition(0, {}, rules)
    alerts: list[Any] = []
    for i in range(0, APPS, 10):
        devices.apply(DeviceObservations(f"tenant-{i:06d}", "d", [(T0 // DAY, "u", T0)]), alerts)
    assert rules.sizes == before
    assert (rules.max_dedup_ms, rules.keep_days) == (settings.rules.dedup_horizon_s * 1000,
                                                     settings.rules.retention_days_needed)
