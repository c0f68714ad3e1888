"""Plan a query (cost, accuracy, measurement) from public metadata, then execute it on data.

:func:`plan_query` never reads data: it validates the query, compiles one OpenDP
measurement over an empty frame with the public schema, and reads the privacy
loss from OpenDP's privacy map and the noise from OpenDP's ``summarize``. A
preview is exactly a plan. :func:`execute` applies the row-wise filters and our
per-unit truncation (:mod:`privacy.truncation`) to the real data, invokes the
measurement once and lays the noisy values out on the public key product. The
filters are carried as a mask through the truncation rather than applied by
dropping rows first, so that the work does not depend on how many rows they
match (:func:`masked_frame`; "Timing" in :mod:`privacy.truncation`).

Privacy, end to end: the released values are ``M(T(F(D)))`` where ``F`` are the
row-wise ``where`` filters (and dropping rows whose unit, keys or value are
missing), ``T`` the per-unit truncation to ``k`` groups × ``c`` rows, and ``M``
the OpenDP measurement, which is ε-DP (ρ-zCDP) at ``d_in = [Bound(by=group_by,
per_group=c, num_groups=k)]``. ``F`` and ``T`` map each unit's rows to rows of
that unit only, within those bounds, so ``M ∘ T ∘ F`` is ε-DP (ρ-zCDP) with
respect to adding or removing all rows of one privacy unit. The layout of the
rows is post-processing on public keys.

Automatic bounds (``"auto"``; :mod:`privacy.auto`, where the rule and the
privacy argument are written out): the plan splits the cost exactly between
small DP selection releases and the statistic, and :func:`execute` runs the
selection first, chooses the bounds by post-processing, and releases the
statistic at them; by sequential composition the total loss is the sum of
OpenDP's maps, checked to be ≤ the cost.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

import opendp.prelude as dp
import polars as pl

from privacy.accounting import zcdp_to_epsilon_delta
from privacy.auto import (
    NOISE_ONLY,
    ClampSelection,
    ContributionSelection,
    plan_clamp_selection,
    plan_contribution_selection,
    split_cost,
)
from privacy.compile import (
    VALUE_COLUMN,
    MeasurementBuilder,
    NoiseComponent,
    float_at_most,
    quantile_candidates,
    truncated_schema,
)
from privacy.data import dtype_of
from privacy.errors import InvalidQuery, ReleaseFailed
from privacy.metadata import AUTO, DatasetMetadata, iso
from privacy.query import (
    AccuracyTarget,
    EpsilonLoss,
    PrivacyModel,
    PrivacyRequest,
    QueryRequest,
    ResolvedFilter,
    ResolvedQuery,
    RhoLoss,
    resolve_query,
)
from privacy.truncation import (
    matching_counts,
    truncate_contributions,
    unit_group_counts,
    unit_profile,
)

DEFAULT_ALPHA = 0.05
MAX_ACCURACY_FIRST_COST = Decimal(10_000)
"""Accuracy targets that would cost more than this (ε or ρ) are refused."""
COST_SIGNIFICANT_DIGITS = 4
COST_QUANTUM = Decimal("1e-12")
"""Costs carry at most 12 decimal places, like budgets."""
PLAN_CACHE_SIZE = 256
PLAN_CACHE_BYTES = 256 * 2**20
"""Default bound on the estimated bytes of cached plans (the API sets RUIS_PLAN_CACHE_BYTES)."""
PLAN_BASE_BYTES = 64 * 1024
PLAN_BYTES_PER_CELL = 64
PLAN_BYTES_PER_CANDIDATE = 1024
QUANTILE_CANDIDATES_ESTIMATE = 128
MATCH_COLUMN = "__ruis_match__"
"""The mask column of :func:`masked_frame`: the row passes the filters."""


@dataclass(frozen=True)
class Accuracy:
    """Per-cell accuracy: |released − exact (truncated) value| ≤ ``error_bound`` w.p. 1 − ``alpha``.

    ``error_bound`` is what OpenDP's ``summarize(alpha)`` reports for the noisy
    aggregate. It is None for ``quantile`` (the exponential/Gumbel selection's
    error is in ranks of the private data, not a data-independent value) and
    for ``mean`` (its error depends on the private row count ``n`` of the cell:
    with the sum and count bounds ``a_s``, ``a_n`` of :attr:`Plan.components`,
    each holding w.p. 1 − α, the mean's error is at most
    ``(a_s + max(|L|, |U|)·a_n) / (n − a_n)`` w.p. 1 − 2α when ``n > a_n``).
    """

    alpha: float
    error_bound: float | None
    error_bound_range: tuple[float, float] | None = None
    """With automatic bounds, before the choice: the bound at the smallest and at the
    largest candidates (``error_bound`` is then the largest)."""

    @property
    def covers(self) -> str:
        """What the bound covers: noise only, never truncation or clamping bias."""
        return NOISE_ONLY


@dataclass(frozen=True, eq=False)
class AutoPlan:
    """The automatic part of a plan: the cost split, the candidates and the selection steps.

    ``selection_cost`` + ``statistic_cost`` = the plan's cost exactly; the
    selection cost is split between ``contribution`` and ``clamp`` (those
    present). ``candidates`` is the JSON-able list of public candidates.
    ``noise_scale_range`` / the plan's ``accuracy.error_bound_range`` are the
    statistic's noise at the smallest and at the largest candidates, at
    ``statistic_cost``. See :mod:`privacy.auto` for the rule and the privacy
    argument.
    """

    share: Decimal
    selection_cost: Decimal
    statistic_cost: Decimal
    contribution: ContributionSelection | None
    clamp: ClampSelection | None
    candidates: dict[str, Any]
    noise_scale_range: tuple[float, float]

    def selection_steps(self) -> list[dict[str, Any]]:
        """The selection measurements (what they choose, their cost, mechanism, noise scale).

        The clamp step's noise scale depends on the contribution bounds chosen
        first; it is shown at the largest candidates.
        """
        steps: list[dict[str, Any]] = []
        if self.contribution is not None:
            solved = self.contribution.solved
            steps.append(
                {
                    "chooses": "contribution_bounds",
                    "cost": self.contribution.cost,
                    "mechanism": solved.mechanism,
                    "noise_scale": solved.scale,
                    "opendp_privacy_loss": solved.loss,
                }
            )
        if self.clamp is not None:
            widest = self.clamp.solved_at_most_rows()
            steps.append(
                {
                    "chooses": "clamp",
                    "cost": self.clamp.cost,
                    "mechanism": widest.mechanism,
                    "noise_scale": widest.scale,
                    "opendp_privacy_loss": widest.loss,
                }
            )
        return steps


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`execute` released: the rows and how they were computed.

    ``mechanism``, ``noise_scale``, ``accuracy`` and ``components`` describe
    the statistic as actually compiled (with automatic bounds: at the bounds
    chosen). ``bounds_chosen`` is None for fixed bounds; ``selection`` holds what
    the selection measurements released (DP values) and the rule's scores.
    ``opendp_loss`` is the sum of OpenDP's privacy maps of every measurement
    invoked, ≤ the plan's cost. Iterating over it (and ``len``, indexing)
    goes over ``rows``.
    """

    rows: list[list[Any]]
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    components: tuple[NoiseComponent, ...]
    opendp_loss: float
    bounds_chosen: dict[str, Any] | None = None
    selection: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> list[Any]:
        return self.rows[index]


@dataclass(frozen=True, eq=False)
class Plan:
    """A compiled query: what it costs, how accurate it is, and the OpenDP measurement.

    ``cost`` is what to debit, in the budget's unit (ε for ``pure``, ρ for
    ``zcdp``); ``opendp_loss`` is OpenDP's privacy map of the measurement at
    the declared contribution bounds and is ≤ ``cost``. ``mechanism`` and
    ``noise_scale`` describe the released aggregate (for ``mean``, its sum;
    every noisy aggregate is listed in ``components``; for ``quantile`` the
    scale is in OpenDP's integer score units, which are multiplied by the
    denominator of ``q`` as a binary fraction, so q = 0.1 shows a huge scale
    with the same utility). ``epsilon_delta`` is the
    (ε, δ)-DP equivalent at the dataset's δ for zCDP plans, None for pure ones.

    With automatic bounds (``auto`` is set), ``cost`` is the TOTAL (selection
    plus statistic), ``opendp_loss`` the selection's maps plus the statistic's
    at the largest candidates, and ``measurement``, ``mechanism``,
    ``noise_scale``, ``accuracy`` and ``components`` are the statistic's at the
    largest candidates (the worst case; ``accuracy.error_bound_range`` gives
    the range): :func:`execute` reports those at the bounds it chooses.
    """

    canonical: dict[str, Any]
    model: PrivacyModel
    cost: Decimal
    opendp_loss: float
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    columns: list[str]
    epsilon_delta: tuple[float, float] | None
    bounds_used: dict[str, Any]
    measurement: dp.Measurement = field(repr=False)
    components: tuple[NoiseComponent, ...] = ()
    query: ResolvedQuery | None = field(default=None, repr=False)
    metadata: DatasetMetadata | None = field(default=None, repr=False)
    auto: AutoPlan | None = field(default=None, repr=False)


class _PlanCache:
    """A thread-safe LRU of plans bounded in count and in estimated bytes; concurrent
    requests for one key compile it once.

    A plan's size is estimated from public sizes only (:func:`plan_bytes`); the
    least recently used plans are evicted while the total passes ``max_bytes``,
    and a plan larger than ``max_bytes`` on its own is returned but not kept.
    """

    def __init__(self, size: int, max_bytes: int = PLAN_CACHE_BYTES) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._total_bytes = 0
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[str, ...], tuple[Plan, int]] = OrderedDict()
        self._building: dict[tuple[str, ...], threading.Lock] = {}

    def get_or_build(self, key: tuple[str, ...], build: Callable[[], Plan]) -> Plan:
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key][0]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._plans:
                    return self._plans[key][0]
            try:
                plan = build()
            finally:
                with self._lock:
                    self._building.pop(key, None)
            size = plan_bytes(plan)
            with self._lock:
                if size <= self._max_bytes:
                    self._plans[key] = (plan, size)
                    self._total_bytes += size
                self._evict()
            return plan

    def _evict(self) -> None:
        while self._plans and (
            len(self._plans) > self._size or self._total_bytes > self._max_bytes
        ):
            _, (_, size) = self._plans.popitem(last=False)
            self._total_bytes -= size

    def set_max_bytes(self, max_bytes: int) -> None:
        """Bound the estimated bytes held (evicting at once if over)."""
        with self._lock:
            self._max_bytes = max_bytes
            self._evict()

    @property
    def nbytes(self) -> int:
        """The estimated bytes of the plans held."""
        with self._lock:
            return self._total_bytes

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()
            self._total_bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans)


def plan_bytes(plan: Plan) -> int:
    """An upper estimate of the memory ``plan`` holds, from public sizes only.

    The measurement holds the public key product (``cells`` rows of the
    ``group_by`` columns) and, for quantiles, its candidates; an automatic plan
    also its selection candidates. ``PLAN_BYTES_PER_CELL`` per cell and column
    over-estimates what was measured (README, "Limits").
    """
    query = plan.query
    cells = query.cells if query is not None else 1
    columns = len(query.group_by) + 1 if query is not None else 1
    candidates = sum(
        len(v) if isinstance(v, list) else 1
        for v in (plan.auto.candidates.values() if plan.auto else ())
    )
    if query is not None and query.statistic == "quantile":
        candidates += QUANTILE_CANDIDATES_ESTIMATE
    return (
        PLAN_BASE_BYTES
        + cells * columns * PLAN_BYTES_PER_CELL
        + candidates * PLAN_BYTES_PER_CANDIDATE
    )


_CACHE = _PlanCache(PLAN_CACHE_SIZE)


def set_plan_cache_bytes(max_bytes: int) -> None:
    """Bound the plan cache to ``max_bytes`` estimated bytes (``RUIS_PLAN_CACHE_BYTES``)."""
    _CACHE.set_max_bytes(max_bytes)


def clear_plan_cache() -> None:
    """Forget every compiled plan (tests; metadata changes are keyed anyway)."""
    _CACHE.clear()


def plan_cache_size() -> int:
    """How many compiled plans the LRU holds."""
    return len(_CACHE)


def plan_cache_bytes() -> int:
    """The estimated bytes of the plans the LRU holds (at most its byte bound)."""
    return _CACHE.nbytes


def round_up_cost(loss: float | Decimal) -> Decimal:
    """``loss`` rounded up to 4 significant digits (and to at most 12 decimal places)."""
    exact = Decimal(loss)
    quantum = max(Decimal(1).scaleb(exact.adjusted() - COST_SIGNIFICANT_DIGITS + 1), COST_QUANTUM)
    return exact.quantize(quantum, rounding=ROUND_CEILING)


def _check_model(query: ResolvedQuery, model: PrivacyModel) -> None:
    if isinstance(query.privacy, EpsilonLoss) and model != "pure":
        raise InvalidQuery(
            "the budget on this dataset is zCDP: state the cost as "
            "{'rho': ...}, not {'epsilon': ...}"
        )
    if isinstance(query.privacy, RhoLoss) and model != "zcdp":
        raise InvalidQuery(
            "the budget on this dataset is pure ε-DP: state the cost as "
            "{'epsilon': ...}, not {'rho': ...}"
        )


def _unit_name(model: PrivacyModel) -> str:
    return "epsilon" if model == "pure" else "rho"


def _accuracy_first(
    builder: MeasurementBuilder, target: AccuracyTarget, model: PrivacyModel
) -> tuple[Decimal, dp.Measurement]:
    """The smallest 4-significant-digit cost whose OpenDP accuracy meets ``target``."""
    needed_scale = builder.scale_for_accuracy(target.max_error, target.alpha)
    needed_loss = builder.loss(builder.build(needed_scale))
    cost = round_up_cost(needed_loss)
    if cost > MAX_ACCURACY_FIRST_COST:
        raise InvalidQuery(
            f"max_error={target.max_error} at alpha={target.alpha} would cost "
            f"{_unit_name(model)}≈{cost:.4g}, more than the limit of "
            f"{MAX_ACCURACY_FIRST_COST}; ask for a larger max_error"
        )
    for _ in range(16):
        measurement = builder.build(builder.solve_scale(float_at_most(cost)))
        (component,) = builder.summarize(measurement, target.alpha)
        if component.error_bound is not None and component.error_bound <= target.max_error:
            return cost, measurement
        step = Decimal(1).scaleb(cost.adjusted() - COST_SIGNIFICANT_DIGITS + 1)
        cost += max(step, COST_QUANTUM)
    raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")


def _compile(
    query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    builder = MeasurementBuilder(query, metadata, model)
    privacy = query.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        cost, measurement = _accuracy_first(builder, privacy, model)
    else:
        cost = privacy.epsilon if isinstance(privacy, EpsilonLoss) else privacy.rho
        measurement = builder.build(builder.solve_scale(float_at_most(cost)))
    loss = builder.loss(measurement)
    if not loss <= float_at_most(cost):  # OpenDP's map must not exceed what we debit
        raise InvalidQuery(f"OpenDP reports a privacy loss {loss} above the cost {cost}")
    components = tuple(builder.summarize(measurement, alpha))
    primary = next((c for c in components if c.aggregate != "count"), components[0])
    error_bound = primary.error_bound if query.statistic not in ("mean", "quantile") else None
    bounds_used: dict[str, Any] = {
        "max_partitions_contributed": query.max_partitions_contributed,
        "max_contributions_per_partition": query.max_contributions_per_partition,
        "clamp": list(query.bounds) if query.bounds is not None else None,
        "max_rows": metadata.max_rows if query.column is not None else None,
    }
    if query.statistic == "quantile":
        assert query.bounds is not None and query.column_type is not None
        bounds_used["quantile_candidates"] = len(
            quantile_candidates(query.bounds, query.column_type)
        )
    return Plan(
        canonical=query.canonical(),
        model=model,
        cost=cost,
        opendp_loss=loss,
        mechanism=primary.mechanism,
        noise_scale=primary.scale,
        accuracy=Accuracy(alpha=alpha, error_bound=error_bound),
        columns=[*query.group_by, "value"],
        epsilon_delta=(
            builder.epsilon_delta(measurement, metadata.delta) if model == "zcdp" else None
        ),
        bounds_used=bounds_used,
        measurement=measurement,
        components=components,
        query=query,
        metadata=metadata,
    )


def plan_query(
    query: QueryRequest,
    metadata: DatasetMetadata,
    model: PrivacyModel,
    *,
    alpha: float = DEFAULT_ALPHA,
) -> Plan:
    """Validate and compile ``query`` into a :class:`Plan`, from public metadata only.

    Never opens the data file (a preview is just this). Privacy unit: one
    ``metadata.privacy_unit``, whose contributions execute truncates to ``k``
    groups × ``c`` rows per group. Sensitivity and noise come from OpenDP:
    ``count`` k·c (ℓ1) / √k·c (ℓ2), ``unit_count`` k / √k, ``sum`` the same
    times max(|L|, |U|) (plus OpenDP's float rounding allowance), ``mean`` a
    sum and a count sharing the cost, ``quantile`` OpenDP's rank score.
    Mechanisms: discrete Laplace / Laplace under ``pure``, discrete Gaussian /
    Gaussian under ``zcdp``, exponential / Gumbel selection for quantiles. For
    an explicit cost, ``Plan.cost`` is exactly the requested amount and
    OpenDP's map is checked to be ≤ it; for an accuracy target, the cost is the
    smallest found, rounded up to 4 significant digits, and the plan at that
    cost meets ``max_error`` at ``alpha``. ``alpha`` sets the reported accuracy
    for explicit costs. Raises :class:`InvalidQuery`. Plans are cached (LRU).
    Automatic bounds: see :func:`_compile_auto` (the selection's measurements
    are part of the cached plan).
    """
    resolved = resolve_query(query, metadata)
    _check_model(resolved, model)
    plan = _cached_plan(resolved, metadata, model, alpha)
    return replace(
        plan,
        canonical=copy.deepcopy(plan.canonical),
        columns=list(plan.columns),
        bounds_used=copy.deepcopy(plan.bounds_used),
    )


def _cached_plan(
    resolved: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """The plan of ``resolved`` from the LRU, compiled once (keyed by shape and cost)."""
    canonical = resolved.canonical()
    key = (metadata.digest, json.dumps(canonical, sort_keys=True), model, repr(float(alpha)))
    compile_plan = _compile_auto if resolved.auto is not None else _compile
    return _CACHE.get_or_build(key, lambda: compile_plan(resolved, metadata, model, alpha))


def _loss_of(model: PrivacyModel, amount: Decimal) -> PrivacyRequest:
    return EpsilonLoss(epsilon=amount) if model == "pure" else RhoLoss(rho=amount)


def _compile_auto(
    query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """Plan a query with automatic bounds (see :mod:`privacy.auto`), from public metadata.

    Explicit cost ``C``: the selection steps get ``floor(share · C)`` between them,
    the statistic the exact rest. Accuracy target: the statistic's cost is the
    smallest at which the target holds at the LARGEST candidates (hence, noise
    growing with the bounds, at every candidate), and the total is that divided
    by ``1 − share``, rounded up to 4 significant digits (the selection gets the
    rest). The plan's ``measurement``, ``noise_scale`` and ``accuracy`` are the
    statistic's at the largest candidates, the worst case; the bounds actually
    used are chosen by :func:`execute`.
    """
    auto = query.auto
    assert auto is not None
    k_max, c_max = query.max_partitions_contributed, query.max_contributions_per_partition
    widest = query.bounds
    parts = (auto.partitions is not None or auto.contributions is not None) + (
        auto.clamp is not None
    )
    privacy = query.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        needed = _cached_plan(
            query.with_bounds(k_max, c_max, widest, privacy), metadata, model, alpha
        ).cost
        total = round_up_cost(needed / (1 - auto.share))
        pieces, statistic_cost = split_cost(total, auto.share, parts)
        while statistic_cost < needed:  # not expected: total·(1 − share) ≥ needed
            total += max(
                Decimal(1).scaleb(total.adjusted() - COST_SIGNIFICANT_DIGITS + 1), COST_QUANTUM
            )
            pieces, statistic_cost = split_cost(total, auto.share, parts)
        if total > MAX_ACCURACY_FIRST_COST:
            raise InvalidQuery(
                f"max_error={privacy.max_error} at alpha={privacy.alpha} would "
                f"cost {_unit_name(model)}≈{total:.4g}, more than the limit of "
                f"{MAX_ACCURACY_FIRST_COST}; ask for a larger max_error"
            )
    else:
        total = privacy.epsilon if isinstance(privacy, EpsilonLoss) else privacy.rho
        pieces, statistic_cost = split_cost(total, auto.share, parts)
    statistic_privacy = _loss_of(model, statistic_cost)
    worst = _cached_plan(
        query.with_bounds(k_max, c_max, widest, statistic_privacy), metadata, model, alpha
    )
    smallest = query.with_bounds(
        auto.partitions[0] if auto.partitions is not None else k_max,
        auto.contributions[0] if auto.contributions is not None else c_max,
        auto.clamp.bounds(0) if auto.clamp is not None else widest,
        statistic_privacy,
    )
    best = _cached_plan(smallest, metadata, model, alpha)
    if isinstance(privacy, AccuracyTarget) and not (
        worst.accuracy.error_bound is not None and worst.accuracy.error_bound <= privacy.max_error
    ):
        raise InvalidQuery(f"could not find a cost meeting max_error={privacy.max_error}")
    contribution = (
        plan_contribution_selection(query, metadata, model, pieces[0], statistic_cost)
        if auto.partitions is not None or auto.contributions is not None
        else None
    )
    clamp = (
        plan_clamp_selection(query, metadata, model, pieces[-1], statistic_cost)
        if auto.clamp is not None
        else None
    )
    selection_loss = (contribution.solved.loss if contribution is not None else 0.0) + (
        clamp.for_rows(k_max * c_max).loss if clamp is not None else 0.0
    )
    if not Decimal(selection_loss) + Decimal(worst.opendp_loss) <= total:
        raise InvalidQuery("OpenDP reports a privacy loss above the cost")
    candidates: dict[str, Any] = {}
    if auto.partitions is not None:
        candidates["max_partitions_contributed"] = list(auto.partitions)
    if auto.contributions is not None:
        candidates["max_contributions_per_partition"] = list(auto.contributions)
    if auto.clamp is not None:
        candidates["clamp"] = [list(b) for b in auto.clamp.all_bounds()]
    ranges = (best.accuracy.error_bound, worst.accuracy.error_bound)
    error_range = (
        (ranges[0], ranges[1]) if ranges[0] is not None and ranges[1] is not None else None
    )
    bounds_used = copy.deepcopy(worst.bounds_used)
    bounds_used.update(
        {
            "max_partitions_contributed": AUTO if auto.partitions is not None else k_max,
            "max_contributions_per_partition": AUTO if auto.contributions is not None else c_max,
            "clamp": AUTO if auto.clamp is not None else bounds_used["clamp"],
            "candidates": candidates,
        }
    )
    return Plan(
        canonical=query.canonical(),
        model=model,
        cost=total,
        opendp_loss=selection_loss + worst.opendp_loss,
        mechanism=worst.mechanism,
        noise_scale=worst.noise_scale,
        accuracy=Accuracy(
            alpha=alpha, error_bound=worst.accuracy.error_bound, error_bound_range=error_range
        ),
        columns=list(worst.columns),
        epsilon_delta=(
            (zcdp_to_epsilon_delta(float(total), metadata.delta), metadata.delta)
            if model == "zcdp"
            else None
        ),
        bounds_used=bounds_used,
        measurement=worst.measurement,
        components=worst.components,
        query=query,
        metadata=metadata,
        auto=AutoPlan(
            share=auto.share,
            selection_cost=total - statistic_cost,
            statistic_cost=statistic_cost,
            contribution=contribution,
            clamp=clamp,
            candidates=candidates,
            noise_scale_range=(best.noise_scale, worst.noise_scale),
        ),
    )


def _filter_expression(flt: ResolvedFilter, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(flt.column)
    if flt.op == "in":
        return column.is_in(pl.Series(list(flt.typed), dtype=dtype).implode())
    if flt.op == "between":
        low, high = flt.typed
        return column.is_between(pl.lit(low, dtype=dtype), pl.lit(high, dtype=dtype), closed="both")
    value = pl.lit(flt.typed, dtype=dtype)
    comparisons = {
        "eq": column.eq,
        "lt": column.lt,
        "le": column.le,
        "gt": column.gt,
        "ge": column.ge,
    }
    return comparisons[flt.op](value)


def prepare_frame(plan: Plan, data: pl.LazyFrame) -> pl.LazyFrame:
    """The truncated frame the plan's measurement takes (lazy; see the module docstring).

    ``T(F(D))``: the rows :func:`filtered_frame` keeps, truncated per unit. The
    filters are applied as a mask (:func:`masked_frame`) carried through the
    truncation, so the work runs over every row of ``data`` whatever the
    filters match; the result is the same multiset of rows as truncating the
    filtered frame.
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    return truncate_contributions(
        masked_frame(query, metadata, data),
        unit=metadata.privacy_unit,
        by=query.group_by,
        max_groups=query.max_partitions_contributed,
        max_rows_per_group=query.max_contributions_per_partition,
        mask=MATCH_COLUMN,
    )


def masked_frame(
    query: ResolvedQuery, metadata: DatasetMetadata, data: pl.LazyFrame
) -> pl.LazyFrame:
    """Every row of ``data``, with the unit, group and value columns and the mask ``MATCH_COLUMN``.

    ``MATCH_COLUMN`` (Boolean, never null) is true exactly for the rows
    :func:`filtered_frame` keeps: those matching the ``where`` filters, with a
    unit, group keys among the public keys, and (sum, mean, quantile) a value
    that is not null/NaN. Row-wise only; no row is dropped, so what follows
    works on as many rows as the file has, whatever the filters match.
    """
    unit = metadata.privacy_unit
    conditions: list[pl.Expr] = [
        _filter_expression(f, dtype_of(metadata.columns[f.column].type)) for f in query.filters
    ]
    conditions.append(pl.col(unit).is_not_null())
    for name in query.group_by:
        spec = metadata.columns[name]
        keys = pl.Series(spec.typed_keys(), dtype=dtype_of(spec.type))
        conditions.append(pl.col(name).is_in(keys.implode()))
    if query.column is not None:
        conditions.append(pl.col(query.column).is_not_null())
        if query.column_type == "float":
            conditions.append(pl.col(query.column).is_not_nan())
    schema = truncated_schema(query, metadata)
    return data.select(
        [
            pl.col(unit).cast(pl.String),
            *(pl.col(name).cast(schema[name]) for name in query.group_by),
            *(
                [pl.col(query.column).cast(schema[VALUE_COLUMN]).alias(VALUE_COLUMN)]
                if query.column is not None
                else []
            ),
            pl.all_horizontal(conditions).fill_null(False).alias(MATCH_COLUMN),
        ]
    )


def filtered_frame(
    query: ResolvedQuery, metadata: DatasetMetadata, data: pl.LazyFrame
) -> pl.LazyFrame:
    """The rows a query looks at, before truncation (lazy; row-wise only): ``F(D)``.

    Applies the ``where`` filters, drops rows whose unit is null, whose group
    keys are not public keys, or whose value is null/NaN (sum, mean,
    quantile), and keeps the unit, group and value columns. Releases do not
    use it (they carry :func:`masked_frame`'s mask instead, so that their work
    does not shrink with the matches); it states what the mask selects.
    """
    return masked_frame(query, metadata, data).filter(pl.col(MATCH_COLUMN)).drop(MATCH_COLUMN)


def _post_process(plan: Plan, value: Any) -> float:
    """A released value as a finite float (data-independent post-processing only).

    A noisy mean is a ratio of noisy sum and noisy count and can fall outside
    the clamping bounds (or be ±inf/NaN when the noisy count is ≤ 0): it is
    clamped to the bounds, NaN mapped to their midpoint.
    """
    number = float(value)
    query = plan.query
    assert query is not None
    if query.statistic == "mean":
        assert query.bounds is not None
        low, high = float(query.bounds[0]), float(query.bounds[1])
        if math.isnan(number):
            return (low + high) / 2
        return min(max(number, low), high)
    if not math.isfinite(number):
        raise ReleaseFailed("the release produced a non-finite value")
    return number


def execute(plan: Plan, data: pl.LazyFrame) -> ReleaseResult:
    """Run the plan once on ``data`` (a :func:`~privacy.data.load_frame` frame).

    The result's rows are one ``[key_1, ..., value]`` per combination of public
    keys of ``group_by`` (in declared key order, dates as ISO strings, values as
    floats), including combinations without data; ``[[value]]`` without
    grouping. The set and order of rows depend only on public metadata. The
    guarantee is the plan's (see the module docstring). With automatic bounds
    the selection measurements run first and the statistic is then released at
    the bounds chosen (see :mod:`privacy.auto`); the result says which, and the
    statistic's noise and accuracy there.
    """
    if plan.auto is not None:
        return _execute_auto(plan, data)
    truncated = prepare_frame(plan, data).collect(engine="streaming")
    released = plan.measurement(truncated.lazy()).collect()
    return ReleaseResult(
        rows=_layout(plan, released),
        mechanism=plan.mechanism,
        noise_scale=plan.noise_scale,
        accuracy=plan.accuracy,
        components=plan.components,
        opendp_loss=plan.opendp_loss,
    )


def _execute_auto(plan: Plan, data: pl.LazyFrame) -> ReleaseResult:
    """Select the bounds with DP, then release the statistic at them (one data pass).

    The per-(unit, group) row counts are computed once and shared by the
    profile and the truncation.
    """
    query, metadata, auto = plan.query, plan.metadata, plan.auto
    assert query is not None and metadata is not None and auto is not None
    unit, by = metadata.privacy_unit, list(query.group_by)
    k, c = query.max_partitions_contributed, query.max_contributions_per_partition
    clamp_bounds = query.bounds
    frame = masked_frame(query, metadata, data)
    losses: list[float] = []
    selection: dict[str, Any] = {}
    counts: pl.LazyFrame | None = None
    contribution = auto.contribution
    if contribution is not None:
        if query.column is not None:  # read once, then profile and truncate
            frame = frame.collect().lazy()
        counts = (
            unit_group_counts(frame, unit=unit, by=by, mask=MATCH_COLUMN)
            .collect(engine="streaming")
            .lazy()
        )
        profile = unit_profile(
            matching_counts(counts),
            unit=unit,
            by=by,
            max_groups=contribution.fixed_partitions,
            group_limit=contribution.group_limit,
            row_limit=contribution.row_limit,
            groups_column=contribution.groups_column,
            rows_column=contribution.rows_column,
        )
        released = contribution.solved.measurement(profile).collect()
        losses.append(contribution.solved.loss)
        chosen = contribution.choose(released)
        k, c = chosen.k, chosen.c
        selection["contribution_bounds"] = {
            "columns": [
                name
                for name in (contribution.groups_column, contribution.rows_column)
                if name is not None
            ],
            "histogram": chosen.histogram,
            "scores": chosen.scores,
            "mechanism": contribution.solved.mechanism,
            "noise_scale": contribution.solved.scale,
            "opendp_privacy_loss": contribution.solved.loss,
        }
    truncated = truncate_contributions(
        frame,
        unit=unit,
        by=by,
        max_groups=k,
        max_rows_per_group=c,
        counts=counts,
        mask=MATCH_COLUMN,
    ).collect()
    clamp = auto.clamp
    if clamp is not None:
        solved = clamp.for_rows(k * c)
        bins = truncated.lazy().select(clamp.bin_expression(VALUE_COLUMN))
        released = solved.measurement(bins).collect()
        losses.append(solved.loss)
        clamp_choice = clamp.choose(released, k, c)
        clamp_bounds = clamp_choice.bounds
        selection["clamp"] = {
            "candidates": [list(b) for b in clamp.candidates.all_bounds()],
            "histogram": clamp_choice.histogram,
            "scores": clamp_choice.scores,
            "mechanism": solved.mechanism,
            "noise_scale": solved.scale,
            "opendp_privacy_loss": solved.loss,
        }
    statistic = _cached_plan(
        query.with_bounds(k, c, clamp_bounds, _loss_of(plan.model, auto.statistic_cost)),
        metadata,
        plan.model,
        plan.accuracy.alpha,
    )
    spent = sum((Decimal(loss) for loss in losses), Decimal(statistic.opendp_loss))
    if not spent <= plan.cost:
        raise ReleaseFailed("the privacy losses of the selection and the statistic exceed the cost")
    released = statistic.measurement(truncated.lazy()).collect()
    chosen_bounds: dict[str, Any] = {
        "max_partitions_contributed": k,
        "max_contributions_per_partition": c,
        "clamp": list(clamp_bounds) if clamp_bounds else None,
    }
    return ReleaseResult(
        rows=_layout(statistic, released),
        mechanism=statistic.mechanism,
        noise_scale=statistic.noise_scale,
        accuracy=statistic.accuracy,
        components=statistic.components,
        opendp_loss=float(spent),
        bounds_chosen=chosen_bounds,
        selection=selection,
    )


def _layout(plan: Plan, released: pl.DataFrame) -> list[list[Any]]:
    """The released values on the public key product (post-processing)."""
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    if not query.group_by:
        if released.height != 1:
            raise ReleaseFailed("the release does not have exactly one row")
        return [[_post_process(plan, released.get_column(VALUE_COLUMN)[0])]]
    by = list(query.group_by)
    values = {tuple(row[:-1]): row[-1] for row in released.select([*by, VALUE_COLUMN]).iter_rows()}
    rows: list[list[Any]] = []
    for combination in itertools.product(*(metadata.columns[n].typed_keys() for n in by)):
        if combination not in values:
            raise ReleaseFailed("the release lacks a public key combination")
        rows.append([*(iso(k) for k in combination), _post_process(plan, values[combination])])
    return rows
