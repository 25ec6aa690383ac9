# Environment for running this project's Airflow: sourced by start.sh and the tests.
# Every value can be overridden by setting it before running the scripts.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="${AIRFLOW__CORE__DAGS_FOLDER:-$ROOT/dags}"
export AIRFLOW__CORE__PLUGINS_FOLDER="${AIRFLOW__CORE__PLUGINS_FOLDER:-$ROOT/plugins}"
export AIRFLOW__CORE__LOAD_EXAMPLES="${AIRFLOW__CORE__LOAD_EXAMPLES:-False}"
# One worker process per slot: 4 suits a 2-core machine.
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}"
# New definition files show up within 30 s instead of Airflow's default 5 minutes.
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
# The API server answers on this machine only. To open it to the network (behind TLS and a firewall you
# trust), start with AIRFLOW__API__HOST=0.0.0.0, or the address of one interface.
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
# The worker's and the triggerer's log servers follow the API port (8080: Airflow's own 8793 and 8794),
# so that a second instance with another AIRFLOW__API__PORT does not collide with the first.
if [ -z "${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-}" ] || [ -z "${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-}" ]; then
  if ! [[ "$AIRFLOW__API__PORT" =~ ^[1-9][0-9]*$ ]] || ((AIRFLOW__API__PORT < 1 || AIRFLOW__API__PORT + 714 > 65535)); then
    echo "AIRFLOW__API__PORT: '$AIRFLOW__API__PORT' is not a port from 1 to 64821 (the log servers take it + 713" \
      "and + 714); choose another, or set AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT and" \
      "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT yourself" >&2
    return 1
  fi
fi
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-$((AIRFLOW__API__PORT + 713))}"
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT="${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-$((AIRFLOW__API__PORT + 714))}"
# Where this machine's processes reach the API server: loopback, unless it listens on one address only.
case "$AIRFLOW__API__HOST" in
  0.0.0.0 | :: | 127.0.0.1 | localhost) api_host=127.0.0.1 ;;
  *:*) api_host="[$AIRFLOW__API__HOST]" ;;  # an IPv6 address
  *) api_host="$AIRFLOW__API__HOST" ;;
esac
API_URL="http://$api_host:$AIRFLOW__API__PORT"
# Workers report to the API server's execution API: it must follow the host and port.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-$API_URL/execution/}"
# Known noise, filtered by message, category and module, nothing else. Airflow reads plugins/.airflowignore
# with pathspec's deprecated GitWildMatchPattern (airflow/_shared/module_loading/file_discovery.py and its copy
# in airflow.sdk), so every process, each task's too, warned once: 33 lines in 4½ minutes, one in 29 of 31 task logs.
# `airflow dags ...` commands warn that graphviz is missing, which only `dags show` image output needs. Airflow's
# execution API imports starlette's test client, which warns once per process that httpx2 is not installed
# (Airflow's own choice of client; by message only: its category class would have to be imported first).
# A PYTHONWARNINGS already set (even empty) is kept as it is. The price of any filter: Airflow turns on its own
# DeprecationWarnings only while PYTHONWARNINGS is empty (airflow/configuration.py); with one they follow Python's
# default, hidden (none but this one showed at start-up). `PYTHONWARNINGS= scripts/start.sh` shows every warning.
pathspec_warning="ignore:GitWildMatchPattern ('gitwildmatch') is deprecated:DeprecationWarning"
export PYTHONWARNINGS="${PYTHONWARNINGS-$pathspec_warning:airflow._shared.module_loading.file_discovery,\
$pathspec_warning:airflow.sdk._shared.module_loading.file_discovery,\
ignore:Could not import graphviz:UserWarning:airflow.cli.commands.dag_command,\
ignore:Using \`httpx\` with \`starlette.testclient\` is deprecated:Warning}"
unset pathspec_warning
# The local standalone's Scheduled jobs page may save job definitions (new, edit, disable) into job_definitions/
# of this working copy, where git shows each change for review. docker-compose.yaml does not set it, so there it
# is off (the setting's default): production's definitions change through the repository only.
export AIRFLOW__SCHEDULED_JOBS__UI_EDITING="${AIRFLOW__SCHEDULED_JOBS__UI_EDITING:-True}"
# This checkout's own store follows its code: an older schema (after a git pull) is upgraded on first use. A
# deployment leaves it off and runs `scheduled-jobs db upgrade` once (docker-compose.yaml, deploy/helm).
export AIRFLOW__SCHEDULED_JOBS__STORE_AUTO_MIGRATE="${AIRFLOW__SCHEDULED_JOBS__STORE_AUTO_MIGRATE:-True}"
# dag-factory (installed for the benchmark) would otherwise report telemetry from every process.
export AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY=False
export PATH="$ROOT/.venv/bin:$PATH"
