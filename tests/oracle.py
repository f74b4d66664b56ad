"""Independent batch recomputation of what vitals must produce for a generated history.

Aggregates: every valid event counted once per (app_id, user_id, event_id), summed per UTC day.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal

from schemas.events import Event, _Bad, validate
from streams.devtools.generator import History

DAY_MS = 86_400_000
NOW_MS = 4_102_444_800_000  # 2100-01-01: generated histories are all in the past


def valid_events(history: History) -> list[Event]:
    """Valid events in delivery order (duplicates included). "Too far in the future" is judged
    against the record's timestamp (SPEC section 1); a message without one is stamped with the
    producer's clock at send, after every generated event time (``NOW_MS`` stands for it)."""
    out: list[Event] = []
    for m in history.messages:
        try:
            doc = json.loads(m.value)
        except (ValueError, UnicodeDecodeError):
            continue
        items = doc if isinstance(doc, list) else [doc]
        now_ms = NOW_MS if m.timestamp is None else m.timestamp
        for item in items:
            try:
                out.append(validate(item, now_ms))
            except _Bad:
                continue
    return out


def expected_daily(history: History) -> dict[tuple[str, str, str], tuple[int, int, int, Decimal, int, int, int]]:
    seen: set[tuple[str, str, str]] = set()
    acc: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0] * 7)
    for e in valid_events(history):
        ident = (e.app_id, e.user_id, e.event_id)
        if ident in seen:
            continue
        seen.add(ident)
        c = acc[(e.app_id, e.user_id, e.ts // DAY_MS)]
        c[0] += 1
        c[1] += e.type == "login"
        if e.type == "payment":
            c[2] += 1
            c[3] += round(e.amount * 1_000_000)
        c[4] += e.type == "content_post"
        c[5] += e.type in ("comment", "like", "share", "follow")
        c[6] += e.type == "complaint"
    from datetime import date, timedelta

    epoch = date(1970, 1, 1)
    return {
        (app, user, str(epoch + timedelta(days=day))): (c[0], c[1], c[2], Decimal(c[3]).scaleb(-6), c[4], c[5], c[6])
        for (app, user, day), c in acc.items()
    }


def expected_dlq_reasons(history: History) -> Counter[str]:
    return Counter(reason for m in history.messages for reason in m.expect_invalid)
