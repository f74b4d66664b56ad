"""Independent, naive recomputation of the alerts of SPEC sections 2-4.

It replays each partition's events in delivery order exactly as the spec describes time
(stream time, watermark, lateness) and evaluates every rule for *every* user of the partition
on every watermark advance and day close — no indexes, no candidate sets, no shared code with
``streams.rules``. It is slow by design and meant for small histories.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from schemas.events import Event
from streams.kafka_io import home_partition

H = 3_600_000
D = 86_400_000
SOCIAL = {"comment", "like", "share", "follow"}


def aid(app: str, rule: str, subject: str, start: int) -> str:
    raw = "\x1f".join((app, rule, subject, str(start))).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


@dataclass
class U:
    first_ts: int
    last_login: int | None = None
    last_engage: int | None = None
    days: dict[int, list] = field(default_factory=lambda: defaultdict(lambda: [0, 0.0, 0, 0]))  # ev, amt, posts, soc
    open: dict[str, int] = field(default_factory=dict)
    minutes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    burst_days: set[int] = field(default_factory=set)


@dataclass
class Cfg:
    lateness: int = H
    short: int = 72 * H
    long: int = 90 * D
    interaction: int = 60 * D
    horizon: int = 24 * H
    burst: int = 100
    farm: int = 5


Alert = tuple[str, str, str, str, int]  # (alert_id, status, rule, subject, episode_start)


def _absence(u: U, cfg: Cfg) -> dict[str, int]:
    out = {}
    if u.last_login is not None:
        out["churn.no_login_72h"] = u.last_login + cfg.short
        out["churn.no_login_90d"] = u.last_login + cfg.long
    since = u.last_engage if u.last_engage is not None else u.first_ts
    out["churn.no_interaction_60d"] = since + cfg.interaction
    return {r: d for r, d in out.items() if r not in u.open}


def _span(u: U, i: int, first: int, last: int) -> float:
    return sum(c[i] for d, c in u.days.items() if first <= d <= last)


def _day_rules(u: U, day: int) -> dict[str, bool]:
    a, b = _span(u, 0, day - 6, day), _span(u, 0, day - 13, day - 7)
    active = sum(1 for d, c in u.days.items() if day - 29 <= d <= day and c[0] > 0)
    hollow = (active >= 10 and _span(u, 1, day - 29, day) <= 100 + 1e-9 and _span(u, 2, day - 6, day) < 3
              and _span(u, 3, day - 29, day) < 10)
    return {"churn.activity_drop": b >= 10 and 10 * a <= 7 * b, "fake.hollow_activity": hollow}


def partition_alerts(events: list[Event], cfg: Cfg, device_obs: list[Event] | None = None) -> list[Alert]:
    """Alerts of one partition's events (valid, in delivery order, duplicates included).
    Events counted for the device rule (not more than 2 days behind the watermark) are added to
    ``device_obs``."""
    users: dict[tuple[str, str], U] = {}
    seen: dict[tuple[str, str, str], int] = {}
    alerts: list[Alert] = []
    st: int | None = None
    closed = 0

    def advance(wm: int) -> None:
        nonlocal closed
        while True:
            due = [(d, k, r) for k, u in users.items() for r, d in _absence(u, cfg).items() if d <= wm]
            day_end = (closed + 2) * D
            if due and min(due)[0] < day_end:
                d, k, r = min(due)
                users[k].open[r] = d
                alerts.append((aid(k[0], r, k[1], d), "open", r, k[1], d))
                continue
            if day_end > wm:
                return
            day = closed + 1
            for k in sorted(users):
                u = users[k]
                for rule, holds in _day_rules(u, day).items():
                    if holds and rule not in u.open:
                        u.open[rule] = day * D
                        alerts.append((aid(k[0], rule, k[1], day * D), "open", rule, k[1], day * D))
                    elif not holds and rule in u.open:
                        start = u.open.pop(rule)
                        alerts.append((aid(k[0], rule, k[1], start), "resolved", rule, k[1], start))
            closed = day

    for e in events:
        prev_wm = None if st is None else st - cfg.lateness
        if st is None or e.ts > st:
            if st is None:
                closed = (e.ts - cfg.lateness) // D - 1
            st = e.ts
            advance(st - cfg.lateness)
        wm = st - cfg.lateness
        ident = (e.app_id, e.user_id, e.event_id)
        if ident in seen and seen[ident] >= wm - cfg.horizon - H:
            continue
        seen[ident] = max(e.ts, wm)
        k = (e.app_id, e.user_id)
        u = users.get(k)
        if u is None:
            u = users[k] = U(first_ts=e.ts)
        u.first_ts = min(u.first_ts, e.ts)
        c = u.days[e.ts // D]
        c[0] += 1
        c[1] += e.amount if e.type == "payment" else 0
        c[2] += e.type == "content_post"
        c[3] += e.type in SOCIAL
        if e.type == "login":
            u.last_login = max(u.last_login or e.ts, e.ts)
            for r in ("churn.no_login_72h", "churn.no_login_90d"):
                if r in u.open and e.ts >= u.open[r]:
                    start = u.open.pop(r)
                    alerts.append((aid(k[0], r, k[1], start), "resolved", r, k[1], start))
        if e.type not in ("login", "logout"):
            u.last_engage = max(u.last_engage or e.ts, e.ts)
            r = "churn.no_interaction_60d"
            if r in u.open and e.ts >= u.open[r]:
                start = u.open.pop(r)
                alerts.append((aid(k[0], r, k[1], start), "resolved", r, k[1], start))
        if device_obs is not None and e.device_id is not None and e.ts // D >= wm // D - 2:
            device_obs.append(e)
        late = prev_wm is not None and e.ts < prev_wm
        if not late:
            minute = e.ts // 60_000
            u.minutes[minute] += 1
            if u.minutes[minute] >= cfg.burst and e.ts // D not in u.burst_days:
                u.burst_days.add(e.ts // D)
                alerts.append((aid(k[0], "fake.burst", k[1], minute * 60_000), "open", "fake.burst", k[1],
                               minute * 60_000))
    return alerts


def device_alerts(events: list[Event], cfg: Cfg) -> list[Alert]:
    users: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for e in events:
        if e.device_id is not None:
            users[(e.app_id, e.device_id, e.ts // D)].add(e.user_id)
    return [(aid(app, "fake.device_farm", dev, day * D), "open", "fake.device_farm", dev, day * D)
            for (app, dev, day), us in users.items() if len(us) >= cfg.farm]


def expected_alerts(delivered: list[tuple[int, Event]], partitions: int, cfg: Cfg | None = None) -> set[Alert]:
    """``delivered``: (kafka partition, event) in delivery order. Events delivered on a partition
    other than their user's home partition are rerouted, an ambiguous position: callers keep
    them out (see tests)."""
    cfg = cfg or Cfg()
    by_part: dict[int, list[Event]] = defaultdict(list)
    for part, e in delivered:
        assert part == home_partition(e.user_id.encode(), partitions), "rerouted events are ambiguous"
        by_part[part].append(e)
    out: set[Alert] = set()
    obs: list[Event] = []
    for evs in by_part.values():
        out.update(partition_alerts(evs, cfg, obs))
    out.update(device_alerts(obs, cfg))
    return out
