"""What ``vitals run`` prints: read back from ClickHouse and the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from sinks.clickhouse import ClickHouse
from streams.config.settings import Settings
from streams.devtools.generator import History
from streams.kafka.read import read_topic


async def dlq_reasons(settings: Settings) -> Counter[str]:
    records = await read_topic(settings.kafka, settings.dlq_topic)
    return Counter(orjson.loads(r.value)["reason"] for r in records)


def print_summary(settings: Settings, history: History | None = None) -> None:
    ch = ClickHouse(settings.effective_clickhouse_dsn, ca_cert=settings.clickhouse_ca,
                    verify=settings.clickhouse_verify)
    q, t = ch.query, ch.table
    events, users, days = q(
        f"SELECT sum(events), uniqExact(app_id, user_id), uniqExact(day) FROM {t('user_activity_daily')} FINAL"
    )[0]
    print("\n== vitals: what it found ==")
    print(f"events counted (deduplicated): {events:,}   users: {users:,}   days: {days}")
    print("\nDAU, last 7 days:")
    for day, dau, payers, amount in q(
        "SELECT day, uniqExact(app_id, user_id), countIf(payments > 0), "
        f"sum(payment_amount) FROM {t('user_activity_daily')} FINAL "
        "GROUP BY day ORDER BY day DESC LIMIT 7"
    )[::-1]:
        print(f"  {day}  DAU {dau:>7,}   payers {payers:>6,}   revenue {float(amount):>12,.2f}")
    reasons = asyncio.run(dlq_reasons(settings))
    print(f"\ndead-lettered: {sum(reasons.values()):,}  " + ", ".join(f"{r}={n}" for r, n in reasons.most_common()))
    print("\nalerts by rule (episodes opened / resolved):")
    for rule, opened, resolved in q(
        "SELECT rule, countIf(status = 'open'), countIf(status = 'resolved') "
        f"FROM {t('alerts')} FINAL GROUP BY rule ORDER BY rule"
    ):
        print(f"  {rule:<28} {opened:>7,} {resolved:>7,}")
    if history is not None:
        by_persona: dict[str, Counter[str]] = {}
        rows = q(f"SELECT rule, user_id, user_ids FROM {t('alerts')} FINAL WHERE status = 'open'")
        for rule, user_id, user_ids in rows:
            for u in [user_id] if user_id else user_ids:
                persona = history.personas.get(u, "?")
                by_persona.setdefault(rule, Counter())[persona] += 1
        print("\nwhich personas the rules flagged (users):")
        for rule, counts in sorted(by_persona.items()):
            print(f"  {rule:<28} " + ", ".join(f"{p}={n}" for p, n in counts.most_common(4)))
    print("\nexample alerts:")
    for (raw,) in q(
        'SELECT any(concat(\'{"rule":"\', rule, \'","status":"\', status, \'","user":"\', '
        "ifNull(user_id, ifNull(device_id, '')), '\",\"episode_start\":', toString(episode_start), "
        "',\"evidence\":', evidence, '}')) FROM " + t("alerts") + " FINAL GROUP BY rule ORDER BY rule"
    ):
        print("  " + raw[:300])
    ch.close()

