"""Indexes kept next to the state and rebuilt from it on recovery.

``DeadlineIndex`` finds the users whose absence deadline the watermark has passed at a cost
proportional to the users due, not to all users: a heap of (deadline, key) entries under a map
of the live deadlines. A deadline that moves later (the usual move: a new login) costs one map
write: the key's earlier entry stays in the heap and is pushed again at the live deadline when
it surfaces. A deadline that moves earlier gets a new entry; removed keys leave entries that are
skipped when popped (or compacted away when they outnumber the live ones). The entries are
tuples of an int and bytes, which the garbage collector stops tracking.
"""

from __future__ import annotations

import heapq

NEVER = 1 << 62
# the heap is compacted when it holds more than twice the live deadlines plus this (the C loop is told it)
HEAP_SLACK = 1024
Keys = set[bytes]  # (a class with a ``set`` method cannot say ``set[bytes]`` in its body)


class DeadlineIndex:
    """Exact deadlines (ms) per key, popped in deadline order."""

    __slots__ = ("_deadline", "_heap", "next_at")

    def __init__(self) -> None:
        # every live key has an entry at or before its deadline
        self._heap: list[tuple[int, bytes]] = []
        self._deadline: dict[bytes, int] = {}
        self.next_at = NEVER  # <= the earliest live deadline

    def __len__(self) -> int:
        return len(self._deadline)

    def get(self, key: bytes) -> int | None:
        return self._deadline.get(key)

    def set(self, key: bytes, deadline: int) -> None:
        """Index ``key`` at ``deadline``; a negative deadline removes it."""
        deadlines = self._deadline
        old = deadlines.get(key)
        if old == deadline:
            return
        if deadline < 0:
            if old is not None:
                del deadlines[key]
            return
        deadlines[key] = deadline
        if old is not None and old < deadline:
            return  # the entry at ``old`` stands for it
        heap = self._heap
        if len(heap) > 2 * len(deadlines) + HEAP_SLACK:
            self._compact()
        heapq.heappush(heap, (deadline, key))
        if deadline < self.next_at:
            self.next_at = deadline

    def _compact(self) -> None:
        heap = [(d, k) for k, d in self._deadline.items()]
        heapq.heapify(heap)
        self._heap = heap

    def next_due(self) -> int:
        """A lower bound of the earliest deadline indexed, or NEVER."""
        return self.next_at

    def pop_due(self, watermark: int) -> list[tuple[int, bytes]]:
        """Remove and return (deadline, key) for every deadline <= watermark, earliest first."""
        if watermark < self.next_at:
            return []
        heap, deadlines = self._heap, self._deadline
        pop, push = heapq.heappop, heapq.heappush
        out: list[tuple[int, bytes]] = []
        while heap and heap[0][0] <= watermark:
            entry, key = pop(heap)
            live = deadlines.get(key)
            if live is None:
                continue  # removed (or popped already through another entry)
            if live <= watermark:
                del deadlines[key]
                out.append((live, key))
            elif live > entry:
                push(heap, (live, key))  # moved later since: wait at the live deadline
        out.sort()
        self.next_at = heap[0][0] if heap else NEVER
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


class ChangeDayIndex:
    """Users by the next day at whose close a segment of theirs can change (``segments.next_change_day``):
    a day close visits the users due by then, not every user."""

    __slots__ = ("_by_day", "_day_of")

    def __init__(self) -> None:
        self._by_day: dict[int, Keys] = {}
        self._day_of: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._day_of)

    def get(self, key: bytes) -> int | None:
        return self._day_of.get(key)

    def set(self, key: bytes, day: int) -> None:
        """Index ``key`` at ``day``; a negative day removes it."""
        old = self._day_of.get(key)
        if old == day:
            return
        if old is not None:
            members = self._by_day[old]
            members.discard(key)
            if not members:
                del self._by_day[old]
            del self._day_of[key]
        if day < 0:
            return
        self._day_of[key] = day
        self._by_day.setdefault(day, set()).add(key)

    def pop_through(self, day: int) -> Keys:
        """Remove and return the keys indexed at ``day`` or before."""
        out: Keys = set()
        for d in [d for d in self._by_day if d <= day]:
            members = self._by_day.pop(d)
            for key in members:
                del self._day_of[key]
            out |= members
        return out
