"""Faust baselines for the benchmark: ``floor`` (an agent that does nothing) and ``naive``
(the way Faust's documentation teaches: one agent, per-event updates of a windowed table)."""

from __future__ import annotations

import sys
from datetime import timedelta

import faust
import orjson

mode, app_id, bootstrap, topic, partitions, datadir = (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                                                      int(sys.argv[5]), sys.argv[6])
app = faust.App(app_id, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False, datadir=datadir,
                topic_partitions=partitions, consumer_auto_offset_reset="earliest", table_standby_replicas=0)
source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

if mode == "floor":

    @app.agent(source)
    async def floor(stream: faust.StreamT) -> None:
        async for _value in stream:
            pass

else:
    daily = app.Table("daily", default=int, partitions=partitions).tumbling(
        timedelta(days=1), expires=timedelta(days=35)
    )

    @app.agent(source)
    async def naive(stream: faust.StreamT) -> None:
        async for value in stream:
            doc = orjson.loads(value)
            for event in doc if isinstance(doc, list) else [doc]:
                if isinstance(event, dict) and "user_id" in event:
                    daily[f"{event.get('app_id', 'default')}:{event['user_id']}"] += 1

if __name__ == "__main__":
    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()
