"""Kafka-side outputs: the dead-letter record format (schemas/dlq.schema.json)."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING

import orjson

from streams.version import VERSION

if TYPE_CHECKING:
    from streams.engine import DeadLetter


def dead_letter_record(dl: DeadLetter, now_ms: int | None = None) -> bytes:
    """A DLQ record with everything needed to fix and replay the event."""
    original = dl.invalid.original
    try:
        text: str | None = original.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return orjson.dumps(
        {
            "reason": str(dl.invalid.reason),
            "message": dl.invalid.message,
            "source": {
                "topic": dl.topic,
                "partition": dl.partition,
                "offset": dl.offset,
                "index": dl.invalid.index,
                "key_b64": base64.b64encode(dl.key).decode() if dl.key is not None else None,
            },
            "original_b64": base64.b64encode(original).decode(),
            "original_text": text,
            "vitals_version": VERSION,
            "dead_lettered_at": now_ms if now_ms is not None else int(time.time() * 1000),
        }
    )
