"""User records written in the previous layout (dedup as hour buckets) still decode, with the same
dedup answers; the current layout round-trips."""

from __future__ import annotations

from schemas.time_units import HOUR_MS
from streams.engine.state import UserState, _UserStateV1, decode_user, encode, event_hash


def test_previous_layout_converts() -> None:
    h1, h2, h3 = event_hash("a"), event_hash("b"), event_hash("c")
    old = _UserStateV1(first_ts=5, last_login=7, days={20454: (3, 1, 0, 0, 0, 1, 0)},
                       dedup={490_000: [h1, h2], 490_005: [h3, h1]}, minutes={29_000_000: 2}, offsets=(9, -1),
                       persisted_at=11)
    state = decode_user(encode(old))
    assert (state.first_ts, state.last_login, state.days, state.offsets, state.persisted_at) == (
        5, 7, {20454: (3, 1, 0, 0, 0, 1, 0)}, (9, -1), 11)
    assert state.dedup == {490_000: [h2], 490_005: [h1, h3]} or state.dedup == {490_000: [h2], 490_005: [h3, h1]}
    for h, last_hour in ((h1, 490_005), (h2, 490_000), (h3, 490_005)):
        assert state.seen(h, last_hour * HOUR_MS)
        assert not state.seen(h, (last_hour + 1) * HOUR_MS)
    assert not state.seen(event_hash("d"), 0)


def test_current_layout_round_trips() -> None:
    state = UserState(first_ts=1)
    state.remember(event_hash("x"), 490_003 * HOUR_MS + 5)
    again = decode_user(encode(state))
    assert again == state and again.seen(event_hash("x"), 490_003 * HOUR_MS)
