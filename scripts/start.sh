#!/usr/bin/env bash
# Install, then start Airflow standalone (SQLite, LocalExecutor) with the example scheduled jobs.
# Ctrl-C stops every process it started.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/install.sh"
source "$ROOT/scripts/env.sh"
# Airflow's home holds the admin password (the passwords file, and the "Password for user 'admin'" line of
# standalone.log), the metadata database and the connections: only its owner may enter it. (Not a umask: the
# job definitions the UI saves into the checkout stay as readable as the checked-in ones.)
mkdir -p "$AIRFLOW_HOME"
chmod go-rwx "$AIRFLOW_HOME"
# The key that signs the API's tokens, made once and kept in the home: the one Airflow generates is 16 bytes
# (pyjwt warns on every token: "The HMAC key is 24 bytes long, below the minimum recommended 64").
jwt_secret_file="$AIRFLOW_HOME/jwt_secret"
if [ -z "${AIRFLOW__API_AUTH__JWT_SECRET:-}" ]; then
  if [ ! -s "$jwt_secret_file" ]; then
    (umask 077 && rm -f "$jwt_secret_file" && python3 -c 'import secrets; print(secrets.token_urlsafe(64))' >"$jwt_secret_file")
  fi
  AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$jwt_secret_file")"
  export AIRFLOW__API_AUTH__JWT_SECRET
fi

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
# Ctrl-C ends the script there and then, wherever it is waiting (it goes on with nothing after stopping).
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

passwords="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
login_file="$AIRFLOW_HOME/login.txt"
log_excerpt() {
  echo "airflow standalone exited; its last lines ($log):"
  tail -n 30 "$log"
}

# 1. The API server answers: the URL and the login, first time.
password=""
for _ in $(seq 1 240); do
  if [ -s "$passwords" ] && curl -fsS "$API_URL/api/v2/monitor/health" >/dev/null 2>&1; then
    password="$(python -c 'import json,sys; print(json.load(open(sys.argv[1])).get("admin", "?"))' "$passwords")"
    break
  fi
  kill -0 "$airflow_pid" 2>/dev/null || { kill "$tail_pid" 2>/dev/null; log_excerpt; exit 1; }
  sleep 1
done
if [ -z "$password" ]; then
  kill "$tail_pid" 2>/dev/null || true
  echo "The API server did not answer at $API_URL within 240 s; see $log"
  exit 1
fi
# Only the owner may read it; an old file, or a link put in its place, is replaced, not written through.
(umask 077 && rm -f "$login_file" && printf 'url: %s\nuser: admin\npassword: %s\n' "$API_URL" "$password" >"$login_file")
cat <<MSG

==============================================================================
 The API server is up:  $API_URL   login: admin / $password
 Waiting for the scheduler and the first parse of the job definitions...
==============================================================================

MSG

# 2. Everything is up: the scheduler, the DAG processor and the triggerer report healthy, and the DAGs of the job
# definitions are parsed. The log is shown until then; afterwards it only goes to the file, so that the URL and
# the login stay the last thing on the screen instead of scrolling away under each minute's task runs.
ready() {
  local token
  curl -fsS "$API_URL/api/v2/monitor/health" 2>/dev/null | python -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(any(health.get(part, {}).get("status") != "healthy" for part in ("scheduler", "dag_processor", "triggerer")))
' || return 1
  # The password goes from Airflow's file to curl's stdin: never on a command line, where ps would show it.
  token="$(python -c 'import json,sys; print(json.dumps({"username": "admin", "password": json.load(open(sys.argv[1]))["admin"]}))' "$passwords" \
    | curl -fsS -X POST "$API_URL/auth/token" -H "Content-Type: application/json" --data-binary @- 2>/dev/null \
    | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null)" || return 1
  printf 'Authorization: Bearer %s\n' "$token" | curl -fsS "$API_URL/api/v2/dags?limit=1" -H @- 2>/dev/null \
    | python -c 'import json,sys; sys.exit(json.load(sys.stdin).get("total_entries", 0) < 1)'
}
waited=""
for _ in $(seq 1 180); do
  if ready; then
    waited=yes
    break
  fi
  kill -0 "$airflow_pid" 2>/dev/null || { kill "$tail_pid" 2>/dev/null; log_excerpt; exit 1; }
  sleep 1
done
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true
[ -n "$waited" ] || echo "(not every part of Airflow reported ready within 180 s: see $log)"
cat <<MSG

==============================================================================
 Airflow is up:  $API_URL   login: admin / $password
 (also in $login_file)
 Example data:   $data/inbox/shop-orders  ->  $data/outbox/erp-orders
 The example orders move every minute. Airflow's log goes on in $log
 (tail -f it); Airflow's command line here: scripts/airflow dags list
 Ctrl-C stops everything.
==============================================================================
MSG
wait "$airflow_pid" || true
# Only when airflow standalone ended by itself, which it never should: Ctrl-C exits in its trap.
log_excerpt
exit 1
