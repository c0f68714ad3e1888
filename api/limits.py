"""Quotas and limits against hostile load, applied where queries and previews enter.

What is limited (defaults in :class:`api.settings.LimitSettings`, README "Limits"):

- the **cost** of one release: at least ε ``min_epsilon`` / ρ ``min_rho``
  (422 ``cost-below-minimum``), so that a timing probe cannot cost ε 1e-12;
- the **cells** of one query, the product of its ``group_by`` key counts, from
  public metadata before anything is compiled or debited (422 ``too-many-cells``);
- **requests per minute** per consumer to ``/v1/queries`` (a token bucket with a
  burst; 429 ``too-many-requests``);
- **concurrency**: releases computed at once in this process and per consumer, and
  separately previews, so previews cannot take a release's slot. A request over
  the limit waits in a fair queue (the next free slot goes to the waiting
  consumer computing the least, then served least recently) for at most
  ``queue_timeout_seconds`` (then 429).

The cost and cell checks are a :class:`QueryGuard` that :mod:`api.release` calls
before planning and before the debit; both run for previews too. Every 429 has
``Retry-After`` and is ledgered as a ``refused`` entry with cost 0 — but only
the first per consumer and reason in each minute; the rest are counted and the
next ledgered refusal carries the count (``unledgered_before``), so hammering
cannot grow the ledger by more than two entries per consumer per minute. A query
refused for what it asks (422 ``invalid-query``, ``too-many-cells``,
``cost-below-minimum``, 404 dataset: :data:`LEDGERED_REFUSALS`) is
ledgered the same way, per consumer and problem type, with the problem's type and
detail: who asked what, and when, even when nothing was released. (Over-budget 409s,
suspended and retired datasets are ledgered where they are refused.)

State (buckets, queues, the override cache) is per process: with W workers or
replicas, the deployment-wide and per-consumer numbers apply per process.
None of these checks reads private data: they use the query, the public
metadata, the consumer and the clock.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.problems import CostBelowMinimum, TooManyCells, TooManyRequests, problem_type
from api.settings import LimitSettings
from db import limits as stored_limits
from db.accounts import Principal
from db.engine import Database
from db.limits import Overrides
from privacy import Plan, QueryRequest
from privacy.metadata import DatasetMetadata
from privacy.query import MAX_CELLS, EpsilonLoss, RhoLoss

log = logging.getLogger("ruis.limits")
OVERRIDES_TTL_SECONDS = 5.0
"""How long a process keeps a consumer's overrides before reading them again."""
REFUSAL_WINDOW_SECONDS = 60.0
LEDGERED_REFUSALS = frozenset({400, 404, 422})
"""Statuses of a query's own refusal that :meth:`Limiter.admit` ledgers (throttled)."""
"""At most one ledgered refusal per consumer and reason in this window."""
Gateway = Literal["release", "preview"]


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits that apply to one consumer: its overrides, else the deployment's."""

    min_epsilon: Decimal
    min_rho: Decimal
    max_cells: int
    max_concurrent: int
    requests_per_minute: int
    burst: int

    @classmethod
    def of(cls, settings: LimitSettings, overrides: Overrides) -> EffectiveLimits:
        """``overrides`` where set, else ``settings``."""

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return cls(
            min_epsilon=pick(overrides.min_epsilon, settings.min_epsilon),
            min_rho=pick(overrides.min_rho, settings.min_rho),
            max_cells=pick(overrides.max_cells, settings.max_cells),
            max_concurrent=pick(overrides.max_concurrent, settings.max_concurrent_per_consumer),
            requests_per_minute=pick(overrides.requests_per_minute, settings.requests_per_minute),
            burst=pick(overrides.burst, settings.burst),
        )

    def document(self) -> dict[str, Any]:
        """The JSON-able form (amounts as numbers)."""
        return {
            "min_epsilon": float(self.min_epsilon),
            "min_rho": float(self.min_rho),
            "max_cells": self.max_cells,
            "max_concurrent": self.max_concurrent,
            "requests_per_minute": self.requests_per_minute,
            "burst": self.burst,
        }


def query_cells(query: QueryRequest, metadata: DatasetMetadata) -> int:
    """The product of the public key counts of the ``group_by`` columns (1 without any).

    Columns that are unknown or have no keys count 1 here: :func:`privacy.plan_query`
    refuses them with its own message.
    """
    cells = 1
    for name in query.group_by:
        spec = metadata.columns.get(name)
        if spec is not None and spec.keys is not None:
            cells *= len(spec.keys)
    return cells


@dataclass(frozen=True)
class QueryGuard:
    """The per-query limits (cells, minimum cost), checked from public information only."""

    limits: EffectiveLimits

    def _minimum(self, unit: str) -> Decimal:
        return self.limits.min_epsilon if unit == "epsilon" else self.limits.min_rho

    def before_plan(self, query: QueryRequest, metadata: DatasetMetadata) -> None:
        """Refuse too many cells or an explicit cost below the minimum (before compiling)."""
        cells = query_cells(query, metadata)
        allowed = min(self.limits.max_cells, MAX_CELLS)
        if cells > allowed:
            raise TooManyCells(
                f"group_by {query.group_by} has {cells:,} key combinations; "
                f"at most {allowed:,} are allowed per query",
                cells=cells,
                max_cells=allowed,
            )
        privacy = query.privacy
        if isinstance(privacy, EpsilonLoss | RhoLoss):
            unit = "epsilon" if isinstance(privacy, EpsilonLoss) else "rho"
            amount = privacy.epsilon if isinstance(privacy, EpsilonLoss) else privacy.rho
            if amount < self._minimum(unit):
                raise CostBelowMinimum(
                    f"a release costs at least {unit} "
                    f"{self._minimum(unit)}; this one asks {amount}",
                    minimum={unit: float(self._minimum(unit))},
                )

    def after_plan(self, plan: Plan) -> None:
        """Refuse a planned cost below the minimum (an accuracy target chose it)."""
        unit = "epsilon" if plan.model == "pure" else "rho"
        if plan.cost < self._minimum(unit):
            raise CostBelowMinimum(
                f"a release costs at least {unit} {self._minimum(unit)}; "
                f"this accuracy target needs only {plan.cost}: ask for a "
                f"smaller max_error or state the cost",
                minimum={unit: float(self._minimum(unit))},
            )


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Waiter:
    consumer_id: int
    limit: int
    future: asyncio.Future[None]


@dataclass
class Gate:
    """A fair counting semaphore over the event loop: ``capacity`` slots in all, ``limit``
    per consumer. A free slot goes to the waiter whose consumer holds the fewest slots,
    then whose consumer was served least recently, then who came first."""

    capacity: int
    active: int = 0
    _per: dict[int, int] = field(default_factory=dict)
    _waiting: list[_Waiter] = field(default_factory=list)
    _queued: dict[int, int] = field(default_factory=dict)
    _granted_at: dict[int, int] = field(default_factory=dict)
    _grants: int = 0
    peak: dict[int, int] = field(default_factory=dict)
    """The most slots each consumer has held at once since the start (observability)."""

    def running(self, consumer_id: int) -> int:
        """Slots held by ``consumer_id`` now."""
        return self._per.get(consumer_id, 0)

    async def acquire(
        self, consumer_id: int, *, limit: int, timeout: float, max_queued: int
    ) -> bool:
        """Take a slot within ``timeout`` seconds (True), else False and nothing is held."""
        if self._queued.get(consumer_id, 0) >= max_queued:
            return False
        waiter = _Waiter(consumer_id, limit, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        self._queued[consumer_id] = self._queued.get(consumer_id, 0) + 1
        self._dispatch()
        try:
            if not waiter.future.done():
                await asyncio.wait([waiter.future], timeout=timeout)
        except BaseException:  # cancelled while waiting: leave no slot behind
            self._abandon(waiter)
            raise
        if waiter.future.done() and not waiter.future.cancelled():
            return True
        self._abandon(waiter)
        return False

    def release(self, consumer_id: int) -> None:
        """Give back one slot of ``consumer_id`` and hand it to the next waiter."""
        self.active -= 1
        left = self._per.get(consumer_id, 1) - 1
        if left > 0:
            self._per[consumer_id] = left
        else:
            self._per.pop(consumer_id, None)
        self._dispatch()

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter in self._waiting:
            self._unqueue(waiter)
            waiter.future.cancel()
        elif waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.consumer_id)

    def _unqueue(self, waiter: _Waiter) -> None:
        self._waiting.remove(waiter)
        left = self._queued.get(waiter.consumer_id, 1) - 1
        if left > 0:
            self._queued[waiter.consumer_id] = left
        else:
            self._queued.pop(waiter.consumer_id, None)

    def _dispatch(self) -> None:
        while self.active < self.capacity:
            best: _Waiter | None = None
            best_rank: tuple[int, int] = (0, 0)
            for waiter in self._waiting:  # in arrival order: the first of equal rank wins
                running = self._per.get(waiter.consumer_id, 0)
                rank = (running, self._granted_at.get(waiter.consumer_id, -1))
                if running < waiter.limit and (best is None or rank < best_rank):
                    best, best_rank = waiter, rank
            if best is None:
                return
            self._unqueue(best)
            self._grants += 1
            self._granted_at[best.consumer_id] = self._grants
            self.active += 1
            held = self._per[best.consumer_id] = self._per.get(best.consumer_id, 0) + 1
            self.peak[best.consumer_id] = max(self.peak.get(best.consumer_id, 0), held)
            best.future.set_result(None)


@dataclass
class _RefusalWindow:
    started: float
    unledgered: int = 0


class Limiter:
    """This process's limits state: per-consumer token buckets, the release and preview
    gates, the cache of per-consumer overrides and the refusal-ledger throttle."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self.releases = Gate(settings.max_concurrent_releases)
        self.previews = Gate(settings.max_concurrent_previews)
        self.heavy_releases = Gate(settings.max_concurrent_heavy_releases)
        self.heavy_previews = Gate(settings.max_concurrent_heavy_previews)
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}
        self._overrides: dict[int, tuple[float, Overrides]] = {}
        self._refusals: dict[tuple[int, str], _RefusalWindow] = {}

    def forget(self, consumer_id: int | None = None) -> None:
        """Drop cached overrides (of one consumer, or all) so the next request reads them."""
        with self._lock:
            if consumer_id is None:
                self._overrides.clear()
            else:
                self._overrides.pop(consumer_id, None)

    def _cached(self, consumer_id: int) -> Overrides | None:
        with self._lock:
            cached = self._overrides.get(consumer_id)
        if cached is None or cached[0] < time.monotonic():
            return None
        return cached[1]

    def limits_of(self, db: Database, consumer_id: int) -> EffectiveLimits:
        """The limits of ``consumer_id`` (its overrides read at most every few seconds)."""
        overrides = self._cached(consumer_id)
        if overrides is None:
            overrides = stored_limits.get(db, consumer_id=consumer_id)
            with self._lock:
                self._overrides[consumer_id] = (time.monotonic() + OVERRIDES_TTL_SECONDS, overrides)
        return EffectiveLimits.of(self.settings, overrides)

    async def _limits_async(self, db: Database, consumer_id: int) -> EffectiveLimits:
        if self._cached(consumer_id) is not None:
            return self.limits_of(db, consumer_id)
        return await run_in_threadpool(self.limits_of, db, consumer_id)

    def take_token(self, consumer_id: int, limits: EffectiveLimits) -> float:
        """Take one request token: 0.0 if granted, else the seconds until one is available."""
        rate = limits.requests_per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(consumer_id)
            if bucket is None:
                bucket = self._buckets[consumer_id] = _Bucket(float(limits.burst), now)
            bucket.tokens = min(float(limits.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def _should_ledger(self, consumer_id: int, reason: str) -> tuple[bool, int]:
        """Whether this refusal is ledgered, and how many before it were not."""
        now = time.monotonic()
        with self._lock:
            window = self._refusals.get((consumer_id, reason))
            if window is not None and now - window.started < REFUSAL_WINDOW_SECONDS:
                window.unledgered += 1
                return False, 0
            unledgered = window.unledgered if window is not None else 0
            self._refusals[(consumer_id, reason)] = _RefusalWindow(started=now)
            return True, unledgered

    async def refuse(
        self,
        db: Database,
        principal: Principal,
        *,
        reason: str,
        gateway: Gateway,
        dataset: str | None,
        retry_after: float,
        detail: str,
        request_id: str,
    ) -> TooManyRequests:
        """The 429 to raise, after ledgering it if it is the first of its minute."""
        seconds = max(1, math.ceil(retry_after))
        await self._ledger_refusal(
            db, principal, reason, dataset, {"gateway": gateway, "retry_after": seconds}, request_id
        )
        return TooManyRequests(detail, retry_after=seconds, reason=reason)

    def _gate(self, gateway: Gateway, cells: int | None) -> Gate:
        """The lane of a request: heavy (more than ``heavy_cells`` cells) or not."""
        heavy = cells is not None and cells > self.settings.heavy_cells
        if gateway == "release":
            return self.heavy_releases if heavy else self.releases
        return self.heavy_previews if heavy else self.previews

    @asynccontextmanager
    async def admit(
        self,
        db: Database,
        principal: Principal,
        *,
        gateway: Gateway,
        dataset: str | None,
        request_id: str,
        cells: Callable[[], int | None] | None = None,
    ) -> AsyncIterator[QueryGuard]:
        """Hold a slot of ``gateway`` for this request, or raise :class:`TooManyRequests`.

        First the consumer's token bucket (refused at once when empty), then a
        slot (waited for at most ``queue_timeout_seconds``). ``cells`` (run in a
        worker thread) says how many cells the query has, from public metadata
        (None when unknown): a heavy query waits in the heavy lane, whose few
        slots never hold back small queries. Yields the consumer's
        :class:`QueryGuard`; the slot is given back on exit.
        """
        limits = await self._limits_async(db, principal.consumer_id)
        wait = self.take_token(principal.consumer_id, limits)
        if wait > 0:
            raise await self.refuse(
                db,
                principal,
                reason="rate_limited",
                gateway=gateway,
                dataset=dataset,
                retry_after=wait,
                request_id=request_id,
                detail=f"more than {limits.requests_per_minute} query requests per minute "
                f"(burst {limits.burst}); retry later",
            )
        gate = self._gate(gateway, await run_in_threadpool(cells) if cells else None)
        timeout = self.settings.queue_timeout_seconds
        if not await gate.acquire(
            principal.consumer_id,
            limit=limits.max_concurrent,
            timeout=timeout,
            max_queued=self.settings.max_queued_per_consumer,
        ):
            raise await self.refuse(
                db,
                principal,
                reason="concurrency_limit",
                gateway=gateway,
                dataset=dataset,
                retry_after=timeout,
                request_id=request_id,
                detail=f"no {gateway} slot became free within {timeout:g} s (at most "
                f"{limits.max_concurrent} at once per consumer, "
                f"{gate.capacity} in all); retry later",
            )
        try:
            yield QueryGuard(limits)
        except Exception as exc:
            if gateway == "release" and problem_type(exc).status in LEDGERED_REFUSALS:
                await self.ledger_refused_query(db, principal, exc, dataset, request_id)
            raise
        finally:
            gate.release(principal.consumer_id)

    async def ledger_refused_query(
        self,
        db: Database,
        principal: Principal,
        exc: Exception,
        dataset: str | None,
        request_id: str,
    ) -> None:
        """Ledger a query refused for what it asks (cost 0, the problem's type and public
        detail), the first per consumer and problem type each minute."""
        detail = str(getattr(exc, "detail", "") or exc)[:500]
        await self._ledger_refusal(
            db,
            principal,
            problem_type(exc).type,
            dataset,
            {"gateway": "release", "detail": detail},
            request_id,
        )

    async def _ledger_refusal(
        self,
        db: Database,
        principal: Principal,
        reason: str,
        dataset: str | None,
        details: dict[str, Any],
        request_id: str,
    ) -> None:
        """Ledger a ``refused`` entry (cost 0) if it is the first of its minute for this
        consumer and reason, with how many before it were not; a failure to ledger is
        logged (the refusal stands)."""
        ledgered, unledgered = self._should_ledger(principal.consumer_id, reason)
        if not ledgered:
            return
        try:
            await run_in_threadpool(
                stored_limits.record_refusal,
                db,
                consumer_id=principal.consumer_id,
                consumer=principal.name,
                dataset=dataset,
                reason=reason,
                details={**details, "unledgered_before": unledgered},
                request_id=request_id,
            )
        except Exception as exc:  # the refusal stands even if it cannot be ledgered
            log.error("could not ledger a %s refusal", reason, exc_info=exc)


def get_limiter(request: Request) -> Limiter:
    """The process's :class:`Limiter` (created with the app)."""
    limiter: Limiter = request.app.state.limiter
    return limiter
