"""Time in vitals is epoch milliseconds (SPEC section 2): the units, in one place."""

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000  # a UTC day: day number = ts // DAY_MS
