#!/usr/bin/env bash
# Create .venv with Ruis, its client and its dev tools installed (re-run only when a
# pyproject.toml changes).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.ruis-installed
want=$(cat pyproject.toml client/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (first run takes a minute)..." >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# one call: the server's dependency on ruis-client resolves to the editable ./client
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ./client -e ".[dev]"
echo "$want" > "$stamp"
