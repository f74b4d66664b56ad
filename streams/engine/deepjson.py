"""JSON encoding without a nesting limit, for values orjson refuses to encode.

orjson decodes up to 1024 levels of nesting but encodes only up to 254, so an accepted event
whose ``props`` are nested deeper could not be re-serialised (reroutes, ``beyond_retention``
dead letters). ``dumps_deep`` encodes any decoded JSON value iteratively (no recursion) and gives
the same bytes as ``orjson.dumps`` where that works; it is only called when orjson fails.
"""

from __future__ import annotations

import orjson


class _Literal(bytes):
    """Output bytes queued between the values still to encode."""


def _scalar(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        if type(value) is int:  # beyond 64 bits: still a JSON integer
            return str(value).encode()
        raise


def dumps_deep(value: object) -> bytes:
    """Compact JSON of ``value`` (dicts with string keys, lists, strings, numbers, booleans, None),
    whatever its depth."""
    out: list[bytes] = []
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is _Literal:
            out.append(item)  # type: ignore[arg-type]
        elif kind is dict:
            entries = list(item.items())  # type: ignore[attr-defined]
            stack.append(_Literal(b"}"))
            for i in range(len(entries) - 1, -1, -1):
                key, child = entries[i]
                if type(key) is not str:
                    raise TypeError(f"dict key must be str, not {type(key).__name__}")
                stack.append(child)
                stack.append(_Literal((b"," if i else b"") + orjson.dumps(key) + b":"))
            stack.append(_Literal(b"{"))
        elif kind is list:
            items: list[object] = item  # type: ignore[assignment]
            stack.append(_Literal(b"]"))
            for i in range(len(items) - 1, -1, -1):
                stack.append(items[i])
                if i:
                    stack.append(_Literal(b","))
            stack.append(_Literal(b"["))
        else:
            out.append(_scalar(item))
    return b"".join(out)
