"""Budgets per period in the database: each period's spending is checked and updated in
the debit's transaction by a conditional INSERT (the first charge) or UPDATE, so however
many debits race, no period passes its total and the dataset cap still binds over all
periods together; a total is never set below what a period spent."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from db import accounts, budgets, catalog, ledger, reconcile
from db.amounts import cost_units, total_units
from db.budgets import Debited, Refused
from db.engine import Database
from db.errors import InvalidChange, InvalidInput
from db.migrate import upgrade
from db.models import BudgetPeriod, Dataset

COST = Decimal("0.1")
TOTAL = Decimal("1.0")  # per period: K debits of COST
K = 10
PER_PERIOD = 30  # racing debits per period
THREADS = 16
MONTHS = ("2026-03-01", "2026-04-01", "2026-05-01")
CAP = Decimal("2.5")  # "capped": 25 debits over all its periods together


def _prepare(url: str) -> Database:
    database = Database(url)
    upgrade(database)
    accounts.create_consumer(database, name="ana", role="analyst", actor="test")
    catalog.register(database, metadata={"name": "monthly"}, actor="test")
    catalog.register(
        database,
        metadata={"name": "capped", "budget_cap": {"model": "pure", "epsilon": float(CAP)}},
        actor="test",
    )
    for dataset in ("monthly", "capped"):
        budgets.set_budget(
            database,
            consumer="ana",
            dataset=dataset,
            model="pure",
            amount=TOTAL,
            actor="test",
            period=("day", "month"),
        )
    return database


def _spend(database: Database, dataset: str, start: str | None, amount: Decimal = COST):
    return budgets.spend(
        database,
        consumer="ana",
        dataset=dataset,
        model="pure",
        cost_units=cost_units(amount),
        details={"test": True},
        period_start=start,
    )


def _race(database: Database, calls: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    barrier = threading.Barrier(THREADS)
    results: list[tuple[str, str, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(mine: list[tuple[str, str]]) -> None:
        try:
            barrier.wait(timeout=60)
            for dataset, start in mine:
                outcome = _spend(database, dataset, start)
                label = "Debited" if isinstance(outcome, Debited) else outcome.reason
                with lock:
                    results.append((dataset, start, label))
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=run, args=(calls[t::THREADS],)) for t in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    assert not any(worker.is_alive() for worker in workers), "a debit hung"
    if errors:
        raise errors[0]
    return results


def test_threads_never_overspend_a_period(db_url: str) -> None:
    database = _prepare(db_url)
    try:
        calls = [(d, m) for _ in range(PER_PERIOD) for m in MONTHS for d in ("monthly", "capped")]
        results = _race(database, calls)
        assert len(results) == len(calls)
        monthly = Counter((m, label) for d, m, label in results if d == "monthly")
        for month in MONTHS:  # no cap: each period exactly fills its own total
            assert monthly[month, "Debited"] == K
            assert monthly[month, "budget"] == PER_PERIOD - K
        capped = Counter(label for d, _, label in results if d == "capped")
        assert capped["Debited"] == 25  # the cap binds over all periods together
        per_month = Counter(m for d, m, label in results if d == "capped" and label == "Debited")
        assert all(per_month[m] <= K for m in MONTHS)

        views = {v.dataset: v for v in budgets.list_budgets(database, consumer="ana")}
        month_view = views["monthly"]
        assert [(p.start, p.spent_units) for p in month_view.periods] == [
            (m, total_units(TOTAL)) for m in MONTHS
        ]
        assert month_view.spent_units == total_units(TOTAL)  # the most any period spent
        assert month_view.cumulative_units == 3 * total_units(TOTAL)
        capped_view = views["capped"]
        assert capped_view.cumulative_units == total_units(CAP)
        assert capped_view.spent_units == max(p.spent_units for p in capped_view.periods)
        with database.read() as session:
            cap = session.exec(select(Dataset).where(Dataset.name == "capped")).one()
            assert cap.cap_spent_units == cap.cap_total_units == total_units(CAP)
            rows = session.exec(select(BudgetPeriod)).all()
            assert all(r.spent_units <= total_units(TOTAL) for r in rows)
            kinds = Counter(e.kind for e in ledger.iterate(session) if e.dataset == "monthly")
            assert ledger.verify(session).valid
        assert kinds["release"] == 3 * K and kinds["refused"] == 3 * (PER_PERIOD - K)
        chain, found = reconcile.verify(database)  # each period's row matches its entries
        assert chain.valid and found.reconciled, found.discrepancies
    finally:
        database.dispose()


def test_a_total_never_goes_below_what_a_period_spent(db_url: str) -> None:
    database = _prepare(db_url)
    try:
        assert isinstance(_spend(database, "monthly", "2026-03-01", Decimal("0.6")), Debited)
        assert isinstance(_spend(database, "monthly", "2026-04-01", Decimal("0.2")), Debited)

        def set_to(amount: str, period: tuple[str, str] | None = ("day", "month")) -> None:
            budgets.set_budget(
                database,
                consumer="ana",
                dataset="monthly",
                model="pure",
                amount=Decimal(amount),
                actor="test",
                period=period,
            )

        with pytest.raises(InvalidChange, match="below what a period already spent"):
            set_to("0.5")  # March spent 0.6 (April's 0.2 alone would allow it)
        set_to("0.6")
        refused = _spend(database, "monthly", "2026-03-01", Decimal("0.000001"))
        assert isinstance(refused, Refused) and refused.remaining_units == 0
        assert refused.period_start == "2026-03-01"
        april = _spend(database, "monthly", "2026-04-01", Decimal("0.4"))
        assert isinstance(april, Debited) and april.remaining_units == 0
        assert april.cumulative_units == total_units(Decimal("1.2"))
        with pytest.raises(InvalidChange, match="period cannot change"):
            set_to("5", ("day", "week"))
        with pytest.raises(InvalidChange, match="period cannot change"):
            set_to("5", None)
        with pytest.raises(InvalidInput, match="per period"):
            _spend(database, "monthly", None)
        chain, found = reconcile.verify(database)
        assert chain.valid and found.reconciled, found.discrepancies
        with database.write() as session:  # an insider resets March: reconciling sees it
            session.execute(
                update(BudgetPeriod)
                .where(col(BudgetPeriod.period_start) == "2026-03-01")
                .values(spent_units=0)
            )
        _, found = reconcile.verify(database)
        assert [d["kind"] for d in found.discrepancies] == ["budget_period"]
        assert found.discrepancies[0]["period_start"] == "2026-03-01"
    finally:
        database.dispose()
