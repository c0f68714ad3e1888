#!/usr/bin/env bash
# The fast lane (under a minute on 2 cores): lint, format, types, and pytest on SQLite
# without the tests marked slow. `make test` (what CI runs) still runs everything on
# SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Two test processes (pytest-xdist) by default; RUIS_TEST_WORKERS=0 runs them in this one.
.venv/bin/pytest -p no:cacheprovider -q -n "${RUIS_TEST_WORKERS:-2}" -m "not postgres and not slow" "$@"
