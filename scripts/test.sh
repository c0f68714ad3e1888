#!/usr/bin/env bash
# The whole test suite: lint, types, and pytest on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system-deps.sh   # Chromium, podman...: installed when missing and we may
if bash scripts/ensure-postgres.sh; then
  export RUIS_REQUIRE_POSTGRES=1   # PostgreSQL is up: its tests must run, never skip
elif [ "${CI:-}" = "true" ]; then
  echo "CI needs PostgreSQL" >&2; exit 1
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Two test processes (pytest-xdist) by default; RUIS_TEST_WORKERS=0 runs them in this one.
# The tests marked heavy (a podman image build, pip into a fresh venv) load both cores for
# minutes, so they run after the rest, on their own, not beside the timing-sensitive tests.
workers=${RUIS_TEST_WORKERS:-2}
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest -p no:cacheprovider -n "$workers" "$@"
fi
.venv/bin/pytest -p no:cacheprovider -n "$workers" -m "not heavy"
.venv/bin/pytest -p no:cacheprovider -n "$workers" -m heavy
