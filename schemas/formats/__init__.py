"""Input formats (SPEC section 8): Segment-Spec and PostHog-capture events mapped to section 1's events. Pure,
no I/O: the worker (streams/engine/routing.py) and the collector share it.

modules: mapping (the formats, FormatMapping and SPEC 8's defaults), convert (one event: to_event, to_vitals).
"""

from schemas.formats.convert import NotActivity, Rejected, event_doc, to_event, to_vitals
from schemas.formats.mapping import FORMATS, FormatMapping, default_mapping, parse_path, with_overrides

__all__ = [
    "FORMATS",
    "FormatMapping",
    "NotActivity",
    "Rejected",
    "default_mapping",
    "event_doc",
    "parse_path",
    "to_event",
    "to_vitals",
    "with_overrides",
]
