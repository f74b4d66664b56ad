"""The dead-letter record (schemas/dlq.schema.json): what an input that cannot be processed leaves on the
DLQ topic, with everything needed to fix and replay it.

A record must fit in one Kafka message whatever the input (a message that cannot be dead-lettered
would stop the worker on every restart), so the copies of the original and of the key are capped:
the original is base64-encoded whole up to ``ORIGINAL_B64_MAX_BYTES`` (its prefix, with
``original_truncated``, beyond), as text only up to ``ORIGINAL_TEXT_MAX_BYTES``, and its size and
SHA-256 are always given; the full original stays at the source topic/partition/offset named.
Records stay under ``MAX_RECORD_BYTES``, well below the broker's default ``message.max.bytes``
(1 MB) and the producer's max request size.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass

import orjson

from schemas.events import Invalid
from schemas.version import VERSION

ORIGINAL_B64_MAX_BYTES = 256 * 1024  # original bytes kept in original_b64 (342 KiB of base64)
ORIGINAL_TEXT_MAX_BYTES = 64 * 1024  # original_text only for originals up to one event's size limit
KEY_MAX_BYTES = 4 * 1024  # key bytes kept in key_b64 and used as the DLQ record's key
MAX_RECORD_BYTES = 512 * 1024  # worst case of a record (6-byte escapes in original_text included)


@dataclass(slots=True)
class DeadLetter:
    """An input that cannot be processed, where it came from: the cause (reason, message, the original
    bytes) and the source record's topic, partition, offset and key."""

    invalid: Invalid
    topic: str
    partition: int
    offset: int
    key: bytes | None
    format: str | None = None  # the source topic's input format (SPEC 8); None: an internal topic or a row


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The DLQ record's Kafka key: the source key, or None when it is too large to repeat."""
    return key if key is None or len(key) <= KEY_MAX_BYTES else None


def dead_letter_doc(dl: DeadLetter, now_ms: int | None = None) -> dict[str, object]:
    """The DLQ record as a JSON-able dict, its copies of the original and the key capped."""
    original = dl.invalid.original
    size = len(original)
    text: str | None = None
    if size <= ORIGINAL_TEXT_MAX_BYTES:
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    key = dl.key
    source: dict[str, object] = {
        "topic": dl.topic,
        "partition": dl.partition,
        "offset": dl.offset,
        "index": dl.invalid.index,
        "key_b64": base64.b64encode(key[:KEY_MAX_BYTES]).decode() if key is not None else None,
    }
    if dl.format is not None:
        source["format"] = dl.format
    if key is not None and len(key) > KEY_MAX_BYTES:
        source["key_truncated"] = True
        source["key_size"] = len(key)
    return {
        "reason": str(dl.invalid.reason),
        "message": dl.invalid.message,
        "source": source,
        "original_b64": base64.b64encode(original[:ORIGINAL_B64_MAX_BYTES]).decode(),
        "original_text": text,
        "original_truncated": size > ORIGINAL_B64_MAX_BYTES,
        "original_size": size,
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "vitals_version": VERSION,
        "dead_lettered_at": now_ms if now_ms is not None else int(time.time() * 1000),
    }


def dead_letter_record(dl: DeadLetter, now_ms: int | None = None) -> bytes:
    """A DLQ record with everything needed to fix and replay the event (at most MAX_RECORD_BYTES)."""
    return orjson.dumps(dead_letter_doc(dl, now_ms))
