#!/usr/bin/env bash
# The test command: set up, lint (ruff, the import layers), type-check (mypy), then every test (unit and integration on the real broker,
# the embedded ClickHouse engine and Prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layers of pyproject.toml's [tool.importlinter]: no import cycles between them
.venv/bin/mypy  # streams, sinks, schemas and bench ([tool.mypy] in pyproject.toml): no type errors
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
