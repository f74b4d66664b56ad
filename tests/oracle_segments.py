"""Independent, naive recomputation of the segment changes of SPEC section 7.

It replays one partition's events in delivery order (stream time = the largest event time so far, watermark =
stream time - lateness, day D closes when the watermark reaches the end of D; no clock-skew cap, no duplicates)
and at every day close decides every dimension for *every* user known so far, straight from the list of their
events delivered before that close: no per-day counters, no index, no shared code with
``streams.engine.segments``. Payments convert on the event. Slow by design, for small histories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from schemas.events import Event

H = 3_600_000
D = 86_400_000



@dataclass(frozen=True)
class Cfg:
    """SPEC 7's numbers (defaults as in the spec)."""

    window: int = 7  # new: F >= D-6; recent D-6..D; previous D-13..D-7
    churn: int = 30  # dormant: active in D-29..D-7
    value_window: int = 30
    high: int = 500  # M >= 500
    mid: int = 100  # M > 100
    streak: int = 7  # logins on each of D-6..D
    no_payment: int = 30  # nothing paid in D-29..D
    convert: int = 30  # a payment on entry..entry+30 converts; else lapsed when entry+30 closes


# (app_id, user_id, dimension, segment, previous, changed_at, triggered_at)
Row = tuple[str, str, str, str, str | None, int, int]


@dataclass
class Person:
    events: list[Event] = field(default_factory=list)
    lifecycle: str | None = None
    value: str | None = None
    potential: str | None = None
    entered: int | None = None  # the day of the current high_potential entry
    left: int | None = None  # the day a potential segment was last left (converted / lapsed)

    def active_in(self, first: int, last: int) -> bool:
        return any(first <= e.ts // D <= last for e in self.events)

    def logged_in(self, day: int) -> bool:
        return any(e.ts // D == day and e.type == "login" for e in self.events)

    def paid(self, first: int, last: int) -> Fraction:
        return sum((Fraction(str(e.amount)) for e in self.events
                    if e.type == "payment" and first <= e.ts // D <= last), Fraction(0))


def lifecycle(p: Person, day: int, c: Cfg) -> str | None:
    first = min(e.ts for e in p.events) // D
    w = c.window
    if first > day:
        return None
    if first >= day - (w - 1):
        return "new"
    if p.active_in(day - (w - 1), day) and p.active_in(day - (2 * w - 1), day - w):
        return "returning"
    if p.active_in(day - (w - 1), day):
        return "resurrecting"
    if p.active_in(day - (c.churn - 1), day - w):
        return "dormant"
    return "churned"


def value(p: Person, day: int, c: Cfg) -> str:
    m = p.paid(day - (c.value_window - 1), day)
    return "high" if m >= c.high else "mid" if m > c.mid else "low" if m > 0 else "none"


def close(key: tuple[str, str], p: Person, day: int, wm: int, c: Cfg) -> list[Row]:
    app, user = key
    rows: list[Row] = []
    seg = lifecycle(p, day, c)
    if seg is not None and seg != p.lifecycle:
        rows.append((app, user, "lifecycle", seg, p.lifecycle, day * D, wm))
        p.lifecycle = seg
    seg = value(p, day, c)
    if seg != (p.value or "none"):  # "none" only for a user who had a value segment
        rows.append((app, user, "value", seg, p.value, day * D, wm))
        p.value = seg
    if p.potential == "high_potential" and p.entered is not None and day == p.entered + c.convert:
        rows.append((app, user, "potential", "lapsed", "high_potential", day * D, wm))
        p.potential, p.left = "lapsed", day
    elif p.potential != "high_potential" and (p.left is None or day > p.left):
        streak = all(p.logged_in(x) for x in range(day - (c.streak - 1), day + 1))
        if streak and p.paid(day - (c.no_payment - 1), day) == 0:
            rows.append((app, user, "potential", "high_potential", p.potential, day * D, wm))
            p.potential, p.entered = "high_potential", day
    return rows


def segment_changes(events: list[Event], c: Cfg | None = None, lateness: int = H) -> list[Row]:
    """The changes of one partition's events (valid, unique ids, in delivery order), in decision order."""
    c = c or Cfg()
    people: dict[tuple[str, str], Person] = {}
    rows: list[Row] = []
    st: int | None = None
    closed = 0
    for e in events:
        if st is None or e.ts > st:
            if st is None:
                closed = (e.ts - lateness) // D - 1  # days before the first watermark's are not closed
            st = e.ts
            wm = st - lateness
            while (closed + 2) * D <= wm:
                closed += 1
                for key in sorted(people):
                    rows += close(key, people[key], closed, wm, c)
        wm = st - lateness
        key = (e.app_id, e.user_id)
        p = people.setdefault(key, Person())
        p.events.append(e)
        if (e.type == "payment" and e.amount > 0 and p.potential == "high_potential" and p.entered is not None
                and p.entered * D <= e.ts < (p.entered + c.convert + 1) * D):
            rows.append((e.app_id, e.user_id, "potential", "converted", "high_potential", e.ts, wm))
            p.potential, p.left = "converted", e.ts // D
    return rows
