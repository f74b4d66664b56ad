"""The event outcome counts of ClickHouse's event_outcome_flushes (sinks/outcomes.py) and the gates that
keep them exact (streams/worker/outcome_gates.py): pure logic, no broker, no ClickHouse.

The crash test plays the flush protocol (streams/worker/flush.py: rows to ClickHouse, gates to the
changelog, states to the changelog, commit) against a model of the table (per (partition, seq), the
highest version) and kills it at every step of random flushes: the table's sums stay the batch counts."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from sinks.outcomes import LAST_DAY, OutcomeRow, entries, labels
from streams.engine.store import Outputs
from streams.worker.outcome_gates import Gate, OutcomeGates, counts_of, encode_gate, gate_key
from tests.records import Rec

EVENTS, REROUTE = "events", "events-reroute"


def test_engine_outcomes_are_named_as_the_metric_names_them() -> None:
    assert labels("accepted") == ("accepted", "")
    assert labels("late") == ("late", "")
    assert labels("late:beyond_state") == ("late", "beyond_state")
    assert labels("duplicate") == ("duplicate", "")
    assert labels("replayed") == ("duplicate", "replay")
    assert labels("invalid:not_json") == ("invalid", "not_json")
    assert labels("rerouted") is None  # counted where it lands
    assert labels("dlq:internal_undecodable") is None  # a device record, no event


def test_entries_merge_clamp_days_and_leave_out_what_is_no_final_outcome() -> None:
    got = entries([(("shop", 20_000, "accepted"), 3), (("shop", 20_000, "rerouted"), 5),
                   (("", 99_999, "invalid:bad_ts"), 1), (("", 70_000, "invalid:bad_ts"), 2),
                   (("", -3, "invalid:not_json"), 1), (("shop", 20_000, "dlq:x"), 1), (("shop", 1, "late"), 0)])
    assert got == {("shop", 20_000, "accepted", ""): 3, ("", LAST_DAY, "invalid", "bad_ts"): 3,
                   ("", 0, "invalid", "not_json"): 1}


def _users(*partitions: int) -> Any:
    return {p: SimpleNamespace(store=SimpleNamespace(data={})) for p in partitions}


async def _committed(tp: tuple[str, int]) -> int:
    return 0


def test_a_flush_writes_one_row_per_partition_whose_counts_moved_and_its_gate() -> None:
    gates = OutcomeGates(EVENTS, REROUTE)
    users = _users(0, 1, 2)
    for p in users:
        asyncio.run(gates.load(p, users[p].store.data, _committed))
    out = Outputs()
    out.outcomes.update({(0, "shop", 20_000, "accepted"): 4, (0, "shop", 20_000, "duplicate"): 1,
                         (1, "", 20_001, "invalid:not_json"): 2, (2, "shop", 20_000, "rerouted"): 7})
    out.recounted.update({(0, "shop", 20_000, "accepted"): 1})  # a replay's: counted before
    rows, records = gates.take(out, {(EVENTS, 0): 10, (REROUTE, 0): 3, (EVENTS, 1): 5, (EVENTS, 2): 8},
                               users, "users-changelog", 1_000)
    assert rows == [OutcomeRow(0, 1, 1_000, 9, 2, ((("shop", 20_000, "accepted", ""), 3),
                                                   (("shop", 20_000, "duplicate", ""), 1))),
                    OutcomeRow(1, 1, 1_000, 4, -1, ((("", 20_001, "invalid", "not_json"), 2),))]
    assert [(topic, p, key) for topic, p, key, _ in records] == [("users-changelog", 0, gate_key(0)),
                                                               ("users-changelog", 1, gate_key(1))]
    assert users[0].store.data[gate_key(0)] == records[0][3]  # the table's store holds it as the changelog will
    # the next row of partition 0: the next seq, a later version even if the clock stepped back
    out = Outputs()
    out.outcomes[(0, "shop", 20_000, "late")] = 1
    rows, _ = gates.take(out, {(EVENTS, 0): 12}, users, "users-changelog", 500)
    assert (rows[0].seq, rows[0].version, rows[0].events_offset, rows[0].reroute_offset) == (2, 1_001, 11, 2)


def test_only_messages_up_to_a_durable_gate_that_come_again_are_recounted() -> None:
    gates = OutcomeGates(EVENTS, REROUTE)
    data = {gate_key(0): encode_gate(Gate(3, 9, 5, 2)), gate_key(1): encode_gate(Gate(1, 9, 7, -1))}

    async def committed(tp: tuple[str, int]) -> int:
        return {(EVENTS, 0): 4, (REROUTE, 0): 3, (EVENTS, 1): 8}[tp]

    for p in (0, 1):
        asyncio.run(gates.load(p, data, committed))
    # partition 0 replays events offsets 4-5 (the reroute topic resumes past its gate); partition 1 nothing
    assert gates.until == {(EVENTS, 0): 5}
    msgs = [Rec(EVENTS, 0, 4, None, b""), Rec(EVENTS, 1, 8, None, b""), Rec(EVENTS, 0, 5, None, b""),
            Rec(EVENTS, 0, 6, None, b""), Rec(EVENTS, 0, 7, None, b"")]
    seen: list[list[int]] = []
    out = Outputs()

    def apply(records: Any) -> None:
        seen.append([m.offset for m in records])
        for m in records:
            out.outcomes[(m.partition, "a", 1, "accepted")] += 1

    gates.apply(msgs, out, apply)
    assert seen == [[4, 5], [8, 6, 7]]  # the replay first: each partition keeps its order
    assert out.recounted == Counter({(0, "a", 1, "accepted"): 2})
    assert out.outcomes == Counter({(0, "a", 1, "accepted"): 4, (1, "a", 1, "accepted"): 1})
    assert gates.until == {}  # past the gate: the steady state does no work per message
    assert gates.split(msgs) is None


# ---- the flush protocol, killed anywhere -----------------------------------------------------------

STEPS = ("taken", "inserted", "gated", "changelog", "committed")


class Model:
    """One source partition through the flush protocol: the table (per seq, the highest version), the
    changelog's gate and state (the last offset the states hold), the committed offset."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes  # each message's outcome when processed first (deterministic)
        self.table: dict[int, tuple[int, dict[Any, int]]] = {}
        self.changelog: dict[bytes, bytes] = {}
        self.state_offset = -1  # the last offset whose outcome the durable states hold
        self.committed = 0
        self.clock = 0

    def run(self, rng: random.Random, crash_rate: float) -> int:
        """Process everything, crashing at random steps; returns the crashes."""
        crashes = 0
        while self.committed < len(self.outcomes):
            crashes += self.worker(rng, crash_rate)
        return crashes

    def worker(self, rng: random.Random, crash_rate: float) -> int:
        gates = OutcomeGates(EVENTS, REROUTE)
        data = dict(self.changelog)
        users = {0: SimpleNamespace(store=SimpleNamespace(data=data))}

        async def committed(tp: tuple[str, int]) -> int:
            return self.committed

        asyncio.run(gates.load(0, data, committed))
        applied = self.state_offset  # what the worker's state holds: the durable states
        offset = self.committed
        while offset < len(self.outcomes):
            n = rng.randint(1, 7)
            msgs = [Rec(EVENTS, 0, o, None, b"") for o in range(offset, min(offset + n, len(self.outcomes)))]
            out = Outputs()

            def apply(records: Any, out: Outputs = out) -> None:
                nonlocal applied
                for m in records:  # a state that holds the message sees a replay, nothing of its outcome
                    outcome = "replayed" if m.offset <= applied else self.outcomes[m.offset]
                    out.outcomes[(0, "app", 20_000 + m.offset % 3, outcome)] += 1
                    applied = max(applied, m.offset)

            gates.apply(msgs, out, apply)
            offset = msgs[-1].offset + 1
            self.clock += 1
            rows, records = gates.take(out, {(EVENTS, 0): offset}, users, "cl", self.clock)
            for step in STEPS:
                if rng.random() < crash_rate:
                    return 1  # killed: what is durable stays
                if step == "inserted":
                    for row in rows:
                        held = self.table.get(row.seq)
                        if held is None or row.version > held[0]:
                            self.table[row.seq] = (row.version, dict(row.counts))
                elif step == "gated":
                    self.changelog.update({key: value for _t, _p, key, value in records})  # type: ignore[misc]
                elif step == "changelog":
                    self.state_offset = offset - 1
                elif step == "committed":
                    self.committed = offset
        return 0

    def counts(self) -> dict[Any, int]:
        return counts_of([OutcomeRow(0, seq, v, 0, 0, tuple(c.items())) for seq, (v, c) in self.table.items()])


@pytest.mark.parametrize("seed", range(40))
def test_killed_at_any_step_the_table_counts_every_event_once_with_its_first_outcome(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = [rng.choice(["accepted", "accepted", "late", "duplicate", "invalid:not_json", "late:beyond_state"])
                for _ in range(rng.randint(20, 120))]
    model = Model(outcomes)
    crashes = model.run(rng, crash_rate=0.2)
    expected = entries(Counter((("app", 20_000 + o % 3, outcome)) for o, outcome in enumerate(outcomes)).items())
    assert crashes >= 2
    assert model.counts() == expected


def test_a_source_topics_counted_offsets_are_in_the_gate() -> None:
    """SPEC 8's [[input.sources]]: a source topic's invalid events are counted where it is read, so the gate
    keeps its last counted offset, and a replay up to it is recounted."""
    gates = OutcomeGates(EVENTS, REROUTE, ("rudder",))
    users = _users(0)
    asyncio.run(gates.load(0, users[0].store.data, _committed))
    out = Outputs()
    out.outcomes[(0, "", 20_000, "invalid:missing_field")] = 1
    rows, records = gates.take(out, {(EVENTS, 0): 3, ("rudder", 0): 8}, users, "cl", 1_000)
    assert len(rows) == 1
    data = {gate_key(0): records[0][3]}
    again = OutcomeGates(EVENTS, REROUTE, ("rudder",))

    async def committed(tp: tuple[str, int]) -> int:
        return {(EVENTS, 0): 3, (REROUTE, 0): 0, ("rudder", 0): 6}[tp]  # the commit after the gate was lost

    asyncio.run(again.load(0, data, committed))
    assert again.until == {("rudder", 0): 7}
    again.forget(0)
    assert again.until == {}


def test_a_partition_kept_through_a_rebalance_recounts_what_a_refused_commit_replays() -> None:
    """The rebalance refused the last commit: the kept partition is sought back behind its gate, and the messages
    up to the gate (counted by the flush that wrote it) come again; the first one past it ends the replay."""
    gates = OutcomeGates(EVENTS, REROUTE)
    data = {gate_key(0): encode_gate(Gate(2, 9, 10, 3))}

    async def committed(tp: tuple[str, int]) -> int:
        return 11 if tp[0] == EVENTS else 4  # the first generation: committed up to the gate

    asyncio.run(gates.load(0, data, committed))
    assert gates.until == {}
    gates.rearm(0)  # a new generation keeps partition 0; its commit of 11 was refused, the consumer seeks to 7
    assert gates.until == {(EVENTS, 0): 10, (REROUTE, 0): 3}
    counted, fresh = gates.split([Rec(EVENTS, 0, o, None, b"") for o in range(7, 13)])  # type: ignore[misc]
    assert [m.offset for m in counted] == [7, 8, 9, 10] and [m.offset for m in fresh] == [11, 12]
    gates.rearm(5)  # a partition without a gate: nothing to rearm
    assert (EVENTS, 5) not in gates.until
