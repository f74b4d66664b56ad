"""``vitals query``'s output (streams/report/rows.py): the aligned table, JSON lines with column names,
CSV/TSV; a ClickHouse error in one line, from either client's exception (classified by type, the code
from ``.code``)."""

from __future__ import annotations

import io
import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from streams.report import rows


def render(fmt: str, names: list[str], data: list[tuple[object, ...]]) -> str:
    out = io.StringIO()
    rows.write(fmt, names, data, out)
    return out.getvalue()


def test_table_aligns_columns_under_a_header_numbers_right() -> None:
    text = render("table", ["app_id", "events", "amount"],
                  [("shop", 12, Decimal("1.50")), ("default", 3, None)])
    assert text.splitlines() == [
        "app_id   events  amount",
        "-------  ------  ------",
        "shop         12    1.50",
        "default       3    NULL",
        "(2 rows)",
    ]


def test_table_of_no_rows_and_awkward_text() -> None:
    assert render("table", ["a", "bb"], []).splitlines() == ["a  bb", "-  --", "(0 rows)"]
    text = render("table", ["s"], [("two\nlines\tand tab",)])
    assert text.splitlines()[2] == "two\\nlines\\tand tab" and text.splitlines()[-1] == "(1 row)"


def test_jsonl_is_one_object_per_row_with_the_column_names() -> None:
    text = render("jsonl", ["day", "n", "amount", "ids", "none"],
                  [(date(2026, 1, 2), 7, Decimal("12.500000"), ["a", "b"], None)])
    assert text == '{"day":"2026-01-02","n":7,"amount":"12.500000","ids":["a","b"],"none":null}\n'
    assert json.loads(text) == {"day": "2026-01-02", "n": 7, "amount": "12.500000", "ids": ["a", "b"], "none": None}


def test_jsonl_keeps_a_repeated_column_name_as_clickhouse_does() -> None:
    text = render("jsonl", ["1", "1"], [(1, 2)])
    assert text == '{"1":1,"1":2}\n'
    assert json.loads(text, object_pairs_hook=lambda pairs: [v for _, v in pairs]) == [1, 2]


def test_csv_and_tsv_have_a_header_line() -> None:
    assert render("csv", ["a", "b", "t"], [(1, "x,y", datetime(2026, 1, 2, 3, 4, 5)), (None, "", None)]) == (
        'a,b,t\n1,"x,y",2026-01-02 03:04:05\n,,\n')
    assert render("tsv", ["a", "b"], [(1, "x")]) == "a\tb\n1\tx\n"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        render("xml", ["a"], [(1,)])


def test_error_line_from_the_http_client() -> None:
    exc = DatabaseError(
        "Received ClickHouse exception, code: 62, server response: Code: 62. DB::Exception: Syntax error: failed "
        "at position 7 (1) (line 1, col 7): 1\n FORMAT Native. Expected one of: token sequence. (SYNTAX_ERROR) "
        "(version 26.9.2.1) (for url http://127.0.0.1:4242)", code=62, name="SYNTAX_ERROR")
    assert rows.error_line(exc) == (
        "Syntax error: failed at position 7 (1) (line 1, col 7): 1 (code 62, SYNTAX_ERROR)")


def test_error_line_from_the_embedded_client() -> None:
    exc = DatabaseError("Code: 60. DB::Exception: Unknown table expression identifier 'nope'. In scope SELECT * "
                        "FROM nope. (UNKNOWN_TABLE)", code=60, name="UNKNOWN_TABLE")
    assert rows.error_line(exc) == (
        "Unknown table expression identifier 'nope'. In scope SELECT * FROM nope (code 60, UNKNOWN_TABLE)")


def test_error_line_nested_exception_and_single_line_url() -> None:
    exc = DatabaseError("Received ClickHouse exception, code: 164, server response: Code: 164. DB::Exception: "
                        "Code: 164. DB::Exception: Cannot modify 'readonly' setting in readonly mode. (READONLY) "
                        "(version 26.9.2.1). (READONLY) (for url http://127.0.0.1:1)", code=164, name="READONLY")
    assert rows.error_line(exc) == "Cannot modify 'readonly' setting in readonly mode (code 164, READONLY)"


def test_error_line_without_a_code() -> None:
    exc = OperationalError("Error HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded executing "
                           "HTTP request attempt 1 (http://127.0.0.1:1)")
    line = rows.error_line(exc)
    assert "\n" not in line and line.startswith("Error HTTPConnectionPool") and "code" not in line
