"""Seeks back to the committed offsets, without a broker: the real ordering (streams/worker/ordering.py),
fetch split and seek (streams/worker/consumer.py) around a model of aiokafka's fetcher for one partition
(a fetch position, records handed over from it, a seek that moves it)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace

from faust.types import TP

from streams.worker.consumer import Fetched, LeanConsumer, split_fetch
from streams.worker.ordering import InOrder

EV0 = TP("ev", 0)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


class Log:
    """aiokafka's side of one partition: the offsets the log holds, the fetch position, the
    committed offset a seek goes back to."""

    def __init__(self, offsets: Iterable[int], position: int, committed: int) -> None:
        self.offsets = sorted(offsets)
        self.position = position
        self.committed = committed

    def fetch(self, n: int) -> list[Rec]:
        recs = [Rec(EV0.topic, EV0.partition, o) for o in self.offsets if o >= self.position][:n]
        if recs:
            self.position = recs[-1].offset + 1
        return recs

    async def seek_to_committed(self) -> dict[TP, int | None]:
        self.position = self.committed
        return {EV0: self.committed}


class Worker:
    """The lean consumer's fetch loop and the pipeline's ordering, one step at a time, so a test
    chooses how they interleave."""

    def __init__(self, log: Log, start: int) -> None:
        self.log = log
        self.read: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self.consumer = SimpleNamespace(
            _read_offset=self.read, _committed_offset={}, seek_to_committed=log.seek_to_committed,
            _is_changelog_tp=lambda tp: False, log=SimpleNamespace(info=print), _thread=None, seeks=0)

        async def start_offset(tp: tuple[str, int]) -> int:
            return start

        self.order = InOrder(start_offset, seeks=lambda: int(self.consumer.seeks))
        self.taken: list[int] = []
        self.seeks_asked = 0

    def begin(self, n: int = 10) -> tuple[int, list[Rec]]:
        """A fetch: the seek count as it begins, the records aiokafka hands over."""
        return self.consumer.seeks, self.log.fetch(n)

    def hand_over(self, begun: tuple[int, list[Rec]]) -> Fetched:
        """The fetch loop routes a fetch's records to the agent's channel."""
        seeks, records = begun
        fetched, others = split_fetch({EV0: records}, None, set(), {"ev": "users"}, self.read)
        assert not others
        return Fetched(0, seeks, fetched.get("users", []))

    async def seek(self) -> None:
        await LeanConsumer.perform_seek(self.consumer)  # type: ignore[arg-type]

    async def process(self, fetched: Fetched) -> None:
        """The pipeline's turn: what is in order is taken; a gap asks for a seek back, done at once
        (its flush is not modelled)."""
        keep, seek = await self.order.select(fetched.records, fetched.seeks)
        self.taken += [r.offset for r in keep]
        if seek:
            self.seeks_asked += 1
            await self.seek()

    async def drain(self, rounds: int = 100) -> None:
        """Fetch and process until aiokafka has nothing more (a bounded number of rounds)."""
        for _ in range(rounds):
            fetched = self.hand_over(self.begin(25))
            if not fetched.records:
                return
            await self.process(fetched)
        raise AssertionError("the partition never reached its end")


def test_records_fetched_before_a_seek_back_and_handed_over_after_it_leave_the_range_to_come_again() -> None:
    """Issue 24's stall: a gap's seek back, while the fetch loop held records it had taken before the
    seek and routed after it. They moved the read offset to the log's end, the range fetched again
    from the committed offset was filtered out, the pipeline (its seek done) never asked again: read
    to the end, nothing committed until the lag watchdog. On a loaded machine, records queued before
    the seek and processed more than a few seconds after it were instead stepped over as a gap in the
    log, losing the range."""
    log = Log(range(200), position=150, committed=100)  # left past the committed offset by a rebalance
    w = Worker(log, start=100)

    async def run() -> None:
        first = w.hand_over(w.begin())  # 150..159: a gap after 99
        queued = w.hand_over(w.begin())  # 160..169: queued for the agent before the seek
        begun = w.begin()  # 170..179: the fetch loop's next fetch, taken from aiokafka before the seek...
        await w.process(first)
        assert (w.seeks_asked, log.position, w.consumer.seeks) == (1, 100, 1)
        held = w.hand_over(begun)  # ...and routed after it
        await w.process(queued)
        await w.process(held)
        assert w.taken == [] and w.order.next_offset[(EV0.topic, EV0.partition)] == 100
        await w.drain()

    asyncio.run(run())
    assert w.taken == list(range(100, 200))  # from the committed offset, each offset once, in order
    assert w.seeks_asked == 1 and w.order.stepped == []


def test_a_gap_in_the_log_itself_costs_one_seek_and_is_stepped_over() -> None:
    """Offsets with no record (transaction markers, retention): still missing in a fetch begun after
    the seek back, so they are not in the log."""
    log = Log([*range(120), *range(130, 200)], position=100, committed=100)
    w = Worker(log, start=100)
    asyncio.run(w.drain())
    assert w.taken == [*range(100, 120), *range(130, 200)]
    assert w.seeks_asked == 1
    assert w.order.stepped == [(("ev", 0), 120, 130)]


def test_after_a_rebalance_records_fetched_before_its_seek_ask_for_no_seek_of_their_own() -> None:
    log = Log(range(200), position=150, committed=100)
    w = Worker(log, start=100)

    async def run() -> None:
        begun = w.begin()  # 150..159, fetched before the rebalance's seek
        w.order.new_generation()
        await w.seek()  # Faust's seek to the committed offsets, as the rebalance settles
        await w.process(w.hand_over(begun))
        assert w.taken == [] and w.seeks_asked == 0  # dropped: the range comes again from the seek
        await w.drain()

    asyncio.run(run())
    assert w.taken == list(range(100, 200)) and w.seeks_asked == 0


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int


def test_in_order_takes_each_offset_once_and_asks_one_seek_per_gap() -> None:
    seeks = [0]

    async def start(tp: tuple[str, int]) -> int:
        return 10  # the committed offset after the rebalance

    order = InOrder(start, seeks=lambda: seeks[0])

    def offsets(batch: list[int], fetched_after: int | None = None) -> tuple[list[int], bool]:
        after = seeks[0] if fetched_after is None else fetched_after
        keep, seek = asyncio.run(order.select([Msg("t", 0, o) for o in batch], after))
        return [m.offset for m in keep], seek

    assert offsets([10, 11, 11, 12]) == ([10, 11, 12], False)  # a repeat is dropped
    assert offsets([20, 21]) == ([], True)  # a gap: nothing taken, one seek asked
    assert offsets([22]) == ([], False)  # still the gap, the seek is pending: no second ask
    seeks[0] += 1  # the seek is done
    assert offsets([23], fetched_after=0) == ([], False)  # fetched before it: comes again, no ask
    assert offsets([5, 13, 14]) == ([13, 14], False)  # the seek brought the range back, in order
    assert offsets([30]) == ([], True)
    seeks[0] += 1
    assert offsets([30, 31]) == ([30, 31], False)  # still there after the seek: a gap in the log
    assert order.stepped == [(("t", 0), 15, 30)]
    order.new_generation()
    assert offsets([32]) == ([], True)  # a new generation starts again from the committed offset


def test_a_fetch_queued_for_an_agent_survives_the_flow_control_resume_that_ends_a_rebalance() -> None:
    """Recovery resumes the stream partitions, seeks them to their committed offsets, then resumes
    the app's flow control, which clears Faust's channels: fetches of records from the new positions,
    handed over meanwhile, were lost with nothing to fetch them again (a partition read to its end,
    nothing committed, until the lag watchdog). The routed channels keep them."""
    import faust

    from streams.worker.consumer import RoutedChannel

    app = faust.App("reseek-test", broker="kafka://127.0.0.1:9", web_enabled=False)

    async def run() -> list[int]:
        channels = [app.channel(maxsize=2), RoutedChannel(app, maxsize=2)]
        agents = [channel.clone(is_iterator=True) for channel in channels]  # what an agent iterates
        app.flow_control.resume()  # the app running
        for channel in channels:
            await channel.put(Fetched(3, 1, [Rec("ev", 0, 100)]))
        app.flow_control.resume()  # a rebalance ends, after the seek
        return [agent.queue.qsize() for agent in agents]

    assert asyncio.run(run()) == [0, 1]  # Faust's channel lost the fetch; the routed one kept it
