"""A fetch's records of the events and reroute topics, decoded and routed to the partition of
users each event belongs to (:func:`route`), and applied there (:func:`apply_records`, the pipeline's one
call per slice: the way down runs decode, route, apply, never back up). Pure: no Kafka.

Invalid events become dead letters. An event whose user lives on another partition (a producer
that keyed it wrongly) is sent there through the reroute topic. Either way its place in its
message is kept (None), so the events that stay keep their index in the batch, which their
replay position and their dead letters' index are built from.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from schemas.dead_letters import DeadLetter
from schemas.events import Event, Invalid, decode_message
from schemas.formats import FormatMapping, default_mapping, with_overrides
from schemas.formats.batch import FormatDecoder
from schemas.time_units import DAY_MS
from streams.config.settings import Settings
from streams.engine import extensions
from streams.engine.partition import MessageEvents, Outputs, UserPartition, event_json
from streams.engine.store import internal_undecodable


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    timestamp: int  # Kafka's, epoch ms (negative: none)
    key: bytes | None
    value: bytes | None


R = TypeVar("R", bound=Record)


class Homes(Protocol):
    """User ids to their home partition (``kafka_io.PartitionCache``)."""

    def __call__(self, user_id: str) -> int: ...

    def elsewhere(self, events: list[Any], partition: int) -> list[tuple[int, int]]: ...


Decoders = Mapping[str, FormatDecoder]  # the source topics of a mapped format (SPEC 8) and their decoders


def input_decoders(settings: Settings) -> dict[str, FormatDecoder]:
    """The decoder of each source topic of a mapped format (segment, posthog); a topic of format ``vitals``
    has none (section 1's decoder)."""
    mappings = input_mappings(settings)
    # PostHog's api keys and tokens map to app ids through [collect] apps (SPEC 8), as in the collector
    apps = settings.collect.apps
    return {topic: FormatDecoder(fmt, mappings[fmt], app_id, apps)
            for topic, (fmt, app_id) in settings.input.formats_by_topic(settings.events_topic).items()
            if fmt != "vitals"}


def input_mappings(settings: Settings) -> dict[str, FormatMapping]:
    """The mapped formats' mappings: SPEC 8's defaults with ``[input.segment]``/``[input.posthog]`` over them."""
    out = {}
    for fmt, conf in (("segment", settings.input.segment), ("posthog", settings.input.posthog)):
        not_activity = None if conf.not_activity is None else frozenset(conf.not_activity)
        out[fmt] = with_overrides(default_mapping(fmt), conf.event_types, not_activity, conf.paths())
    return out


def route(records: Sequence[Record], now_ms: int, home: Homes, out: Outputs, native: bool = extensions.BUILT,
          internal_topic: str = "", decoders: Decoders | None = None, secondary: Collection[str] = ()
          ) -> dict[int, list[MessageEvents]]:
    """Per source partition, its messages' events for ``UserPartition.apply``, in order; dead
    letters, reroutes and their outcomes go to ``out``. ``native`` (processing.native_engine): the C decoder first.
    ``now_ms``: the wall clock, for records without a timestamp. ``internal_topic`` (the reroute topic)
    holds only valid events vitals wrote: what does not decode there is dead-lettered as
    ``internal_undecodable``, the decoder's reason in its message. ``decoders``: the topics of a mapped
    input format (SPEC 8), whose events are converted (those not activity counted in ``out.not_activity``,
    their place in the message kept, None). ``secondary``: the other source topics (``[[input.sources]]``),
    whose every valid event goes to its user's partition through the reroute topic: the engine's state and
    stream time are the events topic's partitions' (docs/inputs.md)."""
    per_partition: dict[int, list[MessageEvents]] = {}
    first = extensions.decoder(native)
    for msg in records:
        # "too far in the future" is judged against the record's timestamp (SPEC section 1), so a
        # replay of history decides the same; the wall clock only for a record without one
        record_ts = msg.timestamp
        decoder = decoders.get(msg.topic) if decoders else None
        if decoder is None:
            decoded, invalid = decode_message(msg.value, record_ts if record_ts >= 0 else now_ms, first)
            kept: list[Event | None] = decoded  # type: ignore[assignment]
            fmt: str | None = None if msg.topic == internal_topic else "vitals"
        else:
            kept, invalid, kinds = decoder(msg.value, record_ts if record_ts >= 0 else now_ms)
            decoded = kept  # type: ignore[assignment]  # at their index already
            fmt = decoder.fmt
            for kind in kinds:
                out.not_activity[(fmt, kind)] += 1
        if invalid:
            internal = msg.topic == internal_topic
            day = (record_ts if record_ts >= 0 else now_ms) // DAY_MS  # an invalid event's day: its record's
            for inv in invalid:
                cause = internal_undecodable(f"{msg.topic}: {inv.reason}: {inv.message}", inv.original,
                                             inv.index) if internal else inv
                out.dead_letters.append(DeadLetter(cause, msg.topic, msg.partition, msg.offset, msg.key, fmt))
                out.outcomes[(msg.partition, "", day, "invalid:" + cause.reason)] += 1
            if decoded and decoder is None:
                kept = _at_batch_index(decoded, invalid)
        if secondary and msg.topic in secondary:
            for event in kept:
                if event is not None:
                    out.reroutes.append((home(event.user_id), event.user_id.encode(), event_json(event)))
                    out.outcomes[(msg.partition, event.app_id, event.ts // DAY_MS, "rerouted")] += 1
            continue
        partition = msg.partition
        moved = home.elsewhere(kept, partition)
        if moved:
            if kept is decoded:
                kept = list(decoded)
            for index, p in moved:
                event = kept[index]
                assert event is not None
                kept[index] = None
                out.reroutes.append((p, event.user_id.encode(), event_json(event)))
                out.outcomes[(partition, event.app_id, event.ts // DAY_MS, "rerouted")] += 1
        messages = per_partition.get(partition)
        if messages is None:
            messages = per_partition[partition] = []
        messages.append((msg.topic, msg.offset, msg.key, kept, record_ts))
    return per_partition


def apply_records(records: Sequence[Record], now_ms: int, home: Homes, out: Outputs,
                  partitions: Mapping[int, UserPartition], native: bool = extensions.BUILT,
                  internal_topic: str = "", decoders: Decoders | None = None, secondary: Collection[str] = ()) -> None:
    """A slice of a fetch's records decoded, routed (:func:`route`) and applied to their partitions
    (``partitions``: each source partition's, built) in order; every output goes to ``out``."""
    for p, messages in route(records, now_ms, home, out, native, internal_topic, decoders, secondary).items():
        up = partitions[p]
        before = len(out.alerts)
        up.apply(messages, out)
        up.count_episodes(out.alerts[before:])


def _at_batch_index(events: list[Event], invalid: list[Invalid]) -> list[Event | None]:
    """The valid events of a batch at their index in it, None where it held an invalid one."""
    bad = {inv.index for inv in invalid}
    valid = iter(events)
    return [None if i in bad else next(valid) for i in range(len(events) + len(bad))]


SLICE_BYTES = 1 << 19  # a fetch is processed in slices of about this many bytes of messages


def slices(messages: Sequence[R], limit: int) -> list[Sequence[R]]:
    """``messages`` in consecutive slices, each ending with the message whose value brings it to
    ``limit`` bytes (the last one may hold less)."""
    out: list[Sequence[R]] = []
    start = size = 0
    for i, msg in enumerate(messages):
        size += len(msg.value or b"")
        if size >= limit:
            out.append(messages[start : i + 1])
            start, size = i + 1, 0
    if start < len(messages):
        out.append(messages[start:])
    return out
