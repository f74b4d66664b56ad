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
from operator import attrgetter
from typing import TYPE_CHECKING

import orjson

from schemas.segments import SegmentChange
from sinks import native_format as native
from sinks.base import BatchingSink, runs
from streams.config.clickhouse_dsn import qualified

if TYPE_CHECKING:
    from sinks.clickhouse import ClickHouse

CONVERTED = "converted"
MAX_ROWS = 50_000  # rows per insert (MAX_BYTES cuts a run of long evidence first)
MAX_BYTES = 4 << 20  # string bytes per insert (ids, segments, evidence), a row's own size beyond it aside


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


def versions(changed_at: Sequence[int], segments: Sequence[str]) -> list[int]:
    """``user_segments.version`` of each change: later decisions of a user's dimension get larger versions (see
    above)."""
    return [max(t, 0) * 2 + (s == CONVERTED) for t, s in zip(changed_at, segments, strict=True)]


def chunks(rows: Sequence[tuple[SegmentChange, bytes]]) -> Iterator[Sequence[tuple[SegmentChange, bytes]]]:
    """``rows`` (a change and its evidence as JSON) cut into runs of at most MAX_ROWS rows and about
    MAX_BYTES bytes (a run holds at least one row)."""
    return runs(rows, _size, MAX_ROWS, MAX_BYTES)


def _size(row: tuple[SegmentChange, bytes]) -> int:
    c, evidence = row
    return len(c.app_id) + len(c.user_id) + len(c.segment) + len(c.previous or "") + len(evidence) + 64


_STRINGS = tuple(map(attrgetter, ("app_id", "user_id", "segment")))
_PREVIOUS = attrgetter("previous")


def _total_size(batch: Sequence[SegmentChange], evidence: Sequence[bytes]) -> int:
    """``_size`` summed over the rows, without a Python call per row."""
    strings = sum(sum(map(len, map(get, batch))) for get in _STRINGS)
    return strings + sum(map(len, filter(None, map(_PREVIOUS, batch)))) + sum(map(len, evidence)) + 64 * len(batch)


def nullable_strings(values: Sequence[str | None]) -> bytes:
    """``Nullable(String)`` of few distinct values: the null map, then every value ("" where null)."""
    return bytes([v is None for v in values]) + native.same_strings([v or "" for v in values])


class SegmentSink(BatchingSink[SegmentChange]):
    """Segment changes to ``segment_changes`` and ``user_segments``.

    The interface is :class:`sinks.base.BatchingSink`'s: ``add(change)`` / ``extend(changes)`` buffer (they
    raise ``SinkBackpressure`` beyond ``cap_rows``), ``flush()`` writes everything buffered and returns the
    rows written (raises ``SinkBackpressure``: the buffer stays, retry with ``flush_with_retry``; rows
    ClickHouse refuses on their own are kept for ``take_refused()``). Call ``flush()`` before committing
    the offsets whose events decided the changes; a flush written twice (a retry, a replay) leaves the
    tables as written once.

    Each run of rows goes as two Native-format blocks (:mod:`sinks.native_format`; the server turns their
    ``String`` columns into the tables' ``LowCardinality`` ones), the columns both tables share encoded once,
    each insert's ``insert_deduplication_token`` the BLAKE2b digest of its block: the same rows, the same
    token."""

    name = "segment_changes"

    def __init__(self, ch: ClickHouse, cap_rows: int) -> None:
        super().__init__(cap_rows)
        self.ch = ch

    def write(self, batch: Sequence[SegmentChange]) -> None:
        evidence = [orjson.dumps(c.evidence) for c in batch]
        if len(batch) <= MAX_ROWS and _total_size(batch, evidence) <= MAX_BYTES:
            self._insert(batch, evidence)  # the usual flush: one run
            return
        for run in chunks(list(zip(batch, evidence, strict=True))):
            self._insert([c for c, _ in run], [e for _, e in run])

    def _insert(self, run: Sequence[SegmentChange], evidence: Sequence[bytes]) -> None:
        n = len(run)
        changed_at = [c.changed_at for c in run]
        segments = [c.segment for c in run]
        shared: list[native.Column] = [
            ("app_id", "String", native.same_strings([c.app_id for c in run])),
            ("user_id", "String", native.strings([c.user_id for c in run])),
            ("dimension", "String", native.same_strings([c.dimension for c in run])),
            ("segment", "String", native.same_strings(segments)),
        ]
        changed = ("changed_at", "Int64", native.int64(changed_at))
        changes = [*shared, ("previous", "Nullable(String)", nullable_strings([c.previous for c in run])), changed,
                   ("triggered_at", "Int64", native.int64([c.triggered_at for c in run])),
                   ("change_id", "String", native.strings([c.change_id for c in run])),
                   ("evidence", "String", native.byte_strings(evidence)),
                   ("schema_version", "UInt8", native.uint8([c.schema_version for c in run]))]
        current = [*shared, changed, ("version", "UInt64", native.uint64(versions(changed_at, segments)))]
        for table, columns in (("segment_changes", changes), ("user_segments", current)):
            block = native.block(n, columns)
            token = hashlib.blake2b(block, digest_size=16, person=table.encode()[:16]).hexdigest()
            self.ch.insert_native(table, [name for name, _, _ in columns], block, token)
