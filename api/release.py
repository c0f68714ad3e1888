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

import hashlib
import json
import logging
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from api import completion, dataset_files
from api.completion import ReleaseFailed
from api.limits import QueryGuard, query_cells
from api.problems import ApiError, BudgetExceeded
from api.release_timing import after_debit, quantised
from api.schemas import QueryPreview, QueryResponse, QuerySummary
from api.settings import Settings
from db import budgets, catalog, ledger, releases
from db.accounts import Principal
from db.amounts import as_json_number, cost_units, from_units
from db.budgets import MODEL_UNITS, Refused
from db.engine import Database
from db.errors import DbError
from db.models import Dataset
from privacy import (
    Accuracy,
    Plan,
    QueryRequest,
    ReleaseResult,
    execute,
    load_frame,
    plan_query,
)
from privacy.accounting import zcdp_to_epsilon_delta
from privacy.metadata import DatasetMetadata
from privacy.query import PrivacyModel

log = logging.getLogger("ruis.release")
_MAX_WAITS = 3
"""How many times one request waits for an identical query that another is computing."""


class ReleaseBusy(ApiError):
    """The same query is still being computed by an earlier request."""

    status, type, title = 503, "release-in-progress", "Release in progress"


def _amount(model: str, amount: Decimal | float) -> dict[str, Any]:
    return {MODEL_UNITS[model]: as_json_number(cost_units(Decimal(str(amount))))}


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
) -> tuple[Dataset, DatasetMetadata, PrivacyModel, Decimal]:
    dataset, budget = budgets.dataset_and_budget(
        db, dataset=dataset_name, consumer_id=principal.consumer_id
    )
    remaining = from_units(budget.total_units - budget.spent_units)
    return dataset, _metadata(dataset), cast(PrivacyModel, budget.model), remaining


def _epsilon_delta(plan: Plan, metadata: DatasetMetadata) -> dict[str, float] | None:
    if plan.model != "zcdp":
        return None
    return {
        "epsilon": zcdp_to_epsilon_delta(float(plan.cost), metadata.delta),
        "delta": metadata.delta,
    }


def _accuracy(plan: Plan, accuracy: Accuracy | None = None) -> dict[str, Any]:
    accuracy = accuracy or plan.accuracy
    shown: dict[str, Any] = {
        "alpha": accuracy.alpha,
        "error_bound": accuracy.error_bound,
        "covers": accuracy.covers,
    }
    if accuracy.error_bound_range is not None:
        shown["error_bound_range"] = list(accuracy.error_bound_range)
    return shown


def _auto(plan: Plan) -> dict[str, Any] | None:
    """With automatic bounds: the cost split, the candidates and the selection steps."""
    auto = plan.auto
    if auto is None:
        return None
    return {
        "share": float(auto.share),
        "selection_cost": _amount(plan.model, auto.selection_cost),
        "statistic_cost": _amount(plan.model, auto.statistic_cost),
        "candidates": auto.candidates,
        "selection": [
            {**step, "cost": _amount(plan.model, step["cost"])} for step in auto.selection_steps()
        ],
        "noise_scale_range": list(auto.noise_scale_range),
    }


def cells_of(db: Database, principal: Principal, query: QueryRequest) -> int | None:
    """How many cells (key combinations) ``query`` has, from public metadata; None when the
    dataset is not visible to ``principal`` (the release path then says why)."""
    try:
        _, metadata, _, _ = _context(db, principal, query.dataset)
    except DbError:
        return None
    return query_cells(query, metadata)


def query_hash(plan: Plan, file_sha256: str | None = None) -> str:
    """The cache key: the canonical query, the privacy model, the exact cost and the
    SHA-256 of the file's contents (an answer is never served for other contents)."""
    key = {"query": plan.canonical, "model": plan.model, "cost": str(plan.cost)}
    if file_sha256 is not None:
        key["file_sha256"] = file_sha256
    return hashlib.sha256(ledger.canonical_json(key).encode()).hexdigest()


def preview(
    db: Database, principal: Principal, query: QueryRequest, guard: QueryGuard | None = None
) -> QueryPreview:
    """What the query would cost and how accurate it would be; reads no data, spends nothing.

    ``guard`` (:mod:`api.limits`) refuses too many cells or a too small cost first."""
    dataset, metadata, model, remaining = _context(db, principal, query.dataset)
    dataset_files.require_active(dataset)  # suspended: 503, as a query would be
    if guard is not None:
        guard.before_plan(query, metadata)
    plan = plan_query(query, metadata, model)
    if guard is not None:
        guard.after_plan(plan)
    return QueryPreview(
        dataset=query.dataset,
        statistic=plan.canonical["statistic"],
        columns=plan.columns,
        query=plan.canonical,
        cost={"model": model, **_amount(model, plan.cost)},
        mechanism=plan.mechanism,
        noise_scale=plan.noise_scale,
        accuracy=_accuracy(plan),
        epsilon_delta=_epsilon_delta(plan, metadata),
        budget_remaining=_amount(model, remaining),
        fits_budget=plan.cost <= remaining,
        bounds=plan.bounds_used,
        auto=_auto(plan),
    )


def _refusal(outcome: Refused, model: str, metadata: DatasetMetadata) -> BudgetExceeded:
    unit = MODEL_UNITS[model]
    remaining = as_json_number(outcome.remaining_units)
    if outcome.reason == "dataset_cap":
        cap = as_json_number(outcome.cap_remaining_units or 0)
        return BudgetExceeded(
            f"the dataset {metadata.name!r} has {cap} {unit} left under its cap, less than "
            f"this query costs",
            remaining={unit: remaining, "dataset_cap": {unit: cap}},
        )
    return BudgetExceeded(
        f"this query costs more than the {remaining} {unit} that remain "
        f"of your budget on {metadata.name!r}",
        remaining={unit: remaining},
    )


@quantised  # once debited, the answer (or error) leaves at a multiple of the quantum
def run(
    db: Database,
    settings: Settings,
    principal: Principal,
    query: QueryRequest,
    request_id: str,
    guard: QueryGuard | None = None,
) -> QueryResponse:
    """Answer ``query`` for ``principal``: cached, refused (409) or debited then computed.

    ``guard`` (:mod:`api.limits`) refuses too many cells or a too small cost before the
    debit."""
    dataset, metadata, model, _ = _context(db, principal, query.dataset)
    if guard is not None:
        guard.before_plan(query, metadata)
    plan = plan_query(query, metadata, model)
    if guard is not None:
        guard.after_plan(plan)
    units = cost_units(plan.cost)
    details = {
        "query": plan.canonical,
        "mechanism": plan.mechanism,
        "noise_scale": plan.noise_scale,
        "accuracy": _accuracy(plan),
        "opendp_privacy_loss": plan.opendp_loss,
        "bounds": plan.bounds_used,
    }
    if plan.auto is not None:  # the split and the candidates, ledgered before any data is read
        details["auto"] = _auto(plan)
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
    details["file_sha256"] = checked.sha256  # the contents this release is computed on
    outcome = releases.start(
        db,
        consumer_id=principal.consumer_id,
        consumer=principal.name,
        dataset_id=dataset.id or 0,
        dataset=dataset.name,
        query_hash=query_hash(plan, checked.sha256),
        model=model,
        cost_units=units,
        details=details,
        request_id=request_id,
    )
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
        outcome = releases.start(
            db,
            consumer_id=principal.consumer_id,
            consumer=principal.name,
            dataset_id=dataset.id or 0,
            dataset=dataset.name,
            query_hash=query_hash(plan, checked.sha256),
            model=model,
            cost_units=units,
            details=details,
            request_id=request_id,
        )
    if isinstance(outcome, releases.InFlight):
        raise ReleaseBusy("an identical query is still being computed; ask again shortly")
    if isinstance(outcome, Refused):
        raise _refusal(outcome, model, metadata)
    if isinstance(outcome, releases.Cached):
        body = {
            **outcome.body,
            "cached": True,
            "budget_remaining": {MODEL_UNITS[model]: as_json_number(outcome.remaining_units)},
        }
        return QueryResponse.model_validate(body)
    # Debited and committed: only now is the data read (the lease is renewed meanwhile,
    # so that only a dead process's release is ever taken for abandoned). From here on
    # every failure carries the release id and is ledgered (api/completion.py).
    after_debit(settings.release_time_quantum_ms)
    try:
        with releases.keep_alive(db, outcome.release_id):
            frame = load_frame(checked.path, metadata)
            released = execute(plan, frame)
            rows = released.rows  # the released rows
            dataset_files.check_after_release(
                db, settings.data_dir, dataset, metadata, checked, request_id
            )
        # with automatic bounds, the statistic's noise depends on the bounds chosen
        result = released if isinstance(released, ReleaseResult) else None
        output: dict[str, Any] = {"columns": plan.columns, "rows": rows}
        if result is not None and result.bounds_chosen is not None:
            output.update(
                {
                    "bounds_chosen": result.bounds_chosen,
                    "mechanism": result.mechanism,
                    "noise_scale": result.noise_scale,
                    "accuracy": _accuracy(plan, result.accuracy),
                    "opendp_privacy_loss": result.opendp_loss,
                    "selection": result.selection,
                }
            )
        body = {
            "id": outcome.release_id,
            "dataset": dataset.name,
            "statistic": plan.canonical["statistic"],
            "columns": plan.columns,
            "rows": rows,
            "cost": {"model": model, **_amount(model, plan.cost)},
            "mechanism": result.mechanism if result else plan.mechanism,
            "noise_scale": result.noise_scale if result else plan.noise_scale,
            "accuracy": _accuracy(plan, result.accuracy if result else None),
            "epsilon_delta": _epsilon_delta(plan, metadata),
            "budget_remaining": {MODEL_UNITS[model]: as_json_number(outcome.debit.remaining_units)},
            "cached": False,
            "ledger_seq": outcome.debit.entry.seq,
            "query": plan.canonical,
            "bounds": plan.bounds_used,
            "bounds_chosen": result.bounds_chosen if result else None,
            "auto": _auto(plan),
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        response = QueryResponse.model_validate(body)
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
        db,
        release_id=outcome.release_id,
        body=body,
        consumer=principal.name,
        dataset=dataset.name,
        output=output,
        request_id=request_id,
    )
    return response


def reread(db: Database, principal: Principal, release_id: str, request_id: str) -> QueryResponse:
    """A stored release of this consumer, at no cost (ledgered as a re-read)."""
    release = releases.get(db, release_id, consumer_id=principal.consumer_id)
    body: dict[str, Any] = stored_body(release.body_json)
    model = body["cost"]["model"]
    releases.reread(
        db,
        release,
        consumer=principal.name,
        dataset=body["dataset"],
        model=model,
        request_id=request_id,
    )
    _, remaining = budgets.remaining(
        db, consumer_id=principal.consumer_id, dataset_id=release.dataset_id
    )
    return QueryResponse.model_validate(
        {**body, "cached": True, "budget_remaining": _amount(model, remaining)}
    )


def list_releases(
    db: Database, principal: Principal, *, after: str | None, limit: int
) -> tuple[list[QuerySummary], str | None]:
    """This consumer's releases, newest first, without their values (so no re-read)."""
    rows, next_id = releases.page(db, consumer_id=principal.consumer_id, after=after, limit=limit)
    return [QuerySummary.model_validate(stored_body(r.body_json)) for r in rows], next_id


def stored_body(text: str | None) -> dict[str, Any]:
    """A stored release body."""
    value: dict[str, Any] = json.loads(text or "{}")
    return value
