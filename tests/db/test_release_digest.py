"""A large release's values stay in the release store; its ``release_output`` entry
commits to them by the SHA-256 of their canonical JSON, which an auditor can check."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from db import ledger, releases
from tests.conftest import Service
from tests.reliability.support import (
    VISITORS,
    assert_ledger_valid,
    ledger_entries,
    setup_events,
)


def _digest(rows: Any) -> str:
    return hashlib.sha256(ledger.canonical_json(rows).encode("utf-8")).hexdigest()


def test_rows_above_the_threshold_are_committed_to_by_digest() -> None:
    rows = [[f"GM{i:05d}", float(i) + 0.5] for i in range(8000)]
    encoded = ledger.canonical_json(rows).encode()
    assert len(encoded) > releases.LEDGER_ROWS_MAX_BYTES == 64 * 1024
    details = releases.ledger_output({"columns": ["m", "count"], "rows": rows})
    assert details == {
        "columns": ["m", "count"],
        "rows_sha256": _digest(rows),
        "rows_bytes": len(encoded),
        "rows_count": 8000,
    }
    small = {"columns": ["m", "count"], "rows": rows[:10]}
    assert releases.ledger_output(small) == small


def test_a_large_release_is_ledgered_by_digest_and_checkable(
    server: Service, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(releases, "LEDGER_ROWS_MAX_BYTES", 300)  # 24 groups are above it
    keys = setup_events(server, server.settings.data_dir, analysts={"ana": 1.0})
    ana = server.client(keys["ana"])
    small = ana.post("/v1/queries", json=VISITORS).json()
    large = ana.post("/v1/queries", json={**VISITORS, "group_by": ["municipality", "day"]})
    assert large.status_code == 200, large.text
    body = large.json()
    assert len(body["rows"]) == 24
    outputs = {
        e["details"]["release_id"]: e["details"]
        for e in ledger_entries(admin, kind="release_output")
    }
    assert outputs[small["id"]]["rows"] == small["rows"]  # small: copied as before
    committed = outputs[body["id"]]
    assert "rows" not in committed
    assert committed["rows_count"] == 24
    assert committed["rows_bytes"] == len(ledger.canonical_json(body["rows"]).encode())
    # The auditor's check: the published release, re-read, hashes to the ledgered digest.
    reread = ana.get(f"/v1/queries/{body['id']}").json()
    assert _digest(reread["rows"]) == committed["rows_sha256"] == _digest(body["rows"])
    assert assert_ledger_valid(admin)["reconciled"] is True
