"""What an alert carries about its user (SPEC sections 4 and 7), as pure functions: the control group
(``holdout``), the ``priority`` matrix, the ``context`` object, and the recall playbook's steps.

* ``in_holdout`` — the first 8 bytes of SHA-256(app_id \\x1f user_id \\x1f rule), unsigned big-endian, below
  share x 2^64 (share read as the exact fraction its decimal text means, as ``rules.at_most_ratio`` does);
  ``recall.step`` alerts use ``churn.no_login_72h``'s group (the episode's).
* ``priority`` — the first row of the matrix matching (rule, value tier); default: P1 for churn alerts of
  ``high`` users, P2 for churn alerts of ``mid`` users and for ``fake.device_farm`` / ``fake.burst``, P3
  otherwise. ``recall.step`` counts as a churn alert (a step of a level-0 episode).
* ``alert_context`` — lifecycle, value, payment_amount_30d, active_days_30d, priority.
* ``recall_steps_due`` — the ``recall.step`` alerts an open ``churn.no_login_72h`` episode is due at a
  watermark, given how many of its steps fired already (steps fire in offset order, so that count is all
  the state an episode needs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from schemas import alerts as A
from schemas.alerts import Alert, alert_id, make_alert
from schemas.time_units import DAY_MS
from streams.config.segments import ALERT_RULES, SegmentSettings
from streams.engine.segments import (
    LIFECYCLE_SEGMENTS,
    VALUE_SEGMENTS,
    SegmentState,
    VisitParams,
    active_days,
    amount_micros,
    visit_params,
)
from streams.engine.state import NONE, UserState

P1, P2, P3 = "P1", "P2", "P3"
CHURN = frozenset((*A.CHURN_RULES, A.RECALL_STEP))
CONTEXT_WINDOW_DAYS = 30


# ---- holdout ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _bound(share: float) -> int:
    """share x 2^64, exactly, for the decimal ``share`` (0.1 means 1/10), clamped to 0..2^64."""
    exact = Fraction(repr(share)) * (1 << 64)
    return max(0, min(1 << 64, -(-exact.numerator // exact.denominator)))  # ceil: h < x  <=>  h < ceil(x)


def holdout_hash(app_id: str, user_id: str, rule: str) -> int:
    digest = hashlib.sha256(f"{app_id}\x1f{user_id}\x1f{rule}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def in_holdout(app_id: str, user_id: str, rule: str, share: float) -> bool:
    """Whether the user is in the control group of ``rule`` (share 0: nobody; 1: everybody)."""
    if share <= 0:
        return False
    if rule == A.RECALL_STEP:
        rule = A.NO_LOGIN_SHORT
    return holdout_hash(app_id, user_id, rule) < _bound(share)


# ---- priority -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriorityRow:
    """Matches an alert whose rule is in ``rules`` (None: any) and whose user's value tier is in
    ``values`` (None: any; the tier None is a user without a value record)."""

    priority: str
    rules: frozenset[str] | None = None
    values: frozenset[str | None] | None = None


DEFAULT_MATRIX: tuple[PriorityRow, ...] = (
    PriorityRow(P1, CHURN, frozenset({"high"})),
    PriorityRow(P2, CHURN, frozenset({"mid"})),
    PriorityRow(P2, frozenset({A.DEVICE_FARM, A.BURST})),
)


def priority(rule: str, value: str | None, matrix: tuple[PriorityRow, ...] = DEFAULT_MATRIX) -> str:
    for row in matrix:
        if (row.rules is None or rule in row.rules) and (row.values is None or value in row.values):
            return row.priority
    return P3


def matrix_of(settings: SegmentSettings) -> tuple[PriorityRow, ...]:
    """The configured priority rows (``[segments] priority``) as :class:`PriorityRow` s: ``churn.*`` names every
    rule it prefixes, the value tier ``unknown`` a user without a value record."""
    rows = []
    for row in settings.priority:
        rules: set[str] = set()
        for name in row.rules:
            rules |= {r for r in ALERT_RULES if r.startswith(name[:-1])} if name.endswith("*") else {name}
        values = {None if v == "unknown" else v for v in row.values}
        rows.append(PriorityRow(row.priority, frozenset(rules) if rules else None,
                                frozenset(values) if values else None))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """One app's segment settings with what the engine derives from them once: the priority matrix and
    the recall steps in firing order."""

    settings: SegmentSettings
    matrix: tuple[PriorityRow, ...]
    steps: tuple[RecallStep, ...]
    holdout_share: float
    params: VisitParams  # the settings as a day close's visit reads them (segments.visit_params)

    @classmethod
    def of(cls, settings: SegmentSettings) -> SegmentPlan:
        steps = ordered(tuple(RecallStep(s.offset_days, s.action) for s in settings.recall_steps))
        return cls(settings, matrix_of(settings), steps, settings.holdout_share, visit_params(settings))


# ---- context ------------------------------------------------------------------------------------------------


def alert_context(rule: str, state: UserState | None, seg: SegmentState | None, day: int,
                  matrix: tuple[PriorityRow, ...] = DEFAULT_MATRIX) -> dict[str, Any]:
    """The user's standing for an alert of ``rule``: their current segments and the numbers of the 30 days
    ending with ``day`` (the caller's choice: the last closed day at the alert's ``triggered_at``).
    ``fake.device_farm`` describes nobody: all null but the priority."""
    if rule == A.DEVICE_FARM or state is None:
        return {"lifecycle": None, "value": None, "payment_amount_30d": None, "active_days_30d": None,
                "priority": priority(rule, None, matrix)}
    lifecycle = value = None
    if seg is not None:
        lifecycle = None if seg.lifecycle == NONE else LIFECYCLE_SEGMENTS[seg.lifecycle]
        value = None if seg.value == NONE else VALUE_SEGMENTS[seg.value]
    first = day - CONTEXT_WINDOW_DAYS + 1
    return {
        "lifecycle": lifecycle,
        "value": value,
        "payment_amount_30d": amount_micros(state, first, day) / 1_000_000,
        "active_days_30d": active_days(state, first, day),
        "priority": priority(rule, value, matrix),
    }


# ---- recall playbook ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecallStep:
    offset_days: int
    action: str


DEFAULT_STEPS: tuple[RecallStep, ...] = (
    RecallStep(0, "popup_coupon"),
    RecallStep(2, "personal_content"),
    RecallStep(6, "survey"),
)


def ordered(steps: tuple[RecallStep, ...]) -> tuple[RecallStep, ...]:
    """The steps in firing order (by offset; equal offsets keep their configured order). Configuration
    should refuse two steps at one offset: they would share an ``alert_id``."""
    return tuple(sorted(steps, key=lambda step: step.offset_days))


def next_step_at(deadline: int, steps: tuple[RecallStep, ...], fired: int) -> int:
    """When the episode's next step is due (ms), or NONE when all fired. ``steps`` in firing order."""
    return NONE if fired >= len(steps) else deadline + steps[fired].offset_days * DAY_MS


def recall_steps_due(app_id: str, user_id: str, deadline: int, steps: tuple[RecallStep, ...], watermark: int,
                     fired: int) -> list[Alert]:
    """The ``recall.step`` alerts due at ``watermark`` for the open ``churn.no_login_72h`` episode that
    started at ``deadline``, of which the first ``fired`` steps (``steps`` in firing order) were emitted.
    The caller keeps ``fired + len(result)`` with the episode and stops calling once it resolved."""
    episode = alert_id(app_id, A.NO_LOGIN_SHORT, user_id, deadline)
    out: list[Alert] = []
    for number in range(fired, len(steps)):
        step = steps[number]
        at = deadline + step.offset_days * DAY_MS
        if at > watermark:
            break
        out.append(make_alert("open", A.RECALL_STEP, app_id, user_id, at, watermark, {
            "step": number + 1,
            "action": step.action,
            "offset_days": step.offset_days,
            "episode_alert_id": episode,
            "episode_start": deadline,
        }))
    return out


__all__ = [
    "DEFAULT_MATRIX",
    "DEFAULT_STEPS",
    "P1",
    "P2",
    "P3",
    "PriorityRow",
    "RecallStep",
    "alert_context",
    "in_holdout",
    "next_step_at",
    "ordered",
    "priority",
    "recall_steps_due",
]
