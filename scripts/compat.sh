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
  # Airflow is installed with its constraints file in practice; without one, the resolver takes releases made after
  # that Airflow and not tested with it (Airflow 3.2.2 with today's cadwyn and fastapi cannot build its own execution
  # API: "Model 'TITerminalStatePayload' needs a discriminator field"). The constraints files live on GitHub, which
  # CI cannot reach; the index can: resolve as of the release day of that Airflow, which is what its constraints
  # file recorded. The wheel under test is a local file and is not held back.
  case "$version" in
    3.1.8) as_of="2026-03-12T00:00:00Z" ;;  # apache_airflow-3.1.8 uploaded 2026-03-11T19:27Z
    3.2.2) as_of="2026-05-30T00:00:00Z" ;;  # apache_airflow-3.2.2 uploaded 2026-05-29T05:19Z
    *) echo "scripts/compat.sh: no release day recorded for Airflow $version; add it beside 3.1.8 and 3.2.2" >&2; exit 2 ;;
  esac
  "$uv" pip install --quiet --python "$venv/bin/python" --exclude-newer "$as_of" "apache-airflow==$version" "$wheel" \
    pytest pytest-httpserver pytest-timeout hypothesis
  found="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
  [ "$found" = "$version" ] || { echo "installing the wheel changed apache-airflow $version to $found" >&2; exit 1; }
  (cd "$ROOT" && PATH="$venv/bin:$PATH" SCHEDULED_JOBS_TEST_INSTALLED=1 AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False \
    "$venv/bin/python" -m pytest -m "not e2e" -q -p no:cacheprovider "${tests[@]}")
done
