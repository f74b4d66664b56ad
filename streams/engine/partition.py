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

from typing import ClassVar

from xxhash import xxh3_64_intdigest

from schemas import alerts as A
from schemas.dead_letters import DeadLetter
from schemas.events import ENGAGEMENT_EXCLUDED, Event
from sinks.columns import ActivityColumns
from streams.engine import extensions
from streams.engine import segments as S
from streams.engine.dedup import INLINE_IDS
from streams.engine.firing import TYPE_COUNTER, burst_alert, resolve
from streams.engine.partition_indexes import (
    EPISODE_RULES,
    MAX_BATCH,
    RUN_ACTIVE,
    RUN_APPLIED,
    RUN_CHANGED,
    RUN_DEADLINES,
    RUN_ENGAGE,
    RUN_FIRST,
    RUN_LOGIN,
    PartitionIndexes,
)
from streams.engine.segments import HIGH_POTENTIAL
from streams.engine.state import (
    AMOUNT_MICROS,
    DAY_MS,
    DEVICE_LATE_DAYS,
    HOUR_MS,
    LOGINS,
    MINUTE_MS,
    NO_COUNTS,
    NONE,
    OPEN_NO_INTERACTION,
    OPEN_NO_LOGIN_LONG,
    OPEN_NO_LOGIN_SHORT,
    PAYMENTS,
    POSTS,
    SOCIAL,
    UserState,
    encode,
    prune_cutoffs,
    to_micros,
    user_key,
)
from streams.engine.store import Outputs, RulesByApp, StateStore, event_json, meta_key
from streams.engine.store import activity_rows as activity_rows_py
from streams.engine.watermark import WatermarkActions

__all__ = ["EPISODE_RULES", "MAX_BATCH", "NO_CAP", "DeadLetter", "MessageEvents", "Outputs", "RulesByApp", "StateStore",
           "UserPartition", "activity_columns", "event_json", "meta_key"]

_NO_STATE = UserState(first_ts=NONE)
# one message's events for UserPartition.apply: source topic, offset, key, events (None: sent elsewhere),
# the Kafka record's timestamp (epoch ms; negative: none, and stream time is not capped)
MessageEvents = tuple[str, int, bytes | None, list[Event | None], int]
NO_CAP = (1 << 63) - 1  # the stream-time cap of a message without a record timestamp
# the outcome of an event older than the state's days (vitals_events_total{outcome="late", reason="beyond_state"})
LATE_BEYOND_STATE = "late:beyond_state"


def activity_columns(dirty_rows: dict[tuple[bytes, int, str, str, int], None], stores: dict[int, StateStore],
                     native: bool = extensions.BUILT) -> ActivityColumns:
    """The ClickHouse rows of changed (user, day) counters (``store.activity_rows``) as Native-format
    columns, built in C without a Python object per row if ``native`` (processing.native_engine) and
    the extension is built."""
    c = extensions.engine(native)
    if c is None:
        return ActivityColumns.from_rows(activity_rows_py(dirty_rows, stores))

    def lookup(key: bytes, p: int) -> UserState | None:
        store = stores.get(p)
        return store.get(key) if store is not None else None

    rows, *values = c.activity_columns(dirty_rows, {p: store.dirty for p, store in stores.items()}, lookup)
    return ActivityColumns(rows, tuple(values))


class UserPartition(PartitionIndexes, WatermarkActions):
    """State and indexes of one partition of users, and the events applied to them."""

    native_default: ClassVar[bool] = extensions.BUILT  # the C loop, where not chosen explicitly

    def __init__(self, partition: int, store: StateStore, rules: RulesByApp, reroute_topic: str = "",
                 native: bool | None = None) -> None:
        super().__init__(partition, store, rules)
        self.reroute_topic = reroute_topic
        native = self.native_default if native is None else native
        self._c = extensions.engine(native)  # None: the Python loop (RuntimeError: asked for, not built)
        self.native = native
        self.segment_visit = self._c.segment_visit if self._c is not None else S.visit

    # ---- processing ----------------------------------------------------------------------
    def apply(self, messages: list[MessageEvents], out: Outputs) -> None:
        """Apply the events of ``messages`` in order (see :meth:`_apply_py`): in C when the
        extension is built and :attr:`native` is on, else in Python."""
        if self._c is not None:
            self._c.apply(self, messages, out)
        else:
            self._apply_py(messages, out)

    def _apply_py(self, messages: list[MessageEvents], out: Outputs) -> None:
        """Apply the events of ``messages`` in order: per message its source topic, offset, key
        (for dead letters) and decoded events (None in place of an event sent to another
        partition: the others keep their index within the message).

        One loop, written for speed. Consecutive events of one user (a batch message holds one
        user's events) form a *run*: its user, key, state and rules are looked up once, and what
        only the run's end matters for (the state's offsets and dirty mark, the deadline and
        last-active indexes, the changed-users set) is written once, by :meth:`_end_run` — at a
        user change, before the watermark fires anything, and at the end. Outcomes are counted
        in locals."""
        lateness = self.rules.lateness_ms
        rules_for = self.rules
        meta, store = self.meta, self.store
        reroute = self.reroute_topic
        dirty_rows, alerts, device_obs = out.dirty_rows, out.alerts, out.device_obs
        ix_short = self.deadlines[A.NO_LOGIN_SHORT]
        ix_inter = self.deadlines[A.NO_INTERACTION]
        ix_long = self.deadlines[A.NO_LOGIN_LONG]
        ix_recall = self.recall
        end_run = self._end_run
        partition = self.partition
        position_max = self.position
        accepted = late_events = duplicates = replayed = 0
        count_day = NONE  # the day of the outcomes counted in the four locals above
        rules_app: str | None = None
        rules = self.rules("")
        retention = horizon_ms = burst = short_ms = long_ms = inter_ms = 0
        # the run: its user, key and state, what moved (RUN_* bits) and its offsets per source
        app_id: str | None = None
        user_id: str | None = None
        key = b""
        state = _NO_STATE
        moved = 0
        off_events = off_reroute = NONE
        row_key, row_day = b"", NONE  # the last row marked dirty
        obs_app: str | None = None  # the last device observation
        obs_device: str | None = None
        obs_user: str | None = None
        obs_day = NONE
        st = meta.stream_time
        wm = NONE if st == NONE else st - lateness
        wm_day = wm // DAY_MS
        # the run's counters of one day, in locals (day NONE: none held), written back when the day
        # or the user changes and before the watermark fires anything
        cday = n = logins = payments = amount = posts = social = complaints = NONE
        skew = self.rules.skew_ms
        for topic, offset, _key, events, record_ts in messages:
            src = 1 if topic == reroute else 0
            base = offset * MAX_BATCH
            # SPEC section 2: an event moves stream time at most to its record's timestamp + the clock skew
            cap = record_ts + skew if record_ts >= 0 else NO_CAP
            for index, event in enumerate(events):
                if event is None:
                    continue
                ts = event.ts
                prev_wm = wm
                t = ts if ts <= cap else cap  # what the event's time moves stream time to (a fast clock: less)
                if t > st:
                    if st == NONE:
                        meta.closed_day = (t - lateness) // DAY_MS - 1
                        self._set_next_day_end()
                    meta.stream_time = st = t
                    self.meta_dirty = True
                    wm = t - lateness
                    wm_day = wm // DAY_MS
                    if (wm >= self.next_day_end or wm >= ix_short.next_at or wm >= ix_inter.next_at
                            or wm >= ix_long.next_at or wm >= ix_recall.next_at):
                        if cday != NONE:
                            state.days[cday] = (n, logins, payments, amount, posts, social, complaints)
                            cday = NONE
                        if moved:
                            end_run(key, app_id, state, moved, off_events, off_reroute)
                            moved = 0
                        self.position = position_max
                        self.advance(wm, out)
                        user_id = None  # states may have been read again: look the user up afresh
                a = event.app_id
                if a != rules_app:
                    if rules_app is not None:  # outcomes are counted per app and day
                        self._count(out, rules_app, count_day, accepted, late_events, duplicates, replayed)
                        accepted = late_events = duplicates = replayed = 0
                    rules_app, rules = a, rules_for(a)
                    retention = rules.retention_days_needed
                    horizon_ms = rules.dedup_horizon_s * 1000
                    burst = rules.burst_events_per_minute
                    short_ms, long_ms, inter_ms = rules_for.periods(a)
                day = ts // DAY_MS
                if day != count_day:  # outcomes are counted per app and day
                    if accepted or late_events or duplicates or replayed:
                        self._count(out, a, count_day, accepted, late_events, duplicates, replayed)
                        accepted = late_events = duplicates = replayed = 0
                    count_day = day
                # older than the days the state keeps: applied like any late event, but its counters go to
                # the late-events ledger (sinks/late.py), which recomputes its day's row in ClickHouse
                cold = day < wm_day - retention
                u = event.user_id
                if u != user_id or a != app_id:
                    if cday != NONE:
                        state.days[cday] = (n, logins, payments, amount, posts, social, complaints)
                        cday = NONE
                    if moved:
                        end_run(key, app_id, state, moved, off_events, off_reroute)
                        moved = 0
                    app_id, user_id = a, u
                    key = user_key(a, u)
                    found = store.get(key)
                    if found is None:
                        state = UserState(first_ts=ts)
                        moved = RUN_FIRST
                        if ts + inter_ms < ix_inter.next_at:  # see ``early`` below
                            self._set_deadlines(key, state, moved, short_ms, long_ms, inter_ms)
                    else:
                        state = found
                    off_events, off_reroute = state.offsets
                position = base + index
                if src == 0 and position > position_max:
                    position_max = position
                if position <= (off_reroute if src else off_events):  # replayed after a restart: in the state
                    replayed += 1
                    if day != row_day or key is not row_key:  # re-write the row: the insert may have been lost
                        dirty_rows[(key, day, a, u, partition)] = None
                        row_key, row_day = key, day
                    continue
                if src:
                    off_reroute = position
                else:
                    off_events = position
                h = xxh3_64_intdigest(event.event_id.encode())  # event_hash, inlined
                ids = state.ids
                kept = ids.get(h)  # UserState.seen, inlined
                cutoff = (wm - horizon_ms) // HOUR_MS
                if (kept is not None and kept + state.ids_base >= cutoff) or (
                        state.sealed and self._sealed_seen(key, state, h, cutoff)):  # a hot user's older ids
                    # decided: a replay skips it by position (the offsets above), not re-deciding it
                    # against a watermark that has moved on (the first copy may be past the horizon)
                    duplicates += 1
                    moved |= RUN_CHANGED
                    if day != row_day or key is not row_key:
                        dirty_rows[(key, day, a, u, partition)] = None  # re-written: a replay may follow a lost insert
                        row_key, row_day = key, day
                    continue
                moved |= RUN_APPLIED
                late = ts < prev_wm  # never before the first watermark (NONE < any valid ts)
                if cold:
                    self._cold_event(out, event)
                elif late:
                    late_events += 1
                else:
                    accepted += 1
                hour = (ts if ts > wm else wm) // HOUR_MS  # UserState.remember, inlined
                if not ids:
                    state.ids_base = hour
                hour -= state.ids_base
                if kept is None or kept < hour:
                    ids[h] = hour
                # ---- counters, episodes, burst minute, device observation
                # a day's counters are a tuple (replaced, not mutated): the collector stops tracking it
                etype = event.type
                if not cold:
                    if day != cday:
                        if cday != NONE:
                            state.days[cday] = (n, logins, payments, amount, posts, social, complaints)
                        cday = day
                        n, logins, payments, amount, posts, social, complaints = state.days.get(day, NO_COUNTS)
                    n += 1
                    slot = TYPE_COUNTER.get(etype)
                    if slot is not None:
                        if slot == LOGINS:
                            logins += 1
                        elif slot == PAYMENTS:
                            payments += 1
                            amount += to_micros(event.amount)
                        elif slot == POSTS:
                            posts += 1
                        elif slot == SOCIAL:
                            social += 1
                        else:
                            complaints += 1
                if etype == "payment" and state.seg[2] == HIGH_POTENTIAL:  # segments: converted?
                    self._convert(out, state, event, wm)
                # a deadline index is written at the run's end, unless the deadline would come before
                # the earliest one indexed (``early``): the next stream-time step must see it
                early = False
                if ts < state.first_ts:
                    state.first_ts = ts
                    moved |= RUN_FIRST
                    early = state.last_engage == NONE and ts + inter_ms < ix_inter.next_at
                if etype == "login":
                    open_ = state.open
                    if open_[OPEN_NO_LOGIN_SHORT] != NONE or open_[OPEN_NO_LOGIN_LONG] != NONE:
                        resolve(self, alerts, state, ts, True, a, u, wm)
                        moved |= RUN_LOGIN
                        early = True
                    elif ts > state.last_login:
                        state.last_login = ts
                        moved |= RUN_LOGIN
                        if ts + short_ms < ix_short.next_at or ts + long_ms < ix_long.next_at:
                            early = True
                elif etype not in ENGAGEMENT_EXCLUDED:
                    if state.open[OPEN_NO_INTERACTION] != NONE:
                        resolve(self, alerts, state, ts, False, a, u, wm)
                        moved |= RUN_ENGAGE
                        early = True
                    elif ts > state.last_engage:
                        state.last_engage = ts
                        moved |= RUN_ENGAGE
                        if ts + inter_ms < ix_inter.next_at:
                            early = True
                if early:
                    self._set_deadlines(key, state, moved, short_ms, long_ms, inter_ms)
                if not late:
                    minutes = state.minutes
                    minute = ts // MINUTE_MS
                    count = minutes.get(minute, 0) + 1
                    minutes[minute] = count
                    if count >= burst:
                        burst_alert(self, alerts, state, ts, count, rules, a, u, wm)
                if day > state.last_active_day:
                    state.last_active_day = day
                    moved |= RUN_ACTIVE
                device = event.device_id
                if device is not None and day >= wm_day - DEVICE_LATE_DAYS and not (
                    day == obs_day and device == obs_device and u == obs_user and a == obs_app
                ):  # the device stage counts distinct users: a repeat of the last observation adds nothing
                    obs = device_obs.get((a, device, partition))
                    if obs is None:
                        obs = device_obs[(a, device, partition)] = []
                    obs.append((day, u, ts))
                    obs_app, obs_device, obs_user, obs_day = a, device, u, day
                if not cold and (day != row_day or key is not row_key):
                    dirty_rows[(key, day, a, u, partition)] = None
                    row_key, row_day = key, day
        if cday != NONE:
            state.days[cday] = (n, logins, payments, amount, posts, social, complaints)
        if moved:
            end_run(key, app_id, state, moved, off_events, off_reroute)
        self.position = position_max
        if rules_app is not None:
            self._count(out, rules_app, count_day, accepted, late_events, duplicates, replayed)

    def _sealed_seen(self, key: bytes, state: UserState, h: int, cutoff_hour: int) -> bool:
        """Whether a sealed segment of the user's ids (streams/engine/dedup.py) remembers ``h`` within the horizon."""
        return self.store.sealed.seen(key, state, h, cutoff_hour)

    def _cold_event(self, out: Outputs, event: Event) -> None:
        """An event older than the days the state keeps (an offline phone's sync, a backfill behind live
        data), applied like any late event (dedup, episodes it ends, deadlines, its user's first event),
        but counted by the late-events ledger, which recomputes its day's row in ClickHouse (sinks/late.py;
        SPEC section 2: counted exactly once however late)."""
        slot = TYPE_COUNTER.get(event.type)
        counts = [1, 0, 0, 0, 0, 0, 0]
        if slot is not None:
            counts[slot] = 1
            if slot == PAYMENTS:
                counts[AMOUNT_MICROS] = to_micros(event.amount)
        h = xxh3_64_intdigest(event.event_id.encode())
        out.cold.append((event.app_id, event.user_id, event.ts // DAY_MS, h, tuple(counts)))  # type: ignore[arg-type]
        out.outcomes[(self.partition, event.app_id, event.ts // DAY_MS, LATE_BEYOND_STATE)] += 1

    def _end_run(
        self, key: bytes, app_id: str | None, state: UserState, moved: int, off_events: int, off_reroute: int
    ) -> None:
        """Write what a run of one user's events changed beyond its state's fields (``moved``,
        RUN_* bits): offsets, the dirty mark, the indexes whose inputs moved (deadlines:
        R.absence_deadline, inlined), the changed-users set of the next day close."""
        if moved & (RUN_CHANGED | RUN_APPLIED):
            state.offsets = (off_events, off_reroute)
            self.store.dirty[key] = state
        if not moved & RUN_APPLIED:
            return
        self.touched.add(key)
        if moved & RUN_DEADLINES:
            self._set_deadlines(key, state, moved, *self.rules.periods(app_id or ""))
        if moved & RUN_ACTIVE:
            self.last_active.touch(key, state.last_active_day)

    def _count(self, out: Outputs, app_id: str, day: int, accepted: int, late: int, duplicates: int, replayed: int
               ) -> None:
        """Outcomes of the events of one app and UTC day (both loops call it when either changes)."""
        outcomes, p = out.outcomes, self.partition
        for name, n in (("accepted", accepted), ("late", late), ("duplicate", duplicates), ("replayed", replayed)):
            if n:
                outcomes[(p, app_id, day, name)] += n

    def drain(self) -> list[tuple[bytes, bytes | None]]:
        """Changed user states (stamped with the current position), for the changelog; a hot user's
        sealed id segments before its state (None: a segment deleted)."""
        prune = (self.watermark, self.rules.keep_days, self.rules.max_dedup_ms, self.rules.lateness_ms)
        if self._c is None:
            return self.store.drain(self.position, prune)
        cutoffs = prune_cutoffs(*prune) if prune[0] >= 0 else None  # as StateStore.drain, its loop in C
        return self._c.drain(self.store.dirty, self.store.data, self.position, cutoffs, encode,
                             self.store.sealed.seal, INLINE_IDS)

    def drain_meta(self) -> tuple[bytes, bytes] | None:
        if not self.meta_dirty:
            return None
        self.meta_dirty = False
        raw = encode(self.meta)
        self.store.data[meta_key(self.partition)] = raw
        return meta_key(self.partition), raw
