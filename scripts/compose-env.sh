#!/usr/bin/env bash
# Write .env for docker-compose.yaml: the keys of .env.example, a random value for every empty secret, your user
# id, and whatever an existing .env already holds (so running it again changes nothing). Mode 600; git ignores it.
# Usage: scripts/compose-env.sh [ENV_FILE]   (default: .env beside docker-compose.yaml)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
target="${1:-$ROOT/.env}"
PYTHON="${PYTHON:-python3}"
umask 077
"$PYTHON" - "$ROOT/.env.example" "$target" "$(id -u)" <<'PY'
import base64
import os
import secrets
import sys

example, target, uid = sys.argv[1], sys.argv[2], sys.argv[3]


def read(path):
    values = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, value = line.split("=", 1)
                    values[key.strip()] = value.strip()
    return values


# Letters, digits, - and _ only: each value goes unquoted into .env, a URL (the PostgreSQL password) and JSON.
generate = {
    # Root's 0 would run every Airflow container as root: the image's own airflow user (50000) instead.
    "AIRFLOW_UID": lambda: uid if uid != "0" else "50000",
    "_AIRFLOW_WWW_USER_PASSWORD": lambda: secrets.token_urlsafe(18),
    "AIRFLOW_JWT_SECRET": lambda: secrets.token_urlsafe(64),
    "AIRFLOW_FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW_API_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(16),
}
keys = list(read(example))
have = read(target)
values = {key: have.get(key) or read(example).get(key) or (generate[key]() if key in generate else "") for key in keys}
values.update({key: value for key, value in have.items() if key not in values})
missing = [key for key, value in values.items() if not value]
if missing:
    sys.exit(f"scripts/compose-env.sh: no value for {', '.join(missing)}: set it in {target}")
fresh = [key for key in keys if key in generate and not have.get(key)]
tmp = target + ".tmp"
if os.path.lexists(tmp):
    os.unlink(tmp)  # never write through a link left there
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
    handle.write("# Written by scripts/compose-env.sh (keys: .env.example). Secrets: keep this file to yourself.\n")
    handle.writelines(f"{key}={value}\n" for key, value in values.items())
os.chmod(tmp, 0o600)
os.replace(tmp, target)
print(f"{target}: {len(values)} settings" + (f", new: {', '.join(fresh)}" if fresh else ", nothing new"))
if "_AIRFLOW_WWW_USER_PASSWORD" in fresh:
    print(f"login: {values['_AIRFLOW_WWW_USER_USERNAME']} / the _AIRFLOW_WWW_USER_PASSWORD in {target}")
PY
