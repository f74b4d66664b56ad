"""The kill loop (issue 24): SIGKILL a worker several times over a big single-event history and count
the alerts lost (must be 0) and sent twice (SPEC section 4: rare), against the rules oracle.

    .venv/bin/python -m tests.stress.kill_loop [--events 316000] [--kills 3] [--runs 3] [--store memory]

Each run: its own local Kafka broker, a history of 500 users over 150 days (bursts, device farms,
churners, 2% redeliveries, bounded disorder), produced, then one supervised worker killed (SIGKILL of
its process) ``--kills`` times, evenly over the input plus a random 0-2.5 s, then run to the end.
Not part of the test command (minutes per run); its figures are in docs/guarantees.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from streams.devtools import local_kafka as localkafka
from streams.devtools.generator import GenConfig, generate
from streams.devtools.produce import produce_history
from streams.devtools.worker_process import consumer_lag, stop_worker, wait_for_lag_zero
from streams.kafka.topics import prepare_topics
from tests.conftest import make_deployment
from tests.faultcheck import write_config
from tests.integration.test_alerts_oracle import delivered, read_alerts
from tests.oracle_rules import expected_alerts
from tests.procs import process_tree, wait_for


def one_run(base: Path, seed: int, events: int, kills: int, store: str) -> dict[str, int]:
    bootstrap = localkafka.start(base / "kafka")
    try:
        deployment = make_deployment(bootstrap, base)
        deployment.env["VITALS_CONFIG"] = str(write_config(base / "vitals.toml", 8, store=store))
        partitions = asyncio.run(prepare_topics(deployment.settings))
        history = generate(GenConfig(users=500, days=150, events=events, seed=seed, batch=1, partitions=partitions,
                                     unkeyed_rate=0.0, dup_rate=0.02))
        asyncio.run(produce_history(deployment.settings, history))
        total, rng = len(history.messages), random.Random(seed)
        worker = deployment.worker("w")

        def committed() -> int:
            try:
                return total - asyncio.run(consumer_lag(deployment.settings))
            except Exception:  # the group may not exist yet
                return 0

        try:
            for i in range(kills):
                target = total * (i + 1) // (kills + 1)
                wait_for(lambda: committed() >= target, 1200, f"{target} messages committed")  # noqa: B023
                time.sleep(rng.uniform(0, 2.5))
                tree = process_tree(worker.pid)
                if len(tree) > 1:
                    os.kill(tree[1], signal.SIGKILL)
                wait_for(lambda: len(process_tree(worker.pid)) > 1, 120, "a restarted worker")
            wait_for_lag_zero(deployment.settings, worker, total, timeout_s=1800, progress=False)
        finally:
            stop_worker(worker)
        expected = expected_alerts(delivered(history), partitions)
        got, duplicates = read_alerts(deployment)
        missing, unexpected = expected - got, got - expected
        lost = Counter(a[2] for a in missing)
        print(f"  seed {seed}: {total} messages, {len(expected)} alerts, lost {len(missing)} {dict(lost)}, "
              f"unexpected {len(unexpected)}, duplicates {duplicates} ({100 * duplicates / len(expected):.2f}%, "
              f"{duplicates / max(1, kills):.1f} per kill)", flush=True)
        return {"alerts": len(expected), "lost": len(missing), "unexpected": len(unexpected),
                "duplicates": duplicates}
    finally:
        localkafka.stop(base / "kafka", kill=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=316_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    totals: Counter[str] = Counter()
    print(f"kill loop: {args.runs} runs x {args.kills} SIGKILLs, ~{args.events} events, store {args.store}")
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="vitals-kills-") as tmp:
            totals.update(one_run(Path(tmp), args.seed + run, args.events, args.kills, args.store))
    kills = args.runs * args.kills
    print(f"total: {totals['alerts']} alerts, lost {totals['lost']}, unexpected {totals['unexpected']}, "
          f"duplicates {totals['duplicates']} ({100 * totals['duplicates'] / max(1, totals['alerts']):.2f}%, "
          f"{totals['duplicates'] / max(1, kills):.1f} per kill)")
    if totals["lost"] or totals["unexpected"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
