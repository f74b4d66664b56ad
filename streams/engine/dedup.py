"""A hot user's event ids beyond what one state record holds: sealed segments (pure, no I/O).

A user's state keeps the hashes of the event ids it saw within the dedup horizon (``UserState.ids``).
A shared id such as ``anonymous`` sending 100k events an hour would make that record grow past the
broker's record limit (SPEC section 4: every record under 512 KiB). So at a flush, a state holding
more than ``INLINE_IDS`` ids *seals* them: they move, sorted by hash, into segments of at most
``SEGMENT_IDS`` ids, each a record of its own in the same changelog (key ``\\x00ids\\x1f<user key>\\x1f<n>``,
192 KiB at most), and the state lists the segments it has (``UserState.sealed``). Dedup stays exact:
an id is a duplicate when the state or one of its segments remembers it with a keep-until hour within
the horizon. A segment is deleted (a tombstone) once every id in it has passed the horizon.

A segment is 8-byte hashes, sorted, then 4-byte keep-until hours in the same order (12 bytes an id,
little-endian): looked up by bisection, held decoded in that form (about its encoded size in memory).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import MutableMapping

from streams.engine.state import UserState

INLINE_IDS = 4096  # ids a state record holds itself (about 45 KiB encoded)
SEGMENT_IDS = 16_384  # ids a sealed segment holds (192 KiB)
PREFIX = b"\x00ids\x1f"  # keys beginning with \x00 are not users: recovery and inspection skip them
_LITTLE = sys.byteorder == "little"


def segment_key(user_key: bytes, n: int) -> bytes:
    return b"%s%s\x1f%d" % (PREFIX, user_key, n)


class Segment:
    """Sealed ids: hashes sorted, with their keep-until hours (absolute, hours since the epoch)."""

    __slots__ = ("hashes", "hours", "last_hour")

    def __init__(self, hashes: array, hours: array) -> None:
        self.hashes = hashes
        self.hours = hours
        self.last_hour = max(hours) if hours else -1

    @classmethod
    def of(cls, ids: list[tuple[int, int]]) -> Segment:
        """From (hash, keep-until hour) pairs sorted by hash."""
        return cls(array("Q", [h for h, _ in ids]), array("l", [hour for _, hour in ids]))

    def seen(self, h: int, cutoff_hour: int) -> bool:
        """Whether ``h`` is remembered with a keep-until hour at or after ``cutoff_hour``."""
        hashes = self.hashes
        i = bisect_left(hashes, h)
        return i < len(hashes) and hashes[i] == h and self.hours[i] >= cutoff_hour

    def encode(self) -> bytes:
        hashes, hours = self.hashes, array("i", self.hours)
        if not _LITTLE:
            hashes = array("Q", hashes)
            hashes.byteswap()
            hours.byteswap()
        return hashes.tobytes() + hours.tobytes()

    @classmethod
    def decode(cls, raw: bytes) -> Segment:
        n = len(raw) // 12
        hashes, hours32 = array("Q"), array("i")
        hashes.frombytes(raw[: 8 * n])
        hours32.frombytes(raw[8 * n : 12 * n])
        if not _LITTLE:
            hashes.byteswap()
            hours32.byteswap()
        return cls(hashes, array("l", hours32))


class SealedIds:
    """The sealed segments of one partition's users: decoded on first use and kept (their encoded
    records live in the partition's state mapping, written and deleted with the changelog)."""

    __slots__ = ("cache", "data")

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data
        self.cache: dict[bytes, Segment] = {}

    def segment(self, key: bytes) -> Segment | None:
        found = self.cache.get(key)
        if found is None:
            raw = self.data.get(key)
            if raw is None:
                return None
            found = self.cache[key] = Segment.decode(raw)
        return found

    def seen(self, user_key: bytes, state: UserState, h: int, cutoff_hour: int) -> bool:
        """Whether one of the state's sealed segments remembers ``h`` within the horizon."""
        for n in state.sealed:
            segment = self.segment(segment_key(user_key, n))
            if segment is not None and segment.seen(h, cutoff_hour):
                return True
        return False

    def seal(self, user_key: bytes, state: UserState, cutoff_hour: int | None) -> list[tuple[bytes, bytes | None]]:
        """At a flush: drop the segments whose every id passed ``cutoff_hour`` (None: keep all), and
        if the state holds more than ``INLINE_IDS`` ids, move them into new segments. Returns the
        segment records for the changelog (None: deleted), already written to the mapping."""
        records: list[tuple[bytes, bytes | None]] = []
        kept: list[int] = []
        for n in state.sealed:
            key = segment_key(user_key, n)
            segment = self.segment(key)
            if segment is None or (cutoff_hour is not None and segment.last_hour < cutoff_hour):
                self.cache.pop(key, None)
                self.data.pop(key, None)
                records.append((key, None))
            else:
                kept.append(n)
        ids = state.ids
        if len(ids) > INLINE_IDS:
            base = state.ids_base
            pairs = sorted((h, hour + base) for h, hour in ids.items()
                           if cutoff_hour is None or hour + base >= cutoff_hour)
            n = max(state.sealed, default=-1) + 1
            for start in range(0, len(pairs), SEGMENT_IDS):
                segment = Segment.of(pairs[start : start + SEGMENT_IDS])
                key = segment_key(user_key, n)
                raw = segment.encode()
                self.cache[key] = segment
                self.data[key] = raw
                records.append((key, raw))
                kept.append(n)
                n += 1
            state.ids = {}
        if records:
            state.sealed = tuple(kept)
        return records
