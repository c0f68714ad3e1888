"""Malformed and hostile requests: each one a 4xx ``application/problem+json`` that spends
nothing, releases nothing, registers nothing, echoes nothing back, and leaves the server
answering. Table-driven; raw bytes where ``json.dumps`` cannot produce the input."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.reliability.support import (
    VISITORS,
    assert_ledger_valid,
    budget_of,
    ledger_entries,
    setup_events,
)

MB = 1_000_000


@dataclass(frozen=True)
class Case:
    """One bad request: who sends what where, and the status it must get."""

    name: str
    status: int | tuple[int, ...]
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = "/v1/queries"
    role: str = "analyst"


def q(**changes: Any) -> dict[str, Any]:
    """The valid visitors query with ``changes`` (None removes a field)."""
    body = {**VISITORS, **changes}
    return {k: v for k, v in body.items() if v is not None}


def raw(text: str) -> bytes:
    return text.encode()


def ds(**changes: Any) -> dict[str, Any]:
    """A dataset registration body with ``changes``."""
    return {**events_metadata(name="other"), **changes}


SUM = {"statistic": "sum", "column": "dwell_minutes", "group_by": []}
QUANTILE = {"statistic": "quantile", "column": "dwell_minutes", "group_by": []}
JSON = {"content-type": "application/json"}
NESTED = b"[" * 100_000 + b"]" * 100_000
VALID = json.dumps(VISITORS)

CASES = [
    # meaning: names the metadata does not know
    Case("unknown dataset", 404, q(dataset="nothing")),
    Case("unknown statistic", 422, q(statistic="median")),
    Case("unknown column in where", 422, q(where=[{"column": "nope", "op": "eq", "value": 1}])),
    Case("unknown column to sum", 422, q(**{**SUM, "column": "nope"})),
    Case("group by a column without public keys", 422, q(group_by=["dwell_minutes"])),
    Case("group by the privacy unit", 422, q(group_by=["device_id"])),
    Case(
        "filter on the privacy unit",
        422,
        q(where=[{"column": "device_id", "op": "eq", "value": "d00001"}]),
    ),
    Case("group by a column twice", 422, q(group_by=["municipality", "municipality"])),
    Case("unknown filter op", 422, q(where=[{"column": "hour", "op": "like", "value": 1}])),
    Case(
        "between with three values",
        422,
        q(where=[{"column": "hour", "op": "between", "value": [1, 2, 3]}]),
    ),
    Case("between reversed", 422, q(where=[{"column": "hour", "op": "between", "value": [20, 3]}])),
    Case(
        "filter value of the wrong type",
        422,
        q(where=[{"column": "day", "op": "eq", "value": 20260301}]),
    ),
    Case(
        "filter value not a date",
        422,
        q(where=[{"column": "day", "op": "eq", "value": "2026-13-45"}]),
    ),
    Case(
        "filter value an object",
        422,
        q(where=[{"column": "hour", "op": "eq", "value": {"$gt": 1}}]),
    ),
    # privacy amounts
    Case("epsilon 0", 422, q(privacy={"epsilon": 0})),
    Case("epsilon negative", 422, q(privacy={"epsilon": -0.5})),
    Case(
        "epsilon NaN",
        422,
        content=raw(VALID.replace('"epsilon": 0.1', '"epsilon": NaN')),
        headers=JSON,
    ),
    Case(
        "epsilon Infinity",
        422,
        content=raw(VALID.replace('"epsilon": 0.1', '"epsilon": Infinity')),
        headers=JSON,
    ),
    Case(
        "epsilon -Infinity",
        422,
        content=raw(VALID.replace('"epsilon": 0.1', '"epsilon": -Infinity')),
        headers=JSON,
    ),
    Case(
        "epsilon 1e309",
        422,
        content=raw(VALID.replace('"epsilon": 0.1', '"epsilon": 1e309')),
        headers=JSON,
    ),
    Case("epsilon a string", 422, q(privacy={"epsilon": "lots"})),
    Case("epsilon a boolean", 422, q(privacy={"epsilon": True})),
    Case("epsilon with 30 decimals", 422, q(privacy={"epsilon": "0." + "0" * 29 + "1"})),
    Case("epsilon huge", 422, q(privacy={"epsilon": 1e30})),
    Case("rho against a pure budget", 422, q(privacy={"rho": 0.1})),
    Case("empty privacy", 422, q(privacy={})),
    Case("privacy missing", 422, q(privacy=None)),
    Case("max_error negative", 422, q(privacy={"max_error": -1})),
    Case("alpha above 1", 422, q(privacy={"max_error": 10, "alpha": 1.5})),
    # numbers out of range
    Case("bounds reversed", 422, q(**SUM, bounds=[200, 10])),
    Case(
        "bounds NaN",
        422,
        content=raw(json.dumps(q(**SUM)).replace('"group_by"', '"bounds": [0, NaN], "group_by"')),
        headers=JSON,
    ),
    Case("bounds beyond 2^52", 422, q(**SUM, bounds=[0, 1e300])),
    Case("quantile q above 1", 422, q(**QUANTILE, q=1.5)),
    Case("quantile q = 0", 422, q(**QUANTILE, q=0)),
    Case("quantile q = 1", 422, q(**QUANTILE, q=1)),
    Case("quantile q negative", 422, q(**QUANTILE, q=-0.25)),
    Case("quantile without q", 422, q(**QUANTILE)),
    Case("q on a count", 422, q(q=0.5)),
    Case("max_partitions_contributed 0", 422, q(max_partitions_contributed=0)),
    Case("max_partitions_contributed 10^30", 422, q(max_partitions_contributed=10**30)),
    Case("33 filters", 422, q(where=[{"column": "hour", "op": "ge", "value": 0}] * 33)),
    # wrong JSON types and shapes
    Case("statistic a number", 422, q(statistic=5)),
    Case("dataset a list", 422, q(dataset=["events"])),
    Case("group_by a string", 422, q(group_by="municipality")),
    Case("where an object", 422, q(where={"column": "hour"})),
    Case("unknown field", 422, q(sample_rows=10)),
    Case("top level an array", 422, [VISITORS]),
    Case("top level null", 422, content=b"null", headers=JSON),
    Case("top level a string", 422, content=b'"SELECT * FROM events"', headers=JSON),
    Case("truncated JSON", 422, content=raw(VALID[:-7]), headers=JSON),
    Case("empty body", 422, content=b"", headers=JSON),
    Case("no content type", 422, content=raw(VALID)),
    Case(
        "wrong content type", (415, 422), content=raw(VALID), headers={"content-type": "text/plain"}
    ),
    Case(
        "form encoded",
        (415, 422),
        content=b"dataset=events&statistic=count",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Case("invalid UTF-8", 422, content=b'{"dataset": "ev\xff\xfents"}', headers=JSON),
    Case(
        "lone surrogate in a name",
        422,
        headers=JSON,
        content=raw(VALID.replace('"events"', '"ev\\ud800nts"')),
    ),
    Case("100k nested arrays", 422, content=NESTED, headers=JSON),
    Case(
        "100k nested arrays in where",
        422,
        content=raw(VALID[:-1] + ', "where": ') + NESTED + b"}",
        headers=JSON,
    ),
    # size
    Case("a 0.9 MB dataset name", 422, q(dataset="e" * 900_000)),
    Case("a 1 MB string", 413, q(dataset="e" * MB)),
    Case(
        "a 10 MB body",
        413,
        q(where=[{"column": "municipality", "op": "in", "value": ["GM0363"] * (10 * MB // 10)}]),
    ),
    # injection-looking names
    Case("SQL in the dataset name", 422, q(dataset="events'; DROP TABLE ledger; --")),
    Case(
        "SQL in a column name", 422, q(where=[{"column": "hour) OR (1=1", "op": "eq", "value": 1}])
    ),
    Case("SQL in a group_by", 422, q(group_by=["municipality; DELETE FROM budgets"])),
    Case("polars expression in a column", 422, q(**{**SUM, "column": "pl.col('device_id')"})),
    Case("SQL in a release id", 404, method="GET", path="/v1/queries/rel_x' OR '1'='1"),
    Case(
        "SQL in a budget path",
        404,
        method="PUT",
        role="admin",
        path="/v1/budgets/ana' OR 1=1 --/events",
        json={"model": "pure", "epsilon": 5},
    ),
    # NUL characters, which PostgreSQL cannot even compare (was a 500 there)
    Case("NUL in a release id", 422, method="GET", path="/v1/queries/rel_%00x"),
    Case("NUL in a dataset name", 422, method="GET", path="/v1/datasets/ev%00ents"),
    Case("NUL in a budget filter", 422, method="GET", path="/v1/budgets?dataset=%00"),
    Case(
        "NUL in a ledger filter", 422, method="GET", path="/v1/ledger?consumer=ana%00", role="admin"
    ),
    Case(
        "NUL in a budget path",
        422,
        method="PUT",
        path="/v1/budgets/ana%00/events",
        json={"model": "pure", "epsilon": 5},
        role="admin",
    ),
    Case(
        "NUL in a key id", 422, method="DELETE", path="/v1/consumers/ana/keys/key_%00", role="admin"
    ),
    # the same through preview
    Case(
        "preview: NaN",
        422,
        path="/v1/queries/preview",
        content=raw(VALID.replace('"epsilon": 0.1', '"epsilon": NaN')),
        headers=JSON,
    ),
    Case("preview: unknown dataset", 404, q(dataset="nothing"), path="/v1/queries/preview"),
    Case("preview: nested", 422, path="/v1/queries/preview", content=NESTED, headers=JSON),
    # dataset registration (admin): paths confined to the data directory
    Case(
        "register: path traversal",
        422,
        ds(path="../outside.parquet"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: deep traversal",
        422,
        ds(path="a/../../outside.parquet"),
        path="/v1/datasets",
        role="admin",
    ),
    Case("register: absolute path", 422, ds(path="/etc/passwd"), path="/v1/datasets", role="admin"),
    Case(
        "register: absolute path to a data file",
        422,
        ds(path="/ABSOLUTE/outside.parquet"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: home path", 422, ds(path="~/outside.parquet"), path="/v1/datasets", role="admin"
    ),
    Case(
        "register: symlink out of the data dir",
        422,
        ds(path="escape.parquet"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: symlink to /etc/passwd",
        422,
        ds(path="passwd.csv"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: NUL in the path",
        422,
        ds(path="events.parquet\x00.csv"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: backslashes",
        422,
        ds(path="..\\outside.parquet"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: a directory", 422, ds(path="subdir.parquet"), path="/v1/datasets", role="admin"
    ),
    Case(
        "register: SQL in the name",
        422,
        ds(name="x'); DROP TABLE consumers; --"),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: bounds reversed",
        422,
        ds(columns={"hour": {"type": "integer", "bounds": [23, 0]}}),
        path="/v1/datasets",
        role="admin",
    ),
    Case(
        "register: undeclared file column",
        422,
        ds(columns={"secret": {"type": "integer", "bounds": [0, 1]}}),
        path="/v1/datasets",
        role="admin",
    ),
    Case("register: unknown field", 422, ds(sample=True), path="/v1/datasets", role="admin"),
    Case(
        "register: NaN cap",
        422,
        path="/v1/datasets",
        role="admin",
        headers=JSON,
        content=raw(
            json.dumps(ds()).replace(
                '"max_rows"', '"budget_cap": {"model": "pure", "epsilon": NaN}, "max_rows"'
            )
        ),
    ),
]


def _send(case: Case, clients: dict[str, httpx.Client], data_dir: Path) -> httpx.Response:
    client = clients[case.role]
    if case.content is not None:
        return client.request(case.method, case.path, content=case.content, headers=case.headers)
    body = case.json
    if isinstance(body, dict) and str(body.get("path", "")).startswith("/ABSOLUTE/"):
        body = {**body, "path": str(data_dir.parent) + body["path"][len("/ABSOLUTE") :]}
    return client.request(case.method, case.path, json=body, headers=case.headers)


def _plant_escapes(data_dir: Path) -> None:
    outside = data_dir.parent / "outside.parquet"
    write_events(data_dir.parent, name="outside.parquet")
    os.symlink(outside, data_dir / "escape.parquet")
    os.symlink("/etc/passwd", data_dir / "passwd.csv")
    (data_dir / "subdir.parquet").mkdir()


def test_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


def test_malformed_requests_are_problems_that_change_nothing(
    server: Service, admin: httpx.Client
) -> None:
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    _plant_escapes(server.settings.data_dir)
    clients = {"analyst": server.client(keys["ana"]), "admin": admin}
    before = len(ledger_entries(admin))
    failures = []
    for case in CASES:
        response = _send(case, clients, server.settings.data_dir)
        expected = case.status if isinstance(case.status, tuple) else (case.status,)
        problem = response.headers.get("content-type") == "application/problem+json"
        try:
            body = response.json() if problem else None
        except ValueError:
            body = None
        if (
            response.status_code not in expected
            or not problem
            or body is None
            or body.get("status") != response.status_code
            or not {"type", "title", "detail"} <= set(body)
        ):
            failures.append(
                f"{case.name}: {response.status_code} "
                f"{response.headers.get('content-type')} {response.text[:200]}"
            )
        elif len(response.content) > 8000:  # nothing (like a 1 MB input) is echoed back
            failures.append(f"{case.name}: a {len(response.content)}-byte problem")
    assert not failures, "\n".join(failures)
    # Nothing spent, released, registered or changed; the ledger is intact. A query
    # refused for what it asks is ledgered (cost 0, the problem type; throttled).
    assert budget_of(admin, "ana")["spent"] == 0
    added = ledger_entries(admin)[before:]
    assert all(e["kind"] == "refused" for e in added), added
    assert all(e["details"]["reason"] in ("invalid-query", "not-found") for e in added), added
    assert all(set(e["cost"].values()) <= {"pure", 0} for e in added), added
    assert [d["name"] for d in admin.get("/v1/datasets").json()["items"]] == ["events"]
    assert_ledger_valid(admin)
    # And the server still answers, correctly.
    assert clients["analyst"].post("/v1/queries", json=VISITORS).status_code == 200
    assert server.client().get("/healthz", timeout=10).status_code == 200


BAD_CREDENTIALS = [
    b"Bearer " + b"x" * 10_000,
    b"Bearer",
    b"Basic YWRtaW46YWRtaW4=",
    b"Bearer ruis_\xc3\xa9",
    b"bearer x",
    b"Token test-admin-key-0123456789abcdef",
    b"Bearer test-admin-key-0123456789abcdef' OR '1'='1",
    b"Bearer ' OR 1=1 --",
]


def test_malformed_credentials_are_401(server: Service) -> None:
    with server.client() as client:
        for header in BAD_CREDENTIALS:
            response = client.get("/v1/budgets", headers={"Authorization": header})  # type: ignore[dict-item]
            assert response.status_code == 401, (header[:40], response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/budgets").status_code == 401
