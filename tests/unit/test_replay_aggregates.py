"""Property: crash and replay leave the same per-user daily counters as one uninterrupted run.

The replay starts from the last committed offset with state recovered from what the crashed
run persisted, under a watermark that has already moved on: every decision taken before the
crash (applied, duplicate) must be recognised by position, not re-decided.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.events import Event
from streams.config.settings import load_settings
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition
from streams.engine.state import decode_user
from tests.histories import T0, D, histories

pytestmark = pytest.mark.usefixtures("engine_impl")  # the engine's C loop and its Python loop

# a duplicate as its user's last event, then the watermark moves days on, all in one flush
DUP_THEN_GAP = [Event("e1", "u1", "login", T0), Event("e1", "u1", "login", T0), Event("e2", "u2", "view", T0 + 3 * D)]


def counters(data: dict[bytes, bytes]) -> dict[bytes, dict[int, list[int]]]:
    return {k: decode_user(v).days for k, v in data.items() if k[:1] != b"\x00"}


def run(events: list[Event], chunk: int, crash_after: int | None = None) -> dict[bytes, dict[int, list[int]]]:
    rules = RulesByApp(load_settings(env={}))
    data: dict[bytes, bytes] = {}

    def flushes(part: UserPartition, start: int, stop: int | None = None) -> int:
        """Apply in chunks, persisting state after each; return the offset committed last."""
        committed = start
        for n, first in enumerate(range(start, len(events), chunk), 1):
            batch = events[first : first + chunk]
            part.apply([("t", first + i, None, [e], -1) for i, e in enumerate(batch)], Outputs())
            data.update(part.drain())
            meta = part.drain_meta()
            if meta is not None:
                data[meta[0]] = meta[1]
            if stop is not None and n == stop:
                return committed  # crash after persisting this flush, before committing it
            committed = first + chunk
        return committed

    part = UserPartition(0, StateStore(data), rules)
    committed = flushes(part, 0, crash_after)
    if crash_after is not None:
        part = UserPartition(0, StateStore(data), rules)
        part.load([k for k in data if k[:1] != b"\x00"], committed)
        flushes(part, committed)
    return counters(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(2, 15), st.integers(1, 8))
@example(DUP_THEN_GAP, 3, 1)
def test_crash_after_persist_before_commit_keeps_counts(events: list[Event], chunk: int, crash_after: int) -> None:
    assert run(events, chunk, crash_after) == run(events, chunk)
