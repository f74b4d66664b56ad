"""ClickHouse errors classified by code (sinks/errors.py), on clickhouse-connect's own exception
classes; the errors the engine really raises are in tests/integration/test_clickhouse_partitions.py."""

from __future__ import annotations

import urllib.error

from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError, ProgrammingError

from sinks.errors import NOT_RETRIABLE, RETRIABLE, ClickHouseRefused, Verdict, classify, error_code
from sinks.partitions import MAX_PARTITIONS, PARTITION_LIMIT_SETTING


def test_retriable_codes_by_code_whatever_the_text() -> None:
    for code, name in [(159, "TIMEOUT_EXCEEDED"), (202, "TOO_MANY_SIMULTANEOUS_QUERIES"), (209, "SOCKET_TIMEOUT"),
                       (241, "MEMORY_LIMIT_EXCEEDED"), (252, "TOO_MANY_PARTS"), (319, "UNKNOWN_STATUS_OF_INSERT")]:
        exc = DatabaseError("Code: 62. Syntax error (SYNTAX_ERROR)", code=code)  # the code decides, not the text
        assert classify(exc) == Verdict(True, code, name)
    assert classify(OperationalError("Network Error")) == Verdict(True, None, "OperationalError")
    assert classify(DatabaseError("HTTP driver received HTTP status 503")).retriable  # no ClickHouse code
    assert classify(ConnectionResetError()).retriable


def test_codes_that_cannot_pass_name_the_code_and_what_to_do() -> None:
    for code, name in [(60, "UNKNOWN_TABLE"), (53, "TYPE_MISMATCH"), (516, "AUTHENTICATION_FAILED"),
                       (497, "ACCESS_DENIED"), (452, "SETTING_CONSTRAINT_VIOLATION")]:
        verdict = classify(DatabaseError("Timeout exceeded, retry later", code=code))
        assert (verdict.retriable, verdict.code, verdict.name) == (False, code, name)
        message = str(ClickHouseRefused("an insert into vitals.t", verdict, "t"))
        assert f"error {code} {name}" in message and "vitals.t" in message and verdict.advice in message
    unknown = classify(DatabaseError("?", code=1234, name="SOMETHING_NEW"))
    assert (unknown.retriable, unknown.name) == (False, "SOMETHING_NEW")  # seen at once, not retried for ever
    assert not classify(DataError("cannot serialize")).retriable
    assert not classify(ProgrammingError("bad column")).retriable
    assert not classify(TypeError("a bug")).retriable
    assert not set(RETRIABLE) & set(NOT_RETRIABLE)


def test_too_many_parts_per_insert_block_is_told_by_the_partitions_the_insert_touched() -> None:
    exc = DatabaseError("", code=252)
    assert MAX_PARTITIONS < PARTITION_LIMIT_SETTING  # the sinks' inserts stay within what they send
    assert classify(exc, partitions=1).retriable  # merges behind: parts_to_throw_insert
    assert classify(exc, partitions=PARTITION_LIMIT_SETTING).retriable
    over = classify(exc, partitions=PARTITION_LIMIT_SETTING + 1)
    assert (over.retriable, over.code, over.name) == (False, 252, "TOO_MANY_PARTS")
    assert "max_partitions_per_insert_block" in over.advice


def test_the_code_is_read_along_the_cause_chain_and_never_from_an_http_status() -> None:
    try:
        try:
            raise DatabaseError("", code=60)
        except DatabaseError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert error_code(outer) == 60
    http = urllib.error.HTTPError("http://x", 503, "unavailable", None, None)  # type: ignore[arg-type]
    assert error_code(http) is None
    assert error_code(RuntimeError("Code: 60. DB::Exception: not from chdb")) is None  # no text outside chdb
