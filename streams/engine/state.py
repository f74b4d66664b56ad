"""Per-user and per-device state: compact, msgpack-encoded, one record per key in the changelog.

A user's state is what the rules of SPEC section 3 need and nothing more: the last login and
engagement times, per-day counters for the rule windows, event-id hashes for the dedup horizon,
per-minute counts for the burst rule and the open episodes. Keys are ``app_id \\x1f user_id``.
"""

from __future__ import annotations

import msgspec
from xxhash import xxh3_64_intdigest

from schemas.time_units import DAY_MS, HOUR_MS, MINUTE_MS

SEP = "\x1f"
DEVICE_LATE_DAYS = 2  # device observations older than this (vs the watermark) are not counted

# indexes into a day's counter list
EVENTS, LOGINS, PAYMENTS, AMOUNT_MICROS, POSTS, SOCIAL, COMPLAINTS = range(7)
N_COUNTERS = 7
Counts = tuple[int, int, int, int, int, int, int]  # a day's counters, in the order above
NO_COUNTS: Counts = (0, 0, 0, 0, 0, 0, 0)

# indexes into UserState.open (episode start or -1)
OPEN_NO_LOGIN_SHORT, OPEN_DROP, OPEN_NO_INTERACTION, OPEN_NO_LOGIN_LONG, OPEN_HOLLOW = range(5)
NONE = -1


def user_key(app_id: str, user_id: str) -> bytes:
    return f"{app_id}{SEP}{user_id}".encode()


def split_key(key: bytes) -> tuple[str, str]:
    app_id, _, subject = key.decode().partition(SEP)
    return app_id, subject


def event_hash(event_id: str) -> int:
    """64-bit hash of an event id for the dedup set (XXH3: stable across processes and
    versions, about 7 times cheaper than blake2b was; a dedup set is per user, so a false
    duplicate needs two ids of one user colliding in 64 bits)."""
    return xxh3_64_intdigest(event_id.encode())


def to_micros(amount: float) -> int:
    return round(amount * 1_000_000)


class UserState(msgspec.Struct, array_like=True, gc=False):
    first_ts: int
    last_login: int = NONE
    last_engage: int = NONE
    # day number -> counters: tuples, replaced on change (the garbage collector stops tracking
    # tuples of ints, so a million users' days cost it nothing; the encoding is an array either way)
    days: dict[int, Counts] = {}
    # event-id hash -> the hour its keep-until time falls in, minus ``ids_base`` (small numbers
    # encode in one byte): one lookup per event instead of a scan of hour buckets
    ids: dict[int, int] = {}
    minutes: dict[int, int] = {}  # minute number -> events (burst rule)
    burst_days: tuple[int, ...] = ()  # days with a burst alert already emitted
    open: tuple[int, int, int, int, int] = (NONE, NONE, NONE, NONE, NONE)
    last_active_day: int = NONE
    # last source offset applied to this user, per source (0: events topic, 1: reroute topic):
    # a replay after a crash skips what the state already holds, whatever its event time
    offsets: tuple[int, int] = (NONE, NONE)
    # the partition's position (events topic) when this record was written: a replay that has not
    # reached it yet must not re-evaluate this user (it already holds those decisions)
    persisted_at: int = NONE
    ids_base: int = 0  # hour that ``ids`` values count from
    # a hot user's older ids, sealed in segments of their own (streams/engine/dedup.py): their numbers
    sealed: tuple[int, ...] = ()
    # SPEC section 7's segments: (lifecycle, value, potential, potential day), indexes into the
    # streams.engine.segments names, NONE: none yet (segments.SegmentState unpacked; an interned tuple)
    seg: tuple[int, int, int, int] = (NONE, NONE, NONE, NONE)
    # the recall steps (SPEC section 4) of the open churn.no_login_72h episode already emitted
    recall_fired: int = 0

    def set_open(self, slot: int, start: int) -> None:
        """Open (episode start) or close (NONE) the episode of ``slot``. ``open``, ``offsets`` and
        ``burst_days`` are tuples, replaced on change: the garbage collector stops tracking them."""
        opened = list(self.open)
        opened[slot] = start
        self.open = tuple(opened)  # type: ignore[assignment]

    # ---- dedup ---------------------------------------------------------------------------
    def seen(self, h: int, horizon_start: int) -> bool:
        """Whether ``h`` was remembered with a keep-until time at or after ``horizon_start``
        (rounded down to the hour)."""
        hour = self.ids.get(h)
        return hour is not None and hour + self.ids_base >= horizon_start // HOUR_MS

    def remember(self, h: int, keep_until: int) -> None:
        ids = self.ids
        if not ids:
            self.ids_base = keep_until // HOUR_MS
        hour = keep_until // HOUR_MS - self.ids_base
        old = ids.get(h)
        if old is None or old < hour:
            ids[h] = hour

    @property
    def dedup(self) -> dict[int, list[int]]:
        """Remembered hashes by keep-until hour (a view, for inspection)."""
        out: dict[int, list[int]] = {}
        for h, hour in self.ids.items():
            out.setdefault(hour + self.ids_base, []).append(h)
        return out

    # ---- windows ---------------------------------------------------------------------------
    def day(self, day: int) -> Counts:
        return self.days.get(day, NO_COUNTS)

    def total(self, index: int, first_day: int, last_day: int) -> int:
        return sum(c[index] for d, c in self.days.items() if first_day <= d <= last_day)

    def active_days(self, first_day: int, last_day: int) -> int:
        return sum(1 for d, c in self.days.items() if first_day <= d <= last_day and c[EVENTS] > 0)

    def prune_below(self, day: int, hour: int, minute: int, burst_day: int) -> None:
        """Drop what no rule or dedup check can need any more, at cutoffs computed once per flush
        from the watermark (``prune_cutoffs``): counters of days before ``day``, event ids kept
        until before ``hour``, burst minutes before ``minute``, burst days before ``burst_day``."""
        days = self.days
        if days and min(days) < day:
            self.days = {d: c for d, c in days.items() if d >= day}
        ids = self.ids
        if ids:
            oldest = hour - self.ids_base
            if min(ids.values()) < oldest:
                kept = {h: until for h, until in ids.items() if until >= oldest}
                shift = min(kept.values()) if kept else 0
                if shift >= 64:  # rebase now and then: the numbers stay small (one byte up to 127)
                    kept = {h: until - shift for h, until in kept.items()}
                    self.ids_base += shift
                self.ids = kept
        minutes = self.minutes
        if minutes and min(minutes) < minute:
            self.minutes = {m: n for m, n in minutes.items() if m >= minute}
        burst_days = self.burst_days
        if burst_days and min(burst_days) < burst_day:
            self.burst_days = tuple(d for d in burst_days if d >= burst_day)


def prune_cutoffs(watermark: int, keep_days: int, dedup_horizon_ms: int, lateness_ms: int
                  ) -> tuple[int, int, int, int]:
    """What :meth:`UserState.prune_below` keeps at ``watermark``: days from, event-id hours from,
    burst minutes from, burst days from."""
    return (watermark // DAY_MS - keep_days, (watermark - dedup_horizon_ms) // HOUR_MS,
            (watermark - lateness_ms) // MINUTE_MS - 1, watermark // DAY_MS - 2)


class DeviceState(msgspec.Struct, array_like=True, gc=False):
    """Distinct users seen on one (app_id, device_id) per day; days already alerted."""

    users: dict[int, list[str]] = {}  # day -> distinct user ids (kept up to the threshold)
    alerted: list[int] = []

    def prune(self, watermark: int, keep_days: int) -> None:
        oldest = watermark // DAY_MS - keep_days
        if self.users and min(self.users) < oldest:
            self.users = {d: u for d, u in self.users.items() if d >= oldest}
        if self.alerted and min(self.alerted) < oldest:
            self.alerted = [d for d in self.alerted if d >= oldest]


class PartitionMeta(msgspec.Struct, array_like=True):
    """Per-partition stream time and the last UTC day closed on it; when the flush job that wrote it
    was taken (wall-clock ms: alerts sent after it may come from changes beyond it, streams/worker/fence.py)."""

    stream_time: int = NONE
    closed_day: int = NONE
    alerts_after: int = NONE


_user_encoder = msgspec.msgpack.Encoder()
_user_decoder = msgspec.msgpack.Decoder(UserState)
_device_decoder = msgspec.msgpack.Decoder(DeviceState)
_meta_decoder = msgspec.msgpack.Decoder(PartitionMeta)

encode = _user_encoder.encode


class _UserStateV1(msgspec.Struct, array_like=True, gc=False):
    """The record layout before dedup ids moved to one map (hour bucket -> hashes)."""

    first_ts: int
    last_login: int = NONE
    last_engage: int = NONE
    days: dict[int, Counts] = {}
    dedup: dict[int, list[int]] = {}
    minutes: dict[int, int] = {}
    burst_days: tuple[int, ...] = ()
    open: tuple[int, int, int, int, int] = (NONE, NONE, NONE, NONE, NONE)
    last_active_day: int = NONE
    offsets: tuple[int, int] = (NONE, NONE)
    persisted_at: int = NONE


_v1_decoder = msgspec.msgpack.Decoder(_UserStateV1)


def decode_user(raw: bytes) -> UserState:
    """A user's record; records written before the current layout are converted (same hashes)."""
    try:
        return _user_decoder.decode(raw)
    except msgspec.ValidationError:
        old = _v1_decoder.decode(raw)
    state = UserState(old.first_ts, old.last_login, old.last_engage, old.days, {}, old.minutes, old.burst_days,
                      old.open, old.last_active_day, old.offsets, old.persisted_at)
    for hour in sorted(old.dedup):
        for h in old.dedup[hour]:
            state.remember(h, hour * HOUR_MS)
    return state
decode_device = _device_decoder.decode
decode_meta = _meta_decoder.decode
