"""A recovery waits for its own end: the end signal a bulk restore left set is cleared at the
next recovery's start (streams/worker/restore.py)."""

from __future__ import annotations

import asyncio

import faust

from streams.worker.restore import clear_end_signal_on_start


def test_a_recovery_starts_with_the_end_signal_cleared() -> None:
    async def scenario() -> None:
        app = faust.App("restore-test", broker="kafka://127.0.0.1:1", web_enabled=False)
        recovery = app.tables.recovery
        clear_end_signal_on_start(recovery)
        recovery._set_recovery_started()
        recovery.signal_recovery_end.set()  # a bulk restore ends this recovery: the signal stays set
        recovery._set_recovery_ended()
        recovery._set_recovery_started()  # a second rebalance, before Faust's loop cleared it
        assert recovery.in_recovery
        waiting = asyncio.ensure_future(recovery.signal_recovery_end.wait())
        await asyncio.sleep(0)
        assert not waiting.done(), "the new recovery must wait for its own end"
        recovery.signal_recovery_end.set()
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())
