"""The per-partition processing logic: watermark, dedup, state updates and rule firing.

Pure and synchronous: no Kafka, no Faust, no ClickHouse. The Faust agents hand it decoded
batches and ship what it leaves in :class:`Outputs`. Per event, in partition order:

1. stream time and watermark advance (an event below the previous watermark is *late*);
2. absence deadlines and UTC day closes the new watermark has passed are evaluated, using the
   state as it was before this event (so an event applied in order never hides a deadline it
   comes after);
3. the event is applied to its user's state (counters, dedup set, burst minute, episodes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

import orjson

from schemas import alerts as A
from schemas.alerts import Alert, make_alert
from schemas.events import ENGAGEMENT_EXCLUDED, SOCIAL_TYPES, Event, Invalid, Reason
from streams import rules as R
from streams.index import NEVER, DeadlineIndex, LastActiveIndex
from streams.settings import RuleSettings, Settings
from streams.state import (
    AMOUNT_MICROS,
    COMPLAINTS,
    DAY_MS,
    DEVICE_LATE_DAYS,
    EVENTS,
    LOGINS,
    NONE,
    OPEN_DROP,
    OPEN_HOLLOW,
    PAYMENTS,
    POSTS,
    SOCIAL,
    PartitionMeta,
    UserState,
    decode_meta,
    decode_user,
    encode,
    event_hash,
    split_key,
    to_micros,
    user_key,
)


@dataclass(slots=True)
class DeadLetter:
    invalid: Invalid
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass
class Outputs:
    """What processing produced since the last flush."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reroutes: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, value)
    device_obs: dict[tuple[str, str, int], list[tuple[int, str, int]]] = field(default_factory=dict)
    dirty_rows: set[tuple[bytes, int]] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # accepted/duplicate/late/invalid:<reason>
    messages: int = 0

    def clear(self) -> None:
        self.alerts.clear()
        self.dead_letters.clear()
        self.reroutes.clear()
        self.device_obs.clear()
        self.dirty_rows.clear()
        self.outcomes.clear()
        self.messages = 0


class StateStore:
    """Encoded user states in a mapping (the Faust table's store) with a cache of decoded,
    changed states that are encoded once per flush."""

    __slots__ = ("data", "dirty")

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data
        self.dirty: dict[bytes, UserState] = {}

    def get(self, key: bytes) -> UserState | None:
        state = self.dirty.get(key)
        if state is not None:
            return state
        raw = self.data.get(key)
        return None if raw is None else decode_user(raw)

    def put(self, key: bytes, state: UserState) -> None:
        self.dirty[key] = state

    def drain(self, position: int = NONE, prune: tuple[int, int, int, int] | None = None) -> list[tuple[bytes, bytes]]:
        """Encode every changed state, store it and return it for the changelog. ``prune``
        (watermark, keep days, dedup horizon ms, lateness ms) drops what no rule can need."""
        for state in self.dirty.values():
            state.persisted_at = position
            if prune is not None and prune[0] >= 0:
                state.prune(*prune)
        out = [(key, encode(state)) for key, state in self.dirty.items()]
        data = self.data
        for key, raw in out:
            data[key] = raw
        self.dirty.clear()
        return out


def meta_key(partition: int) -> bytes:
    return b"\x00partition\x1f%d" % partition


def event_json(event: Event) -> bytes:
    doc: dict[str, object] = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "type": event.type,
        "ts": event.ts,
        "app_id": event.app_id,
    }
    if event.device_id is not None:
        doc["device_id"] = event.device_id
    if event.type == "payment" or event.amount:
        doc["amount"] = event.amount
    if event.props is not None:
        doc["props"] = event.props
    return orjson.dumps(doc)


class RulesByApp:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[str, RuleSettings] = {}
        self.lateness_ms = settings.rules.allowed_lateness_s * 1000

    def __call__(self, app_id: str) -> RuleSettings:
        rules = self._cache.get(app_id)
        if rules is None:
            rules = self._cache[app_id] = self._settings.rules_for(app_id)
        return rules

    @property
    def max_dedup_ms(self) -> int:
        apps = ["", *self._settings.apps]
        return max(self(app).dedup_horizon_s for app in apps) * 1000

    @property
    def keep_days(self) -> int:
        return max(
            [self._settings.rules.retention_days_needed]
            + [self(app).retention_days_needed for app in self._settings.apps]
        )


EPISODE_SLOTS = ((A.NO_LOGIN_SHORT, 0), (A.ACTIVITY_DROP, 1), (A.NO_INTERACTION, 2), (A.NO_LOGIN_LONG, 3),
                 (A.HOLLOW, 4))
EPISODE_RULES = frozenset(rule for rule, _ in EPISODE_SLOTS)
MAX_BATCH = 1024  # > the events one message may hold; position = offset * MAX_BATCH + index


class UserPartition:
    """State and indexes of one partition of users."""

    def __init__(self, partition: int, store: StateStore, rules: RulesByApp, reroute_topic: str = "") -> None:
        self.partition = partition
        self.reroute_topic = reroute_topic
        self.store = store
        self.rules = rules
        self.meta = PartitionMeta()
        self.meta_dirty = False
        self.deadlines = {rule: DeadlineIndex() for rule, _ in R.ABSENCE}
        self.last_active = LastActiveIndex()
        self.open_day_rules: set[bytes] = set()
        self.next_day_end = NEVER
        self.flushed_watermark = NONE  # the watermark when the last flush completed
        self.open_episodes: Counter[str] = Counter()  # rule -> open episodes (metrics)
        self.position = NONE  # events-topic position (offset * MAX_BATCH + index) processed last

    # ---- recovery ------------------------------------------------------------------------
    def load(self, keys: Iterable[bytes]) -> int:
        """Rebuild the indexes from recovered state (keys of this partition)."""
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
        for rule, slot in EPISODE_SLOTS:
            if state.open[slot] != NONE:
                self.open_episodes[rule] += 1

    def count_episodes(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            if alert.rule in EPISODE_RULES:
                self.open_episodes[alert.rule] += 1 if alert.status == "open" else -1

    def _set_next_day_end(self) -> None:
        closed = self.meta.closed_day
        self.next_day_end = NEVER if closed == NONE else (closed + 2) * DAY_MS

    @property
    def watermark(self) -> int:
        st = self.meta.stream_time
        return NONE if st == NONE else st - self.rules.lateness_ms

    def state_size(self) -> tuple[int, int]:
        return len(self.last_active), sum(len(ix) for ix in self.deadlines.values())

    # ---- processing ----------------------------------------------------------------------
    def apply(self, events: list[tuple[Event, str, int, int, bytes | None, int]], out: Outputs) -> None:
        """Apply events in order, each with its source topic, partition, offset, message key (for
        dead letters) and index within its message."""
        lateness = self.rules.lateness_ms
        meta = self.meta
        store = self.store
        for event, topic, part, offset, msg_key, index in events:
            ts = event.ts
            prev_wm = meta.stream_time - lateness if meta.stream_time != NONE else NONE
            if ts > meta.stream_time:
                if meta.stream_time == NONE:
                    meta.closed_day = (ts - lateness) // DAY_MS - 1
                    self._set_next_day_end()
                meta.stream_time = ts
                self.meta_dirty = True
                wm = ts - lateness
                if wm >= self.next_day_end or wm >= self._next_deadline():
                    self.advance(wm, out)
            else:
                wm = prev_wm
            rules = self.rules(event.app_id)
            day = ts // DAY_MS
            if day < wm // DAY_MS - rules.retention_days_needed:
                inv = Invalid(
                    Reason.BEYOND_RETENTION,
                    f"event older than the state retention of {rules.retention_days_needed} days",
                    event_json(event),
                    None,
                )
                out.dead_letters.append(DeadLetter(inv, topic, part, offset, msg_key))
                out.outcomes["invalid:" + Reason.BEYOND_RETENTION] += 1
                continue
            key = user_key(event.app_id, event.user_id)
            state = store.get(key)
            if state is None:
                state = UserState(first_ts=ts)
            src = 1 if topic == self.reroute_topic else 0
            position = offset * MAX_BATCH + index
            if src == 0 and position > self.position:
                self.position = position
            if position <= state.offsets[src]:  # replayed after a restart: already in the state
                out.outcomes["replayed"] += 1
                out.dirty_rows.add((key, day))  # re-write the row: the insert may have been lost
                continue
            h = event_hash(event.event_id)
            if state.seen(h, wm - rules.dedup_horizon_s * 1000):
                out.outcomes["duplicate"] += 1
                out.dirty_rows.add((key, day))  # re-write the row: a replay may follow a lost insert
                continue
            late = prev_wm != NONE and ts < prev_wm
            out.outcomes["late" if late else "accepted"] += 1
            state.remember(h, ts if ts > wm else wm)
            state.offsets[src] = position
            self._apply_event(key, state, event, day, late, wm, rules, out)
            store.put(key, state)
            out.dirty_rows.add((key, day))

    def _next_deadline(self) -> int:
        return min(ix.next_due() for ix in self.deadlines.values())

    def _apply_event(
        self,
        key: bytes,
        state: UserState,
        event: Event,
        day: int,
        late: bool,
        wm: int,
        rules: RuleSettings,
        out: Outputs,
    ) -> None:
        etype = event.type
        ts = event.ts
        counters = state.day(day)
        counters[EVENTS] += 1
        is_login = etype == "login"
        is_engagement = etype not in ENGAGEMENT_EXCLUDED
        if is_login:
            counters[LOGINS] += 1
        elif etype == "payment":
            counters[PAYMENTS] += 1
            counters[AMOUNT_MICROS] += to_micros(event.amount)
        elif etype == "content_post":
            counters[POSTS] += 1
        elif etype == "complaint":
            counters[COMPLAINTS] += 1
        elif etype in SOCIAL_TYPES:
            counters[SOCIAL] += 1
        if ts < state.first_ts:
            state.first_ts = ts
        app_id, user_id = event.app_id, event.user_id
        for decision in R.on_activity(state, ts, is_login, is_engagement):
            out.alerts.append(
                make_alert(
                    decision.status, decision.rule, app_id, user_id, decision.episode_start, wm, decision.evidence
                )
            )
        if is_login or is_engagement or ts == state.first_ts:
            for rule, slot in R.ABSENCE:
                if (rule == R.A.NO_INTERACTION) != is_login or ts == state.first_ts:
                    self.deadlines[rule].set(key, R.absence_deadline(state, rule, slot, rules))
        if not late:
            decision = R.count_minute(state, ts, rules)
            if decision is not None:
                out.alerts.append(
                    make_alert("open", decision.rule, app_id, user_id, decision.episode_start, wm, decision.evidence)
                )
        if day > state.last_active_day:
            state.last_active_day = day
            self.last_active.touch(key, day)
        if event.device_id is not None and day >= wm // DAY_MS - DEVICE_LATE_DAYS:
            obs = out.device_obs.get((app_id, event.device_id, self.partition))
            if obs is None:
                obs = out.device_obs[(app_id, event.device_id, self.partition)] = []
            obs.append((day, user_id, ts))

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
                    out.alerts.append(
                        make_alert(
                            "open", rule, app_id, user_id, decision.episode_start, self.watermark, decision.evidence
                        )
                    )

    def _close_day(self, day: int, wm: int, out: Outputs) -> None:
        store = self.store
        candidates = self.last_active.active_since(day - self.rules.keep_days) | self.open_day_rules
        for key in sorted(candidates):
            state = store.get(key)
            if state is None:
                continue
            if state.persisted_at > self.position:
                continue  # replaying after a crash: this user's record already holds this day's decisions
            app_id, user_id = split_key(key)
            rules = self.rules(app_id)
            if not R.day_rules_may_hold(state, day, rules):
                continue
            decisions = R.close_day(state, day, rules)
            if decisions:
                store.put(key, state)
                if state.open[OPEN_DROP] != NONE or state.open[OPEN_HOLLOW] != NONE:
                    self.open_day_rules.add(key)
                else:
                    self.open_day_rules.discard(key)
                for decision in decisions:
                    out.alerts.append(
                        make_alert(
                            decision.status,
                            decision.rule,
                            app_id,
                            user_id,
                            decision.episode_start,
                            wm,
                            decision.evidence,
                        )
                    )
        self.last_active.forget_before(day - self.rules.keep_days)
        self.meta.closed_day = day
        self.meta_dirty = True
        self._set_next_day_end()

    def drain(self) -> list[tuple[bytes, bytes]]:
        """Changed user states (stamped with the current position), for the changelog."""
        prune = (self.watermark, self.rules.keep_days, self.rules.max_dedup_ms, self.rules.lateness_ms)
        return self.store.drain(self.position, prune)

    def drain_meta(self) -> tuple[bytes, bytes] | None:
        if not self.meta_dirty:
            return None
        self.meta_dirty = False
        raw = encode(self.meta)
        self.store.data[meta_key(self.partition)] = raw
        return meta_key(self.partition), raw
