"""Rows a sink can never write (sinks/base.py, sinks/errors.py, streams/worker/refusals.py), without I/O: a
refusal about some rows is narrowed to them by halving the batch and the rest written; one about
the table stops the worker (streams/ops/supervisor.py), not restarted."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import jsonschema
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError

from schemas import SCHEMA_DIR
from schemas.alerts import Alert
from sinks.base import (
    BatchingSink,
    Refused,
    RetryPolicy,
    SinkBackpressure,
    SinkInvalid,
    TooManyRefused,
    flush_with_retry,
)
from sinks.clickhouse import ActivitySink
from sinks.columns import ActivityColumns, ActivityRow
from sinks.errors import ROW_REFUSALS, ClickHouseRefused, classify
from streams.engine import extensions
from streams.engine.partition import activity_columns
from streams.engine.state import UserState
from streams.engine.store import StateStore
from streams.ops.exit_codes import REFUSED as EXIT_REFUSED
from streams.worker.refusals import MAX_DATE_DAY, DateOutOfRange, Refusals, activity_block

SCHEMA = json.loads((SCHEMA_DIR / "dlq.schema.json").read_text())


def refused_by_constraint(what: str = "an insert into vitals.t") -> ClickHouseRefused:
    return ClickHouseRefused(what, classify(DatabaseError("Code: 469. VIOLATED_CONSTRAINT", code=469)), "t")


class Picky(BatchingSink[int]):
    """A sink that refuses every batch holding one of ``bad``, as ClickHouse refuses an insert with
    a row that violates a constraint (all or nothing)."""

    name = "picky"

    def __init__(self, bad: set[int], error: SinkInvalid | None = None) -> None:
        super().__init__(cap_rows=10_000)
        self.bad = bad
        self.error = error
        self.written: list[int] = []
        self.writes = 0
        self.outage_at: int | None = None  # the write number that meets an outage once

    def write(self, batch: Sequence[int]) -> None:
        self.writes += 1
        if self.writes == self.outage_at:
            self.outage_at = None
            raise SinkBackpressure(0.0)
        if self.bad & set(batch):
            raise self.error or refused_by_constraint()
        self.written.extend(batch)


def test_the_rows_refused_are_found_by_halving_and_the_others_written() -> None:
    sink = Picky({3, 11})
    sink.extend(list(range(16)))
    assert sink.flush() == 14
    assert sorted(sink.written) == [r for r in range(16) if r not in (3, 11)]
    refused = sink.take_refused()
    assert [list(r.batch) for r in refused] == [[3], [11]]
    assert all(r.error.about_rows and r.error.code == 469 for r in refused)
    assert sink.writes <= 1 + 2 * 2 * 4  # per refused row, two writes per level of halving
    assert sink.take_refused() == [] and sink.buffered == 0
    clean = Picky(set())
    clean.extend([1, 2, 3])
    assert clean.flush() == 3 and clean.writes == 1 and clean.take_refused() == []  # one insert, as before


def test_a_refusal_about_the_table_is_raised_and_the_buffer_kept() -> None:
    missing = ClickHouseRefused("an insert into vitals.t", classify(DatabaseError("", code=60)), "t")
    assert not missing.about_rows
    sink = Picky({0}, missing)
    sink.extend([0, 1, 2])
    with pytest.raises(ClickHouseRefused):
        sink.flush()
    assert sink.writes == 1 and sink.buffered == 3 and sink.take_refused() == []


def test_more_rows_refused_than_the_limit_is_the_tables_refusal() -> None:
    sink = Picky(set(range(100)))
    sink.max_refused = 10
    sink.extend(list(range(100)))
    with pytest.raises(TooManyRefused) as raised:
        sink.flush()
    assert not raised.value.about_rows and raised.value.name == "VIOLATED_CONSTRAINT"
    assert sink.buffered == 100 and sink.take_refused() == []


def test_an_outage_while_halving_retries_the_whole_batch_and_finds_each_refused_row_once() -> None:
    sink = Picky({5})
    sink.outage_at = 3  # during the halving
    sink.extend(list(range(8)))
    assert flush_with_retry(sink, RetryPolicy(0.0, 0.0), sleep=lambda s: None) == 7
    assert [list(r.batch) for r in sink.take_refused()] == [[5]]
    assert set(sink.written) == set(range(8)) - {5}  # rows written before the outage, again: idempotent tables


ROW: ActivityRow = ("default", "u1", 20_454, 3, 1, 1, 12_500_000, 0, 2, 0)


class Activity(ActivitySink):
    """The activity sink's halving (by rows, across buffered chunks) with a fake insert."""

    def __init__(self, bad_user: str) -> None:
        super().__init__(None, 10_000)  # type: ignore[arg-type]
        self.bad_user = bad_user
        self.written: list[ActivityRow] = []

    def write(self, batch: Sequence[ActivityColumns]) -> None:
        rows = ActivityColumns.join(batch).to_rows()
        if any(r[1] == self.bad_user for r in rows):
            raise refused_by_constraint("an insert into vitals.user_activity_daily")
        self.written += rows


def test_activity_rows_are_halved_by_row_across_the_chunks_buffered() -> None:
    rows = [(*ROW[:1], f"u{i}", *ROW[2:]) for i in range(5)]
    sink = Activity("u3")
    sink.add(ActivityColumns.from_rows(rows[:3]))
    sink.add(ActivityColumns.from_rows(rows[3:]))
    assert sink.flush() == 4
    assert sorted(sink.written) == sorted(r for r in rows if r[1] != "u3")
    (refused,) = sink.take_refused()
    assert ActivityColumns.join(refused.batch).to_rows() == [rows[3]]


def test_refusals_about_rows_are_told_by_code_or_by_the_clients_data_error() -> None:
    for code, name in ROW_REFUSALS.items():
        verdict = classify(DatabaseError("Code: 60. UNKNOWN_TABLE", code=code))  # the code decides
        assert (verdict.retriable, verdict.about_rows, verdict.name) == (False, True, name)
    assert classify(DataError("Unable to create native array for column `day`")).about_rows
    for code in (60, 81, 53, 497, 516, 452):  # the table, its schema, the credentials, the grants
        assert not classify(DatabaseError("", code=code)).about_rows
    message = str(refused_by_constraint())
    assert "error 469 VIOLATED_CONSTRAINT" in message and "dead-lettered" in message


def dirty_store(rows: list[ActivityRow]) -> tuple[dict[tuple[bytes, int, str, str, int], None], StateStore]:
    store = StateStore({})
    dirty: dict[tuple[bytes, int, str, str, int], None] = {}
    for app, user, day, *counters in rows:
        key = f"{app}\x1f{user}".encode()
        store.dirty.setdefault(key, UserState(0, days={})).days[day] = tuple(counters)  # type: ignore[assignment]
        dirty[(key, day, app, user, 0)] = None
    return dirty, store


@pytest.mark.parametrize("native", [False, True] if extensions.BUILT else [False])
def test_a_day_no_clickhouse_date_holds_is_refused_before_the_insert(native: bool) -> None:
    far = (ROW[0], "u2", MAX_DATE_DAY + 20_000, *ROW[3:])  # year 2204: a clock as far as its record's
    dirty, store = dirty_store([ROW, far, (ROW[0], "u3", MAX_DATE_DAY, *ROW[3:])])
    block, refused = activity_block(dirty, {0: store}, lambda d, s: activity_columns(d, s, native))
    assert [r[1] for r in block.to_rows()] == ["u1", "u3"]  # 2149-06-06 is still a Date
    (only,) = refused
    assert list(only.batch) == [far] and isinstance(only.error, DateOutOfRange)
    assert (only.error.code, only.error.name) == (None, "DATE_OUT_OF_RANGE")
    dirty, store = dirty_store([ROW])
    assert activity_block(dirty, {0: store}, lambda d, s: activity_columns(d, s, native))[1] == []


def test_refused_rows_become_dead_letters_naming_the_table_the_error_and_the_source_offsets() -> None:
    refusals = Refusals("t.dlq", ("t.events", "t-reroute"), "t-device-obs", user_home=lambda u: 3,
                        device_home=lambda d: 7)
    alert = Alert("a1", "open", "fake.device_farm", None, "shop", None, "dev9", ["u1"], 0, 0, {})
    ranges = {("t.events", 3): (40, 99), ("t-reroute", 3): (5, 6), ("t.events", 4): (0, 9),
              ("t-device-obs", 7): (1, 2)}
    cases: list[tuple[str, Any]] = [
        ("user_activity_daily", ActivityColumns.from_rows([ROW])),
        ("alerts", alert),
        ("raw_messages", ("t.events", 4, 8, 1_700_000_000_000, b"u1", b'{"not": "an event"}')),
        ("late_events", ("default", "u1", 19_000, 123, (1, 0, 1, 2_500_000, 0, 0, 0))),
    ]
    records = refusals.records([(t, Refused([row], refused_by_constraint())) for t, row in cases], ranges, 1)
    docs = []
    for (topic, partition, key, value), (table, _) in zip(records, cases, strict=True):
        doc = orjson.loads(value)
        jsonschema.validate(doc, SCHEMA)
        assert topic == "t.dlq" and doc["reason"] == "sink_refused"
        assert doc["sink"] == {"table": table, "code": 469, "name": "VIOLATED_CONSTRAINT"}
        assert partition == doc["source"]["partition"]
        docs.append((key, doc))
    (k0, activity), (k1, farm), (k2, raw), (_, late) = docs
    assert k0 == b"u1"
    assert activity["source"] | {"topic": "t.events", "partition": 3, "offset": 99} == activity["source"]
    assert activity["source_offsets"] == [{"topic": "t.events", "partition": 3, "first": 40, "last": 99},
                                          {"topic": "t-reroute", "partition": 3, "first": 5, "last": 6}]
    row = orjson.loads(base64.b64decode(activity["original_b64"]))
    assert row == {"app_id": "default", "user_id": "u1", "day": "2026-01-01", "events": 3, "logins": 1,
                   "payments": 1, "payment_amount": "12.500000", "content_posts": 0, "social": 2, "complaints": 0}
    assert farm["source"]["topic"] == "t-device-obs" and farm["source"]["offset"] == 2 and k1 == b"dev9"
    assert raw["source"] | {"topic": "t.events", "partition": 4, "offset": 8} == raw["source"] and k2 == b"u1"
    assert base64.b64decode(raw["original_b64"]) == b'{"not": "an event"}'  # the message as it came
    assert orjson.loads(base64.b64decode(late["original_b64"]))["payment_amount"] == "2.500000"


def test_the_supervisor_does_not_restart_a_worker_that_clickhouse_refuses() -> None:
    code = f"import sys; print('ran', flush=True); sys.exit({EXIT_REFUSED})"
    done = subprocess.run([sys.executable, "-P", "-c", "import sys; from streams.ops.supervisor import supervise; "
                           f"sys.exit(supervise([sys.executable, '-I', '-c', {code!r}]))"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_REFUSED
    assert done.stdout.count("ran") == 1 and "starting a new one" not in done.stderr
