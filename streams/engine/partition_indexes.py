"""What a partition of users keeps indexed next to its state, and rebuilds from it on recovery: the
absence deadlines, the last active day, the users with open day-rule episodes, the day-close
candidates, open episodes per rule (a mixin of ``UserPartition``, which applies the events)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from schemas import alerts as A
from schemas.alerts import Alert
from streams.engine import rules as R
from streams.engine import segments as S
from streams.engine.indexes import NEVER, ChangeDayIndex, DeadlineIndex, LastActiveIndex
from streams.engine.state import (
    DAY_MS,
    NONE,
    OPEN_DROP,
    OPEN_HOLLOW,
    OPEN_NO_INTERACTION,
    OPEN_NO_LOGIN_LONG,
    OPEN_NO_LOGIN_SHORT,
    PartitionMeta,
    UserState,
    decode_meta,
    split_key,
)
from streams.engine.store import RulesByApp, StateStore, meta_key

EPISODE_SLOTS = tuple((rule, slot) for slot, rule in enumerate(A.EPISODE_RULES))  # UserState.open's slots
EPISODE_RULES = frozenset(A.EPISODE_RULES)
MAX_BATCH = 1024  # > the events one message may hold; position = offset * MAX_BATCH + index
# what a run of one user's events moved (see UserPartition.apply)
RUN_CHANGED, RUN_APPLIED, RUN_LOGIN, RUN_ENGAGE, RUN_FIRST, RUN_ACTIVE = 1, 2, 4, 8, 16, 32
RUN_DEADLINES = RUN_LOGIN | RUN_ENGAGE | RUN_FIRST  # the inputs of the absence deadlines


class PartitionIndexes:
    """The indexes of one partition of users and the partition's stream-time record."""

    _index_recall: Callable[[bytes, UserState], None]  # SegmentActions

    def __init__(self, partition: int, store: StateStore, rules: RulesByApp) -> None:
        self.partition = partition
        self.store = store
        self.rules = rules
        self.meta = PartitionMeta()
        self.meta_dirty = False
        self.deadlines = {rule: DeadlineIndex() for rule, _ in R.ABSENCE}
        # the recall playbook's next step per open churn.no_login_72h episode (segment_actions), fired with
        # the absence deadlines in time order
        self.recall = self.deadlines[A.RECALL_STEP] = DeadlineIndex()
        # users by the next day at whose close a segment of theirs can change (segments.next_change_day)
        self.segment_days = ChangeDayIndex()
        self.last_active = LastActiveIndex()
        self.open_day_rules: set[bytes] = set()
        # day-close candidates: users changed since the last close, and users whose day rules may
        # still change with the state they have (open episodes, or enough recent activity)
        self.touched: set[bytes] = set()
        self.watch: set[bytes] = set()
        self.next_day_end = NEVER
        self.flushed_watermark = NONE  # the watermark when the last flush completed
        self.open_episodes: Counter[str] = Counter()  # rule -> open episodes (metrics)
        self.position = NONE  # events-topic position (offset * MAX_BATCH + index) processed last

    @property
    def watermark(self) -> int:
        st = self.meta.stream_time
        return NONE if st == NONE else st - self.rules.lateness_ms

    # ---- recovery ------------------------------------------------------------------------
    def load(self, keys: Iterable[bytes], resume_offset: int | None) -> int:
        """Rebuild the indexes from recovered state (keys of this partition), before processing
        resumes at events-topic offset ``resume_offset`` (None: from the start).

        Everything below that offset counts as processed: a day close fired by the first event
        must evaluate the users whose records were written before it, and skip only those written
        after it (a replay after a crash: they already hold that close's decisions)."""
        if resume_offset is not None:
            self.position = resume_offset * MAX_BATCH - 1
        raw_meta = self.store.data.get(meta_key(self.partition))
        if raw_meta is not None:
            self.meta = decode_meta(raw_meta)
            self.flushed_watermark = self.watermark
        n = 0
        for key in keys:
            state = self.store.get(key)
            if state is not None:
                self._index(key, state)
                n += 1
        self._set_next_day_end()
        return n

    def _index(self, key: bytes, state: UserState) -> None:
        rules = self.rules(split_key(key)[0])
        for rule, slot in R.ABSENCE:
            self.deadlines[rule].set(key, R.absence_deadline(state, rule, slot, rules))
        if state.last_active_day != NONE:
            self.last_active.touch(key, state.last_active_day)
        if state.open[OPEN_DROP] != NONE or state.open[OPEN_HOLLOW] != NONE:
            self.open_day_rules.add(key)
        else:
            self.open_day_rules.discard(key)
        self.touched.add(key)
        if self.rules.segments_on:
            closed = self.meta.closed_day
            settings = self.rules.plan(split_key(key)[0]).settings
            self.segment_days.set(key, S.next_change_day(state, S.SegmentState(*state.seg), closed, settings))
        self._index_recall(key, state)
        for rule, slot in EPISODE_SLOTS:
            if state.open[slot] != NONE:
                self.open_episodes[rule] += 1

    # ---- upkeep ----------------------------------------------------------------------------
    def count_episodes(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            if alert.rule in EPISODE_RULES:
                self.open_episodes[alert.rule] += 1 if alert.status == "open" else -1

    def _set_next_day_end(self) -> None:
        closed = self.meta.closed_day
        self.next_day_end = NEVER if closed == NONE else (closed + 2) * DAY_MS

    def _next_deadline(self) -> int:
        return min(ix.next_at for ix in self.deadlines.values())

    def _set_deadlines(self, key: bytes, state: UserState, moved: int, short_ms: int, long_ms: int, inter_ms: int
                       ) -> None:
        """Index the absence deadlines whose inputs ``moved`` (RUN_* bits; R.absence_deadline,
        inlined)."""
        open_ = state.open
        if moved & RUN_LOGIN:
            self.deadlines[A.NO_LOGIN_SHORT].set(
                key, NONE if open_[OPEN_NO_LOGIN_SHORT] != NONE else state.last_login + short_ms)
            self.deadlines[A.NO_LOGIN_LONG].set(
                key, NONE if open_[OPEN_NO_LOGIN_LONG] != NONE else state.last_login + long_ms)
        last_engage = state.last_engage
        if moved & RUN_ENGAGE or (moved & RUN_FIRST and last_engage == NONE):
            since = state.first_ts if last_engage == NONE else last_engage
            self.deadlines[A.NO_INTERACTION].set(key, NONE if open_[OPEN_NO_INTERACTION] != NONE else since + inter_ms)

    def state_size(self) -> tuple[int, int]:
        return len(self.last_active), sum(len(ix) for ix in self.deadlines.values()) + len(self.segment_days)

