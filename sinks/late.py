"""Events older than the days a user's state keeps, counted all the same (SPEC section 2: an event
however late is counted exactly once in the aggregates).

``user_activity_daily`` rows are cumulative counters written from the user's state (sinks/clickhouse.py).
For a day the state no longer holds (an offline phone syncing six weeks of events), the worker cannot
add to what it does not hold, so such an event goes to a ledger, ``late_events``, one row per
(app_id, user_id, day, event-id hash) in a ``ReplacingMergeTree`` (a redelivery, a replay or a retried
insert writes the same row: counted once). The day's row is then recomputed inside ClickHouse:

    row = (the row's counters less its ``late_*`` part) + the ledger's sums for that key

and written with ``late_*`` = the ledger's sums and ``version`` = its total events, which only grows,
so ``FINAL`` returns the new row. Recomputing is idempotent, so a crash anywhere (before or after
either insert) and the replay that follows give the same row. The row's state-written part is never
written again once its day left the state, so the two parts never race.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from sinks.base import BatchingSink
from sinks.partitions import MAX_PARTITIONS, month_of_day
from streams.config.clickhouse_dsn import qualified

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouse

# (app_id, user_id, day number, event-id hash, the event's counters as a state day holds them)
ColdEvent = tuple[str, str, int, int, tuple[int, int, int, int, int, int, int]]

# a day's counters as ClickHouse columns, in the order of a state day (streams/engine/state.py): user_activity_daily's
# (sinks/clickhouse.py), the ledger's, and the ``late_*`` part of user_activity_daily
COUNTER_TYPES = {"events": "UInt64", "logins": "UInt64", "payments": "UInt64", "payment_amount": "Decimal(38, 6)",
                 "content_posts": "UInt64", "social": "UInt64", "complaints": "UInt64"}
COUNTERS = tuple(COUNTER_TYPES)
COUNTER_COLUMNS_DDL = ",\n        ".join(f"{c} {t}" for c, t in COUNTER_TYPES.items())
LEDGER_COLUMNS = ["app_id", "user_id", "day", "event_hash", *COUNTERS]
KEYS_PER_STATEMENT = 1000  # (app_id, user_id, day) keys recomputed by one INSERT ... SELECT


def ddl(database: str) -> tuple[str, ...]:
    late = ", ".join(f"ADD COLUMN IF NOT EXISTS late_{c} {t} DEFAULT 0" for c, t in COUNTER_TYPES.items())
    return (
        f"""CREATE TABLE IF NOT EXISTS {qualified(database, 'late_events')} (
            app_id LowCardinality(String),
            user_id String,
            day Date,
            event_hash UInt64,
            {COUNTER_COLUMNS_DDL}
        ) ENGINE = ReplacingMergeTree
        ORDER BY (app_id, user_id, day, event_hash)
        SETTINGS non_replicated_deduplication_window = 1000""",
        f"ALTER TABLE {qualified(database, 'user_activity_daily')} {late}",
    )


def recompute_sql(database: str) -> str:
    """Rewrite the rows of the keys ``%(keys)s`` from their state-written part and the ledger."""
    total = ", ".join(f"b.{c} + l.{c}" for c in COUNTERS)
    late = ", ".join(f"l.{c}" for c in COUNTERS)
    sums = ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)
    base = ", ".join(f"{c} - late_{c} AS {c}" for c in COUNTERS)
    daily, ledger = qualified(database, "user_activity_daily"), qualified(database, "late_events")
    return f"""INSERT INTO {daily} (app_id, user_id, day, {", ".join(COUNTERS)}, version,
        {", ".join("late_" + c for c in COUNTERS)})
    SELECT l.app_id, l.user_id, l.day, {total}, b.events + l.events, {late}
    FROM (SELECT app_id, user_id, day, {sums} FROM {ledger} FINAL
          WHERE (app_id, user_id, day) IN %(keys)s GROUP BY app_id, user_id, day) AS l
    LEFT JOIN (SELECT app_id, user_id, day, {base} FROM {daily} FINAL
               WHERE (app_id, user_id, day) IN %(keys)s) AS b USING (app_id, user_id, day)"""


_EPOCH = datetime.date(1970, 1, 1).toordinal()


def _date(day: int) -> datetime.date:
    return datetime.date.fromordinal(_EPOCH + day)


class LateSink(BatchingSink[ColdEvent]):
    """Events beyond the state's days: the ledger, then their days' rows recomputed (flushed after
    the activity sink, so a row the same flush wrote from state is the base it adds to)."""

    name = "late_events"

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def write(self, batch: Sequence[ColdEvent]) -> None:
        data: list[list[Any]] = [[] for _ in LEDGER_COLUMNS]
        for app_id, user_id, day, h, counts in batch:
            row = (app_id, user_id, _date(day), h, *counts[:3], Decimal(counts[3]).scaleb(-6), *counts[4:])
            for column, value in zip(data, row, strict=True):
                column.append(value)
        token = orjson.dumps(sorted(map(list, zip(data[0], data[1], data[2], data[3], strict=True))),
                             default=str)
        self.ch.insert("late_events", LEDGER_COLUMNS, data, hashlib.blake2b(token, digest_size=16).hexdigest())
        # the rows of the days touched, a group of months at a time (a table partition per month)
        keys = sorted({(app_id, user_id, day) for app_id, user_id, day, _, _ in batch}, key=lambda k: k[2])
        sql = recompute_sql(self.ch.database)
        for group in _month_groups(keys):
            for start in range(0, len(group), KEYS_PER_STATEMENT):
                chunk = group[start : start + KEYS_PER_STATEMENT]
                months = len({month_of_day(day) for _, _, day in chunk})
                self.ch.insert_select("user_activity_daily", sql,
                                      {"keys": [(a, u, _date(d)) for a, u, d in chunk]}, months)


def _month_groups(keys: list[tuple[str, str, int]]) -> list[list[tuple[str, str, int]]]:
    """``keys`` (sorted by day) in consecutive groups touching at most MAX_PARTITIONS months each."""
    groups: list[list[tuple[str, str, int]]] = []
    months: set[int] = set()
    for key in keys:
        month = month_of_day(key[2])
        if month not in months and len(months) == MAX_PARTITIONS:
            months = set()
        if not months:
            groups.append([])
        months.add(month)
        groups[-1].append(key)
    return groups
