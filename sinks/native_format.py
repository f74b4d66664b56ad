"""ClickHouse's Native format, written directly for the hot insert (per-user daily rows).

clickhouse-connect serializes column by column in Python; for the activity rows most of its
time went to ``Decimal128`` (a ``Decimal(str(x))`` per value) and to building LowCardinality
dictionaries. Here each column is one C-level conversion (``array``) or one join, and the
server converts types where they differ (``input_format_native_allow_types_conversion``, on by
default): a ``String`` block column into a ``LowCardinality(String)`` table column.

A block: column count and row count (LEB128), then per column its name, its type and its
values: fixed-width little-endian numbers, or length-prefixed strings.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from itertools import chain

Column = tuple[str, str, bytes]  # name, ClickHouse type, encoded values

LITTLE = sys.byteorder == "little"


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    """The LEB128 number at ``data[pos:]`` and the position after it."""
    n = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return n, pos


def _fixed(code: str, values: Sequence[int]) -> bytes:
    arr = array(code, values)  # OverflowError if a value does not fit the type
    if not LITTLE:
        arr.byteswap()
    return arr.tobytes()


def uint64(values: Sequence[int]) -> bytes:
    return _fixed("Q", values)


def date(days: Sequence[int]) -> bytes:
    """``Date``: days since 1970-01-01 as UInt16."""
    return _fixed("H", days)


def decimal128(units: Sequence[int]) -> bytes:
    """``Decimal(38, S)`` from integers already scaled by 10^S (micros for S = 6), as Int128:
    the low 64 bits, then the sign extension where every value fits an Int64; else each value's
    16 bytes (OverflowError beyond 128 bits)."""
    words = array("q", bytes(16 * len(units)))
    try:
        words[0::2] = array("q", units)
    except OverflowError:
        return b"".join(u.to_bytes(16, "little", signed=True) for u in units)
    words[1::2] = array("q", [-1 if u < 0 else 0 for u in units])
    if not LITTLE:
        words.byteswap()
    return words.tobytes()


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def strings(values: Sequence[str]) -> bytes:
    encoded = [v.encode() for v in values]
    if not encoded:
        return b""
    if max(map(len, encoded)) < 0x80:  # one-byte lengths, the usual case: no Python-level loop
        prefixes = map(_ONE_BYTE.__getitem__, map(len, encoded))
    else:
        prefixes = map(leb128, map(len, encoded))
    return b"".join(chain.from_iterable(zip(prefixes, encoded, strict=True)))


# LEB128 lengths below 2^14 (one or two bytes), looked up instead of computed per value
_LENGTHS = _ONE_BYTE + [bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, 0x4000)]


def byte_strings(values: Sequence[bytes]) -> bytes:
    """``String`` from bytes as they are (message values: any length, any bytes)."""
    lengths = _LENGTHS
    prefixes = [lengths[n] if n < 0x4000 else leb128(n) for n in map(len, values)]
    return b"".join(chain.from_iterable(zip(prefixes, values, strict=True)))


def same_strings(values: Sequence[str]) -> bytes:
    """``String`` for a column that mostly repeats one value (a topic): encoded once per value."""
    encoded = {v: leb128(len(b := v.encode())) + b for v in set(values)}
    return b"".join(map(encoded.__getitem__, values))


def uint8(values: Sequence[int]) -> bytes:
    return _fixed("B", values)


def uint32(values: Sequence[int]) -> bytes:
    return _fixed("I", values)


def int64(values: Sequence[int]) -> bytes:
    """``Int64``, and ``DateTime64(3)`` (epoch milliseconds)."""
    return _fixed("q", values)


def block(rows: int, columns: Sequence[Column]) -> bytes:
    parts = [leb128(len(columns)), leb128(rows)]
    for name, type_name, values in columns:
        for text in (name.encode(), type_name.encode()):
            parts += (leb128(len(text)), text)
        parts.append(values)
    return b"".join(parts)
