"""Independent, naive recomputation of the alerts of SPEC sections 2-4.

It replays each partition's events in delivery order exactly as the spec describes time
(stream time, watermark, lateness, the clock-skew cap of a record's timestamp) and evaluates every
rule for *every* user of the partition on every watermark advance and day close — no indexes, no
candidate sets, no shared code with ``streams.engine.rules``. It is slow by design and meant for small
histories (the one shortcut: absence deadlines are scanned only once the watermark reaches a lower
bound of them all).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

from schemas.events import Event
from streams.engine.partitioner import home_partition

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
    recall_fired: int = 0  # recall steps of the open churn.no_login_72h episode emitted


@dataclass
class Cfg:
    lateness: int = H
    short: int = 72 * H
    long: int = 90 * D
    interaction: int = 60 * D
    horizon: int = 24 * H
    burst: int = 100
    farm: int = 5
    skew: int = 5 * 60_000  # an event moves stream time at most to its record's timestamp + this
    recall_steps: tuple[int, ...] = (0, 2, 6)  # the playbook's step offsets in days (SPEC section 4)


Alert = tuple[str, str, str, str, int]  # (alert_id, status, rule, subject, episode_start)


def _absence(u: U, cfg: Cfg) -> dict[str, int]:
    out = {}
    if u.last_login is not None:
        out["churn.no_login_72h"] = u.last_login + cfg.short
        out["churn.no_login_90d"] = u.last_login + cfg.long
    since = u.last_engage if u.last_engage is not None else u.first_ts
    out["churn.no_interaction_60d"] = since + cfg.interaction
    return {r: d for r, d in out.items() if r not in u.open}


def _recall(u: U, cfg: Cfg) -> dict[str, int]:
    """The next recall step of the user's open churn.no_login_72h episode (SPEC section 4)."""
    start = u.open.get("churn.no_login_72h")
    if start is None or u.recall_fired >= len(cfg.recall_steps):
        return {}
    return {"recall.step": start + cfg.recall_steps[u.recall_fired] * D}


def _span(u: U, i: int, first: int, last: int) -> float:
    return sum(c[i] for d, c in u.days.items() if first <= d <= last)


def _day_rules(u: U, day: int) -> dict[str, bool]:
    a, b = _span(u, 0, day - 6, day), _span(u, 0, day - 13, day - 7)
    active = sum(1 for d, c in u.days.items() if day - 29 <= d <= day and c[0] > 0)
    hollow = (active >= 10 and _span(u, 1, day - 29, day) <= 100 + 1e-9 and _span(u, 2, day - 6, day) < 3
              and _span(u, 3, day - 29, day) < 10)
    return {"churn.activity_drop": b >= 10 and 10 * a <= 7 * b, "fake.hollow_activity": hollow}


def partition_alerts(events: list[Event], cfg: Cfg, device_obs: list[Event] | None = None,
                     record_ts: list[int | None] | None = None) -> list[Alert]:
    """Alerts of one partition's events (valid, in delivery order, duplicates included).
    Events counted for the device rule (not more than 2 days behind the watermark) are added to
    ``device_obs``. ``record_ts``: each event's Kafka record timestamp (None: none, no cap)."""
    users: dict[tuple[str, str], U] = {}
    seen: dict[tuple[str, str, str], int] = {}
    alerts: list[Alert] = []
    st: int | None = None
    closed = 0
    bound = -(1 << 62)  # no absence deadline comes before it (a lower bound, maybe stale)

    def advance(wm: int) -> None:
        nonlocal closed, bound
        while True:
            due = []
            if bound <= wm:
                every = [(d, k, r) for k, u in users.items() for r, d in (_absence(u, cfg) | _recall(u, cfg)).items()]
                bound = min((d for d, _, _ in every), default=1 << 62)
                due = [x for x in every if x[0] <= wm]
            day_end = (closed + 2) * D
            if due and min(due)[0] < day_end:
                d, k, r = min(due)
                if r == "recall.step":
                    users[k].recall_fired += 1
                else:
                    users[k].open[r] = d
                    if r == "churn.no_login_72h":
                        users[k].recall_fired = 0
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

    for i, e in enumerate(events):
        prev_wm = None if st is None else st - cfg.lateness
        rts = record_ts[i] if record_ts is not None else None
        t = e.ts if rts is None else min(e.ts, rts + cfg.skew)  # a fast clock moves stream time no further
        if st is None or t > st:
            if st is None:
                closed = (t - cfg.lateness) // D - 1
            st = t
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
        bound = min([bound, *_absence(u, cfg).values()])
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


def expected_alerts(delivered: list[tuple[int, Event]] | list[tuple[int, Event, int | None]], partitions: int,
                    cfg: Cfg | None = None) -> set[Alert]:
    """``delivered``: (kafka partition, event) or (kafka partition, event, record timestamp or
    None) in delivery order. Events delivered on a partition other than their user's home
    partition are rerouted, an ambiguous position: callers keep them out (see tests)."""
    cfg = cfg or Cfg()
    by_part: dict[int, list[Event]] = defaultdict(list)
    stamps: dict[int, list[int | None]] = defaultdict(list)
    for part, e, *rts in delivered:
        assert part == home_partition(e.user_id.encode(), partitions), "rerouted events are ambiguous"
        by_part[part].append(e)
        stamps[part].append(rts[0] if rts else None)
    out: set[Alert] = set()
    obs: list[Event] = []
    for part, evs in by_part.items():
        out.update(partition_alerts(evs, cfg, obs, stamps[part]))
    out.update(device_alerts(obs, cfg))
    return out
