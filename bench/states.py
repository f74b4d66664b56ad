"""User states after a realistic day of activity, built by the real engine (no Kafka): the input
of the state-size figure (``bench.run``) and of the recovery benchmark (``bench.recovery``)."""

from __future__ import annotations

from schemas.events import Event
from streams.config.settings import load_settings
from streams.engine.partition import MessageEvents, Outputs, RulesByApp, StateStore, UserPartition

DAY_START_MS = 1_767_225_600_000  # 2026-01-01
DAY_OF_A_USER = ("login", "view", "like", "view", "comment")  # one batch message per user
CLOSER = "user-closing-the-day"  # one event of the next day: the day closes


def day_of_activity(users: int) -> dict[bytes, bytes]:
    """The table data (encoded states, partition metadata under keys starting with NUL) after
    ``users`` users each sent one batch message of a day's events, spread over the day, and the day closed
    (their segments decided)."""
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), RulesByApp(load_settings(env={})))
    batch: list[MessageEvents] = []
    for i in range(users):
        uid = f"user-{i:08d}"
        ts = DAY_START_MS + i % 86_400_000
        events: list[Event | None] = [Event(f"{uid}-{j}", uid, etype, ts + j * 1000)
                                      for j, etype in enumerate(DAY_OF_A_USER)]
        batch.append(("t", i, None, events, -1))
        if len(batch) >= 10_000:
            part.apply(batch, Outputs())
            part.drain()
            batch = []
    part.apply(batch, Outputs())
    part.drain()
    # the next day's first hours: the day closes, and every user gets their segments (SPEC section 7)
    part.apply([("t", users, None, [Event(f"{CLOSER}-0", CLOSER, "view", DAY_START_MS + 86_400_000 + 7_200_000)], -1)],
               Outputs())
    part.drain()
    meta = part.drain_meta()
    if meta is not None:
        data[meta[0]] = meta[1]
    return data
