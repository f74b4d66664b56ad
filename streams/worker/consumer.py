"""A leaner consumption path: the pipeline's topics reach their agents one fetch at a time.

Faust pays a fixed cost for every Kafka message whatever the agent does (see ../shared/NOTES.md):
its consumer loop wraps each record in a message, awaits ``wait_first(callback(message), ...)``
(four tasks), decodes it into an event and queues it for the stream. For single-event messages
that cost alone is below what the rules, the state and the sinks need per event.

:class:`LeanConsumer` is Faust's aiokafka consumer with one change to its fetch loop
(``_drain_messages``): records of the topics in ``app.lean_routes`` are handed over as one
:class:`Fetched` value per fetch — the aiokafka records of every partition in the fetch, in
offset order per partition — put on the channel the route names, which a Faust agent iterates.
The changelog records of a table partition being recovered go to the table a fetch at a time
(:mod:`streams.worker.restore`). Every other topic takes Faust's own per-message path, unchanged. What
stays Faust's:

* the group membership, assignment, pausing during table recovery and the seeks;
* the same filters per record as Faust's loop: only active (or buffered) partitions, nothing
  from an older consumer generation, nothing while the flow is suspended (a rebalance); and, as
  Faust's conductor, nothing reaches an agent while the app's flow control is suspended (tables
  recovering). The agents' queues are not cleared when the flow control resumes
  (:class:`RoutedChannel`): that happens once more at the end of every rebalance, after the seek to
  the committed offsets, and cleared the fetches handed over since the stream partitions resumed,
  records from the new positions among them, which nothing fetched again (a partition read to its
  end, nothing committed, until the lag watchdog). Fetches of an older generation are dropped by
  the agent, records fetched before a seek by the pipeline's ordering.
  Not Faust's read-offset filter: the pipeline keeps each routed partition in offset order itself
  (:mod:`streams.worker.ordering`), and each fetch carries the consumer's seek count when it began
  (:attr:`Fetched.seeks`), so the pipeline tells records fetched before a seek from a gap;
* the agents (supervised, restarted, stopped with the app) and the channel queue's
  backpressure: the fetch loop waits while the agent is busy with earlier fetches;
* at-least-once: nothing here acks or commits; the pipeline commits the offsets it made durable.

Two gaps between Faust and aiokafka lost records here (a partition then stalled: aiokafka's
position at the log end, nothing routed, nothing committed), and are closed for every topic:

* aiokafka's ``fetched_records(partitions)`` reads an empty collection as "every partition", and
  Faust hands its consumer thread the live set of active partitions, which is empty while every
  partition is paused (a rebalance, the end of a table recovery). A fetch in flight then drained
  the paused partitions too, and Faust's loop dropped their records. :class:`ActiveView` keeps
  the live membership but is never empty.
* aiokafka's ``seek_to_committed`` leaves a partition without a committed offset (or with 0)
  where it is, so records fetched and then dropped by a rebalance (cleared from the agents'
  queues, or fetched while the flow stopped) were never fetched again. :meth:`LeanConsumer.perform_seek`
  seeks those partitions to their beginning, as a fresh consumer would (offset reset "earliest").
* Faust's ``perform_seek`` sets the read offsets to the committed ones only once the seek is
  done, and the fetch loop runs meanwhile: a fetch from the committed offsets was filtered by the
  read offsets of the previous assignment (further on), and its records were lost. The read
  offsets are cleared before the seek.
* And the other way round: a fetch that began before a seek hands its records over after it (the
  fetch loop resumes behind the seek, or the seek reaches the partition after the fetch drained
  it) and moved the read offset past the committed one again; the range fetched again from the
  committed offset was then filtered out, and a partition the pipeline had sought back over a gap
  never got its missing range (read to its end, nothing committed, until the lag watchdog). The
  routed topics are not filtered by read offset at all (see above); it is kept up to date for the
  diagnostics only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, ChannelT

from streams.worker.budget import message_bytes
from streams.worker.restore import BulkRestore


@dataclass(frozen=True)
class Fetched:
    """One fetch's records of the routed topics (aiokafka ``ConsumerRecord``s: topic, partition,
    offset, key, value), in offset order per partition, from consumer generation ``generation``;
    ``seeks``: the consumer's seeks to the committed offsets completed when the fetch began (records
    of a fetch that began before a seek may be from before it)."""

    generation: int
    seeks: int
    records: Sequence[Any]
    size: int = 0  # bytes, as the memory budget counts them (streams/worker/budget.py)


class RoutedChannel(faust.Channel):
    """A channel of fetches whose agents' queues the app's flow control does not clear when it resumes
    (Faust's channels are cleared then, to drop what was queued before a rebalance)."""

    @property
    def queue(self) -> Any:
        if self._queue is None:
            maxsize = self.maxsize if self.maxsize is not None else self.app.conf.stream_buffer_maxsize
            self._queue = self.app.FlowControlQueue(maxsize=maxsize, clear_on_resume=False)
        return self._queue


def lean_routes(app: AppT) -> Mapping[str, ChannelT]:
    """The topics read a fetch at a time, and the channel each one's fetches go to."""
    return cast(Mapping[str, ChannelT], getattr(app, "lean_routes", {}))


def split_fetch(
    records: Mapping[TP, list[Any]],
    active: set[TP] | None,
    buffered: set[TP],
    routes: Mapping[str, Any],
    read_offset: MutableMapping[TP, int | None],
) -> tuple[dict[Any, list[Any]], dict[TP, list[Any]]]:
    """One fetch split into the records each route's channel gets (in offset order per partition)
    and the partitions left to Faust's per-message path, with Faust's filter of partitions: only
    active or buffered ones (a paused one may still have records buffered). Routed records are not
    filtered by the read offset (the pipeline orders them, see the module's docstring);
    ``read_offset`` is set to the last one routed, for the diagnostics."""
    fetched: dict[Any, list[Any]] = {}
    others: dict[TP, list[Any]] = {}
    for tp, tp_records in records.items():
        if not (active is None or tp in active or tp in buffered):
            continue
        channel = routes.get(tp.topic)
        if channel is None:
            others[tp] = tp_records
            continue
        if tp_records:
            fetched.setdefault(channel, []).extend(tp_records)
            read_offset[tp] = tp_records[-1].offset
    return fetched, others


async def seek_to_start(consumer: AIOKafkaConsumer, tps: Sequence[Any]) -> None:
    """Seek ``tps`` to their log start offsets, asked of the broker (one ListOffsets request,
    within the consumer's request timeout; aiokafka's ``seek_to_beginning`` instead leaves the
    reset to its fetch loop and waits for it)."""
    starts = await consumer.beginning_offsets(list(tps))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)


class ActiveView:
    """What Faust's consumer thread passes to aiokafka's ``fetched_records`` as the partitions to
    return: the live set of active partitions (pausing one during a fetch still keeps it out),
    but never "every partition" when that set is empty."""

    __slots__ = ("_tps",)

    def __init__(self, tps: set[TP]) -> None:
        self._tps = tps

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self._tps

    def __iter__(self) -> Iterator[TP]:
        return iter(list(self._tps))

    def __len__(self) -> int:
        return len(self._tps)


class LeanConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop hands the routed topics over per fetch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restore = BulkRestore()  # recovering tables' changelogs, a fetch at a time
        self.seeks = 0  # seeks to the committed offsets completed (see Fetched.seeks)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in every worker test
        routes = lean_routes(self.app)
        if not routes:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(faust_consumer.CONSUMER_FETCHING)
                seeks = self.seeks  # before the fetch begins: its records are from after these seeks
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)  # as Faust's loop: a fetch can return at once, over and over
                if records and not self.should_stop:
                    if self.flow_active:
                        await self._deliver(records, active, routes, seeks)
                    else:  # as Faust's getmany: fetched while the flow stopped, seek back
                        await self._seek_back()
                unset_flag(faust_consumer.CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(faust_consumer.CONSUMER_FETCHING)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        view = None if active_partitions is None else ActiveView(active_partitions)
        return await super()._getmany(view, timeout)  # type: ignore[arg-type]

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset, and the source partitions
        without one (or with 0) to their beginning: aiokafka does not move those.

        The read offsets are cleared first: the fetch loop runs on while the seek awaits the
        consumer thread, and a fetch from the new positions filtered by the old read offsets
        (ahead of the committed ones after a rebalance) would lose its records, the read position
        being past them (Faust's per-message path; the routed topics are not filtered). Once every
        partition is sought, :attr:`seeks` counts the seek: fetches that begin after it hold
        records from the new positions only."""
        read_offset = self._read_offset
        for tp in list(read_offset):
            read_offset[tp] = None
        committed = await self.seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items()
                       if not (offset is not None and offset > 0) and not self._is_changelog_tp(tp)]
        if uncommitted:
            thread = self._thread
            try:
                await thread.call_thread(seek_to_start, thread._ensure_consumer(), uncommitted)
            except IllegalStateError:  # revoked meanwhile: its next owner starts from "earliest"
                self.log.info("partitions revoked before their seek to the beginning")
        read_offset.update(
            {tp: offset if offset is not None and offset >= 0 else None for tp, offset in committed.items()})
        self._committed_offset.update(
            {faust_consumer.ensure_TP(tp): offset if offset else None
             for tp, offset in committed.items() if offset is not None})
        self.seeks += 1  # every partition is at its committed offset (or its start) in aiokafka now

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:
            self.log.warning("exception performing seek when flow not active %r", exc)

    def _live(self, generation: int) -> bool:
        return self.flow_active and not self.should_stop and self.app.consumer_generation_id == generation

    async def _deliver(self, records: Mapping[TP, list[Any]], active: set[TP] | None,
                       routes: Mapping[str, ChannelT], seeks: int) -> None:
        generation = self.app.consumer_generation_id
        for tp in records:
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        fetched, others = split_fetch(records, active, self._buffered_partitions, routes, self._read_offset)
        if others and self._live(generation):  # (BulkRestore.fetch does not yield to the loop)
            others = await self._restore.fetch(self.app, others, self._read_offset, self._to_message)
        if others:
            await self._deliver_messages(others, generation)
        flow_control = self.app.flow_control
        for channel, batch in fetched.items():
            if not flow_control.is_active():  # tables recovering: Faust's conductor waits here too
                await self.wait_first(flow_control.acquire(), self.suspend_flow.wait())
            if not (self._live(generation) and flow_control.is_active()):
                return  # a rebalance began: it seeks to the committed offsets, these come again
            await self._put(channel, Fetched(generation, seeks, batch, message_bytes(batch)))

    async def _put(self, channel: ChannelT, fetched: Fetched) -> None:
        """Queue a fetch for the channel's agent, waiting while its queue is full, unless a rebalance
        begins or the consumer stops. A rebalance (the consumer's flow suspended) cancels a waiting
        put: the fetch is dropped (the new assignment seeks back to the committed offsets). Unlike
        ``wait_first``, a cancelled put is not raised here: it would end the fetch loop, and the
        worker would fetch nothing more."""
        put = asyncio.ensure_future(channel.put(fetched))  # type: ignore[arg-type]
        waits = [asyncio.ensure_future(self.suspend_flow.wait()), asyncio.ensure_future(self._stopped.wait())]
        try:
            await asyncio.wait([put, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (put, *waits):
                if not future.done():
                    future.cancel()
        if put.done() and not put.cancelled() and put.exception() is not None:
            raise put.exception()  # type: ignore[misc]

    async def _deliver_messages(self, records: Mapping[TP, list[Any]], generation: int) -> None:
        """Faust's own per-message path (its ``getmany`` and ``_drain_messages`` bodies)."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        for tp, record in self.scheduler.iterate(records):
            if not self._live(generation):
                return
            since_yield += 1
            if since_yield > 100:
                await asyncio.sleep(0)
                since_yield = 0
            message = self._to_message(tp, record)
            r_offset = read_offset[tp]
            if r_offset is not None and message.offset < r_offset:
                continue
            if r_offset and message.offset - r_offset > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, r_offset + 1, message.offset)
            commit_every = self._commit_every
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await self.wait_first(callback(message), self.suspend_flow.wait())
            read_offset[tp] = message.offset


class LeanTransport(faust_aiokafka.Transport):
    Consumer = LeanConsumer
