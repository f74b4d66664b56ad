"""Alerts from the engine carry the user's standing (SPEC sections 4 and 7), computed here independently:
``context`` from the events sent, ``holdout`` with hashlib as the spec defines it, ``priority`` from the
configured matrix; the recall playbook's steps per app, none after the episode resolved."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

import jsonschema  # type: ignore[import-untyped]
import pytest

from schemas import SCHEMA_DIR
from schemas.alerts import alert_id, encode_alert
from schemas.events import Event
from streams.config.errors import ConfigError
from streams.config.settings import load_settings
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

H = 3_600_000
D = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SCHEMA = jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / "alert.schema.json").read_text()))


def in_group(app: str, user: str, rule: str, share: float) -> bool:
    h = int.from_bytes(hashlib.sha256(f"{app}\x1f{user}\x1f{rule}".encode()).digest()[:8], "big")
    return Fraction(h) < Fraction(str(share)) * 2**64


def run(events: list[Event], **settings: object) -> list:
    part = UserPartition(0, StateStore({}), RulesByApp(load_settings(env={}, **settings)))
    out = Outputs()
    part.apply([("t", i, None, [e], -1) for i, e in enumerate(events)], out)
    for alert in out.alerts:
        SCHEMA.validate(json.loads(encode_alert(alert)))
    return out.alerts


def silent_users(n: int, app: str = "default", paid: float = 0.0) -> list[Event]:
    """``n`` users who log in (and pay ``paid``) on day 0, then go silent; a clock user moves time 10 days on."""
    events = []
    for i in range(n):
        events.append(Event(f"l{i}", f"u{i}", "login", T0 + H + i, app_id=app))
        if paid:
            events.append(Event(f"p{i}", f"u{i}", "payment", T0 + 2 * H + i, app_id=app, amount=paid))
    return events + [Event(f"c{d}", "clock", "view", T0 + d * D + 5 * H, app_id=app) for d in range(1, 11)]


def test_holdout_is_the_specs_hash_for_each_rule() -> None:
    alerts = run(silent_users(200), segments={"holdout_share": 0.3})
    churn = [a for a in alerts if a.user_id != "clock"]
    assert {a.rule for a in churn} == {"churn.no_login_72h", "recall.step"}
    for a in churn:  # recall.step: the group of churn.no_login_72h (the episode's)
        assert a.holdout == in_group(a.app_id, a.user_id, "churn.no_login_72h", 0.3)
    share = sum(a.holdout for a in churn if a.rule == "churn.no_login_72h") / 200
    assert 0.2 < share < 0.4
    assert not any(a.holdout for a in run(silent_users(50)))  # share 0 by default: nobody


def test_context_and_priority() -> None:
    alerts = run(sorted(silent_users(3, paid=600.0) + silent_users(3, app="shop", paid=150.0), key=lambda e: e.ts),
                 apps={"shop": {"segments": {"priority": [{"priority": "P1", "rules": ["churn.*"],
                                                           "values": ["mid"]}]}}})
    opened = [a for a in alerts if a.rule == "churn.no_login_72h"]
    assert len(opened) == 6
    for a in opened:
        paid = 600.0 if a.app_id == "default" else 150.0
        # the 72 h deadline (day 3) comes before day 3 closes: the last closed day is day 2
        assert a.context == {"lifecycle": "new", "value": "high" if paid == 600.0 else "mid",
                             "payment_amount_30d": paid, "active_days_30d": 1, "priority": "P1"}
    step = next(a for a in alerts if a.rule == "recall.step" and a.app_id == "default")
    assert step.context["priority"] == "P1"  # churn priority: a recall step is a churn alert


def test_recall_steps_per_app_and_none_after_resolution() -> None:
    events = silent_users(2) + silent_users(2, app="quiet") + [Event("back", "u1", "login", T0 + 5 * D + 6 * H)]
    events += [Event(f"c{d}", "clock", "view", T0 + d * D + 5 * H) for d in range(11, 16)]
    alerts = run(sorted(events, key=lambda e: e.ts), apps={"quiet": {"segments": {"recall_steps": []}}})
    steps = [(a.app_id, a.user_id, a.evidence["step"], a.evidence["action"], a.episode_start)
             for a in alerts if a.rule == "recall.step"]
    deadline = [T0 + H + i + 72 * H for i in range(2)]
    again = T0 + 5 * D + 6 * H + 72 * H  # u1's next episode, after the login of day 5
    # u0 stays away: all three steps; u1 logs in on day 5, between step 2 (day 5 + 1 h) and step 3: two, then
    # a new episode with its own three; the app "quiet" has no playbook
    assert sorted(steps) == sorted([("default", "u0", 1, "popup_coupon", deadline[0]),
                                    ("default", "u0", 2, "personal_content", deadline[0] + 2 * D),
                                    ("default", "u0", 3, "survey", deadline[0] + 6 * D),
                                    ("default", "u1", 1, "popup_coupon", deadline[1]),
                                    ("default", "u1", 2, "personal_content", deadline[1] + 2 * D),
                                    ("default", "u1", 1, "popup_coupon", again),
                                    ("default", "u1", 2, "personal_content", again + 2 * D),
                                    ("default", "u1", 3, "survey", again + 6 * D)])
    assert {a.app_id for a in alerts if a.rule == "churn.no_login_72h"} == {"default", "quiet"}
    step = next(a for a in alerts if a.rule == "recall.step")
    assert step.evidence["episode_alert_id"] == alert_id("default", "churn.no_login_72h", step.user_id,
                                                         step.evidence["episode_start"])
    assert step.level == 0 and step.status == "open"


def test_device_farm_context_describes_nobody() -> None:
    from streams.engine.devices import DeviceObservations, DevicePartition

    rules = RulesByApp(load_settings(env={}))
    devices = DevicePartition(0, {}, rules)
    alerts: list = []
    obs = [(T0 // D, f"u{i}", T0 + i) for i in range(5)]
    devices.apply(DeviceObservations("default", "dev", obs, 0, T0, T0), alerts)
    (a,) = alerts
    assert a.context == {"lifecycle": None, "value": None, "payment_amount_30d": None, "active_days_30d": None,
                         "priority": "P2"}
    assert a.holdout is False
    SCHEMA.validate(json.loads(encode_alert(a)))


@pytest.mark.parametrize("segments", [{"recall_steps": [{"offset_days": 1, "action": "a"},
                                                        {"offset_days": 1, "action": "b"}]},
                                      {"holdout_share": 1.5}, {"priority": [{"priority": "P0"}]},
                                      {"priority": [{"priority": "P1", "rules": ["churn.nope"]}]},
                                      {"value_high_at_least": 10, "value_mid_above": 20},
                                      {"lifecycle_window_days": 0}, {"unknown": 1}])
def test_bad_segment_settings_fail_at_startup(segments: dict) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, segments=segments)
    assert "segments" in str(caught.value)
