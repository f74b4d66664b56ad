"""The device-farm rule's partition logic: distinct users per (app_id, device_id, UTC day).

Device observations arrive regrouped by device on an internal topic; each message holds the
(day, user, ts) observations of one device from one flush of the user stage.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import msgspec

from schemas.alerts import Alert, make_alert
from streams import rules as R
from streams.engine import RulesByApp
from streams.state import DAY_MS, NONE, SEP, DeviceState, PartitionMeta, decode_device, decode_meta, encode

DEVICE_KEEP_DAYS = 2


class DeviceObservations(msgspec.Struct, array_like=True):
    app_id: str
    device_id: str
    obs: list[tuple[int, str, int]]  # (day, user_id, ts)


obs_encoder = msgspec.msgpack.Encoder()
obs_decoder = msgspec.msgpack.Decoder(DeviceObservations)


def device_key(app_id: str, device_id: str) -> bytes:
    return f"{app_id}{SEP}{device_id}".encode()


def device_meta_key(partition: int) -> bytes:
    return b"\x00devpartition\x1f%d" % partition


class DevicePartition:
    def __init__(self, partition: int, data: MutableMapping[bytes, bytes], rules: RulesByApp) -> None:
        self.partition = partition
        self.data = data
        self.rules = rules
        raw = data.get(device_meta_key(partition))
        self.meta = decode_meta(raw) if raw is not None else PartitionMeta()
        self.dirty: dict[bytes, DeviceState] = {}
        self.meta_dirty = False
        self.late = 0

    @property
    def watermark(self) -> int:
        st = self.meta.stream_time
        return NONE if st == NONE else st - self.rules.lateness_ms

    def apply(self, batch: DeviceObservations, alerts: list[Alert]) -> None:
        key = device_key(batch.app_id, batch.device_id)
        state = self.dirty.get(key)
        if state is None:
            raw = self.data.get(key)
            state = decode_device(raw) if raw is not None else DeviceState()
        rules = self.rules(batch.app_id)
        changed = False
        for day, user_id, ts in batch.obs:
            if ts > self.meta.stream_time:
                self.meta.stream_time = ts
                self.meta_dirty = True
            wm = self.watermark
            if day < wm // DAY_MS - DEVICE_KEEP_DAYS:
                self.late += 1  # the day's user set is gone: cannot be counted exactly any more
                continue
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
                        wm,
                        decision.evidence,
                        user_ids=decision.evidence["user_ids"],
                    )
                )
        if changed:
            state.prune(self.watermark, DEVICE_KEEP_DAYS + 1)
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
