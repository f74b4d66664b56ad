"""Interleaved A/B of worker configurations on one history (this machine's speed drifts by 10-20%
within minutes, so configurations are compared in alternating runs, not in separate sessions):

    python -m bench.ab --shape batch --rounds 3 --config c=none --config python=py.toml

Each ``NAME=FILE`` is a TOML config (VITALS_CONFIG; ``none``: the defaults); ``NAME=FILE@TREE`` runs
the worker from another checkout of vitals (e.g. a ``git worktree`` of an earlier commit; its C
extension is built in place first), so code versions compare the same way. The history is produced
once to the local Kafka; every run is one vitals worker in a new consumer group, from the first
event to lag 0 and the sink flushed (as the ``vitals`` row of ``bench.run``). Prints events/s and
CPU s per million events per run, and the median per configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

from bench.engine import SHAPES, history_for
from bench.processes import vitals_line, worker_env
from bench.run import ROOT
from bench.workdir import fresh_run_dir, remove_run_dir
from streams.config.settings import load_settings
from streams.devtools import local_kafka as localkafka
from streams.devtools.produce import produce_history
from streams.kafka.topics import prepare_topics


def build_extension(tree: Path) -> None:
    """Build the C extensions the checkout ``tree`` declares (its setup.py), in place (as pip builds them)."""
    subprocess.run([sys.executable, "-P", "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="batch", choices=SHAPES)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", action="append", required=True,
                        help="NAME=TOML file or NAME=none, optionally @TREE: the worker of another checkout")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "ab.json"))
    parser.add_argument("--dir", default=str(ROOT / ".vitals" / "bench"))
    args = parser.parse_args()
    configs: dict[str, str | None] = {}
    trees: dict[str, str | None] = {}
    for item in args.config:
        name, _, path = item.partition("=")
        path, _, tree = path.partition("@")
        if not name or not path:
            parser.error(f"--config {item!r}: NAME=FILE or NAME=FILE@TREE expected")
        if tree and not (Path(tree) / "streams" / "engine" / "partition.py").is_file():
            parser.error(f"--config {item!r}: {tree} is not a checkout of vitals")
        if path != "none":
            load_settings(env={}, config_file=path)  # a bad file fails here, not in a worker
        configs[name] = None if path == "none" else str(Path(path).resolve())
        trees[name] = str(Path(tree).resolve()) if tree else None
        if tree:
            build_extension(Path(tree))
    work = fresh_run_dir(Path(args.dir))
    bootstrap = localkafka.start(work / "kafka")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    try:
        history = history_for(args.shape, args.events, args.users, args.days, args.partitions, 42)
        topic = f"bench-ab-{uuid.uuid4().hex[:6]}"
        settings = load_settings(env=worker_env(bootstrap, topic, topic, work))
        asyncio.run(prepare_topics(settings))
        asyncio.run(produce_history(settings, history, progress=True))
        n_msgs, n_events = len(history.messages), history.n_events
        del history
        print(f"{args.shape}: {n_events:,} events in {n_msgs:,} messages", file=sys.stderr)
        for round_ in range(args.rounds):
            for name, path in configs.items():
                app_id = f"ab-{name}-{round_}-{uuid.uuid4().hex[:6]}"
                env = worker_env(bootstrap, app_id, topic, work)
                if path is not None:
                    env["VITALS_CONFIG"] = path
                run_settings = load_settings(env=env)
                asyncio.run(prepare_topics(run_settings))
                r = vitals_line([env], run_settings, n_msgs, n_events, trees[name])
                runs[name].append(r)
                print(f"round {round_ + 1} {name:>12}: {r['events_per_s']:>9,.0f} events/s "
                      f"{r['cpu_s_per_million']:5.1f} cpu s/M  main thread {r.get('main_thread_busy', 0):4.0%} busy  "
                      f"peak {r.get('peak_rss_mb', 0):,.0f} MB", flush=True)
    finally:
        localkafka.stop(work / "kafka")
        remove_run_dir(work, False)
    for name, rs in runs.items():
        rates = [r["events_per_s"] for r in rs]
        print(f"{name:>12}: median {statistics.median(rates):,.0f} events/s  (runs: "
              f"{', '.join(f'{x:,.0f}' for x in rates)})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"config": vars(args), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
