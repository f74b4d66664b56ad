"""vitals benchmark: ceiling, floor, naive, peer (Quix Streams), vitals and two vitals workers in one
consumer group on the same generated history, on the local real Kafka, in input shapes (batch: up
to 100 events of one user per message, held until full; single; optional sdk: batches sent when full
or 30 minutes old, see ``bench.engine.SHAPES``), then the event-to-alert latency of vitals at half its
measured throughput; then the state bytes per user and the restart of a worker holding 1M users'
state (``bench.recovery``).

    python -m bench.run [--events 4200000 --users 200000 --partitions 8] [--shapes batch,single,sdk]
                        [--naive-events 100000] [--latency-seconds 30] [--no-workers-line] [--segments-rounds 3]
                        [--segments-min-seconds 120]
                        [--state-users 1000000] [--recovery-users 1000000]
                        [--json bench/results/latest.json] [--dir .vitals/bench] [--keep-data]

Prints a table, the targets of issues 5 and 27 met or missed (``bench.targets``), and writes the figures as
JSON. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.engine import SHAPES, history_for
from bench.latency import latency_phase
from bench.processes import run_process, segments_lines, start, stop, vitals_line, worker_env
from bench.recovery import measure_recovery
from bench.states import day_of_activity
from bench.targets import check, paired_figures, table
from bench.workdir import fresh_run_dir, remove_run_dir
from streams.config.settings import RuleSettings, load_settings
from streams.devtools import local_kafka as localkafka
from streams.devtools.generator import History
from streams.devtools.produce import produce_history
from streams.kafka.topics import prepare_topics

ROOT = Path(__file__).resolve().parents[1]
LATENESS_MS = RuleSettings().allowed_lateness_s * 1000  # the workers' (default) watermark lag


async def ceiling(bootstrap: str, topic: str, partitions: int, n_messages: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    started, cpu0 = time.perf_counter(), time.process_time()
    messages = events = 0
    try:
        while messages < n_messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=100_000)
            for records in batch.values():
                for r in records:
                    try:
                        doc = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        continue
                    events += len(doc) if isinstance(doc, list) else 1
                messages += len(records)
    finally:
        await consumer.stop()
    elapsed = time.perf_counter() - started
    return {"events_per_s": events / elapsed, "seconds": elapsed, "cpu_s": time.process_time() - cpu0,
            "events": events}


def measure_shape(shape: str, history: History, bootstrap: str, partitions: int, naive_events: int,
                  work: Path, workers_line: bool = True, segments_rounds: int = 3, segments_min_seconds: float = 120,
                  ) -> dict[str, dict[str, float]]:
    tag = uuid.uuid4().hex[:6]
    topic = f"bench-{shape}-{tag}"
    env = worker_env(bootstrap, f"bench-{shape}-{tag}", topic, work)
    if shape == "segment":
        env["VITALS_INPUT_FORMAT"] = "segment"
    settings = load_settings(env=env)
    asyncio.run(prepare_topics(settings))
    asyncio.run(produce_history(settings, history, progress=True))
    n_msgs, n_events = len(history.messages), history.n_events
    out: dict[str, dict[str, float]] = {}
    print(f"[{shape}] ceiling...", file=sys.stderr)
    out["ceiling"] = asyncio.run(ceiling(bootstrap, topic, partitions, n_msgs))
    print(f"[{shape}] peer (Quix Streams)...", file=sys.stderr)
    app_id = f"peer-{tag}"
    r = run_process([sys.executable, "-P", str(ROOT / "bench" / "peer_app.py"), app_id, bootstrap, topic,
                     str(work / app_id)], [env], n_msgs, load_settings(env=dict(env, VITALS_APP_ID=app_id)))
    r["events"] = n_events
    r["events_per_s"] = n_events / r["seconds"]
    out["peer"] = r
    for mode in ("floor", "naive"):
        print(f"[{shape}] {mode}...", file=sys.stderr)
        if mode == "naive" and naive_events < n_events:
            # the naive way is slow: measured on the first part of the same history
            sub = History(history.config, [], {})
            count = 0
            for m in history.messages:
                if count >= naive_events:
                    break
                sub.messages.append(m)
                try:
                    doc = orjson.loads(m.value)
                except orjson.JSONDecodeError:
                    doc = None
                count += len(doc) if isinstance(doc, list) else 1
            sub_topic = f"{topic}-naive"
            sub_env = dict(env, VITALS_EVENTS_TOPIC=sub_topic)
            sub_settings = load_settings(env=sub_env)
            asyncio.run(prepare_topics(sub_settings))
            asyncio.run(produce_history(sub_settings, sub))
            app_id = f"{mode}-{tag}"
            sub_settings = load_settings(env=dict(sub_env, VITALS_APP_ID=app_id))
            r = run_process([sys.executable, "-P", str(ROOT / "bench" / "floor_app.py"), mode, app_id, bootstrap,
                             sub_topic, str(partitions), str(work / app_id)], [env], len(sub.messages), sub_settings)
            r["events"] = count
        else:
            app_id = f"{mode}-{tag}"
            s2 = load_settings(env=dict(env, VITALS_APP_ID=app_id))
            r = run_process([sys.executable, "-P", str(ROOT / "bench" / "floor_app.py"), mode, app_id, bootstrap,
                             topic, str(partitions), str(work / app_id)], [env], n_msgs, s2)
            r["events"] = n_events
        r["events_per_s"] = r["events"] / r["seconds"]
        out[mode] = r
    extra = {"VITALS_INPUT_FORMAT": "segment"} if shape == "segment" else {}
    if segments_rounds > 0:
        # the same worker with segments off (processing.segments = false), in groups of their own, in
        # alternate runs: what segments cost (issue 27: within 10%)
        out["vitals"], out["no segments"] = segments_lines(
            shape, bootstrap, topic, work, tag, n_msgs, n_events, segments_rounds, lambda e: load_settings(env=e),
            lambda s: asyncio.run(prepare_topics(s)), extra, segments_min_seconds)  # type: ignore[arg-type]
        r = out["vitals"]
        r["ratio_to_no_segments"] = r["events_per_s"] / out["no segments"]["events_per_s"]
        r.update(paired_figures(r, out["no segments"]))
    else:
        print(f"[{shape}] vitals...", file=sys.stderr)
        out["vitals"] = r = vitals_line([env], settings, n_msgs, n_events)
    for name in ("ceiling", "floor", "naive", "peer"):
        r[f"ratio_to_{name}"] = r["events_per_s"] / out[name]["events_per_s"]
    if workers_line:
        # two workers in a new group on the same topic, each with its own data dir: the embedded
        # ClickHouse (and Faust's store) is one process per directory
        print(f"[{shape}] vitals, two workers in one group...", file=sys.stderr)
        app_id = f"bench-{shape}-{tag}-x2"
        x2_env = dict(worker_env(bootstrap, app_id, topic, work), **extra)
        x2_settings = load_settings(env=x2_env)
        asyncio.run(prepare_topics(x2_settings))
        envs = [dict(x2_env, VITALS_DATA_DIR=str(work / app_id / f"w{i}")) for i in range(2)]
        out["vitals x2"] = r2 = vitals_line(envs, x2_settings, n_msgs, n_events)
        r2["ratio_to_vitals"] = r2["events_per_s"] / r["events_per_s"]
    return out


def measure_latency(shape: str, bootstrap: str, partitions: int, rate: float, seconds: float, work: Path
                    ) -> dict[str, float]:
    """A fresh worker on an empty topic; traffic at ``rate`` events/s with fake.burst probes."""
    tag = uuid.uuid4().hex[:6]
    app_id = f"bench-lat-{shape}-{tag}"
    env = worker_env(bootstrap, app_id, f"{app_id}.events", work)
    settings = load_settings(env=env)
    asyncio.run(prepare_topics(settings))
    proc = start([sys.executable, "-P", "-m", "streams.cli", "worker", "--loglevel", "WARNING"], env)
    try:
        return asyncio.run(latency_phase(settings, shape, partitions, rate, seconds))
    finally:
        stop([proc])


def state_bytes_per_user(data: dict[bytes, bytes]) -> dict[str, float]:
    """Encoded state bytes per tracked user in ``data``: the table data of a realistic day of activity
    (``bench.states.day_of_activity``; keys starting with NUL are partition metadata, not users)."""
    users = [(k, v) for k, v in data.items() if k[:1] != b"\x00"]
    encoded, keys = sum(len(v) for _, v in users), sum(len(k) for k, _ in users)
    return {"users": len(users), "state_bytes_per_user": encoded / len(users), "key_bytes_per_user": keys / len(users),
            "bytes_per_user": (encoded + keys) / len(users)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4_200_000)  # the history the results were measured on
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--shapes", default="batch,single",
                        help=f"of {','.join(SHAPES)} (sdk: up to 100 events per message, sent when full or 30 min old)")
    parser.add_argument("--naive-events", type=int, default=100_000)
    parser.add_argument("--state-users", type=int, default=1_000_000)
    parser.add_argument("--latency-seconds", type=float, default=30, help="0 skips the latency phase")
    parser.add_argument("--recovery-users", type=int, default=1_000_000,
                        help="users' state a restarted worker recovers in the recovery phase (0 skips it)")
    parser.add_argument("--workers-line", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure two vitals workers in one consumer group (row 'vitals x2')")
    parser.add_argument("--segments-rounds", type=int, default=3,
                        help="runs of vitals with segments on and off (processing.segments = false), alternately: "
                             "the lines are the median of each (what segments cost); 0: one vitals run, no off line")
    parser.add_argument("--segments-min-seconds", type=float, default=120,
                        help="more segments rounds (up to 4x) until each configuration ran this long in all")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--dir", default=str(ROOT / ".vitals" / "bench"), help="runs work in DIR/run-<pid>")
    parser.add_argument("--keep-data", action="store_true", help="keep the run's broker and worker data")
    args = parser.parse_args()
    work = fresh_run_dir(Path(args.dir))
    bootstrap = localkafka.start(work / "kafka")
    results: dict[str, Any] = {"config": vars(args)}
    try:
        for shape in args.shapes.split(","):
            history = history_for(shape, args.events, args.users, args.days, args.partitions, 42)
            behind = history.behind_watermark(LATENESS_MS)
            print(f"[{shape}] {history.n_events:,} events in {len(history.messages):,} messages, "
                  f"{100 * behind:.1f}% behind the watermark", file=sys.stderr)
            results[f"{shape}_history"] = {"events": history.n_events, "messages": len(history.messages),
                                           "behind_watermark": behind}
            results[shape] = measure_shape(shape, history, bootstrap, args.partitions, args.naive_events, work,
                                           args.workers_line, args.segments_rounds, args.segments_min_seconds)
            # a 4M-message history holds ~20 GB at its peak: free it before the latency worker and
            # the next shape's history (a run of three shapes was killed by the OOM killer)
            del history
            gc.collect()
            if args.latency_seconds > 0:
                rate = results[shape]["vitals"]["events_per_s"] / 2
                print(f"[{shape}] latency at {rate:,.0f} events/s...", file=sys.stderr)
                results[shape]["latency"] = measure_latency(shape, bootstrap, args.partitions, rate,
                                                            args.latency_seconds, work)
        data = day_of_activity(args.state_users)
        results["state"] = state_bytes_per_user(data)
        if args.recovery_users > 0:
            print(f"recovery of {args.recovery_users:,} users' state...", file=sys.stderr)
            if args.recovery_users != args.state_users:
                data = day_of_activity(args.recovery_users)
            results["recovery"] = measure_recovery(bootstrap, work, args.recovery_users, args.partitions, data=data)
        del data
    finally:
        localkafka.stop(work / "kafka")
        remove_run_dir(work, args.keep_data)
    shapes = args.shapes.split(",")
    if "segment" in shapes and "batch" in shapes:  # SPEC 8: the Segment path against the native one, same history
        results["segment_to_batch"] = (results["segment"]["vitals"]["events_per_s"]
                                       / results["batch"]["vitals"]["events_per_s"])
    verdicts = check(results)
    results["targets"] = [v.as_json() for v in verdicts]
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    for shape in args.shapes.split(","):
        h = results[f"{shape}_history"]
        print(f"{shape}: {h['events']:,} events in {h['messages']:,} messages ({h['events'] / h['messages']:.1f} per "
              f"message), {100 * h['behind_watermark']:.1f}% of them behind the watermark")
    print(f"\n{'shape':<8}{'run':<10}{'events/s':>12}{'cpu s/M ev':>12}{'peak MB':>10}{'vitals x':>10}"
          f"{'main busy':>11}")
    for shape in args.shapes.split(","):
        for name, r in results[shape].items():
            if name == "latency":
                continue
            ratio = results[shape]["vitals"]["events_per_s"] / r["events_per_s"]
            cpu = r["cpu_s"] / r["events"] * 1e6 if r.get("events") else float("nan")
            x1 = f"  {r['ratio_to_vitals']:.2f}x one worker" if "ratio_to_vitals" in r else ""
            busy = f"{r['main_thread_busy']:>11.0%}" if r.get("main_thread_busy") else f"{'':>11}"
            print(f"{shape:<8}{name:<10}{r['events_per_s']:>12,.0f}{cpu:>12.1f}{r.get('peak_rss_mb', 0):>10.0f}"
                  f"{ratio:>10.2f}{busy}{x1}")
    for shape in args.shapes.split(","):
        v = results[shape]["vitals"]
        if "paired_ratio_median" in v:
            print(f"\n{shape} segments on / off: {v['ratio_to_no_segments']:.2f}x events/s (median runs), "
                  f"{v['paired_ratio_median']:.2f}x (median of the rounds' ratios), "
                  f"{v['cpu_ratio_to_no_segments']:.2f}x CPU per event")
    for shape in args.shapes.split(","):
        lat = results[shape].get("latency")
        if lat:
            print(f"\n{shape} event-to-alert latency (fake.burst) at {lat['rate_events_per_s']:,.0f} events/s: "
                  f"p50 {lat['p50_s'] * 1000:.0f} ms, p99 {lat['p99_s'] * 1000:.0f} ms, "
                  f"max {lat['max_s'] * 1000:.0f} ms "
                  f"over {lat['probes']} probes ({lat['alerts_missing']} missing)")
    st = results["state"]
    print(f"\nstate: {st['state_bytes_per_user']:.0f} B/user encoded (+{st['key_bytes_per_user']:.0f} B key) "
          f"at {st['users']:,} users")
    rec = results.get("recovery")
    if rec:
        print(f"recovery: a restarted worker had {rec['users']:,} users' state back in "
              f"{rec['first start']['start_to_ready_s']:.1f} s from its start "
              f"(changelog read {rec['first start']['changelog_read_s']:.1f} s)")
    if "segment_to_batch" in results:
        print(f"\nsegment format: {results['segment_to_batch']:.2f}x the batch shape's events/s (vitals, one worker)")
    print(f"\n{table(verdicts)}")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
