"""The device-farm rule's partition logic: distinct users per (app_id, device_id, UTC day).

Device observations arrive regrouped by device on an internal topic; each message holds the
(day, user, ts) observations of one device from one flush of the user stage.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from schemas.alerts import Alert, make_alert
from schemas.dead_letters import DeadLetter
from schemas.events import MIN_TS_MS
from schemas.time_units import DAY_MS
from streams.engine import rules as R
from streams.engine.holdout import alert_context
from streams.engine.partition import Outputs, RulesByApp
from streams.engine.routing import Record
from streams.engine.state import NONE, SEP, DeviceState, decode_device, encode
from streams.engine.store import internal_undecodable

DEVICE_KEEP_DAYS = 3
OBS_RECORD_BYTES = 256 * 1024  # a device-obs record's size at most (SPEC section 4: every record < 512 KiB)
# bounds a record must keep to be taken (the engine writes event times >= MIN_TS_MS, at most a day
# ahead of the clock): within them no alert field or state computed from a record leaves int64
MAX_OBS_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
Day = Annotated[int, Meta(ge=MIN_TS_MS // DAY_MS, le=MAX_OBS_TS_MS // DAY_MS)]
Ts = Annotated[int, Meta(ge=MIN_TS_MS, le=MAX_OBS_TS_MS)]
Watermark = Annotated[int, Meta(ge=-MAX_OBS_TS_MS, le=MAX_OBS_TS_MS)]
UserId = Annotated[str, Meta(min_length=1, max_length=128)]


class DeviceObservations(msgspec.Struct, array_like=True):
    app_id: Annotated[str, Meta(max_length=64)]  # "" only in a beacon (no observations)
    device_id: Annotated[str, Meta(max_length=128)]
    obs: list[tuple[Day, UserId, Ts]]  # (day, user_id, ts)
    source: int = -1  # the user partition that saw them
    # the source's watermark when its previous flush completed: every observation in this
    # message was made at a watermark >= this, so pruning by the minimum never loses one in flight
    source_watermark: Watermark = NONE
    # the source's watermark when this message was taken for a flush (>= the watermark at each
    # observation): the ``triggered_at`` of the alerts the message decides
    watermark: Watermark = NONE


class DeviceMeta(msgspec.Struct, array_like=True):
    """Watermarks of the user partitions feeding this device partition. The device stage's
    watermark is their minimum: a slow source partition never makes its events look late."""

    sources: dict[int, int] = {}
    alerts_after: int = NONE  # when the flush job that wrote it was taken (wall-clock ms, streams/worker/fence.py)


_meta_decoder = msgspec.msgpack.Decoder(DeviceMeta)
obs_encoder = msgspec.msgpack.Encoder()
obs_decoder = msgspec.msgpack.Decoder(DeviceObservations)


def obs_records(batch: DeviceObservations) -> list[bytes]:
    """``batch`` encoded in records of at most ``OBS_RECORD_BYTES`` (one record in the common case): a
    device shared by many users gets its observations split in order, applied by
    :meth:`DevicePartition.apply` one after the other exactly as if they were one."""
    value = obs_encoder.encode(batch)
    obs = batch.obs
    if len(value) <= OBS_RECORD_BYTES or len(obs) <= 1:
        return [value]
    half = len(obs) // 2
    return [*obs_records(msgspec.structs.replace(batch, obs=obs[:half])),
            *obs_records(msgspec.structs.replace(batch, obs=obs[half:]))]


class BadObservations(ValueError):
    """A device-observation record vitals cannot have written."""


def decode_observations(value: bytes | None, n_sources: int | None = None) -> DeviceObservations:
    """One record of the device-observation topic, checked (BadObservations: not msgpack, truncated,
    not the struct, values out of their bounds, a source partition that does not exist among
    ``n_sources``, when given)."""
    try:
        batch = obs_decoder.decode(value or b"")
    except msgspec.DecodeError as exc:  # ValidationError included
        raise BadObservations(f"not device observations: {exc}") from None
    if n_sources is not None and not -1 <= batch.source < n_sources:
        raise BadObservations(f"source partition {batch.source} is not one of the {n_sources} partitions")
    if batch.obs and not (batch.app_id and batch.device_id):
        raise BadObservations("observations without an app id or a device id")
    return batch


def decoded_observations(records: Sequence[Record], n_sources: int, out: Outputs
                         ) -> list[tuple[int, DeviceObservations]]:
    """Each record's observations with its partition, in order. A record that does not decode is
    dead-lettered (``internal_undecodable``, counted as ``dlq:<reason>``: it is no event) into
    ``out``, so the flush that delivers the dead letter commits past it: a worker does not stop
    on it at every restart."""
    decoded = []
    for msg in records:
        try:
            decoded.append((msg.partition, decode_observations(msg.value, n_sources)))
        except BadObservations as exc:
            cause = internal_undecodable(f"{msg.topic}: {exc}", msg.value)
            out.dead_letters.append(DeadLetter(cause, msg.topic, msg.partition, msg.offset, msg.key))
            out.outcomes[(msg.partition, "", max(msg.timestamp, 0) // DAY_MS, "dlq:" + cause.reason)] += 1
    return decoded


def device_key(app_id: str, device_id: str) -> bytes:
    return f"{app_id}{SEP}{device_id}".encode()


def device_meta_key(partition: int) -> bytes:
    return b"\x00devpartition\x1f%d" % partition


class DevicePartition:
    def __init__(self, partition: int, data: MutableMapping[bytes, bytes], rules: RulesByApp,
                 n_sources: int = 1) -> None:
        self.partition = partition
        self.data = data
        self.rules = rules
        self.n_sources = n_sources
        raw = data.get(device_meta_key(partition))
        self.meta = _meta_decoder.decode(raw) if raw is not None else DeviceMeta()
        self.dirty: dict[bytes, DeviceState] = {}
        self.meta_dirty = False

    @property
    def watermark(self) -> int:
        sources = self.meta.sources
        if len(sources) < self.n_sources:
            return NONE
        return min(sources.values())

    def apply(self, batch: DeviceObservations, alerts: list[Alert]) -> None:
        if batch.source >= 0 and batch.source_watermark > self.meta.sources.get(batch.source, NONE):
            self.meta.sources[batch.source] = batch.source_watermark
            self.meta_dirty = True
        if not batch.obs:
            return
        key = device_key(batch.app_id, batch.device_id)
        state = self.dirty.get(key)
        if state is None:
            raw = self.data.get(key)
            state = decode_device(raw) if raw is not None else DeviceState()
        rules = self.rules(batch.app_id)
        changed = False
        wm = self.watermark
        decided = max(wm, batch.watermark)  # NONE only from a sender older than the field
        for day, user_id, ts in batch.obs:
            decision = R.add_device_user(state, day, user_id, rules)
            changed = True
            if decision is not None:
                alerts.append(
                    make_alert(
                        "open",
                        decision.rule,
                        batch.app_id,
                        batch.device_id,
                        decision.episode_start,
                        decided if decided != NONE else ts - self.rules.lateness_ms,
                        decision.evidence,
                        user_ids=decision.evidence["user_ids"],
                        # the context describes nobody (SPEC section 4): only the priority; no control group
                        context=alert_context(decision.rule, None, None, NONE, self.rules.plan(batch.app_id).matrix),
                    )
                )
        if changed:
            if wm != NONE:
                state.prune(wm, DEVICE_KEEP_DAYS + 1)
            self.dirty[key] = state

    def drain(self) -> list[tuple[bytes, bytes]]:
        out = [(key, encode(state)) for key, state in self.dirty.items()]
        if self.meta_dirty:
            out.append((device_meta_key(self.partition), encode(self.meta)))
            self.meta_dirty = False
        for key, raw in out:
            self.data[key] = raw
        self.dirty.clear()
        return out
