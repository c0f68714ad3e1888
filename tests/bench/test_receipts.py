"""The receipt overhead bench (``bench/receipts.py``) runs end to end at tiny sizes, and
its bulk fill builds the tree ``db.ledger.append`` would have built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bench.receipts import (
    OPERATIONS,
    ReceiptConfig,
    fill,
    format_report,
    measure,
    summarise_http,
    targets,
    time_appends,
)
from bench.server import postgres_available
from db import ledger, ledger_tree
from db.engine import Database
from db.migrate import upgrade
from db.models import LedgerEntry
from tests.conftest import require_postgres
from tlog import merkle


def test_fill_then_append_keeps_chain_and_tree_valid(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fill.db'}")
    try:
        upgrade(db)
        fill(db, 37, with_tree=True)
        time_appends(db, 5, one_transaction=False, tree=True)
        time_appends(db, 6, one_transaction=True, tree=True)
        # after appends (48 entries): continues the chain and the tree, and the frontier
        # (96 has as many subtrees on its right edge as 48: a stale one would fit)
        fill(db, 96, with_tree=True)
        fill(db, 50, with_tree=True)  # already larger: nothing
        time_appends(db, 4, one_transaction=False, tree=True)
        with db.snapshot() as session:
            check = ledger.verify(session)
            hashes = [
                e.hash for e in session.exec(select(LedgerEntry).order_by(col(LedgerEntry.seq)))
            ]
            root = ledger_tree.root(session, 100)
        assert check.valid and check.tree_valid and check.entries == 100
        tree = merkle.MemoryTree()
        for entry_hash in hashes:
            tree.append(merkle.leaf_hash(bytes.fromhex(entry_hash)))
        assert root == tree.root(100)
    finally:
        db.dispose()


def test_appends_without_tree_write_no_nodes_and_restore_the_tree(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'none.db'}")
    try:
        upgrade(db)
        fill(db, 10, with_tree=False)
        time_appends(db, 4, one_transaction=True, tree=False)
        with db.read() as session:
            assert ledger_tree.stored_count(session) == 0
            assert ledger_tree.size(session) == 14
        assert ledger_tree.append_leaf.__module__ == "db.ledger_tree"  # patch undone
    finally:
        db.dispose()


def _run(per_second: float, cpu_ms: float) -> dict[str, Any]:
    return {"per_second": per_second, "p50_ms": 1.0, "errors": 0, "first_error": "",
            "server_cpu_ms": cpu_ms}  # fmt: skip


def test_summary_pairs_rounds_and_judges_ten_percent() -> None:
    runs = {
        "receipts": {op: [_run(95, 2.2), _run(40, 2.0), _run(85, 2.4)] for op in OPERATIONS},
        "no-receipts": {op: [_run(100, 2.0), _run(50, 2.0), _run(100, 2.0)] for op in OPERATIONS},
    }
    summary = summarise_http(runs)
    vs = summary["fresh"]["receipts_vs"]["no-receipts"]
    assert vs["paired_ratios"] == [0.95, 0.8, 0.85]
    assert vs["ratio"] == 0.85 and vs["met"] is False
    assert vs["overhead"] == pytest.approx(0.15)
    assert vs["cpu_ratio"] == pytest.approx(1.1)
    assert summary["fresh"]["modes"]["receipts"]["per_second"] == 85
    found = targets({"backends": {"sqlite": {"http": {"summary": summary}}}})
    assert len(found) == len(OPERATIONS)
    assert {t["threshold"] for t in found} == {0.9} and not any(t["met"] for t in found)


@pytest.mark.slow
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_receipts_bench_reports_every_row(database: str) -> None:
    if database == "postgresql":
        require_postgres(postgres_available())
    config = ReceiptConfig(
        seconds=0.5,
        rounds=1,
        concurrency=2,
        backends=(database,),
        append_sizes=(100, 300),
        appends=40,
        append_reps=1,
    )
    results = measure(config)
    measured = results["backends"][database]
    summary = measured["http"]["summary"]
    for operation in OPERATIONS:
        for mode in config.modes:
            m = summary[operation]["modes"][mode]
            # the check of every answer includes: a receipt exactly in mode "receipts"
            assert m["errors"] == 0, m["first_error"]
            assert m["per_second"] > 0 and m["server_cpu_ms"] > 0
        assert set(summary[operation]["receipts_vs"]) == {"no-receipts", "no-tree"}
    appends = measured["appends"]
    assert appends["tree_valid"]
    assert [s["size"] for s in appends["sizes"]] == [100, 300]
    assert appends["sizes"][1]["start"] == 300 and appends["sizes"][1]["end"] == 300 + 2 * 40
    text = format_report(results)
    assert "with receipts within 10% of without" in text and "tree valid" in text
    assert len(targets(results)) == len(OPERATIONS)
