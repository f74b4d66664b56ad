"""``vitals collect``: the HTTP collector of SPEC section 8 (Segment's and PostHog's APIs into the events
topic; streams/collect/)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from streams.config.settings import ConfigError, Sources, load_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("collect", help="HTTP collector: Segment and PostHog SDKs into the events topic")
    c.add_argument("--loglevel", default=os.environ.get("VITALS_LOGLEVEL", "INFO"))
    c.set_defaults(func=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    from streams.collect.service import check_port, run
    from streams.kafka.reachable import wait_for_kafka

    sources = Sources()
    settings = load_settings(sources=sources)
    if not settings.collect.apps:
        raise ConfigError("collect.apps is empty: map each write key or token to an app id in the config file, "
                          '[collect] apps = {"<key>" = "<app_id>"}', key="collect.apps")
    check_port(settings, sources)
    wait_for_kafka(settings.kafka, sources)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    asyncio.run(run(settings))
    return 0
