#!/usr/bin/env bash
# The main job on a fresh machine: set up, then `vitals run` (local Kafka, a worker, generated
# traffic, a summary read back from ClickHouse). Extra arguments go to `vitals run`.
set -euo pipefail
cd "$(dirname "$0")/.."
VITALS_SKIP_PROMETHEUS=1 VITALS_SKIP_CHROMIUM=1 bash deploy/setup.sh
exec .venv/bin/vitals run "$@"
