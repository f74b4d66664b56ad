"""The C extensions behind one facade: each loaded and configured once, here, and one flag, ``BUILT``.

C file                          Python twin (the same algorithm; runs when not native)  test comparing the two
------------------------------  ------------------------------------------------------  ---------------------------
streams/engine/c/apply.c        partition.UserPartition._apply_py                       unit/test_engine_native.py,
streams/engine/c/run.c          _apply_py's run end (_end_run), indexes.DeadlineIndex     test_hot_keys.py,
                                .set, state.user_key                                      test_engine_oracle.py
streams/engine/c/columns.c      store.activity_rows, sinks.columns.ActivityColumns      unit/test_sinks.py,
                                .from_rows                                                test_engine_native.py
streams/engine/c/drain.c        store.StateStore.drain                                  unit/test_engine_native.py
streams/engine/c/partitioner.c  partitioner.murmur2_32_py, PartitionCache (Python)      unit/test_partitioner.py
streams/engine/c/segments.c     segments.visit (window_sums, the decisions, the change  unit/test_segments_engine.py
                                records: schemas.segments.make_change)
streams/engine/c/module.c       this module (configure), firing (the callbacks); the    unit/test_extensions.py
                                attributes it reads: ``_engine.ATTRIBUTES``
schemas/_decode.c               schemas.events._decode_fast, decode_message_reference   unit/test_decode_native.py

``processing.native_engine`` chooses, per worker, and every user of an extension is told it
(``UserPartition``, ``activity_columns``, ``route``, ``PartitionCache``, ``key_partitioner``): false runs the
Python twins. A worker whose settings ask for the extensions where they are not built refuses to start
(streams/config/settings.py); asking here raises :data:`MISSING`. The constants the C code shares with
Python (struct layouts, counter indexes, the key separator, the deadline heap's slack, the event limits)
are passed through each extension's ``configure()``, never written twice.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from types import ModuleType
from typing import Any

from schemas import alerts as A
from schemas.events import ENGAGEMENT_EXCLUDED, Event, decoder_constants
from schemas.segments import DIMENSIONS, SegmentChange
from streams.engine import segments as S
from streams.engine.firing import TYPE_COUNTER, burst_alert, resolve
from streams.engine.indexes import HEAP_SLACK, DeadlineIndex, LastActiveIndex
from streams.engine.partition_indexes import (
    MAX_BATCH,
    RUN_ACTIVE,
    RUN_APPLIED,
    RUN_CHANGED,
    RUN_ENGAGE,
    RUN_FIRST,
    RUN_LOGIN,
)
from streams.engine.state import (
    DAY_MS,
    DEVICE_LATE_DAYS,
    HOUR_MS,
    LOGINS,
    MINUTE_MS,
    NO_COUNTS,
    NONE,
    OPEN_NO_INTERACTION,
    OPEN_NO_LOGIN_LONG,
    OPEN_NO_LOGIN_SHORT,
    PAYMENTS,
    POSTS,
    SEP,
    SOCIAL,
    UserState,
    to_micros,
)

__all__ = ["BUILT", "MISSING", "decoder", "engine"]

MISSING = ("the C extensions (streams.engine._engine from streams/engine/c/, schemas._decode from "
           "schemas/_decode.c) are not built: install vitals with pip (it needs a C compiler and Python's "
           "headers), or set processing.native_engine = false")


def _engine_constants() -> dict[str, Any]:
    """What ``streams.engine._engine.configure`` is told: the struct types it reads at slot offsets, the
    constants it shares, the Python functions it calls back."""
    return {
        "Event": Event, "UserState": UserState, "DeadlineIndex": DeadlineIndex, "LastActiveIndex": LastActiveIndex,
        "NONE": NONE, "LOGINS": LOGINS, "PAYMENTS": PAYMENTS, "POSTS": POSTS, "SOCIAL": SOCIAL, "DAY_MS": DAY_MS,
        "HOUR_MS": HOUR_MS, "MINUTE_MS": MINUTE_MS, "MAX_BATCH": MAX_BATCH, "DEVICE_LATE_DAYS": DEVICE_LATE_DAYS,
        "RUN_CHANGED": RUN_CHANGED, "RUN_APPLIED": RUN_APPLIED, "RUN_LOGIN": RUN_LOGIN, "RUN_ENGAGE": RUN_ENGAGE,
        "RUN_FIRST": RUN_FIRST, "RUN_ACTIVE": RUN_ACTIVE, "O_SHORT": OPEN_NO_LOGIN_SHORT,
        "O_INTER": OPEN_NO_INTERACTION, "O_LONG": OPEN_NO_LOGIN_LONG, "KEY_SEP": SEP, "HEAP_SLACK": HEAP_SLACK,
        "to_micros": to_micros, "resolve": resolve, "burst_alert": burst_alert, "TYPE_COUNTER": TYPE_COUNTER,
        "ENGAGEMENT_EXCLUDED": ENGAGEMENT_EXCLUDED, "NO_COUNTS": NO_COUNTS, "NO_LOGIN_SHORT": A.NO_LOGIN_SHORT,
        "NO_INTERACTION": A.NO_INTERACTION, "NO_LOGIN_LONG": A.NO_LOGIN_LONG, "heappush": heapq.heappush,
        "RECALL_STEP": A.RECALL_STEP, "HIGH_POTENTIAL": S.HIGH_POTENTIAL, "NEW": S.NEW, "RETURNING": S.RETURNING,
        "RESURRECTING": S.RESURRECTING, "DORMANT": S.DORMANT, "CHURNED": S.CHURNED, "V_NONE": S.V_NONE,
        "V_LOW": S.V_LOW, "V_MID": S.V_MID, "V_HIGH": S.V_HIGH, "LAPSED": S.LAPSED, "SegmentChange": SegmentChange,
        "LIFECYCLE_SEGMENTS": S.LIFECYCLE_SEGMENTS, "VALUE_SEGMENTS": S.VALUE_SEGMENTS,
        "POTENTIAL_SEGMENTS": S.POTENTIAL_SEGMENTS, "DIMENSIONS": DIMENSIONS,
    }


def _load() -> tuple[ModuleType, ModuleType] | None:
    """Both extensions, configured; None unless both are built."""
    try:
        from schemas import _decode
        from streams.engine import _engine
    except ImportError:
        return None
    _engine.configure(_engine_constants())
    _decode.configure(decoder_constants())
    return _engine, _decode


_loaded = _load()
BUILT = _loaded is not None  # both extensions built (pip install builds them); the default of every ``native``


def engine(native: bool = BUILT) -> Any:
    """The configured ``streams.engine._engine`` if ``native`` (processing.native_engine), else None: use
    the Python twin. RuntimeError (:data:`MISSING`) when asked for and not built."""
    if not native:
        return None
    if _loaded is None:
        raise RuntimeError(MISSING)
    return _loaded[0]


def decoder(native: bool = BUILT) -> Callable[[bytes, int], list[Event] | None] | None:
    """The C decoder's ``decode(value, now_ms)`` (``schemas.events.decode_message``'s first pass) if
    ``native``, else None. RuntimeError (:data:`MISSING`) when asked for and not built."""
    if not native:
        return None
    if _loaded is None:
        raise RuntimeError(MISSING)
    return _loaded[1].decode
