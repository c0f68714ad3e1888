"""Accuracy-first: the smallest 4-significant-digit cost whose per-cell bound meets max_error."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import pytest

from privacy import DatasetMetadata, InvalidQuery, Plan, QueryRequest, execute, plan_query

ExactFn = Callable[[Plan, pl.DataFrame], dict[tuple[Any, ...], float]]


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "group_by": ["municipality"],
        "privacy": {"max_error": 10},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


def one_step_less(cost: Decimal) -> Decimal:
    return cost - Decimal(1).scaleb(cost.adjusted() - 3)


CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"statistic": "unit_count"}, "pure", "epsilon"),
    ({"statistic": "unit_count"}, "zcdp", "rho"),
    ({"statistic": "count", "max_contributions_per_partition": 2}, "pure", "epsilon"),
    ({"statistic": "sum", "column": "hour"}, "pure", "epsilon"),
    ({"statistic": "sum", "column": "dwell_minutes"}, "zcdp", "rho"),
]


@pytest.mark.parametrize(
    ("fields", "model", "unit"), CASES, ids=[f"{f['statistic']}-{m}" for f, m, _ in CASES]
)
def test_tighter_targets_cost_more_and_are_met(
    metadata: DatasetMetadata, fields: dict[str, Any], model: str, unit: str
) -> None:
    scale = 100.0 if fields["statistic"] == "sum" else 1.0
    costs: list[Decimal] = []
    for max_error in (20 * scale, 10 * scale, 5 * scale):
        plan = plan_query(
            query(**fields, privacy={"max_error": max_error, "alpha": 0.05}), metadata, model
        )  # type: ignore[arg-type]
        assert plan.accuracy.error_bound is not None
        assert plan.accuracy.error_bound <= max_error
        assert plan.accuracy.alpha == 0.05
        assert len(plan.cost.normalize().as_tuple().digits) <= 4
        assert plan.opendp_loss <= float(plan.cost)
        assert plan.canonical["privacy"] == {"max_error": max_error, "alpha": 0.05}
        # the chosen cost is the smallest at 4 significant digits
        cheaper = plan_query(
            query(**fields, privacy={unit: str(one_step_less(plan.cost))}), metadata, model
        )  # type: ignore[arg-type]
        assert cheaper.accuracy.error_bound is not None
        assert cheaper.accuracy.error_bound > max_error
        costs.append(plan.cost)
    assert costs[0] < costs[1] < costs[2]


def test_smaller_alpha_costs_more(metadata: DatasetMetadata) -> None:
    loose = plan_query(query(privacy={"max_error": 8, "alpha": 0.2}), metadata, "pure")
    strict = plan_query(query(privacy={"max_error": 8, "alpha": 0.01}), metadata, "pure")
    assert loose.cost < strict.cost
    assert strict.accuracy.alpha == 0.01


def test_accuracy_first_release_covers(
    metadata: DatasetMetadata, events: pl.DataFrame, exact: ExactFn
) -> None:
    plan = plan_query(query(privacy={"max_error": 8}), metadata, "pure")
    truth = exact(plan, events)
    errors = np.array(
        [
            row[-1] - truth[tuple(row[:-1])]
            for _ in range(6)
            for row in execute(plan, events.lazy()).rows
        ]
    )
    assert np.mean(np.abs(errors) <= 8) >= 0.90


def test_absurd_targets_are_refused(metadata: DatasetMetadata) -> None:
    with pytest.raises(InvalidQuery, match="more than the limit"):
        plan_query(query(privacy={"max_error": 1e-6}), metadata, "pure")


def test_very_loose_targets_cost_little(metadata: DatasetMetadata) -> None:
    plan = plan_query(query(privacy={"max_error": 1e9}), metadata, "pure")
    assert Decimal(0) < plan.cost < Decimal("1e-6")
    assert plan.accuracy.error_bound is not None and plan.accuracy.error_bound <= 1e9
