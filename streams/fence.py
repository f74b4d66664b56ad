"""The alert fence: alerts a replay would send again, held back.

Alerts leave as they fire (latency); the state that fired them reaches the changelog with the next
flush job. A worker that dies in between has sent alerts its restored state does not know of, and
the replay of the uncommitted messages fires them again. To keep such duplicates rare (SPEC section
4), every flush job stamps each partition's meta record with the wall-clock time it was taken
(``alerts_after``): alerts sent after it may come from changes beyond that snapshot. A worker that
rebuilds partitions reads the alerts topic from the earliest such time (minus a margin for clock
steps) to its end, and holds their ``(alert_id, status)`` here; the pipeline does not send those
again (ClickHouse still gets every alert: its rows are idempotent).

Never a lost alert: only alerts read back from the topic are held back. Bounded: at most
``FENCE_MAX`` held (the oldest go first) and at most that many read per alerts-topic partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
from xxhash import xxh3_128_intdigest

from schemas.alerts import Alert

FENCE_MARGIN_MS = 10_000  # read this much before the recorded time (clock steps, producer clocks)
FENCE_MAX = 200_000  # alerts held at most (~10 MiB)


def alert_token(alert_id: str, status: str) -> int:
    return xxh3_128_intdigest(f"{alert_id}\x1f{status}".encode())


class AlertFence:
    """Alerts known to be on the alerts topic already, each held back once."""

    def __init__(self, cap: int = FENCE_MAX) -> None:
        self.cap = cap
        self.held: dict[int, None] = {}  # insertion-ordered: the oldest are dropped first
        self.suppressed = 0

    def __len__(self) -> int:
        return len(self.held)

    def add_records(self, values: Iterable[bytes | None]) -> int:
        """Hold the alerts of these alerts-topic record values (a record that is no alert is skipped)."""
        held, n = self.held, 0
        for value in values:
            try:
                doc = orjson.loads(value or b"")
                token = alert_token(doc["alert_id"], doc["status"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not vitals' (the fence only ever holds back what it recognises)
            held[token] = None
            n += 1
        while len(held) > self.cap:
            del held[next(iter(held))]
        return n

    def to_send(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        """The alerts not on the topic yet; a held one is released as it is matched (it fires once
        in a replay)."""
        held = self.held
        if not held:
            return alerts
        out = []
        for alert in alerts:
            token = alert_token(alert.alert_id, alert.status)
            if token in held:
                del held[token]
                self.suppressed += 1
            else:
                out.append(alert)
        return out
