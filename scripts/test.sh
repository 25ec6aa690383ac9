#!/usr/bin/env bash
# Install (with the test tools), then lint, type-check and run every test, PostgreSQL and end-to-end included.
# Extra arguments go to pytest, e.g. scripts/test.sh -k dagbag
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/install.sh" --dev
cd "$ROOT"
PATH="$ROOT/.venv/bin:$PATH"
export AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False
echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy (strict)"
mypy
echo "== pytest"
exec python -m pytest "$@"
