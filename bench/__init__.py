"""Ruis benchmark: query latency, memory and accuracy against plain Polars, and ledger throughput.

Run ``make bench`` (or ``.venv/bin/python -m bench.run --help``); see ``bench/README.md``.
"""
