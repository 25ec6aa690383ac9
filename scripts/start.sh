#!/usr/bin/env bash
# Install, then start Airflow standalone (SQLite, LocalExecutor) with the example scheduled jobs.
# Ctrl-C stops every process it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/install.sh"
source "$ROOT/scripts/env.sh"
mkdir -p "$AIRFLOW_HOME"

# The example inbox is seeded once; drop more files in it to see them move.
data="${AIRFLOW__SCHEDULED_JOBS__DATA_FOLDER:-$AIRFLOW_HOME/scheduled_jobs_data}"
if [ ! -e "$data/.seeded" ]; then
  mkdir -p "$data"
  cp -R "$ROOT/examples/inbox" "$data/"
  touch "$data/.seeded"
fi

scheduled-jobs validate || echo "(the invalid files above are listed as import errors in the Airflow UI)"

log="$AIRFLOW_HOME/standalone.log"
: > "$log"
# Its own session, so that stopping it reaches every scheduler, worker and server it forks.
setsid airflow standalone >>"$log" 2>&1 &
airflow_pid=$!
tail -n +1 -F "$log" 2>/dev/null &
tail_pid=$!

stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping Airflow (process group $airflow_pid)..."
  kill -TERM -- "-$airflow_pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 -- "-$airflow_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL -- "-$airflow_pid" 2>/dev/null || true
  kill "$tail_pid" 2>/dev/null || true
  echo "Stopped."
}
trap stop INT TERM EXIT

passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
for _ in $(seq 1 240); do
  if [ -s "$passwords" ] && curl -fsS "$API_URL/api/v2/monitor/health" >/dev/null 2>&1; then
    password="$(python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("admin", "?"))' "$passwords")"
    cat <<MSG

==============================================================================
 Airflow is up:  $API_URL   login: admin / $password
 Example data:   $data/inbox/shop-orders  ->  $data/outbox/erp-orders
 The example jobs run every minute; Ctrl-C stops everything.
==============================================================================

MSG
    break
  fi
  kill -0 "$airflow_pid" 2>/dev/null || { echo "airflow standalone exited; see $log"; exit 1; }
  sleep 1
done
wait "$airflow_pid"
