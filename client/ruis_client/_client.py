"""The client: :class:`Ruis`, one class for every role (the key decides what is allowed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast, overload
from urllib.parse import quote

import httpx

from ruis_client._exceptions import (
    LedgerInconsistency,
    NotFound,
    Problem,
    RuisError,
    TransportError,
    error_for,
)
from ruis_client._ledger import LedgerWatch, OnInconsistency
from ruis_client._models import (
    Budget,
    Checkpoint,
    Dataset,
    Preview,
    Release,
    ReleaseSummary,
    Role,
)
from ruis_client._records import (
    ApiKey,
    CheckpointSummary,
    ConsistencyProof,
    Consumer,
    ConsumerCreated,
    CosignatureAccepted,
    Health,
    InclusionProof,
    LedgerEntry,
    LedgerPage,
    LedgerVerification,
    Limits,
    NewApiKey,
)
from tlog import note

Statistic = Literal["count", "unit_count", "sum", "mean", "quantile"]
Op = Literal["eq", "in", "between", "lt", "le", "gt", "ge"]
Auto = Literal["auto"]
Bounds = tuple[float, float] | Auto
"""Clamping bounds ``(lower, upper)`` of a sum, mean or quantile, or ``"auto"`` (chosen per
query, with DP, among the candidates within the column's public bounds)."""
ContributionBound = int | Auto
"""A contribution bound (``max_partitions_contributed``, ``max_contributions_per_partition``):
an integer, or ``"auto"``."""
Condition = Mapping[str, Any] | tuple[str, Op, Any]
"""A ``where`` condition: ``{"column": c, "op": o, "value": v}`` or the tuple ``(c, o, v)``."""

DEFAULT_TIMEOUT = 60.0


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return value


def _condition(condition: Condition) -> dict[str, Any]:
    if isinstance(condition, tuple):
        if len(condition) != 3:
            raise ValueError("a where condition is (column, op, value)")
        column, op, value = condition
        return {"column": column, "op": op, "value": _json_value(value)}
    return {**condition, "value": _json_value(condition.get("value"))}


def _bounds(bounds: Bounds | None) -> list[float] | Auto | None:
    if bounds is None or bounds == "auto":
        return bounds
    if isinstance(bounds, str):
        raise ValueError('bounds is (lower, upper) or "auto"')
    lower, upper = bounds
    return [lower, upper]


def _iso(value: datetime | date | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime | date) else value


def _privacy(
    epsilon: float | None,
    rho: float | None,
    max_error: float | None,
    alpha: float | None,
    min_cell_rows: int | None = None,
) -> dict[str, float]:
    given = [
        name
        for name, value in (("epsilon", epsilon), ("rho", rho), ("max_error", max_error))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of epsilon=, rho= (the cost) or max_error= "
            f"(an accuracy target); got {', '.join(given) or 'none'}"
        )
    if (alpha is not None or min_cell_rows is not None) and max_error is None:
        raise ValueError("alpha= and min_cell_rows= go with max_error=")
    # costs are exact to 12 decimals on the server: 0.01 + 11e-5 is 0.010110000000000001
    if epsilon is not None:
        return {"epsilon": round(epsilon, 12)}
    if rho is not None:
        return {"rho": round(rho, 12)}
    assert max_error is not None
    target: dict[str, float] = {"max_error": max_error}
    if alpha is not None:
        target["alpha"] = alpha
    if min_cell_rows is not None:
        target["min_cell_rows"] = min_cell_rows
    return target


class Ruis:
    """A client for a Ruis server, as the consumer holding ``key``; it speaks the whole
    contract, and the key's role decides what the server allows (Forbidden otherwise):

    - analysts: :meth:`datasets`, :meth:`budget`, :meth:`preview`, :meth:`query`,
      :meth:`releases`, :meth:`release`;
    - admins: :meth:`create_consumer`, :meth:`consumers`, :meth:`issue_key`,
      :meth:`keys`, :meth:`revoke_key`, :meth:`limits`, :meth:`set_limits`,
      :meth:`register_dataset`, :meth:`dataset`, :meth:`add_dataset_version`,
      :meth:`retire_dataset`, :meth:`reinstate_dataset`, :meth:`set_budget`,
      :meth:`budgets`;
    - auditors (and admins): :meth:`ledger`, :meth:`ledger_page`, :meth:`verify_ledger`,
      :meth:`export_ledger`, :meth:`checkpoint`, :meth:`checkpoints`,
      :meth:`fetch_ledger_key`, :meth:`inclusion_proof`, :meth:`consistency_proof`,
      :meth:`add_cosignature` (auditors only);
    - anyone: :meth:`health`, :meth:`ready`.

    Every answer is differentially private and every :meth:`query` that is
    not served from cache is charged to your budget on its dataset; use
    :meth:`preview` first to see the cost and accuracy for free::

        with Ruis("https://ruis.example.org", key) as ruis:
            release = ruis.query("mobility_events", "unit_count",
                                 group_by=["municipality"], epsilon=0.5)
            print(release.frame, release.accuracy)  # municipality, value, lower, upper

    Errors raise :class:`ruis_client.RuisError` subclasses (see :mod:`ruis_client._exceptions`).
    ``transport`` replaces the network (an ``httpx`` transport, e.g. for tests).

    Every release comes with a receipt, which the client checks (``release.verified``):
    the ledger entry of the release is in a checkpoint signed with the ledger's key,
    and that checkpoint extends the last one this client saw (:attr:`last_checkpoint`).
    ``ledger_key`` pins the ledger's verifier key (``GET /v1/ledger/key``, obtained out
    of band); without it the server's key is trusted on first use. ``checkpoint_file``
    keeps that key and the last checkpoint across runs (JSON, rewritten atomically). A
    receipt that does not check out, or a checkpoint that does not extend the last one
    (an operator who restored an older database, a split view), is recorded in
    :attr:`inconsistencies` and warned of (:class:`ruis_client.LedgerInconsistencyWarning`),
    or raised (:class:`ruis_client.LedgerInconsistency`, whose ``release`` holds the values
    paid for) with ``on_inconsistency="raise"``; the last checkpoint is kept.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        ledger_key: str | None = None,
        checkpoint_file: str | Path | None = None,
        on_inconsistency: OnInconsistency = "warn",
    ) -> None:
        self.url = url.rstrip("/")
        self._ledger = LedgerWatch(
            key=ledger_key,
            path=Path(checkpoint_file) if checkpoint_file is not None else None,
            on_inconsistency=on_inconsistency,
            fetch_key=self._ledger_key,
            fetch_consistency=self._consistency_proof,
        )
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"Ruis({self.url!r})"

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Ruis:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the ledger --------------------------------------------------------------------

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The newest ledger checkpoint this client saw that was consistent with every
        earlier one (from the checkpoint file at first); None before any."""
        return self._ledger.last_checkpoint

    @property
    def inconsistencies(self) -> list[LedgerInconsistency]:
        """Every inconsistency and invalid receipt reported so far, oldest first (each
        names the last checkpoint the client held, ``old``, and the one refused, ``new``)."""
        return self._ledger.inconsistencies

    @property
    def ledger_key(self) -> str | None:
        """The ledger verifier key receipts are checked with (None until it is known)."""
        return self._ledger.key

    def _ledger_key(self) -> str:
        response = self._request("GET", "/v1/ledger/key", headers={"Accept": "text/plain"})
        return response.text.strip()

    def _consistency_proof(self, old: int, new: int) -> list[str]:
        proof = self._call("GET", "/v1/ledger/proofs/consistency", params={"from": old, "to": new})
        if not isinstance(proof, dict) or (proof.get("from"), proof.get("to")) != (old, new):
            raise RuisError(f"the consistency proof from {old} to {new} is malformed")
        hashes = proof.get("hashes")
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise RuisError(f"the consistency proof from {old} to {new} is malformed")
        return hashes

    def _release(self, document: Any) -> Release:
        """The release in ``document``, its receipt checked (see the class)."""
        return self._ledger.verified(Release.from_document(document))

    # -- HTTP ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        response = self._request(method, path, json=json, params=params)
        try:
            return response.json()
        except ValueError:
            raise RuisError(f"{method} {path}: the server's answer is not JSON") from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        try:
            request = self._http.build_request(
                method, path, json=json, params=params, headers=headers
            )
            response = self._http.send(request, stream=stream)
            if stream and response.is_error:
                response.read()
                response.close()
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
        return self._check(response)

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        """``response`` when it is a success; else the error its problem document names."""
        request_id = response.headers.get("x-request-id")
        if response.is_error:
            try:
                document = response.json()
            except ValueError:
                document = None
            if not isinstance(document, dict):
                document = {
                    "type": "about:blank",
                    "title": response.reason_phrase,
                    "status": response.status_code,
                    "detail": response.text[:300],
                }
            problem = Problem.from_document(document, response.status_code)
            raise error_for(problem, request_id=request_id)
        return response

    def _pages(
        self, path: str, params: Mapping[str, str | int] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a paginated list, following ``next_cursor``."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self._call(
                "GET", path, params={**(params or {}), **({"cursor": cursor} if cursor else {})}
            )
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    # -- datasets and budgets ----------------------------------------------------------

    def datasets(self) -> list[Dataset]:
        """The datasets you hold a budget on, with their public metadata."""
        return [Dataset.from_document(d) for d in self._pages("/v1/datasets")]

    @overload
    def budget(self, dataset: None = None) -> list[Budget]: ...

    @overload
    def budget(self, dataset: str) -> Budget: ...

    def budget(self, dataset: str | None = None) -> Budget | list[Budget]:
        """Your budget on ``dataset`` (NotFound if you hold none), or all your budgets."""
        if dataset is None:
            return [Budget.from_document(b) for b in self._pages("/v1/budgets")]
        found = self._pages("/v1/budgets", {"dataset": dataset})
        if not found:
            raise NotFound(
                Problem(
                    type="not-found",
                    title="Not found",
                    status=404,
                    detail=f"you hold no budget on dataset {dataset!r}",
                )
            )
        return Budget.from_document(found[0])

    # -- queries -----------------------------------------------------------------------

    @staticmethod
    def _query_body(
        dataset: str,
        statistic: Statistic,
        *,
        group_by: Sequence[str] | None,
        where: Sequence[Condition] | None,
        column: str | None,
        q: float | None,
        bounds: Bounds | None,
        max_partitions_contributed: ContributionBound | None,
        max_contributions_per_partition: ContributionBound | None,
        post_process: Sequence[str] | None,
        contribution_bounds_per: Sequence[str] | None,
        epsilon: float | None,
        rho: float | None,
        max_error: float | None,
        alpha: float | None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
        auto_share: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dataset": dataset,
            "statistic": statistic,
            "privacy": _privacy(epsilon, rho, max_error, alpha, min_cell_rows),
        }
        if isinstance(group_by, str):
            raise ValueError("group_by is a list of column names")
        if isinstance(contribution_bounds_per, str):
            raise ValueError("contribution_bounds_per is a list of column names")
        if isinstance(rollup, str):
            raise ValueError("rollup is a list of column names")
        optional = {
            "group_by": list(group_by) if group_by is not None else None,
            "where": [_condition(c) for c in where] if where is not None else None,
            "column": column,
            "q": q,
            "bounds": _bounds(bounds),
            "max_partitions_contributed": max_partitions_contributed,
            "max_contributions_per_partition": max_contributions_per_partition,
            "post_process": list(post_process) if post_process else None,
            "contribution_bounds_per": (
                list(contribution_bounds_per) if contribution_bounds_per else None
            ),
            "unit_location": (
                {"column": unit_location, "rule": "most_frequent"}
                if unit_location is not None
                else None
            ),
            "rollup": list(rollup) if rollup else None,
            "auto_share": auto_share,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        return body

    def preview(
        self,
        dataset: str,
        statistic: Statistic,
        *,
        group_by: Sequence[str] | None = None,
        where: Sequence[Condition] | None = None,
        column: str | None = None,
        q: float | None = None,
        bounds: Bounds | None = None,
        max_partitions_contributed: ContributionBound | None = None,
        max_contributions_per_partition: ContributionBound | None = None,
        post_process: Sequence[str] | None = None,
        contribution_bounds_per: Sequence[str] | None = None,
        epsilon: float | None = None,
        rho: float | None = None,
        max_error: float | None = None,
        alpha: float | None = None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
        auto_share: float | None = None,
    ) -> Preview:
        """What :meth:`query` with the same arguments would cost and how accurate it would
        be. Reads no data and spends nothing."""
        body = self._query_body(
            dataset,
            statistic,
            group_by=group_by,
            where=where,
            column=column,
            q=q,
            bounds=bounds,
            max_partitions_contributed=max_partitions_contributed,
            max_contributions_per_partition=max_contributions_per_partition,
            post_process=post_process,
            contribution_bounds_per=contribution_bounds_per,
            epsilon=epsilon,
            rho=rho,
            max_error=max_error,
            alpha=alpha,
            min_cell_rows=min_cell_rows,
            unit_location=unit_location,
            rollup=rollup,
            auto_share=auto_share,
        )
        return Preview.from_document(self._call("POST", "/v1/queries/preview", json=body))

    def query(
        self,
        dataset: str,
        statistic: Statistic,
        *,
        group_by: Sequence[str] | None = None,
        where: Sequence[Condition] | None = None,
        column: str | None = None,
        q: float | None = None,
        bounds: Bounds | None = None,
        max_partitions_contributed: ContributionBound | None = None,
        max_contributions_per_partition: ContributionBound | None = None,
        post_process: Sequence[str] | None = None,
        contribution_bounds_per: Sequence[str] | None = None,
        epsilon: float | None = None,
        rho: float | None = None,
        max_error: float | None = None,
        alpha: float | None = None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
        auto_share: float | None = None,
    ) -> Release:
        """Run a query and return its differentially private release.

        ``statistic`` is ``count``, ``unit_count``, ``sum``, ``mean`` (these two need
        ``column``) or ``quantile`` (``column`` and ``q``). The cost is ``epsilon=`` (pure
        budgets) or ``rho=`` (zCDP budgets), or ``max_error=`` with ``alpha=`` (default
        0.05) to let the server pick the smallest cost meeting that accuracy (a ``mean``
        also needs ``min_cell_rows=``: the target holds for cells with at least that many
        rows). A ``mean``'s rows carry ``lower`` and ``upper``, its per-cell interval.
        ``post_process=["non_negative"]`` (counts) releases negative noisy counts as 0.
        ``contribution_bounds_per=["day"]`` (some of ``group_by``) makes the contribution
        bounds hold per day: up to ``max_partitions_contributed`` groups on every day, at a
        noise scale that many days times larger. ``unit_location="neighbourhood"``
        (``unit_count``) counts each unit once, at its most frequent neighbourhood
        ("residents"); ``group_by`` is that column or a coarser one of the dataset's
        hierarchy. ``rollup=["municipality"]`` adds the coarser level's rows (column
        ``level``), consistent with the finer ones. ``bounds="auto"`` (or a contribution
        bound ``"auto"``) lets the server choose them per query, with DP, spending
        ``auto_share`` of the cost on the choice (default: the server's); see
        ``release.bounds_chosen`` and ``release.auto``. The cost is
        debited before the data is read; asking exactly the same again is free and
        returns the same release (``cached=True``). Its receipt is checked
        (``verified``; see the class).
        """
        body = self._query_body(
            dataset,
            statistic,
            group_by=group_by,
            where=where,
            column=column,
            q=q,
            bounds=bounds,
            max_partitions_contributed=max_partitions_contributed,
            max_contributions_per_partition=max_contributions_per_partition,
            post_process=post_process,
            contribution_bounds_per=contribution_bounds_per,
            epsilon=epsilon,
            rho=rho,
            max_error=max_error,
            alpha=alpha,
            min_cell_rows=min_cell_rows,
            unit_location=unit_location,
            rollup=rollup,
            auto_share=auto_share,
        )
        return self._release(self._call("POST", "/v1/queries", json=body))

    def releases(self) -> list[ReleaseSummary]:
        """Your releases, newest first, without their values."""
        return [ReleaseSummary.from_document(r) for r in self._pages("/v1/queries")]

    def release(self, release_id: str) -> Release:
        """Re-read one of your releases, at no cost; its receipt (as of now) is checked."""
        path = "/v1/queries/" + quote(release_id, safe="")
        return self._release(self._call("GET", path))

    # -- admin: consumers, keys, limits ---------------------------------------------------

    def create_consumer(self, name: str, role: Role = "analyst") -> ConsumerCreated:
        """Create a consumer (``analyst``, ``admin`` or ``auditor``) and its first API key,
        returned once in ``api_key``. Role: admin."""
        return ConsumerCreated.from_document(
            self._call("POST", "/v1/consumers", json={"name": name, "role": role})
        )

    def consumers(self) -> list[Consumer]:
        """Every consumer. Role: admin."""
        return [Consumer.from_document(c) for c in self._pages("/v1/consumers")]

    def issue_key(self, consumer: str) -> NewApiKey:
        """Issue another API key for ``consumer`` (its secret returned once). Role: admin."""
        return NewApiKey.from_document(self._call("POST", f"{_consumer(consumer)}/keys"))

    def keys(self, consumer: str) -> list[ApiKey]:
        """``consumer``'s keys: ids, prefixes and dates, never secrets. Role: admin."""
        return [ApiKey.from_document(k) for k in self._pages(f"{_consumer(consumer)}/keys")]

    def revoke_key(self, consumer: str, key_id: str) -> ApiKey:
        """Revoke one key: it stops working at once (idempotent; never the last active admin
        key, a Conflict). Role: admin."""
        path = f"{_consumer(consumer)}/keys/{_segment(key_id)}"
        return ApiKey.from_document(self._call("DELETE", path))

    def limits(self, consumer: str) -> Limits:
        """``consumer``'s limit overrides and the limits in effect. Roles: admin, auditor."""
        return Limits.from_document(self._call("GET", f"{_consumer(consumer)}/limits"))

    def set_limits(
        self,
        consumer: str,
        *,
        min_epsilon: float | None = None,
        min_rho: float | None = None,
        max_cells: int | None = None,
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        burst: int | None = None,
    ) -> Limits:
        """Replace ``consumer``'s limit overrides: those given override the deployment's
        defaults, the others return to them (ledgered). Role: admin."""
        given = {
            "min_epsilon": min_epsilon,
            "min_rho": min_rho,
            "max_cells": max_cells,
            "max_concurrent": max_concurrent,
            "requests_per_minute": requests_per_minute,
            "burst": burst,
        }
        body = {name: value for name, value in given.items() if value is not None}
        return Limits.from_document(self._call("PUT", f"{_consumer(consumer)}/limits", json=body))

    # -- admin: datasets and budgets ------------------------------------------------------

    def dataset(self, name: str) -> Dataset:
        """One dataset's public metadata (NotFound for an analyst without a budget on it)."""
        return Dataset.from_document(self._call("GET", f"/v1/datasets/{_segment(name)}"))

    def register_dataset(self, metadata: Mapping[str, Any]) -> Dataset:
        """Register a dataset file (Parquet or CSV, inside the server's data directory) with
        its public metadata: ``name``, ``path``, ``privacy_unit``, ``columns`` and the
        optional rest of ``POST /v1/datasets`` (``max_partitions_contributed``,
        ``budget_cap``, ``hierarchy``, ...). Role: admin."""
        return Dataset.from_document(self._call("POST", "/v1/datasets", json=metadata))

    def add_dataset_version(
        self,
        name: str,
        path: str,
        *,
        columns: Mapping[str, Mapping[str, Any]] | None = None,
        max_rows: int | None = None,
    ) -> Dataset:
        """Add a version of dataset ``name``: a new file (checked in full), with grown keys
        of date columns or ranges of derived ones in ``columns`` and a new ``max_rows``;
        queries then run on it. Role: admin."""
        body: dict[str, Any] = {"path": path}
        if columns is not None:
            body["columns"] = columns
        if max_rows is not None:
            body["max_rows"] = max_rows
        path_ = f"/v1/datasets/{_segment(name)}/versions"
        return Dataset.from_document(self._call("POST", path_, json=body))

    def retire_dataset(self, name: str) -> Dataset:
        """Retire a dataset: no new query or preview (DatasetRetired); its history and
        releases are kept. Role: admin."""
        return Dataset.from_document(self._call("POST", f"/v1/datasets/{_segment(name)}/retire"))

    def reinstate_dataset(self, name: str) -> Dataset:
        """Re-check a (suspended) dataset's current file in full and make it active again.
        Role: admin."""
        path = f"/v1/datasets/{_segment(name)}/reinstate"
        return Dataset.from_document(self._call("POST", path))

    def budgets(self, *, consumer: str | None = None, dataset: str | None = None) -> list[Budget]:
        """Budgets, filtered by consumer and dataset: an analyst's own, every one for admins
        and auditors."""
        params = {"consumer": consumer, "dataset": dataset}
        return [Budget.from_document(b) for b in self._pages("/v1/budgets", _given(params))]

    def set_budget(
        self,
        consumer: str,
        dataset: str,
        *,
        epsilon: float | None = None,
        rho: float | None = None,
        period: Mapping[str, str] | None = None,
    ) -> Budget:
        """Create or change ``consumer``'s budget on ``dataset``: ``epsilon=`` (pure DP) or
        ``rho=`` (zCDP), never below what is spent (Conflict). With ``period={"column":
        "day", "every": "month"}`` (``month``, ``week`` or ``day``) the total holds per
        period of that date column. Role: admin."""
        if (epsilon is None) == (rho is None):
            raise ValueError("give exactly one of epsilon= (pure DP) or rho= (zCDP)")
        body: dict[str, Any] = (
            {"model": "pure", "epsilon": round(epsilon, 12)}
            if epsilon is not None
            else {"model": "zcdp", "rho": round(cast(float, rho), 12)}
        )
        if period is not None:
            body["period"] = dict(period)
        path = f"/v1/budgets/{_segment(consumer)}/{_segment(dataset)}"
        return Budget.from_document(self._call("PUT", path, json=body))

    # -- auditor: the ledger ----------------------------------------------------------------

    def ledger_page(
        self,
        *,
        consumer: str | None = None,
        dataset: str | None = None,
        kind: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> LedgerPage:
        """One page of ledger entries, oldest first (newest first with ``newest_first``),
        filtered (``since`` and ``until`` inclusive); pass its ``next_cursor`` for the next
        page in the same order. Roles: admin, auditor."""
        params = _given(
            {
                **_ledger_filters(consumer, dataset, kind, since, until),
                "limit": limit,
                "cursor": cursor,
                "order": "desc" if newest_first else None,
            }
        )
        return LedgerPage.from_document(self._call("GET", "/v1/ledger", params=params))

    def ledger(
        self,
        *,
        consumer: str | None = None,
        dataset: str | None = None,
        kind: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        page_size: int = 1000,
        newest_first: bool = False,
    ) -> Iterator[LedgerEntry]:
        """Every ledger entry matching the filters, oldest first (newest first with
        ``newest_first``), read page by page as you iterate. Roles: admin, auditor."""
        cursor: str | None = None
        while True:
            page = self.ledger_page(
                consumer=consumer,
                dataset=dataset,
                kind=kind,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
                newest_first=newest_first,
            )
            yield from page.items
            cursor = page.next_cursor
            if not cursor:
                return

    def verify_ledger(self) -> LedgerVerification:
        """The server's check of its hash chain, Merkle tree, checkpoints and balances.
        Roles: admin, auditor."""
        return LedgerVerification.from_document(self._call("GET", "/v1/ledger/verify"))

    def export_ledger(
        self,
        *,
        format: Literal["jsonl", "csv"] = "jsonl",
        consumer: str | None = None,
        dataset: str | None = None,
        kind: str | None = None,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
    ) -> Iterator[str]:
        """The ledger's entries as streamed lines, oldest first: JSON lines (each an entry
        as :meth:`ledger` reads it, what ``ruis verify`` checks) or CSV with a header
        line. A bad filter raises here, before any line. Roles: admin, auditor."""
        params = _given(
            {"format": format, **_ledger_filters(consumer, dataset, kind, since, until)}
        )
        response = self._request("GET", "/v1/ledger/export", params=params, stream=True)

        def lines() -> Iterator[str]:
            try:
                yield from (line for line in response.iter_lines() if line)
            except httpx.TransportError as exc:
                raise TransportError(f"the export from {self.url} broke off: {exc}") from exc
            finally:
                response.close()

        return lines()

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        """The ledger's signed checkpoint now (or at tree ``size``), with the witnesses'
        cosignature lines in its ``note``. Its signature is not checked here: receipts
        are checked against it (see the class) and ``tlog.note`` checks notes.
        Roles: admin, auditor."""
        params = _given({"size": size})
        text = self._request(
            "GET", "/v1/ledger/checkpoint", params=params, headers={"Accept": "text/plain"}
        ).text
        try:
            point = note.Checkpoint.parse(note.Note.parse(text).text)
        except note.NoteError as exc:
            raise RuisError(f"the server's checkpoint is malformed: {exc}") from None
        return Checkpoint(size=point.size, root=point.root, note=text)

    def checkpoints(self) -> list[CheckpointSummary]:
        """The checkpoints served or cosigned so far, newest first, with who cosigned each.
        Roles: admin, auditor."""
        return [CheckpointSummary.from_document(c) for c in self._pages("/v1/ledger/checkpoints")]

    def fetch_ledger_key(self) -> str:
        """The server's verifier key of its checkpoints (C2SP vkey) as it serves it now;
        pin one obtained out of band with ``ledger_key=``. Any role."""
        return self._ledger_key()

    def inclusion_proof(self, index: int, size: int) -> InclusionProof:
        """RFC 9162 inclusion proof of the entry with seq ``index + 1`` in the tree of
        ``size`` leaves. Any role."""
        params = {"index": index, "size": size}
        return InclusionProof.from_document(
            self._call("GET", "/v1/ledger/proofs/inclusion", params=params)
        )

    def consistency_proof(self, old: int, new: int) -> ConsistencyProof:
        """RFC 9162 consistency proof that the tree of ``old`` leaves is a prefix of the
        tree of ``new`` leaves. Any role."""
        params = {"from": old, "to": new}
        return ConsistencyProof.from_document(
            self._call("GET", "/v1/ledger/proofs/consistency", params=params)
        )

    def add_cosignature(self, witness: str, checkpoint: str) -> CosignatureAccepted:
        """Store a witness's C2SP tlog-cosignature: ``checkpoint`` is the note as
        :meth:`checkpoint` served it with the witness's cosignature line added, ``witness``
        its verifier key (``ruis witness`` does both). Role: auditor."""
        body = {"witness": witness, "checkpoint": checkpoint}
        return CosignatureAccepted.from_document(
            self._call("POST", "/v1/ledger/cosignatures", json=body)
        )

    # -- health ------------------------------------------------------------------------------

    def health(self) -> Health:
        """Liveness: ``GET /healthz`` (no key needed)."""
        return Health.from_document(self._call("GET", "/healthz"))

    def ready(self) -> Health:
        """Readiness: ``GET /readyz``; its ``status`` is ``unavailable`` (not an error) when
        a check fails, naming it in ``checks``."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code == 503:
            try:
                return Health.from_document(response.json())
            except (ValueError, KeyError, TypeError):
                pass
        return Health.from_document(self._check(response).json())


def _segment(value: str) -> str:
    return quote(value, safe="")


def _consumer(name: str) -> str:
    return f"/v1/consumers/{_segment(name)}"


def _given(params: Mapping[str, str | int | None]) -> dict[str, str | int]:
    return {name: value for name, value in params.items() if value is not None}


def _ledger_filters(
    consumer: str | None,
    dataset: str | None,
    kind: str | None,
    since: datetime | date | str | None,
    until: datetime | date | str | None,
) -> dict[str, str | None]:
    return {
        "consumer": consumer,
        "dataset": dataset,
        "kind": kind,
        "since": _iso(since),
        "until": _iso(until),
    }
