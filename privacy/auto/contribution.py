"""Step 1 of automatic bounds: choosing the contribution bounds (k, c) from a DP profile histogram.

See :mod:`privacy.auto` for the rule and the privacy argument.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import polars as pl

from privacy.amount import PrivacyAmount
from privacy.auto.histogram import (
    PESSIMISM_SDS,
    Histogram,
    SolvedHistogram,
    released_counts,
    visible_box,
)
from privacy.auto.noise import count_proxy, noise_sd
from privacy.metadata import MAX_AUTO_LIMIT, DatasetMetadata
from privacy.query import ResolvedQuery

GROUPS_COLUMN = "ruis.groups"
"""Profile column: the unit's number of (kept) groups."""
ROWS_COLUMN = "ruis.rows"
"""Profile column: the unit's number of rows in one of its groups."""


@dataclass(frozen=True)
class ContributionChoice:
    """The (k, c) chosen, with the estimated error terms of every candidate."""

    k: int
    c: int
    scores: list[dict[str, float]]
    histogram: list[list[float]]


@dataclass(frozen=True, eq=False)
class ContributionSelection:
    """How k and/or c are chosen: the profile, its DP histogram and the rule's inputs."""

    cost: Decimal
    histogram: Histogram = field(repr=False)
    solved: SolvedHistogram
    groups_column: str | None
    rows_column: str | None
    group_limit: int
    row_limit: int
    partitions: tuple[int, ...]
    contributions: tuple[int, ...]
    fixed_partitions: int | None
    counts_rows: bool
    cells: int
    noise: dict[tuple[int, int], float]
    """Expected |noise| per cell of the (proxy) count at each candidate (k, c)."""

    def choose(self, released: pl.DataFrame) -> ContributionChoice:
        """The candidate (k, c) of least estimated error, from the released histogram."""
        keys = self.histogram.keys
        shape = [len(set(keys[name].to_list())) for name in keys.columns]
        noisy = released_counts(released, keys)
        box = visible_box(noisy.reshape(shape), self.solved).reshape(-1)
        groups = (
            keys[self.groups_column].to_numpy().astype(float)
            if self.groups_column is not None
            else np.ones(keys.height)
        )
        rows = (
            keys[self.rows_column].to_numpy().astype(float)
            if self.rows_column is not None
            else np.ones(keys.height)
        )

        # kept per unit at (k, c) is A[k]·R[c] (groups kept × rows kept per group); what a
        # candidate drops relative to the largest is (most − A·R), summed with the noisy
        # counts as matrix products (one pass for every candidate)
        partitions = np.array(self.partitions, dtype=float)
        contributions = np.array(self.contributions, dtype=float)
        kept_groups = np.minimum(groups[None, :], partitions[:, None])
        kept_rows = (
            np.minimum(rows[None, :], contributions[:, None])
            if self.counts_rows
            else np.ones((contributions.size, rows.size))
        )
        most = kept_groups[-1] * kept_rows[-1]
        seen = np.where(box, noisy, 0.0)
        inside = box.astype(float)
        point = float((most * seen).sum()) - (kept_groups * seen) @ kept_rows.T
        squares = (
            float((inside * most**2).sum())
            - 2 * (kept_groups * (inside * most)) @ kept_rows.T
            + (kept_groups**2 * inside) @ (kept_rows**2).T
        )
        sd = noise_sd(self.solved.distribution, self.solved.scale)
        dropped = np.maximum(point, 0.0) + PESSIMISM_SDS * sd * np.sqrt(np.maximum(squares, 0.0))
        scores: list[dict[str, float]] = []
        best: tuple[float, int, int] | None = None
        for (i, k), (j, c) in itertools.product(
            enumerate(self.partitions), enumerate(self.contributions)
        ):
            bias = float(dropped[i, j]) / self.cells
            noise = self.noise[(k, c)]
            scores.append({"k": k, "c": c, "bias": bias, "noise": noise, "error": bias + noise})
            if best is None or bias + noise < best[0]:
                best = (bias + noise, k, c)
        assert best is not None
        table = [
            [*(float(v) for v in row), float(n)]
            for row, n in zip(keys.iter_rows(), released_counts(released, keys), strict=True)
        ]
        return ContributionChoice(k=best[1], c=best[2], scores=scores, histogram=table)


def plan_contribution_selection(
    query: ResolvedQuery,
    metadata: DatasetMetadata,
    cost: PrivacyAmount,
    statistic_cost: PrivacyAmount,
) -> ContributionSelection:
    """Compile the contribution histogram at ``cost`` and the candidates' noise at
    ``statistic_cost`` (public metadata only).

    With ``contribution_bounds_per`` the profile has one row per unit and value
    of those columns (groups counted there, as the truncation bounds them), so
    a unit has up to D rows in it, all possibly in one bin: the histogram is
    calibrated for ``Bound(by=[], per_group=D)``. The rule in ``choose`` then
    weighs (unit, value) pairs, whose kept rows add up to the query's.
    """
    model = cost.model
    auto = query.auto
    assert auto is not None and (auto.partitions is not None or auto.contributions is not None)
    k, c = query.max_partitions_contributed, query.max_contributions_per_partition
    partitions = auto.partitions if auto.partitions is not None else (k,)
    contributions = auto.contributions if auto.contributions is not None else (c,)
    counts_rows = query.statistic != "unit_count"
    need_groups = bool(query.group_by) and k > 1
    need_rows = counts_rows and c > 1
    group_limit = min(k, MAX_AUTO_LIMIT)
    row_limit = min(c, MAX_AUTO_LIMIT)
    keys: dict[str, Sequence[int]] = {}
    if need_groups:
        keys[GROUPS_COLUMN] = range(1, group_limit + 1)
    if need_rows:
        keys[ROWS_COLUMN] = range(1, row_limit + 1)
    histogram = Histogram(keys, model)
    # one profile row per unit, or per unit and value of contribution_bounds_per (≤ D rows)
    solved = histogram.solve(cost.float_at_most(), rows=query.bounds_per_cells)
    proxy = count_proxy(query, metadata, model)
    target = statistic_cost.float_at_most()
    noise = {
        (kk, cc): proxy.expected_abs(kk, cc, target, model)
        for kk, cc in itertools.product(partitions, contributions)
    }
    return ContributionSelection(
        cost=cost.value,
        histogram=histogram,
        solved=solved,
        groups_column=GROUPS_COLUMN if need_groups else None,
        rows_column=ROWS_COLUMN if need_rows else None,
        group_limit=group_limit,
        row_limit=row_limit,
        partitions=partitions,
        contributions=contributions,
        fixed_partitions=k if auto.partitions is None else None,
        counts_rows=counts_rows,
        cells=query.cells,
        noise=noise,
    )
