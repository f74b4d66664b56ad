"""Alert model (SPEC section 4) and its JSON encoding."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

SCHEMA_VERSION = 1

NO_LOGIN_SHORT = "churn.no_login_72h"
ACTIVITY_DROP = "churn.activity_drop"
NO_INTERACTION = "churn.no_interaction_60d"
NO_LOGIN_LONG = "churn.no_login_90d"
HOLLOW = "fake.hollow_activity"
BURST = "fake.burst"
DEVICE_FARM = "fake.device_farm"
# the recall playbook's steps (SPEC section 4): one-shot, level 0, while a NO_LOGIN_SHORT episode is open
RECALL_STEP = "recall.step"

RULES: tuple[str, ...] = (NO_LOGIN_SHORT, ACTIVITY_DROP, NO_INTERACTION, NO_LOGIN_LONG, HOLLOW, BURST, DEVICE_FARM)
CHURN_RULES: tuple[str, ...] = (NO_LOGIN_SHORT, ACTIVITY_DROP, NO_INTERACTION, NO_LOGIN_LONG)
FAKE_RULES: tuple[str, ...] = (HOLLOW, BURST, DEVICE_FARM)
# the rules whose alerts open an episode that a later alert resolves, in the order of a user's
# episode slots (``UserState.open``)
EPISODE_RULES: tuple[str, ...] = (NO_LOGIN_SHORT, ACTIVITY_DROP, NO_INTERACTION, NO_LOGIN_LONG, HOLLOW)
LEVELS: dict[str, int | None] = {
    NO_LOGIN_SHORT: 0,
    ACTIVITY_DROP: 1,
    NO_INTERACTION: 2,
    NO_LOGIN_LONG: 3,
    HOLLOW: None,
    BURST: None,
    DEVICE_FARM: None,
    RECALL_STEP: 0,
}


class Alert(msgspec.Struct, frozen=True, omit_defaults=False):
    alert_id: str
    status: Literal["open", "resolved"]
    rule: str
    level: int | None
    app_id: str
    user_id: str | None
    device_id: str | None
    user_ids: list[str] | None
    episode_start: int
    triggered_at: int
    evidence: dict[str, Any]
    # the user's standing when the alert was decided (SPEC sections 4 and 7): lifecycle, value,
    # payment_amount_30d, active_days_30d, priority; for fake.device_farm only priority is set
    context: dict[str, Any] | None = None
    # the user is in the rule's control group (SPEC section 7, streams.engine.holdout.in_holdout)
    holdout: bool = False
    schema_version: int = SCHEMA_VERSION

    @property
    def kafka_key(self) -> bytes:
        subject = self.device_id if self.rule == DEVICE_FARM else self.user_id
        return (subject or "").encode()


def alert_id(app_id: str, rule: str, subject: str, episode_start: int) -> str:
    """Deterministic id: the same (app_id, rule, subject, episode start) gives the same id."""
    raw = "\x1f".join((app_id, rule, subject, str(episode_start))).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def make_alert(
    status: Literal["open", "resolved"],
    rule: str,
    app_id: str,
    subject: str,
    episode_start: int,
    triggered_at: int,
    evidence: dict[str, Any],
    user_ids: list[str] | None = None,
    context: dict[str, Any] | None = None,
    holdout: bool = False,
) -> Alert:
    device = rule == DEVICE_FARM
    return Alert(
        alert_id=alert_id(app_id, rule, subject, episode_start),
        status=status,
        rule=rule,
        level=LEVELS[rule],
        app_id=app_id,
        user_id=None if device else subject,
        device_id=subject if device else None,
        user_ids=user_ids if device else None,
        episode_start=episode_start,
        triggered_at=triggered_at,
        evidence=evidence,
        context=context,
        holdout=holdout,
    )


_encoder = msgspec.json.Encoder()


def encode_alert(alert: Alert) -> bytes:
    return _encoder.encode(alert)


def decode_alert(data: bytes) -> Alert:
    return msgspec.json.decode(data, type=Alert)
