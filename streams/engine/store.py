"""What the per-partition engine works with besides the rules: the state store (decoded, changed
states encoded once per flush), the outputs collected between flushes, per-app rule settings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas import alerts as A
from schemas.alerts import Alert
from schemas.dead_letters import DeadLetter
from schemas.events import Event, Invalid, Reason
from schemas.segments import SegmentChange
from sinks.late import ColdEvent
from streams.config.settings import RuleSettings, Settings
from streams.engine import rules as R
from streams.engine.dedup import INLINE_IDS, SealedIds
from streams.engine.deepjson import dumps_deep
from streams.engine.holdout import SegmentPlan
from streams.engine.state import NONE, UserState, decode_user, encode, prune_cutoffs

# an outcome count's key in :attr:`Outputs.outcomes`: (source partition, app_id, UTC day, outcome)
Outcome = tuple[int, str, int, str]


def internal_undecodable(why: str, original: bytes | None, index: int | None = None) -> Invalid:
    """A record of an internal topic that does not decode, as a dead letter's cause: vitals wrote
    no such record (a foreign writer, a corrupted log), and processing it again would fail again,
    so it is dead-lettered and committed past like invalid input instead of stopping the worker."""
    return Invalid(Reason.INTERNAL_UNDECODABLE, why, original or b"", index)


@dataclass
class Outputs:
    """What processing produced since the last flush."""

    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reroutes: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, value)
    device_obs: dict[tuple[str, str, int], list[tuple[int, str, int]]] = field(default_factory=dict)
    # changed (user key, day) rows, with the key's app id, user id and partition for the sink
    # changed (key, day, app_id, user_id, partition) rows, a set in insertion order: the flush reads
    # their states in the order they were touched, not scattered over memory in hash order (6x faster)
    dirty_rows: dict[tuple[bytes, int, str, str, int], None] = field(default_factory=dict)
    # events older than the days the state keeps, for the late-events ledger (sinks/late.py)
    cold: list[ColdEvent] = field(default_factory=list)
    # (source partition, app_id, UTC day, outcome): accepted/duplicate/late/late:beyond_state/replayed/rerouted/
    # invalid:<reason>; app "" when unreadable, and the day then the Kafka record's; dlq:<reason> for a dead
    # letter that is no event (a device-observation record). Read by the metrics and the event_outcomes table.
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    # the part of ``outcomes`` from messages the event_outcomes table counted already (a replay after a
    # restart: streams/worker/outcome_gates.py)
    recounted: Counter[Outcome] = field(default_factory=Counter)
    # segment changes (SPEC section 7), in decision order: the segments topic and ClickHouse
    segment_changes: list[SegmentChange] = field(default_factory=list)
    # (input format, kind): events of a mapped format that are not activity (SPEC 8: identify, $set, ...)
    not_activity: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: int = 0

    def outcome(self, name: str) -> int:
        """One outcome's count over every app."""
        return sum(n for (_, _, _, outcome), n in self.outcomes.items() if outcome == name)

    def by_app(self) -> Counter[tuple[str, str]]:
        """The outcomes per (app_id, outcome), over partitions and days."""
        out: Counter[tuple[str, str]] = Counter()
        for (_, app_id, _, outcome), n in self.outcomes.items():
            out[(app_id, outcome)] += n
        return out

    def clear(self) -> None:
        self.alerts.clear()
        self.dead_letters.clear()
        self.reroutes.clear()
        self.device_obs.clear()
        self.dirty_rows.clear()
        self.cold.clear()
        self.outcomes.clear()
        self.recounted.clear()
        self.segment_changes.clear()
        self.not_activity.clear()
        self.messages = 0


class StateStore:
    """Encoded user states in a mapping (the Faust table's store) with a cache of decoded,
    changed states that are encoded once per flush."""

    __slots__ = ("data", "dirty", "sealed")

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data
        self.dirty: dict[bytes, UserState] = {}
        self.sealed = SealedIds(data)  # hot users' older event ids

    def get(self, key: bytes) -> UserState | None:
        state = self.dirty.get(key)
        if state is not None:
            return state
        raw = self.data.get(key)
        return None if raw is None else decode_user(raw)

    def put(self, key: bytes, state: UserState) -> None:
        self.dirty[key] = state

    def drain(self, position: int = NONE, prune: tuple[int, int, int, int] | None = None
              ) -> list[tuple[bytes, bytes | None]]:
        """Encode every changed state, store it and return it for the changelog. ``prune``
        (watermark, keep days, dedup horizon ms, lateness ms) drops what no rule can need. A state
        with more ids than it holds itself seals them first (``SealedIds.seal``: their records come
        before the state's, None where a segment is deleted)."""
        cutoffs = prune_cutoffs(*prune) if prune is not None and prune[0] >= 0 else None
        data = self.data
        out: list[tuple[bytes, bytes | None]] = []
        append = out.append
        dirty = self.dirty
        for key, state in dirty.items():
            state.persisted_at = position
            if cutoffs is not None:
                state.prune_below(*cutoffs)
            if state.sealed or len(state.ids) > INLINE_IDS:
                out += self.sealed.seal(key, state, cutoffs[1] if cutoffs is not None else None)
            raw = encode(state)
            data[key] = raw
            append((key, raw))
        dirty.clear()
        return out


def activity_rows(dirty_rows: Iterable[tuple[bytes, int, str, str, int]], stores: dict[int, StateStore]
                  ) -> list[tuple[Any, ...]]:
    """The ClickHouse rows of changed (user, day) counters, as the states hold them now:
    (app id, user id, day, *counters)."""
    states: dict[bytes, UserState] = {}
    for store in stores.values():  # the changed states of every partition, in one map
        states.update(store.dirty)
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for key, day, app_id, user_id, p in dirty_rows:
        state = states.get(key)
        if state is None:  # unchanged (a replayed event re-writes its row): read it
            held = stores.get(p)
            state = held.get(key) if held is not None else None
            if state is None:
                continue
        counters = state.days.get(day)
        if counters is not None:
            append((app_id, user_id, day, *counters))
    return rows


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
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # props nested deeper than orjson encodes (the decoder took them)
        return dumps_deep(doc)


class RulesByApp:
    """Rule settings per app id, for the engine and the device stage (``rules(app_id)``, also
    called from the engine's C loop, with :meth:`periods`, :attr:`lateness_ms` and :attr:`skew_ms`).

    Bounded whatever the app ids seen: the apps configured under ``[apps.<name>]`` get their own
    objects, built once here; every other app id shares the one default object (SPEC: a tenant
    flood of 100k app ids must not grow memory), so there is nothing to cache per app."""

    def __init__(self, settings: Settings) -> None:
        self._default = settings.rules_for(None)
        self._configured: dict[str, RuleSettings] = {app: settings.rules_for(app) for app in settings.apps}
        self._default_periods = _absence_periods(self._default)
        self._periods = {app: _absence_periods(rules) for app, rules in self._configured.items()}
        self.lateness_ms = settings.rules.allowed_lateness_s * 1000
        self.skew_ms = settings.rules.max_clock_skew_s * 1000
        self.segments_on = settings.processing.segments
        self._default_plan = SegmentPlan.of(settings.segments)
        self._plans = {app: SegmentPlan.of(settings.segments_for(app)) for app in settings.apps}

    def __call__(self, app_id: str) -> RuleSettings:
        return self._configured.get(app_id, self._default)

    def plan(self, app_id: str) -> SegmentPlan:
        """The app's segment settings, priority matrix and recall steps."""
        return self._plans.get(app_id, self._default_plan)

    def periods(self, app_id: str) -> tuple[int, int, int]:
        """The app's absence periods in ms: no login (short), no login (long), no interaction."""
        return self._periods.get(app_id, self._default_periods)

    @property
    def sizes(self) -> tuple[int, int]:
        """Entries held per app (rule objects, periods): the configured apps only."""
        return len(self._configured), len(self._periods)

    @property
    def max_dedup_ms(self) -> int:
        return max(rules.dedup_horizon_s for rules in (self._default, *self._configured.values())) * 1000

    @property
    def keep_days(self) -> int:
        rules = max(rules.retention_days_needed for rules in (self._default, *self._configured.values()))
        segments = max(plan.settings.days_needed for plan in (self._default_plan, *self._plans.values()))
        return max(rules, segments + 2)


def _absence_periods(rules: RuleSettings) -> tuple[int, int, int]:
    return (
        R.absence_period_ms(A.NO_LOGIN_SHORT, rules),
        R.absence_period_ms(A.NO_LOGIN_LONG, rules),
        R.absence_period_ms(A.NO_INTERACTION, rules),
    )
