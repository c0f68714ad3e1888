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

NIGHT_HOURS = (0, 1, 2, 3, 4, 5, 6, 22, 23)
"""The hours of "where a phone spends the night" (as in the demo's banner)."""


@dataclass(frozen=True)
class CrowdQuery:
    """A query of the crowd model (issue 13) on ``mobility_events``, timed in-process."""

    name: str
    title: str
    fields: tuple[tuple[str, Any], ...]
    """The body's fields other than ``dataset`` and ``privacy``, in order."""

    dataset: str = "mobility_events"
    file: str = "mobility_events.parquet"

    def body(self, epsilon: Decimal = Decimal(1)) -> dict[str, Any]:
        """The ``POST /v1/queries`` body at ``epsilon``."""
        return {
            "dataset": self.dataset,
            **dict(self.fields),
            "privacy": {"epsilon": format(epsilon, "f")},
        }


Q3 = CrowdQuery(
    "Q3",
    "visitors per municipality × hour",
    (
        ("statistic", "unit_count"),
        ("group_by", ["municipality", "hour"]),
        ("max_partitions_contributed", 3),
    ),
)
Q4 = CrowdQuery(
    "Q4",
    "residents per neighbourhood (unit_location, night-time hours)",
    (
        ("statistic", "unit_count"),
        ("group_by", ["neighbourhood"]),
        ("unit_location", {"column": "neighbourhood", "rule": "most_frequent"}),
        ("where", [{"column": "hour", "op": "in", "value": list(NIGHT_HOURS)}]),
    ),
)
Q5 = CrowdQuery(
    "Q5",
    "events per neighbourhood, rolled up to municipality",
    (
        ("statistic", "count"),
        ("group_by", ["neighbourhood"]),
        ("rollup", ["municipality"]),
        ("max_partitions_contributed", 3),
        ("max_contributions_per_partition", 10),
    ),
)
CROWD_QUERIES = (Q3, Q4, Q5)


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
