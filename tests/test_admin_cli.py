"""``ruis admin``: every admin action on the database directly and over HTTP, and its errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main
from tests.conftest import ADMIN_KEY, Service, free_port
from tests.factories import events_metadata, write_events

# `ruis admin --url` reaches the server over HTTP
pytestmark = pytest.mark.live


@dataclass
class Outcome:
    """What one ``ruis admin`` run did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


Admin = Callable[..., Outcome]


def _runner(capsys: pytest.CaptureFixture[str], prefix: list[str]) -> Admin:
    def run(*args: str) -> Outcome:
        capsys.readouterr()
        try:
            code = main(["admin", *prefix, *args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


@pytest.fixture
def direct(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db_url: str, data_dir: Path
) -> Admin:
    """``ruis admin`` on the database itself (each backend)."""
    monkeypatch.setenv("RUIS_DATABASE_URL", db_url)
    monkeypatch.setenv("RUIS_DATA_DIR", str(data_dir))
    for name in ("RUIS_URL", "RUIS_ADMIN_KEY", "RUIS_BOOTSTRAP_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)
    return _runner(capsys, [])


@pytest.fixture
def over_http(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: Service
) -> Admin:
    """``ruis admin --url --key`` against the real server (each backend)."""
    for name in ("RUIS_URL", "RUIS_ADMIN_KEY", "RUIS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return _runner(capsys, ["--url", server.url, "--key", ADMIN_KEY])


def _dataset_file(tmp_path: Path, data_dir: Path, **overrides: Any) -> str:
    write_events(data_dir)
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events_metadata(**overrides)))
    return str(path)


def _check_chain(lines: list[str]) -> list[dict[str, Any]]:
    """Re-compute the hash chain of an exported ledger, as an auditor would."""
    entries = [json.loads(line) for line in lines]
    previous = "0" * 64
    for entry in entries:
        body = {k: v for k, v in entry.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert entry["prev_hash"] == previous
        assert hashlib.sha256(canonical.encode()).hexdigest() == entry["hash"]
        previous = entry["hash"]
    return entries


def _every_action(run: Admin, dataset_file: str) -> dict[str, Any]:
    """Create, issue, revoke, register, budget, show, verify and export; return the facts."""
    created = run("create-consumer", "ana", "--role", "analyst").json()
    assert created["name"] == "ana" and created["role"] == "analyst"
    assert created["api_key"] and created["key_id"]
    assert run("create-consumer", "olga", "--role", "auditor").json()["role"] == "auditor"
    consumers = run("list-consumers").json()
    assert {"ana", "olga"} <= {c["name"] for c in consumers}
    assert all("api_key" not in c for c in consumers)

    issued = run("issue-key", "ana").json()
    assert issued["api_key"] != created["api_key"]
    keys = run("list-keys", "ana").json()
    assert {k["id"] for k in keys} == {created["key_id"], issued["id"]}
    assert all("api_key" not in k and k["revoked_at"] is None for k in keys)
    revoked = run("revoke-key", "ana", created["key_id"]).json()
    assert revoked["id"] == created["key_id"] and revoked["revoked_at"] is not None
    again = run("revoke-key", "ana", created["key_id"]).json()  # idempotent
    assert again["revoked_at"] == revoked["revoked_at"]

    registered = run("register-dataset", dataset_file).json()
    assert registered["name"] == "events" and registered["privacy_unit"] == "device_id"
    assert [d["name"] for d in run("list-datasets").json()] == ["events"]
    assert registered["status"] == "active" and registered["file"]["path"] == "events.parquet"
    reinstated = run("reinstate-dataset", "events").json()
    assert reinstated["status"] == "active" and reinstated["file"] == registered["file"]

    budget = run("set-budget", "ana", "events", "2.5").json()
    assert (budget["total"], budget["spent"], budget["remaining"]) == (2.5, 0, 2.5)
    assert budget["unit"] == "epsilon"
    raised = run("set-budget", "ana", "events", "3").json()
    assert raised["total"] == 3
    shown = run("budgets", "--consumer", "ana").json()
    assert [(b["consumer"], b["dataset"], b["total"]) for b in shown] == [("ana", "events", 3)]
    assert run("budgets", "--dataset", "other").json() == []
    assert run("create-consumer", "per", "--role", "analyst").code == 0
    monthly = run(
        "set-budget", "per", "events", "1", "--period-column", "day", "--every", "month"
    ).json()
    assert monthly["period"] == {"column": "day", "every": "month"}
    assert monthly["total"] == 1 and monthly["periods"] == []
    assert monthly["cumulative"] == {"epsilon": 0}
    (listed,) = run("budgets", "--consumer", "per").json()
    assert listed["period"] == monthly["period"]
    assert run("set-budget", "per", "events", "1", "--every", "month").code != 0  # no column
    not_a_date = run(
        "set-budget", "per", "events", "1", "--period-column", "hour", "--every", "day"
    )
    assert not_a_date.code != 0 and "period column 'hour'" in not_a_date.err

    verification = run("verify-ledger").json()
    assert verification["valid"] is True and verification["head"]
    exported = run("export-ledger")
    assert exported.code == 0, exported.err
    entries = _check_chain(exported.out.splitlines())
    assert len(entries) == verification["entries"]
    assert entries[-1]["hash"] == verification["head"]
    kinds = [e["kind"] for e in entries]
    for kind in (
        "consumer_created",
        "key_issued",
        "key_revoked",
        "dataset_registered",
        "dataset_reinstated",
        "budget_set",
    ):
        assert kind in kinds
    assert kinds.count("key_revoked") == 1
    csv_lines = run("export-ledger", "--format", "csv").out.splitlines()
    assert csv_lines[0].startswith("seq,time,kind,actor") and len(csv_lines) == len(entries) + 1
    grants = run("export-ledger", "--kind", "budget_set").out.splitlines()
    assert [json.loads(line)["seq"] for line in grants] == [
        e["seq"] for e in entries if e["kind"] == "budget_set"
    ]
    _fails(run("export-ledger", "--since", "yesterday"), "ISO 8601")
    return {"entries": entries, "revoked_key": created["api_key"], "key": issued["api_key"]}


def test_every_action_on_the_database(direct: Admin, tmp_path: Path, data_dir: Path) -> None:
    facts = _every_action(direct, _dataset_file(tmp_path, data_dir))
    actors = {e["actor"] for e in facts["entries"]}
    assert len(actors) == 1 and actors.pop().startswith("cli:")


def test_every_action_over_http(over_http: Admin, server: Service, tmp_path: Path) -> None:
    facts = _every_action(over_http, _dataset_file(tmp_path, server.settings.data_dir))
    ours = [e for e in facts["entries"] if e["consumer"] != "bootstrap-admin"]
    assert {e["actor"] for e in ours} == {"bootstrap-admin"}
    # The keys the command printed are real: the issued one works, the revoked one does not.
    assert server.client(facts["key"]).get("/v1/budgets").status_code == 200
    assert server.client(facts["revoked_key"]).get("/v1/budgets").status_code == 401


def test_http_lists_are_arrays_like_the_direct_mode(over_http: Admin) -> None:
    assert over_http("list-consumers").json()[0]["name"] == "bootstrap-admin"
    assert over_http("list-datasets").json() == []


def _fails(outcome: Outcome, *fragments: str) -> None:
    assert outcome.code == 1, outcome
    assert outcome.out == ""
    lines = outcome.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ruis admin: "), outcome.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_direct_mode_errors(
    direct: Admin, tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fails(direct("set-budget", "ana", "events", "1"), "'ana' does not exist")
    assert direct("create-consumer", "ana", "--role", "analyst").code == 0
    _fails(direct("create-consumer", "ana", "--role", "analyst"), "ana")
    _fails(direct("create-consumer", "Not A Slug", "--role", "analyst"), "name")
    _fails(direct("set-budget", "ana", "events", "1"), "'events' does not exist")
    _fails(direct("set-budget", "ana", "events", "lots"), "'lots' is not a number")
    _fails(direct("revoke-key", "ana", "no-such-key"), "no-such-key")
    _fails(direct("register-dataset", str(tmp_path / "missing.json")), "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    _fails(direct("register-dataset", str(broken)), "broken.json")
    outside = _dataset_file(tmp_path, data_dir, path="../events.parquet")
    _fails(direct("register-dataset", outside))
    good = _dataset_file(tmp_path, data_dir)
    assert direct("register-dataset", good).code == 0
    assert direct("set-budget", "ana", "events", "1").code == 0
    _fails(direct("set-budget", "ana", "events", "-1"), "epsilon")
    _fails(direct("set-budget", "ana", "events", "NaN"), "epsilon")
    assert direct("create-consumer", "boss", "--role", "admin").code == 0
    _fails(direct("set-budget", "boss", "events", "1"), "analyst")
    assert direct("set-budget", "ana").code == 2  # usage error
    monkeypatch.setenv("RUIS_DATABASE_URL", "mysql://nobody@localhost/ruis")
    _fails(direct("list-consumers"), "cannot open the database")
    monkeypatch.setenv("RUIS_DATABASE_URL", f"sqlite:///{tmp_path}/no/such/dir/ruis.db")
    _fails(direct("list-consumers"), "cannot open the database")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_http_mode_errors(
    over_http: Admin, capsys: pytest.CaptureFixture[str], server: Service, tmp_path: Path
) -> None:
    _fails(over_http("set-budget", "ana", "events", "1"), "HTTP 404", "'ana' does not exist")
    _fails(over_http("set-budget", "ana", "events", "lots"), "'lots' is not a number")
    _fails(over_http("create-consumer", "Not A Slug", "--role", "analyst"), "HTTP 422")
    _fails(over_http("register-dataset", str(tmp_path / "missing.json")), "missing.json")
    _fails(over_http("issue-key", "../datasets"), "HTTP 404")  # one path segment, not a path
    wrong_key = _runner(capsys, ["--url", server.url, "--key", "not-a-key"])
    _fails(wrong_key("list-consumers"), "HTTP 401")
    nowhere = _runner(capsys, ["--url", f"http://127.0.0.1:{free_port()}", "--key", ADMIN_KEY])
    _fails(nowhere("list-consumers"), "cannot reach")
    _fails(_runner(capsys, ["--url", server.url])("list-consumers"), "RUIS_ADMIN_KEY")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_environment_selects_http_mode(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: Service
) -> None:
    monkeypatch.setenv("RUIS_URL", server.url)
    monkeypatch.setenv("RUIS_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("RUIS_DATABASE_URL", "sqlite:////nonexistent/never-used.db")
    created = _runner(capsys, [])("create-consumer", "via-env", "--role", "auditor").json()
    auditor = httpx.get(
        f"{server.url}/v1/ledger/verify", headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert auditor.status_code == 200 and auditor.json()["valid"] is True


def _set_limits_and_show_them(run: Admin, *, direct_mode: bool) -> None:
    assert run("create-consumer", "ana", "--role", "analyst").code == 0
    set_out = run("set-limits", "ana", "--min-epsilon", "0.01", "--max-concurrent", "3").json()
    assert set_out["overrides"]["min_epsilon"] == 0.01
    assert set_out["overrides"]["max_concurrent"] == 3
    assert set_out["overrides"]["burst"] is None
    shown = run("limits", "ana").json()
    assert shown == set_out and shown["effective"]["max_concurrent"] == 3
    if direct_mode:
        assert shown["effective"]["max_cells"] == 5000
    assert run("set-limits", "ana", "--burst", "0").code == 1
    assert run("limits", "nobody").code == 1


def test_set_limits_on_the_database(direct: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUIS_MAX_CELLS", "5000")  # the direct mode's deployment default
    _set_limits_and_show_them(direct, direct_mode=True)


def test_set_limits_over_http(over_http: Admin) -> None:
    _set_limits_and_show_them(over_http, direct_mode=False)


def test_every_admin_command_has_an_http_call_and_a_direct_action() -> None:
    import argparse

    from cli import admin, admin_direct

    parser = argparse.ArgumentParser()
    admin.add_parser(parser.add_subparsers())
    (admin_parser,) = (
        action.choices["admin"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    (commands,) = (
        set(action.choices)
        for action in admin_parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert commands == set(admin.CALLS) == set(admin_direct.ACTIONS)


def _versions_and_retirement(run: Admin, tmp_path: Path, data_dir: Path) -> None:
    assert run("register-dataset", _dataset_file(tmp_path, data_dir)).code == 0
    grown = tmp_path / "columns.json"
    days = events_metadata()["columns"]["day"]["keys"]
    grown.write_text(json.dumps({"day": {"keys": [*days, "2026-03-05"]}}))
    added = run(
        "add-dataset-version",
        "events",
        "events.parquet",
        "--columns",
        str(grown),
        "--max-rows",
        "5000",
    ).json()
    assert added["version"] == 2 and [v["version"] for v in added["versions"]] == [1, 2]
    assert added["columns"]["day"]["keys"][-1] == "2026-03-05" and added["max_rows"] == 5000
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({"municipality": {"keys": ["GM0001"]}}))
    _fails(
        run("add-dataset-version", "events", "events.parquet", "--columns", str(wider)),
        "only the keys of date",
    )
    _fails(run("add-dataset-version", "events", "events.parquet", "--columns", "nope.json"), "nope")
    retired = run("retire-dataset", "events").json()
    assert retired["status"] == "retired" and retired["version"] == 2
    _fails(run("retire-dataset", "events"), "retired")
    _fails(run("add-dataset-version", "events", "events.parquet"), "retired")
    kinds = [json.loads(line)["kind"] for line in run("export-ledger").out.splitlines()]
    assert kinds.count("dataset_version_added") == 1 and kinds.count("dataset_retired") == 1


def test_versions_and_retirement_on_the_database(
    direct: Admin, tmp_path: Path, data_dir: Path
) -> None:
    _versions_and_retirement(direct, tmp_path, data_dir)


def test_versions_and_retirement_over_http(
    over_http: Admin, server: Service, tmp_path: Path
) -> None:
    _versions_and_retirement(over_http, tmp_path, server.settings.data_dir)
