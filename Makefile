.PHONY: demo test test-fast bench serve

# Start the demo service (synthetic data, consumers, budgets) on http://127.0.0.1:8000
demo:
	bash scripts/demo.sh $(ARGS)

# Run the whole test suite (lint, types, pytest on SQLite and PostgreSQL)
test:
	bash scripts/test.sh $(ARGS)

# The fast lane, under a minute: lint, types, pytest on SQLite without the slow tests
test-fast:
	bash scripts/test-fast.sh $(ARGS)

serve:
	bash scripts/setup.sh && .venv/bin/ruis serve $(ARGS)

# Benchmark Ruis against plain Polars and measure the ledger (ARGS="--quick" for a smoke run)
bench:
	bash scripts/setup.sh && .venv/bin/python -m bench.run $(ARGS)
