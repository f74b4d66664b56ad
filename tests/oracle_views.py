"""Independent Python recomputation of the analyst views (sinks/views.py) from the aggregates oracle
(tests/oracle.py, per user-day activity computed from the generated history) and from the alert
records as published on the alerts topic."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

D = 86_400_000
RECALL_MS = 72 * 3_600_000
EPISODE_RULES = {"churn.no_login_72h", "churn.activity_drop", "churn.no_interaction_60d", "churn.no_login_90d",
                 "fake.hollow_activity"}
EPOCH = date(1970, 1, 1)

Daily = dict[tuple[str, str, str], tuple[Any, ...]]  # (app, user, "YYYY-MM-DD") -> counters


def day_str(dn: int) -> str:
    return str(EPOCH + timedelta(days=dn))


def day_num(s: str) -> int:
    return (date.fromisoformat(s) - EPOCH).days


def active_days(daily: Daily) -> tuple[dict[str, dict[int, set[str]]], int]:
    by_app: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for (app, user, day), counters in daily.items():
        if counters[0] > 0:
            by_app[app][day_num(day)].add(user)
    last = max(dn for days in by_app.values() for dn in days)
    return by_app, last


def active_users(daily: Daily) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(app, day) -> (dau, wau, mau); rows where someone was active in the 30 days ending on the day."""
    by_app, last = active_days(daily)
    out = {}
    for app, days in by_app.items():
        for dn in range(min(days), last + 1):
            window = [days.get(k, set()) for k in range(dn - 29, dn + 1)]
            mau = set().union(*window)
            if mau:
                out[(app, day_str(dn))] = (len(days.get(dn, set())), len(set().union(*window[-7:])), len(mau))
    return out


def retention(daily: Daily) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(app, cohort day, offset) -> (cohort size, retained)."""
    by_app, last = active_days(daily)
    user_days: dict[tuple[str, str], set[int]] = defaultdict(set)
    for app, days in by_app.items():
        for dn, users in days.items():
            for u in users:
                user_days[(app, u)].add(dn)
    acc: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for (app, _user), days in user_days.items():
        cohort = min(days)
        for k in range(last - cohort + 1):
            cell = acc[(app, day_str(cohort), k)]
            cell[0] += 1
            cell[1] += (cohort + k) in days
    return {key: (v[0], v[1]) for key, v in acc.items()}


def episodes(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """alert_id -> {app, rule, level, user, start, resolved, end} for churn and hollow episodes."""
    out: dict[str, dict[str, Any]] = {}
    resolutions: dict[str, int] = {}
    for a in alerts:
        if a["rule"] not in EPISODE_RULES:
            continue
        if a["status"] == "open":
            out[a["alert_id"]] = {"app": a["app_id"], "rule": a["rule"], "level": a["level"], "user": a["user_id"],
                                  "start": a["episode_start"]}
        else:
            ev = a["evidence"]
            end = ev.get("login_ts", ev.get("engagement_ts", ev["day"] * D if "day" in ev else a["triggered_at"]))
            resolutions[a["alert_id"]] = max(resolutions.get(a["alert_id"], end), end)
    for aid, ep in out.items():
        ep["resolved"] = aid in resolutions
        ep["end"] = resolutions.get(aid, 0)
    return out


def churn_ladder(alerts: list[dict[str, Any]], last_day: int) -> dict[tuple[str, str, str], int]:
    """(app, day, rule) -> users with the rule's episode open at the end of the day."""
    users: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for ep in episodes(alerts).values():
        if not ep["rule"].startswith("churn."):
            continue
        stop = ep["end"] // D if ep["resolved"] else last_day + 1
        for dn in range(ep["start"] // D, stop):
            users[(ep["app"], day_str(dn), ep["rule"])].add(ep["user"])
    return {k: len(v) for k, v in users.items()}


def recall(alerts: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(app, flag day) -> (flagged, back within 72 h, back later, not back)."""
    acc: dict[tuple[str, str], list[set[str]]] = defaultdict(lambda: [set(), set(), set(), set()])
    for ep in episodes(alerts).values():
        if ep["rule"] != "churn.no_login_72h":
            continue
        cell = acc[(ep["app"], day_str(ep["start"] // D))]
        cell[0].add(ep["user"])
        if not ep["resolved"]:
            cell[3].add(ep["user"])
        elif ep["end"] - ep["start"] <= RECALL_MS:
            cell[1].add(ep["user"])
        else:
            cell[2].add(ep["user"])
    return {k: (len(a), len(b), len(c), len(e)) for k, (a, b, c, e) in acc.items()}


def _flagged(alerts: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[set[str], set[str]]]:
    acc: dict[tuple[str, str, str], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for a in alerts:
        if a["status"] != "open" or not a["rule"].startswith("fake."):
            continue
        ids, users = acc[(a["app_id"], day_str(a["episode_start"] // D), a["rule"])]
        ids.add(a["alert_id"])
        users.update(a["user_ids"] if a["rule"] == "fake.device_farm" else [a["user_id"]])
    return acc


def fake_flags(alerts: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(app, day, rule) -> (alerts, distinct users named)."""
    return {k: (len(ids), len(users)) for k, (ids, users) in _flagged(alerts).items()}


def fake_share(daily: Daily, alerts: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(app, day) -> (active users, users flagged by any fake rule that day), for days with activity."""
    by_app, _last = active_days(daily)
    flagged: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (app, day, _rule), (_ids, users) in _flagged(alerts).items():
        flagged[(app, day)] |= users
    return {
        (app, day_str(dn)): (len(users), len(flagged.get((app, day_str(dn)), set())))
        for app, days in by_app.items()
        for dn, users in days.items()
    }
