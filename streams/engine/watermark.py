"""What the watermark triggers on a partition of users: absence deadlines it passes and the UTC
days it closes, in time order (a mixin of ``UserPartition``, which holds the state it uses)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from schemas import alerts as A
from schemas.time_units import DAY_MS
from streams.config.settings import RuleSettings
from streams.engine import rules as R
from streams.engine.indexes import ChangeDayIndex, DeadlineIndex, LastActiveIndex
from streams.engine.segment_actions import SegmentActions
from streams.engine.state import NONE, OPEN_DROP, OPEN_HOLLOW, PartitionMeta, UserState, split_key
from streams.engine.store import Outputs, RulesByApp, StateStore


class WatermarkActions(SegmentActions):
    store: StateStore
    rules: RulesByApp
    meta: PartitionMeta
    meta_dirty: bool
    deadlines: dict[str, DeadlineIndex]
    last_active: LastActiveIndex
    open_day_rules: set[bytes]
    segment_days: ChangeDayIndex
    touched: set[bytes]  # users changed since the last day close
    watch: set[bytes]  # users whose day rules may change with the state they have
    next_day_end: int
    position: int
    if TYPE_CHECKING:

        @property
        def watermark(self) -> int: ...  # PartitionIndexes.watermark

    _next_deadline: Callable[[], int]
    _set_next_day_end: Callable[[], None]

    def advance(self, wm: int, out: Outputs) -> None:
        """Fire what the watermark ``wm`` has passed: deadlines and day closes, in time order."""
        while True:
            deadline = self._next_deadline()
            day_end = self.next_day_end
            if deadline < day_end and deadline <= wm:
                self._fire_deadlines(min(wm, day_end - 1), out)
            elif day_end <= wm:
                self._close_day(day_end // DAY_MS - 1, wm, out)
            else:
                return

    def _fire_deadlines(self, upto: int, out: Outputs) -> None:
        store = self.store
        for rule, slot in R.ABSENCE:
            for _deadline, key in self.deadlines[rule].pop_due(upto):
                state = store.get(key)
                if state is None:
                    continue
                app_id, user_id = split_key(key)
                decision = R.fire_absence(state, rule, slot, upto, self.rules(app_id))
                if decision is not None:
                    store.put(key, state)
                    out.alerts.append(self.alert("open", rule, app_id, user_id, decision.episode_start,
                                                 self.watermark, decision.evidence, state))
                    if rule == A.NO_LOGIN_SHORT:
                        self._recall_opened(key, state, decision.episode_start)
        self._fire_recall(upto, self.watermark, out)

    def _close_day(self, day: int, wm: int, out: Outputs) -> None:
        """Evaluate the day rules for the users they may decide something for. A user neither
        changed since the last close nor watched (see ``R.day_scan``) has no edge to decide."""
        store = self.store
        touched = self.touched
        segments = self.rules.segments_on
        segment_due = self.segment_days.pop_through(day) if segments else set()
        day_candidates = touched | self.watch | self.open_day_rules
        candidates = day_candidates | segment_due if segment_due else day_candidates
        self.touched = again = set()
        watch = self.watch
        dirty = store.dirty
        prefix: bytes | None = None  # the key prefix of the app whose rules are at hand
        rules = self.rules("")
        segment_params = self.rules.plan("").params
        visit, index_segments = self.segment_visit, self.segment_days.set
        oldest = 0
        for key in sorted(candidates):
            state = dirty.get(key) or store.get(key)
            if state is None:
                watch.discard(key)
                continue
            if state.persisted_at > self.position:  # written after the event that closes the day:
                again.add(key)  # replaying after a crash, this user's record already holds this day's decisions
                continue
            if prefix is None or not key.startswith(prefix):
                app = key[: key.find(b"\x1f")]
                prefix = app + b"\x1f"
                rules = self.rules(app.decode())
                segment_params = self.rules.plan(app.decode()).params
                oldest = day - max(2 * rules.activity_drop_window_d, rules.hollow_window_d) + 1
            if segments and (key in touched or key in segment_due):
                # most visits change nothing: one C call tells so and the next day to look again
                visited = visit(state.days, state.first_ts, state.seg, day, segment_params, key, wm)
                if visited.__class__ is int:
                    index_segments(key, visited)
                elif self._segments_changed(key, state, day, wm, out, segment_params, visited):  # type: ignore[arg-type]
                    store.put(key, state)
            if key not in day_candidates:
                continue  # here for its segments only: no day rule to decide (as with segments off)
            open_ = state.open
            if open_[OPEN_DROP] == NONE and open_[OPEN_HOLLOW] == NONE and state.last_active_day < oldest:
                watch.discard(key)  # R.day_rules_may_hold, inlined: no day rule can hold or change
                continue
            drop, hollow, later = R.day_scan(state, day, rules)
            if drop != (open_[OPEN_DROP] != NONE) or hollow != (open_[OPEN_HOLLOW] != NONE):
                self._decide_day(key, state, day, wm, rules, out)
                open_ = state.open  # replaced (a tuple) by the decisions
            if later or open_[OPEN_DROP] != NONE or open_[OPEN_HOLLOW] != NONE:
                watch.add(key)
            else:
                watch.discard(key)
        self.last_active.forget_before(day - self.rules.keep_days)
        self.meta.closed_day = day
        self.meta_dirty = True
        self._set_next_day_end()

    def _decide_day(self, key: bytes, state: UserState, day: int, wm: int, rules: RuleSettings, out: Outputs) -> None:
        decisions = R.close_day(state, day, rules)
        if not decisions:
            return
        self.store.put(key, state)
        if state.open[OPEN_DROP] != NONE or state.open[OPEN_HOLLOW] != NONE:
            self.open_day_rules.add(key)
        else:
            self.open_day_rules.discard(key)
        app_id, user_id = split_key(key)
        for decision in decisions:
            out.alerts.append(self.alert(decision.status, decision.rule, app_id, user_id, decision.episode_start,
                                         wm, decision.evidence, state, day))
