"""Issue 23: inserts that cannot fail on the input's shape, on the real embedded ClickHouse (chdb).

Flushes spanning ten years of months are split by partition and read back exactly, once, also when
replayed; ClickHouse's errors are classified by their code, with the errors the engine really raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from schemas.time_units import DAY_MS
from sinks import native_format as native
from sinks.alerts import AlertSink
from sinks.base import RetryPolicy, SinkBackpressure, flush_with_retry
from sinks.clickhouse import ActivitySink, ClickHouse, RawMessage, RawSink
from sinks.columns import ActivityColumns, ActivityRow
from sinks.errors import ClickHouseRefused, Verdict, classify, error_code
from sinks.partitions import PARTITION_LIMIT_SETTING, first_day_of, next_month
from streams.ops.metrics import Metrics
from streams.worker.flush import Flusher

MONTHS = [201501]
while len(MONTHS) < 130:  # ten years and ten months
    MONTHS.append(next_month(MONTHS[-1]))


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouse]:
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    ch.ensure_schema()
    yield ch
    ch.close()


def activity_rows() -> list[ActivityRow]:
    """Two users on two days of each month, newest month first (a backfill's order is no help)."""
    rows: list[ActivityRow] = []
    for n, month in enumerate(reversed(MONTHS)):
        for user, offset in (("u1", 0), ("u2", 14)):
            day = first_day_of(month) + offset
            rows.append(("default", user, day, n + 1, 1, n % 3, 1_000_000 * n + 1, 0, n % 5, 0))
            rows.append(("shop", f"{user}-{month}", day + 1, 2, 0, 0, 0, 1, 0, 1))
    return rows


def read_activity(ch: ClickHouse) -> list[tuple[object, ...]]:
    return ch.query(
        "SELECT app_id, user_id, toUInt32(day), events, logins, payments, payment_amount, content_posts, social,"
        " complaints FROM vitals.user_activity_daily FINAL ORDER BY app_id, user_id, day"
    )


def expected_activity(rows: list[ActivityRow]) -> list[tuple[object, ...]]:
    return sorted((a, u, d, e, lo, p, Decimal(m).scaleb(-6), po, s, c) for a, u, d, e, lo, p, m, po, s, c in rows)


def count(ch: ClickHouse, table: str) -> int:
    """Rows stored, before any merge or FINAL: a duplicate insert would show here."""
    return int(ch.query(f"SELECT count() FROM vitals.{table}")[0][0])


class FailsOnce(ClickHouse):
    """The real engine, and one outage in the middle of a split flush: after ``after`` inserts."""

    def __init__(self, dsn: str, after: int) -> None:
        super().__init__(dsn)
        self.after = after
        self.inserts = 0

    def insert_native(self, table: str, columns: list[str], block: bytes, token: str, partitions: int = 1) -> None:
        self.inserts += 1
        if self.inserts == self.after + 1:
            raise SinkBackpressure(0.0)
        super().insert_native(table, columns, block, token, partitions)


def test_ten_years_of_activity_in_one_flush_read_back_exactly_once(tmp_path: Path) -> None:
    rows = activity_rows()
    ch = FailsOnce(f"chdb://{tmp_path / 'ch'}", after=1)  # the second of three inserts fails once
    try:
        sink = ActivitySink(ch, 10_000)
        chunks = [ActivityColumns.from_rows(rows[:100]), ActivityColumns.from_rows(rows[100:])]
        sink.extend(chunks)
        assert flush_with_retry(sink, RetryPolicy(), sleep=lambda s: None) == len(rows)
        assert ch.inserts == 5  # 130 months in 3 groups: 1 ok, 2 failed, then 1 (again), 2, 3
        assert read_activity(ch) == expected_activity(rows)
        assert count(ch, "user_activity_daily") == len(rows)  # the group sent twice was deduplicated
        assert ch.query("SELECT uniqExact(_partition_id) FROM vitals.user_activity_daily")[0][0] == 130
        sink.extend(chunks)  # a replay after a crash: the same batches again
        sink.flush()
        assert count(ch, "user_activity_daily") == len(rows)
        assert read_activity(ch) == expected_activity(rows)
    finally:
        ch.close()


def raw_batch() -> list[RawMessage]:
    """A backfill's messages with their original timestamps over 130 months, and the odd clock."""
    batch: list[RawMessage] = []
    for n, month in enumerate(MONTHS):
        for k in range(2):
            ts = (first_day_of(month) + 9 * k) * DAY_MS + 3_600_000 * k + n
            batch.append(("vitals.events", n % 4, 1000 + 2 * n + k, ts, f"u{n}".encode(), b'{"n":%d}' % n))
    batch.append(("vitals.events", 0, 5, -1, None, b"no timestamp"))  # stored as the epoch
    batch.append(("vitals.events", 1, 6, 253_402_300_799_999, b"k", None))  # 9999-12-31T23:59:59.999
    batch.append(("vitals.events", 2, 7, 2**63 - 1, b"k", b"\xff"))  # a producer's clock gone mad
    return batch[::-1]


def read_raw(ch: ClickHouse) -> list[tuple[object, ...]]:
    return ch.query("SELECT topic, partition, offset, toUnixTimestamp64Milli(timestamp), hex(key), hex(value) "
                    "FROM vitals.raw_messages FINAL ORDER BY partition, offset")


def test_ten_years_of_raw_messages_in_one_flush_read_back_exactly_once(ch: ClickHouse) -> None:
    batch = raw_batch()
    sink = RawSink(ch, 10_000)
    sink.extend(batch)
    assert sink.flush() == len(batch)
    expected = sorted((t, p, o, max(ts, 0), (k or b"").hex().upper(), (v or b"").hex().upper())
                      for t, p, o, ts, k, v in batch)
    assert read_raw(ch) == [tuple(r) for r in expected]
    assert count(ch, "raw_messages") == len(batch)
    sink.write(batch)  # a retried or replayed flush: the same inserts with the same tokens
    assert count(ch, "raw_messages") == len(batch)
    sink.write(batch[: len(batch) // 2])  # a replay cut elsewhere (other tokens): collapsed by FINAL
    assert read_raw(ch) == [tuple(r) for r in expected]


def test_an_insert_over_the_partition_limit_is_refused_not_retried(ch: ClickHouse) -> None:
    """What the split prevents, on the real engine: one block of 130 months, error 252."""
    columns = ActivityColumns.from_rows(activity_rows()).block_columns()
    block = native.block(len(activity_rows()), columns)
    with pytest.raises(ClickHouseRefused) as refused:
        ch.insert_native("user_activity_daily", [c[0] for c in columns], block, "t", partitions=130)
    assert (refused.value.code, refused.value.name, refused.value.table) == (252, "TOO_MANY_PARTS",
                                                                            "user_activity_daily")
    message = str(refused.value)
    assert "error 252 TOO_MANY_PARTS" in message and "vitals.user_activity_daily" in message
    assert f"max_partitions_per_insert_block = {PARTITION_LIMIT_SETTING}" in message
    assert refused.value.__cause__ is not None and getattr(refused.value.__cause__, "code", None) == 252


def test_too_many_parts_is_retried_and_passes_once_merges_catch_up(ch: ClickHouse) -> None:
    """The other error 252, on a one-partition insert: merges behind inserts, so a retry can pass."""
    client = ch.client()
    client.command("CREATE TABLE vitals.few_parts (x UInt64) ENGINE = MergeTree ORDER BY x "
                   "SETTINGS parts_to_throw_insert = 2, parts_to_delay_insert = 2")
    client.command("SYSTEM STOP MERGES vitals.few_parts")
    blocks = [native.block(1, [("x", "UInt64", native.uint64([n]))]) for n in range(3)]
    for n in range(2):
        ch.insert_native("few_parts", ["x"], blocks[n], f"t{n}")
    with pytest.raises(SinkBackpressure) as busy:
        ch.insert_native("few_parts", ["x"], blocks[2], "t2")
    assert error_code(busy.value.cause) == 252  # type: ignore[arg-type]
    assert classify(busy.value.cause, partitions=1) == Verdict(True, 252, "TOO_MANY_PARTS")  # type: ignore[arg-type]
    client.command("SYSTEM START MERGES vitals.few_parts")
    client.command("OPTIMIZE TABLE vitals.few_parts FINAL")
    ch.insert_native("few_parts", ["x"], blocks[2], "t2")
    assert ch.query("SELECT sum(x) FROM vitals.few_parts")[0][0] == 3


def test_timeouts_and_memory_limits_are_retriable_by_code(ch: ClickHouse) -> None:
    for sql, code, name in [
        ("SELECT sum(cityHash64(number)) FROM numbers(100000000000) SETTINGS max_execution_time = 0.05",
         159, "TIMEOUT_EXCEEDED"),
        ("SELECT length(groupArray(number)) FROM numbers(10000000) SETTINGS max_memory_usage = 10000000",
         241, "MEMORY_LIMIT_EXCEEDED"),
    ]:
        with pytest.raises(DatabaseError) as caught:
            ch.query(sql)
        assert caught.value.code == code  # clickhouse-connect's attribute, parsed from chdb's message
        assert classify(caught.value) == Verdict(True, code, name)


class Missing(RawSink):
    name = "no_such_table"


def test_a_missing_table_surfaces_at_once_through_the_flush(ch: ClickHouse) -> None:
    sink = Missing(ch, 100)
    sink.extend(raw_batch()[:3])
    metrics = Metrics()
    flusher = Flusher(metrics, ActivitySink(ch, 10), AlertSink(ch, 10), sink, producer_factory=lambda: None,  # type: ignore[arg-type,return-value]
                      tables=[], retry=RetryPolicy(), record=lambda out: None)
    with pytest.raises(ClickHouseRefused) as refused:
        flusher._flush_sink(sink)  # the sink thread's flush: no retry, the job fails (the worker exits 70)
    assert (refused.value.code, refused.value.name) == (60, "UNKNOWN_TABLE")
    assert "error 60 UNKNOWN_TABLE" in str(refused.value) and "vitals.no_such_table" in str(refused.value)
    assert "restart the worker" in str(refused.value)
    assert metrics.sink_retries.labels("no_such_table")._value.get() == 0
    assert sink.buffered == 3  # kept: the next worker replays them from the committed offsets


def test_rows_the_table_cannot_hold_are_refused_by_code(ch: ClickHouse) -> None:
    text_day = [("day", "String", native.strings(["not a date"]))]
    with pytest.raises(ClickHouseRefused) as refused:
        ch.insert_native("user_activity_daily", ["day"], native.block(1, text_day), "t")
    assert (refused.value.code, refused.value.name) == (38, "CANNOT_PARSE_DATE")
    assert "SHOW CREATE TABLE" in str(refused.value)
    unknown = [("no_such_column", "UInt64", native.uint64([1]))]
    with pytest.raises(ClickHouseRefused) as refused:
        ch.insert_native("user_activity_daily", ["no_such_column"], native.block(1, unknown), "t")
    assert refused.value.code == 16  # NO_SUCH_COLUMN_IN_TABLE


def test_a_broken_schema_statement_is_refused_at_startup(tmp_path: Path) -> None:
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    ch.extra_ddl = ("CREATE VIEW IF NOT EXISTS vitals.broken AS SELEC 1",)
    try:
        with pytest.raises(ClickHouseRefused) as refused:
            ch.ensure_schema()
        assert (refused.value.code, refused.value.name) == (62, "SYNTAX_ERROR")
    finally:
        ch.close()


def test_chdb_errors_carry_no_code_attribute_and_are_read_for_it(ch: ClickHouse) -> None:
    """chdb's own exception has only its message (chdb 4.4); clickhouse-connect parses the code
    into ``.code``, and :func:`error_code` does the same only for a chdb exception that reaches it
    unwrapped."""
    with pytest.raises(DatabaseError) as wrapped:
        ch.query("SELECT * FROM vitals.no_such_table")
    raw = wrapped.value.__cause__
    assert (type(raw).__module__, type(raw).__name__) == ("chdb._exceptions", "ChdbError")
    assert isinstance(raw, RuntimeError)
    assert not hasattr(raw, "code")
    assert error_code(raw) == 60 and error_code(wrapped.value) == 60  # type: ignore[arg-type]
    assert classify(raw).code == 60 and not classify(raw).retriable  # type: ignore[arg-type]
