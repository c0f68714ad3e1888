"""The analyst's Python client against the real server (each backend), not a mock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import polars as pl
import pytest

import ruis_client
from ruis_client import (
    APIError,
    BudgetExceeded,
    Forbidden,
    InvalidQuery,
    NotFound,
    Release,
    Ruis,
    RuisError,
    TransportError,
    Unauthorized,
)
from tests.conftest import Service, free_port
from tests.factories import DAYS, MUNICIPALITIES, events_metadata, write_events
from tests.support.api import create_consumer, register_events

ROLES = (("ana", "analyst"), ("olga", "auditor"))


def _ruis(server: Service, key: str) -> Ruis:
    """The client for ``server``: through its in-process transport, or over HTTP."""
    return Ruis(server.url, key, transport=server.transport)


def _setup(server: Service, admin: httpx.Client, *, budget: dict[str, Any]) -> dict[str, str]:
    register_events(server, admin)
    keys = {name: create_consumer(admin, name, role) for name, role in ROLES}
    assert admin.put("/v1/budgets/ana/events", json=budget).status_code == 200
    return keys


@pytest.fixture
def ana(server: Service, admin: httpx.Client) -> Iterator[Ruis]:
    """The analyst ``ana`` with ε = 1 on ``events``."""
    keys = _setup(server, admin, budget={"model": "pure", "epsilon": 1})
    with _ruis(server, keys["ana"]) as ruis:
        yield ruis


def test_exported_names() -> None:
    assert sorted(ruis_client.__all__) == [
        "APIError",
        "Accuracy",
        "ApiKey",
        "Bounds",
        "Budget",
        "BudgetExceeded",
        "BudgetPeriod",
        "Checkpoint",
        "CheckpointSummary",
        "Condition",
        "Conflict",
        "ConsistencyProof",
        "Consumer",
        "ConsumerCreated",
        "ContributionBound",
        "CosignatureAccepted",
        "Cost",
        "Cumulative",
        "Dataset",
        "DatasetRetired",
        "DatasetVersion",
        "EffectiveLimits",
        "Forbidden",
        "Health",
        "InclusionProof",
        "InvalidQuery",
        "LedgerDiscrepancy",
        "LedgerEntry",
        "LedgerInconsistency",
        "LedgerInconsistencyWarning",
        "LedgerPage",
        "LedgerVerification",
        "LevelAccuracy",
        "Limits",
        "NewApiKey",
        "NotFound",
        "PandasMissing",
        "Preview",
        "Problem",
        "Receipt",
        "ReceiptInvalid",
        "ReceiptInvalidWarning",
        "Release",
        "ReleaseSummary",
        "Ruis",
        "RuisError",
        "ServerError",
        "SignatureUncheckedWarning",
        "Statistic",
        "TransportError",
        "Truncation",
        "Unauthorized",
    ]
    for name in ruis_client.__all__:
        assert getattr(ruis_client, name) is not None
    for error in (
        Unauthorized,
        Forbidden,
        NotFound,
        InvalidQuery,
        BudgetExceeded,
        ruis_client.DatasetRetired,
    ):
        assert issubclass(error, APIError) and issubclass(error, RuisError)
    assert issubclass(BudgetExceeded, ruis_client.Conflict)
    assert issubclass(TransportError, RuisError) and not issubclass(TransportError, APIError)


def test_preview_query_cache_and_reread(ana: Ruis) -> None:
    [dataset] = ana.datasets()
    assert dataset.name == "events" and dataset.privacy_unit == "device_id"
    assert set(dataset.columns) == {"municipality", "day", "dwell_minutes", "hour"}
    budget = ana.budget("events")
    assert (budget.dataset, budget.model, budget.unit) == ("events", "pure", "epsilon")
    assert (budget.total, budget.spent, budget.remaining) == (1, 0, 1)
    assert [b.dataset for b in ana.budget()] == ["events"]

    preview = ana.preview("events", "unit_count", group_by=["municipality"], epsilon=0.5)
    assert preview.cost == ruis_client.Cost(model="pure", amount=0.5) and preview.fits_budget
    assert preview.accuracy.alpha == 0.05 and (preview.accuracy.error_bound or 0) > 0
    assert preview.budget_remaining == 1 and ana.budget("events").spent == 0
    assert preview.dataset_cap_remaining is None  # the test dataset has no cap

    release = ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.5)
    assert isinstance(release, Release) and release.id.startswith("rel_")
    assert not release.cached and release.cost.amount == 0.5 and release.cost.unit == "epsilon"
    assert release.accuracy.alpha == preview.accuracy.alpha
    assert release.accuracy.covers == "noise_and_bias" and preview.accuracy.covers == "noise"
    assert release.truncation is not None and 0 <= release.truncation.kept_share <= 1
    assert release.budget_remaining == 0.5 and ana.budget("events").spent == 0.5
    assert isinstance(release.frame, pl.DataFrame)
    assert release.frame.columns == ["municipality", "value", "lower", "upper"]
    assert release.columns == ("municipality", "value")
    assert release.frame["municipality"].to_list() == MUNICIPALITIES
    assert release.frame["value"].dtype == pl.Float64
    # noise_and_bias: the truth lies in [value - noise bound, value + noise bound + bias]
    noise, bias = release.accuracy.noise_error_bound, release.accuracy.bias_bound
    assert (
        noise is not None
        and bias is not None
        and noise + bias <= (release.accuracy.error_bound or 0) + 1e-9
    )
    assert (release.frame["value"] - release.frame["lower"] - noise).abs().max() < 1e-9
    assert (release.frame["upper"] - release.frame["value"] - noise - bias).abs().max() < 1e-9

    again = ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.5)
    assert again.cached and again.id == release.id and again.frame.equals(release.frame)
    assert ana.budget("events").spent == 0.5

    [summary] = ana.releases()
    assert (summary.id, summary.statistic, summary.cost) == (release.id, "unit_count", release.cost)
    reread = ana.release(release.id)
    assert reread.cached and reread.frame.equals(release.frame)


def test_dataset_versions_and_retirement(server: Service, admin: httpx.Client, ana: Ruis) -> None:
    first = ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.25)
    assert first.dataset_version == 1 and ana.datasets()[0].version == 1
    write_events(server.settings.data_dir, seed=8, name="events-v2.parquet")  # new data
    added = admin.post("/v1/datasets/events/versions", json={"path": "events-v2.parquet"})
    assert added.status_code == 201, added.text
    assert ana.datasets()[0].version == 2
    second = ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.25)
    assert not second.cached and second.dataset_version == 2 and second.id != first.id
    assert ana.release(first.id).dataset_version == 1
    assert sorted(r.dataset_version for r in ana.releases()) == [1, 2]
    assert admin.post("/v1/datasets/events/retire").status_code == 200
    assert ana.datasets()[0].status == "retired"
    with pytest.raises(ruis_client.DatasetRetired) as raised:
        ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.25)
    assert raised.value.problem.status == 410 and ana.budget("events").spent == 0.5
    assert ana.release(second.id).dataset_version == 2


def test_where_bounds_and_accuracy_target(ana: Ruis) -> None:
    where: list[ruis_client.Condition] = [
        ("day", "between", [DAYS[0], DAYS[1]]),
        {"column": "municipality", "op": "in", "value": MUNICIPALITIES[:2]},
    ]
    mean = ana.query(
        "events", "mean", column="dwell_minutes", bounds=(0, 120), where=where, epsilon=0.2
    )
    assert mean.frame.columns == ["value", "lower", "upper"] and mean.frame.height == 1
    assert mean.frame["lower"][0] <= mean.frame["value"][0] <= mean.frame["upper"][0]
    assert mean.query["where"][0]["value"] == [d.isoformat() for d in DAYS[:2]]
    assert mean.query["bounds"] == [0, 120]
    counted = ana.query(
        "events", "count", group_by=["day"], post_process=["non_negative"], epsilon=0.1
    )
    assert counted.query["post_process"] == ["non_negative"]
    assert (counted.frame["value"] >= 0).all()
    target = ana.preview("events", "count", group_by=["day"], max_error=50, alpha=0.1)
    assert target.accuracy.alpha == 0.1 and (target.accuracy.error_bound or 0) <= 50
    assert target.cost.amount > 0
    if _has_pandas():
        assert list(mean.to_pandas().columns) == ["value", "lower", "upper"]
    else:
        with pytest.raises(ImportError, match=r'pip install "ruis-client\[pandas\]"') as missing:
            mean.to_pandas()
        assert isinstance(missing.value, ruis_client.PandasMissing)


def test_contribution_bounds_per_is_passed_through(ana: Ruis) -> None:
    """k = 3 municipalities on each of the 4 days: L1 = 3·4, scale 12/0.5 (nothing spent)."""
    preview = ana.preview(
        "events",
        "unit_count",
        group_by=["municipality", "day"],
        contribution_bounds_per=["day"],
        max_partitions_contributed=3,
        epsilon=0.5,
    )
    assert preview.query["contribution_bounds_per"] == ["day"]
    assert preview.noise_scale == pytest.approx(3 * len(DAYS) / (0.5 * 0.95))
    with pytest.raises(ValueError, match="list of column names"):
        ana.preview("events", "count", group_by=["day"], contribution_bounds_per="day", epsilon=0.1)


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def test_zcdp_budget(server: Service, admin: httpx.Client) -> None:
    keys = _setup(server, admin, budget={"model": "zcdp", "rho": 0.5})
    with _ruis(server, keys["ana"]) as ruis:
        budget = ruis.budget("events")
        assert budget.unit == "rho" and budget.remaining_epsilon_delta is not None
        release = ruis.query("events", "count", group_by=["municipality"], rho=0.1)
        assert release.cost == ruis_client.Cost(model="zcdp", amount=0.1)
        assert release.budget_remaining == pytest.approx(0.4)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_typed_errors_carry_the_problem(server: Service, admin: httpx.Client, ana: Ruis) -> None:
    with _ruis(server, "not-a-key") as stranger, pytest.raises(Unauthorized) as caught:
        stranger.datasets()
    assert caught.value.status == 401 and caught.value.problem.type == "unauthorized"
    assert caught.value.request_id

    olga_key = create_consumer(admin, "olga2", "auditor")
    with _ruis(server, olga_key) as olga, pytest.raises(Forbidden) as forbidden:
        olga.query("events", "count", epsilon=0.1)
    assert forbidden.value.problem.status == 403

    with pytest.raises(NotFound):
        ana.preview("nope", "count", epsilon=0.1)
    with pytest.raises(NotFound):
        ana.release("rel_does_not_exist")
    admin.post("/v1/datasets", json=events_metadata(name="other"))
    with pytest.raises(NotFound) as no_budget:
        ana.budget("other")
    assert "other" in no_budget.value.problem.detail

    with pytest.raises(InvalidQuery) as invalid:
        ana.preview("events", "sum", column="no_such_column", epsilon=0.1)
    assert invalid.value.status == 422 and "no_such_column" in invalid.value.problem.detail

    with pytest.raises(BudgetExceeded) as exceeded:
        ana.query("events", "count", epsilon=2)
    assert exceeded.value.remaining == {"epsilon": 1}
    assert exceeded.value.asked == {"epsilon": 2}
    assert exceeded.value.problem.type == "budget-exceeded"
    assert exceeded.value.problem.document["remaining"] == {"epsilon": 1}
    assert ana.budget("events").spent == 0

    with pytest.raises(ValueError, match="exactly one"):
        ana.query("events", "count")
    with pytest.raises(ValueError, match="exactly one"):
        ana.query("events", "count", epsilon=0.1, rho=0.1)
    with pytest.raises(ValueError, match="alpha"):
        ana.query("events", "count", epsilon=0.1, alpha=0.1)

    with (
        Ruis(f"http://127.0.0.1:{free_port()}", "k", timeout=2) as nowhere,
        pytest.raises(TransportError),
    ):
        nowhere.datasets()


def test_transport_seam() -> None:
    """The network is an httpx transport: a test (or a proxy) can replace it."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            503,
            json={
                "type": "release-in-progress",
                "title": "Busy",
                "status": 503,
                "detail": "ask again shortly",
            },
        )

    with (
        Ruis("http://ruis.invalid", "secret", transport=httpx.MockTransport(handler)) as ruis,
        pytest.raises(ruis_client.ServerError) as caught,
    ):
        ruis.query("events", "count", where=[("day", "eq", date(2026, 3, 1))], epsilon=0.1)
    assert caught.value.problem.detail == "ask again shortly"
    assert seen[0].headers["authorization"] == "Bearer secret"
    body = seen[0].read()
    assert b'"value":"2026-03-01"' in body.replace(b" ", b"")


def test_preview_reads_the_dataset_cap() -> None:
    document = {
        "dataset": "events",
        "statistic": "count",
        "columns": ["value"],
        "cost": {"model": "pure", "epsilon": 0.5},
        "accuracy": {"alpha": 0.05, "error_bound": 6.0},
        "mechanism": "discrete_laplace",
        "noise_scale": 2.0,
        "budget_remaining": {"epsilon": 1},
        "dataset_cap_remaining": {"epsilon": 0.3},
        "fits_budget": False,
        "query": {},
    }
    preview = ruis_client.Preview.from_document(document)
    assert preview.dataset_cap_remaining == 0.3 and not preview.fits_budget


def test_datasets_with_automatic_bounds(server: Service, admin: httpx.Client) -> None:
    """A dataset whose contribution bounds are ``"auto"`` lists (they stay ``"auto"``)."""
    register_events(
        server, admin, max_partitions_contributed="auto", max_contributions_per_partition="auto"
    )
    key = create_consumer(admin, "ana")
    assert admin.put("/v1/budgets/ana/events", json={"model": "pure", "epsilon": 1}).is_success
    with _ruis(server, key) as ruis:
        (dataset,) = ruis.datasets()
    assert dataset.max_partitions_contributed == "auto"
    assert dataset.max_contributions_per_partition == "auto"


def test_costs_are_sent_to_twelve_decimals(server: Service, admin: httpx.Client) -> None:
    """``0.01 + 11e-5`` is ``0.010110000000000001`` as a float: sent as 0.01011."""
    keys = _setup(server, admin, budget={"model": "pure", "epsilon": 1})
    with _ruis(server, keys["ana"]) as ruis:
        preview = ruis.preview("events", "count", epsilon=0.01 + 11e-5)
    assert preview.cost.amount == pytest.approx(0.01011, abs=1e-15)
