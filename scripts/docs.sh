#!/usr/bin/env bash
# The docs site: `scripts/docs.sh` serves it at http://127.0.0.1:8000 with live reload;
# `scripts/docs.sh build` writes it to build/site (strict: a broken link or a page left out fails).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$ROOT/.venv/bin/mkdocs" ] || "$ROOT/scripts/install.sh" --dev
cd "$ROOT"
"$ROOT/.venv/bin/python" scripts/docs_reference.py --check || "$ROOT/.venv/bin/python" scripts/docs_reference.py
if [ "${1:-serve}" = "build" ]; then
  NO_MKDOCS_2_WARNING=1 exec "$ROOT/.venv/bin/mkdocs" build --strict
fi
NO_MKDOCS_2_WARNING=1 exec "$ROOT/.venv/bin/mkdocs" serve --strict --dev-addr 127.0.0.1:8000
