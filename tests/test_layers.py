"""The layers know each other in one direction only (STYLE.md): api → privacy, api → db.

privacy/ has no HTTP and no database; db/ has no OpenDP and no privacy logic; api/
reaches OpenDP and Polars only through privacy/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "privacy": {
        "api",
        "db",
        "cli",
        "client",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
        "psycopg",
        "httpx",
    },
    "db": {"api", "privacy", "cli", "client", "opendp", "polars", "fastapi"},
    "api": {"cli", "client", "opendp", "polars", "numpy"},
}


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level names each module of ``package`` imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
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
