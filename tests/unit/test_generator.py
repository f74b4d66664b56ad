"""The traffic generator's batches are sent as an SDK sends them: when full or when the window
of the batch's first event ends, not when the user's next event happens to arrive. A history holds
exactly the events asked for, and the personas' stories while the count allows."""

from __future__ import annotations

from collections import Counter, defaultdict

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.time_units import DAY_MS, MINUTE_MS
from streams.devtools.event_count import BURST, DAYS, FARM, FILLER, fit, pick_duplicates
from streams.devtools.generator import GenConfig, History, _events_of, default_users, generate


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


def _day(event: dict[str, object]) -> int:
    return int(str(event["ts"])) // DAY_MS


def _valid_events(history: History) -> list[dict[str, object]]:
    return [e for m in history.messages if not m.expect_invalid for e in _events_of(m.value) if isinstance(e, dict)]


@settings(max_examples=80, deadline=None)
@given(events=st.integers(0, 3_000), users=st.integers(0, 60), days=st.integers(1, 12), batch=st.integers(1, 20),
       seed=st.integers(0, 10_000), dup_rate=st.sampled_from([0.0, 0.01, 0.3]),
       invalid_rate=st.sampled_from([0.0, 0.002, 0.2]))
def test_a_history_holds_exactly_the_events_asked_for(events: int, users: int, days: int, batch: int, seed: int,
                                                      dup_rate: float, invalid_rate: float) -> None:
    history = generate(GenConfig(users=users, days=days, events=events, seed=seed, batch=batch, dup_rate=dup_rate,
                                 invalid_rate=invalid_rate))
    assert history.n_events == events
    invalid = sum(len(_events_of(m.value)) for m in history.messages if m.expect_invalid)
    assert invalid == history.invalid_events
    ids = Counter(str(e["event_id"]) for e in _valid_events(history))
    assert all("amount" not in e or e["type"] == "payment" for e in _valid_events(history))  # pads are plain
    assert sum(n - 1 for n in ids.values()) == history.duplicate_events
    # padding or trimming adds no active day: each event is on a day its user logged in (a day's
    # events stay in it); farm visits and the good half of an invalid batch aside
    logins = {(e["user_id"], _day(e)) for e in _valid_events(history) if e["type"] == "login"}
    for e in _valid_events(history):
        if not str(e["device_id"]).startswith("farm-") and not str(e["event_id"]).startswith("ok"):
            assert (e["user_id"], _day(e)) in logins


def test_the_story_is_kept_when_the_count_allows() -> None:
    cfg = GenConfig(users=300, days=10, events=12_000, seed=4, batch=5)
    history = generate(cfg)
    assert history.n_events == 12_000
    per_minute: Counter[tuple[str, int]] = Counter()
    farms: dict[str, set[str]] = defaultdict(set)
    for e in _valid_events(history):
        per_minute[(str(e["user_id"]), int(str(e["ts"])) // MINUTE_MS)] += 1
        if str(e["device_id"]).startswith("farm-"):
            farms[str(e["device_id"])].add(str(e["user_id"]))
    bots = [u for u, p in history.personas.items() if p == "bot"]
    assert bots and all(max(n for (u, _), n in per_minute.items() if u == bot) >= 110 for bot in bots)
    n_farm = sum(1 for p in history.personas.values() if p == "farm")
    assert sorted(len(u) for u in farms.values())[-1] == 6 and sum(len(u) for u in farms.values()) == n_farm


def test_a_trim_takes_a_days_further_events_first_then_whole_stories_from_the_end() -> None:
    import random

    events: list[dict[str, object]] = [{"i": i} for i in range(11)]
    tiers = [DAYS, FILLER, FILLER, BURST, BURST, BURST, DAYS, FILLER, BURST, BURST, FARM]
    kept, cut = fit(events, tiers, 8, random.Random(1), pad=lambda base: {}, pad_from=[])
    assert [e["i"] for e in kept] == [0, 3, 4, 5, 6, 8, 9, 10] and not cut
    kept, cut = fit(events, tiers, 4, random.Random(1), pad=lambda base: {}, pad_from=[])
    assert [e["i"] for e in kept] == [0, 3, 6, 10] and cut == {BURST: 4}
    kept, cut = fit(events, tiers, 1, random.Random(1), pad=lambda base: {}, pad_from=[])
    assert [e["i"] for e in kept] == [10] and cut == {BURST: 5, DAYS: 2}  # farm visits go last
    padded, cut = fit(events, tiers, 13, random.Random(1), pad=lambda base: {"next to": base}, pad_from=[6])
    assert padded[:11] == events and padded[11:] == [{"next to": {"i": 6}}] * 2 and not cut


def test_too_few_events_say_what_they_leave_out() -> None:
    cut = generate(GenConfig(users=300, days=21, events=3_000, seed=1))
    assert cut.n_events == 3_000 and cut.story_cut.startswith("3,000 events are too few for every persona's story")
    assert "bots' bursts" in cut.story_cut and "device-farm visits" not in cut.story_cut
    assert generate(GenConfig(users=300, days=21, events=12_000, seed=1)).story_cut == ""


@given(sizes=st.lists(st.integers(1, 30), max_size=40), data=st.data())
def test_duplicates_spend_exactly_their_share(sizes: list[int], data: st.DataObject) -> None:
    import random

    n = data.draw(st.integers(0, sum(sizes)))
    picked = pick_duplicates(sizes, n, random.Random(data.draw(st.integers(0, 99))))
    assert sum(picked.values()) == n
    assert sum(1 for i, k in picked.items() if k < sizes[i]) <= 1  # whole messages but the last


@pytest.mark.parametrize("events,days", [(50_000, 21), (20_000, 7), (30_000, 60), (5_000, 14)])
def test_the_default_users_leave_room_for_every_story(events: int, days: int) -> None:
    history = generate(GenConfig(users=default_users(events, days), days=days, events=events))
    assert history.n_events == events and history.story_cut == ""
