"""Table recovery in bulk: the changelog records of the partitions a recovery is restoring go
into their table a fetch at a time, not one record at a time through Faust's recovery queue.

Faust restores a table by handing every changelog record to its consumer callback (two tasks per
record), queueing it, and taking it off the queue in ``Recovery._slurp_changelogs`` with an
``asyncio.wait_for`` and a count of what every partition has left, per record: about 15 000
records/s, so a million users' state took ~70 s to come back (``bench.recovery``).

``BulkRestore.fetch`` does what that loop does for a record, once per fetch and partition: the
same decoding (the changelog topic's own), the same offset bookkeeping (``active_offsets``,
which ``Recovery.need_recovery`` compares with the highwaters), the same
``table.apply_changelog_batch`` (so the stores, memory or RocksDB, and their persisted offsets
are written as Faust writes them), and the same end of recovery: when nothing is left, the
buffers are flushed and ``signal_recovery_end`` is set, which the recovery service waits for.

It takes a partition only while the recovery is restoring it (an *active* changelog partition,
recovery in progress), and only tables without an ``on_changelog_event`` callback (which the
per-record path would call); everything else takes Faust's per-record path, unchanged. Every
record of a restored partition takes this path from the recovery's start (the partitions are
paused outside recovery), so no record of it can wait in Faust's queue or buffers to be applied
after a later one.

Faust's per-record loop sets ``signal_recovery_end`` and clears it again in the same turn; a
bulk restore's end leaves it set. A recovery that starts before Faust's loop next clears it (its
queue wait lasts 5 s: a second rebalance soon after the first) would find it set, log "Done
reading" at once and start processing without the state of the partitions it gained.
``clear_end_signal_on_start`` makes every recovery start with the signal cleared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from faust.types import TP

log = logging.getLogger(__name__)


class BulkRestore:
    """What the consumer restored in bulk since the current recovery began (for its log line)."""

    def __init__(self) -> None:
        self.records = 0
        self.started: float | None = None

    async def fetch(
        self,
        app: Any,
        records: Mapping[TP, list[Any]],
        read_offset: MutableMapping[TP, int | None],
        to_message: Callable[[TP, Any], Any],
    ) -> dict[TP, list[Any]]:
        """Apply the records of the partitions being restored to their tables; return the
        others (for Faust's per-record path)."""
        recovery = app.tables.recovery
        if not recovery.in_recovery:
            return dict(records)
        rest: dict[TP, list[Any]] = {}
        restored = False
        for tp, batch in records.items():
            table = recovery.tp_to_table.get(tp)
            if tp not in recovery.active_tps or table is None or table._on_changelog_event is not None:
                rest[tp] = batch
                continue
            if self.started is None:
                self.started = time.monotonic()
            self.records += await _restore_partition(recovery, table, tp, batch, read_offset, to_message)
            restored = True
        if restored and not recovery.need_recovery():  # (in_recovery: nothing above yields)
            # Recovery._slurp_changelogs' _maybe_signal_recovery_end
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
            assert self.started is not None  # set with the first partition restored
            log.info("restored %d changelog records a fetch at a time in %.2fs", self.records,
                     time.monotonic() - self.started)
            self.records, self.started = 0, None
        return rest


async def _restore_partition(recovery: Any, table: Any, tp: TP, batch: list[Any],
                             read_offset: MutableMapping[TP, int | None], to_message: Callable[[TP, Any], Any]
                             ) -> int:
    decode = table.changelog_topic.decode
    seen = recovery.active_offsets.get(tp)
    events = []
    for record in batch:
        r_offset = read_offset[tp]
        if r_offset is not None and record.offset < r_offset:
            continue  # below the read offset: Faust's fetch loop skips it too
        read_offset[tp] = record.offset
        if seen is None or record.offset > seen:
            events.append(await decode(to_message(tp, record), propagate=True))
            seen = record.offset
    if events:
        table.apply_changelog_batch(events)
        recovery.active_offsets[tp] = seen
    return len(events)


def clear_end_signal_on_start(recovery: Any) -> None:
    """Clear ``signal_recovery_end`` whenever ``recovery`` (Faust's ``Recovery`` service) starts
    restoring, so that a recovery waits for its own end, not one signalled before it began."""
    set_started = recovery._set_recovery_started

    def set_recovery_started() -> None:
        recovery.signal_recovery_end.clear()
        set_started()

    recovery._set_recovery_started = set_recovery_started
