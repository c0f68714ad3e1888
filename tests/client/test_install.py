"""The client installs and works on its own: ``pip install ./client`` into a fresh venv
brings httpx and Polars, not OpenDP, FastAPI or SQLAlchemy (nor cryptography), and from
there a preview and a query run against a live server with the demo's data. Without
cryptography a receipt's entry hash and inclusion proof are still checked; the
signature is not, the release says ``verified=False`` and the client warns once."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.settings import Settings
from cli import demo
from ruis_client._ledger import UNSIGNED
from tests.conftest import ADMIN_KEY, Service, start_server
from tests.support.api import create_consumer, register_events, set_budget

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("opendp", "fastapi", "sqlalchemy", "sqlmodel", "uvicorn", "cryptography")

ANALYST_SCRIPT = """
import json, sys, warnings
from ruis_client import Ruis, SignatureUncheckedWarning

url, key, query = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
body = {k: v for k, v in query.items() if k not in ("dataset", "statistic", "privacy")}
where = [(w["column"], w["op"], w["value"]) for w in body.pop("where", [])]
with warnings.catch_warnings(record=True) as caught, Ruis(url, key) as ruis:
    warnings.simplefilter("always")
    preview = ruis.preview(query["dataset"], query["statistic"], where=where,
                           epsilon=query["privacy"]["epsilon"], **body)
    release = ruis.query(query["dataset"], query["statistic"], where=where,
                         epsilon=query["privacy"]["epsilon"], **body)
    again = ruis.release(release.id)
    try:
        pandas = list(release.to_pandas().columns)
    except ImportError as missing:
        pandas = str(missing)
print(json.dumps({
    "id": release.id,
    "pandas": pandas,
    "fits": preview.fits_budget,
    "cost": release.cost.amount,
    "columns": release.frame.columns,
    "rows": release.frame.height,
    "verified": [release.verified, again.verified],
    "warnings": [str(w.message) for w in caught if w.category is SignatureUncheckedWarning],
    "other_warnings": [
        str(w.message) for w in caught if w.category is not SignatureUncheckedWarning
    ],
}))
"""


def _clean_env() -> dict[str, str]:
    """The environment without this repository on the path (nor the server's settings)."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith("RUIS_")
    }


def _run(command: list[str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow  # a venv and a pip install (from the pip cache when warm)
@pytest.mark.heavy
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_client_installs_alone_and_queries_the_demo(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "client"
    shutil.copytree(
        ROOT / "client",
        source,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"),
    )
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    _run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        tmp_path,
    )

    found = _run(
        [
            python,
            "-c",
            "import importlib.util as u, json, sys; "
            f"print(json.dumps([m for m in {SERVER_ONLY!r} if u.find_spec(m)]))",
        ],
        tmp_path,
    )
    assert json.loads(found) == []
    for module in ("opendp", "fastapi", "sqlalchemy"):
        refused = subprocess.run(
            [python, "-c", f"import {module}"],
            cwd=tmp_path,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode != 0 and "ModuleNotFoundError" in refused.stderr
    where = _run(
        [python, "-c", "import ruis_client, tlog; print(ruis_client.__file__, tlog.__file__)"],
        tmp_path,
    )
    assert str(venv) in where and str(ROOT) not in where

    options = argparse.Namespace(devices=300, days=7, seed=42)
    keys, query, _ = demo.setup(settings, options)
    script = tmp_path / "analyst.py"
    script.write_text(ANALYST_SCRIPT)
    analyst = [python, str(script), "", keys[demo.ANALYST], json.dumps(query)]
    served = start_server(settings)
    try:
        analyst[2] = served.url
        result = json.loads(_run(analyst, tmp_path))
        assert result["fits"] and result["cost"] == query["privacy"]["epsilon"]
        columns = ["municipality", "value", "lower", "upper"]
        assert result["columns"] == columns and result["rows"] > 0
        assert result["verified"] == [False, False]  # no cryptography: signature unchecked
        unchecked = UNSIGNED
        assert result["warnings"] == [unchecked]  # once, for two releases
        assert result["other_warnings"] == []
        assert 'pip install "./client[pandas]"' in result["pandas"]

        # the extras: the signature is checked, and the release converts to pandas
        extras = f"{source}[pandas,verify]"
        _run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", extras],
            tmp_path,
        )
        again = json.loads(_run(analyst, tmp_path))  # the same query: cached, free
        assert again["id"] == result["id"] and again["verified"] == [True, True]
        assert again["warnings"] == [] == again["other_warnings"]
        assert again["pandas"] == columns
    finally:
        served.stop()


NO_CRYPTOGRAPHY = """
import json, sys, warnings
sys.modules["cryptography"] = None  # as if it were not installed: importing it fails
import httpx
from ruis_client import ReceiptInvalidWarning, Ruis, SignatureUncheckedWarning

url, key = sys.argv[1], sys.argv[2]


class Forger(httpx.BaseTransport):
    \"\"\"Changes the receipt's entry (its cost) in the answers it relays when told to.\"\"\"

    forge = False

    def __init__(self):
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if not self.forge or request.url.path != "/v1/queries":
            return response
        body = json.loads(response.read())
        body["receipt"]["entry"]["cost"] = {"model": "pure", "epsilon": 0.001}
        return httpx.Response(response.status_code, json=body)


forger = Forger()
visitors = dict(group_by=["municipality"], epsilon=0.1)
with warnings.catch_warnings(record=True) as caught, Ruis(url, key, transport=forger) as ruis:
    warnings.simplefilter("always")
    honest = [ruis.query("events", "unit_count", **visitors).verified,
              ruis.query("events", "count", **visitors).verified]
    forger.forge = True
    forged = ruis.query("events", "count", group_by=["day"], epsilon=0.1)
print(json.dumps({
    "honest": honest,
    "forged": forged.verified,
    "unchecked": [str(w.message) for w in caught if w.category is SignatureUncheckedWarning],
    "invalid": [str(w.message) for w in caught if w.category is ReceiptInvalidWarning],
    "crypto": [m for m in sys.modules if m.startswith("cryptography.")],
}))
"""


@pytest.mark.live
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_without_cryptography_hashes_and_proofs_are_still_checked(
    server: Service, admin: httpx.Client, tmp_path: Path
) -> None:
    register_events(server, admin)
    key = create_consumer(admin, "ana")
    set_budget(admin, "ana", amount=5.0)
    script = tmp_path / "no_cryptography.py"
    script.write_text(NO_CRYPTOGRAPHY)
    env = {**_clean_env(), "PYTHONPATH": f"{ROOT / 'client'}"}
    done = subprocess.run(
        [sys.executable, str(script), server.url, key],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["honest"] == [False, False] and result["forged"] is False
    assert result["unchecked"] == [UNSIGNED]
    [invalid] = result["invalid"]  # the forged entry's hash no longer recomputes
    assert "hash does not recompute" in invalid
    assert result["crypto"] == []
    assert ADMIN_KEY not in done.stdout
