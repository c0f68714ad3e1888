"""``rollup`` over HTTP: both levels with a ``level`` column, parents exactly the sums of
their children, a bound per level in the response, the preview and the ledger; the
refused combinations are 422s that spend nothing."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx
import pytest

from cli.demo_data import generate
from tests.conftest import Service
from tests.support.api import analyst, ledger

ROLLUP: dict[str, Any] = {
    "dataset": "demo",
    "statistic": "count",
    "group_by": ["neighbourhood"],
    "rollup": ["municipality"],
    "max_partitions_contributed": 3,
    "max_contributions_per_partition": 5,
    "privacy": {"epsilon": 0.5},
}


def register_demo(server: Service, admin: httpx.Client) -> tuple[list[str], list[str]]:
    """Demo events (neighbourhood WK<4 digits><2> lies in GM<the same 4 digits>) as
    ``demo`` with that hierarchy; the public municipality and neighbourhood codes."""
    files = generate(server.settings.data_dir, devices=300, days=3)
    mapping = {code: "GM" + code[2:6] for code in files.neighbourhood_codes}
    body = {
        "name": "demo",
        "path": files.events_path.name,
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": files.municipality_codes},
            "neighbourhood": {"type": "categorical", "keys": files.neighbourhood_codes},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
        },
        "hierarchy": {"neighbourhood": {"parent": "municipality", "map": mapping}},
        "max_rows": files.max_rows,
    }
    response = admin.post("/v1/datasets", json=body)
    assert response.status_code == 201, response.text
    return files.municipality_codes, files.neighbourhood_codes


def test_a_rollup_releases_both_levels_consistently(server: Service, admin: httpx.Client) -> None:
    municipalities, neighbourhoods = register_demo(server, admin)
    ana = analyst(server, admin, amount=1.0, datasets=("demo",))
    preview = ana.post("/v1/queries/preview", json=ROLLUP)
    assert preview.status_code == 200, preview.text
    planned = preview.json()
    assert planned["columns"] == ["level", "municipality", "neighbourhood", "value"]
    levels = planned["accuracy"]["levels"]
    assert [level["level"] for level in levels] == ["neighbourhood", "municipality"]
    assert planned["accuracy"]["error_bound"] == max(level["error_bound"] for level in levels)
    assert all("bias_bound" not in level for level in levels)  # a preview: noise only
    response = ana.post("/v1/queries", json=ROLLUP)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == planned["columns"]
    rows = body["rows"]
    assert len(rows) == len(neighbourhoods) + len(municipalities)
    children: dict[str, list[float]] = defaultdict(list)
    for level, municipality, neighbourhood, value in rows[: len(neighbourhoods)]:
        assert level == "neighbourhood" and municipality == "GM" + neighbourhood[2:6]
        children[municipality].append(value)
    assert [row[2] for row in rows[: len(neighbourhoods)]] == neighbourhoods
    assert [row[1] for row in rows[len(neighbourhoods) :]] == municipalities
    for level, municipality, neighbourhood, value in rows[len(neighbourhoods) :]:
        assert level == "municipality" and neighbourhood is None
        assert sum(children[municipality]) == value  # exactly, in JSON floats
    accuracy = body["accuracy"]
    assert [level["level"] for level in accuracy["levels"]] == ["neighbourhood", "municipality"]
    assert accuracy["error_bound"] == max(level["error_bound"] for level in accuracy["levels"])
    if accuracy["covers"] == "noise_and_bias":
        assert all("bias_bound" in level for level in accuracy["levels"])
    assert body["query"]["rollup"] == ["municipality"]
    [entry] = ledger(admin, kind="release")
    assert entry["details"]["query"]["rollup"] == ["municipality"]
    [output] = ledger(admin, kind="release_output")
    stored = output["details"]
    assert stored["rows_count"] == len(rows) and stored["columns"] == body["columns"]
    assert stored["accuracy"]["levels"] == accuracy["levels"]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"statistic": "mean", "column": "dwell_minutes"}, "adds up"),
        ({"statistic": "unit_count"}, "unit_location"),
        ({"post_process": ["non_negative"]}, "non_negative"),
        ({"rollup": ["neighbourhood"]}, "already in group_by"),
        ({"rollup": ["dwell_minutes"]}, None),
    ],
)
def test_refused_rollups_are_422s_that_spend_nothing(
    server: Service, admin: httpx.Client, change: dict[str, Any], detail: str | None
) -> None:
    register_demo(server, admin)
    ana = analyst(server, admin, amount=1.0, datasets=("demo",))
    for path in ("/v1/queries/preview", "/v1/queries"):
        response = ana.post(path, json={**ROLLUP, **change})
        assert response.status_code == 422, response.text
        if detail is not None:
            assert detail in response.json()["detail"]
    assert ana.get("/v1/budgets").json()["items"][0]["spent"] == 0
    assert ledger(admin, kind="release") == []
