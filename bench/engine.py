"""Micro-benchmark of the pure engine path, without Kafka:

    python -m bench.engine [--events 415000 --users 20000 --shape batch] [--profile]

Generates a history with ``streams/devtools/generator.py`` and feeds its messages' bytes, in batches of
``--batch-messages`` messages, through what ``Pipeline.on_user_batch`` and its flush do with
them: decode, validate and route to the home partition (``streams.engine.routing``; mis-keyed events
are re-encoded for the reroute topic), ``UserPartition.apply``, and per flush the state drain
(encode) and the building of the ClickHouse rows. Prints µs per event for each stage, events/s,
and a digest of the outputs (alerts, rows, outcomes) so two versions of the engine can be
compared for equal results as well as for speed.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import hashlib
import json
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from schemas.time_units import DAY_MS
from streams.config.settings import load_settings
from streams.devtools.generator import GenConfig, History, generate
from streams.engine.partition import Outputs, RulesByApp, StateStore, UserPartition, activity_columns
from streams.engine.partitioner import PartitionCache, home_partition
from streams.engine.routing import route

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("route", "apply", "drain", "rows")  # route: decode, validate and route (streams.engine.routing)
TOPIC = "vitals.events"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = -1  # Kafka's (none: stream time follows the events' own)


@dataclass
class Run:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # results kept as str/bytes only, so that they do not add to the garbage collector's work
    alerts: list[str] = field(default_factory=list)
    rows: dict[bytes, bytes] = field(default_factory=dict)  # app, user, day -> counters (last written)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    changelog_records: int = 0
    changelog_bytes: int = 0
    flushes: int = 0


def kafka_messages(history: History) -> list[Msg]:
    """The history's messages with the offsets Kafka would give them (per partition, in order)."""
    next_offset: Counter[int] = Counter()
    out = []
    for m in history.messages:
        out.append(Msg(TOPIC, m.partition, next_offset[m.partition], m.key, m.value))
        next_offset[m.partition] += 1
    return out


def run_engine(messages: list[Msg], partitions: int, now_ms: int, batch_messages: int, flush_events: int,
               segments: bool = True) -> Run:
    """One pass over ``messages`` with fresh state, timing each stage like the pipeline runs it."""
    rules = RulesByApp(load_settings(env={}, processing={"segments": segments}))
    data: dict[bytes, bytes] = {}
    users: dict[int, UserPartition] = {}
    home = PartitionCache(partitions)
    out = Outputs()
    run = Run()
    sec = run.seconds
    clock = time.perf_counter
    since_flush = 0

    def flush() -> None:  # in Pipeline._flush_locked's order: ClickHouse rows (2.), then changelogs (3.)
        t0 = clock()
        rows = activity_columns(out.dirty_rows, {p: up.store for p, up in users.items()})  # as Pipeline._take_job
        t1 = clock()
        for up in users.values():
            for _key, raw in up.drain():
                run.changelog_records += 1
                run.changelog_bytes += len(raw) if raw is not None else 0  # None: a deleted segment
            up.drain_meta()
            up.flushed_watermark = up.watermark
        t2 = clock()
        sec["rows"] += t1 - t0
        sec["drain"] += t2 - t1
        for app_id, user_id, day, *counters in rows.to_rows():
            run.rows[f"{app_id}\x1f{user_id}\x1f{day}".encode()] = repr(counters).encode()
        run.alerts += [f"{a.alert_id}:{a.status}" for a in out.alerts]
        run.outcomes.update(out.by_app())
        run.flushes += 1
        out.clear()

    for start in range(0, len(messages), batch_messages):
        chunk = messages[start : start + batch_messages]
        t0 = clock()
        per_partition = route(chunk, now_ms, home, out)
        t2 = clock()
        n_events = sum(len(events) for batch in per_partition.values() for _t, _o, _k, events, _ts in batch)
        for p, batch in per_partition.items():
            up = users.get(p)
            if up is None:
                up = users[p] = UserPartition(p, StateStore(data), rules, "vitals-reroute")
            before = len(out.alerts)
            up.apply(batch, out)
            up.count_episodes(out.alerts[before:])
        t3 = clock()
        sec["route"] += t2 - t0  # decode included
        sec["apply"] += t3 - t2
        since_flush += n_events
        if since_flush >= flush_events:
            flush()
            since_flush = 0
    flush()
    return run


def digest(run: Run) -> str:
    h = hashlib.sha256()
    h.update(repr(sorted(run.alerts)).encode())
    h.update(repr(sorted(run.rows.items())).encode())
    h.update(repr(sorted(run.outcomes.items())).encode())
    return h.hexdigest()[:16]


# input shape: (events of one user per message at most, the SDK's batch window in ms)
SHAPES = {
    # the batch shape: a user's events held until 100 (with ~20 events per user in the
    # history, most messages hold a user's days, sent at the history's end: behind the watermark)
    "batch": (100, 1 << 62),
    "single": (1, 1 << 62),
    # batches as an SDK sends them: when full or 30 minutes old (on time; ~2.5 events per message)
    "sdk": (100, 30 * 60_000),
    # the batch shape with one shared user id (``anonymous``) sending a fifth of the messages (hot_key)
    "hotkey": (100, 1 << 62),
    # the batch shape in Segment's format (bench/formats.py; bench.run only: the worker reads it with
    # VITALS_INPUT_FORMAT=segment)
    "segment": (100, 1 << 62),
}
HOT_USER = "anonymous"
HOT_SHARE = 0.2


def history_for(shape: str, events: int, users: int, days: int, partitions: int, seed: int) -> History:
    """The generated history of one input shape (as ``bench.run``'s)."""
    batch, window = SHAPES[shape]
    cfg = GenConfig(users=users, days=days, events=events, seed=seed, batch=batch,
                    partitions=partitions, invalid_rate=0.0005, batch_window_ms=window)
    history = generate(cfg)
    if shape == "segment":
        from bench.formats import as_segment

        return as_segment(history)
    return hot_key(history, HOT_SHARE, HOT_USER) if shape == "hotkey" else history


def hot_key(history: History, share: float, user: str) -> History:
    """``history`` with every event of one message in ``1 / share`` sent by one user id (a shared id such
    as ``anonymous``): keyed by it, on its partition. Invalid messages are left as they are."""
    every = round(1 / share)
    key = user.encode()
    partition = home_partition(key, history.config.partitions)
    messages = []
    for i, m in enumerate(history.messages):
        if i % every == 0 and not m.expect_invalid:
            doc = orjson.loads(m.value)
            for event in doc if isinstance(doc, list) else [doc]:
                event["user_id"] = user
            m = dataclasses.replace(m, partition=partition, key=key, value=orjson.dumps(doc))
        messages.append(m)
    return dataclasses.replace(history, messages=messages)


def measure(shape: str, args: argparse.Namespace, profile: Callable[[Callable[[], Run]], Run] | None = None
            ) -> dict[str, Any]:
    history = history_for(shape, args.events, args.users, args.days, args.partitions, args.seed)
    messages = kafka_messages(history)
    n_events = history.n_events
    behind = history.behind_watermark(load_settings(env={}).rules.allowed_lateness_s * 1000)
    cfg = history.config
    del history
    default_thresholds = gc.get_threshold()
    # the worker does not hold the whole history in its heap: keep it out of the collector's way
    gc.collect()
    gc.freeze()
    now_ms = cfg.start_ms + (cfg.days + 1) * DAY_MS  # fixed: results must not depend on the clock

    def once() -> Run:
        gc.collect()
        if args.gc_threshold:  # what a worker could set at startup (see --gc-threshold)
            gc.set_threshold(*args.gc_threshold)
        try:
            return run_engine(messages, args.partitions, now_ms, args.batch_messages, args.flush_events,
                              args.segments)
        finally:
            gc.set_threshold(*default_thresholds)

    runs = [once() for _ in range(args.repeat)] if profile is None else [profile(once)]
    gc.unfreeze()
    best = min(runs, key=lambda r: sum(r.seconds.values()))
    total = sum(best.seconds.values())
    users_tracked = len({row.rsplit(b"\x1f", 1)[0] for row in best.rows})
    return {
        "shape": shape,
        "messages": len(messages),
        "events": n_events,
        "behind_watermark": behind,
        "users": users_tracked,
        "us_per_event": {k: v / n_events * 1e6 for k, v in best.seconds.items()},
        "us_per_event_total": total / n_events * 1e6,
        "events_per_s": n_events / total,
        "alerts": len(best.alerts),
        "rows": len(best.rows),
        "changelog_records": best.changelog_records,
        "changelog_bytes_per_record": best.changelog_bytes / max(1, best.changelog_records),
        "flushes": best.flushes,
        "outcomes": {f"{app}:{name}": n for (app, name), n in best.outcomes.items()},
        "digest": digest(best),
        "all_totals_s": [sum(r.seconds.values()) for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=415_000)  # the history the results were measured on
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--shapes", default="batch,single", help=f"of {','.join(SHAPES)}")
    parser.add_argument("--batch-messages", type=int, default=5000, help="messages per on_user_batch call")
    parser.add_argument("--flush-events", type=int, default=100_000, help="events between flushes (~1 s at target)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per shape (fresh state each); best reported")
    parser.add_argument("--gc-threshold", type=int, nargs=3, metavar=("G0", "G1", "G2"),
                        help="garbage collector thresholds during the passes (default: Python's 700 10 10)")
    parser.add_argument("--profile", action="store_true", help="one pass under cProfile; print the top functions")
    parser.add_argument("--json", default="", help="write the figures to this file (default: print only)")
    parser.add_argument("--segments", action=argparse.BooleanOptionalAction, default=True,
                        help="processing.segments (--no-segments: what they cost)")
    args = parser.parse_args()
    results: dict[str, Any] = {"config": vars(args)}
    for shape in args.shapes.split(","):
        profile = None
        if args.profile:
            def profile(fn: Callable[[], Run]) -> Run:
                prof = cProfile.Profile()
                run = prof.runcall(fn)
                pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
                return run
        print(f"[{shape}] generating and running...", file=sys.stderr)
        results[shape] = measure(shape, args, profile)
    print(f"\n{'shape':<8}{'events':>10}{'users':>8}" + "".join(f"{s:>9}" for s in STAGES)
          + f"{'total µs':>10}{'events/s':>11}  digest")
    for shape in args.shapes.split(","):
        r = results[shape]
        print(f"{shape:<8}{r['events']:>10,}{r['users']:>8,}" + "".join(f"{r['us_per_event'][s]:>9.2f}" for s in STAGES)
              + f"{r['us_per_event_total']:>10.2f}{r['events_per_s']:>11,.0f}  {r['digest']}")
        print(f"        {r['events'] / r['messages']:.1f} events per message, {100 * r['behind_watermark']:.1f}% "
              "behind the watermark")
        print(f"        alerts {r['alerts']:,}, rows {r['rows']:,}, changelog {r['changelog_records']:,} records "
              f"({r['changelog_bytes_per_record']:.0f} B avg), {r['flushes']} flushes, outcomes {r['outcomes']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
