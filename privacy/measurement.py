"""The OpenDP measurement of a resolved query, built from public metadata only.

The measurement takes the *truncated* frame (see :mod:`privacy.truncation`):
columns ``[privacy unit, *group_by, VALUE_COLUMN]``, where each unit has rows
in at most ``k`` groups and at most ``c`` rows per group (with
``contribution_bounds_per``: per value of those columns, see
:func:`contribution_bounds`). OpenDP is told exactly that, as
``dp.unit_of(contributions=[Bound(by=group_by, per_group=c, num_groups=k)])``
over ``FrameDistance(SymmetricDistance)``, and it derives the
sensitivity, calibrates the noise and reports the privacy loss (``map``) and
the noise (``summarize``). Nothing here samples noise or proves privacy.

Margins carry only ``max_length`` (the public ``max_rows``), never
``invariant`` (opendp#2945: ``max_length`` sensitivity is off with invariant
margins). Grouped releases join the public key product (``with_keys``), so the
released rows never depend on the data — except a grouping on columns with private keys
(``"keys": "private"``): there OpenDP selects the released keys itself, keeping a group when
its noisy row count reaches a threshold, under ``Approximate(ZeroConcentratedDivergence)``
(ρ, δ); see :meth:`MeasurementBuilder.solve_threshold`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

import numpy as np
import opendp.prelude as dp
import polars as pl
from opendp.extras.polars import Bound, DPExpr, Margin, dp_len

from privacy.amount import PrivacyModel
from privacy.data import dtype_of
from privacy.errors import InvalidQuery
from privacy.hierarchy import parent_expression, rollup_contribution_bounds
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery, Rollup

dp.enable_features("contrib")


def _register_polars_dispatch() -> None:
    """Let polars register its DataFrame-from-sequence constructors now, in one thread.

    polars registers them with :func:`functools.singledispatch` on first use (for
    a sequence of Series: in OpenDP's accuracy summary of every plan). On Python
    3.11 a registration while another thread dispatches raises ``RuntimeError:
    dictionary changed size during iteration``, so the first concurrent queries
    of a fresh worker process failed with a 500 now and then. Registering at
    import, before any request, closes that window.
    """
    pl.DataFrame([pl.Series("warm_up", [0])])
    pl.DataFrame([np.zeros(1)])


_register_polars_dispatch()

VALUE_COLUMN = "ruis.value"
"""Name of the aggregated column in the truncated frame, and of the released aggregate."""
MAX_QUANTILE_CANDIDATES = 128
MAX_OPENDP_ROWS = 2**32 - 1
"""OpenDP's margins count rows in a u32."""
_SEARCH_STEPS = 64
MAX_THRESHOLD = 2**32 - 1
"""OpenDP's largest key-selection threshold (a u32): used while solving the scale, as
OpenDP's own ``LazyFrameQuery.resolve`` does, so that the threshold does not interfere."""
MIN_THRESHOLD = 2
"""OpenDP's smallest key-selection threshold ("threshold must be greater than 1")."""
_SEARCHED_THRESHOLD = 2**31 - 1
"""The largest threshold OpenDP's integer ``binary_search`` (over i32) can search."""

_MECHANISMS = {
    "Integer Laplace": "discrete_laplace",
    "Float Laplace": "laplace",
    "Integer Gaussian": "discrete_gaussian",
    "Float Gaussian": "gaussian",
    "ExponentialMin": "exponential",
    "ExponentialMax": "exponential",
    "GumbelMin": "report_noisy_max_gumbel",
    "GumbelMax": "report_noisy_max_gumbel",
}

_ACCURACY_TO_SCALE: dict[str, Callable[[float, float], float]] = {
    "Integer Laplace": dp.accuracy_to_discrete_laplacian_scale,
    "Float Laplace": dp.accuracy_to_laplacian_scale,
    "Integer Gaussian": dp.accuracy_to_discrete_gaussian_scale,
    "Float Gaussian": dp.accuracy_to_gaussian_scale,
}

_OPENDP_TYPES = {
    pl.String: "String",
    pl.Int64: "i64",
    pl.Float64: "f64",
    pl.Date: "NaiveDate",
}


@dataclass(frozen=True)
class NoiseComponent:
    """One noisy aggregate of a release, as OpenDP's ``summarize`` reports it.

    ``aggregate`` is ``count``, ``sum`` or ``quantile`` (a mean has a ``sum``
    and a ``count``); ``scale`` the noise scale of ``mechanism``; ``error_bound``
    the half-width OpenDP reports at significance ``alpha`` (None for quantiles,
    whose selection error has no data-independent bound in value terms).
    """

    aggregate: str
    distribution: str
    mechanism: str
    scale: float
    error_bound: float | None
    threshold: int | None = None
    """With private keys: the key-selection threshold OpenDP's ``summarize`` reports (a group
    is released when this aggregate's noisy value is at least it)."""


_SCALE_TO_ACCURACY: dict[str, Callable[[float, float], float]] = {
    "Integer Laplace": dp.discrete_laplacian_scale_to_accuracy,
    "Float Laplace": dp.laplacian_scale_to_accuracy,
    "Integer Gaussian": dp.discrete_gaussian_scale_to_accuracy,
    "Float Gaussian": dp.gaussian_scale_to_accuracy,
}


def scale_to_accuracy(distribution: str, scale: float, alpha: float) -> float | None:
    """OpenDP's (1 − α) error bound of ``distribution`` at ``scale`` (None when it has none)."""
    convert = _SCALE_TO_ACCURACY.get(distribution)
    return float(convert(scale, alpha)) if convert is not None else None


def mechanism_name(distribution: str) -> str:
    """Our name for an OpenDP distribution, e.g. ``Integer Laplace`` → ``discrete_laplace``."""
    return _MECHANISMS.get(distribution, distribution.lower().replace(" ", "_"))


def _aggregate_name(aggregate: str) -> str:
    if "Quantile" in aggregate:
        return "quantile"
    if "Length" in aggregate or aggregate == "Count":
        return "count"
    return aggregate.lower()


def quantile_candidates(
    bounds: tuple[float, float] | tuple[int, int], column_type: str
) -> list[float] | list[int]:
    """Up to 128 evenly spaced candidates covering the public bounds (integers for integers)."""
    low, high = bounds
    if column_type == "integer":
        lo, hi = int(low), int(high)
        if hi - lo + 1 <= MAX_QUANTILE_CANDIDATES:
            return list(range(lo, hi + 1))
        spaced = np.linspace(lo, hi, MAX_QUANTILE_CANDIDATES)
        return sorted({round(float(v)) for v in spaced})
    return [float(v) for v in np.linspace(float(low), float(high), MAX_QUANTILE_CANDIDATES)]


class MeasurementBuilder:
    """Builds the OpenDP measurement of one resolved query at a given global noise scale.

    Privacy unit: one ``metadata.privacy_unit``, bounded by our truncation to
    ``k`` groups × ``c`` rows per group (``d_in`` below); neighbouring datasets
    differ by adding or removing one unit's rows. Output measure:
    ``MaxDivergence`` (pure ε-DP, Laplace family) or
    ``ZeroConcentratedDivergence`` (ρ-zCDP, Gaussian family).
    """

    def __init__(
        self, query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel
    ) -> None:
        self.query = query
        self.model = model
        self.fixed_point = fixed_point_scale(query, metadata) if model == "pure" else None
        self.schema = measurement_schema(query, metadata, self.fixed_point)
        self.key_selection = bool(query.private_keys)
        """The grouping has private keys: OpenDP selects the released keys (ρ, δ)."""
        self.measure = (
            dp.approximate(output_measure(model)) if self.key_selection else output_measure(model)
        )
        group_by = list(query.group_by)
        k, c = query.max_partitions_contributed, query.max_contributions_per_partition
        contributions = query_contribution_bounds(query, k, c)
        if query.rollup is not None:
            contributions = rollup_contribution_bounds(query, query.rollup, contributions, k, c)
        self.metric, self.d_in = dp.unit_of(contributions=contributions)
        domain = dp.lazyframe_domain(
            [
                dp.series_domain(
                    name, dp.option_domain(dp.atom_domain(T=_OPENDP_TYPES[type(dtype)]))
                )
                for name, dtype in self.schema.items()
            ]
        )
        if query.statistic in ("sum", "mean", "quantile"):
            max_rows = metadata.max_rows
            assert max_rows is not None  # checked by resolve_query
            if max_rows > MAX_OPENDP_ROWS:
                raise InvalidQuery(
                    f"max_rows={max_rows} is more than OpenDP's limit of "
                    f"{MAX_OPENDP_ROWS} rows for {query.statistic}"
                )
            margins = [Margin(by=[], max_length=max_rows)]
            if group_by:
                margins.append(Margin(by=group_by, max_length=max_rows))
            if query.rollup is not None:
                parent_by = list(query.rollup.parent_group_by(query.group_by))
                margins.append(Margin(by=parent_by, max_length=max_rows))
            for margin in margins:
                domain = dp.with_margin(domain, margin)
        self.domain = domain
        self.plan = _polars_plan(query, metadata, self.schema, self.fixed_point, query.group_by)
        self.parent_plan = (
            _polars_plan(
                query,
                metadata,
                self.schema,
                self.fixed_point,
                query.rollup.parent_group_by(query.group_by),
            )
            if query.rollup is not None
            else None
        )

    def build(self, scale: float, threshold: int | None = None) -> dp.Measurement:
        """The measurement with OpenDP's ``global_scale`` set to ``scale`` (with private keys,
        and OpenDP's key-selection ``threshold``: by default :data:`MAX_THRESHOLD`)."""
        if self.key_selection and threshold is None:
            threshold = MAX_THRESHOLD
        return private_lazyframe(
            self.domain,
            self.metric,
            self.measure,
            self.plan,
            scale,
            what="this query",
            threshold=threshold if self.key_selection else None,
        )

    def delta(self, measurement: dp.Measurement) -> float:
        """With private keys: the δ of OpenDP's privacy map (ρ, δ) at our ``d_in``."""
        return float(measurement.map(self.d_in)[1])

    def solve_threshold(self, scale: float, delta: float) -> int:
        """With private keys: the smallest threshold at which OpenDP's map at ``scale`` has
        δ ≤ ``delta`` (OpenDP's binary search over integers; δ falls as the threshold
        grows). OpenDP computes δ: the probability, over its noise, that a group one unit
        alone could create reaches the threshold (summed over the groups a unit can
        reach). Raises :class:`InvalidQuery` when no threshold reaches it."""
        if self.delta(self.build(scale, _SEARCHED_THRESHOLD)) > delta:
            raise InvalidQuery(
                f"no key-selection threshold reaches the dataset's delta {delta}: OpenDP's δ "
                "at the largest threshold is above it"
            )
        if self.delta(self.build(scale, MIN_THRESHOLD)) <= delta:
            return MIN_THRESHOLD
        return int(
            dp.binary_search(
                lambda t: self.delta(self.build(scale, int(t))) <= delta,
                bounds=(MIN_THRESHOLD, _SEARCHED_THRESHOLD),
                T=int,
            )
        )

    def build_parent(self, scale: float) -> dp.Measurement:
        """A rollup's parent-level measurement at ``global_scale`` ``scale``: the same
        input (domain, metric, ``d_in``), grouped by the parent grouping
        (:mod:`privacy.hierarchy`)."""
        assert self.parent_plan is not None
        return private_lazyframe(
            self.domain, self.metric, self.measure, self.parent_plan, scale, what="this rollup"
        )

    def loss(self, measurement: dp.Measurement) -> float:
        """The privacy loss OpenDP's privacy map reports at our ``d_in`` (with private keys:
        the ρ of its (ρ, δ))."""
        loss = measurement.map(self.d_in)
        return float(loss[0] if self.key_selection else loss)

    def total_loss(self, scale: float) -> Decimal:
        """The exact sum of OpenDP's maps at ``scale`` of every measurement a release
        invokes: the statistic's, and a rollup's parent level's (sequential
        composition: both run once on the same truncated frame)."""
        total = Decimal(float(self.build(scale).map(self.d_in)))
        if self.parent_plan is not None:
            total += Decimal(float(self.build_parent(scale).map(self.d_in)))
        return total

    def solve_scale(self, target_loss: float) -> float:
        """A global scale whose privacy map is ≤ ``target_loss`` (checked by OpenDP's map).

        Starts from the scale the map at scale 1 suggests (loss ∝ 1/scale under
        pure DP, ∝ 1/scale² under zCDP), then only increases it until OpenDP's
        map agrees; falls back to OpenDP's binary search. For a rollup the map is
        the SUM of both levels' maps (:meth:`total_loss`).
        """
        if self.key_selection:  # the map is (ρ, δ): solve ρ at the largest threshold
            return solve_total_scale(
                lambda scale: Decimal(self.loss(self.build(scale))), target_loss, self.model
            )
        if self.parent_plan is None:
            return solve_global_scale(self.build, self.d_in, target_loss, self.model)
        return solve_total_scale(self.total_loss, target_loss, self.model)

    def summarize(self, measurement: dp.Measurement, alpha: float) -> list[NoiseComponent]:
        """Per-aggregate noise as OpenDP's ``summarize_polars_measurement`` reports it."""
        frame = cast(pl.DataFrame, dp.summarize_polars_measurement(measurement, alpha))
        components: list[NoiseComponent] = []
        for row in frame.iter_rows(named=True):
            distribution = str(row["distribution"])
            accuracy = row.get("accuracy")
            if accuracy is not None and not math.isnan(accuracy):
                # OpenDP reports -inf when the noise is (numerically) never non-zero
                accuracy = max(float(accuracy), 0.0)
            if accuracy is not None and not math.isfinite(accuracy):
                accuracy = None
            aggregate = _aggregate_name(str(row["aggregate"]))
            threshold = row.get("threshold")
            # a fixed-point sum is in units of 1/S of the column: report column units
            unit = float(self.fixed_point) if self.fixed_point and aggregate == "sum" else 1.0
            components.append(
                NoiseComponent(
                    aggregate=aggregate,
                    distribution=distribution,
                    mechanism=mechanism_name(distribution),
                    scale=float(row["scale"]) / unit,
                    error_bound=float(accuracy) / unit if accuracy is not None else None,
                    threshold=int(threshold) if threshold is not None else None,
                )
            )
        return components

    def scale_for_accuracy(self, max_error: float, alpha: float) -> float:
        """The largest global scale whose (single) aggregate error at ``alpha`` is ≤ ``max_error``.

        Uses OpenDP's ``accuracy_to_*_scale`` for the distribution ``summarize``
        reports, then checks with ``summarize`` itself.
        """
        scale = 1.0
        for _ in range(6):
            (component,) = self.summarize(self.build(scale), alpha)
            convert = _ACCURACY_TO_SCALE.get(component.distribution)
            if convert is None:
                raise InvalidQuery(f"no accuracy-first support for {component.mechanism}")
            wanted = float(convert(max_error, alpha))
            if not (math.isfinite(wanted) and wanted > 0):
                raise InvalidQuery(f"max_error={max_error} cannot be reached at alpha={alpha}")
            if math.isclose(component.scale, wanted, rel_tol=1e-12):
                break
            scale = scale * wanted / component.scale
        for step in range(_SEARCH_STEPS):
            (component,) = self.summarize(self.build(scale), alpha)
            assert component.error_bound is not None
            if component.error_bound <= max_error:
                return scale
            scale = scale * (1.0 - 2.0 ** (step - 52))
        raise InvalidQuery(f"could not find a noise scale meeting max_error={max_error}")


def output_measure(model: PrivacyModel) -> dp.Measure:
    """OpenDP's privacy measure of ``model``: ``MaxDivergence`` (pure ε-DP) or
    ``ZeroConcentratedDivergence`` (ρ-zCDP)."""
    return dp.max_divergence() if model == "pure" else dp.zero_concentrated_divergence()


def private_lazyframe(
    domain: dp.Domain,
    metric: dp.Metric,
    measure: dp.Measure,
    lazyframe: pl.LazyFrame,
    scale: float,
    *,
    what: str,
    threshold: int | None = None,
) -> dp.Measurement:
    """OpenDP's ``make_private_lazyframe`` of ``lazyframe`` at global scale ``scale``.

    OpenDP derives the sensitivity from ``domain`` and ``metric`` and
    calibrates the noise; a query OpenDP cannot build is refused with
    :class:`InvalidQuery` ("OpenDP cannot build ``what``: ..."). ``threshold``: OpenDP's
    key-selection threshold for a grouping without public keys (None otherwise).
    """
    try:
        return dp.m.make_private_lazyframe(
            input_domain=domain,
            input_metric=metric,
            output_measure=measure,
            lazyframe=lazyframe,
            global_scale=scale,
            threshold=threshold,
        )
    except dp.OpenDPException as exc:
        raise InvalidQuery(f"OpenDP cannot build {what}: {opendp_message(exc)}") from None


def predicted_scale(loss_at_scale_one: float, target_loss: float, model: PrivacyModel) -> float:
    """The global scale at which a measurement whose map is ``loss_at_scale_one`` at scale 1
    has loss ``target_loss``: loss ∝ 1/scale under pure DP, ∝ 1/scale² under zCDP."""
    ratio = loss_at_scale_one / target_loss
    return ratio if model == "pure" else math.sqrt(ratio)


def solve_global_scale(
    build: Callable[[float], dp.Measurement], d_in: object, target_loss: float, model: PrivacyModel
) -> float:
    """A global scale whose OpenDP privacy map at ``d_in`` is ≤ ``target_loss``
    (:func:`solve_total_scale` of that one map)."""
    return solve_total_scale(
        lambda scale: Decimal(float(build(scale).map(d_in))), target_loss, model
    )


def solve_total_scale(
    total_loss: Callable[[float], Decimal], target_loss: float, model: PrivacyModel
) -> float:
    """A global scale at which ``total_loss`` (exact, a sum of OpenDP maps) is ≤
    ``target_loss``: :func:`predicted_scale` from scale 1, then only increased until it
    holds; falls back to OpenDP's binary search on that predicate."""
    target = Decimal(target_loss)
    scale = predicted_scale(float(total_loss(1.0)), target_loss, model)
    for step in range(_SEARCH_STEPS):
        if scale > 0 and total_loss(scale) <= target:
            return scale
        scale = scale * (1.0 + 2.0 ** (step - 52))
    return float(dp.binary_search(lambda s: total_loss(s) <= target, T=float))


def contribution_bounds(
    group_by: Sequence[str],
    k: int,
    c: int,
    bounds_per: Sequence[str] = (),
    bounds_per_cells: int = 1,
) -> list[Bound]:
    """OpenDP's ``d_in`` after our truncation (:mod:`privacy.truncation`).

    Without ``bounds_per``: ``k`` groups × ``c`` rows per privacy unit (one group
    without ``group_by``): ``[Bound(by=group_by, per_group=c, num_groups=k)]``.

    With ``bounds_per`` (a proper subset of ``group_by``; ``D = bounds_per_cells``
    the number of their public key combinations the query's filters on them let
    through): per value of those columns a unit has rows in at most ``k`` groups
    and at most ``c`` rows per group, and it has rows under at most ``D`` such
    values (only rows with public keys that pass the filters are kept). So
    ``Bound(by=group_by, per_group=c, num_groups=k·D)`` and
    ``Bound(by=bounds_per, per_group=k·c, num_groups=D)`` hold. OpenDP 0.16's
    ``Bounds::get_bound`` (rust/src/metrics/polars/mod.rs) takes, for the
    grouping ``group_by``, ``per_group`` as the least over Bounds whose ``by`` is
    a subset of it (→ ``c``) and ``num_groups`` as the product over a greedy
    cover of ``group_by`` by Bounds with ``num_groups`` (the first Bound covers
    it alone → ``k·D``; the per-column Bound cannot replace it: it says nothing
    about the other columns); the group-by's privacy map
    (rust/src/measurements/make_private_lazyframe/group_by/mod.rs) then uses
    ``l0 = k·D``, ``l∞ = c``, ``l1 = l0·l∞ = k·D·c``: a count's L1 sensitivity is
    ``k·D·c`` (Laplace) and its L2 sensitivity ``√(k·D)·c`` (Gaussian, zCDP).
    The second Bound is true but does not change these; it is given so that
    ``d_in`` states everything the truncation guarantees.
    """
    if not group_by:
        return [Bound(by=[], per_group=c)]
    if not bounds_per:
        return [Bound(by=list(group_by), per_group=c, num_groups=k)]
    return [
        Bound(by=list(group_by), per_group=c, num_groups=k * bounds_per_cells),
        Bound(by=list(bounds_per), per_group=k * c, num_groups=bounds_per_cells),
    ]


def query_contribution_bounds(query: ResolvedQuery, k: int, c: int) -> list[Bound]:
    """:func:`contribution_bounds` of ``query``'s grouping at bounds (k, c)."""
    return contribution_bounds(query.group_by, k, c, query.bounds_per, query.bounds_per_cells)


def opendp_message(exc: Exception) -> str:
    """OpenDP's error message on one line, at most 300 characters (no data in it)."""
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]


def truncated_schema(query: ResolvedQuery, metadata: DatasetMetadata) -> pl.Schema:
    """Schema of the truncated frame the measurement takes: unit, group columns, value."""
    schema: dict[str, pl.DataType] = {metadata.privacy_unit: pl.String()}
    for name in query.group_by:
        schema[name] = dtype_of(metadata.columns[name].value_type)
    if query.column is not None:
        schema[VALUE_COLUMN] = dtype_of(metadata.columns[query.column].value_type)
    return pl.Schema(schema)


def key_frame(
    query: ResolvedQuery, metadata: DatasetMetadata, group_by: tuple[str, ...] | None = None
) -> pl.DataFrame:
    """The cartesian product of the public keys of the ``group_by`` columns (by default the
    query's), in declared order."""
    frame: pl.DataFrame | None = None
    for name in query.group_by if group_by is None else group_by:
        spec = metadata.columns[name]
        column = pl.DataFrame(
            {name: pl.Series(name, spec.typed_keys(), dtype=dtype_of(spec.value_type))}
        )
        frame = column if frame is None else frame.join(column, how="cross")
    assert frame is not None
    return frame


FIXED_POINT_BITS = 20
"""A float column summed in fixed point carries 20 bits below the unit (at most; fewer when
``max_rows`` and the bounds leave less room in 62 bits)."""


def fixed_point_scale(query: ResolvedQuery, metadata: DatasetMetadata) -> int | None:
    """``S = 2^p`` for a ``sum`` or ``mean`` of a float column (None otherwise, or when
    ``p`` would be negative): its values are summed as the integers ``round(clip(x)·S)``.
    Used under pure DP only: OpenDP computes a discrete Gaussian's accuracy by a sum over
    its support, which at a scale of σ·S (10⁸ and more) takes seconds per call, so zCDP
    float sums keep OpenDP's float sum and its allowance.

    Why: OpenDP's float sum allows for float rounding with a term that grows with the
    number of partitions and ``max_rows`` (at 340 cells and 14 million rows, a noise scale
    30 times the sensitivity); an integer sum has none. ``p`` is at most
    :data:`FIXED_POINT_BITS` and small enough that ``max_rows · max(|L|, |U|) · S`` stays
    within 2⁶² (OpenDP refuses integer sums that could overflow). Public facts only.

    **Privacy.** ``x ↦ round(clip(x, L, U)·S)`` is row-wise (each row's own value), so
    neighbouring truncated datasets stay neighbours under the same contribution bounds;
    OpenDP's integer sum over ``[⌊L·S⌋, ⌈U·S⌉]`` then has sensitivity ``k·c·⌈max(|L|,
    |U|)·S⌉`` in those units, i.e. the float sum's ``k·c·max(|L|, |U|)`` in column units.
    The rounding moves each row by at most ``1/(2S)`` (≈ 5·10⁻⁷ at p = 20).
    """
    if query.statistic not in ("sum", "mean") or query.column_type != "float":
        return None
    if query.bounds is None or metadata.max_rows is None:
        return None
    magnitude = max(abs(float(query.bounds[0])), abs(float(query.bounds[1])))
    if not magnitude > 0:
        return None
    room = 2.0**62 / (magnitude * metadata.max_rows)
    if room < 1:
        return None
    return int(2 ** min(FIXED_POINT_BITS, math.floor(math.log2(room))))


def fixed_point_bounds(
    bounds: tuple[float, float] | tuple[int, int], scale: int
) -> tuple[int, int]:
    """The integer bounds of a fixed-point sum: ``(⌊L·S⌋, ⌈U·S⌉)``."""
    return math.floor(float(bounds[0]) * scale), math.ceil(float(bounds[1]) * scale)


def measurement_schema(
    query: ResolvedQuery, metadata: DatasetMetadata, fixed_point: int | None
) -> pl.Schema:
    """The schema the measurement takes: :func:`truncated_schema`, with the value as Int64
    when it is summed in fixed point (see :func:`measurement_input`)."""
    schema = dict(truncated_schema(query, metadata))
    if fixed_point is not None:
        schema[VALUE_COLUMN] = pl.Int64()
    if query.rollup is not None:
        schema[query.rollup.parent] = dtype_of(metadata.columns[query.rollup.parent].value_type)
    return pl.Schema(schema)


def measurement_input(
    frame: pl.LazyFrame,
    bounds: tuple[float, float] | tuple[int, int] | None,
    fixed_point: int | None,
    rollup: Rollup | None = None,
    parent_dtype: pl.DataType | None = None,
) -> pl.LazyFrame:
    """The truncated frame as the measurement takes it: unchanged, or with the value in
    fixed point, ``round(clip(x, L, U)·S)`` as Int64 (row-wise; see
    :func:`fixed_point_scale`); for a rollup, with the parent column added from the
    public map (row-wise; :func:`privacy.hierarchy.parent_expression`)."""
    if rollup is not None:
        assert parent_dtype is not None
        frame = frame.with_columns(parent_expression(rollup, parent_dtype))
    if fixed_point is None:
        return frame
    assert bounds is not None
    return frame.with_columns(fixed_point_value(bounds, fixed_point).alias(VALUE_COLUMN))


def fixed_point_value(bounds: tuple[float, float] | tuple[int, int], fixed_point: int) -> pl.Expr:
    """``round(clip(x, L, U)·S)`` of ``VALUE_COLUMN`` as Int64: a float sum's row value in
    fixed point (row-wise; see :func:`fixed_point_scale`). Every engine uses this one."""
    low, high = float(bounds[0]), float(bounds[1])
    value = (pl.col(VALUE_COLUMN).cast(pl.Float64).clip(low, high) * fixed_point).round()
    return value.cast(pl.Int64)


MEAN_SUM_COLUMN = "ruis.sum"
"""A mean's noisy clamped sum per cell (see :mod:`privacy.mean_accuracy`)."""
MEAN_COUNT_COLUMN = "ruis.count"
"""A mean's noisy row count per cell (see :mod:`privacy.mean_accuracy`)."""


def _aggregates(query: ResolvedQuery, fixed_point: int | None = None) -> list[pl.Expr]:
    """The released aggregates, named: ``VALUE_COLUMN``, or for ``mean`` its sum and count.

    A ``mean`` is released as OpenDP's ``dp.sum(bounds)`` and ``dp.len()`` of
    the value column at the same global scale: exactly the two aggregates
    OpenDP's ``dp.mean`` is made of (``expr_dp_mean``: ``DPSumShim`` over
    ``DPLenShim``, both at ``scale``), so OpenDP's privacy map and noise
    scales are the same; the ratio and its interval are post-processing
    (:mod:`privacy.mean_accuracy`).
    """
    if query.statistic in ("count", "unit_count"):
        return [cast(pl.Expr, dp_len(signed=True)).alias(VALUE_COLUMN)]
    value = DPExpr(pl.col(VALUE_COLUMN))
    assert query.bounds is not None and query.column_type is not None
    bounds = (
        fixed_point_bounds(query.bounds, fixed_point) if fixed_point is not None else query.bounds
    )
    if query.statistic == "sum":
        return [cast(pl.Expr, value.sum(bounds)).alias(VALUE_COLUMN)]
    if query.statistic == "mean":
        return [
            cast(pl.Expr, value.sum(bounds)).alias(MEAN_SUM_COLUMN),
            cast(pl.Expr, value.len(signed=True)).alias(MEAN_COUNT_COLUMN),
        ]
    assert query.q is not None
    candidates = quantile_candidates(query.bounds, query.column_type)
    quantile = value.quantile(query.q, candidates)  # type: ignore[arg-type]
    return [cast(pl.Expr, quantile).alias(VALUE_COLUMN)]


def _polars_plan(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    schema: pl.Schema,
    fixed_point: int | None,
    group_by: tuple[str, ...],
) -> pl.LazyFrame:
    frame = pl.LazyFrame(schema=schema)
    aggregates = _aggregates(query, fixed_point)
    if not group_by:
        return frame.select(aggregates)
    by = list(group_by)
    grouped = frame.group_by(by).agg(aggregates)
    if query.private_keys:  # no public key product: OpenDP selects the keys (threshold)
        return grouped
    keys = key_frame(query, metadata, group_by)
    return keys.lazy().join(grouped, how="left", on=by, nulls_equal=True)
