"""The layers know each other in one direction only (STYLE.md): api → privacy, api → db.

privacy/ has no HTTP and no database; db/ has no OpenDP and no privacy logic; api/
reaches OpenDP and Polars only through privacy/. The client (ruis_client) and the signed-log
formats (tlog) are their own distribution: they know nothing of the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER = {"api", "db", "privacy", "cli", "fastapi", "starlette", "sqlalchemy", "sqlmodel", "opendp"}
LOCATION = {"ruis_client": ROOT / "client" / "ruis_client", "tlog": ROOT / "client" / "tlog"}
FORBIDDEN = {
    "privacy": {
        "api",
        "db",
        "cli",
        "ruis_client",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
        "psycopg",
        "httpx",
    },
    "db": {"api", "privacy", "cli", "ruis_client", "opendp", "polars", "fastapi"},
    "api": {"cli", "ruis_client", "opendp", "polars", "numpy"},
    "ruis_client": SERVER | {"psycopg", "alembic", "uvicorn", "numpy"},
    "tlog": SERVER | {"ruis_client", "httpx", "polars"},
}


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level names each module of ``package`` imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(LOCATION.get(package, ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(package: str) -> None:
    violations = {
        module: sorted(names & FORBIDDEN[package])
        for module, names in imported_modules(package).items()
        if names & FORBIDDEN[package]
    }
    assert violations == {}


def test_the_check_sees_imports() -> None:
    modules = imported_modules("api")
    assert "privacy" in modules["api/release.py"] and "db" in modules["api/release.py"]
    client = imported_modules("ruis_client")
    assert {"httpx", "tlog"} <= client["client/ruis_client/_client.py"] | client[
        "client/ruis_client/_ledger.py"
    ]
