"""Gauges read from outside the worker's state: consumer lag from the broker, product figures
(DAU, next-day retention, complaint rate) from ClickHouse."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sinks.clickhouse import ClickHouse
from streams.config.clickhouse_dsn import qualified
from streams.config.settings import RuleSettings, Settings
from streams.kafka.offsets import committed_offsets, end_offsets
from streams.kafka.topics import device_topic, reroute_topic, source_topics
from streams.ops.metrics import AppLabels, Metrics

Offsets = dict[tuple[str, int], int]


async def source_offsets(settings: Settings) -> tuple[Offsets, Offsets]:
    """Committed and end offsets of every partition of the source topics (events, reroute, device obs)."""
    kafka, group = settings.kafka, settings.app_id
    committed: Offsets = {}
    ends: Offsets = {}
    for topic in (settings.events_topic, reroute_topic(settings), device_topic(settings), *source_topics(settings)):
        ends.update({(topic, p): end for p, end in (await end_offsets(kafka, topic)).items()})
        committed.update({(topic, p): c for p, c in (await committed_offsets(kafka, group, topic)).items()})
    return committed, ends


def refresh_lag(metrics: Metrics, topic: str, assigned: set[int], committed: Offsets, ends: Offsets) -> None:
    """Consumer lag per assigned partition of the events topic (end offset - committed)."""
    for p in assigned:
        lag = ends.get((topic, p), 0) - committed.get((topic, p), 0)
        metrics.consumer_lag.labels(str(p)).set(max(0, lag))


def product_sql(database: str) -> str:
    """(app id, DAU, complainers, cohort, retained) of each app's last closed day."""
    daily = qualified(database, "user_activity_daily")
    return f"""
SELECT app_id, countIf(has_d) AS dau, countIf(has_d AND complained) AS complainers,
       countIf(first_day = d - 1) AS cohort, countIf(first_day = d - 1 AND has_d) AS retained
FROM (
    SELECT u.app_id AS app_id, u.user_id AS user_id, min(u.day) AS first_day, max(u.day = l.d) AS has_d,
           max(u.day = l.d AND u.complaints > 0) AS complained, any(l.d) AS d
    FROM {daily} AS u FINAL
    INNER JOIN (SELECT app_id, max(day) - 1 AS d FROM {daily} GROUP BY app_id) AS l
        ON u.app_id = l.app_id
    WHERE u.day <= l.d
    GROUP BY u.app_id, u.user_id
)
GROUP BY app_id
"""


def pool_by_label(rows: Iterable[Sequence[Any]], labels: AppLabels) -> dict[str, tuple[int, int, int, int]]:
    """``product_sql``'s rows (app id, DAU, complainers, cohort, retained) summed per app label: a
    configured app's own figures, and those of every other app pooled under ``other`` (the users
    are distinct per app, so the sums count (app, user) pairs; each app at its own last closed day)."""
    pooled: dict[str, tuple[int, int, int, int]] = {}
    for app_id, dau, complainers, cohort, retained in rows:
        label = labels(app_id)
        d, c, n, r = pooled.get(label, (0, 0, 0, 0))
        pooled[label] = (d + int(dau), c + int(complainers), n + int(cohort), r + int(retained))
    return pooled


def product_gauges(ch: ClickHouse, metrics: Metrics, labels: AppLabels, rules_for: Callable[[str], RuleSettings]
                   ) -> None:
    """DAU, next-day retention and complaint rate of the last closed day, per app label (from
    ClickHouse; ``other``: pooled over the apps not configured, see :func:`pool_by_label`), and the
    label's alert thresholds for the last two (``other``: the default rules, which those apps use)."""
    rows = ch.query(product_sql(ch.database))
    for label, (dau, complainers, cohort, retained) in pool_by_label(rows, labels).items():
        rules = rules_for(label)
        metrics.retention_threshold.labels(label).set(rules.retention_alert_below)
        metrics.complaint_threshold.labels(label).set(rules.complaint_rate_alert_above)
        metrics.dau.labels(label).set(dau)
        metrics.complaint_rate.labels(label).set(complainers / dau if dau else 0.0)
        if cohort:
            metrics.retention.labels(label).set(retained / cohort)
