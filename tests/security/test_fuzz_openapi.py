"""Property-based fuzzing of the whole HTTP API from its OpenAPI document (schemathesis),
against the real server with a real admin and a real analyst: no 5xx, every status code
documented, every content type, header and body as documented.

Deterministic and bounded: Hypothesis runs derandomised with a fixed seed, no example
database, and at most ``MAX_EXAMPLES`` valid plus ``MAX_EXAMPLES`` invalid requests per
operation. (Schemathesis' lazy pytest loader does not work with pytest 9, so each
operation's strategy is driven by Hypothesis directly.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_KEY, Service
from tests.reliability.support import auth, setup_events

# schemathesis calls the server over HTTP; fuzzing every operation takes a while
pytestmark = [pytest.mark.live, pytest.mark.slow]

SEED = 20260308
MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
ANALYST_PATHS = ("/v1/queries",)  # only an analyst may call these
ANY_ROLE = ("GET /v1/budgets", "GET /v1/datasets")  # called with both keys


def _roles(operation: Any) -> list[str]:
    if operation.path.startswith(ANALYST_PATHS):
        return ["analyst"]
    if operation.label.startswith(ANY_ROLE):
        return ["admin", "analyst"]
    return ["admin"]


def _fuzz(operation: Any, mode: GenerationMode, url: str, keys: dict[str, str]) -> None:
    roles = _roles(operation)

    @seed(SEED)
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        for role in roles:
            case.call_and_validate(
                base_url=url, headers=auth(keys[role]), checks=CHECKS, timeout=30
            )

    fuzz()


@pytest.mark.timeout(300)
def test_api_conforms_to_its_openapi_document(server: Service, admin: httpx.Client) -> None:
    keys = {
        "admin": ADMIN_KEY,
        **setup_events(server, server.settings.data_dir, analysts={"analyst": 1000.0}),
    }
    served = admin.get("/openapi.json")
    assert served.status_code == 200
    schema = schemathesis.openapi.from_dict(served.json())
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 15  # every operation loaded (an invalid one would be Err)
    document = served.json()["paths"]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, server.url, keys)
            except Unsatisfiable:  # no invalid request exists for an operation without input
                declared = document[operation.path][operation.method.lower()]
                if (
                    mode is GenerationMode.POSITIVE
                    or declared.get("parameters")
                    or declared.get("requestBody")
                ):
                    failures.append(f"{operation.label} ({mode.value}): no examples")
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # The fuzzing left the server healthy and its ledger intact.
    assert server.client().get("/healthz", timeout=10).status_code == 200
    assert admin.get("/v1/ledger/verify").json()["valid"] is True
