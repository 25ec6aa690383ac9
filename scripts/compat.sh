#!/usr/bin/env bash
# The supported range beyond this checkout's lock (3.3.2): build the wheel, install it with pip's resolver into a
# fresh environment holding only apache-airflow==X (the newest patch of each older minor) and what the wheel
# needs, and run there the tests that need no browser or scheduler, on the installed wheel (no plugins/ folder,
# nothing of this checkout on sys.path: tests/conftest.py, SCHEDULED_JOBS_TEST_INSTALLED=1).
# Usage: scripts/compat.sh [pytest arguments]   (SCHEDULED_JOBS_COMPAT_AIRFLOW="3.1.8 3.2.2" by default)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
uv="$ROOT/.venv/bin/uv"
[ -x "$uv" ] || "$ROOT/scripts/install.sh"
read -r -a versions <<<"${SCHEDULED_JOBS_COMPAT_AIRFLOW:-3.1.8 3.2.2}"
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(tests/test_packaging.py tests/test_dagbag.py tests/test_dag_runs.py tests/test_cli.py
    tests/test_definitions.py tests/test_http_dag.py tests/test_web_api.py tests/test_guard_inline.py)
fi

# Built from a copy: setuptools writes its egg-info next to the sources, and plugins/ is on the checkout's sys.path.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/plugins"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/CHANGELOG.md" "$work/src/"
cp -R "$ROOT/plugins/scheduled_jobs" "$work/src/plugins/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$uv" build --quiet --wheel --out-dir "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/airflow_scheduled_jobs-*.whl)"

for version in "${versions[@]}"; do
  venv="$ROOT/.compat/airflow-$version"
  echo "== Airflow $version: $(basename "$wheel") in a fresh environment ($venv)"
  rm -rf "$venv"
  "$uv" venv --quiet --python "$ROOT/.venv/bin/python" "$venv"
  "$uv" pip install --quiet --python "$venv/bin/python" "apache-airflow==$version" "$wheel" \
    pytest pytest-httpserver pytest-timeout hypothesis
  found="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
  [ "$found" = "$version" ] || { echo "installing the wheel changed apache-airflow $version to $found" >&2; exit 1; }
  known=()
  case "$version" in
    # KNOWN GAP, not a pass (issue 21 stays open; README "Install into your Airflow" says so): on Airflow 3.1 a
    # webhook connection created after a first push that found none is still not found by the same API server.
    3.1.*) known=(--deselect "tests/test_web_api.py::test_webhook_secret_from_an_airflow_connection") ;;
  esac
  (cd "$ROOT" && PATH="$venv/bin:$PATH" SCHEDULED_JOBS_TEST_INSTALLED=1 AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False \
    "$venv/bin/python" -m pytest -m "not e2e" -q -p no:cacheprovider "${known[@]}" "${tests[@]}")
done
