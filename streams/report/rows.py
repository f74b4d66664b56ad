"""A query's rows printed for people and for programs (``vitals query``), and its error in one line.

* ``table``: aligned columns under a header, numbers to the right, then the row count;
* ``jsonl``: one JSON object per row, column names as keys in the query's order (a name that occurs
  twice occurs twice in the object, as in ClickHouse's ``JSONEachRow``);
* ``csv`` / ``tsv``: a header line, then the rows.

Values keep their JSON types in ``jsonl`` (dates as ISO text, decimals as strings so nothing is
rounded); elsewhere they are text, ``NULL`` for a null in a table, empty in CSV/TSV.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import orjson

FORMATS = ("table", "jsonl", "csv", "tsv")

_FOR_URL = re.compile(r"\s*\(for url [^)]*\)\s*$")
_VERSION = re.compile(r"\s*\(version\s+(?:[^()]|\([^()]*\))*\)\s*$")
_NAME = re.compile(r"\s*\(([A-Z][A-Z0-9_]+)\)\s*$")


def _json(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def jsonl_line(names: Sequence[str], row: Sequence[Any]) -> str:
    """One row as a JSON object (built by hand: a repeated column name stays, as ClickHouse writes it)."""
    return "{" + ",".join(f"{_json(n).decode()}:{_json(v).decode()}" for n, v in zip(names, row, strict=True)) + "}"


def text(value: Any, null: str = "NULL") -> str:
    """A value as one line of text."""
    if value is None:
        return null
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    if isinstance(value, bool | int | float | Decimal | date | datetime):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return _json(value).decode()  # arrays, tuples, maps, UUIDs


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in present)


def table(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of an aligned table: header, rule, rows, and the row count."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    cells = [[text(v) for v in column] for column in columns]
    widths = [max([len(name), *(len(c) for c in column)]) for name, column in zip(names, cells, strict=True)]
    right = [_numeric(column) for column in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w)
                         for v, w, r in zip(values, widths, right, strict=True)).rstrip()

    out = [line(list(names)), "  ".join("-" * w for w in widths)]
    out += [line([column[i] for column in cells]) for i in range(len(rows))]
    out.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return out


def write(fmt: str, names: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Write the rows in one of :data:`FORMATS`."""
    if fmt == "table":
        out.write("\n".join(table(names, rows)) + "\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(jsonl_line(names, row) + "\n")
    elif fmt in ("csv", "tsv"):
        writer = csv.writer(out, dialect="excel" if fmt == "csv" else "excel-tab", lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([text(v, null="") if not isinstance(v, str) else v for v in row])
    else:
        raise ValueError(f"unknown format {fmt!r}")


def error_line(exc: BaseException) -> str:
    """A ClickHouse error (clickhouse-connect's ``DatabaseError``, whichever client raised it) as one line:
    the server's message, its first line, without the client's wrapping, then the code and its name."""
    message = str(exc)
    at = message.rfind("DB::Exception: ")  # the server's message (an HTTP client's error wraps it)
    first = (message[at + len("DB::Exception: "):] if at >= 0 else message).strip().splitlines()
    line, name = first[0] if first else type(exc).__name__, getattr(exc, "name", None)
    while True:  # the client's and the server's trailers: url, version, (NAME), as often as they repeat
        shorter = _VERSION.sub("", _FOR_URL.sub("", line)).rstrip(" .")
        if match := _NAME.search(shorter):
            name, shorter = name or match.group(1), shorter[:match.start()].rstrip(" .")
        if shorter == line:
            break
        line = shorter
    code = getattr(exc, "code", None)
    tag = ", ".join(str(part) for part in (f"code {code}" if code is not None else None, name) if part)
    return line + (f" ({tag})" if tag else "")
