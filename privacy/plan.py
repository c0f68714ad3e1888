"""Plan a query (cost, accuracy, measurement) from public metadata, then execute it on data.

:func:`plan_query` never reads data: it validates the query, compiles one OpenDP
measurement over an empty frame with the public schema, and reads the privacy
loss from OpenDP's privacy map and the noise from OpenDP's ``summarize``. A
preview is exactly a plan. :func:`execute` applies the row-wise filters and our
per-unit truncation (:mod:`privacy.truncation`) to the real data, invokes the
measurement once and lays the noisy values out on the public key product.

Privacy, end to end: the released values are ``M(T(F(D)))`` where ``F`` are the
row-wise ``where`` filters (and dropping rows whose unit, keys or value are
missing), ``T`` the per-unit truncation to ``k`` groups × ``c`` rows, and ``M``
the OpenDP measurement, which is ε-DP (ρ-zCDP) at ``d_in = [Bound(by=group_by,
per_group=c, num_groups=k)]``. ``F`` and ``T`` map each unit's rows to rows of
that unit only, within those bounds, so ``M ∘ T ∘ F`` is ε-DP (ρ-zCDP) with
respect to adding or removing all rows of one privacy unit. The layout of the
rows is post-processing on public keys.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from typing import Any

import opendp.prelude as dp
import polars as pl

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
from privacy.metadata import DatasetMetadata, iso
from privacy.query import (
    AccuracyTarget,
    EpsilonLoss,
    PrivacyModel,
    QueryRequest,
    ResolvedFilter,
    ResolvedQuery,
    RhoLoss,
    resolve_query,
)
from privacy.truncation import truncate_contributions

DEFAULT_ALPHA = 0.05
MAX_ACCURACY_FIRST_COST = Decimal(10_000)
"""Accuracy targets that would cost more than this (ε or ρ) are refused."""
COST_SIGNIFICANT_DIGITS = 4
COST_QUANTUM = Decimal("1e-12")
"""Costs carry at most 12 decimal places, like budgets."""
PLAN_CACHE_SIZE = 256


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


class _PlanCache:
    """A thread-safe LRU of plans; concurrent requests for one key compile it once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[str, ...], Plan] = OrderedDict()
        self._building: dict[tuple[str, ...], threading.Lock] = {}

    def get_or_build(self, key: tuple[str, ...], build: Callable[[], Plan]) -> Plan:
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._plans:
                    return self._plans[key]
            try:
                plan = build()
            finally:
                with self._lock:
                    self._building.pop(key, None)
            with self._lock:
                self._plans[key] = plan
                while len(self._plans) > self._size:
                    self._plans.popitem(last=False)
            return plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans)


_CACHE = _PlanCache(PLAN_CACHE_SIZE)


def clear_plan_cache() -> None:
    """Forget every compiled plan (tests; metadata changes are keyed anyway)."""
    _CACHE.clear()


def plan_cache_size() -> int:
    """How many compiled plans the LRU holds."""
    return len(_CACHE)


def round_up_cost(loss: float) -> Decimal:
    """``loss`` rounded up to 4 significant digits (and to at most 12 decimal places)."""
    exact = Decimal(loss)
    quantum = max(Decimal(1).scaleb(exact.adjusted() - COST_SIGNIFICANT_DIGITS + 1), COST_QUANTUM)
    return exact.quantize(quantum, rounding=ROUND_CEILING)


def _check_model(query: ResolvedQuery, model: PrivacyModel) -> None:
    if isinstance(query.privacy, EpsilonLoss) and model != "pure":
        raise InvalidQuery("the budget on this dataset is zCDP: state the cost as "
                           "{'rho': ...}, not {'epsilon': ...}")
    if isinstance(query.privacy, RhoLoss) and model != "zcdp":
        raise InvalidQuery("the budget on this dataset is pure ε-DP: state the cost as "
                           "{'epsilon': ...}, not {'rho': ...}")


def _unit_name(model: PrivacyModel) -> str:
    return "epsilon" if model == "pure" else "rho"


def _accuracy_first(builder: MeasurementBuilder, target: AccuracyTarget,
                    model: PrivacyModel) -> tuple[Decimal, dp.Measurement]:
    """The smallest 4-significant-digit cost whose OpenDP accuracy meets ``target``."""
    needed_scale = builder.scale_for_accuracy(target.max_error, target.alpha)
    needed_loss = builder.loss(builder.build(needed_scale))
    cost = round_up_cost(needed_loss)
    if cost > MAX_ACCURACY_FIRST_COST:
        raise InvalidQuery(f"max_error={target.max_error} at alpha={target.alpha} would cost "
                           f"{_unit_name(model)}≈{cost:.4g}, more than the limit of "
                           f"{MAX_ACCURACY_FIRST_COST}; ask for a larger max_error")
    for _ in range(16):
        measurement = builder.build(builder.solve_scale(float_at_most(cost)))
        (component,) = builder.summarize(measurement, target.alpha)
        if component.error_bound is not None and component.error_bound <= target.max_error:
            return cost, measurement
        step = Decimal(1).scaleb(cost.adjusted() - COST_SIGNIFICANT_DIGITS + 1)
        cost += max(step, COST_QUANTUM)
    raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")


def _compile(query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel,
             alpha: float) -> Plan:
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
            quantile_candidates(query.bounds, query.column_type))
    return Plan(
        canonical=query.canonical(),
        model=model,
        cost=cost,
        opendp_loss=loss,
        mechanism=primary.mechanism,
        noise_scale=primary.scale,
        accuracy=Accuracy(alpha=alpha, error_bound=error_bound),
        columns=[*query.group_by, "value"],
        epsilon_delta=(builder.epsilon_delta(measurement, metadata.delta)
                       if model == "zcdp" else None),
        bounds_used=bounds_used,
        measurement=measurement,
        components=components,
        query=query,
        metadata=metadata,
    )


def plan_query(query: QueryRequest, metadata: DatasetMetadata, model: PrivacyModel, *,
               alpha: float = DEFAULT_ALPHA) -> Plan:
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
    """
    resolved = resolve_query(query, metadata)
    _check_model(resolved, model)
    canonical = resolved.canonical()
    metadata_digest = hashlib.sha256(metadata.model_dump_json().encode()).hexdigest()
    key = (metadata_digest, json.dumps(canonical, sort_keys=True), model, repr(float(alpha)))
    plan = _CACHE.get_or_build(key, lambda: _compile(resolved, metadata, model, alpha))
    return replace(plan, canonical=copy.deepcopy(plan.canonical), columns=list(plan.columns),
                   bounds_used=copy.deepcopy(plan.bounds_used))


def _filter_expression(flt: ResolvedFilter, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(flt.column)
    if flt.op == "in":
        return column.is_in(pl.Series(list(flt.typed), dtype=dtype).implode())
    if flt.op == "between":
        low, high = flt.typed
        return column.is_between(pl.lit(low, dtype=dtype), pl.lit(high, dtype=dtype),
                                 closed="both")
    value = pl.lit(flt.typed, dtype=dtype)
    comparisons = {
        "eq": column.eq, "lt": column.lt, "le": column.le, "gt": column.gt, "ge": column.ge,
    }
    return comparisons[flt.op](value)


def prepare_frame(plan: Plan, data: pl.LazyFrame) -> pl.LazyFrame:
    """The truncated frame the plan's measurement takes (lazy; see the module docstring).

    Applies the ``where`` filters, drops rows whose unit is null, whose group
    keys are not public keys, or whose value is null/NaN (sum, mean,
    quantile), keeps the unit, group and value columns, and truncates each
    unit's contributions. All steps are row-wise or per unit.
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    unit = metadata.privacy_unit
    frame = data
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
    frame = frame.filter(pl.all_horizontal(conditions))
    schema = truncated_schema(query, metadata)
    frame = frame.select([
        pl.col(unit).cast(pl.String),
        *(pl.col(name).cast(schema[name]) for name in query.group_by),
        *([pl.col(query.column).cast(schema[VALUE_COLUMN]).alias(VALUE_COLUMN)]
          if query.column is not None else []),
    ])
    return truncate_contributions(
        frame, unit=unit, by=query.group_by,
        max_groups=query.max_partitions_contributed,
        max_rows_per_group=query.max_contributions_per_partition,
    )


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


def execute(plan: Plan, data: pl.LazyFrame) -> list[list[Any]]:
    """Run the plan's measurement once on ``data`` (a :func:`~privacy.data.load_frame` frame).

    Returns one row ``[key_1, ..., value]`` per combination of public keys of
    ``group_by`` (in declared key order, dates as ISO strings, values as
    floats), including combinations without data; ``[[value]]`` without
    grouping. The set and order of rows depend only on public metadata. The
    guarantee is the plan's (see the module docstring).
    """
    query, metadata = plan.query, plan.metadata
    assert query is not None and metadata is not None
    truncated = prepare_frame(plan, data).collect()
    released = plan.measurement(truncated.lazy()).collect()
    if not query.group_by:
        if released.height != 1:
            raise ReleaseFailed("the release does not have exactly one row")
        return [[_post_process(plan, released.get_column(VALUE_COLUMN)[0])]]
    by = list(query.group_by)
    values = {
        tuple(row[:-1]): row[-1]
        for row in released.select([*by, VALUE_COLUMN]).iter_rows()
    }
    rows: list[list[Any]] = []
    for combination in itertools.product(*(metadata.columns[n].typed_keys() for n in by)):
        if combination not in values:
            raise ReleaseFailed("the release lacks a public key combination")
        rows.append([*(iso(k) for k in combination),
                     _post_process(plan, values[combination])])
    return rows
