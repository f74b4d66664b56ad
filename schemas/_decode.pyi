# The C extension schemas._decode (schemas/_decode.c): decode_message's first pass. Loaded and configured
# by streams/engine/extensions.py (its constants: schemas.events.decoder_constants).
from typing import Any

from schemas.events import Event

def configure(constants: dict[str, Any], /) -> None: ...
def decode(value: bytes, now_ms: int, /) -> list[Event] | None: ...
