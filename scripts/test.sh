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
echo "== docs (mkdocs build --strict; the references generated from the code)"
"$ROOT/scripts/docs.sh" build
echo "== pytest (Airflow of the lock, requirements.txt)"
if [ $# -gt 0 ]; then
  exec python -m pytest "$@"  # a chosen set of tests: on the lock only
fi
python -m pytest
echo "== compatibility: the built wheel on the oldest supported Airflow minors"
exec bash "$ROOT/scripts/compat.sh"
