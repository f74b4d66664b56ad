"""ClickHouse views for analysts, over ``user_activity_daily``, ``alerts``, ``raw_messages`` and
``event_outcome_flushes`` (see sinks/schema.py), in the DSN's database (streams/config/clickhouse_dsn.py).

Created by the worker at startup and by ``vitals report`` / ``vitals views`` (``CREATE OR REPLACE``,
so an upgrade replaces the definitions). Every view is plain SQL on the tables; the
definitions, in words:

* ``active_users_daily`` (app_id, day, dau, wau, mau, stickiness): distinct users active on the
  day, in the 7 days ending on it and in the 30 days ending on it; stickiness = DAU / MAU. Days run
  from the first to the last day with data (the first 29 days see a partial MAU window).
* ``retention_cohorts`` (app_id, cohort_day, day_offset, cohort_size, retained, retention): users
  first seen on ``cohort_day`` and, of them, those active on ``cohort_day + day_offset``; offsets
  up to the last day with data. ``day_offset = 1`` is next-day retention (SPEC section 3),
  ``day_offset = 7`` is 7-day retention.
* ``alert_episodes`` (app_id, rule, level, alert_id, user_id, start_ms, resolved, end_ms): one row
  per churn or hollow-activity episode. ``end_ms`` is when it ended: the login (engagement for
  level 2) that ended an absence episode, or the start of the first closed day a day rule no
  longer held.
* ``churn_ladder_daily`` (app_id, day, rule, level, users): users whose episode of the rule was
  open at the end of the day (start <= end of day < end).
* ``recall_outcomes`` (app_id, day, flagged, back_in_window, back_later, not_back): users flagged
  by ``churn.no_login_72h`` on the day (episode start) and whether they logged in again within
  the recall window (72 h after the flag), later, or not (yet).
* ``fake_flags_daily`` (app_id, day, rule, flags, flagged_users): fake-activity alerts opened with
  an episode starting on the day, and the distinct users they name (``fake.device_farm``: the
  users seen on the device).
* ``raw_events`` (topic, partition, offset, timestamp, batch, index, event, event_id, user_id,
  type, ts_ms, app_id, device_id, amount, props): every event of every message in
  ``raw_messages`` as it arrived, one row per element of a batch (``index`` in it, from 0) or per
  single-event message; ``event`` and ``props`` are the original JSON text, ``ts_ms`` the
  event time (an RFC 3339 ``ts`` parsed), the other fields extracted from ``event``. Invalid
  events are here too (and in the dead-letter topic); a message that is not JSON is one row.
* ``fake_activity_share`` (app_id, day, active_users, flagged_users, share): distinct users named
  by any fake-activity alert of the day, as a share of the day's active users.
* ``event_outcomes`` (app_id, day, outcome, reason, events): events per outcome (accepted, late,
  duplicate, invalid) and reason, from ``event_outcome_flushes`` (sinks/outcomes.py).
* the segment views (``segment_sizes_daily``, ``segment_migrations``, ``high_potential_conversion``,
  ``recall_uplift``, ``active_users_clean``): see sinks/segment_views.py.
"""

from __future__ import annotations

from typing import Protocol

from schemas.alerts import EPISODE_RULES
from schemas.time_units import DAY_MS
from sinks import outcomes
from sinks.segment_views import segment_views
from streams.config.clickhouse_dsn import qualified

RECALL_WINDOW_MS = 72 * 3_600_000  # SPEC: the "golden 72 hours" after the no-login flag

_DAY_OF = "addDays(toDate('1970-01-01'), intDiv({ms}, {day}))"  # UTC day of an epoch-ms value
_EPISODE_RULES_SQL = ", ".join(f"'{r}'" for r in EPISODE_RULES)


def views(database: str) -> dict[str, str]:
    """Each view's SELECT, on the tables (and views) of ``database``, in dependency order."""
    daily, alerts, episodes = (qualified(database, n) for n in ("user_activity_daily", "alerts", "alert_episodes"))
    last_day = f"(SELECT max(day) FROM {daily})"
    return {
        "active_users_daily": f"""
            SELECT app_id, d AS day,
                   uniqExactIf(user_id, k = 0) AS dau,
                   uniqExactIf(user_id, k < 7) AS wau,
                   uniqExact(user_id) AS mau,
                   if(mau = 0, 0, dau / mau) AS stickiness
            FROM (SELECT app_id, user_id, day FROM {daily} FINAL WHERE events > 0)
            ARRAY JOIN range(30) AS k
            WHERE (addDays(day, k) AS d) <= {last_day}
            GROUP BY app_id, d""",
        "retention_cohorts": f"""
            SELECT app_id, cohort_day, day_offset,
                   count() AS cohort_size,
                   countIf(has(days, addDays(cohort_day, day_offset))) AS retained,
                   retained / cohort_size AS retention
            FROM (
                SELECT app_id, user_id, min(day) AS cohort_day, groupUniqArray(day) AS days
                FROM {daily} FINAL WHERE events > 0
                GROUP BY app_id, user_id
            )
            ARRAY JOIN range(toUInt32(dateDiff('day', cohort_day, {last_day})) + 1) AS day_offset
            GROUP BY app_id, cohort_day, day_offset""",
        "alert_episodes": f"""
            SELECT app_id, rule, any(level) AS level, alert_id, any(user_id) AS user_id,
                   minIf(episode_start, status = 'open') AS start_ms,
                   countIf(status = 'resolved') > 0 AS resolved,
                   maxIf(multiIf(JSONHas(evidence, 'login_ts'), JSONExtractInt(evidence, 'login_ts'),
                                 JSONHas(evidence, 'engagement_ts'), JSONExtractInt(evidence, 'engagement_ts'),
                                 JSONHas(evidence, 'day'), JSONExtractInt(evidence, 'day') * {DAY_MS},
                                 triggered_at),
                         status = 'resolved') AS end_ms
            FROM {alerts} FINAL
            WHERE rule IN ({_EPISODE_RULES_SQL})
            GROUP BY app_id, rule, alert_id
            HAVING countIf(status = 'open') > 0""",
        "churn_ladder_daily": f"""
            SELECT app_id, addDays(toDate('1970-01-01'), dn) AS day, rule, level, uniqExact(user_id) AS users
            FROM {episodes}
            ARRAY JOIN range(intDiv(start_ms, {DAY_MS}),
                             if(resolved, intDiv(end_ms, {DAY_MS}),
                                toInt64(dateDiff('day', toDate('1970-01-01'), {last_day})) + 1)) AS dn
            WHERE startsWith(rule, 'churn.')
            GROUP BY app_id, dn, rule, level""",
        "recall_outcomes": f"""
            SELECT app_id, {_DAY_OF.format(ms="start_ms", day=DAY_MS)} AS day,
                   uniqExact(user_id) AS flagged,
                   uniqExactIf(user_id, resolved AND end_ms - start_ms <= {RECALL_WINDOW_MS}) AS back_in_window,
                   uniqExactIf(user_id, resolved AND end_ms - start_ms > {RECALL_WINDOW_MS}) AS back_later,
                   uniqExactIf(user_id, NOT resolved) AS not_back
            FROM {episodes}
            WHERE rule = 'churn.no_login_72h'
            GROUP BY app_id, day""",
        "fake_flags_daily": f"""
            SELECT app_id, {_DAY_OF.format(ms="episode_start", day=DAY_MS)} AS day, rule,
                   uniqExact(alert_id) AS flags, uniqExact(u) AS flagged_users
            FROM {alerts} FINAL
            ARRAY JOIN if(rule = 'fake.device_farm', user_ids, [assumeNotNull(user_id)]) AS u
            WHERE status = 'open' AND startsWith(rule, 'fake.')
            GROUP BY app_id, day, rule""",
        "fake_activity_share": f"""
            SELECT a.app_id AS app_id, a.day AS day, a.active_users AS active_users,
                   f.flagged_users AS flagged_users, f.flagged_users / a.active_users AS share
            FROM (
                SELECT app_id, day, uniqExact(user_id) AS active_users
                FROM {daily} FINAL WHERE events > 0 GROUP BY app_id, day
            ) AS a
            LEFT JOIN (
                SELECT app_id, {_DAY_OF.format(ms="episode_start", day=DAY_MS)} AS day, uniqExact(u) AS flagged_users
                FROM {alerts} FINAL
                ARRAY JOIN if(rule = 'fake.device_farm', user_ids, [assumeNotNull(user_id)]) AS u
                WHERE status = 'open' AND startsWith(rule, 'fake.')
                GROUP BY app_id, day
            ) AS f ON a.app_id = f.app_id AND a.day = f.day
            SETTINGS join_use_nulls = 0""",
        "raw_events": f"""
            SELECT topic, partition, offset, timestamp, batch, n - 1 AS index, event,
                   JSONExtractString(event, 'event_id') AS event_id,
                   JSONExtractString(event, 'user_id') AS user_id,
                   JSONExtractString(event, 'type') AS type,
                   if(JSONType(event, 'ts') = 'String',
                      toUnixTimestamp64Milli(parseDateTime64BestEffortOrNull(JSONExtractString(event, 'ts'), 3, 'UTC')),
                      JSONExtract(event, 'ts', 'Nullable(Int64)')) AS ts_ms,
                   if(JSONHas(event, 'app_id'), JSONExtractString(event, 'app_id'), 'default') AS app_id,
                   if(JSONHas(event, 'device_id'), JSONExtractString(event, 'device_id'), NULL) AS device_id,
                   JSONExtract(event, 'amount', 'Nullable(Float64)') AS amount,
                   JSONExtractRaw(event, 'props') AS props
            FROM (
                SELECT topic, partition, offset, timestamp, startsWith(trimLeft(value), '[') AS batch,
                       if(batch, JSONExtractArrayRaw(value), [value]) AS events
                FROM {qualified(database, 'raw_messages')} FINAL
            )
            ARRAY JOIN events AS event, arrayEnumerate(events) AS n""",
        "event_outcomes": outcomes.view_sql(database),
        **segment_views(database),  # segments, recall uplift, fake-excluded DAU (sinks/segment_views.py)
    }


class Commands(Protocol):
    def command(self, sql: str) -> object: ...


class _Client(Protocol):
    database: str

    def client(self) -> Commands: ...


def view_ddl(database: str) -> list[str]:
    """The CREATE statements, in dependency order (``alert_episodes`` before the views on it)."""
    return [f"CREATE OR REPLACE VIEW {qualified(database, name)} AS {sql.strip()}"
            for name, sql in views(database).items()]


def ensure_views(ch: _Client) -> None:
    """Create or replace every analyst view (the tables must exist: call ``ensure_schema`` first)."""
    client = ch.client()
    for statement in view_ddl(ch.database):
        client.command(statement)
