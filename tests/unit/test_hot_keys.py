"""Hot keys (SPEC sections 1 and 4: every record vitals writes stays under 512 KiB, whatever the input):
a device shared by 100k users, a user with more event ids in the dedup horizon than one record holds."""

from __future__ import annotations

import pytest

from schemas.alerts import Alert
from streams.config.settings import ConfigError, load_settings
from streams.engine.devices import OBS_RECORD_BYTES, DeviceObservations, DevicePartition, obs_decoder, obs_records
from streams.engine.partition import RulesByApp

DAY = 20_454
T = DAY * 86_400_000


def test_a_device_shared_by_100k_users_is_observed_in_bounded_records_applied_as_one() -> None:
    wide = "\U0001f600" * 120  # user ids of 120 characters, 4 bytes each in UTF-8
    obs = [(DAY, f"{i:06d}{wide}", T + i) for i in range(100_000)]
    batch = DeviceObservations("default", "00000000-0000-0000-0000-000000000000", obs, 3, T - 1, T + 100_000)
    records = obs_records(batch)
    assert len(records) > 1 and max(map(len, records)) <= OBS_RECORD_BYTES
    decoded = [obs_decoder.decode(r) for r in records]
    assert [o for d in decoded for o in d.obs] == obs  # every observation once, in order
    assert {(d.app_id, d.device_id, d.source, d.source_watermark, d.watermark) for d in decoded} == {
        ("default", batch.device_id, 3, T - 1, T + 100_000)}

    rules = RulesByApp(load_settings(env={}))
    whole, split = DevicePartition(0, {}, rules), DevicePartition(0, {}, rules)
    alerts_whole: list[Alert] = []
    alerts_split: list[Alert] = []
    whole.apply(batch, alerts_whole)
    for d in decoded:
        split.apply(d, alerts_split)
    assert alerts_whole == alerts_split and len(alerts_whole) == 1
    assert whole.drain() == split.drain()
    assert max(len(v) for _, v in split.drain() or [(b"", b"")]) < 512 * 1024


def test_one_record_for_an_ordinary_device() -> None:
    batch = DeviceObservations("default", "d", [(DAY, "u", T)], 0, T, T)
    assert len(obs_records(batch)) == 1


def test_the_device_farm_threshold_has_a_ceiling() -> None:
    with pytest.raises(ConfigError, match="device_farm_users"):
        load_settings(env={}, rules__device_farm_users=101)
    with pytest.raises(ConfigError, match="device_farm_users"):
        load_settings(env={}, apps={"shop": {"rules": {"device_farm_users": 5000}}}).rules_for("shop")


# ---- a hot user: more event ids within the dedup horizon than one state record holds

MINUTE = 60_000
HOUR = 3_600_000


def hot_messages(first: int, n: int, start_ts: int, per_message: int = 1000, every_ms: int = 60) -> list:
    """``n`` events of the shared user ``anonymous``, ``per_message`` to a message, one every ``every_ms``."""
    from schemas.events import Event

    events = [Event(f"ev-{i}", "anonymous", "view", start_ts + i * every_ms) for i in range(first, first + n)]
    return [("t", first // per_message + k, None, events[k * per_message : (k + 1) * per_message], -1)
            for k in range((n + per_message - 1) // per_message)]


@pytest.mark.usefixtures("engine_impl")
def test_a_hot_users_ids_are_sealed_in_bounded_records_and_dedup_stays_exact() -> None:
    from streams.engine.dedup import INLINE_IDS, PREFIX, SEGMENT_IDS
    from streams.engine.partition import Outputs, StateStore, UserPartition

    data: dict[bytes, bytes] = {}
    rules = RulesByApp(load_settings(env={}))
    part = UserPartition(0, StateStore(data), rules)
    out = Outputs()
    n = 120_000  # in two hours, in 1000-event messages
    records: list[tuple[bytes, bytes | None]] = []
    for k, msg in enumerate(hot_messages(0, n, T)):
        part.apply([msg], out)
        if k % 10 == 9:  # a flush every 10 messages
            records += part.drain()
    records += part.drain()
    assert out.by_app()[("default", "accepted")] + out.by_app()[("default", "late")] == n
    assert max(len(v or b"") for _, v in records) <= 12 * SEGMENT_IDS < 512 * 1024
    state = part.store.get(b"default\x1fanonymous")
    assert state is not None and len(state.ids) <= INLINE_IDS and len(state.sealed) >= n // SEGMENT_IDS
    assert sum(1 for k in data if k.startswith(PREFIX)) == len(state.sealed)

    # every event again (a redelivery within the horizon), to a worker restarted on the same state
    again = UserPartition(0, StateStore(data), rules)
    again.load([b"default\x1fanonymous"], None)
    out2 = Outputs()
    for msg in hot_messages(0, n, T):
        again.apply([(msg[0], msg[1] + 10_000, msg[2], msg[3], msg[4])], out2)  # new offsets: not a replay
    assert out2.by_app()[("default", "duplicate")] == n
    assert out2.by_app()[("default", "accepted")] == 0

    # two days on, every segment has passed the horizon: deleted (tombstones), nothing left behind
    later = hot_messages(n, 1, T + 2 * 86_400_000)
    again.apply(later, out2)
    dropped = again.drain()
    assert not any(k.startswith(PREFIX) for k in data)
    assert {k for k, v in dropped if v is None} == {k for k, _ in records if k.startswith(PREFIX)}
    state = again.store.get(b"default\x1fanonymous")
    assert state is not None and state.sealed == ()


def test_sealing_and_the_c_loop_agree_with_the_python_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny segments (3 ids inline, the rest sealed at every flush), the C and Python loops leave
    the same records, outcomes and states on a history of redeliveries around the horizon."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    import streams.engine.partition as engine_mod
    import streams.engine.store as store_mod
    from schemas.events import Event
    from streams.engine.partition import Outputs, StateStore, UserPartition
    from streams.engine.state import encode

    monkeypatch.setattr(engine_mod, "INLINE_IDS", 3)
    monkeypatch.setattr(store_mod, "INLINE_IDS", 3)
    rules = RulesByApp(load_settings(env={}, rules__dedup_horizon_s=3600))

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6 * 60)), min_size=1, max_size=80),
           st.integers(1, 7))
    def check(draws: list[tuple[int, int]], flush_every: int) -> None:
        results = []
        for native in (True, False):
            data: dict[bytes, bytes] = {}
            part = UserPartition(0, StateStore(data), rules, native=native)
            out = Outputs()
            drained = []
            for i, (eid, minute) in enumerate(draws):
                part.apply([("t", i, None, [Event(f"e{eid}", "hot", "view", T + minute * MINUTE)], -1)], out)
                if i % flush_every == 0:
                    drained.append(part.drain())
            drained.append(part.drain())
            states = {k: encode(s) for k, s in part.store.dirty.items()}
            results.append((drained, dict(out.outcomes), dict(data), states))
        assert results[0] == results[1]

    check()
