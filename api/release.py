"""The release use-case: validate → cost → debit (committed) → read data → release.

This is the only place that composes :mod:`privacy` (what a query costs and
how it is computed) with :mod:`db` (who may spend what, and the ledger). The
order is the privacy filter's contract: the cost is computed from public
metadata, debited atomically with its ledger entry, and only then is the data
file opened. Refusals are ledgered with cost 0; a failure after the debit is
not refunded. Statuses and messages depend only on public metadata and the
budget, never on the data.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from pathlib import Path
from typing import cast

from api import completion, dataset_files, spark_files
from api.ledger_key import LogSigner
from api.limits import QueryGuard, query_cells
from api.problems import BudgetExceeded, ReleaseBusy, ReleaseFailed
from api.release_body import (
    ChargedPeriod,
    Cumulative,
    PlannedRelease,
    QueryPreview,
    QueryResponse,
    QuerySummary,
)
from api.release_timing import after_debit, quantised
from api.services import transparency
from api.settings import Settings
from db import budgets, catalog, dataset_versions, ledger, releases
from db.accounts import Principal
from db.amounts import cost_units, from_units
from db.budgets import Refused
from db.engine import Database
from db.errors import DbError
from db.models import Budget, Dataset
from privacy import Plan, QueryRequest, execute, load_frame, plan_query
from privacy.amount import PrivacyAmount, PrivacyModel
from privacy.metadata import DatasetMetadata
from privacy.periods import PeriodSpec, query_period
from privacy.query import resolve_query
from privacy.results import ReleaseResult
from privacy.spark_engine import execute_on_spark

log = logging.getLogger("ruis.release")
_MAX_WAITS = 3
"""How many times one request waits for an identical query that another is computing."""
_METADATA_CACHE: dict[tuple[int, str], DatasetMetadata] = {}
_METADATA_CACHE_LOCK = threading.Lock()


def _metadata(dataset: Dataset) -> DatasetMetadata:
    """The validated public metadata of ``dataset`` (validated once per stored version)."""
    key = (dataset.id or 0, hashlib.sha256(dataset.metadata_json.encode()).hexdigest())
    with _METADATA_CACHE_LOCK:
        cached = _METADATA_CACHE.get(key)
    if cached is None:
        cached = DatasetMetadata.model_validate(catalog.metadata_of(dataset))
        with _METADATA_CACHE_LOCK:
            if len(_METADATA_CACHE) > 256:
                _METADATA_CACHE.clear()
            _METADATA_CACHE[key] = cached
    return cached


def _context(
    db: Database, principal: Principal, dataset_name: str
) -> tuple[Dataset, DatasetMetadata, PrivacyModel, PrivacyAmount]:
    dataset, _, metadata, model, remaining = _context_budget(db, principal, dataset_name)
    return dataset, metadata, model, remaining


def _context_budget(
    db: Database, principal: Principal, dataset_name: str
) -> tuple[Dataset, Budget, DatasetMetadata, PrivacyModel, PrivacyAmount]:
    dataset, budget = budgets.dataset_and_budget(
        db, dataset=dataset_name, consumer_id=principal.consumer_id
    )
    model = cast(PrivacyModel, budget.model)
    remaining = _of_units(model, budget.total_units - budget.spent_units)
    return dataset, budget, _metadata(dataset), model, remaining


def charged_period(
    budget: Budget, metadata: DatasetMetadata, query: QueryRequest
) -> ChargedPeriod | None:
    """With a budget per period, the one period ``query`` is charged in (decided from its
    filters and public metadata; a 422 when they do not confine it to one period)."""
    if budget.period_column is None or budget.period_every is None:
        return None
    spec = PeriodSpec.model_validate({"column": budget.period_column, "every": budget.period_every})
    resolved = resolve_query(query, metadata)
    return ChargedPeriod.of(spec, query_period(resolved.filters, spec, metadata))


def _cumulative(model: str, units: int | None, metadata: DatasetMetadata) -> Cumulative | None:
    return None if units is None else Cumulative.of(_of_units(model, units), metadata.delta)


def _of_units(model: str, units: int) -> PrivacyAmount:
    """An amount that ``db`` keeps in integer units."""
    return PrivacyAmount.of(model, from_units(units))


def cells_of(db: Database, principal: Principal, query: QueryRequest) -> int | None:
    """How many cells (key combinations) ``query`` has, from public metadata; None when the
    dataset is not visible to ``principal`` (the release path then says why)."""
    try:
        _, metadata, _, _ = _context(db, principal, query.dataset)
    except DbError:
        return None
    return query_cells(query, metadata)


def query_hash(plan: Plan, file_sha256: str | None = None, dataset_version: int = 1) -> str:
    """The cache key: the canonical query, the privacy model, the exact cost, the
    SHA-256 of the file's contents (an answer is never served for other contents) and,
    from version 2 on, the dataset version (an answer is served only for its version;
    version 1's keys are those of the releases made before versions existed)."""
    key: dict[str, object] = {"query": plan.canonical, "model": plan.model, "cost": str(plan.cost)}
    if file_sha256 is not None:
        key["file_sha256"] = file_sha256
    if dataset_version != 1:
        key["dataset_version"] = dataset_version
    return hashlib.sha256(ledger.canonical_json(key).encode()).hexdigest()


def preview(
    db: Database, principal: Principal, query: QueryRequest, guard: QueryGuard | None = None
) -> QueryPreview:
    """What the query would cost and how accurate it would be; reads no data, spends nothing.

    It makes every check the query would make before its debit, from public metadata and
    the budget: ``fits_budget`` is false when the cost exceeds what remains of the budget
    or under the dataset's cap.

    ``guard`` (:mod:`api.limits`) refuses too many cells or a too small cost first."""
    dataset, budget, metadata, model, remaining = _context_budget(db, principal, query.dataset)
    dataset_files.require_active(dataset)  # suspended: 503, as a query would be
    if guard is not None:
        guard.before_plan(query, metadata)
    period = charged_period(budget, metadata, query)
    cumulative = None
    if period is not None:
        now = budgets.standing(
            db,
            consumer_id=principal.consumer_id,
            dataset_id=dataset.id or 0,
            period_start=period.start,
        )
        remaining = _of_units(model, now.remaining_units)
        cumulative = _cumulative(model, now.cumulative_units, metadata)
    plan = plan_query(query, metadata, model)
    if guard is not None:
        guard.after_plan(plan)
    holder, _ = dataset_versions.cap_view(db, dataset)  # the cap of the file, maybe shared
    cap_remaining = (
        None
        if holder.cap_total_units is None
        else _of_units(model, holder.cap_total_units - holder.cap_spent_units)
    )
    planned = PlannedRelease.of(plan, query.dataset).in_period(period)
    return planned.preview(remaining, cap_remaining, cumulative)


def _refusal(
    outcome: Refused, cost: PrivacyAmount, dataset: str, period: ChargedPeriod | None = None
) -> BudgetExceeded:
    """The 409: what the query asked, and what remains of the budget (and of the cap);
    with a budget per period, of the period the query falls in."""
    remaining = _of_units(cost.model, outcome.remaining_units)
    if period is not None and outcome.reason != "dataset_cap":
        return BudgetExceeded(
            f"this query costs {cost.number()} {cost.unit}, more than the "
            f"{remaining.number()} {cost.unit} that remain of your budget on {dataset!r} "
            f"for the {period.every} {period.period} ({period.start} to {period.end})",
            asked=cost.unit_document(),
            remaining={**remaining.unit_document(), "period": period.period},
        )
    asked, unit = cost.number(), cost.unit
    if outcome.reason == "dataset_cap":
        cap = _of_units(cost.model, outcome.cap_remaining_units or 0)
        return BudgetExceeded(
            f"this query costs {asked} {unit}, more than the {cap.number()} {unit} "
            f"left under the cap of the dataset {dataset!r}",
            asked=cost.unit_document(),
            remaining={**remaining.unit_document(), "dataset_cap": cap.unit_document()},
        )
    return BudgetExceeded(
        f"this query costs {asked} {unit}, more than the {remaining.number()} {unit} that "
        f"remain of your budget on {dataset!r}",
        asked=cost.unit_document(),
        remaining=remaining.unit_document(),
    )


def _computed(
    plan: Plan, metadata: DatasetMetadata, checked: dataset_files.CheckedFile, data_dir: Path
) -> ReleaseResult:
    """The release of ``plan`` on the checked file, by the dataset's engine: Polars on the
    file (streamed), or Spark on exactly the listed files (:mod:`privacy.spark_engine`:
    the same exact aggregate, OpenDP's noise at the same scale)."""
    if checked.path is not None:
        return execute(plan, load_frame(checked.path, metadata))
    return execute_on_spark(plan, spark_files.frame(data_dir, checked.fingerprint["files"]))


@quantised  # once debited, the answer (or error) leaves at a multiple of the quantum
def run(
    db: Database,
    settings: Settings,
    principal: Principal,
    query: QueryRequest,
    request_id: str,
    guard: QueryGuard | None = None,
    log_signer: LogSigner | None = None,
) -> QueryResponse:
    """Answer ``query`` for ``principal``: cached, refused (409) or debited then computed.

    ``guard`` (:mod:`api.limits`) refuses too many cells or a too small cost before the
    debit; with ``log_signer`` the answer carries its receipt (:func:`with_receipt`)."""
    dataset, budget, metadata, model, _ = _context_budget(db, principal, query.dataset)
    if guard is not None:
        guard.before_plan(query, metadata)
    period = charged_period(budget, metadata, query)  # a 422 before anything is spent
    plan = plan_query(query, metadata, model)
    if guard is not None:
        guard.after_plan(plan)
    planned = PlannedRelease.of(plan, dataset.name).in_period(period)
    units = cost_units(plan.cost)
    checked = dataset_files.check_before_release(  # file metadata only; 503 before any debit
        db,
        settings.data_dir,
        dataset,
        metadata,
        consumer=principal.name,
        model=model,
        cost_units=units,
        query=plan.canonical,
        request_id=request_id,
    )
    # the contents this release is computed on; with automatic bounds, the split and the
    # candidates: all ledgered before any data is read
    details = {**planned.ledger_details(checked.sha256), "dataset_version": dataset.version}
    start = functools.partial(
        releases.start,
        db,
        consumer_id=principal.consumer_id,
        consumer=principal.name,
        dataset_id=dataset.id or 0,
        dataset=dataset.name,
        query_hash=query_hash(plan, checked.sha256, dataset.version),
        model=model,
        cost_units=units,
        details=details,
        request_id=request_id,
        period_start=period.start if period is not None else None,
    )
    outcome = start()
    for _ in range(_MAX_WAITS):
        if not isinstance(outcome, releases.InFlight):
            break
        finished = releases.wait_for(db, outcome.release_id)
        if finished is None or finished.status == "failed":
            raise ReleaseBusy(
                "an identical query is still being computed or did not finish; ask again shortly"
            )
        # Done (served from the cache now), or abandoned by a dead process (failed now,
        # and this request starts a new release).
        outcome = start()
    if isinstance(outcome, releases.InFlight):
        raise ReleaseBusy("an identical query is still being computed; ask again shortly")
    if isinstance(outcome, Refused):
        raise _refusal(outcome, planned.cost, dataset.name, period)
    if isinstance(outcome, releases.Cached):
        stored = QueryResponse.stored(outcome.body)
        again = stored.answered_again(
            _of_units(model, outcome.remaining_units),
            _cumulative(model, outcome.cumulative_units, metadata),
        )
        return with_receipt(db, log_signer, again)
    # Debited and committed: only now is the data read (the lease is renewed meanwhile,
    # so that only a dead process's release is ever taken for abandoned). From here on
    # every failure carries the release id and is ledgered (api/completion.py).
    after_debit(settings.release_time_quantum_ms)
    try:
        with releases.keep_alive(db, outcome.release_id):
            result = _computed(plan, metadata, checked, settings.data_dir)
            dataset_files.check_after_release(
                db, settings.data_dir, dataset, metadata, checked, request_id
            )
        response = planned.released(
            result,
            release_id=outcome.release_id,
            ledger_seq=outcome.debit.entry.seq,
            remaining=_of_units(model, outcome.debit.remaining_units),
            cumulative=_cumulative(model, outcome.debit.cumulative_units, metadata),
        )
        response.dataset_version = dataset.version
    except Exception as exc:
        log.error("release %s failed after its debit", outcome.release_id, exc_info=exc)
        completion.fail(
            db,
            release_id=outcome.release_id,
            consumer=principal.name,
            dataset=dataset.name,
            reason=type(exc).__name__,
            request_id=request_id,
        )
        raise ReleaseFailed.of(outcome.release_id) from None
    completion.store(
        db, release=response, consumer=principal.name, dataset=dataset.name, request_id=request_id
    )
    return with_receipt(db, log_signer, response)


def with_receipt(
    db: Database, log_signer: LogSigner | None, response: QueryResponse
) -> QueryResponse:
    """``response`` with the receipt of its ledger entry in the signed tree as it is now.

    Made after the release is stored: a failure here (the database gone away) must not
    lose values already paid for, so it is logged and the answer leaves without one
    (the client warns of a missing receipt, and a re-read brings one)."""
    if log_signer is None:
        return response
    try:
        receipt = transparency.receipt(db, log_signer, response.ledger_seq)
    except Exception as exc:
        log.error("no receipt for release %s", response.id, exc_info=exc)
        return response
    return response.model_copy(update={"receipt": receipt})


def reread(
    db: Database,
    principal: Principal,
    release_id: str,
    request_id: str,
    log_signer: LogSigner | None = None,
) -> QueryResponse:
    """A stored release of this consumer, at no cost (ledgered as a re-read), with its
    receipt when ``log_signer`` is given."""
    release = releases.get(db, release_id, consumer_id=principal.consumer_id)
    stored = QueryResponse.stored(release.body_json or "{}")
    releases.reread(
        db,
        release,
        consumer=principal.name,
        dataset=stored.dataset,
        model=stored.cost.model,
        request_id=request_id,
    )
    now = budgets.standing(
        db,
        consumer_id=principal.consumer_id,
        dataset_id=release.dataset_id,
        period_start=stored.period.start if stored.period is not None else None,
    )
    cumulative = None
    if now.cumulative_units is not None:
        _, metadata, _, _ = _context(db, principal, stored.dataset)
        cumulative = _cumulative(stored.cost.model, now.cumulative_units, metadata)
    again = stored.answered_again(_of_units(stored.cost.model, now.remaining_units), cumulative)
    return with_receipt(db, log_signer, again)


def list_releases(
    db: Database, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[QuerySummary], str | None]:
    """This consumer's releases, newest first, without their values (so no re-read)."""
    rows, next_id = releases.page(db, consumer_id=principal.consumer_id, after=after, limit=limit)
    return [QuerySummary.stored(r.body_json) for r in rows], next_id
