"""The client's models and methods against the committed contract, ``openapi/openapi.json``:
every field a model reads is a property of its schema, every required property is read or
listed as ignored (with why), every JSON answer has a model, and every operation has a
client method or a reasoned exclusion."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

import ruis_client
from ruis_client import Ruis
from ruis_client._models import Schema

OPENAPI = json.loads((Path(__file__).parents[2] / "openapi" / "openapi.json").read_text())
COMPONENTS: dict[str, Any] = OPENAPI["components"]["schemas"]

METHODS = {
    "GET /healthz": "health",
    "GET /readyz": "ready",
    "GET /v1/budgets": "budgets",  # and budget(dataset), the analyst's own
    "PUT /v1/budgets/{consumer}/{dataset}": "set_budget",
    "GET /v1/consumers": "consumers",
    "POST /v1/consumers": "create_consumer",
    "GET /v1/consumers/{name}/keys": "keys",
    "POST /v1/consumers/{name}/keys": "issue_key",
    "DELETE /v1/consumers/{name}/keys/{key_id}": "revoke_key",
    "GET /v1/consumers/{name}/limits": "limits",
    "PUT /v1/consumers/{name}/limits": "set_limits",
    "GET /v1/datasets": "datasets",
    "POST /v1/datasets": "register_dataset",
    "GET /v1/datasets/{name}": "dataset",
    "POST /v1/datasets/{name}/reinstate": "reinstate_dataset",
    "POST /v1/datasets/{name}/retire": "retire_dataset",
    "POST /v1/datasets/{name}/versions": "add_dataset_version",
    "GET /v1/ledger": "ledger_page",  # and ledger(), every page
    "GET /v1/ledger/checkpoint": "checkpoint",
    "GET /v1/ledger/checkpoints": "checkpoints",
    "POST /v1/ledger/cosignatures": "add_cosignature",
    "GET /v1/ledger/export": "export_ledger",
    "GET /v1/ledger/key": "fetch_ledger_key",
    "GET /v1/ledger/proofs/consistency": "consistency_proof",
    "GET /v1/ledger/proofs/inclusion": "inclusion_proof",
    "GET /v1/ledger/verify": "verify_ledger",
    "GET /v1/queries": "releases",
    "POST /v1/queries": "query",
    "POST /v1/queries/preview": "preview",
    "GET /v1/queries/{release_id}": "release",
}
"""Every operation and the client method that calls it (tests/client/test_contract.py
checks each is called by its method against the real server)."""

EXCLUDED = {
    "GET /metrics": "Prometheus text for a scraper, behind the deployment's metrics token "
    "(RUIS_METRICS_TOKEN), not a consumer's API key: Prometheus reads it, not this client",
}

TEXT_ANSWERS = {
    "GET /v1/ledger/checkpoint": "a signed note: parsed into Checkpoint",
    "GET /v1/ledger/key": "a verifier key line: returned as text",
    "GET /v1/ledger/export": "JSON lines or CSV: lines (LedgerEntry.from_document reads one)",
    "GET /metrics": "excluded",
}


def operations() -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, item in OPENAPI["paths"].items()
        for method, operation in item.items()
    }


def models() -> list[type[Any]]:
    found = [
        value
        for value in vars(ruis_client).values()
        if inspect.isclass(value) and dataclasses.is_dataclass(value) and "_schema" in vars(value)
    ]
    return sorted(found, key=lambda cls: cls.__name__)


def _object(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema's object: through a $ref and an ``anyOf`` with null."""
    if "$ref" in schema:
        return _object(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in schema:
        [inner] = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _object(inner)
    return schema


def schema_of(model: type[Any]) -> dict[str, Any]:
    spec: Schema = model._schema
    component, _, prop = spec.name.partition(".")
    schema = COMPONENTS[component]
    return _object(schema["properties"][prop]) if prop else schema


def read_properties(model: type[Any]) -> set[str]:
    spec: Schema = model._schema
    read: set[str] = set()
    for each in dataclasses.fields(model):
        if not each.metadata.get("local"):
            read.update(spec.read_as.get(each.name, (each.name,)))
    return read


def test_models_are_found() -> None:
    names = {model.__name__ for model in models()}
    assert {"Release", "Preview", "Budget", "Dataset", "LedgerEntry", "Limits"} <= names
    assert len(names) >= 25


@pytest.mark.parametrize("model", models(), ids=lambda m: m.__name__)
def test_a_model_reads_its_schema(model: type[Any]) -> None:
    schema = schema_of(model)
    properties = set(schema["properties"])
    read = read_properties(model)
    assert read - properties == set(), "fields read that the schema does not have"
    spec: Schema = model._schema
    required = set(schema.get("required", ()))
    assert required - read - set(spec.ignored) == set(), "required properties left unread"
    assert set(spec.ignored) <= required - read, "ignored properties must be required, unread"
    assert all(reason.strip() for reason in spec.ignored.values())


def test_every_json_answer_has_a_model() -> None:
    modelled = {model._schema.name for model in models()}
    for name, operation in operations().items():
        if name in TEXT_ANSWERS:
            continue
        [ok] = [r for status, r in operation["responses"].items() if status.startswith("2")]
        ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        if ref.startswith("Page_"):  # a list method reads its items
            item = COMPONENTS[ref]["properties"]["items"]["items"]["$ref"].rsplit("/", 1)[1]
            assert item in modelled or ref in modelled, name
        else:
            assert ref in modelled, name


def test_every_operation_has_a_method_or_a_reason() -> None:
    assert set(operations()) == set(METHODS) | set(EXCLUDED)
    assert not set(METHODS) & set(EXCLUDED)
    for name, method in METHODS.items():
        assert callable(getattr(Ruis, method, None)), f"{name}: Ruis.{method}"
        assert getattr(Ruis, method).__doc__, f"Ruis.{method} has a docstring"
    assert all(len(reason) > 40 for reason in EXCLUDED.values())


def test_the_check_catches_a_field_the_schema_lacks() -> None:
    """The check can fail: a model reading an unknown property, or skipping a required one."""

    @dataclasses.dataclass(frozen=True)
    class Wrong:
        _schema = Schema("KeyPublic")
        id: str
        prefix: str
        expires_at: str  # not in KeyPublic; created_at (required) unread

    schema = schema_of(Wrong)
    read = read_properties(Wrong)
    assert read - set(schema["properties"]) == {"expires_at"}
    assert set(schema["required"]) - read == {"created_at"}
