"""``vitals kafka start|stop|status``: the local single-node Kafka (deploy/kafka/kafka.sh) in ``<data_dir>/kafka``.

``start`` takes port 9092 when free (else a free port, said), or ``--port N``; it refuses in one line (exit 2)
a port another process holds or a directory made for another port. The address is recorded in
``<dir>/bootstrap``, where the other commands find it (streams/config/local_broker.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from streams.ops import exit_codes


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kafka", help="start, stop or show the local single-node Kafka")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--dir", default=None, help="the broker's directory (default <data dir>/kafka, where the other "
                                                "commands look for it)")
    k.add_argument("--port", type=int, default=None,
                   help="the broker's port (default 9092, or a free port when another process holds 9092)")
    k.set_defaults(func=cmd_kafka)


def cmd_kafka(args: argparse.Namespace) -> int:
    from streams.config import local_broker
    from streams.config.settings import load_settings
    from streams.devtools import local_kafka

    expected = local_broker.broker_dir(load_settings().data_dir)
    directory = Path(args.dir) if args.dir else expected
    shown = local_broker.shown(directory)
    elsewhere = directory.resolve() != expected.resolve()  # not where the commands look
    if args.action == "status":
        return _status(directory)
    if args.action == "stop":
        was = local_broker.running_bootstrap(directory)
        local_kafka.stop(directory)
        print(f"vitals kafka: stopped the local broker at {was} ({shown})" if was
              else f"vitals kafka: no local broker running in {shown}", file=sys.stderr)
        return exit_codes.OK
    try:
        plan = local_kafka.plan_start(directory, args.port)
    except local_kafka.BrokerRefused as exc:
        print(f"vitals kafka: {exc}", file=sys.stderr)
        return exit_codes.CONFIG
    if plan.note:
        print(f"vitals kafka: {plan.note}", file=sys.stderr)
    try:
        if plan.running:
            bootstrap = local_broker.recorded_bootstrap(directory) or f"127.0.0.1:{plan.port}"
        else:
            print(f"vitals kafka: starting the local broker on port {plan.port} (first time: Maven resolves the "
                  "jars)...", file=sys.stderr)
            bootstrap = local_kafka.start(directory, plan.port)
    except subprocess.CalledProcessError as exc:  # kafka.sh said why on its stderr
        print(f"vitals kafka: {local_kafka.script_failure(exc)}", file=sys.stderr)
        return exit_codes.CONFIG if exc.returncode == exit_codes.CONFIG else exit_codes.FAILED_COMMAND
    print(f"vitals kafka: the local broker {'was already running' if plan.running else 'runs'} at {bootstrap} "
          f"({shown}; stop it: vitals kafka stop{f' --dir {shown}' if elsewhere else ''})", file=sys.stderr)
    if elsewhere:
        print(f"vitals kafka: commands look for a local broker in {local_broker.shown(expected)}, not {shown}: "
              f"give them VITALS_KAFKA_BOOTSTRAP={bootstrap}", file=sys.stderr)
    print(bootstrap)
    return exit_codes.OK


def _status(directory: Path) -> int:
    """Running (exit 0, its address on stdout) or not (exit 1)."""
    from streams.config import local_broker

    shown = local_broker.shown(directory)
    bootstrap = local_broker.recorded_bootstrap(directory)
    pid = local_broker.broker_pid(directory)
    if bootstrap is not None and pid is not None:
        print(f"vitals kafka: running at {bootstrap} (pid {pid}, {shown})", file=sys.stderr)
        print(bootstrap)
        return exit_codes.OK
    if bootstrap is not None:
        print(f"vitals kafka: not running ({shown}, made for {bootstrap}; start it: vitals kafka start)",
              file=sys.stderr)
    else:
        print(f"vitals kafka: no local broker in {shown} (start one: vitals kafka start)", file=sys.stderr)
    return exit_codes.FAILED_COMMAND
