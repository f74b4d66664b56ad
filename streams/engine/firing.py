"""What an event fires on the spot, shared by the engine's two loops (``UserPartition._apply_py`` and its
C twin, which calls these back): the absence episodes a login or an engagement ends, the burst alert of a
minute that reaches the threshold; and what each event type counts."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from schemas import alerts as A
from schemas.events import SOCIAL_TYPES
from streams.config.settings import RuleSettings
from streams.engine import rules as R
from streams.engine.state import COMPLAINTS, LOGINS, PAYMENTS, POSTS, SOCIAL, UserState


class AlertMaker(Protocol):
    """The partition, which gives an alert its user's standing (``SegmentActions.alert``)."""

    def alert(self, status: Literal["open", "resolved"], rule: str, app_id: str, user_id: str, episode_start: int,
              triggered_at: int, evidence: dict[str, Any], state: UserState | None, day: int | None = None
              ) -> A.Alert: ...

# counter index of each event type beyond EVENTS (payments also add their amount)
TYPE_COUNTER = {"login": LOGINS, "payment": PAYMENTS, "content_post": POSTS, "complaint": COMPLAINTS,
                **dict.fromkeys(SOCIAL_TYPES, SOCIAL)}


def resolve(part: AlertMaker, alerts: list[A.Alert], state: UserState, ts: int, is_login: bool, app_id: str,
            user_id: str, wm: int) -> None:
    """A login (else an engagement) at ``ts`` ends the open absence episodes it can (R.on_activity)."""
    for d in R.on_activity(state, ts, is_login, not is_login):
        alerts.append(part.alert(d.status, d.rule, app_id, user_id, d.episode_start, wm, d.evidence, state))


def burst_alert(part: AlertMaker, alerts: list[A.Alert], state: UserState, ts: int, count: int, rules: RuleSettings,
                app_id: str, user_id: str, wm: int) -> None:
    """``count`` events in the minute of ``ts`` reach the burst threshold: the day's alert, once."""
    d = R.burst_reached(state, ts, count, rules)
    if d is not None:
        alerts.append(part.alert("open", d.rule, app_id, user_id, d.episode_start, wm, d.evidence, state))
