"""The console's view computations on their own: burn-down arithmetic and release
intervals, from answers shaped as the API gives them."""

from __future__ import annotations

from typing import Any

import pytest

from api.console.analyst import query_body
from api.console.views import burn_down, release_view


def _release(seq: int, epsilon: float, period: str | None = None) -> dict[str, Any]:
    details = {"period": {"period": period, "start": "x"}} if period else {}
    cost = {"model": "pure", "epsilon": epsilon}
    return {"seq": seq, "time": f"t{seq}", "kind": "release", "cost": cost, "details": details}


def test_burn_down_is_cumulative_against_the_total() -> None:
    budget = {"consumer": "ana", "dataset": "events", "unit": "epsilon", "total": 1.0, "spent": 0.6}
    entries = [
        _release(3, 0.25),
        {"seq": 4, "time": "t4", "kind": "refused", "cost": {"epsilon": 9}, "details": {}},
        {"seq": 5, "time": "t5", "kind": "budget_set", "cost": None, "details": {}},
        _release(6, 0.35),
    ]
    chart = burn_down(budget, entries)
    assert [(p.seq, p.spent, p.remaining) for p in chart.points] == [
        (3, 0.25, 0.75),
        (6, pytest.approx(0.6), pytest.approx(0.4)),
    ]
    assert chart.chart()["series"][0]["values"] == pytest.approx([1.0, 0.75, 0.4])
    assert chart.chart_id == "burn-ana-events"


def test_a_budget_per_period_starts_again_each_period() -> None:
    budget = {
        "consumer": "ana",
        "dataset": "events",
        "unit": "epsilon",
        "total": 1.0,
        "spent": 0.9,
        "period": {"column": "day", "every": "month"},
    }
    entries = [
        _release(1, 0.5, "2026-03"),
        _release(2, 0.3, "2026-04"),
        _release(3, 0.1, "2026-03"),
    ]
    points = burn_down(budget, entries).points
    assert [(p.period, p.remaining) for p in points] == [
        ("2026-03", 0.5),
        ("2026-04", pytest.approx(0.7)),
        ("2026-03", pytest.approx(0.4)),
    ]


def test_release_intervals() -> None:
    noise = {"alpha": 0.05, "error_bound": 2.0, "covers": "noise"}
    view = release_view({"columns": ["m", "value"], "rows": [["a", 10.0]], "accuracy": noise})
    assert (view.group_columns, view.rows[0].lower, view.rows[0].upper) == (["m"], 8.0, 12.0)
    biased = {
        "alpha": 0.05,
        "error_bound": 5.0,
        "covers": "noise_and_bias",
        "noise_error_bound": 2.0,
        "bias_bound": 3.0,
    }
    row = release_view({"columns": ["value"], "rows": [[10.0]], "accuracy": biased}).rows[0]
    assert (row.groups, row.lower, row.upper) == ([], 8.0, 15.0)  # bounding only lowers
    mean = {
        "columns": ["d", "value", "lower", "upper"],
        "rows": [["x", 5.0, 1.0, 7.5]],
        "accuracy": {"alpha": 0.05, "error_bound": 9.0},
    }
    row = release_view(mean).rows[0]
    assert (row.value, row.lower, row.upper) == (5.0, 1.0, 7.5)
    quantile = {"alpha": 0.05, "error_bound": None, "rank_error_bound": 40.0}
    row = release_view({"columns": ["value"], "rows": [[3.0]], "accuracy": quantile}).rows[0]
    assert (row.lower, row.upper) == (None, None)


def test_query_body_from_the_form() -> None:
    form = {
        "dataset": "events",
        "statistic": "sum",
        "column": " dwell_minutes ",
        "group_by": "day, municipality,",
        "epsilon": "0.5",
        "rho": "",
        "q": "",
    }
    assert query_body(form) == {
        "dataset": "events",
        "statistic": "sum",
        "privacy": {"epsilon": "0.5"},
        "column": "dwell_minutes",
        "group_by": ["day", "municipality"],
    }
    zcdp = query_body({**form, "statistic": "quantile", "rho": "0.01", "q": "0.9"})
    assert zcdp["privacy"] == {"rho": "0.01"} and zcdp["q"] == 0.9
