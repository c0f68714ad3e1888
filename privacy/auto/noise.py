"""Noise facts and each candidate's predicted statistic noise (utility only: no privacy rests here).

The choosing rule weighs bias against the noise the statistic would have at each
candidate; these are OpenDP's distributions' moments and OpenDP's privacy maps at
global scale 1, used only to rank candidates and to state the range a preview shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import opendp.prelude as dp

from privacy.amount import PrivacyModel
from privacy.hierarchy import rollup_contribution_bounds
from privacy.measurement import (
    MeasurementBuilder,
    contribution_bounds,
    predicted_scale,
)
from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery


def expected_abs_noise(distribution: str, scale: float) -> float:
    """E|X| of OpenDP's noise ``distribution`` at ``scale``.

    Discrete Laplace, P(x) ∝ exp(−|x|/b): with p = exp(−1/b), E|X| = 2p/(1 − p²);
    Laplace: b; Gaussian: σ·√(2/π); discrete Gaussian: summed exactly for
    small σ, else as the Gaussian.
    """
    if not scale > 0:
        return 0.0
    if distribution == "Integer Laplace":
        p = math.exp(-1.0 / scale)
        return 2.0 * p / (1.0 - p * p)
    if distribution == "Float Laplace":
        return scale
    if distribution == "Integer Gaussian" and scale < 8:
        support = np.arange(-int(40 * scale) - 10, int(40 * scale) + 11, dtype=float)
        weights = np.exp(-(support**2) / (2 * scale * scale))
        return float((np.abs(support) * weights).sum() / weights.sum())
    return scale * math.sqrt(2.0 / math.pi)


def noise_sd(distribution: str, scale: float) -> float:
    """The standard deviation of OpenDP's noise ``distribution`` at ``scale``."""
    return scale * math.sqrt(2.0) if "Laplace" in distribution else scale


@dataclass(frozen=True, eq=False)
class UnitScaleMeasurement:
    """A statistic's measurement at global scale 1, to predict its noise at any (k, c).

    OpenDP's noise scale is the global scale times ``unit_scale`` and its loss
    ∝ 1/scale (pure) or 1/scale² (zCDP), so at the statistic's cost
    ``target`` and bounds (k, c) the noise scale is
    ``unit_scale · predicted_scale(map(d_in(k, c)), target)``. The chosen
    candidate is then compiled for real; these predictions only rank candidates
    and state the range a preview shows.
    """

    measurement: dp.Measurement = field(repr=False)
    unit_scale: float
    distribution: str
    group_by: tuple[str, ...]
    bounds_per: tuple[str, ...] = ()
    bounds_per_cells: int = 1
    query: ResolvedQuery | None = field(default=None, repr=False)
    parent: dp.Measurement | None = field(default=None, repr=False)
    """A ``rollup``'s parent-level measurement at global scale 1: the cost pays for both."""

    @classmethod
    def of(cls, builder: MeasurementBuilder, aggregate: str) -> UnitScaleMeasurement:
        """The component ``aggregate`` (``count`` or ``sum``) of ``builder``'s statistic."""
        measurement = builder.build(1.0)
        components = builder.summarize(measurement, 0.05)
        component = next((c for c in components if c.aggregate == aggregate), components[0])
        query = builder.query
        return cls(
            measurement=measurement,
            unit_scale=component.scale,
            distribution=component.distribution,
            group_by=query.group_by,
            bounds_per=query.bounds_per,
            bounds_per_cells=query.bounds_per_cells,
            query=query,
            parent=builder.build_parent(1.0) if query.rollup is not None else None,
        )

    def scale(self, k: int, c: int, target: float, model: PrivacyModel) -> float:
        """The noise scale at bounds (k, c) and cost ``target`` (a rollup: both levels at one
        global scale, their maps summed, as :meth:`MeasurementBuilder.total_loss`)."""
        d_in = contribution_bounds(self.group_by, k, c, self.bounds_per, self.bounds_per_cells)
        if self.parent is None or self.query is None or self.query.rollup is None:
            loss = float(self.measurement.map(d_in))
        else:
            both = rollup_contribution_bounds(self.query, self.query.rollup, d_in, k, c)
            loss = float(self.measurement.map(both)) + float(self.parent.map(both))
        return self.unit_scale * predicted_scale(loss, target, model)

    def expected_abs(self, k: int, c: int, target: float, model: PrivacyModel) -> float:
        """E|noise| at bounds (k, c) and cost ``target``."""
        return expected_abs_noise(self.distribution, self.scale(k, c, target, model))


def count_proxy(
    query: ResolvedQuery, metadata: DatasetMetadata, model: PrivacyModel
) -> UnitScaleMeasurement:
    """The count of rows over the query's cells (its own statistic for count/unit_count)."""
    counted = replace(
        query,
        statistic="count",
        column=None,
        column_type=None,
        q=None,
        bounds=None,
        auto=None,
        post_process=(),
    )
    return UnitScaleMeasurement.of(MeasurementBuilder(counted, metadata, model), "count")
