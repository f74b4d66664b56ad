"""Time-bucketed indexes kept next to the state and rebuilt from it on recovery.

``DeadlineIndex`` finds the users whose absence deadline the watermark has passed at a cost
proportional to the users due, not to all users: users sit in one-minute buckets, a heap keeps
the bucket order, and moving a user (new login) is two set operations.
"""

from __future__ import annotations

import heapq

BUCKET_MS = 60_000
NEVER = 1 << 62


class DeadlineIndex:
    """Exact deadlines (ms) per key, grouped in one-minute buckets ordered by a heap."""

    __slots__ = ("_buckets", "_deadline", "_heap", "_next")

    def __init__(self) -> None:
        self._buckets: dict[int, set[bytes]] = {}
        self._heap: list[int] = []
        self._deadline: dict[bytes, int] = {}
        self._next = NEVER

    def __len__(self) -> int:
        return len(self._deadline)

    def get(self, key: bytes) -> int | None:
        return self._deadline.get(key)

    def set(self, key: bytes, deadline: int) -> None:
        """Index ``key`` at ``deadline``; a negative deadline removes it."""
        old = self._deadline.get(key)
        if old == deadline or (old is None and deadline < 0):
            return
        if old is not None:
            members = self._buckets.get(old // BUCKET_MS)
            if members is not None:
                members.discard(key)
            del self._deadline[key]
        if deadline < 0:
            return
        bucket = deadline // BUCKET_MS
        members = self._buckets.get(bucket)
        if members is None:
            members = self._buckets[bucket] = set()
            heapq.heappush(self._heap, bucket)
        members.add(key)
        self._deadline[key] = deadline
        if deadline < self._next:
            self._next = deadline

    def next_due(self) -> int:
        """The earliest deadline indexed, or NEVER (cached; O(bucket) to recompute)."""
        return self._next

    def _recompute_next(self) -> None:
        heap, buckets = self._heap, self._buckets
        while heap:
            members = buckets.get(heap[0])
            if members:
                self._next = min(self._deadline[k] for k in members)
                return
            buckets.pop(heapq.heappop(heap), None)
        self._next = NEVER

    def pop_due(self, watermark: int) -> list[tuple[int, bytes]]:
        """Remove and return (deadline, key) for every deadline <= watermark, earliest first."""
        if watermark < self._next:
            return []
        limit = watermark // BUCKET_MS
        heap, buckets, deadlines = self._heap, self._buckets, self._deadline
        out: list[tuple[int, bytes]] = []
        while heap and heap[0] <= limit:
            bucket = heap[0]
            members = buckets.get(bucket)
            if not members:
                buckets.pop(heapq.heappop(heap), None)
                continue
            due = [k for k in members if deadlines[k] <= watermark]
            for key in due:
                members.discard(key)
                out.append((deadlines.pop(key), key))
            if members:
                break  # the rest of this bucket is due later in the minute
            buckets.pop(heapq.heappop(heap), None)
        out.sort()
        self._recompute_next()
        return out


class LastActiveIndex:
    """Users by the last UTC day they were active: the candidates for the day rules."""

    __slots__ = ("_by_day", "_day_of")

    def __init__(self) -> None:
        self._by_day: dict[int, set[bytes]] = {}
        self._day_of: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._day_of)

    def touch(self, key: bytes, day: int) -> None:
        old = self._day_of.get(key)
        if old is not None:
            if old >= day:
                return
            self._by_day[old].discard(key)
        self._day_of[key] = day
        members = self._by_day.get(day)
        if members is None:
            members = self._by_day[day] = set()
        members.add(key)

    def active_since(self, first_day: int) -> set[bytes]:
        out: set[bytes] = set()
        for day, members in self._by_day.items():
            if day >= first_day:
                out |= members
        return out

    def forget_before(self, first_day: int) -> None:
        for day in [d for d in self._by_day if d < first_day]:
            for key in self._by_day.pop(day):
                del self._day_of[key]
