"""Where a receipt's time goes: the release use-cases in process, with and without one.

    .venv/bin/python -m bench.receipt_profile [--backend sqlite|postgresql] [--calls 200]

On the tiny data set (registered through the app in process, a fresh database), in
this one thread: blocks of ``--calls`` calls of ``api.release.reread`` (the use-case of
``GET /v1/queries/{id}``), of ``api.release.run`` with the same query (cached) and
with distinct ones (fresh, each debited), each answer encoded to JSON as the routes do,
alternating with ``log_signer`` (a receipt) and without. Then the receipt alone and its
parts (the tree read, the checkpoint signature, the entry), the bytes it adds, and a
cProfile of re-reads with receipts (the functions with the most own time).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import itertools
import pstats
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api import release
from api.app import create_app
from api.ledger_key import LogSigner, load_or_create
from api.services import transparency
from api.settings import Settings
from bench.data import TINY, ensure
from bench.queries import SMALL
from bench.server import ANALYST, ok_json, postgres_database
from db import accounts, ledger, ledger_tree
from db.accounts import Principal
from db.engine import Database
from db.models import LedgerEntry
from privacy import QueryRequest
from tlog import note


@contextmanager
def _service(backend: str) -> Iterator[tuple[Settings, Database, Principal, LogSigner]]:
    """A migrated database with the tiny data registered and an analyst with a big budget."""
    tiny = ensure(TINY)
    database: AbstractContextManager[str | None] = (
        postgres_database() if backend == "postgresql" else nullcontext(None)
    )
    with tempfile.TemporaryDirectory(prefix="ruis-receipt-profile-") as scratch, database as url:
        admin_key = secrets.token_hex(24)
        settings = Settings(
            database_url=url or f"sqlite:///{Path(scratch) / 'ruis.db'}",
            data_dir=tiny.spec.directory,
            bootstrap_admin_key=admin_key,
            release_time_quantum_ms=0,
            ledger_key_file=Path(scratch) / "ledger-key.pem",
        )
        headers = {"Authorization": f"Bearer {admin_key}"}
        with TestClient(create_app(settings), headers=headers) as client:
            body = tiny.registration(SMALL.dataset)
            ok_json(client.post("/v1/datasets", json=body))
            created = ok_json(
                client.post("/v1/consumers", json={"name": ANALYST, "role": "analyst"})
            )
            ok_json(
                client.put(
                    f"/v1/budgets/{ANALYST}/{body['name']}",
                    json={"model": "pure", "epsilon": 1e6},
                )
            )
        db = Database(settings.database_url)
        try:
            principal = accounts.authenticate(db, str(created["api_key"]))
            assert principal is not None
            ledger.ACTING_KEY.set(principal.key_id)
            signer = LogSigner(load_or_create(settings.ledger_key_path, settings.ledger_origin))
            yield settings, db, principal, signer
        finally:
            db.dispose()


def _per_call_us(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Wall-clock and this thread's CPU µs per call of ``call``."""
    began, cpu = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        call()
    return (
        1e6 * (time.perf_counter() - began) / calls,
        1e6 * (time.thread_time() - cpu) / calls,
    )


def main() -> int:
    """Print the per-call times, the receipt's parts and the profile."""
    parser = argparse.ArgumentParser(prog="python -m bench.receipt_profile")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--calls", type=int, default=200, help="calls per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="blocks per variant")
    parser.add_argument("--top", type=int, default=25, help="profile rows")
    args = parser.parse_args()
    with _service(args.backend) as (settings, db, principal, signer):
        same = QueryRequest.model_validate(SMALL.body(Decimal("0.01")))
        first = release.run(db, settings, principal, same, "bench", None, signer)
        release_id = first.id
        epsilons = (Decimal("0.02") + i * Decimal("1e-9") for i in itertools.count())

        def reread(log: LogSigner | None) -> str:
            return release.reread(db, principal, release_id, "bench", log).model_dump_json()

        def cached(log: LogSigner | None) -> str:
            answer = release.run(db, settings, principal, same, "bench", None, log)
            return answer.model_dump_json()

        def fresh(log: LogSigner | None) -> str:
            query = QueryRequest.model_validate(SMALL.body(next(epsilons)))
            return release.run(db, settings, principal, query, "bench", None, log).model_dump_json()

        print(
            f"{args.backend}: per call (µs), median of {args.blocks} blocks of {args.calls}, "
            "the variants alternating; the answer encoded to JSON"
        )
        for name, use_case in (
            ("re-read by id", reread),
            ("cached POST", cached),
            ("fresh", fresh),
        ):
            use_case(signer), use_case(None)  # warm
            timed: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for block in range(args.blocks):
                for with_receipt in (True, False) if block % 2 == 0 else (False, True):
                    log = signer if with_receipt else None
                    timed[with_receipt].append(
                        _per_call_us(functools.partial(use_case, log), args.calls)
                    )
            for clock, at in (("wall", 0), ("CPU", 1)):
                on = statistics.median(t[at] for t in timed[True])
                off = statistics.median(t[at] for t in timed[False])
                print(
                    f"  {name:14s} {clock:4s} with receipt {on:8.0f}   without {off:8.0f}   "
                    f"{on - off:+6.0f} µs ({100 * (on / off - 1):+.1f}%)"
                )

        seq = first.ledger_seq
        with db.read() as session:
            size, root, _ = ledger_tree.receipt_path(session, seq - 1)
        parts: dict[str, Callable[[], object]] = {
            "transparency.receipt (all)": lambda: transparency.receipt(db, signer, seq),
            "  tree size + root and inclusion, nothing kept (one read)": lambda: _tree(db, seq),
            "  entry read + entry_document": lambda: _entry(db, seq),
            "  checkpoint (signature cached per size)": lambda: signer.checkpoint(size, root),
            "  checkpoint, new size (Ed25519 signature)": lambda: note.sign(
                note.Checkpoint(signer.origin, size, root).text, signer.signer
            ),
        }
        print(
            f"the receipt alone, at {size:,} entries (µs per call wall / CPU, "
            f"{args.calls * 5} calls):"
        )
        for label, call in parts.items():
            call()
            wall, cpu = _per_call_us(call, args.calls * 5)
            print(f"  {label:52s} {wall:8.0f} / {cpu:6.0f}")
        with_body = release.reread(db, principal, release_id, "bench", signer)
        without = with_body.model_copy(update={"receipt": None})
        print(
            f"answer bytes: {len(with_body.model_dump_json()):,} with the receipt, "
            f"{len(without.model_dump_json()):,} without"
        )
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            reread(signer)
        profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).sort_stats("tottime")
        stats.print_stats(args.top)
        print(f"cProfile of {args.calls} re-reads with receipts (by own time):")
        print(text.getvalue())
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).sort_stats("cumulative")
        stats.print_stats(r"(release|transparency|ledger|note|merkle|release_body)\.py")
        print("cumulative, Ruis functions:")
        print(text.getvalue())
    return 0


def _tree(db: Database, seq: int) -> Any:
    with db.read() as session:
        return ledger_tree.receipt_path(session, seq - 1)


def _entry(db: Database, seq: int) -> Any:
    with db.read() as session:
        entry = session.get(LedgerEntry, seq)
        assert entry is not None
        return ledger.entry_document(entry)


if __name__ == "__main__":
    raise SystemExit(main())
