"""What segments add to a partition of users (a mixin of ``UserPartition``): the segment step of a day
close, the ``converted`` decision of a payment, the recall playbook's steps, and every alert's
``context`` and ``holdout`` (SPEC sections 4 and 7). The decisions themselves are the pure functions of
``streams.engine.segments`` and ``streams.engine.holdout``; this module applies them to the partition's
state and indexes and collects their records in ``Outputs``.

Everything here is decided from the state and the watermark at the moment of the decision, never the
wall clock, so a replay from the committed offsets decides the same (same ``change_id`` s, same contexts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from schemas import alerts as A
from schemas.alerts import Alert, make_alert
from schemas.events import Event
from schemas.segments import make_change
from streams.engine import holdout as HO
from streams.engine import segments as S
from streams.engine.indexes import ChangeDayIndex, DeadlineIndex
from streams.engine.state import NONE, OPEN_NO_LOGIN_SHORT, Counts, PartitionMeta, UserState, split_key, to_micros
from streams.engine.store import Outputs, RulesByApp, StateStore

Seg = tuple[int, int, int, int]
NO_SEG: Seg = (NONE, NONE, NONE, NONE)
_interned: dict[Seg, Seg] = {NO_SEG: NO_SEG}
_INTERN_MAX = 65_536  # (lifecycle, value, potential) combinations x the potential days in use


def _intern(seg: Seg) -> Seg:
    """One shared tuple per distinct value: a million users in a few segments hold a few tuples."""
    held = _interned.get(seg)
    if held is not None:
        return held
    if len(_interned) < _INTERN_MAX:
        _interned[seg] = seg
    return seg


def seg_state(state: UserState) -> S.SegmentState:
    return S.SegmentState(*state.seg)


def store_seg(state: UserState, seg: S.SegmentState) -> None:
    state.seg = _intern((seg.lifecycle, seg.value, seg.potential, seg.potential_day))


class SegmentActions:
    store: StateStore
    rules: RulesByApp
    meta: PartitionMeta
    segment_days: ChangeDayIndex
    recall: DeadlineIndex
    # a day close's visit of one user: the C extension's ``segment_visit`` or its Python twin ``segments.visit``
    segment_visit: Callable[[dict[int, Counts], int, Seg, int, S.VisitParams, bytes, int], int | S.Visited | None]

    # ---- alerts: context and holdout ----------------------------------------------------------------
    def alert(self, status: Literal["open", "resolved"], rule: str, app_id: str, user_id: str, episode_start: int,
              triggered_at: int, evidence: dict[str, Any], state: UserState | None, day: int | None = None
              ) -> Alert:
        """An alert of the user ``user_id`` with their standing: ``day`` is the last closed day at the
        decision (default: the partition's)."""
        plan = self.rules.plan(app_id)
        seg = S.SegmentState(*state.seg) if state is not None else None
        context = HO.alert_context(rule, state, seg, self.meta.closed_day if day is None else day, plan.matrix)
        holdout = HO.in_holdout(app_id, user_id, rule, plan.holdout_share)
        return make_alert(status, rule, app_id, user_id, episode_start, triggered_at, evidence,
                          context=context, holdout=holdout)

    # ---- the day close ------------------------------------------------------------------------------
    def _segments_changed(self, key: bytes, state: UserState, day: int, wm: int, out: Outputs,
                          params: S.VisitParams, visited: S.Visited | None) -> bool:
        """A day close's visit of the user that found a change (``visited``: what ``segment_visit`` returned
        for the close of ``day``; None: what the C extension leaves to the Python twin, such as an amount
        beyond its integers): the new segments stored, the next change day indexed, the changes collected. Whether
        the state changed."""
        if visited is None:
            again = S.visit(state.days, state.first_ts, state.seg, day, params, key, wm)
            if isinstance(again, int):
                self.segment_days.set(key, again)
                return False
            visited = again
        seg, next_day, changes = visited
        self.segment_days.set(key, next_day)
        state.seg = _intern(seg)
        out.segment_changes.extend(changes)
        return True

    # ---- a payment ----------------------------------------------------------------------------------
    def _convert(self, out: Outputs, state: UserState, event: Event, wm: int) -> None:
        """A payment of a ``high_potential`` user (both loops call this only then): ``converted`` if it is
        within the entry's window."""
        if not self.rules.segments_on:
            return
        seg = S.SegmentState(*state.seg)
        change = S.on_payment(seg, event.ts, to_micros(event.amount or 0.0), self.rules.plan(event.app_id).settings)
        if change is None:
            return
        store_seg(state, seg)
        out.segment_changes.append(make_change(event.app_id, event.user_id, change.dimension, change.segment,
                                               change.previous, change.changed_at, wm, change.evidence))

    # ---- the recall playbook ------------------------------------------------------------------------
    def _recall_opened(self, key: bytes, state: UserState, deadline: int) -> None:
        """A ``churn.no_login_72h`` episode opened at ``deadline``: index its first step."""
        state.recall_fired = 0
        steps = self.rules.plan(split_key(key)[0]).steps
        self.recall.set(key, HO.next_step_at(deadline, steps, 0))

    def _index_recall(self, key: bytes, state: UserState) -> None:
        """Recovery: the next step of the user's open episode, if any."""
        start = state.open[OPEN_NO_LOGIN_SHORT]
        if start != NONE:
            steps = self.rules.plan(split_key(key)[0]).steps
            self.recall.set(key, HO.next_step_at(start, steps, state.recall_fired))

    def _fire_recall(self, upto: int, wm: int, out: Outputs) -> None:
        """The steps due at ``upto`` of the open episodes. An entry whose episode has resolved since (a
        login) is dropped here rather than when the login came (no index write per login)."""
        for _due, key in self.recall.pop_due(upto):
            state = self.store.get(key)
            if state is None:
                continue
            start = state.open[OPEN_NO_LOGIN_SHORT]
            if start == NONE:
                continue
            app_id, user_id = split_key(key)
            plan = self.rules.plan(app_id)
            due = HO.recall_steps_due(app_id, user_id, start, plan.steps, upto, state.recall_fired)
            if due:
                state.recall_fired += len(due)
                self.store.put(key, state)
                for step in due:
                    out.alerts.append(self.alert("open", A.RECALL_STEP, app_id, user_id, step.episode_start, wm,
                                                 step.evidence, state))
            self.recall.set(key, HO.next_step_at(start, plan.steps, state.recall_fired))
