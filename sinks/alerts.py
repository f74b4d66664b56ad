"""Alerts in ClickHouse (``alerts``, SPEC section 5): every alert as published, one row per (app_id, rule,
alert_id, status) under ``FINAL`` (``ReplacingMergeTree``), written through clickhouse-connect (the
``user_ids`` array and the nullable columns) with a deterministic ``insert_deduplication_token`` (a hash of
the rows): a retried insert or a replay leaves the table as written once.

Every insert is bounded whatever a flush job holds: a day close or a watermark jump past many absence
deadlines can decide an alert per user of a partition at once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from schemas.alerts import Alert
from sinks.base import BatchingSink, runs

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouse

ALERT_COLUMNS = [
    "alert_id",
    "status",
    "rule",
    "level",
    "app_id",
    "user_id",
    "device_id",
    "user_ids",
    "episode_start",
    "triggered_at",
    "evidence",
    "schema_version",
    "context",
    "holdout",
]


def _token(table: str, data: list[list[Any]]) -> str:
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    for column in data:
        digest.update(orjson.dumps(column, default=str))
    return digest.hexdigest()


# an alerts insert's rows and string bytes at most: a day close (or a watermark jump past many absence
# deadlines) can decide an alert per user of a partition in one flush job; an alert is a few hundred bytes
# of evidence and context, a ``fake.device_farm`` one up to rules.device_farm_users (<= 100) user ids more
ALERT_INSERT_ROWS = 20_000
ALERT_INSERT_BYTES = 8 << 20


def _alert_size(row: tuple[Alert, str, str]) -> int:
    a, evidence, context = row
    ids = sum(len(u) + 8 for u in a.user_ids) if a.user_ids else 0
    return len(a.alert_id) + len(a.app_id) + len(a.user_id or "") + len(a.device_id or "") + ids + len(evidence) \
        + len(context) + 64


class AlertSink(BatchingSink[Alert]):
    name = "alerts"

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def write(self, batch: Sequence[Alert]) -> None:
        rows = [(a, orjson.dumps(a.evidence).decode(), orjson.dumps(a.context).decode()) for a in batch]
        for run in runs(rows, _alert_size, ALERT_INSERT_ROWS, ALERT_INSERT_BYTES):  # bounded, whatever a job holds
            self._insert(run)

    def _insert(self, rows: Sequence[tuple[Alert, str, str]]) -> None:
        batch = [a for a, _, _ in rows]
        data: list[list[Any]] = [
            [a.alert_id for a in batch],
            [a.status for a in batch],
            [a.rule for a in batch],
            [a.level for a in batch],
            [a.app_id for a in batch],
            [a.user_id for a in batch],
            [a.device_id for a in batch],
            [a.user_ids or [] for a in batch],
            [a.episode_start for a in batch],
            [a.triggered_at for a in batch],
            [evidence for _, evidence, _ in rows],
            [a.schema_version for a in batch],
            [context for _, _, context in rows],
            [int(a.holdout) for a in batch],
        ]
        self.ch.insert("alerts", ALERT_COLUMNS, data, _token("alerts", data))
