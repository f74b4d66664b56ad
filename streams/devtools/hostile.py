"""Hostile but valid input (issue 23, SPEC section 1), mixed into a generated history:
``vitals generate --hostile [--scale S]``.

At ``scale`` 1 each part is what the issue names; a smaller scale shrinks the counts, not the shape
(rates per minute, spans of time, batch sizes and id lengths stay):

* **hot user**: one shared user id (``anonymous``), 120,000 events in two hours of the live history's
  last day, in batch messages of 1,000 events; one batch is sent twice (an SDK's retry, ten minutes later).
* **steady bot**: 70 events a minute (under the burst threshold) for the live history's last 25 hours,
  one event per message (smaller scales keep one minute in ``round(1 / scale)``).
* **zero device**: 100,000 users with one event each on the all-zero advertising id in one UTC day;
  their user ids have 128 characters (the most SPEC allows), so the device's records are large.
* **tenant flood**: 100,000 distinct app ids, one event each (every 50th a login).
* **backfill**: ten years (120 months) of monthly history before the live history, one batch per
  user and month, whose records keep their original timestamps. It is produced first, in time
  order: stream time walks through the ten years as it did live, so its day closes and absence
  deadlines are decided on the way (interleaved with live traffic, every backfill event would be
  below the watermark: late, counted through the late-events ledger, deciding nothing).
* **offline phones**: after the live history's end, phones sync events 45 days old (beyond the days
  the state keeps), one batch per phone; every fifth batch is sent twice. Half of the phones belong
  to backfill users with an event of their own on that day (a row written from state before, to
  which the late events add), every third of them one who only logged in during the backfill's
  last four months (a ``churn.no_interaction_60d`` episode open when the phone's interactions
  arrive); half to users of the live history.
* **fast clock**: at record time T one event stamped T + 23 h; at T + 1 h (event and record time) a
  burst (120 events in one UTC minute) of another user of the same partition; and a user of that
  partition who logged in at T - 62 h and logs in again at T + 9 h, so that a stream time moved by
  the fast clock would fire their 72-hour deadline (T + 10 h) early.

Every hostile message carries its record timestamp (``Message.timestamp``): a single event's time,
a batch's send time (its last event; an offline phone's sync time); the fast clock's is T. The live
history's messages keep the producer's clock.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson

from schemas.time_units import DAY_MS, HOUR_MS, MINUTE_MS
from streams.devtools.generator import GenConfig, History, Message
from streams.engine.partitioner import home_partition

HOT_USER = "anonymous"
ZERO_DEVICE = "00000000-0000-0000-0000-000000000000"
BOT_USER = "steady-bot"
FAST_CLOCK_USER = "fast-clock"
FAST_AHEAD_MS = 23 * HOUR_MS
BURST_EVENTS = 120

# full size (scale 1), as issue 23 names it
HOT_EVENTS = 120_000
HOT_BATCH = 1_000
HOT_SPAN_MS = 2 * HOUR_MS
BOT_PER_MINUTE = 70
BOT_MINUTES = 25 * 60
ZERO_DEVICE_USERS = 100_000
TENANTS = 100_000
BACKFILL_MONTHS = 120
BACKFILL_USERS = 500
OFFLINE_PHONES = 1_000
OFFLINE_EVENTS = 10
OFFLINE_AGE_DAYS = 45
LAPSED_MONTHS = 4

# the day of the live history each part happens on (the live history needs at least MIN_DAYS days);
# the hot user and the bot end the live history, so the last flush holds their ids within the dedup horizon
ZERO_DAY, TENANT_DAY, FAST_DAY = 1, 2, 3
MIN_DAYS = 6


@dataclass
class Landmarks:
    """Where the parts are, for tests and the summary."""

    fast_clock_record_ms: int  # T: the fast clock's record timestamp
    burst_user: str
    victim_user: str
    victim_deadline_ms: int  # the 72-hour deadline a fast-clock stream time would fire early
    offline_day: int  # the day (epoch days) of the offline phones' events
    sync_ms: int  # when they sync
    zero_device_users: int
    tenants: int
    backfill_users: int
    hot_events: int
    bot_events: int


def scaled(full: int, scale: float, least: int = 1) -> int:
    return max(least, round(full * scale))


def same_partition_user(prefix: str, partition: int, partitions: int) -> str:
    """The first user id ``prefix-<n>`` whose home partition is ``partition``."""
    n = 0
    while home_partition(f"{prefix}-{n}".encode(), partitions) != partition:
        n += 1
    return f"{prefix}-{n}"


def landmarks(cfg: GenConfig, live_end_ms: int) -> Landmarks:
    s = cfg.hostile_scale
    t = cfg.start_ms + FAST_DAY * DAY_MS + 10 * HOUR_MS
    fast_partition = home_partition(FAST_CLOCK_USER.encode(), cfg.partitions)
    sync_ms = live_end_ms + HOUR_MS
    return Landmarks(
        fast_clock_record_ms=t,
        burst_user=same_partition_user("burst", fast_partition, cfg.partitions),
        victim_user=same_partition_user("sleeper", fast_partition, cfg.partitions),
        victim_deadline_ms=t + 10 * HOUR_MS,
        offline_day=(sync_ms - OFFLINE_AGE_DAYS * DAY_MS) // DAY_MS,
        sync_ms=sync_ms,
        zero_device_users=scaled(ZERO_DEVICE_USERS, s, 5),
        tenants=scaled(TENANTS, s),
        backfill_users=scaled(BACKFILL_USERS, s, 2),
        hot_events=scaled(HOT_EVENTS, s, HOT_BATCH),
        bot_events=BOT_PER_MINUTE * len(range(0, BOT_MINUTES, max(1, round(1 / s)))),
    )


class _Out:
    """Hostile messages as they are built: keyed by user, on the user's home partition."""

    def __init__(self, cfg: GenConfig) -> None:
        self.cfg = cfg
        self.messages: list[Message] = []

    def send(self, events: list[dict[str, object]], record_ms: int, single: bool = False) -> Message:
        user = str(events[0]["user_id"]).encode()
        value = orjson.dumps(events[0] if single else events)
        msg = Message(home_partition(user, self.cfg.partitions), user, value, record_ms, timestamp=record_ms)
        self.messages.append(msg)
        return msg

    def again(self, msg: Message, record_ms: int) -> None:
        self.messages.append(Message(msg.partition, msg.key, msg.value, record_ms, timestamp=record_ms))


def _spread(rng: random.Random, n: int, start_ms: int, span_ms: int) -> list[int]:
    return sorted(start_ms + rng.randrange(span_ms) for _ in range(n))


def _kind(rng: random.Random, types: tuple[str, ...] = ("view", "view", "view", "like", "comment", "share",
                                                        "content_post", "page_view", "search")) -> str:
    r = rng.random()
    if r < 0.02:
        return "payment"
    if r < 0.05:
        return "login"
    return rng.choice(types)


def _event(event_id: str, user: str, etype: str, ts: int, rng: random.Random, app: str = "default",
           device: str | None = None) -> dict[str, object]:
    ev: dict[str, object] = {"event_id": event_id, "user_id": user, "type": etype, "ts": ts, "app_id": app}
    if device is not None:
        ev["device_id"] = device
    if etype == "payment":
        ev["amount"] = round(rng.uniform(0.5, 60), 2)
    return ev


def long_user_id(prefix: str) -> str:
    """A user id of the 128 characters SPEC allows at most."""
    digest = hashlib.sha256(prefix.encode()).hexdigest()
    return (prefix + "-" + digest * 2)[:128]


def _months_before(start_ms: int, count: int) -> list[tuple[int, int]]:
    """(first ms, end ms) of the ``count`` calendar months before the month of ``start_ms``."""
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    year, month = start.year, start.month
    out = []
    for _ in range(count):
        first = (year, month)
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        lo = int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
        hi = int(datetime(first[0], first[1], 1, tzinfo=UTC).timestamp() * 1000)
        out.append((lo, hi))
    return out[::-1]


def hostile_messages(cfg: GenConfig, live_end_ms: int, live_users: list[tuple[str, str]],
                     personas: dict[str, str]) -> tuple[list[Message], Landmarks]:
    """The hostile parts' messages (unsorted) and where they are; their users are added to
    ``personas``. ``live_users``: (user, app) of the live history, some of whose phones go offline."""
    if cfg.days < MIN_DAYS:
        raise ValueError(f"a hostile history needs a live history of at least {MIN_DAYS} days (got {cfg.days})")
    rng = random.Random(f"hostile:{cfg.seed}")
    marks = landmarks(cfg, live_end_ms)
    s = cfg.hostile_scale
    out = _Out(cfg)

    # hot user: 1,000-event batches over two hours, sent as each fills; the third sent twice
    personas[HOT_USER] = "hostile.hot_user"
    start = cfg.start_ms + (cfg.days - 1) * DAY_MS + 10 * HOUR_MS
    times = _spread(rng, marks.hot_events, start, HOT_SPAN_MS)
    hot = [_event(f"anon-{i:07d}", HOT_USER, _kind(rng), ts, rng, device=f"anon-dev-{rng.randrange(64):02d}")
           for i, ts in enumerate(times)]
    for n, first in enumerate(range(0, len(hot), HOT_BATCH)):
        batch = hot[first : first + HOT_BATCH]
        msg = out.send(batch, int(cast(int, batch[-1]["ts"])) + 1_000)
        if n == 2 or (n < 2 and first + HOT_BATCH >= len(hot)):  # the third (or the last of fewer)
            out.again(msg, msg.sort_ts + 10 * MINUTE_MS)

    # steady bot: 70 events a minute for 25 hours, one per message
    personas[BOT_USER] = "hostile.steady_bot"
    start = cfg.start_ms + cfg.days * DAY_MS - 30 * MINUTE_MS - BOT_MINUTES * MINUTE_MS
    for minute in range(0, BOT_MINUTES, max(1, round(1 / s))):
        at = start + minute * MINUTE_MS
        for j, ts in enumerate(sorted(rng.sample(range(at, at + MINUTE_MS), BOT_PER_MINUTE))):
            etype = "like" if j % 10 == 0 else "view"
            out.send([_event(f"bot-{minute:04d}-{j:02d}", BOT_USER, etype, ts, rng, device="bot-device")], ts,
                     single=True)

    # zero device: many users, one event each, one UTC day
    start = cfg.start_ms + ZERO_DAY * DAY_MS
    for i, ts in enumerate(_spread(rng, marks.zero_device_users, start, DAY_MS)):
        user = long_user_id(f"zero-device-user-{i:07d}")
        personas[user] = "hostile.zero_device"
        out.send([_event(f"zd-{i:07d}", user, "app_open", ts, rng, device=ZERO_DEVICE)], ts, single=True)

    # tenant flood: distinct app ids, one event each
    start = cfg.start_ms + TENANT_DAY * DAY_MS
    for i, ts in enumerate(_spread(rng, marks.tenants, start, DAY_MS)):
        user = f"tenant-user-{i:06d}"
        personas[user] = "hostile.tenant"
        etype = "login" if i % 50 == 0 else "view"
        out.send([_event(f"tn-{i:06d}", user, etype, ts, rng, app=f"tenant-{i:06d}")], ts, single=True)

    # fast clock, the burst after it and the user whose deadline it would fire early
    t = marks.fast_clock_record_ms
    personas[FAST_CLOCK_USER] = "hostile.fast_clock"
    personas[marks.burst_user] = "hostile.burst"
    personas[marks.victim_user] = "hostile.clock_victim"
    victim = marks.victim_user
    for n, ts in enumerate((t - 62 * HOUR_MS, t + 9 * HOUR_MS)):
        out.send([_event(f"sleep-{n}", victim, "login", ts, rng, device=f"dev-{victim}")], ts, single=True)
    out.send([_event("fast-0", FAST_CLOCK_USER, "view", t + FAST_AHEAD_MS, rng)], t, single=True)
    minute = t + HOUR_MS  # T is on the hour: one UTC minute
    burst = [_event(f"burst-{i:03d}", marks.burst_user, "view", ts, rng)
             for i, ts in enumerate(_spread(rng, BURST_EVENTS, minute, MINUTE_MS - 1_000))]
    for first in range(0, len(burst), 60):
        part = burst[first : first + 60]
        out.send(part, int(cast(int, part[-1]["ts"])) + 500)

    # backfill: ten years of months, one batch per user and month, original record timestamps
    offline_day_ms = marks.offline_day * DAY_MS
    n_offline = scaled(OFFLINE_PHONES, s, 4)
    from_backfill = min(marks.backfill_users, n_offline // 2)
    apps = cfg.apps
    for month, (lo, hi) in enumerate(_months_before(cfg.start_ms, BACKFILL_MONTHS)):
        for u in range(marks.backfill_users):
            user = f"backfill-{u:05d}"
            personas[user] = "hostile.backfill"
            app = apps[u % len(apps)]
            session = lo + rng.randrange((hi - lo) // DAY_MS) * DAY_MS + rng.randint(8, 20) * HOUR_MS
            times = [session + j * rng.randint(10_000, 300_000) for j in range(rng.randint(1, 4))]
            if u < from_backfill and lo <= offline_day_ms < hi:  # their own event on the offline phones' day
                times = sorted([*times, offline_day_ms + 9 * HOUR_MS])
            # every third offline phone's user only logged in (no interaction) in the backfill's last
            # four months: their churn.no_interaction_60d episode is open when the phone syncs
            lapsed = u < from_backfill and u % 3 == 0 and month >= BACKFILL_MONTHS - LAPSED_MONTHS
            batch = [_event(f"bf-{u:05d}-{lo // DAY_MS}-{j}", user, "login" if j == 0 or lapsed else _kind(rng), ts,
                            rng, app, f"bf-dev-{u:05d}") for j, ts in enumerate(times)]
            out.send(batch, max(times) + 1_000)

    # offline phones: 45-day-old events synced after the end; every fifth batch sent twice
    phones = [(f"backfill-{u:05d}", apps[u % len(apps)]) for u in range(from_backfill)]
    candidates = [(u, a) for u, a in live_users if personas.get(u) in ("regular", "payer", "creator", "hollow")]
    phones += rng.sample(candidates, min(len(candidates), n_offline - len(phones)))
    for n, (user, app) in enumerate(phones):
        times = [offline_day_ms + 12 * HOUR_MS + j * 10 * MINUTE_MS for j in range(OFFLINE_EVENTS)]
        batch = [_event(f"off-{user}-{j}", user, "login" if j == 0 else _kind(rng), ts, rng, app)
                 for j, ts in enumerate(times)]
        msg = out.send(batch, marks.sync_ms + n * 100)
        if n % 5 == 0:
            out.again(msg, marks.sync_ms + 5 * MINUTE_MS + n * 100)
    return out.messages, marks


def _live_end(cfg: GenConfig, live: list[Message]) -> int:
    return max([cfg.start_ms + cfg.days * DAY_MS, *(m.sort_ts for m in live)])


def history_landmarks(history: History) -> Landmarks:
    """Where the hostile parts of a generated hostile history are (its live messages are those
    without a record timestamp)."""
    return landmarks(history.config, _live_end(history.config, [m for m in history.messages if m.timestamp is None]))


def mix_in(cfg: GenConfig, live: list[Message], personas: dict[str, str]) -> list[Message]:
    """The live history's messages with the hostile parts', in send order (stable: the live
    history's order is kept)."""
    live_end = _live_end(cfg, live)
    live_users = [(f"u{i:07d}", cfg.apps[i % len(cfg.apps)]) for i in range(cfg.users)]
    extra, _ = hostile_messages(cfg, live_end, live_users, personas)
    return sorted([*live, *extra], key=lambda m: m.sort_ts)
