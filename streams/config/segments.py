"""Segment thresholds, the alerts' control group, priority matrix and recall playbook (SPEC sections 4
and 7): ``[segments]`` in the TOML file, ``[apps.<app_id>.segments]`` per tenant.

```toml
[segments]
holdout_share = 0.1                    # 10% of users in each rule's control group
recall_steps = [{offset_days = 0, action = "popup_coupon"}, {offset_days = 3, action = "call"}]
priority = [{priority = "P1", rules = ["churn.*"], values = ["high", "mid"]}]

[apps.shop.segments]
value_high_at_least = 2000
recall_steps = []                      # no playbook for this app
```
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from streams.config.errors import ConfigError

PRIORITIES = ("P1", "P2", "P3")
VALUE_TIERS = ("none", "low", "mid", "high", "unknown")  # "unknown": a user without a value record
# the rules an alert can carry (SPEC sections 3 and 4) and the patterns a priority row may name
ALERT_RULES = ("churn.no_login_72h", "churn.activity_drop", "churn.no_interaction_60d", "churn.no_login_90d",
               "fake.hollow_activity", "fake.burst", "fake.device_farm", "recall.step")
MAX_STEPS = 16  # an episode's recall steps: each is an alert; the list is per app
MAX_ROWS = 64


class RecallStepSetting(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    offset_days: int
    action: str


class PriorityRowSetting(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The first row matching an alert's rule and its user's value tier gives its priority; no row: P3.
    ``rules``: rule names or prefixes ending in ``*`` (``churn.*``), empty: any rule; ``values``: value
    tiers (``unknown``: no value record), empty: any tier."""

    priority: str
    rules: list[str] = []
    values: list[str] = []


DEFAULT_STEPS = (RecallStepSetting(0, "popup_coupon"), RecallStepSetting(2, "personal_content"),
                 RecallStepSetting(6, "survey"))
DEFAULT_PRIORITY = (
    PriorityRowSetting("P1", ["churn.*", "recall.step"], ["high"]),
    PriorityRowSetting("P2", ["churn.*", "recall.step"], ["mid"]),
    PriorityRowSetting("P2", ["fake.device_farm", "fake.burst"]),
)
# windows and thresholds (the numbers; the lists are checked apart)
AT_LEAST_ONE = frozenset({"lifecycle_window_days", "lifecycle_churn_days", "value_window_days",
                          "potential_streak_days", "potential_no_payment_days", "potential_convert_days"})


class SegmentSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """SPEC section 7's definitions (defaults as in the spec), the control group's share, the priority
    matrix and the recall playbook."""

    lifecycle_window_days: int = 7  # new: F >= D-6; returning/resurrecting: D-6..D vs D-13..D-7
    lifecycle_churn_days: int = 30  # dormant: active in D-29..D-7; churned: not even that
    value_window_days: int = 30  # M = payment amount in D-29..D
    value_high_at_least: float = 500.0  # high: M >= 500
    value_mid_above: float = 100.0  # mid: M > 100 (low: M > 0)
    potential_streak_days: int = 7  # logged in on each of D-6..D
    potential_no_payment_days: int = 30  # and paid nothing in D-29..D
    potential_convert_days: int = 30  # converted: a payment on days entry..entry+30; else lapsed at entry+30
    holdout_share: float = 0.0
    recall_steps: tuple[RecallStepSetting, ...] = DEFAULT_STEPS
    priority: tuple[PriorityRowSetting, ...] = DEFAULT_PRIORITY

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, tuple):
                continue
            if isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"segments.{name} must be a number >= 0, got {value}", key=f"segments.{name}")
            if name in AT_LEAST_ONE and value < 1:
                raise ConfigError(f"segments.{name} must be >= 1, got {value}", key=f"segments.{name}")
        if self.days_needed > 400:
            raise ConfigError("segment windows longer than 400 days are not supported", key="segments")
        if self.value_high_at_least < self.value_mid_above:
            raise ConfigError("segments.value_high_at_least must not be below segments.value_mid_above",
                              key="segments.value_high_at_least")
        if self.holdout_share > 1:
            raise ConfigError(f"segments.holdout_share is a share of users: 0..1, got {self.holdout_share}",
                              key="segments.holdout_share")
        _check_steps(self.recall_steps)
        _check_priority(self.priority)

    @property
    def high_micros(self) -> int:
        return round(self.value_high_at_least * 1_000_000)

    @property
    def mid_micros(self) -> int:
        return round(self.value_mid_above * 1_000_000)

    @property
    def days_needed(self) -> int:
        """Days of counters the segment windows read back from the closing day (the state must keep them)."""
        return max(2 * self.lifecycle_window_days, self.lifecycle_churn_days, self.value_window_days,
                   self.potential_streak_days, self.potential_no_payment_days)


def _check_steps(steps: tuple[RecallStepSetting, ...]) -> None:
    if len(steps) > MAX_STEPS:
        raise ConfigError(f"segments.recall_steps: at most {MAX_STEPS} steps", key="segments.recall_steps")
    offsets = [s.offset_days for s in steps]
    for step in steps:
        if not 0 <= step.offset_days <= 365:
            raise ConfigError(f"segments.recall_steps: offset_days must be 0..365, got {step.offset_days}",
                              key="segments.recall_steps")
        if not 0 < len(step.action) <= 64:
            raise ConfigError("segments.recall_steps: action must be 1-64 characters", key="segments.recall_steps")
    if len(set(offsets)) != len(offsets):  # two steps at one moment would share an alert_id
        raise ConfigError("segments.recall_steps: two steps at one offset_days", key="segments.recall_steps")


def _check_priority(rows: tuple[PriorityRowSetting, ...]) -> None:
    if len(rows) > MAX_ROWS:
        raise ConfigError(f"segments.priority: at most {MAX_ROWS} rows", key="segments.priority")
    for row in rows:
        if row.priority not in PRIORITIES:
            raise ConfigError(f"segments.priority: priority must be one of {', '.join(PRIORITIES)}, "
                              f"got {row.priority!r}", key="segments.priority")
        for rule in row.rules:
            prefix = rule[:-1] if rule.endswith("*") else None
            if not (rule in ALERT_RULES or (prefix is not None and any(r.startswith(prefix) for r in ALERT_RULES))):
                raise ConfigError(f"segments.priority: unknown rule {rule!r}", key="segments.priority")
        for value in row.values:
            if value not in VALUE_TIERS:
                raise ConfigError(f"segments.priority: unknown value tier {value!r} "
                                  f"(one of {', '.join(VALUE_TIERS)})", key="segments.priority")


def merged(base: SegmentSettings, override: dict[str, Any], where: str) -> SegmentSettings:
    """``base`` with an app's ``[apps.<app_id>.segments]`` keys over it."""
    if not override:
        return base
    try:
        return msgspec.convert(msgspec.to_builtins(base) | dict(override), SegmentSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}", key=where) from exc
