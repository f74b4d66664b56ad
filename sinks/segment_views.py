"""Analyst views over the segment tables (sinks/segments.py) and the alerts' holdout (SPEC section 7),
registered with the other views (sinks/views.py: ``vitals views``, ``ensure_views``, the worker's start).
The definitions, in words (docs/clickhouse.md has them too):

* ``segment_sizes_daily`` (app_id, day, dimension, segment, users): users in the segment at the end of the
  UTC day, from the change log: the running sum of entries (changes into the segment, by the day of
  ``changed_at``) minus exits (changes whose ``previous`` it is). One row per day from the segment's first
  appearance to the app's last change day (days without a change carry the size over).
* ``segment_migrations`` (app_id, day, dimension, previous, segment, moved, previous_size, share): users who
  moved from ``previous`` to ``segment`` on the day (分层迁移率); ``previous_size`` is the size of
  ``previous`` at the end of the day before, ``share`` = moved / previous_size (NULL when that size is 0).
  First segments (``previous`` null) are entries, not migrations: they are left out.
* ``high_potential_conversion`` (app_id, entry_day, entered, converted, pending, rate, practice_rate): entries
  into ``high_potential`` by the day of ``changed_at`` (the closed day D), those whose next ``potential``
  change is ``converted`` with a payment ts before the end of day D + 30 (within 30 days), those with no
  next change yet (pending: D + 30 not closed), rate = converted / entered, and practice's 0.38 beside it.
* ``recall_uplift`` (app_id, day, opened, recalled, rate, opened_holdout, recalled_holdout, rate_holdout,
  uplift, and the same seven with ``_clean``: without the episodes of users flagged by a fake-activity alert
  on days day - 29 .. day, as in ``active_users_clean``): ``churn.no_login_72h`` episodes opened (status
  ``open``, by the day of ``episode_start``), outside the control group and in it (the open alert's
  ``holdout``); recalled = the episode's resolved alert (same ``alert_id``) carries a ``login_ts`` within
  72 h of ``episode_start`` (``login_ts - episode_start <= 72 h``). The resolved alert is exact (the login
  event's own ts); ``user_activity_daily`` knows days only. Rates are recalled / opened (0 when none
  opened); uplift = rate - rate_holdout.
* ``active_users_clean`` (app_id, day, dau, dau_clean, cohort, retained, retention, cohort_clean,
  retained_clean, retention_clean): DAU and next-day retention (of the users first seen on day - 1, the share
  active on the day; as ``active_users_daily`` / ``retention_cohorts`` with ``day_offset = 1``) raw and with
  the users flagged on days day - 29 .. day by any ``fake.*`` alert (``user_id``, or ``user_ids`` for
  ``fake.device_farm``; the episode start's day) left out.
"""

from __future__ import annotations

from schemas.time_units import DAY_MS
from streams.config.clickhouse_dsn import qualified

PRACTICE_HP_CONVERSION = 0.38  # practice: 38% of high-potential users pay within 30 days (SPEC section 7)
HP_CONVERSION_DAYS = 30
RECALL_MS = 72 * 3_600_000
FAKE_LOOKBACK_DAYS = 30

_EPOCH = "toDate('1970-01-01')"


def _day(ms: str) -> str:
    return f"addDays({_EPOCH}, intDiv({ms}, {DAY_MS}))"


def _flags(alerts: str) -> str:
    """(app_id, flagged_user, flag_days): the days of the fake-activity alerts naming each user (``user_id``, or
    every user of ``user_ids`` for ``fake.device_farm``), by the day of ``episode_start``."""
    return f"""SELECT app_id, u AS flagged_user, groupUniqArray({_day('episode_start')}) AS flag_days
                   FROM {alerts} FINAL
                   ARRAY JOIN if(rule = 'fake.device_farm', user_ids, [assumeNotNull(user_id)]) AS u
                   WHERE status = 'open' AND startsWith(rule, 'fake.')
                   GROUP BY app_id, flagged_user"""


def _flagged(day: str, table: str) -> str:
    """Whether ``flag_days`` (of ``table``) holds a day of the 30 days ending on ``day``: ``flagged``."""
    days = f"{table}.flag_days" if table else "flag_days"
    return (f"arrayExists(x -> x <= {day} AND x >= subtractDays({day}, {FAKE_LOOKBACK_DAYS - 1}), {days}) "
            "AS flagged")


def segment_views(database: str) -> dict[str, str]:
    """Each view's SELECT, in dependency order (``segment_sizes_daily`` before ``segment_migrations``)."""
    changes, alerts, daily, sizes = (qualified(database, n) for n in (
        "segment_changes", "alerts", "user_activity_daily", "segment_sizes_daily"))
    return {
        "segment_sizes_daily": f"""
            SELECT app_id, day, dimension, segment,
                   toInt64(sum(day_delta) OVER (PARTITION BY app_id, dimension, segment ORDER BY day
                                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS users
            FROM (
                SELECT app_id, day, dimension, segment, sum(delta) AS day_delta
                FROM (
                    SELECT app_id, {_day('changed_at')} AS day, dimension, segment, toInt64(1) AS delta
                    FROM {changes} FINAL
                    UNION ALL
                    SELECT app_id, {_day('changed_at')} AS day, dimension, assumeNotNull(previous) AS segment,
                           toInt64(-1) AS delta
                    FROM {changes} FINAL WHERE previous IS NOT NULL
                    UNION ALL
                    SELECT app_id, addDays(first, k) AS day, dimension, segment, toInt64(0) AS delta
                    FROM (
                        SELECT s.app_id AS app_id, s.dimension AS dimension, s.segment AS segment,
                               s.first AS first, l.last AS last
                        FROM (
                            SELECT app_id, dimension, segment, {_day('min(changed_at)')} AS first
                            FROM {changes} FINAL GROUP BY app_id, dimension, segment
                        ) AS s
                        INNER JOIN (
                            SELECT app_id, {_day('max(changed_at)')} AS last FROM {changes} FINAL GROUP BY app_id
                        ) AS l ON s.app_id = l.app_id
                    )
                    ARRAY JOIN range(toUInt32(greatest(dateDiff('day', first, last) + 1, 0))) AS k
                )
                GROUP BY app_id, day, dimension, segment
            )""",
        "segment_migrations": f"""
            SELECT m.app_id AS app_id, m.day AS day, m.dimension AS dimension, m.prev AS previous,
                   m.segment AS segment, m.moved AS moved, toInt64(s.users) AS previous_size,
                   if(previous_size > 0, moved / previous_size, NULL) AS share
            FROM (
                SELECT app_id, {_day('changed_at')} AS day, dimension, assumeNotNull(previous) AS prev,
                       segment, toInt64(count()) AS moved
                FROM {changes} FINAL WHERE previous IS NOT NULL
                GROUP BY app_id, day, dimension, prev, segment
            ) AS m
            LEFT JOIN {sizes} AS s
                ON s.app_id = m.app_id AND s.dimension = m.dimension AND s.segment = m.prev
                   AND s.day = subtractDays(m.day, 1)
            SETTINGS join_use_nulls = 0""",
        "high_potential_conversion": f"""
            SELECT app_id, {_day('changed_at')} AS entry_day, toInt64(count()) AS entered,
                   toInt64(countIf(next_segment = 'converted'
                                   AND next_at < changed_at + {(HP_CONVERSION_DAYS + 1) * DAY_MS})) AS converted,
                   toInt64(countIf(next_segment = '')) AS pending,
                   converted / entered AS rate,
                   {PRACTICE_HP_CONVERSION} AS practice_rate
            FROM (
                SELECT app_id, seg, changed_at,
                       leadInFrame(seg, 1, '') OVER w AS next_segment,
                       leadInFrame(changed_at, 1, toInt64(0)) OVER w AS next_at
                FROM (SELECT app_id, user_id, toString(segment) AS seg, changed_at
                      FROM {changes} FINAL WHERE dimension = 'potential')
                WINDOW w AS (PARTITION BY app_id, user_id
                             ORDER BY changed_at, seg = 'converted'
                             ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)
            )
            WHERE seg = 'high_potential'
            GROUP BY app_id, entry_day""",
        "recall_uplift": f"""
            SELECT app_id, day,
                   toInt64(countIf(NOT hold)) AS opened,
                   toInt64(countIf(NOT hold AND back)) AS recalled,
                   if(opened = 0, 0, recalled / opened) AS rate,
                   toInt64(countIf(hold)) AS opened_holdout,
                   toInt64(countIf(hold AND back)) AS recalled_holdout,
                   if(opened_holdout = 0, 0, recalled_holdout / opened_holdout) AS rate_holdout,
                   rate - rate_holdout AS uplift,
                   toInt64(countIf(NOT hold AND NOT flagged)) AS opened_clean,
                   toInt64(countIf(NOT hold AND back AND NOT flagged)) AS recalled_clean,
                   if(opened_clean = 0, 0, recalled_clean / opened_clean) AS rate_clean,
                   toInt64(countIf(hold AND NOT flagged)) AS opened_holdout_clean,
                   toInt64(countIf(hold AND back AND NOT flagged)) AS recalled_holdout_clean,
                   if(opened_holdout_clean = 0, 0, recalled_holdout_clean / opened_holdout_clean) AS rate_holdout_clean,
                   rate_clean - rate_holdout_clean AS uplift_clean
            FROM (
                SELECT e.app_id AS app_id, e.day AS day, e.hold AS hold, e.back AS back, {_flagged('e.day', 'fl')}
                FROM (
                    SELECT app_id, alert_id, assumeNotNull(any(user_id)) AS uid,
                           {_day("minIf(episode_start, status = 'open')")} AS day,
                           maxIf(holdout, status = 'open') = 1 AS hold,
                           countIf(status = 'resolved' AND JSONHas(evidence, 'login_ts')
                                   AND JSONExtractInt(evidence, 'login_ts') - episode_start <= {RECALL_MS}) > 0 AS back
                    FROM {alerts} FINAL
                    WHERE rule = 'churn.no_login_72h'
                    GROUP BY app_id, alert_id
                    HAVING countIf(status = 'open') > 0
                ) AS e
                LEFT JOIN ({_flags(alerts)}) AS fl ON e.app_id = fl.app_id AND e.uid = fl.flagged_user
                SETTINGS join_use_nulls = 0
            )
            GROUP BY app_id, day""",
        "active_users_clean": f"""
            SELECT app_id, d AS day,
                   toInt64(countIf(active)) AS dau,
                   toInt64(countIf(active AND NOT flagged)) AS dau_clean,
                   toInt64(countIf(first_day = subtractDays(d, 1))) AS cohort,
                   toInt64(countIf(first_day = subtractDays(d, 1) AND active)) AS retained,
                   if(cohort = 0, 0, retained / cohort) AS retention,
                   toInt64(countIf(first_day = subtractDays(d, 1) AND NOT flagged)) AS cohort_clean,
                   toInt64(countIf(first_day = subtractDays(d, 1) AND active AND NOT flagged)) AS retained_clean,
                   if(cohort_clean = 0, 0, retained_clean / cohort_clean) AS retention_clean
            FROM (
                SELECT app_id, first_day, d, has(days, d) AS active,
                       {_flagged('d', '')}
                FROM (
                    SELECT u.app_id AS app_id, u.first_day AS first_day, u.days AS days, f.flag_days AS flag_days
                    FROM (
                        SELECT app_id, user_id, min(day) AS first_day, groupUniqArray(day) AS days
                        FROM {daily} FINAL WHERE events > 0 GROUP BY app_id, user_id
                    ) AS u
                    LEFT JOIN ({_flags(alerts)}
                    ) AS f ON u.app_id = f.app_id AND u.user_id = f.flagged_user
                    SETTINGS join_use_nulls = 0
                )
                ARRAY JOIN arrayDistinct(arrayPushBack(days, addDays(first_day, 1))) AS d
                WHERE d <= (SELECT max(day) FROM {daily})
            )
            GROUP BY app_id, d""",
    }
