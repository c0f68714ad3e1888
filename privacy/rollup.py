"""A ``rollup`` release: both levels' noisy cells, made consistent, laid out, with bounds.

The measurements are :class:`~privacy.measurement.MeasurementBuilder`'s (the child
level) and its ``build_parent`` (the parent level), run once each on the same
truncated frame at the same global scale; their privacy loss is the sum of
OpenDP's two maps (sequential composition, :mod:`privacy.hierarchy` for the
sensitivity). What follows here is post-processing of their outputs and public
metadata only (:mod:`privacy.consistency`):

- rows: the child level first (``level`` = the child column's name), one per
  public key combination of ``group_by`` in key-product order, with the parent
  column filled from the public map; then the parent level (``level`` = the
  parent column's name), one per key combination of the parent grouping, the
  child column null. The set and order of rows never depend on the data.
- values: the weighted least squares estimate per tree, children on a power-of-two
  grid, each parent exactly the sum of its children.
- accuracy: per level, the bound of :func:`privacy.consistency.level_bounds`; for a
  count whose bounds can drop data, plus the truncation estimate's ``bias_bound``
  (every cell's drop, and a parent's — the sum of its children's drops — are at most
  the total dropped, which it bounds), the noise then at ``(1 − s)·α``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from privacy.consistency import GRID_EXPONENT, NoiseLaw, Tree, consistent, level_bounds
from privacy.errors import ReleaseFailed
from privacy.hierarchy import typed_parents
from privacy.measurement import VALUE_COLUMN, NoiseComponent
from privacy.metadata import DatasetMetadata, iso
from privacy.query import ResolvedQuery, Rollup
from privacy.results import NOISE_AND_BIAS, Accuracy, LevelAccuracy, Plan

DEFAULT_GRID = math.ldexp(1.0, GRID_EXPONENT)


def rollup_columns(query: ResolvedQuery) -> list[str]:
    """``["level", *group_by with the child replaced by (parent, child), "value"]``."""
    rollup = query.rollup
    assert rollup is not None
    keys: list[str] = []
    for name in query.group_by:
        keys.extend([rollup.parent, name] if name == rollup.child else [name])
    return ["level", *keys, "value"]


def family_sizes(rollup: Rollup, metadata: DatasetMetadata) -> tuple[int, ...]:
    """Children per public parent key, in the parent's key order (0 for unused keys)."""
    sizes = dict.fromkeys(map(str, metadata.columns[rollup.parent].keys or ()), 0)
    for _, parent in rollup.mapping:
        sizes[parent] += 1
    return tuple(sizes.values())


def noise_law(component: NoiseComponent, fixed_point: int | None) -> NoiseLaw:
    """A level's noise per cell in column units: OpenDP's law of its ``sum``/``count``
    (a fixed-point sum's integer noise times 1/S)."""
    if fixed_point is not None and component.aggregate == "sum":
        return NoiseLaw(component.distribution, component.scale * fixed_point, 1.0 / fixed_point)
    return NoiseLaw(component.distribution, component.scale)


def level_accuracy(
    query: ResolvedQuery,
    child: NoiseComponent,
    parent: NoiseComponent,
    fixed_point: int | None,
    families: tuple[int, ...],
    alpha: float,
    *,
    grid: float = DEFAULT_GRID,
    bias_bound: float | None = None,
    noise_share: float = 1.0,
) -> Accuracy:
    """Both levels' bounds after consistency at ``alpha`` (the noise at ``noise_share·alpha``
    and ``bias_bound`` added, with a bias bound); ``error_bound`` is the largest."""
    rollup = query.rollup
    assert rollup is not None
    if bias_bound is None and query.location is not None:
        bias_bound = 0.0  # unit_location drops nothing: the noise bound covers the truth
    bounds = level_bounds(
        noise_law(child, fixed_point),
        noise_law(parent, fixed_point),
        families,
        alpha * noise_share,
        grid,
    )
    levels = []
    for name, noise in ((rollup.child, bounds.child), (rollup.parent, bounds.parent)):
        if bias_bound is None:
            levels.append(LevelAccuracy(level=name, error_bound=noise))
        else:
            levels.append(
                LevelAccuracy(
                    level=name,
                    error_bound=noise + bias_bound,
                    noise_error_bound=noise,
                    bias_bound=bias_bound,
                )
            )
    largest = max(levels, key=lambda level: level.error_bound)
    accuracy = Accuracy(alpha=alpha, error_bound=largest.error_bound, levels=tuple(levels))
    if bias_bound is None:
        return accuracy
    return replace(
        accuracy,
        covers=NOISE_AND_BIAS,
        noise_error_bound=largest.noise_error_bound,
        bias_bound=bias_bound,
    )


def plan_accuracy(plan: Plan, alpha: float, **options: Any) -> Accuracy:
    """:func:`level_accuracy` of a compiled rollup plan."""
    query, metadata, rollup = plan.query, plan.metadata, plan.rollup
    assert query is not None and metadata is not None and rollup is not None
    return level_accuracy(
        query,
        plan.components[0],
        rollup.components[0],
        plan.fixed_point,
        rollup.families,
        alpha,
        **options,
    )


@dataclass(frozen=True)
class RollupRelease:
    """The laid-out rows (consistent), the same rows with the raw noisy values, the grid."""

    rows: list[list[Any]]
    raw_rows: list[list[Any]]
    grid: float


def _values(plan: Plan, released: pl.DataFrame, by: list[str]) -> dict[tuple[Any, ...], float]:
    unit = float(plan.fixed_point or 1)  # a fixed-point sum counts 1/S of the column
    values: dict[tuple[Any, ...], float] = {}
    for row in released.select([*by, VALUE_COLUMN]).iter_rows():
        number = float(row[-1]) / unit if row[-1] is not None else math.nan
        if not math.isfinite(number):
            raise ReleaseFailed("the release produced a non-finite value")
        values[tuple(row[:-1])] = number
    return values


def release_rollup(plan: Plan, children: pl.DataFrame, parents: pl.DataFrame) -> RollupRelease:
    """Both levels' released cells made consistent and laid out (module docstring)."""
    query, metadata, rollup_plan = plan.query, plan.metadata, plan.rollup
    assert query is not None and metadata is not None and rollup_plan is not None
    rollup = query.rollup
    assert rollup is not None
    by = list(query.group_by)
    parent_by = list(rollup.parent_group_by(query.group_by))
    position = by.index(rollup.child)
    child_values = _values(plan, children, by)
    parent_values = _values(plan, parents, parent_by)
    parent_of = typed_parents(rollup, metadata)
    family: dict[Any, list[Any]] = {k: [] for k in metadata.columns[rollup.parent].typed_keys()}
    for child_key, parent_key in parent_of.items():
        family[parent_key].append(child_key)
    parent_cells = list(itertools.product(*(metadata.columns[n].typed_keys() for n in parent_by)))
    trees: list[Tree] = []
    members: list[list[tuple[Any, ...]]] = []
    for cell in parent_cells:
        if cell not in parent_values:
            raise ReleaseFailed("the release lacks a public key combination")
        combos = [(*cell[:position], key, *cell[position + 1 :]) for key in family[cell[position]]]
        if any(combo not in child_values for combo in combos):
            raise ReleaseFailed("the release lacks a public key combination")
        members.append(combos)
        trees.append(Tree(parent_values[cell], [child_values[c] for c in combos]))
    law = noise_law(plan.components[0], plan.fixed_point)
    parent_law = noise_law(rollup_plan.components[0], plan.fixed_point)
    fitted, grid = consistent(trees, law, parent_law)
    consistent_child: dict[tuple[Any, ...], float] = {}
    for combos, tree in zip(members, fitted, strict=True):
        consistent_child.update(zip(combos, tree.children, strict=True))

    def child_row(combination: tuple[Any, ...], value: float) -> list[Any]:
        keys = [iso(k) for k in combination]
        keys.insert(position, iso(parent_of[combination[position]]))
        return [rollup.child, *keys, value]

    def parent_row(cell: tuple[Any, ...], value: float) -> list[Any]:
        keys: list[Any] = [iso(k) for k in cell]
        keys.insert(position + 1, None)
        return [rollup.parent, *keys, value]

    rows: list[list[Any]] = []
    raw: list[list[Any]] = []
    for combination in itertools.product(*(metadata.columns[n].typed_keys() for n in by)):
        rows.append(child_row(combination, consistent_child[combination]))
        raw.append(child_row(combination, child_values[combination]))
    for cell, tree in zip(parent_cells, fitted, strict=True):
        rows.append(parent_row(cell, tree.parent))
        raw.append(parent_row(cell, parent_values[cell]))
    return RollupRelease(rows=rows, raw_rows=raw, grid=grid)
