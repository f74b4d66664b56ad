"""Deterministic traffic generator: realistic event histories with personas and faults.

Personas (each made to trigger what it is named for):
regular, payer, creator, churner (stops: no_login_72h, activity_drop, later no_interaction_60d),
returner (a gap of 4-5 days: no_login_72h opens then resolves), hollow (logs in daily with thin
activity: fake.hollow_activity), bot (one burst of 120+ events in a minute: fake.burst) and
farm (six users on one device on one day: fake.device_farm).

``GenConfig.hostile`` mixes in hostile but valid input (issue 23, ``streams/devtools/hostile.py``): a hot user,
a steady bot, a device shared by 100k users, 100k app ids, ten years of backfill with their original
record timestamps, offline phones syncing 45-day-old events, a fast clock; ``hostile_scale`` shrinks it.

Faults: redelivered duplicates, bounded out-of-order delivery, a few events delivered too late,
unkeyed or mis-keyed messages, and invalid payloads with known reasons.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import cast

import orjson

from schemas.time_units import DAY_MS, MINUTE_MS
from streams.devtools.event_count import (
    BURST,
    DAYS,
    FARM,
    FILLER,
    fault_budget,
    fit,
    invalid_events,
    pick_duplicates,
    story_cut,
)
from streams.engine.partitioner import home_partition

PERSONAS = ("regular", "payer", "creator", "churner", "returner", "hollow", "bot", "farm")
WEIGHTS = (40, 10, 8, 12, 8, 10, 6, 6)
ENGAGE = ("view", "like", "comment", "share", "follow", "view", "view", "search")


def default_users(events: int, days: int) -> int:
    """Users for ``events`` over ``days`` when none are asked for: room for every persona's story (they
    need about 8 events a user for the bursts and 0.75 a user-day), with as many again for activity."""
    return max(1, events // (12 + days))


@dataclass
class GenConfig:
    users: int = 2000
    days: int = 21
    events: int = 100_000  # exactly the events the messages hold (duplicates, invalid included; hostile not)
    seed: int = 1
    batch: int = 1  # events per message (1 = single-event messages)
    partitions: int = 8
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    dup_rate: float = 0.01
    disorder_ms: int = 20 * MINUTE_MS
    too_late_rate: float = 0.0005
    too_late_ms: int = 3 * 3_600_000
    unkeyed_rate: float = 0.002
    invalid_rate: float = 0.002
    apps: tuple[str, ...] = ("default",)
    batch_window_ms: int = 10 * MINUTE_MS  # an SDK sends a user's batch when full or this old
    hostile: bool = False  # mix in hostile but valid input (streams/devtools/hostile.py)
    hostile_scale: float = 1.0  # its size: 1 = what issue 23 names; less for tests
    weights: tuple[int, ...] = WEIGHTS  # of PERSONAS (a test may want more bots, farms or churners)


@dataclass
class Message:
    partition: int
    key: bytes | None
    value: bytes
    sort_ts: int
    expect_invalid: list[str] = field(default_factory=list)
    timestamp: int | None = None  # the Kafka record's timestamp (epoch ms); None: the producer's clock at send


@dataclass
class History:
    config: GenConfig
    messages: list[Message]
    personas: dict[str, str]  # user_id -> persona
    duplicate_events: int = 0  # of config.events: redelivered (in messages sent again)
    invalid_events: int = 0  # of config.events: in the invalid messages (one each; a good and a bad one in some)
    story_cut: str = ""  # what config.events was too few for (event_count.story_cut)

    @property
    def n_events(self) -> int:
        """Every event the messages hold (an unparseable payload counts as one)."""
        return sum(1 for m in self.messages for _ in _events_of(m.value))

    def describe(self) -> str:
        """What the history holds, for people: events and messages told apart."""
        cfg = self.config
        text = (f"{cfg.events:,} events ({self.duplicate_events:,} of them redelivered, {self.invalid_events:,} "
                f"in invalid messages)")
        if cfg.hostile:
            text += f" and {self.n_events - cfg.events:,} hostile events"
        return text + f" of {cfg.users:,} users over {cfg.days} days in {len(self.messages):,} messages"

    def behind_watermark(self, lateness_ms: int) -> float:
        """The share of events that arrive below their partition's watermark (stream time, the
        largest ``ts`` delivered before on the message's partition, minus ``lateness_ms``)."""
        stream_time: dict[int, int] = {}
        behind = total = 0
        for m in self.messages:
            st = stream_time.get(m.partition, -1)
            for ev in _events_of(m.value):
                ts = ev.get("ts") if isinstance(ev, dict) else None
                if not isinstance(ts, int):
                    continue
                total += 1
                if st >= 0 and ts < st - lateness_ms:
                    behind += 1
                st = max(st, ts)
            stream_time[m.partition] = st
        return behind / total if total else 0.0


def _events_of(value: bytes) -> list[object]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return [None]
    return doc if isinstance(doc, list) else [doc]


def _active_days(persona: str, days: int, rng: random.Random) -> list[int]:
    if persona == "churner":
        stop = rng.randint(max(2, days // 3), max(3, (2 * days) // 3))
        return [d for d in range(stop) if rng.random() < 0.9]
    if persona == "returner":
        gap_start = rng.randint(2, max(3, days - 7))
        gap = rng.randint(4, 5)
        return [d for d in range(days) if not gap_start <= d < gap_start + gap and rng.random() < 0.9]
    if persona == "hollow":
        return list(range(days))
    p = {"regular": 0.6, "payer": 0.7, "creator": 0.7, "bot": 0.5, "farm": 0.5}[persona]
    # half of the regular users join during the history (new-user cohorts for retention)
    joined = rng.randrange(days) if persona == "regular" and rng.random() < 0.5 else 0
    return [d for d in range(joined, days) if d == joined or rng.random() < p]


def _day_types(persona: str, n: int, rng: random.Random) -> list[str]:
    if persona == "hollow":
        return ["login"] + ["view"] * max(0, min(n, 3) - 1)
    types = ["login"]
    for _ in range(n - 1):
        r = rng.random()
        if persona == "payer" and r < 0.15:
            types.append("payment")
        elif persona == "creator" and r < 0.3:
            types.append("content_post")
        elif r < 0.01:
            types.append("complaint")
        elif r < 0.03:
            types.append("logout")
        else:
            types.append(rng.choice(ENGAGE))
    return types


def generate(cfg: GenConfig) -> History:
    """A history whose messages hold exactly ``cfg.events`` events (streams/devtools/event_count.py),
    plus the hostile input's with ``cfg.hostile``."""
    rng = random.Random(cfg.seed)
    personas: dict[str, str] = {}
    plans: list[tuple[str, str, str, list[int]]] = []
    for i in range(cfg.users):
        persona = rng.choices(PERSONAS, cfg.weights)[0]
        user = f"u{i:07d}"
        personas[user] = persona
        app = cfg.apps[i % len(cfg.apps)]
        plans.append((user, app, persona, _active_days(persona, cfg.days, rng)))
    dup_events, invalid_kinds = fault_budget(cfg.events, cfg.batch, cfg.dup_rate, cfg.invalid_rate, rng)
    story = cfg.events - dup_events - sum(map(invalid_events, invalid_kinds))
    events, tiers = _persona_events(cfg, plans, story, rng)
    pad_from = [i for i, ev in enumerate(events)
                if tiers[i] in (FILLER, DAYS) and personas[str(ev["user_id"])] not in ("hollow", "bot")]
    seq = len(events)

    def pad(base: dict[str, object] | None) -> dict[str, object]:
        nonlocal seq
        seq += 1
        if base is None:  # no persona event at all: the first user's first day
            user, app = (plans[0][0], plans[0][1]) if plans else ("u0000000", cfg.apps[0])
            return {"event_id": f"e{seq:010d}", "user_id": user, "type": "login",
                    "ts": cfg.start_ms + 12 * 3_600_000 + seq % 40_000 * 1_000, "app_id": app, "device_id": f"d-{user}"}
        ts = int(cast(int, base["ts"]))
        day_end = ts - ts % DAY_MS + DAY_MS - 1  # the same UTC day: the user's active days stay as they are
        return {"event_id": f"e{seq:010d}", "user_id": base["user_id"], "type": rng.choice(ENGAGE),
                "ts": min(day_end, ts + rng.randint(1_000, 120_000)), "app_id": base["app_id"],
                "device_id": base["device_id"]}

    events, cut = fit(events, tiers, story, rng, pad, pad_from)
    messages = _deliver(events, cfg, rng, dup_events, invalid_kinds)
    if cfg.hostile:
        from streams.devtools.hostile import mix_in

        messages = mix_in(cfg, messages, personas)
    return History(cfg, messages, personas, dup_events, sum(map(invalid_events, invalid_kinds)),
                   story_cut(cut, cfg.events))


def _persona_events(cfg: GenConfig, plans: list[tuple[str, str, str, list[int]]], target: int,
                    rng: random.Random) -> tuple[list[dict[str, object]], list[int]]:
    """Each persona's events (about ``target`` in all) and their tiers (what a trim removes first)."""
    fixed = sum(125 if p == "bot" and days else 0 for _u, _a, p, days in plans)  # bursts
    fixed += sum(1 for _u, _a, p, _d in plans if p == "farm")  # farm visits
    fixed += sum(2 * len(days) for _u, _a, p, days in plans if p == "hollow")  # thin days
    fill_days = sum(len(days) for _u, _a, p, days in plans if p != "hollow") or 1
    mean = max(1.0, (target - fixed) / fill_days)
    events: list[dict[str, object]] = []
    tiers: list[int] = []
    seq = 0
    farm_devices: dict[int, list[str]] = {}
    n_farm = 0
    for user, app, persona, days in plans:
        device = f"d-{user}"
        for d in days:
            n = max(1, int(rng.expovariate(1 / mean) + 0.5)) if persona != "hollow" else rng.randint(1, 3)
            day_start = cfg.start_ms + d * DAY_MS
            session = day_start + rng.randint(6 * 3_600_000, 20 * 3_600_000)
            gap = max(1, min(120_000, (day_start + DAY_MS - 1 - session) // n))  # the day's events stay in it
            for j, etype in enumerate(_day_types(persona, n, rng)):
                seq += 1
                ev: dict[str, object] = {
                    "event_id": f"e{seq:010d}",
                    "user_id": user,
                    "type": etype,
                    "ts": session + j * rng.randint(min(1_000, gap), gap),
                    "app_id": app,
                    "device_id": device,
                }
                if etype == "payment":
                    ev["amount"] = round(rng.uniform(0.5, 60), 2)
                if rng.random() < 0.02:
                    ev["props"] = {"screen": rng.choice(["home", "feed", "shop"]), "v": rng.randint(1, 9)}
                events.append(ev)
                tiers.append(DAYS if j == 0 or persona == "hollow" else FILLER)
        if persona == "bot" and days:
            d = rng.choice(days)
            minute = cfg.start_ms + d * DAY_MS + rng.randint(60, 1300) * MINUTE_MS
            for _ in range(rng.randint(110, 140)):
                seq += 1
                events.append(
                    {
                        "event_id": f"e{seq:010d}",
                        "user_id": user,
                        "type": "view",
                        "ts": minute + rng.randint(0, MINUTE_MS - 1),
                        "app_id": app,
                        "device_id": device,
                    }
                )
                tiers.append(BURST)
        if persona == "farm":
            farm_devices.setdefault(n_farm // 6, []).append(user)  # six users share one device
            n_farm += 1
    for group, members in farm_devices.items():
        d = rng.randint(0, cfg.days - 1)
        for user in members[:8]:
            seq += 1
            events.append(
                {
                    "event_id": f"e{seq:010d}",
                    "user_id": user,
                    "type": "view",
                    "ts": cfg.start_ms + d * DAY_MS + rng.randint(0, DAY_MS - 1),
                    "app_id": plans[int(user[1:])][1],
                    "device_id": f"farm-{group}",
                }
            )
            tiers.append(FARM)
    return events, tiers


def _deliver(events: list[dict[str, object]], cfg: GenConfig, rng: random.Random, dup_events: int,
             invalid_kinds: list[int]) -> list[Message]:
    """Order by event time with bounded disorder, batch per user, add faults: ``dup_events`` events
    redelivered, one invalid message of each of ``invalid_kinds``."""
    keyed: list[tuple[int, int, dict[str, object]]] = []
    for i, ev in enumerate(events):
        ts = int(cast(int, ev["ts"]))  # built by _event: an int
        jitter = rng.randint(0, cfg.disorder_ms)
        if rng.random() < cfg.too_late_rate:
            jitter += cfg.too_late_ms
        keyed.append((ts + jitter, i, ev))
    keyed.sort(key=lambda t: (t[0], t[1]))
    msgs: list[Message] = []
    sizes: list[int] = []
    if cfg.batch <= 1:
        for sort_ts, _, ev in keyed:
            msgs.append(_message([ev], sort_ts, cfg, rng))
            sizes.append(1)
    else:
        # an SDK sends a user's batch when it is full or when its first event is batch_window_ms old
        window = cfg.batch_window_ms
        open_batches: dict[str, tuple[int, int, list[dict[str, object]]]] = {}  # user: (first, id, events)
        expiring: list[tuple[int, int, str]] = []  # (send time, id, user) of the open batches
        end = keyed[-1][0] if keyed else 0
        sent: list[tuple[Message, int]] = []
        for n, (sort_ts, _, ev) in enumerate(keyed):
            while expiring and expiring[0][0] < sort_ts:
                due, batch_id, user = heapq.heappop(expiring)
                opened = open_batches.get(user)
                if opened is not None and opened[1] == batch_id:  # not sent since (full)
                    sent.append((_message(opened[2], due, cfg, rng), len(opened[2])))
                    del open_batches[user]
            user = str(ev["user_id"])
            opened = open_batches.get(user)
            if opened is None:
                opened = open_batches[user] = (sort_ts, n, [])
                heapq.heappush(expiring, (min(sort_ts + window, end), n, user))
            opened[2].append(ev)
            if len(opened[2]) >= cfg.batch:
                sent.append((_message(opened[2], sort_ts, cfg, rng), len(opened[2])))
                del open_batches[user]
        for first, _, batch in open_batches.values():  # sent at the window's end, or the history's
            sent.append((_message(batch, min(first + window, end), cfg, rng), len(batch)))
        sent.sort(key=lambda t: t[0].sort_ts)
        msgs, sizes = [m for m, _ in sent], [k for _, k in sent]
    out = list(msgs)
    for i, k in pick_duplicates(sizes, dup_events, rng).items():
        m = msgs[i]
        value = m.value if k == sizes[i] else orjson.dumps(cast(list[object], orjson.loads(m.value))[:k])
        out.append(Message(m.partition, m.key, value, m.sort_ts + rng.randint(0, 10 * MINUTE_MS)))
    for kind in invalid_kinds:
        near = msgs[rng.randrange(len(msgs))] if msgs else Message(0, None, b"", cfg.start_ms)
        out.append(_invalid(near, rng, cfg, kind))
    out.sort(key=lambda m: m.sort_ts)
    return out


def _message(batch: list[dict[str, object]], sort_ts: int, cfg: GenConfig, rng: random.Random) -> Message:
    user = str(batch[0]["user_id"]).encode()
    value = orjson.dumps(batch[0] if cfg.batch <= 1 and len(batch) == 1 else batch)
    if rng.random() < cfg.unkeyed_rate:
        # an SDK that forgot the key: unkeyed, on a partition that is usually not the user's
        return Message(rng.randrange(cfg.partitions), None, value, sort_ts)
    return Message(home_partition(user, cfg.partitions), user, value, sort_ts)


def _invalid(near: Message, rng: random.Random, cfg: GenConfig, kind: int) -> Message:
    base = {"event_id": f"bad{rng.randrange(10**9)}", "user_id": "u-bad", "type": "view", "ts": near.sort_ts}
    if kind == 0:
        return Message(near.partition, near.key, b"{not json", near.sort_ts, ["not_json"])
    if kind == 1:
        doc = dict(base)
        del doc["user_id"]
        return Message(near.partition, near.key, orjson.dumps(doc), near.sort_ts, ["missing_field"])
    if kind == 2:
        doc = dict(base, type="payment", amount=-5)
        return Message(near.partition, near.key, orjson.dumps(doc), near.sort_ts, ["bad_amount"])
    if kind == 3:
        doc = dict(base, ts=86_400_000)
        return Message(near.partition, near.key, orjson.dumps(doc), near.sort_ts, ["ts_out_of_range"])
    if kind == 4:
        good = dict(base, event_id=f"ok{rng.randrange(10**9)}", user_id=f"u{rng.randrange(max(1, cfg.users)):07d}")
        bad = dict(base, ts="yesterday")
        key = str(good["user_id"]).encode()
        return Message(home_partition(key, cfg.partitions), key, orjson.dumps([good, bad]), near.sort_ts, ["bad_ts"])
    return Message(near.partition, near.key, b"\xff\xfe garbage", near.sort_ts, ["not_json"])
