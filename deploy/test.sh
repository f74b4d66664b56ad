#!/usr/bin/env bash
# The test command: set up, lint, then every test (unit and integration on the real broker,
# the embedded ClickHouse engine and Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
