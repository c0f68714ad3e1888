"""Security review points, each with a test: keys at rest and in responses, constant-time
key comparison, analyst isolation, the auditor's read-only role, admin actions in the
ledger with their actor, and no response ever carrying a value of the private data."""

from __future__ import annotations

import ast
import hashlib
import hmac
import inspect
import json
import re
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Engine

from db import accounts
from db.engine import Database
from db.migrate import upgrade
from tests.conftest import ADMIN_KEY, Service
from tests.factories import DAYS, MUNICIPALITIES, events_metadata, write_events
from tests.reliability.support import (
    VISITORS,
    assert_ledger_valid,
    budget_of,
    ledger_entries,
    setup_events,
)

PROBLEM = "application/problem+json"


def _consumer(admin: httpx.Client, name: str, role: str) -> dict[str, Any]:
    response = admin.post("/v1/consumers", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _every_stored_text(url: str) -> Iterator[str]:
    """Every value of every row of every table, as text."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for table in sa_inspect(connection).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    yield from (str(value) for value in row)
    finally:
        engine.dispose()


def _everything_an_admin_can_read(admin: httpx.Client) -> str:
    paths = [
        "/v1/consumers",
        "/v1/budgets",
        "/v1/datasets",
        "/v1/ledger?limit=1000",
        "/v1/ledger/verify",
        "/v1/ledger/export?format=jsonl",
        "/v1/ledger/export?format=csv",
    ]
    paths += [f"/v1/consumers/{c['name']}/keys" for c in admin.get("/v1/consumers").json()["items"]]
    texts = []
    for path in paths:
        response = admin.get(path)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    return "\n".join(texts)


# --- keys ------------------------------------------------------------------------------


def test_keys_are_stored_only_as_hashes_and_never_shown_again(
    server: Service, admin: httpx.Client
) -> None:
    created = _consumer(admin, "ana", "analyst")
    issued = admin.post("/v1/consumers/ana/keys")
    assert issued.status_code == 201
    secrets = [created["api_key"], issued.json()["api_key"], ADMIN_KEY]
    revoked = admin.delete(f"/v1/consumers/ana/keys/{created['key_id']}")
    assert revoked.status_code == 200 and "api_key" not in revoked.json()
    # At rest: no table holds a secret, only its SHA-256.
    stored = set(_every_stored_text(server.settings.database_url))
    for secret in secrets:
        assert not any(secret in value for value in stored)
        assert hashlib.sha256(secret.encode()).hexdigest() in stored
    if server.settings.database_url.startswith("sqlite"):  # nor any page of the file
        path = Path(server.settings.database_url.removeprefix("sqlite:///"))
        for part in path.parent.glob(path.name + "*"):
            raw = part.read_bytes()
            assert not any(secret.encode() in raw for secret in secrets), part
    # After creation: no response shows a secret, or the hash it is stored as.
    readable = _everything_an_admin_can_read(admin)
    for secret in secrets:
        assert secret not in readable
        assert hashlib.sha256(secret.encode()).hexdigest() not in readable
    for key in admin.get("/v1/consumers/ana/keys").json()["items"]:
        assert set(key) == {"id", "prefix", "created_at", "revoked_at"}
        assert len(key["prefix"]) <= 12
    assert server.client(created["api_key"]).get("/v1/budgets").status_code == 401
    assert server.client(issued.json()["api_key"]).get("/v1/budgets").status_code == 200


def test_key_comparison_is_constant_time_and_by_hash() -> None:
    """In Python, the stored hash is compared only with hmac.compare_digest; the one ``==``
    is the SQL lookup by hash (an index on SHA-256 digests of 192-bit keys)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(accounts.authenticate)))
    in_sql: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "where"
        ):
            in_sql.update(id(child) for child in ast.walk(node))
    digests = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "hmac.compare_digest"
    ]
    assert len(digests) == 1
    assert {ast.unparse(arg) for arg in digests[0].args} == {"key.key_hash", "digest"}
    python_equalities = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and id(node) not in in_sql
        and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
        and re.search(r"hash|digest|secret", ast.unparse(node))
    ]
    assert python_equalities == []
    assert "hash_key(secret)" in ast.unparse(tree)  # the secret is hashed before any lookup


def test_authentication_compares_digests_with_compare_digest_and_sends_no_secret_to_sql(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(db_url)
    upgrade(database)
    try:
        _, key = accounts.create_consumer(database, name="ana", role="analyst", actor="t")
        compared: list[tuple[str, str]] = []
        real = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            compared.append((a, b))
            return real(a, b)

        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append(f"{statement} {parameters!r}")

        monkeypatch.setattr(accounts.hmac, "compare_digest", spy)
        event.listen(Engine, "before_cursor_execute", record)  # the read and write engines
        principal = accounts.authenticate(database, key.secret)
        assert principal is not None and principal.name == "ana"
        digest = hashlib.sha256(key.secret.encode()).hexdigest()
        assert compared == [(digest, digest)]
        near_miss = key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B")
        assert accounts.authenticate(database, near_miss) is None
        assert statements and not any(key.secret in s or near_miss in s for s in statements)
        event.remove(Engine, "before_cursor_execute", record)
    finally:
        database.dispose()


# --- roles and isolation ---------------------------------------------------------------


def test_analysts_are_isolated_from_each_other(server: Service, admin: httpx.Client) -> None:
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0, "bob": 1.0})
    write_events(server.settings.data_dir, name="private.parquet", seed=3)
    body = events_metadata(name="private", path="private.parquet")
    assert admin.post("/v1/datasets", json=body).status_code == 201
    assert (
        admin.put("/v1/budgets/bob/private", json={"model": "pure", "epsilon": 1}).status_code
        == 200
    )
    ana, bob = server.client(keys["ana"]), server.client(keys["bob"])
    bobs = bob.post("/v1/queries", json=VISITORS).json()["id"]
    bob.post("/v1/queries", json={**VISITORS, "dataset": "private"}).raise_for_status()

    def not_found(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == PROBLEM
        problem: dict[str, Any] = response.json()
        return problem

    # Another analyst's release is as missing as one that never existed.
    assert (
        not_found(ana.get(f"/v1/queries/{bobs}"))["type"]
        == not_found(ana.get("/v1/queries/rel_000000000000000000000000"))["type"]
    )
    assert bobs not in ana.get("/v1/queries").text
    foreign_cursor = ana.get("/v1/queries", params={"cursor": bobs})
    unknown_cursor = ana.get("/v1/queries", params={"cursor": "rel_0"})
    assert foreign_cursor.status_code == unknown_cursor.status_code == 422
    assert foreign_cursor.json()["detail"] == unknown_cursor.json()["detail"]
    # A dataset without a budget is as missing as one that does not exist: same problem.
    hidden = not_found(ana.get("/v1/datasets/private"))
    missing = not_found(ana.get("/v1/datasets/nothing"))
    assert hidden["detail"].replace("private", "X") == missing["detail"].replace("nothing", "X")
    for path in ("/v1/queries", "/v1/queries/preview"):
        hidden = not_found(ana.post(path, json={**VISITORS, "dataset": "private"}))
        missing = not_found(ana.post(path, json={**VISITORS, "dataset": "nothing"}))
        assert hidden["type"] == missing["type"]
    assert [d["name"] for d in ana.get("/v1/datasets").json()["items"]] == ["events"]
    # Budgets: only its own, whatever the filter asks for.
    for params in ({}, {"consumer": "bob"}, {"dataset": "private"}):
        items = ana.get("/v1/budgets", params=params).json()["items"]
        assert all(item["consumer"] == "ana" for item in items), params
    assert "private" not in ana.get("/v1/budgets").text
    # Nothing of bob's was spent or read by ana's attempts.
    assert budget_of(admin, "ana")["spent"] == 0
    assert budget_of(admin, "bob", "private")["spent"] == 0.1
    for method, path in (
        ("GET", "/v1/ledger"),
        ("GET", "/v1/ledger/export"),
        ("GET", "/v1/consumers"),
        ("GET", "/v1/consumers/bob/keys"),
        ("PUT", "/v1/budgets/ana/private"),
    ):
        response = ana.request(
            method, path, json={"model": "pure", "epsilon": 9} if method == "PUT" else None
        )
        assert response.status_code == 403, (method, path)


def test_the_auditor_reads_everything_and_spends_nothing(
    server: Service, admin: httpx.Client
) -> None:
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    auditor = server.client(_consumer(admin, "aud", "auditor")["api_key"])
    server.client(keys["ana"]).post("/v1/queries", json=VISITORS).raise_for_status()
    before_budget, before_ledger = budget_of(admin, "ana"), len(ledger_entries(admin))
    for path in ("/v1/queries", "/v1/queries/preview"):
        for body in (VISITORS, {**VISITORS, "privacy": {"epsilon": 0.2}}):
            response = auditor.post(path, json=body)
            assert response.status_code == 403, response.text
            assert response.json()["type"] == "forbidden"
    assert auditor.get("/v1/queries").status_code == 403
    for method, path, body in (
        ("PUT", "/v1/budgets/ana/events", {"model": "pure", "epsilon": 50}),
        ("POST", "/v1/consumers", {"name": "x", "role": "analyst"}),
        ("POST", "/v1/consumers/ana/keys", None),
    ):
        assert auditor.request(method, path, json=body).status_code == 403
    assert budget_of(admin, "ana") == before_budget
    assert len(ledger_entries(admin)) == before_ledger  # not even a refusal was written
    assert auditor.get("/v1/ledger/verify").json()["valid"] is True
    assert auditor.get("/v1/ledger/export").status_code == 200
    assert len(auditor.get("/v1/budgets").json()["items"]) == 1


def test_admin_actions_are_ledgered_with_their_actor(server: Service, admin: httpx.Client) -> None:
    second_admin = server.client(_consumer(admin, "ops", "admin")["api_key"])
    responses = {
        "consumer_created": second_admin.post(
            "/v1/consumers", json={"name": "ana", "role": "analyst"}
        ),
        "key_issued": second_admin.post("/v1/consumers/ana/keys"),
    }
    key_id = responses["key_issued"].json()["id"]
    responses["key_revoked"] = second_admin.delete(f"/v1/consumers/ana/keys/{key_id}")
    write_events(server.settings.data_dir)
    responses["dataset_registered"] = second_admin.post("/v1/datasets", json=events_metadata())
    responses["budget_set"] = second_admin.put(
        "/v1/budgets/ana/events", json={"model": "pure", "epsilon": 2}
    )
    for kind, response in responses.items():
        assert response.status_code in (200, 201), (kind, response.text)
        entries = [
            e
            for e in ledger_entries(admin, kind=kind)
            if e["request_id"] == response.headers["x-request-id"]
        ]
        assert len(entries) == 1 and entries[0]["actor"] == "ops", (kind, entries)
    mine = ledger_entries(admin, kind="consumer_created")
    assert [(e["actor"], e["consumer"]) for e in mine] == [
        ("system", "bootstrap-admin"),
        ("bootstrap-admin", "ops"),
        ("ops", "ana"),
    ]
    assert_ledger_valid(admin)


# --- no private value in any response --------------------------------------------------

MARK_TEXT = "ZQXLEAK"  # only in the data: a non-key municipality, device ids
MARK_MAX = 239.987654321  # the true maximum of dwell_minutes (inside the bounds)
MARK_MIN = 0.000123456789  # its true minimum
MARK_HOUR = 21  # every row's hour but one (a "true" mode)
ROWS = 977


def _marked_data(data_dir: Path) -> None:
    municipalities = [MUNICIPALITIES[i % 5] for i in range(ROWS)]  # never the sixth key
    municipalities[7] = MARK_TEXT + "-GM9999"
    dwell = [10.0 + (i % 200) for i in range(ROWS)]
    dwell[3], dwell[5] = MARK_MAX, MARK_MIN
    pl.DataFrame(
        {
            "device_id": [f"{MARK_TEXT}-device-{i % 151:05d}" for i in range(ROWS)],
            "municipality": municipalities,
            "day": [DAYS[i % 3] for i in range(ROWS)],  # never the last day
            "dwell_minutes": dwell,
            "hour": [MARK_HOUR] * (ROWS - 1) + [0],
        }
    ).write_parquet(data_dir / "events.parquet")


def test_no_response_reveals_a_row_a_true_count_or_the_data_range(
    server: Service, admin: httpx.Client
) -> None:
    data_dir = server.settings.data_dir
    _marked_data(data_dir)
    assert admin.post("/v1/datasets", json=events_metadata()).status_code == 201
    created = _consumer(admin, "ana", "analyst")
    admin.put("/v1/budgets/ana/events", json={"model": "pure", "epsilon": 50}).raise_for_status()
    ana = server.client(created["api_key"])
    texts: list[str] = []
    nothing_matches = [
        {**VISITORS, "where": [{"column": "municipality", "op": "eq", "value": MUNICIPALITIES[5]}]},
        {**VISITORS, "where": [{"column": "day", "op": "eq", "value": DAYS[3].isoformat()}]},
        {**VISITORS, "where": [{"column": "hour", "op": "between", "value": [1, 20]}]},
        {**VISITORS, "where": [{"column": "dwell_minutes", "op": "gt", "value": 239.99}]},
    ]
    for body in nothing_matches:  # a filter that matches nothing is not an error
        response = ana.post("/v1/queries", json=body)
        assert response.status_code == 200, response.text
        assert [row[0] for row in response.json()["rows"]] == MUNICIPALITIES
        texts.append(response.text)
    queries = [
        {"dataset": "events", "statistic": "count", "privacy": {"epsilon": 1}},
        {
            "dataset": "events",
            "statistic": "sum",
            "column": "dwell_minutes",
            "privacy": {"epsilon": 1},
        },
        {
            "dataset": "events",
            "statistic": "mean",
            "column": "dwell_minutes",
            "privacy": {"epsilon": 1},
        },
        {
            "dataset": "events",
            "statistic": "quantile",
            "column": "dwell_minutes",
            "q": 0.99,
            "privacy": {"epsilon": 1},
        },
        {
            "dataset": "events",
            "statistic": "quantile",
            "column": "hour",
            "q": 0.5,
            "group_by": ["day"],
            "privacy": {"epsilon": 1},
        },
        {
            "dataset": "events",
            "statistic": "sum",
            "column": "hour",
            "bounds": [20, 22],
            "group_by": ["municipality", "day"],
            "privacy": {"epsilon": 1},
        },
    ]
    for body in queries:
        for path in ("/v1/queries/preview", "/v1/queries"):
            response = ana.post(path, json=body)
            assert response.status_code == 200, (path, body, response.text)
            texts.append(response.text)
    # Problems, including those raised after the data file was opened.
    problems = [
        ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 100}}),  # 409
        ana.post("/v1/queries", json={**VISITORS, "group_by": ["dwell_minutes"]}),
        ana.post(
            "/v1/queries",
            json={**VISITORS, "where": [{"column": "municipality", "op": "in", "value": [1, 2]}]},
        ),
        ana.post("/v1/queries", json={**VISITORS, "dataset": "nothing"}),
        admin.post(
            "/v1/datasets",
            json=events_metadata(
                name="wrong", columns={"municipality": {"type": "integer", "bounds": [0, 1]}}
            ),
        ),
        admin.post(
            "/v1/datasets",
            json=events_metadata(
                name="wrong2", columns={"dwell_minutes": {"type": "categorical", "keys": ["a"]}}
            ),
        ),
    ]
    for response in problems:
        assert 400 <= response.status_code < 500
        assert response.headers["content-type"] == PROBLEM
        texts.append(response.text)
    (data_dir / "events.parquet").write_bytes(b"PAR1 not really " + MARK_TEXT.encode())
    broken = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.3}})
    # Found by the check before the debit: the dataset is suspended, nothing charged.
    assert broken.status_code == 503 and broken.headers["content-type"] == PROBLEM
    assert broken.json()["type"] == "dataset-unavailable"
    texts.append(broken.text)
    for client in (ana, admin):
        for path in ("/v1/datasets", "/v1/datasets/events", "/v1/budgets", "/v1/queries"):
            if client is admin and path == "/v1/queries":
                continue
            texts.append(client.get(path).text)
    texts.append(_everything_an_admin_can_read(admin))
    everything = "\n".join(texts)
    assert MARK_TEXT not in everything and "GM9999" not in everything
    for value in (MARK_MAX, MARK_MIN):
        assert repr(value) not in everything and repr(value)[:8] not in everything
    assert "987654" not in everything and "123456789" not in everything
    problem_texts = [r.text for r in problems] + [broken.text]
    for text_ in problem_texts:  # nor the true number of rows, units or the true mode
        assert not re.search(rf"\b({ROWS}|151|{MARK_HOUR})\b", json.loads(text_)["detail"])
    assert date(2026, 3, 4).isoformat() in everything  # (the grep does see released keys)
