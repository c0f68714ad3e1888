"""The ledger over HTTP: every admin action recorded with its request id, filters,
pagination, verification (and tampering caught), export; problem+json for HTTP errors."""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine, text

from api import ledger_csv
from db import budgets, ledger
from db.amounts import cost_units
from db.engine import Database
from db.models import LedgerEntry
from tests.conftest import Service
from tests.factories import events_metadata, write_events
from tests.support.api import all_entries
from tlog import merkle

PROBLEM = "application/problem+json"


def _populate(server: Service, admin: httpx.Client) -> dict[str, str]:
    """One of each admin action and a few spends; the request id of each call by name."""
    write_events(server.settings.data_dir)
    request_ids: dict[str, str] = {}

    def call(
        label: str, method: str, path: str, body: Any = None, supplied_id: str | None = None
    ) -> httpx.Response:
        headers = {"X-Request-ID": supplied_id} if supplied_id else {}
        response = admin.request(method, path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        request_ids[label] = response.headers["x-request-id"]
        if supplied_id:
            assert request_ids[label] == supplied_id
        return response

    call("ana", "POST", "/v1/consumers", {"name": "ana", "role": "analyst"})
    call(
        "bob",
        "POST",
        "/v1/consumers",
        {"name": "bob", "role": "analyst"},
        supplied_id="create-bob.1",
    )
    key_id = call("key", "POST", "/v1/consumers/ana/keys").json()["id"]
    call("revoke", "DELETE", f"/v1/consumers/ana/keys/{key_id}", supplied_id="revoke_1")
    call("events", "POST", "/v1/datasets", events_metadata())
    call("other", "POST", "/v1/datasets", events_metadata(name="other"))
    call("budget-ana", "PUT", "/v1/budgets/ana/events", {"model": "pure", "epsilon": 0.25})
    call("budget-bob", "PUT", "/v1/budgets/bob/other", {"model": "zcdp", "rho": 1})
    database = Database(server.settings.database_url)
    try:
        for amount in ("0.1", "0.1", "0.1"):
            budgets.spend(
                database,
                consumer="ana",
                dataset="events",
                model="pure",
                cost_units=cost_units(Decimal(amount)),
                details={"n": amount},
                request_id="spend-" + amount,
            )
        budgets.spend(
            database,
            consumer="bob",
            dataset="other",
            model="zcdp",
            cost_units=cost_units(Decimal("0.5")),
            details={},
        )
    finally:
        database.dispose()
    return request_ids


def test_admin_actions_are_ledgered_with_their_request_ids(
    server: Service, admin: httpx.Client
) -> None:
    ids = _populate(server, admin)
    entries = all_entries(admin)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    summary = [
        (e["kind"], e["actor"], e["consumer"], e["dataset"], e["request_id"]) for e in entries
    ]
    admin_name = "bootstrap-admin"
    assert summary == [
        ("consumer_created", "system", admin_name, None, None),
        ("key_issued", "system", admin_name, None, None),
        ("consumer_created", admin_name, "ana", None, ids["ana"]),
        ("key_issued", admin_name, "ana", None, ids["ana"]),
        ("consumer_created", admin_name, "bob", None, "create-bob.1"),
        ("key_issued", admin_name, "bob", None, "create-bob.1"),
        ("key_issued", admin_name, "ana", None, ids["key"]),
        ("key_revoked", admin_name, "ana", None, "revoke_1"),
        ("dataset_registered", admin_name, None, "events", ids["events"]),
        ("dataset_registered", admin_name, None, "other", ids["other"]),
        ("budget_set", admin_name, "ana", "events", ids["budget-ana"]),
        ("budget_set", admin_name, "bob", "other", ids["budget-bob"]),
        ("release", "ana", "ana", "events", "spend-0.1"),
        ("release", "ana", "ana", "events", "spend-0.1"),
        ("refused", "ana", "ana", "events", "spend-0.1"),
        ("release", "bob", "bob", "other", None),
    ]
    assert len(set(ids.values())) == len(ids), "request ids are not unique"
    assert entries[2]["details"] == {"name": "ana", "role": "analyst"}
    assert entries[6]["details"]["key_id"] == entries[7]["details"]["key_id"]
    assert entries[12]["cost"] == {"model": "pure", "epsilon": 0.1}
    assert entries[14]["cost"] == {"model": "pure", "epsilon": 0}
    assert entries[14]["details"]["reason"] == "budget"
    assert entries[15]["cost"] == {"model": "zcdp", "rho": 0.5}
    for previous, entry in itertools.pairwise(entries):
        assert entry["prev_hash"] == previous["hash"]
        assert ledger.compute_hash(entry) == entry["hash"]
    assert entries[0]["prev_hash"] == ledger.GENESIS_HASH
    # A request id that is not a sane token is replaced, not stored.
    response = admin.post(
        "/v1/consumers",
        json={"name": "cyd", "role": "auditor"},
        headers={"X-Request-ID": "bad id\twith spaces"},
    )
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert all_entries(admin, consumer="cyd")[0]["request_id"] == response.headers["x-request-id"]


def test_filters_and_pagination(server: Service, admin: httpx.Client) -> None:
    _populate(server, admin)
    entries = all_entries(admin)
    seqs = [e["seq"] for e in entries]

    def selected(**params: Any) -> list[int]:
        return [e["seq"] for e in all_entries(admin, **params)]

    assert selected(consumer="ana") == [e["seq"] for e in entries if e["consumer"] == "ana"]
    assert selected(dataset="other") == [e["seq"] for e in entries if e["dataset"] == "other"]
    assert selected(kind="key_issued") == [e["seq"] for e in entries if e["kind"] == "key_issued"]
    assert selected(consumer="ana", kind="release", dataset="events") == [13, 14]
    assert selected(consumer="ana", dataset="other") == []
    assert selected(consumer="nobody") == []
    first, middle, last = entries[0], entries[len(entries) // 2], entries[-1]
    for since, until in ((first, last), (middle, last), (first, middle), (middle, middle)):
        expected = [e["seq"] for e in entries if since["time"] <= e["time"] <= until["time"]]
        got = selected(since=since["time"], until=until["time"])
        assert got == expected
        assert since["seq"] in got and until["seq"] in got  # both ends are inclusive
    assert selected(since=first["time"][:10], until=last["time"][:10]) == seqs
    assert selected(until=first["time"][:10] + "T00:00:00Z") == []
    assert selected(since=last["time"].replace("Z", "+00:00")) == [
        e["seq"] for e in entries if e["time"] >= last["time"]
    ]

    for limit in (1, 3, 5, len(entries) - 1, len(entries), len(entries) + 1):
        walked: list[int] = []
        pages = 0
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = admin.get("/v1/ledger", params=params).json()
            assert len(page["items"]) <= limit
            walked += [e["seq"] for e in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == seqs, limit
        assert pages == -(-len(seqs) // limit)
    assert selected(kind="release", limit=1) == [13, 14, 16]

    # newest first: the same entries in reverse, page by page, for any filter and limit
    for filters in ({}, {"consumer": "ana"}, {"kind": "release"}, {"dataset": "other"}):
        forwards = selected(**filters)
        for limit in (1, 2, 5, len(entries) + 1):
            walked, cursor = [], None
            while True:
                params = {**filters, "limit": limit, "order": "desc"}
                page = admin.get("/v1/ledger", params={**params, "cursor": cursor}).json()
                assert len(page["items"]) <= limit
                walked += [e["seq"] for e in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert walked == forwards[::-1], (filters, limit)

    auditor_key = admin.post("/v1/consumers", json={"name": "aud", "role": "auditor"}).json()[
        "api_key"
    ]
    assert [e["seq"] for e in all_entries(server.client(auditor_key))] == [
        *seqs,
        len(seqs) + 1,
        len(seqs) + 2,
    ]


def _bad_ledger_parameters_are_422(admin: httpx.Client) -> None:
    def b64(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    for params in (
        {"cursor": "!!!"},
        {"cursor": b64("seq:abc")},
        {"cursor": b64("foo:1")},
        {"cursor": b64("seq:-1")},
        {"cursor": b64("seq")},
        {"cursor": "x" * 65},
        {"cursor": "/w"},
        {"cursor": b64("seq:" + "9" * 30)},
        {"cursor": b64("seq: 5")},
        {"cursor": b64("seq:1_0")},
        {"since": "0001-01-01T00:00:00+01:00"},
        {"kind": "nope"},
        {"kind": "RELEASE"},
        {"since": "yesterday"},
        {"since": "2026-13-01"},
        {"until": "2026-02-30"},
        {"until": "12:00"},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"order": "up"},
        {"cursor": b64("before:3")},  # a newest-first cursor for an oldest-first page
        {"order": "desc", "cursor": b64("seq:3")},
    ):
        response = admin.get("/v1/ledger", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 422
    assert admin.get("/v1/ledger", params={"cursor": b64(f"seq:{2**63 - 1}")}).json() == {
        "items": [],
        "next_cursor": None,
    }
    for params in ({"format": "xml"}, {"format": ""}):
        assert admin.get("/v1/ledger/export", params=params).status_code == 422


RECONCILED = {"chain_valid": True, "reconciled": True, "discrepancy_count": 0, "discrepancies": []}


def _verify(admin: httpx.Client) -> dict[str, Any]:
    response = admin.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _intact(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """What verification answers for an untouched ledger of ``entries``."""
    tree = merkle.MemoryTree()
    for entry in entries:
        tree.append(merkle.leaf_hash(bytes.fromhex(entry["hash"])))
    return {
        "valid": True,
        "entries": len(entries),
        "head": entries[-1]["hash"],
        "first_bad_seq": None,
        **RECONCILED,
        "tree_valid": True,
        "tree_first_bad_seq": None,
        "root": base64.b64encode(tree.root()).decode(),
        "checkpoints_valid": True,
        "checkpoint_first_bad_size": None,
    }


def test_verify_catches_tampering(server: Service, admin: httpx.Client, engine: Engine) -> None:
    _populate(server, admin)
    entries = all_entries(admin)
    count = len(entries)
    assert _verify(admin) == _intact(entries)

    def row(seq: int) -> dict[str, Any]:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT * FROM ledger WHERE seq = :s"), {"s": seq})
            return dict(found.mappings().one())

    def execute(sql: str, **params: Any) -> None:
        with engine.begin() as conn:
            assert conn.execute(text(sql), params).rowcount == 1

    def restore(*originals: dict[str, Any]) -> None:
        for original in originals:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM ledger WHERE seq = :s"), {"s": original["seq"]})
            columns = ", ".join(original)
            values = ", ".join(f":{c}" for c in original)
            execute(f"INSERT INTO ledger ({columns}) VALUES ({values})", **original)
        assert _verify(admin)["valid"] is True

    def broken() -> tuple[bool, int | None]:
        result = _verify(admin)
        assert "head" not in result or result["head"] is None
        return result["valid"], result["first_bad_seq"]

    # (a) details of a budget grant rewritten
    original = row(11)
    details = json.loads(original["details_json"])
    details["budget"]["epsilon"] = 25
    execute("UPDATE ledger SET details_json = :d WHERE seq = 11", d=ledger.canonical_json(details))
    assert broken() == (False, 11)
    restore(original)
    # (b) the cost of a release lowered
    original = row(13)
    assert original["cost_json"] == '{"epsilon":0.1,"model":"pure"}'
    execute("UPDATE ledger SET cost_json = :c WHERE seq = 13", c='{"epsilon":0.01,"model":"pure"}')
    assert broken() == (False, 13)
    restore(original)
    # ... even when the tamperer re-computes that entry's hash, the next entry breaks
    document = ledger.entry_document(_as_entry(original))
    document["cost"] = {"model": "pure", "epsilon": 0.01}
    execute(
        "UPDATE ledger SET cost_json = :c, hash = :h WHERE seq = 13",
        c=ledger.canonical_json(document["cost"]),
        h=ledger.compute_hash(document),
    )
    assert broken() == (False, 14)
    restore(original)
    # (c) a middle entry deleted
    original = row(8)
    execute("DELETE FROM ledger WHERE seq = 8")
    assert broken() == (False, 8)
    restore(original)
    # (d) the last entry deleted, or rewritten with a consistent hash
    original = row(count)
    execute("DELETE FROM ledger WHERE seq = :s", s=count)
    assert broken() == (False, count)
    restore(original)
    document = ledger.entry_document(_as_entry(original))
    document["details"] = {"forged": True}
    execute(
        "UPDATE ledger SET details_json = :d, hash = :h WHERE seq = :s",
        d=ledger.canonical_json(document["details"]),
        h=ledger.compute_hash(document),
        s=count,
    )
    assert broken() == (False, count)
    restore(original)
    # two entries swapped
    first, second = row(3), row(4)
    execute("UPDATE ledger SET seq = -1 WHERE seq = 3")
    execute("UPDATE ledger SET seq = 3 WHERE seq = 4")
    execute("UPDATE ledger SET seq = 4 WHERE seq = -1")
    assert broken() == (False, 3)
    restore(first, second)
    assert _verify(admin) == _intact(entries)


def _as_entry(row: dict[str, Any]) -> LedgerEntry:
    return LedgerEntry(**row)


def test_export_streams_the_whole_ledger(server: Service, admin: httpx.Client) -> None:
    _populate(server, admin)
    database = Database(server.settings.database_url)
    try:  # more entries than one export batch, with text that needs quoting in CSV
        with database.write() as session:
            for i in range(1000):
                ledger.append(
                    session,
                    kind="refused",
                    actor="ana",
                    consumer="ana",
                    dataset="events",
                    cost={"model": "pure", "epsilon": 0},
                    details={"i": i, "note": 'a "quoted", multi\nline ü'},
                )
    finally:
        database.dispose()
    entries = all_entries(admin)
    assert len(entries) == 16 + 1000

    with admin.stream("GET", "/v1/ledger/export", params={"format": "jsonl"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert "ruis-ledger.jsonl" in response.headers["content-disposition"]
        lines = list(response.iter_lines())
    documents = [json.loads(line) for line in lines if line]
    assert documents == entries
    assert all(ledger.compute_hash(d) == d["hash"] for d in documents)
    assert admin.get("/v1/ledger/export").text.splitlines() == lines  # jsonl by default

    response = admin.get("/v1/ledger/export", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(ledger_csv.COLUMNS)  # flat columns: tests/api/test_ledger_export.py
    assert len(rows) == 1 + len(entries)
    for values, entry in zip(rows[1:], entries, strict=True):
        record = dict(zip(ledger_csv.COLUMNS, values, strict=True))
        assert int(record["seq"]) == entry["seq"]
        for field in ("time", "kind", "actor", "consumer", "dataset", "request_id", "hash"):
            assert record[field] == (entry[field] or ""), field
        assert record["prev_hash"] == entry["prev_hash"]
        cost = entry["cost"] or {}
        assert record["epsilon"] == ("" if "epsilon" not in cost else str(cost["epsilon"]))
        assert json.loads(record["details"]) == entry["details"]  # quotes, newlines, ü
        assert record["details_complete"] == "true"
    assert _verify(admin)["entries"] == len(entries)


def test_http_errors_are_problems(server: Service, admin: httpx.Client) -> None:
    cases = [
        (admin.get("/v1/nothing-here"), 404),
        (admin.get("/v1/ledger/verify/extra"), 404),
        (server.client().get("/nothing"), 404),
        (admin.delete("/v1/datasets"), 405),
        (admin.post("/v1/ledger"), 405),
        (
            admin.post(
                "/v1/consumers",
                content=b'{"name": "ana", "role": ',
                headers={"content-type": "application/json"},
            ),
            422,
        ),
        (
            admin.post(
                "/v1/consumers", content=b"\xff\xfe", headers={"content-type": "application/json"}
            ),
            422,
        ),
        (
            admin.post(
                "/v1/consumers",
                content=b'{"name": "x"} trailing',
                headers={"content-type": "application/json"},
            ),
            422,
        ),
        (
            admin.post(
                "/v1/consumers", content=b"[]", headers={"content-type": "application/json"}
            ),
            422,
        ),
        (
            admin.post(
                "/v1/consumers",
                content=b'{"name": "ana", "role": "analyst"}',
                headers={"content-type": "text/plain"},
            ),
            422,
        ),
    ]
    big = b'{"name": "' + b"a" * 2_000_000 + b'", "role": "analyst"}'
    cases.append(
        (
            admin.post("/v1/consumers", content=big, headers={"content-type": "application/json"}),
            413,
        )
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"name": "'
        for _ in range(40):
            yield b"a" * 50_000
        yield b'", "role": "analyst"}'

    cases.append(
        (
            admin.post(
                "/v1/consumers", content=chunks(), headers={"content-type": "application/json"}
            ),
            413,
        )
    )
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["status"] == status
        assert {"type", "title", "detail"} <= problem.keys()
        assert "x-request-id" in response.headers
    assert cases[3][0].json()["type"] == "method-not-allowed"
    assert cases[3][0].headers["allow"]
    assert cases[-1][0].json()["type"] == cases[-2][0].json()["type"] == "payload-too-large"
    names = [c["name"] for c in admin.get("/v1/consumers").json()["items"]]
    assert names == ["bootstrap-admin"]
    _bad_ledger_parameters_are_422(admin)
