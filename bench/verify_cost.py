"""What reconciling costs: ``GET /v1/ledger/verify``'s chain check alone vs chain plus
reconciliation, on a ledger of N completed releases; the spool's cost per release; and
the size of a large release's ledger entry with and without the digest.

    .venv/bin/python -m bench.verify_cost [--releases 10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

from db import accounts, budgets, catalog, ledger, reconcile, releases
from db.amounts import cost_units
from db.engine import Database
from db.migrate import upgrade
from db.spool import Spool, Spooled


def _fill(db: Database, n: int) -> None:
    upgrade(db)
    accounts.create_consumer(db, name="ana", role="analyst", actor="bench")
    catalog.register(
        db,
        metadata={"name": "events", "budget_cap": {"model": "pure", "epsilon": 1e6}},
        actor="bench",
    )
    budgets.set_budget(
        db, consumer="ana", dataset="events", model="pure", amount=Decimal("1e6"), actor="bench"
    )
    rows = [[f"GM{i:04d}", float(i)] for i in range(24)]
    for i in range(n):
        started = releases.start(
            db,
            consumer_id=1,
            consumer="ana",
            dataset_id=1,
            dataset="events",
            query_hash=f"{i:064d}",
            model="pure",
            cost_units=cost_units(Decimal("0.01")),
            details={"query": {"i": i}},
            request_id=None,
        )
        assert isinstance(started, releases.Started)
        releases.complete(
            db,
            release_id=started.release_id,
            body={"id": started.release_id, "rows": rows},
            consumer="ana",
            dataset="events",
            output={"rows": rows},
            request_id=None,
        )


def _timed(label: str, db: Database) -> None:
    began = time.perf_counter()
    with db.snapshot() as session:
        chain = ledger.verify(session)
    chain_s = time.perf_counter() - began
    began = time.perf_counter()
    chain, found = reconcile.verify(db)
    both_s = time.perf_counter() - began
    assert chain.valid and found.reconciled
    tracemalloc.start()  # peak memory in a second run (tracing slows it down)
    with db.snapshot() as session:
        ledger.verify(session)
    _, chain_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    reconcile.verify(db)
    _, both_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"{label}: {chain.entries} entries; chain only {chain_s:.2f} s "
        f"(peak {chain_peak / 1e6:.1f} MB); chain + reconcile {both_s:.2f} s "
        f"(peak {both_peak / 1e6:.1f} MB)"
    )


def main() -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--postgres", default=None, help="an empty PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        urls = [("sqlite", f"sqlite:///{Path(directory) / 'bench.db'}")]
        if args.postgres:
            urls.append(("postgresql", args.postgres))
        for label, url in urls:
            db = Database(url)
            began = time.perf_counter()
            _fill(db, args.releases)
            print(
                f"{label}: {args.releases} releases stored in {time.perf_counter() - began:.1f} s"
            )
            _timed(label, db)
            db.dispose()
        spool = Spool(Path(directory) / "spool")
        body = {"id": "rel_" + "0" * 24, "rows": [[f"GM{i:04d}", float(i)] for i in range(24)]}
        began = time.perf_counter()
        for i in range(200):
            release_id = f"rel_{i:024x}"
            spool.put(
                Spooled(
                    release_id=release_id,
                    consumer="ana",
                    dataset="events",
                    request_id=None,
                    body=body,
                    output=body,
                )
            )
            spool.remove(release_id)
        per_ms = (time.perf_counter() - began) / 200 * 1000
        print(f"spool: put + remove of a 24-row release {per_ms:.2f} ms")
    cells = [[f"k{i:07d}", float(i) + 0.25] for i in range(1_000_000)]
    began = time.perf_counter()
    inline = len(ledger.canonical_json({"rows": cells}).encode())
    digest = ledger.canonical_json(releases.ledger_output({"rows": cells}))
    print(
        f"1M-cell release: ledger details {inline / 1e6:.1f} MB inline -> "
        f"{len(digest)} bytes with the digest ({time.perf_counter() - began:.2f} s to "
        f"encode and hash); sha256 {hashlib.sha256(digest.encode()).hexdigest()[:8]}"
    )


if __name__ == "__main__":
    main()
