"""``vitals generate``: a deterministic generated history into the events topic."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.config.settings import Sources, load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = sub.add_parser("generate", help="produce a generated event history into the events topic")
    g.add_argument("--users", type=int, default=None,
                   help="default: EVENTS / (12 + DAYS), room for every persona's story")
    g.add_argument("--days", type=int, default=21)
    g.add_argument("--events", type=int, default=300_000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--batch", type=int, default=1, help="events per message (1 = single-event messages)")
    g.add_argument("--hostile", action="store_true",
                   help="mix in hostile but valid input: a hot user, a steady bot, a device of 100k users, "
                        "100k app ids, ten years of backfill, offline phones, a fast clock "
                        "(streams/devtools/hostile.py)")
    g.add_argument("--scale", type=float, default=1.0, help="size of the hostile input (1 = full size)")
    g.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from streams.devtools.generator import GenConfig, default_users, generate
    from streams.devtools.produce import produce_history
    from streams.kafka.reachable import wait_for_kafka
    from streams.kafka.topics import prepare_topics

    sources = Sources()
    settings = load_settings(sources=sources)
    wait_for_kafka(settings.kafka, sources)
    cfg = GenConfig(
        users=args.users or default_users(args.events, args.days),
        days=args.days,
        events=args.events,
        seed=args.seed,
        batch=args.batch,
        partitions=asyncio.run(prepare_topics(settings)),
        hostile=args.hostile,
        hostile_scale=args.scale,
    )
    print(f"generating {cfg.events:,} events of {cfg.users:,} users over {cfg.days} days"
          f"{f' with hostile input (scale {cfg.hostile_scale:g})' if cfg.hostile else ''}...", file=sys.stderr)
    history = generate(cfg)
    if history.story_cut:
        print(f"vitals generate: {history.story_cut}", file=sys.stderr)
    asyncio.run(produce_history(settings, history, progress=True))
    print(f"wrote {history.describe()} to {settings.events_topic}", file=sys.stderr)
    return 0
