"""The committed OpenAPI document is what the app serves, and it documents every endpoint:
its roles (as enforced), request and response models, and problem responses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main
from tests.conftest import Service

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
REGENERATE = ".venv/bin/ruis openapi --output openapi/openapi.json"
PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}
ROLES = {"analyst", "admin", "auditor"}
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


@SQLITE_ONLY
def test_committed_document_is_what_the_server_serves(server: Service) -> None:
    served = server.client().get("/openapi.json").json()
    assert served == _committed(), (
        f"openapi/openapi.json differs from the served /openapi.json; regenerate it with "
        f"`{REGENERATE}` and commit it"
    )


def test_cli_writes_the_committed_bytes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == COMMITTED.read_text(encoding="utf-8"), (
        f"openapi/openapi.json is stale; regenerate it with `{REGENERATE}`"
    )
    target = tmp_path / "openapi.json"
    assert main(["openapi", "--output", str(target)]) == 0
    assert target.read_bytes() == COMMITTED.read_bytes()


def test_every_operation_documents_roles_models_and_problems() -> None:
    document = _committed()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key issued by an admin",
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        assert operation.get("description"), where
        success = [code for code in responses if code.startswith("2")]
        assert success and all(responses[c].get("content") for c in success), where
        if "requestBody" in operation:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert "$ref" in json.dumps(body), where  # a model, not an ad-hoc object
        for code, response in responses.items():
            assert "X-Request-ID" in response["headers"], where
            if code[0] in "45" and not (path == "/readyz" and code == "503"):
                assert response["content"] == {"application/problem+json": PROBLEM}, (where, code)
        if path in ("/healthz", "/readyz", "/metrics"):
            assert "HTTPBearer" not in json.dumps(operation.get("security", [])), where
            continue
        assert operation["security"] == [{"HTTPBearer": []}], where
        roles = set(operation["x-roles"])
        assert roles and roles <= ROLES, where
        stated = operation["description"].rsplit("Role", 1)  # "Role: admin." / "Roles: ..."
        assert len(stated) == 2 and all(role in stated[1] for role in roles), where
        expected = {"401"}
        if roles != ROLES:
            expected.add("403")
        if "{" in path:
            expected.add("404")
        if operation.get("parameters") or "requestBody" in operation:
            expected.add("422")
        if "requestBody" in operation:
            expected.add("413")
        assert expected <= set(responses), (where, expected - set(responses))
    metrics = document["paths"]["/metrics"]["get"]
    assert metrics["security"] == [{"MetricsToken": []}, {}]  # the token is optional
    assert "text/plain" in metrics["responses"]["200"]["content"]
    queries = document["paths"]["/v1/queries"]["post"]
    assert queries["x-roles"] == ["analyst"] and "409" in queries["responses"]


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@SQLITE_ONLY
def test_documented_roles_are_the_enforced_roles(server: Service, admin: httpx.Client) -> None:
    clients = {"admin": admin}
    for role in ("analyst", "auditor"):
        key = admin.post("/v1/consumers", json={"name": f"a-{role}", "role": role}).json()[
            "api_key"
        ]
        clients[role] = server.client(key)
    anonymous = server.client()
    for path, method, operation in _operations(_committed()):
        if "x-roles" not in operation:
            continue
        body = {} if "requestBody" in operation else None
        url = _fill(path)
        assert anonymous.request(method, url, json=body).status_code == 401, (method, path)
        for role, http in clients.items():
            status = http.request(method, url, json=body).status_code
            if role in operation["x-roles"]:
                assert status not in (401, 403), (method, path, role, status)
            else:
                assert status == 403, (method, path, role, status)


@SQLITE_ONLY
def test_docs_and_openapi_need_no_key(server: Service) -> None:
    docs = server.client().get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
    assert server.client().get("/openapi.json").status_code == 200
