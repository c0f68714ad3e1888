"""The analyst's client: :class:`Ruis`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload
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
from ruis_client._models import Budget, Checkpoint, Dataset, Preview, Release, ReleaseSummary

Statistic = Literal["count", "unit_count", "sum", "mean", "quantile"]
Op = Literal["eq", "in", "between", "lt", "le", "gt", "ge"]
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
    """A client for a Ruis server, as the analyst holding ``key``.

    Every answer is differentially private and every :meth:`query` that is
    not served from cache is charged to your budget on its dataset; use
    :meth:`preview` first to see the cost and accuracy for free::

        with Ruis("https://ruis.example.org", key) as ruis:
            release = ruis.query("mobility_events", "unit_count",
                                 group_by=["municipality"], epsilon=0.5)
            print(release.frame, release.accuracy)

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
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.url}: {exc}") from exc
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
        bounds: tuple[float, float] | None,
        max_partitions_contributed: int | None,
        max_contributions_per_partition: int | None,
        post_process: Sequence[str] | None,
        contribution_bounds_per: Sequence[str] | None,
        epsilon: float | None,
        rho: float | None,
        max_error: float | None,
        alpha: float | None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
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
            "bounds": list(bounds) if bounds is not None else None,
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
        bounds: tuple[float, float] | None = None,
        max_partitions_contributed: int | None = None,
        max_contributions_per_partition: int | None = None,
        post_process: Sequence[str] | None = None,
        contribution_bounds_per: Sequence[str] | None = None,
        epsilon: float | None = None,
        rho: float | None = None,
        max_error: float | None = None,
        alpha: float | None = None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
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
        bounds: tuple[float, float] | None = None,
        max_partitions_contributed: int | None = None,
        max_contributions_per_partition: int | None = None,
        post_process: Sequence[str] | None = None,
        contribution_bounds_per: Sequence[str] | None = None,
        epsilon: float | None = None,
        rho: float | None = None,
        max_error: float | None = None,
        alpha: float | None = None,
        min_cell_rows: int | None = None,
        unit_location: str | None = None,
        rollup: Sequence[str] | None = None,
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
        ``level``), consistent with the finer ones. The cost is
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
        )
        return self._release(self._call("POST", "/v1/queries", json=body))

    def releases(self) -> list[ReleaseSummary]:
        """Your releases, newest first, without their values."""
        return [ReleaseSummary.from_document(r) for r in self._pages("/v1/queries")]

    def release(self, release_id: str) -> Release:
        """Re-read one of your releases, at no cost; its receipt (as of now) is checked."""
        path = "/v1/queries/" + quote(release_id, safe="")
        return self._release(self._call("GET", path))
