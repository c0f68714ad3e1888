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


EXACT_UP_TO = 16
"""Profile values up to this are binned exactly; above, in bins about 25% wide."""
BIN_RATIO = 1.25


@dataclass(frozen=True)
class ValueBins:
    """Bins of a profile column's values 1..limit: exact up to :data:`EXACT_UP_TO`, then
    geometric (ratio :data:`BIN_RATIO`), so that a limit of 100 gives 24 bins, not 100.

    A (groups × rows) histogram at limits of 100 had 10,000 bins: at a selection cost
    of ε ≈ 0.1 its noise hid thousands of units, and the rule read them as absent.
    """

    lows: tuple[int, ...]
    limit: int

    @classmethod
    def up_to(cls, limit: int) -> ValueBins:
        """The bins of ``1..limit``."""
        lows = list(range(1, min(limit, EXACT_UP_TO) + 1))
        edge = float(EXACT_UP_TO + 1)
        while int(edge) <= limit:
            if int(edge) > lows[-1]:
                lows.append(int(edge))
            edge *= BIN_RATIO
        return cls(lows=tuple(lows), limit=limit)

    @property
    def middles(self) -> np.ndarray:
        """Each bin's middle: the value the rule assumes for the units in it."""
        highs = np.array([*(low - 1 for low in self.lows[1:]), self.limit], dtype=float)
        middles: np.ndarray = (np.array(self.lows, dtype=float) + highs) / 2
        return middles

    def expression(self, column: str) -> pl.Expr:
        """Row-wise: the bin index of ``column``'s value (in 1..limit)."""
        lows = pl.Series("lows", list(self.lows), dtype=pl.Int64)
        return (
            (pl.lit(lows).search_sorted(pl.col(column), side="right") - 1)
            .cast(pl.Int64)
            .alias(column)
        )


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
    relative: bool
    """mean, quantile: candidates are scored by their noise relative to the rows kept."""
    cells: int
    noise: dict[tuple[int, int], float]
    """Expected |noise| per cell of the (proxy) count at each candidate (k, c)."""
    group_bins: ValueBins | None = None
    row_bins: ValueBins | None = None

    def binned(self, profile: pl.LazyFrame) -> pl.LazyFrame:
        """The profile with its columns replaced by their bin indices (row-wise: still one
        row per unit, so the histogram's privacy argument is unchanged)."""
        expressions = [
            bins.expression(name)
            for name, bins in (
                (self.groups_column, self.group_bins),
                (self.rows_column, self.row_bins),
            )
            if name is not None and bins is not None
        ]
        return profile.with_columns(expressions)

    def _columns(self) -> list[tuple[str | None, ValueBins | None]]:
        return [(self.groups_column, self.group_bins), (self.rows_column, self.row_bins)]

    def _values(self, column: str | None, bins: ValueBins | None, keys: pl.DataFrame) -> np.ndarray:
        if column is None:
            return np.ones(keys.height)
        index = keys[column].to_numpy()
        if bins is None:
            values: np.ndarray = index.astype(float)
            return values
        picked: np.ndarray = bins.middles[index]
        return picked

    def choose(self, released: pl.DataFrame) -> ContributionChoice:
        """The candidate (k, c) of least estimated error, from the released histogram."""
        keys = self.histogram.keys
        shape = [len(set(keys[name].to_list())) for name in keys.columns]
        noisy = released_counts(released, keys)
        box = visible_box(noisy.reshape(shape), self.solved).reshape(-1)
        groups = self._values(self.groups_column, self.group_bins, keys)
        rows = self._values(self.rows_column, self.row_bins, keys)

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
        kept_per_cell = np.maximum((kept_groups * seen) @ kept_rows.T / self.cells, 1.0)
        scores: list[dict[str, float]] = []
        best: tuple[float, int, int] | None = None
        for (i, k), (j, c) in itertools.product(
            enumerate(self.partitions), enumerate(self.contributions)
        ):
            noise = self.noise[(k, c)]
            if self.relative:
                # mean, quantile: rows dropped by hash are a sample, not a bias; what hurts
                # is noise relative to the rows a cell keeps (the sum's and the rank score's
                # noise grow with k·c as the count's does)
                kept = float(kept_per_cell[i, j])
                error = noise / kept
                scores.append({"k": k, "c": c, "kept": kept, "noise": noise, "error": error})
            else:
                bias = float(dropped[i, j]) / self.cells
                error = bias + noise
                scores.append({"k": k, "c": c, "bias": bias, "noise": noise, "error": error})
            if best is None or error < best[0]:
                best = (error, k, c)
        assert best is not None
        lows = [
            bins.lows if bins is not None else None
            for name, bins in (
                (self.groups_column, self.group_bins),
                (self.rows_column, self.row_bins),
            )
            if name is not None
        ]
        table = [
            [
                *(
                    float(b[v]) if b is not None else float(v)
                    for v, b in zip(row, lows, strict=True)
                ),
                float(n),
            ]
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
    group_bins = ValueBins.up_to(group_limit)
    row_bins = ValueBins.up_to(row_limit)
    keys: dict[str, Sequence[int]] = {}
    if need_groups:
        keys[GROUPS_COLUMN] = range(len(group_bins.lows))
    if need_rows:
        keys[ROWS_COLUMN] = range(len(row_bins.lows))
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
        relative=query.statistic in ("mean", "quantile"),
        cells=query.cells,
        noise=noise,
        group_bins=group_bins if need_groups else None,
        row_bins=row_bins if need_rows else None,
    )
