"""What the ``event_outcome_flushes`` table (sinks/outcomes.py) has counted of each user partition, so
that its counts stay exact under crashes and replays: every event counted once, with the outcome it
had when it was processed first.

A flush writes, per partition whose counts moved, one row: the counts of the messages taken since
the partition's previous row, under the next ``seq`` of the partition. The partition's *gate* — that
``seq``, the row's version and the last offset counted on each source topic (events, reroute) — is a
record of the users table (key ``\\x00outcomes\\x1f<p>``), delivered to the changelog after the rows
are in ClickHouse and before the changed states (streams/worker/flush.py). So, after a crash:

* the gate is durable: its row is in ClickHouse. The messages up to it that come again (the commit
  did not follow) are applied as before, but their outcomes are not counted again
  (``Outputs.recounted``), whether or not the states written after the gate made it: a state that
  did sees them as replays, which says nothing of the outcome they had;
* the gate is not durable: no state of its flush is either (they come after it). The messages after
  the gate are processed afresh, with their first outcomes, and the partition's next row takes the
  same ``seq`` as the lost flush's row, with a later version: it replaces that row under ``FINAL``.
  Rows are only written for counts that moved, so the lost row's messages, counted again, always
  bring that next row.

``take`` does no I/O; ``split`` and ``recount`` work per message only while a partition replays what was
counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import msgspec

from sinks.outcomes import Entry, OutcomeRow, entries
from streams.engine.partition import Outputs, UserPartition
from streams.engine.routing import Record
from streams.worker.delivery import OutRecord

R = TypeVar("R", bound=Record)
TopicPartition = tuple[str, int]


class Gate(msgspec.Struct, array_like=True):
    """A partition's last row in event_outcome_flushes: its seq and version, the offsets it counted to."""

    seq: int = 0
    version: int = 0
    events_offset: int = -1
    reroute_offset: int = -1
    # the other source topics' (SPEC 8's [[input.sources]]): topic -> last offset counted; their events are
    # rerouted, only their invalid ones counted where they are read
    sources: dict[str, int] = {}


encode_gate = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Gate).decode


def gate_key(partition: int) -> bytes:
    return b"\x00outcomes\x1f%d" % partition


class OutcomeGates:
    """The gates of this worker's user partitions (``events_topic``, ``reroute_topic``: its sources)."""

    def __init__(self, events_topic: str, reroute_topic: str, sources: tuple[str, ...] = ()) -> None:
        self.topics = (events_topic, reroute_topic)
        self.sources = sources
        self.gates: dict[int, Gate] = {}
        # offsets up to which messages coming again were counted already, per source (a replay)
        self.until: dict[TopicPartition, int] = {}

    async def load(self, partition: int, data: Mapping[bytes, bytes],
                   start_offset: Callable[[TopicPartition], Awaitable[int]]) -> None:
        """A partition rebuilt from the recovered table; ``start_offset``: where a source resumes (its
        committed offset). Messages from there up to the gate are a replay of counted ones."""
        raw = data.get(gate_key(partition))
        gate = self.gates[partition] = Gate() if raw is None else _decode(raw)
        offsets = [(topic, gate.sources.get(topic, -1)) for topic in self.sources]
        for topic, offset in [*zip(self.topics, (gate.events_offset, gate.reroute_offset), strict=True), *offsets]:
            tp = (topic, partition)
            if offset >= 0 and await start_offset(tp) <= offset:
                self.until[tp] = offset
            else:
                self.until.pop(tp, None)

    def rearm(self, partition: int) -> None:
        """A partition this worker keeps through a rebalance (not rebuilt): the consumer seeks it back to its
        committed offset, which is behind its gate when the rebalance refused the last commit, so messages
        counted already come again. Those up to the gate are a replay (the first message past it ends it,
        as after :meth:`load`)."""
        gate = self.gates.get(partition)
        if gate is None:
            return
        offsets = [(topic, gate.sources.get(topic, -1)) for topic in self.sources]
        for topic, offset in [*zip(self.topics, (gate.events_offset, gate.reroute_offset), strict=True), *offsets]:
            if offset >= 0:
                self.until[(topic, partition)] = offset

    def forget(self, partition: int) -> None:
        """A partition that left this worker."""
        self.gates.pop(partition, None)
        for topic in (*self.topics, *self.sources):
            self.until.pop((topic, partition), None)

    def apply(self, messages: Sequence[R], out: Outputs, apply: Callable[[Sequence[R]], None]) -> None:
        """``apply`` (the engine) on ``messages``, in order; those counted already (:meth:`split`) first, their
        outcomes kept apart (:meth:`recount`)."""
        replay = self.split(messages)
        if replay is None:
            apply(messages)
            return
        counted, fresh = replay
        if counted:
            self.recount(out, lambda: apply(counted))
        if fresh:
            apply(fresh)

    def split(self, messages: Sequence[R]) -> tuple[list[R], list[R]] | None:
        """``messages`` as (counted already, the others), keeping their order; None while no partition
        replays (the steady state: no work per message). A source is done replaying at its first
        message past its gate."""
        until = self.until
        if not until:
            return None
        counted: list[R] = []
        fresh: list[R] = []
        for msg in messages:
            tp = (msg.topic, msg.partition)
            last = until.get(tp)
            if last is not None and msg.offset <= last:
                counted.append(msg)
            else:
                if last is not None:
                    del until[tp]
                fresh.append(msg)
        return counted, fresh

    @staticmethod
    def recount(out: Outputs, apply: Callable[[], None]) -> None:
        """Run ``apply`` (messages counted already) with its outcomes kept apart in ``out.recounted``
        (the metrics still see them in ``out.outcomes``)."""
        outcomes, out.outcomes = out.outcomes, Counter()
        try:
            apply()
        finally:
            out.recounted.update(out.outcomes)
            outcomes.update(out.outcomes)
            out.outcomes = outcomes

    def take(self, out: Outputs, offsets: Mapping[TopicPartition, int], users: Mapping[int, UserPartition],
             changelog: str, now_ms: int) -> tuple[list[OutcomeRow], list[OutRecord]]:
        """A flush's rows, one per partition whose counts moved (``out``: its outputs; ``offsets``: the
        offsets it commits, last taken + 1), and the partitions' new gates for the changelog (also
        written to their table's store)."""
        moved: dict[int, Counter[tuple[str, int, str]]] = defaultdict(Counter)
        for (p, app_id, day, outcome), n in out.outcomes.items():
            n -= out.recounted.get((p, app_id, day, outcome), 0)
            if n:
                moved[p][(app_id, day, outcome)] += n
        rows: list[OutcomeRow] = []
        records: list[OutRecord] = []
        events_topic, reroute_topic = self.topics
        for p in sorted(moved):
            counts = entries(moved[p].items())
            gate, up = self.gates.get(p), users.get(p)
            if not counts or gate is None or up is None:
                continue
            gate.seq += 1
            gate.version = max(now_ms, gate.version + 1)
            gate.events_offset = max(gate.events_offset, offsets.get((events_topic, p), 0) - 1)
            gate.reroute_offset = max(gate.reroute_offset, offsets.get((reroute_topic, p), 0) - 1)
            for topic in self.sources:
                gate.sources[topic] = max(gate.sources.get(topic, -1), offsets.get((topic, p), 0) - 1)
            rows.append(OutcomeRow(p, gate.seq, gate.version, gate.events_offset, gate.reroute_offset,
                                   tuple(sorted(counts.items()))))
            raw = encode_gate(gate)
            up.store.data[gate_key(p)] = raw
            records.append((changelog, p, gate_key(p), raw))
        return rows, records


def counts_of(rows: Sequence[OutcomeRow]) -> dict[Entry, int]:
    """The rows' entries summed (what ``event_outcomes`` returns for them)."""
    total: dict[Entry, int] = {}
    for row in rows:
        for entry, n in row.counts:
            total[entry] = total.get(entry, 0) + n
    return total
