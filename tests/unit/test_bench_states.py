"""The states the benchmarks measure and recover are built by the real engine (bench/states.py),
and a tracked user's state stays within the 1 KB target of issue 5."""

from __future__ import annotations

from bench.states import CLOSER, DAY_OF_A_USER, day_of_activity
from streams.engine.segments import NEW
from streams.engine.state import decode_user


def test_a_day_of_activity_leaves_one_compact_state_per_user() -> None:
    data = day_of_activity(3000)
    states = {k: decode_user(v) for k, v in data.items() if k[:1] != b"\x00" and not k.endswith(CLOSER.encode())}
    assert len(states) == 3000
    assert all(sum(c[0] for c in s.days.values()) == len(DAY_OF_A_USER) for s in states.values())
    assert all(s.seg[0] == NEW for s in states.values())  # the day closed: every user has their segments
    assert max(len(v) for k, v in data.items() if k[:1] != b"\x00") <= 1024
