"""The contract test of the privacy filter: however many concurrent debits race, from
threads or from separate processes (API workers, replicas), exactly the ones that fit
are charged, the totals are never passed, and every attempt is in a valid ledger.

Two datasets are raced at once: ``solo`` (one analyst whose budget fits exactly
``K`` debits) and ``shared`` (two analysts with ample budgets, but a dataset cap
that fits exactly ``K`` debits in total).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import select

from db import accounts, budgets, catalog, ledger
from db.amounts import cost_units, total_units
from db.budgets import Debited, Refused
from db.engine import Database
from db.errors import InvalidInput, NotFound
from db.migrate import upgrade
from db.models import Dataset

COST = Decimal("0.1")
TOTAL = Decimal("1.0")
K = 10  # debits of COST that fit in TOTAL
N = 40  # racing debits per dataset
THREADS = 16
Call = tuple[str, str]  # (consumer, dataset)


def _prepare(url: str) -> None:
    """Migrate a fresh database; ``ana`` on ``solo``; ``ana`` and ``bob`` on ``shared``."""
    database = Database(url)
    try:
        upgrade(database)
        for name in ("ana", "bob"):
            accounts.create_consumer(database, name=name, role="analyst", actor="test")
        catalog.register(database, metadata={"name": "solo"}, actor="test")
        catalog.register(
            database,
            metadata={"name": "shared", "budget_cap": {"model": "pure", "epsilon": "1.0"}},
            actor="test",
        )
        for consumer, dataset, amount in (
            ("ana", "solo", TOTAL),
            ("ana", "shared", TOTAL),
            ("bob", "shared", TOTAL),
        ):
            budgets.set_budget(
                database,
                consumer=consumer,
                dataset=dataset,
                model="pure",
                amount=amount,
                actor="test",
            )
    finally:
        database.dispose()


def _calls() -> list[Call]:
    """N debits on each dataset, interleaved; the shared ones alternate analysts."""
    calls: list[Call] = []
    for i in range(N):
        calls.append(("ana", "solo"))
        calls.append(("ana" if i % 2 == 0 else "bob", "shared"))
    return calls


def _race(
    url: str, calls: list[Call], threads: int, ready: Any = None
) -> list[tuple[str, str, str, int]]:
    """Run ``calls`` from ``threads`` threads released together; return, per call, the
    consumer, dataset, outcome (``Debited``/``Refused``/reason) and remaining units.

    ``ready`` is an optional cross-process barrier passed once every thread is set up.
    """
    database = Database(url)
    start = threading.Barrier(threads)
    results: list[tuple[str, str, str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(mine: list[Call]) -> None:
        try:
            start.wait(timeout=60)
            for consumer, dataset in mine:
                outcome = budgets.spend(
                    database,
                    consumer=consumer,
                    dataset=dataset,
                    model="pure",
                    cost_units=cost_units(COST),
                    details={"race": True},
                )
                label = (
                    type(outcome).__name__
                    if isinstance(outcome, Debited)
                    else f"Refused:{outcome.reason}"
                )
                with lock:
                    results.append((consumer, dataset, label, outcome.remaining_units))
        except BaseException as exc:  # reported to the caller
            with lock:
                errors.append(exc)
            start.abort()

    workers = [threading.Thread(target=run, args=(calls[t::threads],)) for t in range(threads)]
    try:
        if ready is not None:
            ready.wait(timeout=120)
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        assert not any(worker.is_alive() for worker in workers), "a debit hung"
    finally:
        database.dispose()
    if errors:
        raise errors[0]
    return results


def _process(url: str, calls: list[Call], ready: Any, out: Any) -> None:
    """A separate process (a second API worker or replica) racing its share of calls."""
    try:
        out.put(("ok", _race(url, calls, threads=4, ready=ready)))
    except BaseException as exc:
        out.put(("error", repr(exc)))


def _check(url: str, results: list[tuple[str, str, str, int]]) -> None:
    assert len(results) == 2 * N
    solo = Counter(label for _, dataset, label, _ in results if dataset == "solo")
    shared = Counter(label for _, dataset, label, _ in results if dataset == "shared")
    assert solo == {"Debited": K, "Refused:budget": N - K}
    assert shared["Debited"] == K
    assert shared["Refused:dataset_cap"] + shared["Refused:budget"] == N - K
    for consumer in ("ana", "bob"):  # its own budget binds only once it spent all of it
        own = [label for c, dataset, label, _ in results if (c, dataset) == (consumer, "shared")]
        if "Refused:budget" in own:
            assert own.count("Debited") == K
    # Each success saw all the earlier ones: remaining amounts after the debits are
    # exactly 0.9, 0.8, ..., 0 (no two debits read the same state).
    solo_left = sorted(
        left for _, dataset, label, left in results if dataset == "solo" and label == "Debited"
    )
    assert solo_left == [cost_units(COST) * i for i in range(K)]

    database = Database(url)
    try:
        views = {(v.consumer, v.dataset): v for v in budgets.list_budgets(database)}
        assert views["ana", "solo"].spent_units == views["ana", "solo"].total_units
        assert views["ana", "solo"].total_units == total_units(TOTAL)
        shared_debits = Counter(
            c for c, d, label, _ in results if d == "shared" and label == "Debited"
        )
        for consumer in ("ana", "bob"):
            view = views[consumer, "shared"]
            assert view.spent_units == shared_debits[consumer] * cost_units(COST)
            assert view.spent_units <= view.total_units
        with database.read() as session:
            capped = session.exec(select(Dataset).where(Dataset.name == "shared")).one()
            assert capped.cap_spent_units == capped.cap_total_units == total_units(TOTAL)
            kinds = Counter(
                (e.dataset, e.kind) for e in ledger.iterate(session) if e.dataset is not None
            )
            verification = ledger.verify(session)
            entries = ledger.count(session)
    finally:
        database.dispose()
    assert kinds == {
        ("solo", "dataset_registered"): 1,
        ("shared", "dataset_registered"): 1,
        ("solo", "budget_set"): 1,
        ("shared", "budget_set"): 2,
        ("solo", "release"): K,
        ("solo", "refused"): N - K,
        ("shared", "release"): K,
        ("shared", "refused"): N - K,
    }
    assert verification.valid and verification.entries == entries


def test_threads_never_overspend(db_url: str) -> None:
    _prepare(db_url)
    _check(db_url, _race(db_url, _calls(), threads=THREADS))


@pytest.mark.slow  # processes racing on one database
def test_processes_never_overspend(db_url: str) -> None:
    _prepare(db_url)
    calls = _calls()
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(2)
    out = context.Queue()
    # Process p takes every other (solo, shared) pair: all its shared calls are by one
    # analyst, so the two analysts race each other from separate processes.
    shares = [
        [call for i in range(N) if i % 2 == p for call in calls[2 * i : 2 * i + 2]]
        for p in range(2)
    ]
    assert {c for c, d in shares[0] if d == "shared"} == {"ana"}
    assert {c for c, d in shares[1] if d == "shared"} == {"bob"}
    processes = [
        context.Process(target=_process, args=(db_url, share, ready, out)) for share in shares
    ]
    for process in processes:
        process.start()
    results: list[tuple[str, str, str, int]] = []
    try:
        for _ in processes:
            try:
                status, value = out.get(timeout=120)
            except queue.Empty:
                raise AssertionError("a racing process did not report") from None
            assert status == "ok", value
            results += value
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0, 0]
    _check(db_url, results)


def test_debit_refuses_nonpositive_costs_and_unknown_names(db_url: str) -> None:
    _prepare(db_url)
    database = Database(db_url)
    try:
        for bad_cost in (0, -1):
            with pytest.raises(InvalidInput):
                budgets.spend(
                    database,
                    consumer="ana",
                    dataset="solo",
                    model="pure",
                    cost_units=bad_cost,
                    details={},
                )
        for consumer, dataset, model in (
            ("nobody", "solo", "pure"),
            ("ana", "nothing", "pure"),
            ("bob", "solo", "pure"),
            ("ana", "solo", "zcdp"),
        ):
            with pytest.raises((NotFound, InvalidInput)):
                budgets.spend(
                    database,
                    consumer=consumer,
                    dataset=dataset,
                    model=model,
                    cost_units=1,
                    details={},
                )
        with database.read() as session:
            assert {e.kind for e in ledger.iterate(session)} == {
                "consumer_created",
                "key_issued",
                "dataset_registered",
                "budget_set",
            }
        refused = budgets.spend(
            database,
            consumer="ana",
            dataset="solo",
            model="pure",
            cost_units=total_units(TOTAL) + 1,
            details={},
        )
        assert isinstance(refused, Refused) and refused.remaining_units == total_units(TOTAL)
        exact = budgets.spend(
            database,
            consumer="ana",
            dataset="solo",
            model="pure",
            cost_units=total_units(TOTAL),
            details={},
        )
        assert isinstance(exact, Debited) and exact.remaining_units == 0
    finally:
        database.dispose()
