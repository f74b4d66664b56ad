"""Property: the engine's C loop (streams/engine/c/) leaves exactly what its Python loop leaves —
alerts in order, rows, device observations, outcomes, dead letters, every state record and index —
on random histories sent as batch messages from the events and reroute topics, with replays and
apps of their own rules. Fails where the extension is not built."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event
from sinks.columns import ActivityColumns
from streams.config.settings import load_settings
from streams.engine import extensions
from streams.engine.partition import (
    MessageEvents,
    Outputs,
    RulesByApp,
    StateStore,
    UserPartition,
    activity_columns,
)
from streams.engine.state import encode
from streams.engine.store import activity_rows
from tests.histories import histories

REROUTE = "vitals.events.reroute"


def snapshot(part: UserPartition, out: Outputs) -> dict[str, Any]:
    columns = activity_columns(out.dirty_rows, {0: part.store}, part.native)  # the flush's, C or Python
    # C encodes exactly what the Python rows encode to, row for row
    assert columns == ActivityColumns.from_rows(activity_rows(out.dirty_rows, {0: part.store}))  # type: ignore[arg-type]
    return {
        "activity": sorted(columns.to_rows()),
        "alerts": list(out.alerts),
        "segment_changes": list(out.segment_changes),
        "segment_days": dict(part.segment_days._day_of),
        "rows": set(out.dirty_rows),
        "devices": {k: list(v) for k, v in out.device_obs.items()},
        "outcomes": dict(out.outcomes),
        "dead": [(d.invalid.reason, d.invalid.message, d.invalid.original, d.invalid.index, d.topic, d.offset,
                  d.key) for d in out.dead_letters],
        "states": {k: encode(s) for k, s in part.store.dirty.items()},
        "data": dict(part.store.data),
        "meta": (part.meta.stream_time, part.meta.closed_day, part.meta_dirty, part.position, part.next_day_end),
        "deadlines": {rule: dict(ix._deadline) for rule, ix in part.deadlines.items()},
        "touched": set(part.touched),
        "open": set(part.open_day_rules),
    }


def run(native: bool, batches: list[list[MessageEvents]], rules: RulesByApp, replay: int) -> list[dict[str, Any]]:
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), rules, REROUTE, native=native)
    snaps = []
    for i, batch in enumerate(batches):
        out = Outputs()
        part.apply(batch, out)
        if i == replay:  # a replay of this batch after its flush: skipped by position
            part.drain()
            part.drain_meta()
            part.apply(batch, out)
        snaps.append(snapshot(part, out))
        part.drain()
        part.drain_meta()
    return snaps


def test_extension_is_built() -> None:
    assert extensions.BUILT, "pip install builds streams/engine/c/"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histories(), st.data())
def test_c_loop_equals_python_loop(events: list[Event], data: st.DataObject) -> None:
    apps = data.draw(st.lists(st.sampled_from(["default", "shop", "bütik"]), min_size=len(events),
                              max_size=len(events)))
    # ids beyond ASCII: the C loop hashes and keys their UTF-8 bytes, as the Python loop does
    suffix = data.draw(st.sampled_from(["", "é", "日本", "\U0001f600"]))
    events = [Event(e.event_id + suffix, e.user_id + suffix, e.type, e.ts, app_id=a, device_id=e.device_id,
                    amount=e.amount) for e, a in zip(events, apps, strict=True)]
    messages: list[MessageEvents] = []
    offsets = {"t": 0, REROUTE: 0}
    i = 0
    while i < len(events):
        n = data.draw(st.integers(1, 6))
        topic = data.draw(st.sampled_from(["t", "t", "t", REROUTE]))
        chunk: list[Event | None] = list(events[i : i + n])
        if data.draw(st.booleans()):  # an event of this message routed to another partition
            chunk.insert(data.draw(st.integers(0, len(chunk))), None)
        # the record's timestamp: none, or near the message's first event (a fast clock: the cap binds)
        first_ts = next((e.ts for e in chunk if e is not None), 0)
        record_ts = data.draw(st.sampled_from([-1, first_ts, first_ts - 3_600_000, first_ts - 86_400_000]))
        messages.append((topic, offsets[topic], None, chunk, record_ts))
        offsets[topic] += 1
        i += n
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(messages)), max_size=4))) | {0, len(messages)})
    batches = [messages[a:b] for a, b in itertools.pairwise(cuts) if b > a]
    replay = data.draw(st.integers(-1, len(batches) - 1))
    settings_ = load_settings(env={}, apps={"shop": {"rules": {"burst_events_per_minute": 20,
                                                                 "dedup_horizon_s": 600}}})
    rules = RulesByApp(settings_)
    c, py = run(True, batches, rules, replay), run(False, batches, rules, replay)
    for n, (a, b) in enumerate(zip(c, py, strict=True)):
        for name in a:
            assert a[name] == b[name], (n, name)


def test_outcomes_per_day_beyond_the_c_loops_window_equal_the_python_loops() -> None:
    """The C loop holds one app's outcome counts in a window of 64 days (apply.c, DayOutcomes): days far
    apart both ways, duplicates and replays, app changes in between, sum per (app, day) as in Python."""
    import random

    rng = random.Random(26)
    day0 = 20_000 * 86_400_000
    events = []
    day = 0
    for i in range(3000):  # runs of days, and jumps of any size both ways (every edge of the window)
        day = rng.choice([day, day, day - 1, day + 1, rng.randint(-130, 70), rng.randint(-400, 5)])
        app = "shop" if i % 97 < 60 else "default"
        events.append(Event(event_id=f"e{rng.randint(0, 2000)}", user_id=f"u{i % 7}", type="login",
                            ts=day0 + day * 86_400_000 + i, app_id=app))
    batches: list[list[MessageEvents]] = [[("vitals.events", n, None, list(events[n * 40:(n + 1) * 40]), -1)]
                                          for n in range(len(events) // 40)]
    rules = RulesByApp(load_settings(env={}))
    native, python = run(True, batches, rules, 3), run(False, batches, rules, 3)
    assert [s["outcomes"] for s in native] == [s["outcomes"] for s in python]
    days = {day for s in python for (_p, _a, day, _o) in s["outcomes"]}
    assert max(days) - min(days) > 64 and {o for s in python for (*_, o) in s["outcomes"]} >= {
        "accepted", "late", "duplicate", "replayed"}
