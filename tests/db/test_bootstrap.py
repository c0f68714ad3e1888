"""The bootstrap admin key (db/bootstrap.py): strength, no stored prefix, rotation when
``RUIS_BOOTSTRAP_ADMIN_KEY`` changes, and the last admin key that cannot be revoked — on
each backend, through start-up, the API and ``ruis admin``."""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path

import httpx
import pytest

from api.app import prepare
from api.settings import Settings
from cli.main import main
from db import accounts, bootstrap
from db.bootstrap import Outcome, estimated_entropy_bits
from tests.conftest import ADMIN_KEY, Service, start_server
from tests.reliability.support import assert_ledger_valid, ledger_entries

WEAK = [
    "a" * 64,
    "abc" * 20,
    "0123456789" * 4,
    "Password1!" * 3,
    "short-key",
    "test-admin-key-0123456789abcdef",
    "abcdefghijklmnopqrstuvwxyz0123456789",
]


def _key() -> str:
    return secrets.token_hex(24)


@pytest.mark.parametrize("weak", WEAK)
def test_weak_bootstrap_keys_refuse_start(db_url: str, data_dir: Path, weak: str) -> None:
    with pytest.raises(ValueError, match=r"too weak|printable"):
        prepare(Settings(database_url=db_url, data_dir=data_dir, bootstrap_admin_key=weak))


def test_the_entropy_estimate() -> None:
    assert estimated_entropy_bits("a" * 1000) < 10
    assert estimated_entropy_bits("Zx" * 200) < 20  # a repeated block counts once
    assert estimated_entropy_bits("9876543210" * 3) < 40  # runs count their start only
    assert 128 < estimated_entropy_bits(secrets.token_hex(24)) < 260
    assert estimated_entropy_bits(secrets.token_urlsafe(24)) > 128
    with pytest.raises(ValueError, match="printable ASCII"):
        bootstrap.check_bootstrap_key("é" * 64)


def test_serve_refuses_a_weak_key_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], db_url: str, data_dir: Path
) -> None:
    monkeypatch.setenv("RUIS_DATABASE_URL", db_url)
    monkeypatch.setenv("RUIS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RUIS_BOOTSTRAP_ADMIN_KEY", "a" * 40)
    assert main(["serve", "--port", "1"]) == 2
    assert "RUIS_BOOTSTRAP_ADMIN_KEY is too weak" in capsys.readouterr().err


def _bootstrap_keys(server: Service, admin: httpx.Client) -> list[dict[str, object]]:
    response = admin.get(f"/v1/consumers/{accounts.BOOTSTRAP_ADMIN}/keys")
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_no_prefix_of_the_bootstrap_key_is_stored_or_shown(
    server: Service, admin: httpx.Client
) -> None:
    (key,) = _bootstrap_keys(server, admin)
    assert key["prefix"] == ""
    issued = ledger_entries(admin, kind="key_issued")
    assert issued[0]["details"]["prefix"] == ""
    assert issued[0]["details"]["origin"] == "environment"
    text = admin.get("/v1/ledger/export?format=jsonl").text
    for length in (4, 6, 8):  # no piece of it at all
        assert ADMIN_KEY[-length:] not in text and ADMIN_KEY[:length] not in text
    # Keys Ruis draws keep a short public prefix.
    other = admin.post(f"/v1/consumers/{accounts.BOOTSTRAP_ADMIN}/keys").json()
    assert other["prefix"] == other["api_key"][:9]


def test_a_changed_bootstrap_key_rotates_the_environment_key_only(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    first = start_server(settings)
    admin = first.client(ADMIN_KEY)
    api_key = admin.post(f"/v1/consumers/{accounts.BOOTSTRAP_ADMIN}/keys").json()
    first.stop()

    new_secret = _key()
    rotated = Settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        bootstrap_admin_key=new_secret,
    )
    with caplog.at_level(logging.INFO, logger="ruis.bootstrap"):
        second = start_server(rotated)
    try:
        assert any("RUIS_BOOTSTRAP_ADMIN_KEY changed" in r.getMessage() for r in caplog.records)
        # The old environment key no longer works; the new one and the API-issued one do.
        assert second.client(ADMIN_KEY).get("/v1/consumers").status_code == 401
        new_admin = second.client(new_secret)
        assert new_admin.get("/v1/consumers").status_code == 200
        assert second.client(api_key["api_key"]).get("/v1/consumers").status_code == 200
        keys = {k["id"]: k for k in _bootstrap_keys(second, new_admin)}
        assert keys[api_key["id"]]["revoked_at"] is None
        assert sum(1 for k in keys.values() if k["revoked_at"] is not None) == 1
        assert all(k["prefix"] == "" for k in keys.values() if k["id"] != api_key["id"])
        # Both halves of the rotation are ledgered by the system.
        revoked = ledger_entries(new_admin, kind="key_revoked")
        assert [(e["actor"], e["details"]["reason"]) for e in revoked] == [
            ("system", "RUIS_BOOTSTRAP_ADMIN_KEY changed")
        ]
        issued = ledger_entries(new_admin, kind="key_issued")
        assert [e["details"].get("origin") for e in issued] == ["environment", None, "environment"]
        assert_ledger_valid(new_admin)
        stored = hashlib.sha256(new_secret.encode()).hexdigest()
        assert stored not in new_admin.get("/v1/ledger/export?format=jsonl").text
    finally:
        second.stop()
    # Starting again with the same key changes nothing; the old, revoked key is not
    # reinstated.
    database = prepare(rotated)
    try:
        assert bootstrap.ensure_bootstrap_admin(database, new_secret) is Outcome.UNCHANGED
        assert bootstrap.ensure_bootstrap_admin(database, ADMIN_KEY) is Outcome.REVOKED
        assert accounts.authenticate(database, ADMIN_KEY) is None
    finally:
        database.dispose()


def test_the_last_active_admin_key_cannot_be_revoked(server: Service, admin: httpx.Client) -> None:
    (key,) = _bootstrap_keys(server, admin)
    path = f"/v1/consumers/{accounts.BOOTSTRAP_ADMIN}/keys/{key['id']}"
    refused = admin.delete(path)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "conflict"
    assert "last active admin key" in refused.json()["detail"]
    assert admin.get("/v1/consumers").status_code == 200
    # With a second admin key (of another admin), the first can go.
    other = admin.post("/v1/consumers", json={"name": "second-admin", "role": "admin"}).json()
    assert admin.delete(path).status_code == 200
    second = server.client(other["api_key"])
    last = f"/v1/consumers/second-admin/keys/{other['key_id']}"
    assert second.delete(last).status_code == 409
    # Analyst keys are not concerned.
    analyst = second.post("/v1/consumers", json={"name": "ana", "role": "analyst"}).json()
    assert second.delete(f"/v1/consumers/ana/keys/{analyst['key_id']}").status_code == 200


def test_ruis_admin_cannot_revoke_the_last_admin_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    database = prepare(settings)
    try:
        (key,) = accounts.list_keys(database, accounts.BOOTSTRAP_ADMIN)
    finally:
        database.dispose()
    monkeypatch.setenv("RUIS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RUIS_DATA_DIR", str(settings.data_dir))
    for name in ("RUIS_URL", "RUIS_ADMIN_KEY", "RUIS_BOOTSTRAP_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    capsys.readouterr()
    assert main(["admin", "revoke-key", accounts.BOOTSTRAP_ADMIN, key.id]) == 1
    assert "last active admin key" in capsys.readouterr().err
