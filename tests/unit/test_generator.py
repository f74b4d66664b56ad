"""The traffic generator's batches are sent as an SDK sends them: when full or when the window
of the batch's first event ends, not when the user's next event happens to arrive."""

from __future__ import annotations

import orjson

from schemas.time_units import MINUTE_MS
from streams.devtools.generator import GenConfig, generate


def _batches(window_ms: int) -> list[tuple[int, list[int]]]:
    cfg = GenConfig(users=300, days=4, events=6_000, seed=3, batch=20, batch_window_ms=window_ms,
                    dup_rate=0.0, invalid_rate=0.0, too_late_rate=0.0, disorder_ms=0)
    out = []
    for m in generate(cfg).messages:
        doc = orjson.loads(m.value)
        out.append((m.sort_ts, [int(e["ts"]) for e in (doc if isinstance(doc, list) else [doc])]))
    return out


def test_a_batch_is_sent_when_full_or_when_its_window_ends() -> None:
    window = 10 * MINUTE_MS
    batches = _batches(window)
    assert any(len(ts) == 20 for _, ts in batches) and any(len(ts) < 20 for _, ts in batches)
    sends = [sent for sent, _ in batches]
    assert sends == sorted(sends)
    for sent, ts in batches:
        assert len(ts) <= 20
        assert max(ts) - min(ts) <= window  # nothing older than the window waits for a later event
        assert max(ts) <= sent <= min(ts) + window  # sent after its events, by the window's end


def test_on_time_batches_never_fall_behind_the_watermark() -> None:
    """Without disorder or late faults, batches sent within the window keep stream time within
    the window of every event: none falls behind a 1 h watermark."""
    stream_time = -1
    for _, ts in _batches(10 * MINUTE_MS):
        assert all(t >= stream_time - 3_600_000 for t in ts)
        stream_time = max(stream_time, *ts)


def test_an_unbounded_window_holds_each_users_events_until_full() -> None:
    batches = _batches(1 << 62)
    users_events = sum(len(ts) for _, ts in batches)
    assert users_events >= 6_000 * 0.9
    assert sum(len(ts) for _, ts in batches if len(ts) == 20) > 0
    # what is not full is sent at the history's end
    end = max(sent for sent, _ in batches)
    assert all(sent == end for sent, ts in batches if len(ts) < 20)


def test_the_share_behind_the_watermark() -> None:
    on_time = generate(GenConfig(users=300, days=4, events=6_000, seed=3, batch=20, too_late_rate=0.0))
    held = generate(GenConfig(users=300, days=4, events=6_000, seed=3, batch=20, batch_window_ms=1 << 62))
    assert on_time.behind_watermark(3_600_000) < 0.001  # invalid timestamps only
    assert held.behind_watermark(3_600_000) > 0.5  # a user's days held in one message
    assert held.behind_watermark(10 * 86_400_000) < 0.001
