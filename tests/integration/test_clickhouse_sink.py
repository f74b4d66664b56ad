"""The activity and raw sinks' Native-format inserts, read back from the real ClickHouse engine (chdb)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sinks.clickhouse import ActivitySink, ClickHouse, RawSink
from sinks.columns import ActivityColumns
from sinks.native_format import byte_strings, leb128, same_strings, strings

ROWS = [
    # app, user, day, events, logins, payments, amount micros, posts, social, complaints
    ("default", "u1", 20_454, 3, 1, 1, 12_500_000, 0, 2, 0),
    ("shop", "ü-ß-用户", 0, 1, 0, 0, 0, 0, 0, 1),  # non-ASCII, the epoch
    ("default", "x" * 300, 49_000, 2**40, 7, 2, 1, 3, 4, 5),  # a two-byte length, one micro
    ("default", "big", 20_000, 9, 0, 9, (2**63 - 1), 0, 0, 0),  # the largest amount an Int64 holds
    ("default", "refund", 20_000, 1, 0, 1, -2_000_001, 0, 0, 0),
]


@pytest.fixture
def ch(tmp_path: Path) -> ClickHouse:
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    ch.ensure_schema()
    return ch


def read(ch: ClickHouse) -> list[tuple[object, ...]]:
    return ch.query(
        "SELECT app_id, user_id, toUInt32(day), events, logins, payments, payment_amount, content_posts, social,"
        " complaints, version FROM vitals.user_activity_daily FINAL ORDER BY user_id"
    )


def test_rows_read_back_exactly(ch: ClickHouse) -> None:
    sink = ActivitySink(ch, 100)
    sink.write([ActivityColumns.from_rows(ROWS[:2]), ActivityColumns.from_rows(ROWS[2:])])  # two chunks
    expected = sorted(
        (a, u, d, e, lo, p, Decimal(m).scaleb(-6), po, s, c, e) for a, u, d, e, lo, p, m, po, s, c in ROWS
    )
    assert sorted(read(ch), key=lambda r: r[1]) == sorted(expected, key=lambda r: r[1])


def test_rewrites_keep_one_row_with_the_highest_version(ch: ClickHouse) -> None:
    sink = ActivitySink(ch, 100)
    sink.write([ActivityColumns.from_rows(ROWS[:1])])
    sink.write([ActivityColumns.from_rows(ROWS[:1])])  # a retried insert: deduplicated by its token
    assert ch.query("SELECT count() FROM vitals.user_activity_daily")[0][0] == 1
    later = (*ROWS[0][:3], 5, *ROWS[0][4:])
    sink.write([ActivityColumns.from_rows([later])])
    sink.write([ActivityColumns.from_rows(ROWS[:1])])  # a stale re-write after a replay loses to the later version
    assert [r[3] for r in read(ch)] == [5]


def test_leb128() -> None:
    assert [leb128(n) for n in (0, 1, 127, 128, 300, 2**21)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\x80\x80\x80\x01"
    ]


def test_byte_strings_lengths() -> None:
    values = [b"", b"a", b"x" * 127, b"y" * 128, b"z" * 16_383, b"w" * 16_384, bytes(range(256)) * 300]
    assert byte_strings(values) == b"".join(leb128(len(v)) + v for v in values)
    topics = ["vitals.events", "t" * 200, "vitals.events", "ü"]
    assert same_strings(topics) == strings(topics)


def test_raw_messages_read_back_byte_for_byte_once(ch: ClickHouse) -> None:
    """Any bytes (not UTF-8, NUL, long), keys or none; a retried insert and a replayed message
    leave one row per (topic, partition, offset) under FINAL."""
    batch = [
        ("vitals.events", 0, 7, 1_767_225_600_123, b"u1", b'[{"event_id":"a"}]'),
        ("vitals.events", 3, 2**40, 0, None, b"\xff\xfe not utf-8 \x00"),
        ("vitals.events", 1, 0, 1_767_225_600_000, b"k" * 300, b"v" * 70_000),
        ("vitals.events", 2, 5, 1_767_225_600_000, b"u2", None),
    ]
    sink = RawSink(ch, 100)
    sink.write(batch)
    sink.write(batch)  # a retried insert: deduplicated by its token
    sink.write(batch[:1] + batch[2:])  # a replay after a crash: collapsed by FINAL
    got = ch.query("SELECT topic, partition, offset, toUnixTimestamp64Milli(timestamp), hex(key), hex(value) "
                   "FROM vitals.raw_messages FINAL ORDER BY partition")
    assert got == sorted(((t, p, o, ts, (k or b"").hex().upper(), (v or b"").hex().upper())
                          for t, p, o, ts, k, v in batch), key=lambda r: r[1])


def test_outcome_rows_sum_in_the_view_and_a_rewritten_key_replaces_the_lost_row(ch: ClickHouse) -> None:
    """event_outcome_flushes (sinks/outcomes.py): the view sums every row's entries; a row written again
    under its (partition, seq) with a higher version (the restarted worker's first flush) replaces the
    lost flush's row, entries it no longer holds included; a retried insert counts once."""
    from sinks.outcomes import LAST_DAY, OutcomeRow, OutcomeSink
    from sinks.views import ensure_views

    ensure_views(ch)
    sink = OutcomeSink(ch, 100)
    lost = OutcomeRow(0, 1, 5, 10, -1, ((("shop", 20_000, "accepted", ""), 3),
                                       (("", 20_001, "invalid", "not_json"), 2)))
    other = OutcomeRow(1, 1, 5, 10, -1, ((("shop", 20_000, "accepted", ""), 4),
                                        (("", LAST_DAY, "invalid", "bad_ts"), 1)))
    sink.write([lost, other])
    sink.write([lost, other])  # retried: deduplicated by its token
    sink.write([OutcomeRow(0, 1, 6, 8, -1, ((("shop", 20_000, "accepted", ""), 2),))])
    assert sorted(ch.query("SELECT app_id, toString(day), outcome, reason, events FROM vitals.event_outcomes")) == [
        ("", "2149-06-06", "invalid", "bad_ts", 1), ("shop", "2024-10-04", "accepted", "", 6)]
