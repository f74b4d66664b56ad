"""A generated history's size made exact: ``GenConfig.events`` is the number of events its messages
hold (redelivered duplicates and invalid payloads included; hostile input comes on top).

The faults' share is fixed first (:func:`fault_budget`); the personas' events are then trimmed or
padded to the rest (:func:`fit`), the story kept as long as the count allows: a trim removes a
user-day's further events first (at random), then whole bursts (the last first), then days (the
last users' first), the device-farm visits last (one event each); a pad adds events next to a
user's existing ones, on days they are active anyway. :func:`pick_duplicates` spends the
duplicates' share on whole messages (a partial redelivery only for the last few events).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

# what a trim removes first
FILLER = 0  # a user-day's events after its first
BURST = 1  # a bot's burst: what fake.burst is made to see (about 125 events each)
DAYS = 2  # a user-day's first event (it makes the day active), a hollow user's thin days
FARM = 3  # a farm user's visit on the shared device: what fake.device_farm is made to see (one event each)
STORY = (BURST, DAYS, FARM)  # trimmed from the end, whole stories first

INVALID_KINDS = 6  # generator._invalid's kinds; kind 4 is a batch of a good and a bad event
TWO_EVENT_KIND = 4


def invalid_events(kind: int) -> int:
    return 2 if kind == TWO_EVENT_KIND else 1


def fault_budget(events: int, batch: int, dup_rate: float, invalid_rate: float,
                 rng: random.Random) -> tuple[int, list[int]]:
    """(events redelivered, the kinds of the invalid messages): ``dup_rate`` of the events,
    ``invalid_rate`` of the messages (events / batch); the personas keep at least half the events."""
    kinds = [rng.randrange(INVALID_KINDS) for _ in range(round(invalid_rate * events / max(1, batch)))]
    while kinds and sum(map(invalid_events, kinds)) > events // 2:
        kinds.pop()
    rest = events - sum(map(invalid_events, kinds))
    return min(round(dup_rate * events), rest // 2), kinds


Event = dict[str, object]


def fit(events: list[Event], tiers: list[int], target: int, rng: random.Random,
        pad: Callable[[Event | None], Event], pad_from: Sequence[int]) -> tuple[list[Event], Counter[int]]:
    """``events`` trimmed or padded to ``target``, and how many of each story tier the trim took.
    ``pad(base)`` makes an event next to ``base`` (None: there is none), ``pad_from`` are the indexes
    of the events a pad may stand next to."""
    if len(events) < target:
        bases = list(pad_from) or list(range(len(events)))
        extra = [pad(events[rng.choice(bases)] if bases else None) for _ in range(target - len(events))]
        return events + extra, Counter()
    excess = len(events) - target
    drop: set[int] = set()
    filler = [i for i, t in enumerate(tiers) if t == FILLER]
    drop.update(rng.sample(filler, min(excess, len(filler))))
    cut: Counter[int] = Counter()
    for tier in STORY:  # whole stories, the last first
        for i in reversed(range(len(events))):
            if len(drop) == excess:
                break
            if tiers[i] == tier:
                drop.add(i)
                cut[tier] += 1
    return [ev for i, ev in enumerate(events) if i not in drop], cut


def story_cut(cut: Counter[int], events: int) -> str:
    """What a trim took from the personas' stories, for people ("" when nothing)."""
    if not cut:
        return ""
    parts = [f"{cut[tier]:,} {what}" for tier, what in ((BURST, "events of bots' bursts"), (DAYS, "user-days"),
                                                         (FARM, "device-farm visits")) if cut[tier]]
    return (f"{events:,} events are too few for every persona's story: left out {', '.join(parts)} "
            f"(about {events + sum(cut.values()):,} events, or fewer --users, keep them all)")


def pick_duplicates(sizes: Sequence[int], n: int, rng: random.Random) -> dict[int, int]:
    """Message index -> how many of its first events are redelivered, ``n`` events in all (at
    most ``sum(sizes)``): whole messages at random; the last pick a message's first events."""
    order = list(range(len(sizes)))
    rng.shuffle(order)
    picked: dict[int, int] = {}
    left = n
    for i in order:
        if left == 0:
            break
        if sizes[i] <= left:
            picked[i] = sizes[i]
            left -= sizes[i]
    if left:  # every message not picked is larger than what is left
        i = next(i for i in order if i not in picked)
        picked[i] = left
    return picked
