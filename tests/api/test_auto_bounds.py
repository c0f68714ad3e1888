"""Automatic bounds over HTTP: the split is ledgered before the data is read, the choice after."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Service
from tests.factories import MUNICIPALITIES, events_metadata
from tests.support.api import analyst, ledger, register_events

AUTO_VISITORS: dict[str, Any] = {
    "dataset": "events",
    "statistic": "unit_count",
    "group_by": ["municipality"],
    "max_partitions_contributed": "auto",
    "privacy": {"epsilon": 0.5},
}
NOISE_ONLY = "noise"


def _analyst(
    server: Service,
    admin: httpx.Client,
    *,
    model: str = "pure",
    amount: float = 1.0,
    **metadata: Any,
) -> httpx.Client:
    register_events(server, admin, **metadata)
    return analyst(server, admin, model=model, amount=amount)


def test_auto_release_ledgers_the_split_then_the_choice(
    server: Service, admin: httpx.Client
) -> None:
    ana = _analyst(server, admin)
    response = ana.post("/v1/queries", json=AUTO_VISITORS)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cost"] == {"model": "pure", "epsilon": 0.5}
    assert body["budget_remaining"] == {"epsilon": 0.5}
    assert [row[0] for row in body["rows"]] == MUNICIPALITIES
    assert body["query"]["max_partitions_contributed"] == "auto"
    chosen = body["bounds_chosen"]
    assert 1 <= chosen["max_partitions_contributed"] <= len(MUNICIPALITIES)
    assert chosen["max_contributions_per_partition"] == 1 and chosen["clamp"] is None
    assert body["accuracy"]["covers"] == NOISE_ONLY and body["accuracy"]["error_bound"] > 0
    auto = body["auto"]
    assert auto["share"] == 0.1
    assert auto["selection_cost"] == {"epsilon": 0.05}
    assert auto["statistic_cost"] == {"epsilon": 0.45}
    # the statistic's noise is at the chosen k, at the statistic's cost
    assert body["noise_scale"] == pytest.approx(chosen["max_partitions_contributed"] / 0.45)

    (release,) = ledger(admin, kind="release")
    assert release["cost"] == {"model": "pure", "epsilon": 0.5}
    details = release["details"]
    assert details["release_id"] == body["id"]
    assert details["query"]["max_partitions_contributed"] == "auto"
    assert details["auto"]["selection_cost"] == {"epsilon": 0.05}
    assert details["auto"]["statistic_cost"] == {"epsilon": 0.45}
    assert details["auto"]["candidates"] == {
        "max_partitions_contributed": list(range(1, len(MUNICIPALITIES) + 1))
    }
    (step,) = details["auto"]["selection"]
    assert step["chooses"] == "contribution_bounds" and step["cost"] == {"epsilon": 0.05}
    assert step["opendp_privacy_loss"] <= 0.05
    assert "bounds_chosen" not in details  # not known before the data is read

    (output,) = ledger(admin, kind="release_output")
    assert output["seq"] > release["seq"]
    out = output["details"]
    assert out["rows"] == body["rows"] and out["bounds_chosen"] == chosen
    assert out["noise_scale"] == body["noise_scale"] and out["mechanism"] == body["mechanism"]
    assert out["opendp_privacy_loss"] <= 0.5
    histogram = out["selection"]["contribution_bounds"]["histogram"]
    assert [row[0] for row in histogram] == list(range(1, len(MUNICIPALITIES) + 1))
    assert admin.get("/v1/ledger/verify").json()["valid"] is True

    again = ana.post("/v1/queries", json=AUTO_VISITORS).json()
    assert again["cached"] is True and again["id"] == body["id"]
    assert again["bounds_chosen"] == chosen and again["rows"] == body["rows"]
    assert len(ledger(admin, kind="release")) == 1
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0.5


def test_auto_clamp_under_zcdp_spends_exactly_rho(server: Service, admin: httpx.Client) -> None:
    ana = _analyst(server, admin, model="zcdp", amount=0.5)
    query = {
        "dataset": "events",
        "statistic": "sum",
        "column": "dwell_minutes",
        "group_by": ["day"],
        "bounds": "auto",
        "max_contributions_per_partition": "auto",
        "auto_share": 0.2,
        "privacy": {"rho": 0.3},
    }
    response = ana.post("/v1/queries", json=query)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cost"] == {"model": "zcdp", "rho": 0.3}
    assert body["budget_remaining"] == {"rho": 0.2}
    assert body["auto"]["selection_cost"] == {"rho": 0.06}
    assert body["auto"]["statistic_cost"] == {"rho": 0.24}
    low, high = body["bounds_chosen"]["clamp"]
    assert low == 0 and 0 < high <= 240
    (release,) = ledger(admin, kind="release")
    steps = release["details"]["auto"]["selection"]
    assert [s["chooses"] for s in steps] == ["contribution_bounds", "clamp"]
    assert sum(s["cost"]["rho"] for s in steps) == pytest.approx(0.06, abs=1e-12)
    assert release["details"]["auto"]["candidates"]["clamp"][-1] == [0, 240]
    (output,) = ledger(admin, kind="release_output")
    assert set(output["details"]["selection"]) == {"contribution_bounds", "clamp"}
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0.3


def test_auto_preview_reads_no_data_and_spends_nothing(
    server: Service, admin: httpx.Client
) -> None:
    ana = _analyst(server, admin)
    (server.settings.data_dir / "events.parquet").unlink()  # preview must not need it
    preview = ana.post("/v1/queries/preview", json=AUTO_VISITORS)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["cost"] == {"model": "pure", "epsilon": 0.5} and body["fits_budget"] is True
    smallest, largest = body["accuracy"]["error_bound_range"]
    assert 0 < smallest < largest == body["accuracy"]["error_bound"]
    assert body["accuracy"]["covers"] == NOISE_ONLY
    assert body["noise_scale"] == pytest.approx(len(MUNICIPALITIES) / 0.45)
    assert body["auto"]["statistic_cost"] == {"epsilon": 0.45}
    assert body["bounds"]["max_partitions_contributed"] == "auto"
    target = ana.post(
        "/v1/queries/preview", json={**AUTO_VISITORS, "privacy": {"max_error": 30}}
    ).json()
    assert target["accuracy"]["error_bound"] <= 30  # at the largest candidate, so at all
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    kinds = {entry["kind"] for entry in ledger(admin)}
    assert not kinds & {"release", "refused", "reread", "release_output"}


def test_dataset_defaults_can_be_auto(server: Service, admin: httpx.Client) -> None:
    columns = events_metadata()["columns"]
    columns["dwell_minutes"] = {"type": "float", "bounds": [0, 240], "auto_bounds": True}
    ana = _analyst(
        server,
        admin,
        max_partitions_contributed="auto",
        auto_limits={"max_partitions_contributed": 4, "max_contributions_per_partition": 5},
        columns=columns,
    )
    shown = admin.get("/v1/datasets/events").json()
    assert shown["max_partitions_contributed"] == "auto"
    assert shown["auto_limits"] == {
        "max_partitions_contributed": 4,
        "max_contributions_per_partition": 5,
    }
    assert shown["columns"]["dwell_minutes"]["auto_bounds"] is True
    preview = ana.post(
        "/v1/queries/preview",
        json={
            "dataset": "events",
            "statistic": "sum",
            "column": "dwell_minutes",
            "group_by": ["municipality"],
            "privacy": {"epsilon": 1},
        },
    ).json()
    assert preview["query"]["max_partitions_contributed"] == "auto"
    assert preview["query"]["bounds"] == "auto"
    assert preview["auto"]["candidates"]["max_partitions_contributed"] == [1, 2, 3, 4]
    bad = ana.post(
        "/v1/queries", json={**AUTO_VISITORS, "max_partitions_contributed": 2, "auto_share": 0.2}
    )
    assert bad.status_code == 422 and "auto_share" in bad.json()["detail"]
