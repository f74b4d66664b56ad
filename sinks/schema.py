"""The tables vitals writes (sinks/clickhouse.py, sinks/late.py, sinks/outcomes.py,
sinks/segments.py), created in the DSN's database
(streams/config/clickhouse_dsn.py) when missing; the analyst views over them are in sinks/views.py."""

from __future__ import annotations

from sinks import late, outcomes, segments
from streams.config.clickhouse_dsn import qualified


def schema_ddl(database: str) -> tuple[str, ...]:
    """The database and its tables, in order (``CREATE ... IF NOT EXISTS``: run at every start)."""

    def t(name: str) -> str:
        return qualified(database, name)

    return (
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"""CREATE TABLE IF NOT EXISTS {t('user_activity_daily')} (
            app_id LowCardinality(String),
            user_id String,
            day Date,
            {late.COUNTER_COLUMNS_DDL},
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(day)
        ORDER BY (app_id, day, user_id)
        SETTINGS non_replicated_deduplication_window = 1000""",
        f"""CREATE TABLE IF NOT EXISTS {t('alerts')} (
            alert_id String,
            status LowCardinality(String),
            rule LowCardinality(String),
            level Nullable(UInt8),
            app_id LowCardinality(String),
            user_id Nullable(String),
            device_id Nullable(String),
            user_ids Array(String),
            episode_start Int64,
            triggered_at Int64,
            evidence String,
            schema_version UInt8,
            context String DEFAULT 'null',
            holdout UInt8 DEFAULT 0
        ) ENGINE = ReplacingMergeTree
        ORDER BY (app_id, rule, alert_id, status)
        SETTINGS non_replicated_deduplication_window = 1000""",
        # alerts tables created before context and holdout (SPEC section 4): added with their defaults
        f"ALTER TABLE {t('alerts')} ADD COLUMN IF NOT EXISTS context String DEFAULT 'null', "
        "ADD COLUMN IF NOT EXISTS holdout UInt8 DEFAULT 0",
        # raw storage (SPEC section 1: props and late events are carried to it): every message of the
        # events topic as it arrived, once per (topic, partition, offset) after FINAL; the
        # ``raw_events`` view (sinks/views.py) reads its events
        f"""CREATE TABLE IF NOT EXISTS {t('raw_messages')} (
            topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            timestamp DateTime64(3, 'UTC'),
            key String,
            value String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (topic, partition, offset)
        SETTINGS non_replicated_deduplication_window = 1000""",
        *late.ddl(database),  # events beyond the state's days: their ledger and the rows' late part
        outcomes.ddl(database),  # event outcome counts per flush and partition
        *segments.ddl(database),  # segment changes and each user's current segments (SPEC section 7)
    )
