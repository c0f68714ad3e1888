"""Compile a resolved query into a :class:`~privacy.results.Plan`, from public metadata only.

:func:`plan_query` never reads data: it validates the query
(:func:`~privacy.query.resolve_query`), checks the privacy model, and compiles
one OpenDP measurement over an empty frame with the public schema
(:class:`~privacy.measurement.MeasurementBuilder`), reading the privacy loss
from OpenDP's privacy map and the noise from OpenDP's ``summarize``. A preview
is exactly a plan. Plans are kept in :mod:`privacy.plan_cache`. A query with
automatic bounds is compiled by :func:`privacy.auto.compile_auto`, which calls
back :func:`cached_plan` for the statistic at fixed bounds.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from privacy.accounting import epsilon_delta_of
from privacy.accuracy_first import (
    accuracy_first,
    check_cost_limit,
    mean_error_at_rows,
    rollup_accuracy_first,
)
from privacy.amount import UNIT_OF, PrivacyAmount, PrivacyModel, float_at_least, float_at_most
from privacy.auto import compile_auto
from privacy.errors import InvalidQuery
from privacy.kept import TRUNCATION_SHARE, can_drop, plan_truncation, split_truncation_cost
from privacy.measurement import MeasurementBuilder, NoiseComponent, quantile_candidates
from privacy.metadata import DatasetMetadata
from privacy.plan_cache import cached_plan as _from_cache
from privacy.quantile_accuracy import rank_error_rows
from privacy.query import (
    AccuracyTarget,
    QueryRequest,
    ResolvedQuery,
    explicit_cost,
    resolve_query,
)
from privacy.results import NOISE_AND_BIAS, Accuracy, KeySelection, Plan, RollupPlan
from privacy.rollup import family_sizes, level_accuracy, rollup_columns
from privacy.spark_engine import check_plan_supported as check_spark_plan
from privacy.spark_engine import check_supported as check_spark_supported

DEFAULT_ALPHA = 0.05
_SEARCH_STEPS = 16
_BUDGET_NAMES: dict[PrivacyModel, str] = {"pure": "pure ε-DP", "zcdp": "zCDP"}


def check_model(query: ResolvedQuery, model: PrivacyModel) -> None:
    """Refuse (:class:`InvalidQuery`) an explicit cost stated in the other model's unit, and
    a grouping with private keys under a pure budget."""
    if query.private_keys and model == "pure":
        shown = ", ".join(repr(name) for name in query.private_keys)
        raise InvalidQuery(
            f"group_by {shown} has private keys: selecting the released keys from the data "
            "can reveal a key held by one unit with a small probability δ > 0, which pure "
            "ε-DP (δ = 0) cannot allow. Grouping on private keys needs a zCDP budget on this "
            "dataset (the dataset's delta bounds δ), or declare the column's public keys"
        )
    if isinstance(query.privacy, AccuracyTarget):
        return
    asked = query.privacy.amount()
    if asked.model != model:
        raise InvalidQuery(
            f"the budget on this dataset is {_BUDGET_NAMES[model]}: state the cost as "
            f"{{'{UNIT_OF[model]}': ...}}, not {{'{asked.unit}': ...}}"
        )


def value_columns(query: ResolvedQuery) -> list[str]:
    """The released columns after the keys: ``value``, and for ``mean`` its ``lower``, ``upper``."""
    return ["value", "lower", "upper"] if query.statistic == "mean" else ["value"]


def planned_accuracy(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    components: tuple[NoiseComponent, ...],
    alpha: float,
) -> Accuracy:
    """The plan's :class:`Accuracy` from OpenDP's ``summarize`` (public values only).

    count/sum: OpenDP's error bound at ``alpha`` (``unit_location``: covering the truth, nothing
    is dropped). ``mean``: for an accuracy
    target with ``min_cell_rows`` the bound at that many rows
    (:func:`~privacy.accuracy_first.mean_error_at_rows`), else None (the release
    states per-cell intervals). ``quantile``: ``rank_error_bound`` in rows
    (:func:`~privacy.quantile_accuracy.rank_error_rows`) at OpenDP's scale.
    """
    primary = next((c for c in components if c.aggregate != "count"), components[0])
    if query.statistic == "mean":
        privacy = query.privacy
        bound = (
            mean_error_at_rows(query, components, privacy)
            if isinstance(privacy, AccuracyTarget)
            else None
        )
        return Accuracy(alpha=alpha, error_bound=bound)
    if query.statistic == "quantile":
        assert query.bounds is not None and query.column_type is not None
        assert query.q is not None and metadata.max_rows is not None
        rank = rank_error_rows(
            primary.scale,
            len(quantile_candidates(query.bounds, query.column_type)),
            alpha,
            query.q,
            metadata.max_rows,
        )
        return Accuracy(alpha=alpha, error_bound=None, rank_error_bound=rank)
    if query.location is not None:  # nothing is bounded or dropped: the noise is all
        return Accuracy(
            alpha=alpha,
            error_bound=primary.error_bound,
            covers=NOISE_AND_BIAS,
            noise_error_bound=primary.error_bound,
            bias_bound=0.0,
        )
    return Accuracy(alpha=alpha, error_bound=primary.error_bound)


def compile_plan(
    query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """The plan of ``query`` at fixed bounds (no ``auto``), from public metadata only.

    Privacy unit, sensitivity and mechanism are the
    :class:`~privacy.measurement.MeasurementBuilder`'s. For an explicit cost
    the measurement is compiled at the global scale whose OpenDP map is at most
    the float below the cost, and ``Plan.cost`` is exactly the requested
    amount; for an accuracy target, the cost is :func:`~privacy.accuracy_first.accuracy_first`'s.
    Either way OpenDP's map is checked to be ≤ the cost (else
    :class:`InvalidQuery`).
    """
    builder = MeasurementBuilder(query, metadata, model)
    if query.rollup is not None:
        return _compile_rollup(builder, metadata, alpha)
    privacy = query.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        cost, measurement = accuracy_first(builder, privacy)
    else:
        cost = privacy.amount()
        scale = builder.solve_scale(cost.float_at_most())
        threshold = (
            builder.solve_threshold(scale, metadata.delta) if builder.key_selection else None
        )
        measurement = builder.build(scale, threshold)
    loss = builder.loss(measurement)
    if not loss <= cost.float_at_most():  # OpenDP's map must not exceed what we debit
        raise InvalidQuery(f"OpenDP reports a privacy loss {loss} above the cost {cost.value}")
    components = tuple(builder.summarize(measurement, alpha))
    key_selection = _key_selection(builder, measurement, components, metadata)
    primary = next((c for c in components if c.aggregate != "count"), components[0])
    accuracy = planned_accuracy(query, metadata, components, alpha)
    return _plan(
        builder,
        metadata,
        cost=cost,
        loss=loss,
        primary=primary,
        accuracy=accuracy,
        columns=[*query.group_by, *value_columns(query)],
        measurement=measurement,
        components=components,
        key_selection=key_selection,
    )


def _plan(
    builder: MeasurementBuilder,
    metadata: DatasetMetadata,
    *,
    cost: PrivacyAmount,
    loss: float,
    primary: NoiseComponent,
    accuracy: Accuracy,
    columns: list[str],
    measurement: Any,
    components: tuple[NoiseComponent, ...],
    key_selection: KeySelection | None = None,
    rollup: RollupPlan | None = None,
) -> Plan:
    """The :class:`Plan` of ``builder``'s query at ``cost`` (OpenDP's ``loss`` checked ≤ it):
    what every compiled plan states the same way."""
    query = builder.query
    return Plan(
        canonical=query.canonical(),
        model=builder.model,
        cost=cost.value,
        opendp_loss=loss,
        mechanism=primary.mechanism,
        noise_scale=primary.scale,
        accuracy=accuracy,
        columns=columns,
        epsilon_delta=epsilon_delta_of(cost, metadata.delta),
        bounds_used=_bounds_used(query, metadata),
        measurement=measurement,
        components=components,
        query=query,
        metadata=metadata,
        fixed_point=builder.fixed_point,
        key_selection=key_selection,
        rollup=rollup,
    )


def _key_selection(
    builder: MeasurementBuilder,
    measurement: Any,
    components: tuple[NoiseComponent, ...],
    metadata: DatasetMetadata,
) -> KeySelection | None:
    """With private keys: OpenDP's threshold (from ``summarize``) and δ (from its map),
    checked against the dataset's ``delta`` (public values only)."""
    if not builder.key_selection:
        return None
    thresholds = {c.threshold for c in components if c.threshold is not None}
    if len(thresholds) != 1:
        raise InvalidQuery("OpenDP reports no single key-selection threshold for this query")
    delta = builder.delta(measurement)
    if not delta <= metadata.delta:  # OpenDP's δ must not exceed the dataset's
        raise InvalidQuery(f"OpenDP reports δ = {delta} above the dataset's delta")
    return KeySelection(columns=builder.query.private_keys, threshold=thresholds.pop(), delta=delta)


def _compile_rollup(builder: MeasurementBuilder, metadata: DatasetMetadata, alpha: float) -> Plan:
    """:func:`compile_plan` of a rollup: the child and parent measurements at one global
    scale (:mod:`privacy.hierarchy`), whose OpenDP maps SUM to at most the cost
    (sequential composition, checked exactly); accuracy per level after consistency
    (:mod:`privacy.rollup`)."""
    query = builder.query
    rollup = query.rollup
    assert rollup is not None
    families = family_sizes(rollup, metadata)
    privacy = query.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        cost, scale = rollup_accuracy_first(builder, privacy, families)
    else:
        cost = privacy.amount()
        scale = builder.solve_scale(cost.float_at_most())
    child, parent = builder.build(scale), builder.build_parent(scale)
    loss = builder.total_loss(scale)
    if not loss <= cost.value:  # OpenDP's maps must not exceed what we debit
        raise InvalidQuery(f"OpenDP reports a privacy loss {loss} above the cost {cost.value}")
    components = tuple(builder.summarize(child, alpha))
    parent_components = tuple(builder.summarize(parent, alpha))
    accuracy = level_accuracy(
        query, components[0], parent_components[0], builder.fixed_point, families, alpha
    )
    return _plan(
        builder,
        metadata,
        cost=cost,
        loss=float_at_least(loss),
        primary=components[0],
        accuracy=accuracy,
        columns=rollup_columns(query),
        measurement=child,
        components=components,
        rollup=RollupPlan(
            measurement=parent,
            components=parent_components,
            loss=builder.loss(parent),
            families=families,
        ),
    )


def _bounds_used(query: ResolvedQuery, metadata: DatasetMetadata) -> dict[str, Any]:
    bounds_used: dict[str, Any] = {
        "max_partitions_contributed": query.max_partitions_contributed,
        "max_contributions_per_partition": query.max_contributions_per_partition,
        "clamp": list(query.bounds) if query.bounds is not None else None,
        "max_rows": metadata.max_rows if query.column is not None else None,
    }
    if query.location is not None:  # one row per unit, at its most frequent value
        bounds_used["unit_location"] = query.location
    if query.bounds_per:  # k and c hold per value of these columns
        bounds_used["contribution_bounds_per"] = list(query.bounds_per)
    if query.statistic == "quantile":
        assert query.bounds is not None and query.column_type is not None
        bounds_used["quantile_candidates"] = len(
            quantile_candidates(query.bounds, query.column_type)
        )
    return bounds_used


def cached_plan(
    resolved: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """The plan of the STATISTIC of ``resolved`` from the LRU, compiled once (keyed by shape
    and cost): all of the cost goes to the statistic (and, with automatic bounds, to the
    selection); :func:`release_plan` adds the estimate of what the bounds drop.

    The key is the metadata's digest, the canonical query, the model and
    ``alpha``: everything the plan depends on, all public.
    """
    canonical = resolved.canonical()
    key = (metadata.digest, json.dumps(canonical, sort_keys=True), model, repr(float(alpha)))
    if resolved.auto is not None:
        return _from_cache(
            key, lambda: compile_auto(resolved, metadata, model, alpha, compile_fixed=cached_plan)
        )
    return _from_cache(key, lambda: compile_plan(resolved, metadata, model, alpha))


def _smallest_k(resolved: ResolvedQuery) -> int:
    auto = resolved.auto
    if auto is not None and auto.partitions is not None:
        return auto.partitions[0]
    return resolved.max_partitions_contributed


def _statistic_within(
    resolved: ResolvedQuery,
    metadata: DatasetMetadata,
    model: PrivacyModel,
    alpha: float,
    total: PrivacyAmount,
) -> Plan:
    """The statistic's plan at what ``total`` leaves after the truncation estimate."""
    try:
        _, rest = split_truncation_cost(total)
    except ValueError:
        raise InvalidQuery(
            f"the cost {total.value} is too small to spend a share of it on "
            "estimating what the contribution bounds drop"
        ) from None
    return cached_plan(replace(resolved, privacy=explicit_cost(rest)), metadata, model, alpha)


def _one_step_less(amount: PrivacyAmount) -> PrivacyAmount:
    value = amount.value
    return PrivacyAmount(amount.model, value - Decimal(1).scaleb(value.adjusted() - 3))


def _target_bound(resolved: ResolvedQuery, plan: Plan, target: AccuracyTarget) -> float | None:
    """The bound an accuracy target is held to: the plan's; for a mean, at the target's
    ``min_cell_rows`` (a plan at an explicit cost states none)."""
    if resolved.statistic == "mean":
        return mean_error_at_rows(resolved, plan.components, target)
    return plan.accuracy.error_bound


def _smallest_total(
    resolved: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, target: AccuracyTarget
) -> tuple[PrivacyAmount, Plan]:
    """The smallest 4-significant-digit total whose statistic (at what the truncation
    estimate leaves) meets ``target``, and that statistic's plan.

    Starts from the statistic's own accuracy-first cost ``X`` divided by
    ``1 − TRUNCATION_SHARE``; steps up until the target is met, then down while it
    still is (noise falls as the cost grows, so the first total met from below is
    the smallest).
    """
    needed = cached_plan(resolved, metadata, model, target.alpha).amount

    def meets(plan: Plan) -> bool:
        bound = _target_bound(resolved, plan, target)
        return bound is not None and bound <= target.max_error

    total = PrivacyAmount(model, needed.value / (1 - TRUNCATION_SHARE)).rounded_up()
    statistic = _statistic_within(resolved, metadata, model, target.alpha, total)
    for _ in range(_SEARCH_STEPS):
        if meets(statistic):
            break
        total = total.step_up()
        statistic = _statistic_within(resolved, metadata, model, target.alpha, total)
    else:
        raise InvalidQuery(f"could not find a cost meeting max_error={target.max_error}")
    for _ in range(_SEARCH_STEPS):
        lower = _one_step_less(total)
        try:
            cheaper = _statistic_within(resolved, metadata, model, target.alpha, lower)
        except InvalidQuery:
            break
        if not meets(cheaper):
            break
        total, statistic = lower, cheaper
    check_cost_limit(target, total)
    return total, statistic


def compile_release(
    resolved: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """The plan of a release: the statistic (:func:`cached_plan`) and, where the bounds can
    drop or clamp data (:func:`privacy.kept.can_drop`), the truncation estimate.

    Explicit cost ``C``: the truncation measurements get ``floor(TRUNCATION_SHARE · C)``
    (to 12 decimals) and the statistic (with automatic bounds: selection and statistic)
    the exact rest. Accuracy target: the smallest 4-significant-digit total, split so,
    whose statistic meets the target (:func:`_smallest_total`; the target is on the
    noise, which is all a data-independent quote can know). Either way the parts sum
    to the cost exactly, and OpenDP's maps of all measurements are checked to sum to at
    most it.
    """
    if resolved.private_keys or not can_drop(resolved, _smallest_k(resolved)):
        # with private keys no truncation estimate: the released cells are the selected
        # keys only, so their sum is not the kept total the estimate starts from
        return cached_plan(resolved, metadata, model, alpha)
    privacy = resolved.privacy
    if isinstance(privacy, AccuracyTarget):
        alpha = privacy.alpha
        total, statistic = _smallest_total(resolved, metadata, model, privacy)
    else:
        total = privacy.amount()
        statistic = _statistic_within(resolved, metadata, model, alpha, total)
    truncation_cost = total - statistic.amount
    truncation = plan_truncation(resolved, truncation_cost, metadata.max_rows)
    loss = Decimal(statistic.opendp_loss) + truncation.opendp_loss_at_most
    if not loss <= total.value:
        raise InvalidQuery(f"OpenDP reports a privacy loss {loss} above the cost {total.value}")
    accuracy = statistic.accuracy
    if isinstance(privacy, AccuracyTarget) and resolved.statistic == "mean":
        accuracy = replace(accuracy, error_bound=_target_bound(resolved, statistic, privacy))
    return replace(
        statistic,
        accuracy=accuracy,
        canonical=resolved.canonical(),
        cost=total.value,
        opendp_loss=float_at_most(loss),
        epsilon_delta=epsilon_delta_of(total, metadata.delta),
        query=resolved,
        truncation=truncation,
        statistic_loss=statistic.opendp_loss,
    )


def cached_release_plan(
    resolved: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel, alpha: float
) -> Plan:
    """:func:`compile_release` from the LRU (its key is :func:`cached_plan`'s, tagged)."""
    canonical = resolved.canonical()
    key = (
        "release",
        metadata.digest,
        json.dumps(canonical, sort_keys=True),
        model,
        repr(float(alpha)),
    )
    return _from_cache(key, lambda: compile_release(resolved, metadata, model, alpha))


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
    cost meets ``max_error`` at ``alpha`` (a ``mean``: for every cell with at
    least ``min_cell_rows`` rows). ``alpha`` sets the reported accuracy
    for explicit costs. Raises :class:`InvalidQuery`. Plans are cached (LRU).
    Automatic bounds: see :func:`privacy.auto.compile_auto` (the selection's
    measurements are part of the cached plan). A dataset on the Spark engine refuses what
    that engine lacks (:func:`privacy.spark_engine.check_supported`,
    :func:`~privacy.spark_engine.check_plan_supported`).
    """
    resolved = resolve_query(query, metadata)
    check_model(resolved, model)
    if metadata.engine == "spark":  # what that engine lacks: a 422 before anything is spent
        check_spark_supported(resolved, metadata)
    plan = cached_release_plan(resolved, metadata, model, alpha)
    if metadata.engine == "spark":  # its noise: integers only (a float sum in fixed point)
        check_spark_plan(plan)
    return replace(
        plan,
        canonical=copy.deepcopy(plan.canonical),
        columns=list(plan.columns),
        bounds_used=copy.deepcopy(plan.bounds_used),
    )
