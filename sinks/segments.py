"""Segment changes (SPEC section 7) in ClickHouse: ``segment_changes`` (every change) and ``user_segments``
(each user's current segment per dimension), written by :class:`SegmentSink` from the same rows.

Exactness under crash and replay: a replay decides the same changes with the same values (changed_at is a
day start or an event ts, never the wall clock), so ``segment_changes`` (``ReplacingMergeTree`` ORDER BY
(app_id, user_id, dimension, changed_at, segment)) holds one row per change under ``FINAL``.
``user_segments`` is a ``ReplacingMergeTree(version)`` ORDER BY (app_id, user_id, dimension) with
``version = changed_at * 2 + (segment == 'converted')``: per user and dimension changed_at never decreases in
decision order, and its one tie (a payment at 00:00 of the potential entry day) goes to ``converted``, the
later decision (docs/segments-wiring.md). So ``FINAL`` keeps the latest change whatever order the rows
arrive in. Both tables are written by two plain inserts rather than a materialized view: each insert has
its own deterministic ``insert_deduplication_token`` (a retried insert is not doubled), and a crash between
the two is repaired by the retry or the replay writing both again.

Every insert is bounded whatever the input: at most :data:`MAX_ROWS` rows and about :data:`MAX_BYTES`
bytes of strings (a batch is cut into as many inserts as needed)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from schemas.segments import SegmentChange
from sinks.base import BatchingSink, runs
from streams.config.clickhouse_dsn import qualified

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouse

CONVERTED = "converted"
MAX_ROWS = 50_000  # rows per insert (MAX_BYTES cuts a run of long evidence first)
MAX_BYTES = 4 << 20  # string bytes per insert (ids, segments, evidence), a row's own size beyond it aside
CHANGE_COLUMNS = ["app_id", "user_id", "dimension", "segment", "previous", "changed_at", "triggered_at",
                  "change_id", "evidence", "schema_version"]
CURRENT_COLUMNS = ["app_id", "user_id", "dimension", "segment", "changed_at", "version"]


def ddl(database: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS {qualified(database, 'segment_changes')} (
            app_id LowCardinality(String),
            user_id String,
            dimension LowCardinality(String),
            segment LowCardinality(String),
            previous LowCardinality(Nullable(String)),
            changed_at Int64,
            triggered_at Int64,
            change_id String,
            evidence String,
            schema_version UInt8
        ) ENGINE = ReplacingMergeTree
        ORDER BY (app_id, user_id, dimension, changed_at, segment)
        SETTINGS non_replicated_deduplication_window = 1000""",
        f"""CREATE TABLE IF NOT EXISTS {qualified(database, 'user_segments')} (
            app_id LowCardinality(String),
            user_id String,
            dimension LowCardinality(String),
            segment LowCardinality(String),
            changed_at Int64,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY (app_id, user_id, dimension)
        SETTINGS non_replicated_deduplication_window = 1000""",
    )


def version(change: SegmentChange) -> int:
    """``user_segments.version``: later decisions of a user's dimension get larger versions (see above)."""
    return max(change.changed_at, 0) * 2 + (change.segment == CONVERTED)


def chunks(rows: Sequence[tuple[SegmentChange, str]]) -> Iterator[Sequence[tuple[SegmentChange, str]]]:
    """``rows`` (a change and its evidence as JSON) cut into runs of at most MAX_ROWS rows and about
    MAX_BYTES bytes (a run holds at least one row)."""
    return runs(rows, _size, MAX_ROWS, MAX_BYTES)


def _size(row: tuple[SegmentChange, str]) -> int:
    c, evidence = row
    return len(c.app_id) + len(c.user_id) + len(c.segment) + len(c.previous or "") + len(evidence) + 64


def token(table: str, data: list[list[Any]]) -> str:
    """A deterministic ``insert_deduplication_token``: the same rows give the same token."""
    digest = hashlib.blake2b(table.encode(), digest_size=16)
    for column in data:
        digest.update(orjson.dumps(column))
    return digest.hexdigest()


class SegmentSink(BatchingSink[SegmentChange]):
    """Segment changes to ``segment_changes`` and ``user_segments``.

    The interface is :class:`sinks.base.BatchingSink`'s: ``add(change)`` / ``extend(changes)`` buffer (they
    raise ``SinkBackpressure`` beyond ``cap_rows``), ``flush()`` writes everything buffered and returns the
    rows written (raises ``SinkBackpressure``: the buffer stays, retry with ``flush_with_retry``; rows
    ClickHouse refuses on their own are kept for ``take_refused()``). Call ``flush()`` before committing
    the offsets whose events decided the changes; a flush written twice (a retry, a replay) leaves the
    tables as written once."""

    name = "segment_changes"

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def write(self, batch: Sequence[SegmentChange]) -> None:
        rows = [(c, orjson.dumps(c.evidence).decode()) for c in batch]
        for run in chunks(rows):
            changes: list[list[Any]] = [
                [c.app_id for c, _ in run],
                [c.user_id for c, _ in run],
                [c.dimension for c, _ in run],
                [c.segment for c, _ in run],
                [c.previous for c, _ in run],
                [c.changed_at for c, _ in run],
                [c.triggered_at for c, _ in run],
                [c.change_id for c, _ in run],
                [e for _, e in run],
                [c.schema_version for c, _ in run],
            ]
            self.ch.insert("segment_changes", CHANGE_COLUMNS, changes, token("segment_changes", changes))
            current: list[list[Any]] = [*changes[:4], changes[5], [version(c) for c, _ in run]]
            self.ch.insert("user_segments", CURRENT_COLUMNS, current, token("user_segments", current))
