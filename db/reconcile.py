"""Reconciling the stored amounts and releases with the ledger.

The hash chain proves that the ledger was not changed; it says nothing about
the tables the service acts on. An insider who resets ``budgets.spent_units``,
raises a cap or deletes a release row breaks no hash. :class:`Reconciler` checks,
in one snapshot and in one streamed pass over the ledger (plus batched reads of
the tables), that:

- per budget, ``spent_units`` equals the sum of the costs of the ``release``
  entries of that consumer and dataset, and ``total_units`` the amount of its
  last ``budget_set`` entry (``budget``, ``budget_total``);
- per budget per period, each ``budget_periods`` row equals the sum of the costs of
  the ``release`` entries charged in that period (their ``details.period.start``),
  and ``spent_units`` the largest of those sums (``budget_period``, ``budget``);
- per dataset with a cap, ``cap_spent_units`` equals the sum of the costs of all
  its ``release`` entries (and those of the datasets sharing its cap, over the same
  file), and ``cap_total_units`` the cap of its last
  ``dataset_registered`` entry (``cap``, ``cap_total``);
- every stored release row has its ``release`` entry (same id, at its
  ``ledger_seq``) and, when done, a ``release_output`` entry with status ``done``
  (``release``, ``release_output``); every ``release`` entry has its row unless a
  ``release_output`` failed it (a failed release is replaced by the next attempt),
  and every done ``release_output`` a done row (``release_missing``).

Costs in the ledger are JSON numbers (the shortest float of the exact amount,
:func:`db.amounts.as_json_number`); each is read as a Decimal from its text and
converted to the nearest integer unit, which is exact for every amount of up to
15 significant digits. Memory: a counter per budget and dataset, 8 bytes per done
release, and the ids of failed-and-replaced releases; never the whole ledger.
"""

from __future__ import annotations

import bisect
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from db import dataset_versions, ledger
from db.amounts import UNITS_PER_ONE, as_json_number, total_units
from db.engine import Database
from db.models import Budget, BudgetPeriod, Consumer, Dataset, LedgerEntry, Release

MAX_DISCREPANCIES = 100
"""At most this many discrepancies are listed (all are counted)."""
_BATCH = 1000


def ledgered_units(amount: Any) -> int:
    """The integer units a ledgered amount (a JSON number read as Decimal) stands for."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return int((value * UNITS_PER_ONE).to_integral_value(rounding=ROUND_HALF_EVEN))


def _amount(document: dict[str, Any] | None) -> Decimal | None:
    if not document:
        return None
    value = document.get("epsilon", document.get("rho"))
    return value if isinstance(value, Decimal) else None


def _decimal_json(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


@dataclass
class Reconciliation:
    """What disagrees between the tables and the ledger (empty: they reconcile)."""

    discrepancies: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    @property
    def reconciled(self) -> bool:
        """Whether nothing disagrees."""
        return self.total == 0

    def add(self, kind: str, detail: str, **fields: Any) -> None:
        """Count a discrepancy; list it while fewer than :data:`MAX_DISCREPANCIES` are."""
        self.total += 1
        if len(self.discrepancies) < MAX_DISCREPANCIES:
            self.discrepancies.append({"kind": kind, "detail": detail, **fields})


class _Row(NamedTuple):
    """The columns of a release row that reconciling needs (never its body)."""

    id: str
    status: str
    ledger_seq: int


class _Entry(NamedTuple):
    seq: int
    kind: str
    details_json: str
    consumer: str | None
    dataset: str | None


@dataclass
class _Pending:
    kind: str  # "release", "done", "failed"
    release_id: str
    seq: int  # the release entry's seq (release_seq of an output)
    consumer: str | None
    dataset: str | None


class Reconciler:
    """Feed it every ledger entry in order (:meth:`visit`), then :meth:`finish`."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._spent: dict[tuple[str | None, str | None], int] = {}
        self._period_spent: dict[tuple[str | None, str | None], dict[str, int]] = {}
        self._cap_spent: dict[str | None, int] = {}
        self._budget_total: dict[tuple[str | None, str | None], Any] = {}
        self._cap_total: dict[str | None, Any] = {}
        self._done_seqs = array("q")
        self._pending: list[_Pending] = []
        self._unmatched: dict[int, _Pending] = {}  # release entries without a row yet
        self.result = Reconciliation()

    def visit(self, entry: LedgerEntry, document: dict[str, Any] | None = None) -> None:
        """Account one entry (entries must come in ``seq`` order); ``document`` is its
        :func:`db.ledger.entry_document` when the caller has it already."""
        kind = entry.kind
        if kind not in ("release", "release_output", "budget_set", "dataset_registered"):
            return
        details = document["details"] if document is not None else json.loads(entry.details_json)
        if kind == "release":
            cost = _decimal_json(entry.cost_json) if entry.cost_json else None
            units = ledgered_units(_amount(cost) or 0)
            key = (entry.consumer, entry.dataset)
            self._spent[key] = self._spent.get(key, 0) + units
            period = details.get("period")
            if isinstance(period, dict) and isinstance(period.get("start"), str):
                periods = self._period_spent.setdefault(key, {})
                periods[period["start"]] = periods.get(period["start"], 0) + units
            self._cap_spent[entry.dataset] = self._cap_spent.get(entry.dataset, 0) + units
            if "release_id" in details:  # a debit of a release (not a bare budget debit)
                self._queue(
                    _Pending(
                        "release",
                        str(details["release_id"]),
                        entry.seq,
                        entry.consumer,
                        entry.dataset,
                    )
                )
        elif kind == "release_output":
            status = "done" if details.get("status") == "done" else "failed"
            seq = int(details.get("release_seq") or 0)
            if status == "done":
                self._done_seqs.append(seq)
            self._queue(
                _Pending(status, str(details.get("release_id")), seq, entry.consumer, entry.dataset)
            )
        elif kind == "budget_set":  # amounts exactly as written: Decimal, not float
            budget = details.get("budget")
            self._budget_total[(entry.consumer, entry.dataset)] = (
                _decimal_json(json.dumps(budget)) if budget is not None else None
            )
        else:  # dataset_registered
            cap = (details.get("metadata") or {}).get("budget_cap")
            self._cap_total[entry.dataset] = (
                _decimal_json(json.dumps(cap)) if cap is not None else None
            )

    def _queue(self, item: _Pending) -> None:
        self._pending.append(item)
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        items, self._pending = self._pending, []
        if not items:
            return
        ids = {item.release_id for item in items}
        rows = {
            r.id: r
            for r in map(
                _Row._make,
                self._session.exec(  # not the bodies
                    select(Release.id, Release.status, Release.ledger_seq).where(
                        col(Release.id).in_(ids)
                    )
                ).all(),
            )
        }
        for item in items:
            row = rows.get(item.release_id)
            if item.kind == "release":
                if row is None:
                    self._unmatched[item.seq] = item  # fine if a failure follows
                elif row.ledger_seq != item.seq:
                    self.result.add(
                        "release",
                        "the release row points at another ledger entry",
                        release_id=item.release_id,
                        consumer=item.consumer,
                        dataset=item.dataset,
                    )
            elif item.kind == "failed":
                self._unmatched.pop(item.seq, None)
            elif row is None or row.status != "done" or row.ledger_seq != item.seq:
                self.result.add(
                    "release_missing",
                    "a done release_output has no done release row",
                    release_id=item.release_id,
                    consumer=item.consumer,
                    dataset=item.dataset,
                )
                self._unmatched.pop(item.seq, None)

    def finish(self) -> Reconciliation:
        """Compare the tables with what the ledger accounted; the discrepancies."""
        self._flush()
        for item in self._unmatched.values():
            self.result.add(
                "release_missing",
                "a release entry has no release row and was not failed",
                release_id=item.release_id,
                consumer=item.consumer,
                dataset=item.dataset,
            )
        self._check_budgets()
        self._check_caps()
        self._check_release_rows()
        return self.result

    def _check_budgets(self) -> None:
        seen: set[tuple[str | None, str | None]] = set()
        for budget, consumer, dataset in _batched(
            self._session,
            select(Budget, Consumer.name, Dataset.name)
            .join(Consumer, col(Consumer.id) == col(Budget.consumer_id))
            .join(Dataset, col(Dataset.id) == col(Budget.dataset_id)),
            col(Budget.id),
        ):
            key = (consumer, dataset)
            seen.add(key)
            ledgered = self._spent.get(key, 0)
            if budget.period_every is not None:
                ledgered = self._check_periods(budget, key)
            if budget.spent_units != ledgered:
                self.result.add(
                    "budget",
                    "spent differs from the sum of the ledgered release costs",
                    consumer=consumer,
                    dataset=dataset,
                    spent=as_json_number(budget.spent_units),
                    ledgered=as_json_number(ledgered),
                )
            granted = self._budget_total.get(key)
            amount = _amount(granted)
            # The entry shows the total as as_json_number(units): compare in that form.
            if amount is None or as_json_number(budget.total_units) != float(amount):
                self.result.add(
                    "budget_total",
                    "the total differs from the last ledgered budget_set",
                    consumer=consumer,
                    dataset=dataset,
                    total=as_json_number(budget.total_units),
                    ledgered=None if amount is None else float(amount),
                )
        for (consumer, dataset), units in self._spent.items():
            if (consumer, dataset) not in seen and units:
                self.result.add(
                    "budget",
                    "ledgered releases have no budget",
                    consumer=consumer,
                    dataset=dataset,
                    spent=None,
                    ledgered=as_json_number(units),
                )

    def _check_periods(self, budget: Budget, key: tuple[str | None, str | None]) -> int:
        """Compare a budget per period's rows with the ledger; the spent_units it should
        hold (the most any period spent, as ledgered)."""
        consumer, dataset = key
        ledgered = self._period_spent.get(key, {})
        if sum(ledgered.values()) != self._spent.get(key, 0):
            self.result.add(
                "budget_period",
                "a ledgered release of a budget per period names no period",
                consumer=consumer,
                dataset=dataset,
            )
        rows = {
            r.period_start: r.spent_units
            for r in self._session.exec(
                select(BudgetPeriod).where(BudgetPeriod.budget_id == budget.id)
            ).all()
        }
        for start in sorted(set(rows) | set(ledgered)):
            if rows.get(start, 0) != ledgered.get(start, 0):
                self.result.add(
                    "budget_period",
                    "a period's spent differs from the sum of its ledgered release costs",
                    consumer=consumer,
                    dataset=dataset,
                    period_start=start,
                    spent=as_json_number(rows.get(start, 0)),
                    ledgered=as_json_number(ledgered.get(start, 0)),
                )
        return max(ledgered.values(), default=0)

    def _check_caps(self) -> None:
        # Datasets over one file share the cap held by the first one's row: its spent
        # sums the releases of the whole group; the others hold no cap of their own.
        group: dict[int, list[str]] = {}
        for (dataset,) in _batched(self._session, select(Dataset), col(Dataset.id), scalar=True):
            holder = dataset_versions.holder_id(dataset)
            group.setdefault(holder or 0, []).append(dataset.name)
        for (dataset,) in _batched(self._session, select(Dataset), col(Dataset.id), scalar=True):
            if dataset.cap_dataset_id is not None:
                continue
            name = dataset.name
            declared = _amount(self._cap_total.get(name))
            if dataset.cap_total_units is None:
                if declared is not None:
                    self.result.add(
                        "cap_total",
                        "the ledgered cap was removed",
                        dataset=name,
                        total=None,
                        ledgered=float(declared),
                    )
                continue
            ledgered = sum(self._cap_spent.get(n, 0) for n in group.get(dataset.id or 0, [name]))
            if dataset.cap_spent_units != ledgered:
                self.result.add(
                    "cap",
                    "cap spent differs from the sum of the ledgered release costs",
                    dataset=name,
                    spent=as_json_number(dataset.cap_spent_units),
                    ledgered=as_json_number(ledgered),
                )
            # Registration rounds the declared cap down to whole units, as here.
            if declared is None or dataset.cap_total_units != _cap_units(declared):
                self.result.add(
                    "cap_total",
                    "the cap differs from the ledgered registration",
                    dataset=name,
                    total=as_json_number(dataset.cap_total_units),
                    ledgered=None if declared is None else float(declared),
                )

    def _check_release_rows(self) -> None:
        self._done_seqs = array("q", sorted(self._done_seqs))
        last = ""
        while True:
            rows = list(
                map(
                    _Row._make,
                    self._session.exec(
                        select(Release.id, Release.status, Release.ledger_seq)
                        .where(col(Release.id) > last)
                        .order_by(col(Release.id))
                        .limit(_BATCH)
                    ).all(),
                )
            )
            if not rows:
                return
            last = rows[-1].id
            entries = {
                e.seq: e
                for e in map(
                    _Entry._make,
                    self._session.execute(
                        sa_select(
                            col(LedgerEntry.seq),
                            col(LedgerEntry.kind),
                            col(LedgerEntry.details_json),
                            col(LedgerEntry.consumer),
                            col(LedgerEntry.dataset),
                        ).where(col(LedgerEntry.seq).in_([r.ledger_seq for r in rows]))
                    ).all(),
                )
            }
            for row in rows:
                entry = entries.get(row.ledger_seq)
                # Canonical JSON: the release's id appears exactly so in its entry.
                if (
                    entry is None
                    or entry.kind != "release"
                    or f'"release_id":{json.dumps(row.id)}' not in entry.details_json
                ):
                    self.result.add(
                        "release", "a release row has no release entry", release_id=row.id
                    )
                elif row.status == "done" and not self._has_done(row.ledger_seq):
                    self.result.add(
                        "release_output",
                        "a done release has no done release_output entry",
                        release_id=row.id,
                        consumer=entry.consumer,
                        dataset=entry.dataset,
                    )

    def _has_done(self, seq: int) -> bool:
        index = bisect.bisect_left(self._done_seqs, seq)
        return index < len(self._done_seqs) and self._done_seqs[index] == seq


def _cap_units(declared: Decimal) -> int | None:
    try:
        return total_units(declared)
    except ValueError:  # not an amount registration could have accepted
        return None


def _batched(session: Session, query: Any, key: Any, *, scalar: bool = False) -> Iterator[Any]:
    """The rows of ``query`` in batches by the integer ``key`` (ascending)."""
    last = 0
    while True:
        rows = list(session.exec(query.where(key > last).order_by(key).limit(_BATCH)).all())
        if not rows:
            return
        for row in rows:
            yield (row,) if scalar else row
        first = rows[-1] if scalar else rows[-1][0]
        last = int(first.id)


def verify(db: Database) -> tuple[ledger.Verification, Reconciliation]:
    """The chain verified and the tables reconciled with it, in one snapshot; the ledger
    is read once when the chain holds (twice when it breaks, to reconcile all of it)."""
    with db.snapshot() as session:
        reconciler = Reconciler(session)
        chain = ledger.verify(session, visit=reconciler.visit)
        found = reconciler.finish() if chain.valid else reconcile(session)
    return chain, found


def reconcile(session: Session) -> Reconciliation:
    """Stream the whole ledger through a :class:`Reconciler` (in the caller's snapshot)."""
    reconciler = Reconciler(session)
    for entry in ledger.iterate(session, batch=2000):
        reconciler.visit(entry)
    return reconciler.finish()
