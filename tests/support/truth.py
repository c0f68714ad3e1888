"""Exact answers on the untruncated data, coverage and error of releases (issue 12, "must show").

Data shaped like the demo's (:func:`cli.demo_data.generate`: Zipf municipalities, about
ten neighbourhoods each, 14 days, devices in several places), registered like
:func:`cli.demo_data.events_registration` but with automatic bounds (``"auto"``
contribution bounds, ``auto_bounds`` on the numeric columns). The six queries of the
issue are :data:`QUERIES`.

Nothing here is private: the exact answers are computed with plain Polars on ALL rows
(no truncation, no clamping), which is what a bureau means by "the true answer". Noise
only ever comes from OpenDP, through :func:`privacy.plan_query` and :func:`privacy.execute`.

Coverage of a released cell (:func:`coverage`): the truth lies within

- ``[lower, upper]`` when the plan's columns end with ``value, lower, upper``;
- else, for ``quantile`` with ``accuracy.rank_error_bound`` = r (in rows): between the
  exact order statistics at ranks ``q·n − r`` and ``q·n + r`` of the cell's ``n`` rows
  (inverted CDF: the quantile at rank x is the ⌈x⌉-th smallest value);
- else ``value ± accuracy.error_bound``.

Cells without a defined truth (mean and quantile of a cell with no rows) are left out
of coverage and error. A release whose accuracy gives none of these has no coverage
(``None``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from cli import demo_data
from privacy import DatasetMetadata, Plan, QueryRequest, ReleaseResult, execute, plan_query
from privacy.data import load_frame
from privacy.truncation import truncate_contributions

DAYS: Final = 14
UNIT: Final = "device_id"
AUTO_LIMIT: Final = 100
"""The datasets' ``auto_limits`` (both k and c): devices here touch up to ~50
(neighbourhood, day) pairs and have up to ~100 rows in their home municipality."""
K_GRID: Final = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 100)
C_GRID: Final = (1, 2, 4, 8, 16, 32, 64, 100)


@dataclass(frozen=True)
class TruthQuery:
    """One of the issue's six questions, as a query body with ``"auto"`` bounds."""

    number: int
    name: str
    statistic: str
    group_by: tuple[str, ...]
    column: str | None = None
    q: float | None = None

    @property
    def is_count(self) -> bool:
        """A count (``count`` or ``unit_count``): compared with the best fixed bound."""
        return self.statistic in ("count", "unit_count")

    def body(self, epsilon: float = 1.0, **overrides: Any) -> dict[str, Any]:
        """The request body at ``epsilon`` with every applicable bound ``"auto"``."""
        body: dict[str, Any] = {
            "dataset": "mobility_events",
            "statistic": self.statistic,
            "group_by": list(self.group_by),
            "max_partitions_contributed": "auto",
            "privacy": {"epsilon": epsilon},
        }
        if self.statistic != "unit_count":
            body["max_contributions_per_partition"] = "auto"
        if self.column is not None:
            body["column"] = self.column
            body["bounds"] = "auto"
        if self.q is not None:
            body["q"] = self.q
        body.update(overrides)
        return body

    def request(self, epsilon: float = 1.0, **overrides: Any) -> QueryRequest:
        """:meth:`body` as a validated :class:`QueryRequest`."""
        return QueryRequest.model_validate(self.body(epsilon, **overrides))

    def fixed_request(
        self,
        metadata: DatasetMetadata,
        k: int,
        c: int,
        clamp: Sequence[float] | None = None,
        epsilon: float = 1.0,
    ) -> QueryRequest:
        """The same question at fixed bounds ``(k, c)`` and, for mean/quantile, the clamp
        given (else the column's public bounds: ``None`` would mean its automatic bounds)."""
        overrides: dict[str, Any] = {"max_partitions_contributed": k}
        if self.statistic != "unit_count":
            overrides["max_contributions_per_partition"] = c
        if self.column is not None:
            public = metadata.columns[self.column].bounds
            assert public is not None
            overrides["bounds"] = list(clamp) if clamp is not None else list(public)
        return self.request(epsilon, **overrides)

    def grid(self) -> list[tuple[int, int]]:
        """The fixed (k, c) of "best fixed bound in hindsight" (c = 1 for ``unit_count``)."""
        cs = (1,) if self.statistic == "unit_count" else C_GRID
        return list(itertools.product(K_GRID, cs))


QUERIES: Final = (
    TruthQuery(1, "visitors per municipality", "unit_count", ("municipality",)),
    TruthQuery(2, "visitors per municipality x day", "unit_count", ("municipality", "day")),
    TruthQuery(3, "people present per neighbourhood x day", "unit_count", ("neighbourhood", "day")),
    TruthQuery(4, "events per municipality", "count", ("municipality",)),
    TruthQuery(5, "mean dwell per municipality", "mean", ("municipality",), "dwell_minutes"),
    TruthQuery(6, "median hour per municipality", "quantile", ("municipality",), "hour", 0.5),
)


@dataclass(frozen=True)
class TruthData:
    """Generated demo-shaped data, its metadata with automatic bounds, and the frame."""

    files: demo_data.DemoFiles
    metadata: DatasetMetadata
    frame: pl.DataFrame
    """Every row, cast as :func:`privacy.data.load_frame` casts them (in memory), with the
    derived columns (``hour``, ``weekday`` of ``ts``) computed by the very expression the
    service uses (:func:`privacy.data.derived_expression`), so exact answers over ``hour``
    agree with what a release groups and filters on."""

    @property
    def devices(self) -> int:
        """Number of devices generated."""
        return self.files.n_devices

    def lazy(self) -> pl.LazyFrame:
        """The in-memory frame, lazily (what :func:`privacy.execute` takes)."""
        return self.frame.lazy()

    def scan(self) -> pl.LazyFrame:
        """The file as the service reads it (:func:`privacy.data.load_frame`): for timings."""
        return load_frame(self.files.events_path, self.metadata)


def auto_metadata(
    files: demo_data.DemoFiles, *, auto_limit: int = AUTO_LIMIT, **overrides: Any
) -> DatasetMetadata:
    """The demo's registration of ``mobility_events`` with automatic bounds everywhere
    (candidates k, c in 1..``auto_limit``)."""
    body = demo_data.events_registration(files)
    body["max_partitions_contributed"] = "auto"
    body["max_contributions_per_partition"] = "auto"
    body["auto_limits"] = {
        "max_partitions_contributed": auto_limit,
        "max_contributions_per_partition": auto_limit,
    }
    # ``hour`` is derived from ``ts`` (bounds 0..23 implied, no auto_bounds to declare);
    # the quantile query asks for ``"bounds": "auto"`` itself
    body["columns"]["dwell_minutes"] = {**body["columns"]["dwell_minutes"], "auto_bounds": True}
    body.pop("budget_cap", None)
    body.update(overrides)
    return DatasetMetadata.model_validate(body)


def make_truth_data(
    out_dir: Path, *, devices: int, seed: int = 42, auto_limit: int = AUTO_LIMIT
) -> TruthData:
    """Generate (or reuse, when ``out_dir`` already holds them) the demo files and load them."""
    # the data format in the name: files of an older generator are written again
    params = out_dir / f"devices-{devices}-seed-{seed}-format-{demo_data.DATA_FORMAT}.done"
    if params.exists():
        files = demo_data.describe(out_dir, devices=devices, days=DAYS, seed=seed)
    else:
        files = demo_data.generate(out_dir, devices=devices, days=DAYS, seed=seed)
        params.write_text("ok\n")
    metadata = auto_metadata(files, auto_limit=auto_limit)
    frame = load_frame(files.events_path, metadata).collect()
    return TruthData(files=files, metadata=metadata, frame=frame)


# --- exact answers ---------------------------------------------------------------------------


def _key_frame(metadata: DatasetMetadata, by: Sequence[str]) -> pl.DataFrame:
    """The public key product of ``by`` in declared order (the release's row order)."""
    frame: pl.DataFrame | None = None
    for name in by:
        spec = metadata.columns[name]
        kind = spec.value_type
        dtype = pl.Date if kind == "date" else pl.String if kind == "categorical" else None
        column = pl.DataFrame({name: pl.Series(spec.typed_keys(), dtype=dtype)})
        frame = column if frame is None else frame.join(column, how="cross")
    assert frame is not None
    return frame


def _aggregate(query: TruthQuery, unit: str) -> pl.Expr:
    if query.statistic == "unit_count":
        return pl.col(unit).n_unique()
    if query.statistic == "count":
        return pl.len()
    assert query.column is not None
    if query.statistic == "mean":
        return pl.col(query.column).cast(pl.Float64).mean()
    return pl.col(query.column).cast(pl.Float64).sort()


def _row_key(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v.isoformat() if isinstance(v, date) else v for v in row)


@dataclass(frozen=True)
class Truth:
    """The exact answer of one query per cell, on every row (no truncation, no clamping).

    ``values`` maps a cell's key (dates as ISO strings, as released) to the exact count
    (0 where no data), mean or quantile (None where the cell has no rows). For
    quantiles ``sorted_values`` holds each cell's values in ascending order.
    """

    query: TruthQuery
    values: dict[tuple[Any, ...], float | None]
    sorted_values: dict[tuple[Any, ...], np.ndarray] | None = None

    @property
    def total(self) -> float:
        """Σ of the exact values over the cells that have one."""
        return float(sum(v for v in self.values.values() if v is not None))


def exact_answers(data: TruthData, query: TruthQuery) -> Truth:
    """The exact answer of ``query`` on all rows of ``data``, over the public key product."""
    by = list(query.group_by)
    keys = _key_frame(data.metadata, by)
    frame = data.frame
    if query.column is not None:
        frame = frame.filter(pl.col(query.column).is_not_null())
    table = frame.group_by(by).agg(_aggregate(query, data.metadata.privacy_unit).alias("v"))
    joined = keys.join(table, on=by, how="left", maintain_order="left")
    if query.statistic == "quantile":
        assert query.q is not None
        ordered: dict[tuple[Any, ...], np.ndarray] = {}
        values: dict[tuple[Any, ...], float | None] = {}
        for row in joined.iter_rows():
            key = _row_key(row[:-1])
            array = np.asarray(row[-1] if row[-1] is not None else [], dtype=np.float64)
            ordered[key] = array
            values[key] = (
                float(np.quantile(array, query.q, method="inverted_cdf")) if array.size else None
            )
        return Truth(query, values, ordered)
    fill = 0.0 if query.is_count else None
    values = {
        _row_key(row[:-1]): float(row[-1]) if row[-1] is not None else fill
        for row in joined.iter_rows()
    }
    return Truth(query, values)


# --- coverage and error ----------------------------------------------------------------------


def has_intervals(plan: Plan) -> bool:
    """Whether released rows carry per-cell bounds: columns end with value, lower, upper."""
    return list(plan.columns[-3:]) == ["value", "lower", "upper"]


def kept_share(result: ReleaseResult) -> tuple[float, float] | None:
    """``(truncation.kept_share, kept_share_error_bound)`` of a release (None where its
    bounds cannot drop anything)."""
    truncation = result.truncation
    if truncation is None:
        return None
    return truncation.kept_share, truncation.kept_share_error_bound


@dataclass(frozen=True)
class CellCheck:
    """One release compared with the truth, cell by cell."""

    values: dict[tuple[Any, ...], float]
    covered: list[bool] | None
    """Per cell with a truth: within the reported bound (None: the release states none)."""
    errors: list[float]
    total_released: float
    total_exact: float

    @property
    def coverage(self) -> float | None:
        """Share of cells whose truth lies within the reported bound."""
        return float(np.mean(self.covered)) if self.covered else None

    @property
    def mae(self) -> float:
        """Mean over cells of |released − exact|."""
        return float(np.mean(self.errors))

    @property
    def relative_bias(self) -> float:
        """Σ released / Σ exact − 1 (over the cells with a truth)."""
        return self.total_released / self.total_exact - 1 if self.total_exact else math.nan


def _quantile_covered(sorted_values: np.ndarray, q: float, rank_error: float, value: float) -> bool:
    """``value`` lies between the exact quantiles at ranks q·n ∓ r (inverted CDF: the
    quantile at rank x is the ⌈x⌉-th smallest value, clipped to the cell's values)."""
    n = sorted_values.size
    low = min(n - 1, max(0, math.ceil(q * n - rank_error) - 1))
    high = min(n - 1, max(0, math.ceil(q * n + rank_error) - 1))
    return bool(sorted_values[low] <= value <= sorted_values[high])


def check_release(plan: Plan, result: ReleaseResult, truth: Truth) -> CellCheck:
    """Compare every released cell with ``truth`` (see the module docstring for coverage)."""
    intervals = has_intervals(plan)
    width = len(truth.query.group_by)
    query = truth.query
    bound = result.accuracy.error_bound
    rank = result.accuracy.rank_error_bound if query.statistic == "quantile" else None
    values: dict[tuple[Any, ...], float] = {}
    covered: list[bool] = []
    errors: list[float] = []
    released_total = 0.0
    exact_total = 0.0
    can_cover = (
        intervals or rank is not None or (query.statistic != "quantile" and bound is not None)
    )
    for row in result.rows:
        key = tuple(row[:width])
        value = float(row[width])
        values[key] = value
        exact = truth.values[key]
        if exact is None:
            continue
        errors.append(abs(value - exact))
        released_total += value
        exact_total += exact
        if not can_cover:
            continue
        if intervals:
            lower, upper = float(row[width + 1]), float(row[width + 2])
            covered.append(lower <= exact <= upper)
        elif rank is not None:
            assert truth.sorted_values is not None and query.q is not None
            covered.append(_quantile_covered(truth.sorted_values[key], query.q, rank, value))
        else:
            assert bound is not None
            covered.append(abs(value - exact) <= bound)
    return CellCheck(
        values=values,
        covered=covered if can_cover else None,
        errors=errors,
        total_released=released_total,
        total_exact=exact_total,
    )


def coverage(plan: Plan, result: ReleaseResult, truth: Truth) -> float | None:
    """Share of cells whose truth lies within the reported bound (None: no bound reported)."""
    return check_release(plan, result, truth).coverage


def mean_absolute_error(result: ReleaseResult, truth: Truth) -> float:
    """Mean over cells (with a truth) of |released − exact|."""
    width = len(truth.query.group_by)
    errors = [
        abs(float(row[width]) - exact)
        for row in result.rows
        if (exact := truth.values[tuple(row[:width])]) is not None
    ]
    return float(np.mean(errors))


# --- releases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoRelease:
    """Auto-bounds releases of one query, compared with the truth."""

    query: TruthQuery
    epsilon: float
    plan: Plan
    results: list[ReleaseResult]
    checks: list[CellCheck]

    @property
    def coverage(self) -> float | None:
        """Mean coverage over the releases (None when they state no bound)."""
        values = [c.coverage for c in self.checks]
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present and len(present) == len(values) else None

    @property
    def mae(self) -> float:
        """Mean absolute error, averaged over the releases."""
        return float(np.mean([c.mae for c in self.checks]))

    @property
    def relative_bias(self) -> float:
        """Relative bias of the total, averaged over the releases."""
        return float(np.mean([c.relative_bias for c in self.checks]))

    def chosen(self) -> list[dict[str, Any]]:
        """The bounds chosen in each release."""
        return [r.bounds_chosen or {} for r in self.results]


def release_auto(
    data: TruthData, query: TruthQuery, truth: Truth, *, epsilon: float = 1.0, repeats: int = 1
) -> AutoRelease:
    """Plan ``query`` with automatic bounds and release it ``repeats`` times."""
    plan = plan_query(query.request(epsilon), data.metadata, "pure")
    results = [execute(plan, data.lazy()) for _ in range(repeats)]
    checks = [check_release(plan, r, truth) for r in results]
    return AutoRelease(query, epsilon, plan, results, checks)


def fixed_mae(
    data: TruthData,
    query: TruthQuery,
    truth: Truth,
    k: int,
    c: int,
    *,
    epsilon: float = 1.0,
    repeats: int = 1,
) -> float:
    """MAE vs the untruncated truth at fixed bounds ``(k, c)``, averaged over ``repeats``."""
    plan = plan_query(
        query.fixed_request(data.metadata, k, c, epsilon=epsilon), data.metadata, "pure"
    )
    return float(
        np.mean([mean_absolute_error(execute(plan, data.lazy()), truth) for _ in range(repeats)])
    )


@dataclass(frozen=True)
class BestFixed:
    """The fixed (k, c) of least MAE in hindsight, and every grid point's MAE."""

    k: int
    c: int
    mae: float
    grid: dict[tuple[int, int], float]


def best_fixed(
    data: TruthData,
    query: TruthQuery,
    truth: Truth,
    *,
    epsilon: float = 1.0,
    repeats: int = 1,
    grid: Sequence[tuple[int, int]] | None = None,
) -> BestFixed:
    """Minimum over the grid of :func:`fixed_mae` (the "best fixed bound in hindsight")."""
    points = list(grid) if grid is not None else query.grid()
    maes = {
        (k, c): fixed_mae(data, query, truth, k, c, epsilon=epsilon, repeats=repeats)
        for k, c in points
    }
    (k, c), mae = min(maes.items(), key=lambda item: item[1])
    return BestFixed(k, c, mae, maes)


def fixed_twin(data: TruthData, query: TruthQuery, result: ReleaseResult, epsilon: float) -> Plan:
    """The fixed-bound plan of ``query`` at the bounds an auto release chose."""
    chosen = result.bounds_chosen or {}
    return plan_query(
        query.fixed_request(
            data.metadata,
            int(chosen["max_partitions_contributed"]),
            int(chosen["max_contributions_per_partition"]),
            chosen.get("clamp"),
            epsilon=epsilon,
        ),
        data.metadata,
        "pure",
    )


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- truncation ------------------------------------------------------------------------------


def true_kept_share(data: TruthData, by: Sequence[str], k: int, c: int) -> float:
    """The exact share of (unit, group) contributions that truncation to ``(k, c)`` keeps.

    For ``unit_count`` a contribution is one distinct (unit, group): the share is the
    number of them left by :func:`~privacy.truncation.truncate_contributions` over the
    number in the untruncated data (= Σ truncated exact counts / Σ untruncated).
    """
    frame = data.frame.lazy().select(UNIT, *by).unique()
    before = frame.select(pl.len()).collect().item()
    kept = truncate_contributions(frame, unit=UNIT, by=by, max_groups=k, max_rows_per_group=c)
    after = kept.unique().select(pl.len()).collect().item()
    return float(after) / float(before)
