"""Holdout, priority, alert context and the recall playbook (SPEC sections 4 and 7), on the pure functions."""

from __future__ import annotations

import hashlib
from fractions import Fraction

from schemas import alerts as A
from schemas.alerts import alert_id
from streams.engine import holdout as HO
from streams.engine.segments import SegmentState
from streams.engine.state import UserState

D = 86_400_000
T0 = 1_767_225_600_000
DAY0 = T0 // D


def reference(app_id: str, user_id: str, rule: str) -> int:
    """SPEC 7, independently: first 8 bytes of SHA-256(app_id \\x1f user_id \\x1f rule), unsigned big-endian."""
    digest = hashlib.sha256(app_id.encode() + b"\x1f" + user_id.encode() + b"\x1f" + rule.encode()).digest()
    return int.from_bytes(digest[:8], byteorder="big", signed=False)


def test_holdout_known_vectors() -> None:
    # computed once with hashlib: 0xa8c0... / 2^64 = 0.6592, 0x35e3... / 2^64 = 0.2105
    assert reference("default", "u1", A.NO_LOGIN_SHORT) == 0xA8C024E36CDC7DBC
    assert reference("default", "u2", A.NO_LOGIN_SHORT) == 0x35E33ECAC505382F
    assert HO.in_holdout("default", "u1", A.NO_LOGIN_SHORT, 0.66)
    assert not HO.in_holdout("default", "u1", A.NO_LOGIN_SHORT, 0.659)
    assert HO.in_holdout("default", "u2", A.NO_LOGIN_SHORT, 0.211)
    assert not HO.in_holdout("default", "u2", A.NO_LOGIN_SHORT, 0.21)


def test_holdout_share_boundaries_and_share_of_users() -> None:
    users = [f"user-{i}" for i in range(2000)]
    for rule in (A.NO_LOGIN_SHORT, A.HOLLOW):
        assert not any(HO.in_holdout("app", u, rule, 0.0) for u in users)
        assert all(HO.in_holdout("app", u, rule, 1.0) for u in users)
        for share in (0.1, 0.3):
            bound = Fraction(str(share)) * 2**64
            got = [HO.in_holdout("app", u, rule, share) for u in users]
            assert got == [reference("app", u, rule) < bound for u in users]
            assert abs(sum(got) / len(users) - share) < 0.04


def test_holdout_exact_at_the_bound() -> None:
    h = reference("default", "u2", A.NO_LOGIN_SHORT)
    # a share whose decimal text is exactly h / 2^64 would need 64 digits: check the bound arithmetic instead
    assert HO._bound(0.5) == 1 << 63 and HO._bound(1.0) == 1 << 64 and HO._bound(0.0) == 0
    assert HO._bound(0.1) == -(-(1 << 64) // 10)  # ceil(2^64 / 10): h < 2^64/10 <=> h < ceil(...)
    assert (h < HO._bound(0.25)) == (h < (1 << 62))


def test_recall_step_uses_the_episode_rule_group() -> None:
    users = [f"user-{i}" for i in range(500)]
    step = [HO.in_holdout("a", u, A.RECALL_STEP, 0.5) for u in users]
    assert step == [HO.in_holdout("a", u, A.NO_LOGIN_SHORT, 0.5) for u in users]
    assert step != [HO.in_holdout("a", u, A.NO_LOGIN_LONG, 0.5) for u in users]  # groups differ per rule


def test_priority_default_matrix() -> None:
    for rule in (*A.CHURN_RULES, A.RECALL_STEP):
        assert [HO.priority(rule, v) for v in ("high", "mid", "low", "none", None)] == ["P1", "P2", "P3", "P3", "P3"]
    for rule in (A.BURST, A.DEVICE_FARM):
        assert [HO.priority(rule, v) for v in ("high", "mid", None)] == ["P2", "P2", "P2"]
    assert [HO.priority(A.HOLLOW, v) for v in ("high", "mid", None)] == ["P3", "P3", "P3"]
    custom = (HO.PriorityRow("P1", values=frozenset({"high"})),)
    assert HO.priority(A.HOLLOW, "high", custom) == "P1" and HO.priority(A.BURST, "mid", custom) == "P3"


def test_alert_context() -> None:
    state = UserState(first_ts=T0, days={DAY0: (3, 1, 1, 600_000_000, 0, 0, 0), DAY0 + 10: (1, 0, 0, 0, 0, 0, 0),
                                         DAY0 + 31: (1, 1, 0, 0, 0, 0, 0)})
    seg = SegmentState(lifecycle=1, value=3)
    assert HO.alert_context(A.NO_LOGIN_SHORT, state, seg, DAY0 + 29) == {
        "lifecycle": "returning", "value": "high", "payment_amount_30d": 600.0, "active_days_30d": 2, "priority": "P1"}
    assert HO.alert_context(A.NO_LOGIN_SHORT, state, seg, DAY0 + 30)["active_days_30d"] == 1  # day 0 left
    assert HO.alert_context(A.HOLLOW, state, SegmentState(), DAY0)["value"] is None
    assert HO.alert_context(A.DEVICE_FARM, None, None, DAY0) == {
        "lifecycle": None, "value": None, "payment_amount_30d": None, "active_days_30d": None, "priority": "P2"}
    assert HO.alert_context(A.DEVICE_FARM, state, seg, DAY0)["lifecycle"] is None  # describes nobody


def test_recall_steps_due() -> None:
    steps = HO.ordered(HO.DEFAULT_STEPS)
    deadline = T0 + 72 * 3_600_000
    assert HO.recall_steps_due("a", "u", deadline, steps, deadline - 1, 0) == []
    (first,) = HO.recall_steps_due("a", "u", deadline, steps, deadline, 0)
    episode = alert_id("a", A.NO_LOGIN_SHORT, "u", deadline)
    assert (first.rule, first.status, first.level, first.episode_start, first.triggered_at) == (
        "recall.step", "open", 0, deadline, deadline)
    assert first.evidence == {"step": 1, "action": "popup_coupon", "offset_days": 0, "episode_alert_id": episode,
                              "episode_start": deadline}
    assert first.alert_id == alert_id("a", A.RECALL_STEP, "u", deadline)
    assert HO.recall_steps_due("a", "u", deadline, steps, deadline + 2 * D - 1, 1) == []
    # a watermark jump past every step: the rest at once, each at its own moment, one-shot given ``fired``
    rest = HO.recall_steps_due("a", "u", deadline, steps, deadline + 9 * D, 1)
    assert [(a.evidence["action"], a.episode_start) for a in rest] == [
        ("personal_content", deadline + 2 * D), ("survey", deadline + 6 * D)]
    assert {a.triggered_at for a in rest} == {deadline + 9 * D}
    assert len({first.alert_id, *(a.alert_id for a in rest)}) == 3
    assert HO.recall_steps_due("a", "u", deadline, steps, deadline + 99 * D, 3) == []
    assert HO.recall_steps_due("a", "u", deadline, (), deadline + 99 * D, 0) == []  # no steps configured
    assert [HO.next_step_at(deadline, steps, k) for k in range(4)] == [
        deadline, deadline + 2 * D, deadline + 6 * D, -1]
    assert HO.ordered((HO.RecallStep(6, "survey"), HO.RecallStep(0, "popup_coupon")))[0].action == "popup_coupon"
