"""The benchmarked queries, and the noise error OpenDP predicts for them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class BenchQuery:
    """One query of the benchmark, with what plain Polars needs to compute it exactly."""

    name: str
    title: str
    dataset: str
    file: str
    group_by: str
    max_partitions_contributed: int
    """The effective ``k`` (the dataset default when the query does not set one)."""
    sets_k: bool
    """Whether the query body states ``max_partitions_contributed`` itself."""

    def body(self, epsilon: Decimal = Decimal(1)) -> dict[str, Any]:
        """The ``POST /v1/queries`` body at ``epsilon``."""
        body: dict[str, Any] = {
            "dataset": self.dataset,
            "statistic": "unit_count",
            "group_by": [self.group_by],
            "privacy": {"epsilon": format(epsilon, "f")},
        }
        if self.sets_k:
            body["max_partitions_contributed"] = self.max_partitions_contributed
        return body


Q1 = BenchQuery(
    "Q1",
    "visitors per municipality",
    "mobility_events",
    "mobility_events.parquet",
    "municipality",
    3,
    sets_k=True,
)
Q2 = BenchQuery(
    "Q2",
    "residents per neighbourhood",
    "residents",
    "residents.parquet",
    "home_neighbourhood",
    1,
    sets_k=False,
)
QUERIES = (Q1, Q2)
SMALL = BenchQuery(
    "S", "visitors per day", "mobility_events", "mobility_events.parquet", "day", 1, sets_k=False
)
"""The ledger tests' query: one cell on the one-day tiny data set, so the DP work is small."""
UNIT = "device_id"


def distinct_epsilons(
    count: int, base: Decimal = Decimal(1), step: Decimal = Decimal("0.0001")
) -> list[Decimal]:
    """``count`` slightly different costs, so that no query is answered from the cache."""
    return [base + i * step for i in range(count)]


def expected_abs_noise(mechanism: str, scale: float) -> float:
    """E|X| of the noise OpenDP adds at ``scale``.

    Discrete Laplace with scale b, P(x) ∝ exp(−|x|/b): with p = exp(−1/b),
    E|X| = 2p / (1 − p²). Continuous Laplace: b. Discrete/continuous Gaussian
    with σ: σ·√(2/π) (the discrete one is within rounding of it for σ ≳ 1).
    """
    if scale <= 0:
        return 0.0
    if mechanism == "discrete_laplace":
        p = math.exp(-1.0 / scale)
        return 2.0 * p / (1.0 - p * p)
    if mechanism == "laplace":
        return scale
    if mechanism in ("gaussian", "discrete_gaussian"):
        return scale * math.sqrt(2.0 / math.pi)
    raise ValueError(f"no expected error for mechanism {mechanism!r}")
