"""``rollup``: two levels released at one global scale, made consistent, with a bound per level.

Every DP check compares against exact values computed with plain Polars: on the
untruncated data for the coverage of the per-level bounds (``noise_and_bias``),
on the truncated data for the comparison of consistent and raw values.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, cast

import numpy as np
import opendp.prelude as dp
import polars as pl
import pytest

from cli.demo_data import DemoFiles, generate
from privacy import DatasetMetadata
from privacy.compile import plan_query
from privacy.consistency import NoiseLaw, Tree, consistent, level_bounds
from privacy.data import load_frame
from privacy.execute import execute, prepare_frame
from privacy.measurement import MeasurementBuilder
from privacy.query import QueryRequest, resolve_query
from privacy.results import Plan, ReleaseResult

dp.enable_features("contrib")

ALPHA = 0.05


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    """Skewed municipality sizes, ~10 neighbourhoods each, two weeks of events."""
    return generate(tmp_path_factory.mktemp("rollup"), devices=3000, days=14)


@pytest.fixture(scope="module")
def meta(demo: DemoFiles) -> DatasetMetadata:
    # neighbourhood WK<4 digits><2 digits> lies in municipality GM<the same 4 digits>
    mapping = {code: "GM" + code[2:6] for code in demo.neighbourhood_codes}
    return DatasetMetadata.model_validate(
        {
            "name": "demo",
            "path": str(demo.events_path),
            "privacy_unit": "device_id",
            "columns": {
                "municipality": {"type": "categorical", "keys": demo.municipality_codes},
                "neighbourhood": {"type": "categorical", "keys": demo.neighbourhood_codes},
                "day": {"type": "date", "keys": [d.isoformat() for d in demo.days]},
                "dwell_minutes": {"type": "float", "bounds": [0, 240]},
                "ts": {"type": "datetime"},
                "hour": {"type": "derived", "from": "ts", "part": "hour"},
            },
            "hierarchy": {"neighbourhood": {"parent": "municipality", "map": mapping}},
            "max_rows": demo.max_rows,
        }
    )


@pytest.fixture(scope="module")
def events(demo: DemoFiles, meta: DatasetMetadata) -> pl.DataFrame:
    """Every row as queries read it (with the derived hour)."""
    return load_frame(demo.events_path, meta).collect()


def rollup_query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "demo",
        "statistic": "count",
        "group_by": ["neighbourhood"],
        "rollup": ["municipality"],
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 5,
        "privacy": {"epsilon": 1},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


def families(rows: list[list[Any]], columns: list[str]) -> Iterator[tuple[float, list[float]]]:
    """Each parent row's value with its children's values, in row order."""
    position = columns.index("municipality")
    child_index = columns.index("neighbourhood")
    others = [i for i in range(1, len(columns) - 1) if i not in (position, child_index)]
    children: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for row in rows:
        if row[0] == "neighbourhood":
            children[(row[position], *(row[i] for i in others))].append(row[-1])
    for row in rows:
        if row[0] == "municipality":
            assert row[child_index] is None
            yield row[-1], children.get((row[position], *(row[i] for i in others)), [])


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("pure", {}),
        ("zcdp", {"privacy": {"rho": 0.5}}),
        ("pure", {"statistic": "sum", "column": "dwell_minutes"}),  # fixed point
        ("zcdp", {"statistic": "sum", "column": "dwell_minutes", "privacy": {"rho": 0.5}}),
        ("pure", {"group_by": ["neighbourhood", "hour"], "max_partitions_contributed": 6}),
        ("pure", {"group_by": ["hour", "neighbourhood"], "max_partitions_contributed": 6}),
    ],
)
def test_parents_are_exactly_the_sums_of_their_children(
    meta: DatasetMetadata, events: pl.DataFrame, model: str, fields: dict[str, Any]
) -> None:
    """Bit-exact: children lie on a power-of-two grid fine enough that every partial sum is
    exact, so Python's ``sum`` in row order, ``math.fsum`` and the parent agree."""
    plan = plan_query(rollup_query(**fields), meta, model)  # type: ignore[arg-type]
    query = plan.query
    assert query is not None
    by = ["municipality" if n == "neighbourhood" else n for n in query.group_by]
    expected = [
        "level",
        *[x for n in by for x in ([n, "neighbourhood"] if n == "municipality" else [n])],
        "value",
    ]
    assert plan.columns == expected
    result = execute(plan, events.lazy())
    child_cells = len(meta.columns["neighbourhood"].keys or ()) * (24 if "hour" in by else 1)
    parent_cells = len(meta.columns["municipality"].keys or ()) * (24 if "hour" in by else 1)
    assert len(result.rows) == child_cells + parent_cells
    assert [row[0] for row in result.rows] == ["neighbourhood"] * child_cells + [
        "municipality"
    ] * parent_cells
    seen = 0
    for parent, children in families(result.rows, plan.columns):
        assert sum(children) == parent
        assert math.fsum(children) == parent
        seen += 1
    assert seen == parent_cells
    # every child row's parent is its map's
    position, child = plan.columns.index("municipality"), plan.columns.index("neighbourhood")
    assert all(
        row[position] == "GM" + row[child][2:6] for row in result.rows if row[0] == "neighbourhood"
    )
    levels = result.accuracy.levels
    assert levels is not None and [level.level for level in levels] == [
        "neighbourhood",
        "municipality",
    ]
    assert result.accuracy.error_bound == max(level.error_bound for level in levels)
    assert result.opendp_loss <= float(plan.cost)


def opendp_scales(measurement: dp.Measurement) -> list[float]:
    summary = cast(pl.DataFrame, dp.summarize_polars_measurement(measurement, ALPHA))
    return [float(x) for x in summary["scale"]]


@pytest.mark.parametrize(("k", "c"), [(3, 5), (2, 1), (12, 4)])
def test_noise_scales_at_both_levels_are_what_the_bounds_imply(
    meta: DatasetMetadata, k: int, c: int
) -> None:
    """Pure: each level's ℓ1 is k·c (child: k groups × c rows; parent: at most k·c rows in
    all, via the Bound on the total), so ε_stat = 2·k·c/s at one global scale s.
    zCDP: child ℓ2² = k·c², parent ℓ2² = min(k·(c·min(k, F))², k·c·c·min(k, F)) =
    k·c²·min(k, F) (F = the largest family), ρ_stat = (k·c² + k·c²·min(k, F))/(2s²).
    5% of the cost goes to the truncation estimate."""
    largest = max(
        sum(1 for code in meta.columns["neighbourhood"].keys or () if code[2:6] == m[2:6])
        for m in meta.columns["municipality"].keys or ()
    )
    pure = plan_query(
        rollup_query(max_partitions_contributed=k, max_contributions_per_partition=c),
        meta,
        "pure",
    )
    expected = 2 * k * c / 0.95
    assert pure.rollup is not None
    for scale in (pure.noise_scale, pure.rollup.components[0].scale):
        assert scale == pytest.approx(expected, rel=1e-9)
    assert opendp_scales(pure.measurement) == pytest.approx([expected], rel=1e-9)
    assert opendp_scales(pure.rollup.measurement) == pytest.approx([expected], rel=1e-9)
    zcdp = plan_query(
        rollup_query(
            max_partitions_contributed=k, max_contributions_per_partition=c, privacy={"rho": 0.5}
        ),
        meta,
        "zcdp",
    )
    expected = math.sqrt((k * c * c + k * c * c * min(k, largest)) / (2 * 0.5 * 0.95))
    assert zcdp.rollup is not None
    for scale in (zcdp.noise_scale, zcdp.rollup.components[0].scale):
        assert scale == pytest.approx(expected, rel=1e-9)
    assert opendp_scales(zcdp.rollup.measurement) == pytest.approx([expected], rel=1e-9)
    # both maps together are at most the statistic's share of the cost
    for plan in (pure, zcdp):
        assert plan.statistic_loss is not None
        assert Decimal(plan.statistic_loss) <= plan.cost * Decimal("0.95")


def test_the_parent_bound_per_group_is_one_for_one_row_per_unit(meta: DatasetMetadata) -> None:
    """k = c = 1 (as unit_location's one row per unit): the parent grouping's per_group is
    c·min(k, F) = 1, so both levels have sensitivity 1 and scale 2/ε."""
    resolved = resolve_query(
        rollup_query(max_partitions_contributed=1, max_contributions_per_partition=1), meta
    )
    builder = MeasurementBuilder(resolved, meta, "pure")
    assert float(builder.build(1.0).map(builder.d_in)) == pytest.approx(1.0)
    assert float(builder.build_parent(1.0).map(builder.d_in)) == pytest.approx(1.0)


def _samples(law: str, scale: float, n: int) -> np.ndarray:
    """``n`` noises from OpenDP's own samplers (the mechanism applied to zeros)."""
    if law == "Integer Laplace":
        space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int))
        mechanism = dp.m.make_laplace(*space, scale=scale)
    elif law == "Integer Gaussian":
        space = (dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int))
        mechanism = dp.m.make_gaussian(*space, scale=scale)
    else:
        space = (
            dp.vector_domain(dp.atom_domain(T=float, nan=False)),
            dp.l2_distance(T=float) if "Gaussian" in law else dp.l1_distance(T=float),
        )
        maker = dp.m.make_gaussian if "Gaussian" in law else dp.m.make_laplace
        mechanism = maker(*space, scale=scale)
    zeros: list[Any] = [0] * n if law.startswith("Integer") else [0.0] * n
    return np.asarray(mechanism(zeros), dtype=float)


@pytest.mark.slow  # statistical: 20,000 draws per case from OpenDP's samplers
@pytest.mark.parametrize(
    "law", ["Integer Laplace", "Float Laplace", "Integer Gaussian", "Float Gaussian"]
)
@pytest.mark.parametrize("m", [3, 10])
def test_level_bounds_hold_by_monte_carlo(law: str, m: int) -> None:
    """20 000 trees of m children, true values 0, noise from OpenDP's samplers: per level
    (one cell per tree, so the cells are independent) at most 1 140 of the 20 000 errors
    exceed the bound, and the bound is within 1.5× of the empirical 95% quantile.

    Odds: if the bound holds, exceedances are Binomial(20 000, p ≤ 5%), mean ≤ 1000 and
    standard deviation ≤ 31: more than 1 140 is a 4.5σ excess, odds below 1e-5 per check
    (16 checks). The bound can be nearly exact (one dominant Laplace noise: its exact
    tail), so the empirical quantile itself may exceed it by sampling noise; hence the
    count. The 1.5× check fails only if the bound is that loose."""
    trees_n, scale = 20_000, 3.0
    noise = NoiseLaw(law, scale)
    children = _samples(law, scale, trees_n * m).reshape(trees_n, m)
    parents = _samples(law, scale, trees_n)
    trees = [
        Tree(float(p), [float(x) for x in row]) for p, row in zip(parents, children, strict=True)
    ]
    fitted, grid = consistent(trees, noise, noise)
    bounds = level_bounds(noise, noise, [m], ALPHA, grid)
    first_child = np.abs([tree.children[0] for tree in fitted])
    parent = np.abs([tree.parent for tree in fitted])
    for errors, bound in ((first_child, bounds.child), (parent, bounds.parent)):
        quantile = float(np.quantile(errors, 1 - ALPHA))
        assert int(np.sum(errors > bound)) <= 1_140, (quantile, bound)
        assert bound <= 1.5 * quantile, (quantile, bound)


def exact_counts(
    plan: Plan, data: pl.DataFrame, truncated: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Exact counts per neighbourhood and per municipality (plain Polars): on the rows the
    query looks at (public keys), or on the truncated frame."""
    if truncated:
        frame = prepare_frame(plan, data.lazy()).collect()
    else:
        keys = pl.Series(plan.metadata.columns["neighbourhood"].keys if plan.metadata else [])
        frame = data.filter(pl.col("neighbourhood").is_in(keys.implode()))
    frame = frame.with_columns(municipality=pl.lit("GM") + pl.col("neighbourhood").str.slice(2, 4))
    child = dict(frame.group_by("neighbourhood").len().iter_rows())
    parent = dict(frame.group_by("municipality").len().iter_rows())
    assert plan.metadata is not None
    return (
        {k: float(child.get(k, 0)) for k in plan.metadata.columns["neighbourhood"].keys or ()},
        {k: float(parent.get(k, 0)) for k in plan.metadata.columns["municipality"].keys or ()},
    )


def _by_level(rows: list[list[Any]]) -> tuple[dict[str, float], dict[str, float]]:
    child = {row[2]: row[-1] for row in rows if row[0] == "neighbourhood"}
    parent = {row[1]: row[-1] for row in rows if row[0] == "municipality"}
    return child, parent


@pytest.mark.slow
def test_per_level_bounds_cover_the_exact_counts_and_consistency_does_not_hurt(
    meta: DatasetMetadata, events: pl.DataFrame
) -> None:
    """24 releases of a count rollup at k = 8, c = 30 (the bounds drop about 40% of the
    rows): per level, the share of cells whose exact count on the UNtruncated data lies in
    ``[value − noise_error_bound, value + noise_error_bound + bias_bound]`` is ≥ 90%.

    Odds: cells of different trees have independent noise; counting one child per parent
    (340 trees × 24 releases = 8160 cells per level), each covered w.p. ≥ 95% by the noise
    part, coverage below 90% has binomial-tail odds below e^-130. The bias part is one
    event per release (the DP upper bound on the TOTAL dropped rows); it can fail a cell
    only if the bound falls below that cell's own drop, which is checked to be less than
    a quarter of the total: far beyond the estimate's noise.

    And the consistent values' mean absolute error against the exact counts on the
    truncated data is no larger than the raw noisy values' at either level (the same
    releases). Expected MAE ratios ≈ √(1 − 1/(m+1)) ≈ 0.95 for m ≈ 10; the standard
    error of the mean difference over 81 600 child cells (8160 parents) is < 1% of the
    MAE, so a false failure would need a ≥ 5σ deviation (odds < 1e-6).
    """
    query = rollup_query(
        max_partitions_contributed=8, max_contributions_per_partition=30, privacy={"epsilon": 4}
    )
    plan = plan_query(query, meta, "pure")
    whole_child, whole_parent = exact_counts(plan, events, truncated=False)
    kept_child, kept_parent = exact_counts(plan, events, truncated=True)
    dropped = sum(whole_child.values()) - sum(kept_child.values())
    assert dropped > 0.3 * sum(whole_child.values())
    biggest_drop = max(whole_child[k] - kept_child[k] for k in whole_child)
    assert biggest_drop < dropped / 4
    first_child: dict[str, str] = {}
    for code in meta.columns["neighbourhood"].keys or ():
        first_child.setdefault("GM" + str(code)[2:6], str(code))
    covered = {"neighbourhood": 0, "municipality": 0}
    total = 0
    errors: dict[str, list[float]] = {"child": [], "raw_child": [], "parent": [], "raw_parent": []}
    for _ in range(24):
        result: ReleaseResult = execute(plan, events.lazy())
        assert result.accuracy.levels is not None and result.raw_rows is not None
        levels = {level.level: level for level in result.accuracy.levels}
        child, parent = _by_level(result.rows)
        raw_child, raw_parent = _by_level(result.raw_rows)
        for level, values, truth in (
            (
                "neighbourhood",
                {m: child[c] for m, c in first_child.items()},
                {m: whole_child[c] for m, c in first_child.items()},
            ),
            ("municipality", parent, whole_parent),
        ):
            bound = levels[level]
            assert bound.noise_error_bound is not None and bound.bias_bound is not None
            covered[level] += sum(
                values[key] - bound.noise_error_bound
                <= truth[key]
                <= values[key] + bound.noise_error_bound + bound.bias_bound
                for key in first_child
            )
        total += len(first_child)
        errors["child"] += [abs(child[k] - kept_child[k]) for k in kept_child]
        errors["raw_child"] += [abs(raw_child[k] - kept_child[k]) for k in kept_child]
        errors["parent"] += [abs(parent[k] - kept_parent[k]) for k in first_child]
        errors["raw_parent"] += [abs(raw_parent[k] - kept_parent[k]) for k in first_child]
    for level in covered:
        assert covered[level] / total >= 0.9, (level, covered[level] / total)
    assert np.mean(errors["child"]) <= np.mean(errors["raw_child"])
    assert np.mean(errors["parent"]) <= np.mean(errors["raw_parent"])


def test_an_accuracy_target_is_met_at_the_largest_level(meta: DatasetMetadata) -> None:
    target = {"max_error": 150.0, "alpha": 0.05}
    plan = plan_query(rollup_query(privacy=target), meta, "pure")
    assert plan.accuracy.levels is not None
    assert plan.accuracy.error_bound is not None and plan.accuracy.error_bound <= 150.0
    assert all(level.error_bound <= 150.0 for level in plan.accuracy.levels)
    # one cost step less (4 significant digits) would not meet it
    cheaper = plan_query(
        rollup_query(privacy={"epsilon": round(float(plan.cost) * 0.99, 6)}), meta, "pure"
    )
    assert cheaper.accuracy.error_bound is not None and cheaper.accuracy.error_bound > 150.0


def test_automatic_bounds_release_a_consistent_rollup(
    meta: DatasetMetadata, events: pl.DataFrame
) -> None:
    plan = plan_query(
        rollup_query(
            max_partitions_contributed="auto",
            max_contributions_per_partition="auto",
            privacy={"epsilon": 2},
        ),
        meta,
        "pure",
    )
    assert plan.auto is not None
    result = execute(plan, events.lazy())
    assert result.bounds_chosen is not None
    assert result.accuracy.levels is not None
    for parent, children in families(result.rows, plan.columns):
        assert sum(children) == parent
    assert result.opendp_loss <= float(plan.cost)


def test_no_rollup_keeps_its_plan(meta: DatasetMetadata) -> None:
    body = rollup_query().model_dump(mode="json")
    del body["rollup"]
    plain = plan_query(QueryRequest.model_validate(body), meta, "pure")
    assert plain.rollup is None and plain.accuracy.levels is None
    assert plain.columns == ["neighbourhood", "value"]
    assert plain.noise_scale == pytest.approx(3 * 5 / 0.95, rel=1e-9)


def test_grid_sums_stay_exact_for_large_values() -> None:
    noise = NoiseLaw("Float Gaussian", 1e9)
    rng = np.random.default_rng(1)
    trees = [Tree(float(rng.normal(0, 1e15)), list(rng.normal(1e14, 1e15, 7))) for _ in range(200)]
    fitted, grid = consistent(trees, noise, noise)
    assert grid > 2.0**-10
    assert all(sum(tree.children) == tree.parent for tree in fitted)


def test_a_unit_location_rollup_plans_at_sensitivity_one(meta: DatasetMetadata) -> None:
    """unit_count at each unit's modal neighbourhood (k = c = 1, one row per unit): both
    levels at sensitivity 1, so scale 2/ε (nothing can be dropped: no truncation share)."""
    query = rollup_query(
        statistic="unit_count",
        unit_location={"column": "neighbourhood", "rule": "most_frequent"},
        max_partitions_contributed=None,
        max_contributions_per_partition=None,
    )
    plan = plan_query(query, meta, "pure")
    assert plan.rollup is not None and plan.truncation is None
    assert plan.noise_scale == pytest.approx(2.0, rel=1e-9)
    assert plan.rollup.components[0].scale == pytest.approx(2.0, rel=1e-9)
    assert plan.columns == ["level", "municipality", "neighbourhood", "value"]


def test_bounds_per_day_hold_at_both_levels(meta: DatasetMetadata, events: pl.DataFrame) -> None:
    """k per day over D = 14 days: the child ℓ1 is k·D·c, the parent's at most the k·c·D
    rows of a unit in all, so both levels have scale 2·k·D·c/(0.95·ε)."""
    query = rollup_query(
        group_by=["neighbourhood", "day"],
        contribution_bounds_per=["day"],
        max_partitions_contributed=2,
        max_contributions_per_partition=3,
        privacy={"epsilon": 8},
    )
    plan = plan_query(query, meta, "pure")
    assert plan.rollup is not None
    expected = 2 * 2 * 14 * 3 / (0.95 * 8)
    assert plan.noise_scale == pytest.approx(expected, rel=1e-9)
    assert plan.rollup.components[0].scale == pytest.approx(expected, rel=1e-9)
    result = execute(plan, events.lazy())
    assert sum(1 for _ in families(result.rows, plan.columns)) == 340 * 14
    for parent, children in families(result.rows, plan.columns):
        assert sum(children) == parent


def test_automatic_bounds_predict_the_rollup_noise(meta: DatasetMetadata) -> None:
    """The choice of automatic bounds ranks candidates by their predicted noise: for a
    rollup that counts both levels (one global scale, two maps), so at every (k, c) it is
    the noise scale of the rollup plan compiled at those bounds, twice a single level's."""
    from privacy.auto.noise import count_proxy
    from privacy.compile import compile_plan

    resolved = resolve_query(
        rollup_query(max_partitions_contributed="auto", max_contributions_per_partition="auto"),
        meta,
    )
    proxy = count_proxy(resolved, meta, "pure")
    for k, c in ((1, 1), (3, 5), (8, 30)):
        fixed = resolve_query(
            rollup_query(max_partitions_contributed=k, max_contributions_per_partition=c), meta
        )
        compiled = compile_plan(fixed, meta, "pure", ALPHA)
        assert proxy.scale(k, c, 1.0, "pure") == pytest.approx(compiled.noise_scale, rel=1e-6)
        assert compiled.noise_scale == pytest.approx(2 * k * c, rel=1e-6)
