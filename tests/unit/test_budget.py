"""The memory budget's arithmetic (streams/worker/budget.py) and its setting."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from streams.config.settings import ConfigError, load_settings
from streams.worker.budget import MB, MESSAGE_BYTES, MemoryBudget, message_bytes


@dataclass
class Msg:
    key: bytes | None
    value: bytes | None


def test_messages_count_their_bytes_and_a_fixed_charge() -> None:
    assert message_bytes([Msg(b"u1", b"x" * 1000), Msg(None, None)]) == 2 * MESSAGE_BYTES + 1002


def test_a_flush_is_due_at_a_quarter_and_processing_waits_at_the_budget() -> None:
    budget = MemoryBudget(100 * MB)
    budget.processed = 25 * MB - 1
    assert not budget.flush_due()
    budget.processed += 1
    assert budget.flush_due() and not budget.full()
    budget.fetched, budget.job = 25 * MB, 50 * MB - 1
    assert not budget.full() and budget.ratio < 1
    budget.job += 1
    assert budget.full() and budget.ratio == 1.0


def test_the_budget_is_a_setting_with_a_floor() -> None:
    assert load_settings(env={}).processing.memory_budget_mb == 512
    with pytest.raises(ConfigError, match="memory_budget_mb"):
        load_settings(env={}, processing__memory_budget_mb=8)
