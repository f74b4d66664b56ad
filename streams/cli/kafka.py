"""``vitals kafka start|stop``: the local single-node Kafka (deploy/kafka/kafka.sh)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kafka", help="start or stop the local single-node Kafka")
    k.add_argument("action", choices=["start", "stop"])
    k.add_argument("--dir", default=".vitals/kafka")
    k.add_argument("--port", type=int, default=None)
    k.set_defaults(func=cmd_kafka)


def cmd_kafka(args: argparse.Namespace) -> int:
    from streams.devtools import local_kafka

    directory = Path(args.dir)
    if args.action == "start":
        print(local_kafka.start(directory, args.port))
    else:
        local_kafka.stop(directory)
    return 0
