"""401 vs 403 vs 404 exactly as the spec says; keys shown once, stored as hashes."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, text

from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.support.api import create_consumer

PROBLEM = "application/problem+json"


def test_missing_wrong_and_revoked_keys_are_401(server: Service, admin: httpx.Client) -> None:
    anonymous = server.client()
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer " + "x" * 5000},
    ):
        response = anonymous.get("/v1/budgets", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "unauthorized"
    key = create_consumer(admin, "cbs-mobility", "analyst")
    assert server.client(key).get("/v1/budgets").status_code == 200
    key_id = admin.get("/v1/consumers/cbs-mobility/keys").json()["items"][0]["id"]
    assert admin.delete(f"/v1/consumers/cbs-mobility/keys/{key_id}").status_code == 200
    assert server.client(key).get("/v1/budgets").status_code == 401


def test_wrong_role_is_403(server: Service, admin: httpx.Client) -> None:
    analyst = server.client(create_consumer(admin, "ana", "analyst"))
    auditor = server.client(create_consumer(admin, "aud", "auditor"))
    for client, method, path, body in [
        (analyst, "POST", "/v1/consumers", {"name": "x", "role": "admin"}),
        (analyst, "GET", "/v1/ledger", None),
        (analyst, "GET", "/v1/ledger/verify", None),
        (analyst, "PUT", "/v1/budgets/ana/events", {"model": "pure", "epsilon": 1}),
        (auditor, "PUT", "/v1/budgets/ana/events", {"model": "pure", "epsilon": 1}),
        (auditor, "POST", "/v1/consumers", {"name": "x", "role": "admin"}),
        (auditor, "POST", "/v1/datasets", events_metadata()),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert auditor.get("/v1/ledger").status_code == 200
    assert auditor.get("/v1/budgets").status_code == 200


def test_analyst_sees_unbudgeted_dataset_as_missing(server: Service, admin: httpx.Client) -> None:
    write_events(server.settings.data_dir)
    assert admin.post("/v1/datasets", json=events_metadata()).status_code == 201
    analyst = server.client(create_consumer(admin, "ana", "analyst"))
    hidden = analyst.get("/v1/datasets/events")
    missing = analyst.get("/v1/datasets/nothing")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["type"] == missing.json()["type"] == "not-found"
    assert analyst.get("/v1/datasets").json()["items"] == []
    admin.put("/v1/budgets/ana/events", json={"model": "pure", "epsilon": 1})
    assert analyst.get("/v1/datasets/events").status_code == 200
    assert [d["name"] for d in analyst.get("/v1/datasets").json()["items"]] == ["events"]


def test_keys_are_random_shown_once_and_stored_only_as_hashes(
    server: Service, admin: httpx.Client
) -> None:
    created = admin.post("/v1/consumers", json={"name": "ana", "role": "analyst"}).json()
    second = admin.post("/v1/consumers/ana/keys").json()
    secrets = {created["api_key"], second["api_key"]}
    assert len(secrets) == 2
    for secret in secrets:
        assert secret.startswith("ruis_") and len(secret) >= 5 + 32  # 192 random bits
        assert server.client(secret).get("/v1/budgets").status_code == 200
    listed = admin.get("/v1/consumers/ana/keys").json()["items"]
    assert len(listed) == 2
    assert all("api_key" not in k and "key_hash" not in k for k in listed)
    assert all(secret not in admin.get("/v1/ledger/export").text for secret in secrets)
    engine = create_engine(server.settings.database_url.replace("+psycopg", "+psycopg"))
    with engine.connect() as conn:
        dump = " ".join(
            str(row)
            for table in ("api_keys", "consumers", "ledger")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    engine.dispose()
    assert all(secret not in dump for secret in secrets)
    assert admin.get("/v1/consumers/nobody/keys").status_code == 404
    assert admin.delete("/v1/consumers/ana/keys/key_doesnotexist").status_code == 404


def test_consumer_names_are_unique_slugs(admin: httpx.Client) -> None:
    assert admin.post("/v1/consumers", json={"name": "ana", "role": "analyst"}).status_code == 201
    duplicate = admin.post("/v1/consumers", json={"name": "ana", "role": "auditor"})
    assert duplicate.status_code == 409 and duplicate.json()["type"] == "conflict"
    for bad in ("Ana", "a b", "", "x" * 65, "../x", "a;drop table consumers"):
        response = admin.post("/v1/consumers", json={"name": bad, "role": "analyst"})
        assert response.status_code == 422, bad
    names = [c["name"] for c in admin.get("/v1/consumers").json()["items"]]
    assert names == ["ana", "bootstrap-admin"]
