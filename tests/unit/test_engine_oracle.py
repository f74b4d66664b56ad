"""Property: the streaming engine's alerts equal the naive batch oracle's, on random histories."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event
from streams.config.settings import load_settings
from streams.engine.devices import DeviceObservations, DevicePartition
from streams.engine.partition import MessageEvents, Outputs, RulesByApp, StateStore, UserPartition
from streams.engine.state import encode
from tests.histories import T0, D, H, histories
from tests.oracle_rules import Cfg, device_alerts, partition_alerts

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop


def user_messages(events: list[Event], first_offset: int, most: int = 3) -> list[MessageEvents]:
    """Consecutive events of one user as batch messages of up to ``most`` events (offsets from
    ``first_offset``), as an SDK sends them."""
    messages: list[MessageEvents] = []
    for event in events:
        last = messages[-1][3] if messages else None
        if last and len(last) < most and last[0] and last[0].user_id == event.user_id \
                and last[0].app_id == event.app_id:
            last.append(event)
        else:
            messages.append(("t", first_offset + len(messages), None, [event], -1))
    return messages


def engine_alerts(events: list[Event], chunk: int = 7) -> set[tuple[str, str, str, str, int]]:
    rules = RulesByApp(load_settings(env={}))
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), rules)
    devices = DevicePartition(0, {}, rules)
    out = Outputs()
    device_alerts_: list = []
    for start in range(0, len(events), chunk):  # batches, with a state round-trip between them
        part.apply(user_messages(events[start : start + chunk], start), out)
        part.store.drain()
        for (app, dev, source), obs in out.device_obs.items():
            devices.apply(DeviceObservations(app, dev, obs, source, part.flushed_watermark, part.watermark),
                          device_alerts_)
        devices.apply(DeviceObservations("", "", [], 0, part.flushed_watermark), device_alerts_)
        part.flushed_watermark = part.watermark
        out.device_obs.clear()
    return {(a.alert_id, a.status, a.rule, a.user_id or a.device_id, a.episode_start)
            for a in out.alerts + device_alerts_}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_engine_equals_oracle(events: list[Event]) -> None:
    obs: list[Event] = []
    expected = set(partition_alerts(events, Cfg(), obs)) | set(device_alerts(obs, Cfg()))
    got = engine_alerts(events)
    assert got == expected, (sorted(expected - got)[:5], sorted(got - expected)[:5])


def engine_alerts_with_crash(events: list[Event], crash_at: int, committed: int, partial: float = 0.0,
                             chunk: int = 7) -> set:
    """Process with flushes every ``chunk`` events; crash at ``crash_at`` in the middle of a flush
    that persisted only a share ``partial`` of the changed users (and not the partition meta),
    recover from what was persisted and replay from offset ``committed``."""
    rules = RulesByApp(load_settings(env={}))
    data: dict[bytes, bytes] = {}
    part = UserPartition(0, StateStore(data), rules)
    out = Outputs()
    flushed = 0
    for start in range(0, crash_at, chunk):
        window = events[start : min(start + chunk, crash_at)]
        part.apply([("t", start + i, None, [e], -1) for i, e in enumerate(window)], out)
        if start + chunk <= crash_at:
            part.drain()
            part.drain_meta()
            flushed = start + chunk
    if partial:  # the crash interrupts a flush: some users' records made it, the meta did not
        keys = sorted(part.store.dirty)
        for key in keys[: int(partial * len(keys))]:
            part.store.dirty[key].persisted_at = part.position
            data[key] = encode(part.store.dirty[key])
    alerts = list(out.alerts)  # alerts already sent, flushed or not
    part = UserPartition(0, StateStore(data), rules)  # recovery
    replay_from = min(committed, flushed)
    part.load([k for k in data if k[:1] != b"\x00"], replay_from)
    out = Outputs()
    for start in range(replay_from, len(events), chunk):
        part.apply([("t", start + i, None, [e], -1) for i, e in enumerate(events[start : start + chunk])], out)
        part.drain()
        part.drain_meta()
    return {(a.alert_id, a.status, a.rule, a.user_id, a.episode_start) for a in alerts + out.alerts}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.floats(0, 1), st.floats(0, 1), st.sampled_from([0.0, 0.0, 0.3, 0.7, 1.0]))
def test_crash_and_replay_gives_the_same_alerts(events: list[Event], crash: float, commit: float,
                                                partial: float) -> None:
    crash_at = int(crash * len(events))
    committed = int(commit * crash_at)
    expected = set(partition_alerts(events, Cfg()))
    got = engine_alerts_with_crash(events, crash_at, committed, partial)
    assert got == expected, (sorted(expected - got)[:5], sorted(got - expected)[:5])


def drop_and_hollow_history() -> list[Event]:
    """u0: busy for two weeks, then one view a day (activity drop, then hollow activity);
    u1: a daily login. Days close on many different events."""
    events: list[Event] = []
    for day in range(24):
        for i in range(12 if day < 14 else 1):
            events.append(Event(f"e{len(events)}", "u0", "view", T0 + day * D + 2 * H + i * 60_000))
        events.append(Event(f"e{len(events)}", "u1", "login", T0 + day * D + 3 * H))
    return events


def test_restart_at_every_offset_gives_the_same_alerts() -> None:
    """A restart right before the event that closes a day must still evaluate that day for the
    users whose records were written before it (the first event after recovery used to see
    every recovered record as written later and skip them all: their alerts came a day late)."""
    events = drop_and_hollow_history()
    expected = set(partition_alerts(events, Cfg()))
    assert {a[2] for a in expected} >= {"churn.activity_drop", "fake.hollow_activity"}
    wrong = [c for c in range(1, len(events)) if engine_alerts_with_crash(events, c, c, chunk=1) != expected]
    assert not wrong, wrong
