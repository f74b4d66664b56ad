"""The peer for the benchmark: the same per-user daily counts in Quix Streams, the way its
documentation teaches (a tumbling one-day window per message key, counting events by event time,
state in RocksDB with changelog topics, at-least-once).

    python bench/peer_app.py <consumer group> <bootstrap> <topic> <state dir>

Events are keyed by user, so the window's key is the user (no repartition, as vitals and the
naive Faust agent); unkeyed messages (a fraction of a percent in generated histories) are
skipped, and values that are not JSON events are dropped as vitals would dead-letter them.
Runs until stopped; the benchmark measures it by the consumer group's lag.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import orjson
from quixstreams import Application

LATENESS_MS = 3_600_000  # the grace vitals allows (allowed lateness)


def events_of(value: bytes) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return []
    items = doc if isinstance(doc, list) else [doc]
    return [e for e in items if isinstance(e, dict) and isinstance(e.get("user_id"), str) and type(e.get("ts")) is int]


def main() -> None:
    group, bootstrap, topic_name, state_dir = sys.argv[1:5]
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      state_dir=state_dir, loglevel="WARNING", commit_interval=1.0)
    topic = app.topic(topic_name, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.filter(lambda _value, key, _ts, _headers: key is not None, metadata=True)
    sdf = sdf.apply(events_of, expand=True)
    sdf = sdf.set_timestamp(lambda value, _key, _ts, _headers: value["ts"])
    sdf = sdf.tumbling_window(timedelta(days=1), grace_ms=LATENESS_MS).count().current()
    app.run(sdf)


if __name__ == "__main__":
    main()
