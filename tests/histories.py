"""Hypothesis strategies for event histories with gaps, bursts, duplicates and bounded disorder."""

from __future__ import annotations

from hypothesis import strategies as st

from schemas.events import Event

H = 3_600_000
D = 86_400_000
T0 = 1_767_225_600_000

TYPES = ["login", "view", "like", "comment", "payment", "content_post", "logout", "complaint", "share"]
GAPS = st.one_of(
    st.integers(0, 120_000),  # seconds to minutes
    st.integers(H, 30 * H),  # hours
    st.integers(2 * D, 5 * D),  # days: 72 h absences, activity drops
    st.integers(61 * D, 95 * D),  # months: 60/90-day absences
)


@st.composite
def histories(draw: st.DrawFn, max_users: int = 6, max_steps: int = 60) -> list[Event]:
    """Events in delivery order."""
    n_users = draw(st.integers(1, max_users))
    users = [f"u{i}" for i in range(n_users)]
    ts = T0 + draw(st.integers(0, D))
    events: list[Event] = []
    seq = 0
    for _ in range(draw(st.integers(1, max_steps))):
        ts += draw(GAPS)
        user = draw(st.sampled_from(users))
        kind = draw(st.sampled_from(TYPES))
        repeat = draw(st.sampled_from([1, 1, 1, 1, 3, 12]))  # busy days build activity-drop baselines
        for r in range(repeat):
            seq += 1
            amount = float(draw(st.integers(0, 80))) if kind == "payment" else 0.0
            device = draw(st.sampled_from([None, "dev-shared", f"dev-{user}"]))
            events.append(Event(f"e{seq}", user, kind, ts + r * 1000, device_id=device, amount=amount))
        if draw(st.integers(0, 12)) == 0:  # a streak of thin daily logins (hollow activity)
            for _ in range(draw(st.integers(9, 12))):
                ts += D + draw(st.integers(-H, H))
                seq += 1
                events.append(Event(f"e{seq}", user, "login", ts, device_id="dev-shared"))
        if draw(st.integers(0, 15)) == 0:  # users passing one device around (device farm)
            for j, member in enumerate(draw(st.permutations(users))[: draw(st.integers(3, 6))]):
                seq += 1
                events.append(Event(f"e{seq}", member, "view", ts + j * 60_000, device_id="dev-farm"))
        if draw(st.integers(0, 20)) == 0:  # a burst
            n = draw(st.integers(98, 103))
            minute = (ts // 60_000 + 1) * 60_000
            for i in range(n):
                seq += 1
                events.append(Event(f"e{seq}", user, "view", minute + i * 500))
            ts = minute + 60_000
    # bounded disorder (within the lateness), a few too-late events, duplicates
    keyed = []
    for i, e in enumerate(events):
        jitter = draw(st.sampled_from([0, 0, 0, 60_000, 25 * 60_000]))
        if draw(st.integers(0, 40)) == 0:
            jitter += 3 * H
        keyed.append((e.ts + jitter, i, e))
        if draw(st.integers(0, 15)) == 0:
            keyed.append((e.ts + jitter + draw(st.integers(0, 600_000)), i, e))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in keyed]
