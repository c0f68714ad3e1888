"""A series, as a bureau runs it: a month of events, then the next month as a new version
of the same dataset, under a monthly budget. Versions and periods together: the new
month's keys arrive with version 2, its query is charged to its own month, the cumulative
guarantee adds the months up, and the first month's release stays re-readable."""

from __future__ import annotations

from datetime import date, timedelta

import httpx

from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.support.api import create_consumer

MARCH = [date(2026, 3, 1) + timedelta(days=i) for i in range(31)]
MARCH_APRIL = [date(2026, 3, 1) + timedelta(days=i) for i in range(61)]


def _query(low: str, high: str) -> dict[str, object]:
    return {
        "dataset": "events",
        "statistic": "count",
        "where": [{"column": "day", "op": "between", "value": [low, high]}],
        "privacy": {"epsilon": 1},
    }


def test_a_new_month_as_a_new_version_under_a_monthly_budget(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir, days=MARCH, name="march.parquet")
    created = admin.post("/v1/datasets", json=events_metadata(path="march.parquet", days=MARCH))
    assert created.status_code == 201, created.text
    key = create_consumer(admin, "ana")
    budget = {"model": "pure", "epsilon": 1, "period": {"column": "day", "every": "month"}}
    assert admin.put("/v1/budgets/ana/events", json=budget).status_code == 200
    ana = server.client(key)

    march = ana.post("/v1/queries", json=_query("2026-03-01", "2026-03-31"))
    assert march.status_code == 200, march.text
    assert march.json()["dataset_version"] == 1
    # April is not a key yet: a filter on it alone selects no public key (422, nothing spent)
    early = ana.post("/v1/queries", json=_query("2026-04-01", "2026-04-30"))
    assert early.status_code == 422, early.text

    write_events(data_dir, days=MARCH_APRIL, name="march-april.parquet")
    keys = [d.isoformat() for d in MARCH_APRIL]
    added = admin.post(
        "/v1/datasets/events/versions",
        json={"path": "march-april.parquet", "columns": {"day": {"keys": keys}}},
    )
    assert added.status_code == 201, added.text

    april = ana.post("/v1/queries", json=_query("2026-04-01", "2026-04-30"))
    assert april.status_code == 200, april.text
    body = april.json()
    assert body["dataset_version"] == 2
    assert body["period"]["period"] == "2026-04"
    assert body["cumulative"] == {"epsilon": 2.0}
    # March is spent on every version: the same people, the same month
    again = ana.post("/v1/queries", json=_query("2026-03-01", "2026-03-31"))
    assert again.status_code == 409, again.text
    old = ana.get(f"/v1/queries/{march.json()['id']}")
    assert old.status_code == 200 and old.json()["dataset_version"] == 1
    assert admin.get("/v1/ledger/verify").json()["valid"] is True
