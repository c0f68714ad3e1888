#!/usr/bin/env bash
# Set up and start the demo service: synthetic data, consumers, budgets, then serve.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ruis demo "$@"
