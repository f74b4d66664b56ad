"""The exit codes of ``vitals`` and its worker, in one place (sysexits.h where one fits).

A supervisor (``streams.ops.supervisor``, Kubernetes, compose) restarts a worker after any code but
those in :data:`FINAL`: a fresh worker resumes from the committed offsets and the changelogs, so a
restart loses nothing; a code in :data:`FINAL` would fail the same way again.
"""

from __future__ import annotations

OK = 0
FAILED_COMMAND = 1  # a command did not do what was asked (a user not found, a replay that failed)
CONFIG = 2  # a configuration error (streams.config.settings.ConfigError), or bad arguments: fix and restart
FAILED = 70  # EX_SOFTWARE: processing or a flush job failed (streams/worker/app.py); a fresh worker replays
STALLED = 75  # EX_TEMPFAIL: the lag watchdog saw consumption stall (streams/ops/watchdog.py); restart me
REFUSED = 78  # EX_CONFIG: ClickHouse refuses the writes whatever the rows (a table, grant or setting to fix)
KILLED = 137  # 128 + SIGKILL: what a fault-injection crash point exits with (streams/ops/faults.py)

FINAL = (OK, CONFIG, REFUSED)  # a worker is not restarted after these
