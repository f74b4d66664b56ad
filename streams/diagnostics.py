"""What a worker is waiting on, for operators: SIGUSR1 logs every asyncio task's stack and the
consumer's bookkeeping per partition (committed, read, acked, gaps, paused)."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

log = logging.getLogger("vitals.diagnostics")


def consumer_state(app: Any) -> list[str]:
    """One line per topic partition of Faust's consumer bookkeeping (no message contents)."""
    consumer = app.consumer
    lines = [f"rebalancing={app.rebalancing} flow_control_active={app.flow_control.is_active()}"]
    try:
        assignment = sorted(consumer.assignment())
    except Exception as exc:  # diagnostics never raise
        return [*lines, f"assignment unavailable: {type(exc).__name__}"]
    paused = set(getattr(consumer, "_paused_partitions", ()))
    active = getattr(consumer, "_active_partitions", None)
    buffered = set(getattr(consumer, "_buffered_partitions", ()))
    fetch = fetcher_state(consumer)
    for tp in assignment:
        acked = consumer._acked.get(tp) or []
        gaps = consumer._gap.get(tp)
        lines.append(
            f"{tp.topic}[{tp.partition}] committed={consumer._committed_offset.get(tp)} "
            f"read={consumer._read_offset.get(tp)} acked={len(acked)}"
            f"{f' [{min(acked)}..{max(acked)}]' if acked else ''} "
            f"gaps={sorted((i.begin, i.end) for i in gaps)[:5] if gaps else []} paused={tp in paused} "
            f"active={active is None or tp in active} buffered={tp in buffered} {fetch.get(tp, '')}".rstrip()
        )
    return lines


def fetcher_state(consumer: Any) -> dict[Any, str]:
    """Per partition, what aiokafka's consumer (in Faust's consumer thread) holds for it: paused,
    fetch position, records fetched but not yet handed over. Read without locks: diagnostics only."""
    try:
        aio = consumer._thread._consumer
        if aio is None:
            return {}
        subscription = aio._subscription.subscription
        states = subscription.assignment._tp_state if subscription is not None else {}
        held = aio._fetcher._records
        out = {}
        for tp, st in list(states.items()):
            position = st.position if st.has_valid_position else None
            out[(tp.topic, tp.partition)] = (f"aiokafka: paused={st.paused} position={position} "
                                             f"held={tp in held}")
        return {tp: out[(tp.topic, tp.partition)] for tp in consumer.assignment() if (tp.topic, tp.partition) in out}
    except Exception as exc:  # diagnostics never raise
        return {None: f"fetcher state unavailable: {type(exc).__name__}"}


def dump(app: Any) -> None:
    for task in asyncio.all_tasks():
        buf = io.StringIO()
        task.print_stack(limit=8, file=buf)
        log.warning("task %s:\n%s", task.get_name(), buf.getvalue())
    log.warning("consumer state:\n%s", "\n".join(consumer_state(app)))
