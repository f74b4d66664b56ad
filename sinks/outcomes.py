"""Event outcome counts in ClickHouse: how many events were accepted, late, duplicates or invalid (by
reason), per app and UTC day, kept after the worker that counted them stops (the report's data-quality
chart reads them).

Table ``event_outcome_flushes``: one row per flush and source partition whose counts moved, holding
that flush's counts of the partition as parallel arrays (``app_id``, ``day``, ``outcome``, ``reason``,
``events``), keyed by (``partition``, ``seq``): ``seq`` numbers the partition's rows. A row written
again under the same key (after a crash, the first flush of the restarted worker) replaces the one
before under ``FINAL`` (``ReplacingMergeTree(version)``, ``version`` = when its flush was taken, in
epoch ms, never below the partition's previous row's): how the key stays exact is
:mod:`streams.worker.outcome_gates`'s. View ``event_outcomes`` (sinks/views.py) sums them.

Bounded whatever the input: a flush writes one row per partition (one insert), and a row holds one
entry per (app, day, outcome, reason) of the flush's events. Every event leaves an output waiting for
the same flush (a changed (user, day) row of its app and day, a dead letter, a late-ledger event), and
entries are at most a few per output; ``flush_max_rows`` bounds those, so a tenant flood of 100k app
ids makes flushes come sooner, as it does for ``user_activity_daily``, not rows grow: app ids are kept
as sent (no pooling), like the other tables keep them.

Pure here but the sink: the mapping of the engine's outcome names to (outcome, reason), shared with
the ``vitals_events_total`` metric, and the rows of a flush's counts.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from sinks.base import BatchingSink
from streams.config.clickhouse_dsn import qualified

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouse

TABLE = "event_outcome_flushes"
COLUMNS = ["partition", "seq", "version", "events_offset", "reroute_offset", "app_id", "day", "outcome", "reason",
           "events"]
LAST_DAY = 65_535  # 2149-06-06, the last day a ClickHouse Date holds: later days are counted on it
# an entry of a row: (app_id, UTC day number, outcome, reason) -> events
Entry = tuple[str, int, str, str]


def ddl(database: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {qualified(database, TABLE)} (
            partition UInt32,
            seq UInt64,
            version UInt64,
            events_offset Int64,
            reroute_offset Int64,
            app_id Array(LowCardinality(String)),
            day Array(Date),
            outcome Array(LowCardinality(String)),
            reason Array(LowCardinality(String)),
            events Array(UInt64)
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (partition, seq)
        SETTINGS non_replicated_deduplication_window = 1000"""


def view_sql(database: str) -> str:
    """``event_outcomes`` (app_id, day, outcome, reason, events): the rows' counts summed."""
    return f"""
            SELECT a AS app_id, d AS day, o AS outcome, r AS reason, sum(n) AS events
            FROM (SELECT a, d, o, r, n FROM {qualified(database, TABLE)} FINAL
                  ARRAY JOIN app_id AS a, day AS d, outcome AS o, reason AS r, events AS n)
            GROUP BY a, d, o, r"""


def labels(outcome: str) -> tuple[str, str] | None:
    """An engine outcome (``Outputs.outcomes``) as (outcome, reason) of the table and of
    ``vitals_events_total``; None for what is no event's final outcome: ``rerouted`` (counted where it
    lands) and ``dlq:<reason>`` (a dead letter that is no event)."""
    if outcome.startswith("invalid:"):
        return "invalid", outcome[8:]
    if outcome == "replayed":  # seen by a replay after a restart: in the state already
        return "duplicate", "replay"
    if outcome.startswith("late:"):  # late:beyond_state, the late-events ledger's (sinks/late.py)
        return "late", outcome[5:]
    if outcome == "rerouted" or outcome.startswith("dlq:"):
        return None
    return outcome, ""


def entries(counts: Iterable[tuple[tuple[str, int, str], int]]) -> dict[Entry, int]:
    """((app_id, day, engine outcome), n) pairs of one partition as the table's entries: outcomes
    named as :func:`labels` names them (those it drops left out), days clamped to ``Date``'s range."""
    out: dict[Entry, int] = {}
    for (app_id, day, outcome), n in counts:
        named = labels(outcome)
        if named is None or n <= 0:
            continue
        key = (app_id, min(max(day, 0), LAST_DAY), *named)
        out[key] = out.get(key, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One row of ``event_outcome_flushes``: a partition's counts from one flush."""

    partition: int
    seq: int
    version: int
    events_offset: int  # the last offset of the events topic counted (-1: none yet)
    reroute_offset: int  # the same on the reroute topic
    counts: tuple[tuple[Entry, int], ...]  # sorted


_EPOCH = datetime.date(1970, 1, 1).toordinal()


class OutcomeSink(BatchingSink[OutcomeRow]):
    """Writes the flushes' outcome rows (one insert per flush, a row per partition)."""

    name = TABLE

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def write(self, batch: Sequence[OutcomeRow]) -> None:
        data: list[list[Any]] = [[] for _ in COLUMNS]
        for row in batch:
            fixed = (row.partition, row.seq, row.version, row.events_offset, row.reroute_offset)
            for column, value in zip(data, fixed, strict=False):
                column.append(value)
            data[5].append([app for (app, _, _, _), _ in row.counts])
            data[6].append([datetime.date.fromordinal(_EPOCH + day) for (_, day, _, _), _ in row.counts])
            data[7].append([outcome for (_, _, outcome, _), _ in row.counts])
            data[8].append([reason for (_, _, _, reason), _ in row.counts])
            data[9].append([n for _, n in row.counts])
        token = orjson.dumps([[r.partition, r.seq, r.version, r.counts] for r in batch])
        self.ch.insert(TABLE, COLUMNS, data, hashlib.blake2b(token, digest_size=16).hexdigest())
