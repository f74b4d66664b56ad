"""Hot keys (SPEC sections 1 and 4: every record vitals writes stays under 512 KiB, whatever the input):
a device shared by 100k users, a user with more event ids in the dedup horizon than one record holds."""

from __future__ import annotations

import pytest

from schemas.alerts import Alert
from streams.devices import OBS_RECORD_BYTES, DeviceObservations, DevicePartition, obs_decoder, obs_records
from streams.engine import RulesByApp
from streams.settings import ConfigError, load_settings

DAY = 20_454
T = DAY * 86_400_000


def test_a_device_shared_by_100k_users_is_observed_in_bounded_records_applied_as_one() -> None:
    wide = "\U0001f600" * 120  # user ids of 120 characters, 4 bytes each in UTF-8
    obs = [(DAY, f"{i:06d}{wide}", T + i) for i in range(100_000)]
    batch = DeviceObservations("default", "00000000-0000-0000-0000-000000000000", obs, 3, T - 1, T + 100_000)
    records = obs_records(batch)
    assert len(records) > 1 and max(map(len, records)) <= OBS_RECORD_BYTES
    decoded = [obs_decoder.decode(r) for r in records]
    assert [o for d in decoded for o in d.obs] == obs  # every observation once, in order
    assert {(d.app_id, d.device_id, d.source, d.source_watermark, d.watermark) for d in decoded} == {
        ("default", batch.device_id, 3, T - 1, T + 100_000)}

    rules = RulesByApp(load_settings(env={}))
    whole, split = DevicePartition(0, {}, rules), DevicePartition(0, {}, rules)
    alerts_whole: list[Alert] = []
    alerts_split: list[Alert] = []
    whole.apply(batch, alerts_whole)
    for d in decoded:
        split.apply(d, alerts_split)
    assert alerts_whole == alerts_split and len(alerts_whole) == 1
    assert whole.drain() == split.drain()
    assert max(len(v) for _, v in split.drain() or [(b"", b"")]) < 512 * 1024


def test_one_record_for_an_ordinary_device() -> None:
    batch = DeviceObservations("default", "d", [(DAY, "u", T)], 0, T, T)
    assert len(obs_records(batch)) == 1


def test_the_device_farm_threshold_has_a_ceiling() -> None:
    with pytest.raises(ConfigError, match="device_farm_users"):
        load_settings(env={}, rules__device_farm_users=101)
    with pytest.raises(ConfigError, match="device_farm_users"):
        load_settings(env={}, apps={"shop": {"rules": {"device_farm_users": 5000}}}).rules_for("shop")
