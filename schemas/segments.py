"""Segment-change record (SPEC section 7, topic ``vitals.segments``) and its JSON encoding."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

SCHEMA_VERSION = 1

LIFECYCLE = "lifecycle"
VALUE = "value"
POTENTIAL = "potential"
DIMENSIONS: tuple[str, ...] = (LIFECYCLE, VALUE, POTENTIAL)


class SegmentChange(msgspec.Struct, frozen=True, omit_defaults=False):
    app_id: str
    user_id: str
    dimension: str
    segment: str
    previous: str | None
    changed_at: int
    triggered_at: int
    change_id: str
    evidence: dict[str, Any]
    schema_version: int = SCHEMA_VERSION

    @property
    def kafka_key(self) -> bytes:
        return self.user_id.encode()


def change_id(app_id: str, user_id: str, dimension: str, segment: str, changed_at: int) -> str:
    """Deterministic id, in the style of ``schemas.alerts.alert_id``: the hex BLAKE2b-128 digest of
    ``app_id \\x1f user_id \\x1f dimension \\x1f segment \\x1f str(changed_at)`` (UTF-8; ``changed_at``
    in decimal epoch ms). The same change decided again (a replay) gets the same id."""
    raw = "\x1f".join((app_id, user_id, dimension, segment, str(changed_at))).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def make_change(app_id: str, user_id: str, dimension: str, segment: str, previous: str | None, changed_at: int,
                triggered_at: int, evidence: dict[str, Any]) -> SegmentChange:
    return SegmentChange(app_id, user_id, dimension, segment, previous, changed_at, triggered_at,
                         change_id(app_id, user_id, dimension, segment, changed_at), evidence)


_encoder = msgspec.json.Encoder()


def encode_change(change: SegmentChange) -> bytes:
    return _encoder.encode(change)


def decode_change(data: bytes) -> SegmentChange:
    return msgspec.json.decode(data, type=SegmentChange)
