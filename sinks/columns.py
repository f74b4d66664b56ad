"""A flush's activity rows column by column, already in ClickHouse's Native encoding.

The flush job builds them once (in C with the engine's extension, else :meth:`ActivityColumns.from_rows`)
and the activity sink only joins the chunks it holds into one block: no Python object per row
between the state and the insert.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sinks import native_format as native

# (app_id, user_id, day number, events, logins, payments, amount_micros, posts, social, complaints)
ActivityRow = tuple[str, str, int, int, int, int, int, int, int, int]

# the table's columns, in the order of an ActivityRow (``version`` is written from ``events``)
ACTIVITY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("app_id", "String"),
    ("user_id", "String"),
    ("day", "Date"),
    ("events", "UInt64"),
    ("logins", "UInt64"),
    ("payments", "UInt64"),
    ("payment_amount", "Decimal(38, 6)"),
    ("content_posts", "UInt64"),
    ("social", "UInt64"),
    ("complaints", "UInt64"),
)
# each column's encoder, in ACTIVITY_COLUMNS' order
_ENCODE: tuple[Callable[[Sequence[Any]], bytes], ...] = (
    native.strings, native.strings, native.date, *(native.uint64,) * 3, native.decimal128, *(native.uint64,) * 3)


@dataclass(frozen=True, slots=True)
class ActivityColumns:
    """``rows`` activity rows as the encoded values of each of :data:`ACTIVITY_COLUMNS`."""

    rows: int
    values: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(ACTIVITY_COLUMNS):
            raise ValueError(f"{len(ACTIVITY_COLUMNS)} columns expected, got {len(self.values)}")

    def __len__(self) -> int:
        return self.rows

    @classmethod
    def from_rows(cls, rows: Sequence[ActivityRow]) -> ActivityColumns:
        if not rows:
            return cls(0, (b"",) * len(ACTIVITY_COLUMNS))
        columns = zip(*rows, strict=True)
        return cls(len(rows), tuple(encode(values) for encode, values in zip(_ENCODE, columns, strict=True)))

    @classmethod
    def join(cls, chunks: Sequence[ActivityColumns]) -> ActivityColumns:
        if len(chunks) == 1:
            return chunks[0]
        return cls(sum(c.rows for c in chunks),
                   tuple(b"".join(c.values[i] for c in chunks) for i in range(len(ACTIVITY_COLUMNS))))

    def block_columns(self) -> list[native.Column]:
        """The columns of the insert: the table's, then ``version`` (= events)."""
        out = [(name, type_name, values) for (name, type_name), values in zip(ACTIVITY_COLUMNS, self.values,
                                                                               strict=True)]
        out.append(("version", "UInt64", self.values[3]))
        return out

    def days(self) -> array[int]:
        """The ``day`` column's day numbers: the table's partition key (``toYYYYMM(day)``)."""
        return _fixed_array("H", self.values[2])

    def take(self, row_sets: Iterable[Sequence[int]]) -> Iterator[ActivityColumns]:
        """For each set of row indices, those rows in that order: the inserts of a batch split by
        partition (sinks/partitions.py). Each column is read once; fixed-width values are picked at C
        level, strings by a Python pass over their lengths (only batches over many months come here)."""
        pickers = [_picker(data, type_name, self.rows) for (_, type_name), data in zip(ACTIVITY_COLUMNS, self.values,
                                                                                      strict=True)]
        for rows in row_sets:
            yield ActivityColumns(len(rows), tuple(pick(rows) for pick in pickers))

    def to_rows(self) -> list[ActivityRow]:
        """The rows back (tests, the engine benchmark's digest)."""
        apps, users = (_read_strings(v, self.rows) for v in self.values[:2])
        days = _read_fixed("H", self.values[2])
        counters = [_read_fixed("Q", v) for v in self.values[3:6]]
        amounts = [int.from_bytes(self.values[6][i:i + 16], "little", signed=True)
                   for i in range(0, 16 * self.rows, 16)]
        counters += [amounts, *(_read_fixed("Q", v) for v in self.values[7:])]
        return list(zip(apps, users, days, *counters, strict=True))


_WORD_CODE: dict[str, Literal["H", "Q"]] = {"Date": "H", "UInt64": "Q", "Decimal(38, 6)": "Q"}  # array codes


def _picker(data: bytes, type_name: str, n: int) -> Callable[[Sequence[int]], bytes]:
    """A function of row indices to those rows' encoded values, in that order."""
    if type_name == "String":
        items = [data[start:end] for start, _, end in _string_spans(data, n)]
        return lambda rows: b"".join(map(items.__getitem__, rows))
    # fixed width: the values as native words and back unchanged, so the byte order does not matter
    code = _WORD_CODE[type_name]
    words = memoryview(data).cast(code)
    if type_name != "Decimal(38, 6)":
        return lambda rows: array(code, [words[r] for r in rows]).tobytes()
    low, high = words[0::2], words[1::2]  # an Int128 is two words

    def pick_decimals(rows: Sequence[int]) -> bytes:
        out = array(code, bytes(16 * len(rows)))
        out[0::2] = array(code, [low[r] for r in rows])
        out[1::2] = array(code, [high[r] for r in rows])
        return out.tobytes()

    return pick_decimals


def _fixed_array(code: str, data: bytes) -> array[int]:
    values = array(code)
    values.frombytes(data)
    if not native.LITTLE:
        values.byteswap()
    return values


def _read_fixed(code: str, data: bytes) -> list[int]:
    return _fixed_array(code, data).tolist()


def _string_spans(data: bytes, n: int) -> list[tuple[int, int, int]]:
    """Where each of ``n`` length-prefixed strings lies: (its length's start, its bytes' start, end)."""
    out = []
    pos = 0
    for _ in range(n):
        start = pos
        length, pos = native.read_leb128(data, pos)
        out.append((start, pos, pos + length))
        pos += length
    if pos != len(data):
        raise ValueError("trailing bytes after the strings")
    return out


def _read_strings(data: bytes, n: int) -> list[str]:
    return [data[start:end].decode() for _, start, end in _string_spans(data, n)]
