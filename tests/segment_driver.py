"""The segment functions of ``streams.engine.segments`` driven as a partition will drive them: events in
delivery order, the watermark closing days, a close visiting only the users touched since the last close and
the users ``ChangeDayIndex`` holds for that day (no Kafka, no ``UserPartition``: the wiring comes later)."""

from __future__ import annotations

from schemas.events import Event
from schemas.segments import SegmentChange, make_change
from streams.engine import segments as S
from streams.engine.indexes import ChangeDayIndex
from streams.engine.state import (
    AMOUNT_MICROS,
    EVENTS,
    LOGINS,
    NO_COUNTS,
    PAYMENTS,
    UserState,
    split_key,
    to_micros,
    user_key,
)

H = 3_600_000
D = 86_400_000
KEEP_DAYS = 32  # as RulesByApp.keep_days with the default rules


class Driver:
    def __init__(self, settings: S.SegmentSettings = S.DEFAULT, lateness: int = H) -> None:
        self.settings = settings
        self.lateness = lateness
        self.states: dict[bytes, UserState] = {}
        self.segs: dict[bytes, S.SegmentState] = {}
        self.index = ChangeDayIndex()
        self.touched: set[bytes] = set()
        self.stream_time: int | None = None
        self.closed = 0
        self.changes: list[SegmentChange] = []
        self.visits = 0  # users evaluated at day closes, in all

    @property
    def watermark(self) -> int:
        assert self.stream_time is not None
        return self.stream_time - self.lateness

    def send(self, event: Event) -> None:
        if self.stream_time is None or event.ts > self.stream_time:
            if self.stream_time is None:
                self.closed = (event.ts - self.lateness) // D - 1
            self.stream_time = event.ts
            while (self.closed + 2) * D <= self.watermark:
                self.closed += 1
                self._close(self.closed)
            for state in self.states.values():  # as a flush prunes: after the closes the watermark passed
                state.prune_below(self.watermark // D - KEEP_DAYS, 0, 0, 0)
        key = user_key(event.app_id, event.user_id)
        if key not in self.states:
            self.states[key] = UserState(first_ts=event.ts)
            self.segs[key] = S.SegmentState()
        state = self.states[key]
        day = event.ts // D
        counts = list(state.days.get(day, NO_COUNTS))
        counts[EVENTS] += 1
        if event.type == "login":
            counts[LOGINS] += 1
        micros = 0
        if event.type == "payment":
            micros = to_micros(event.amount or 0.0)
            counts[PAYMENTS] += 1
            counts[AMOUNT_MICROS] += micros
        state.days = {**state.days, day: tuple(counts)}  # type: ignore[dict-item]
        state.first_ts = min(state.first_ts, event.ts)
        state.last_active_day = max(state.last_active_day, day)
        if event.type == "payment":
            change = S.on_payment(self.segs[key], event.ts, micros, self.settings)
            if change is not None:
                self._record(key, change)
        self.touched.add(key)

    def _record(self, key: bytes, change: S.Change) -> None:
        app_id, user_id = split_key(key)
        self.changes.append(make_change(app_id, user_id, change.dimension, change.segment, change.previous,
                                        change.changed_at, self.watermark, change.evidence))

    def _close(self, day: int) -> None:
        keys = self.touched | self.index.pop_through(day)
        self.touched = set()
        for key in sorted(keys):
            self.visits += 1
            state, seg = self.states[key], self.segs[key]
            for change in S.close_day(state, seg, day, self.settings):
                self._record(key, change)
            self.index.set(key, S.next_change_day(state, seg, day, self.settings))

    def rows(self) -> list[tuple[str, str, str, str, str | None, int, int]]:
        return [(c.app_id, c.user_id, c.dimension, c.segment, c.previous, c.changed_at, c.triggered_at)
                for c in self.changes]
