"""What a worker is waiting on, for operators: SIGUSR1 (and the lag watchdog, before it exits) logs
every asyncio task's await chain and stack, the consumer's bookkeeping per partition (committed,
read, acked, gaps, paused, active, what aiokafka holds) and the pipeline's state."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("vitals.diagnostics")


def consumer_state(app: Any) -> list[str]:
    """One line per topic partition of Faust's consumer bookkeeping (no message contents)."""
    consumer = app.consumer
    lines = [f"rebalancing={app.rebalancing} flow_control_active={app.flow_control.is_active()}"]
    topics_of: dict[int, tuple[Any, list[str]]] = {}
    for topic, channel in getattr(app, "lean_routes", {}).items():
        topics_of.setdefault(id(channel), (channel, []))[1].append(topic)
    for channel, topics in topics_of.values():  # a put goes to the queue of each agent iterating it
        queues = [f"{sub.queue.qsize()}/{sub.queue.maxsize}" for sub in list(getattr(channel, "_subscribers", ()))]
        lines.append(f"fetches queued for the agent of {', '.join(sorted(topics))}: {' '.join(queues) or 'no agent'}")
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


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """Where a task is suspended: its coroutine and every coroutine it awaits, outermost first
    (``Task.print_stack`` shows only the outermost one)."""
    out: list[str] = []
    coro: Any = task.get_coro()
    for _ in range(64):
        if coro is None:
            break
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    return out


def dump(app: Any, extra: Sequence[str] = ()) -> None:
    """Every task's await chain and stack, the consumer's bookkeeping per partition and ``extra``
    lines (the pipeline's state), at WARNING: what a stalled worker was waiting for."""
    for task in asyncio.all_tasks():
        buf = io.StringIO()
        task.print_stack(limit=8, file=buf)
        chain = "\n".join(f"  awaits {line}" for line in await_chain(task))
        log.warning("task %s:\n%s%s", task.get_name(), f"{chain}\n" if chain else "", buf.getvalue())
    log.warning("consumer state:\n%s", "\n".join([*consumer_state(app), *extra]))
