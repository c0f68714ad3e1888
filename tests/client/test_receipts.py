"""The client checks every release's receipt against the signed ledger and keeps the last
checkpoint it saw: against the real app, including an operator who restores an older
database and carries on, and a server that forges receipts."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.settings import Settings
from db.ledger import compute_hash
from ruis_client import (
    Checkpoint,
    LedgerInconsistency,
    LedgerInconsistencyWarning,
    Receipt,
    ReceiptInvalid,
    ReceiptInvalidWarning,
    Release,
    Ruis,
)
from ruis_client._receipts import entry_hash
from tests.conftest import Service
from tests.factories import MUNICIPALITIES
from tests.support.api import create_consumer, ledger, register_events, set_budget
from tests.support.inprocess import start_app
from tlog import note

Edit = Callable[[dict[str, Any]], None]


class Relay(httpx.BaseTransport):
    """Passes requests to ``target`` (which a test may swap: the server restarted), records
    their paths, and lets ``edit`` rewrite a release answer (a forging server)."""

    def __init__(self, target: httpx.BaseTransport) -> None:
        self.target = target
        self.paths: list[str] = []
        self.edit: Edit | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        response = self.target.handle_request(request)
        if self.edit is None or not request.url.path.startswith("/v1/queries"):
            return response
        body = json.loads(response.read())
        self.edit(body)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, json=body)


def _target(server: Service) -> httpx.BaseTransport:
    assert server.transport is not None  # the in-process app
    return server.transport


@pytest.fixture
def ana_key(server: Service, admin: httpx.Client) -> str:
    """The events dataset and the analyst ``ana`` with ε = 10 on it; ana's API key."""
    register_events(server, admin)
    key = create_consumer(admin, "ana")
    set_budget(admin, "ana", amount=10.0)
    return key


@pytest.fixture
def relay(server: Service) -> Relay:
    """A relay to the server."""
    return Relay(_target(server))


def _ruis(relay: Relay, key: str, **options: Any) -> Ruis:
    return Ruis("http://testserver", key, transport=relay, **options)


def _server_key(admin: httpx.Client) -> str:
    response = admin.get("/v1/ledger/key")
    assert response.status_code == 200, response.text
    return response.text.strip()


def _visitors(ruis: Ruis, epsilon: float = 0.1) -> Release:
    return ruis.query("events", "unit_count", group_by=["municipality"], epsilon=epsilon)


def test_fresh_cached_and_reread_releases_verify(
    admin: httpx.Client, ana_key: str, relay: Relay
) -> None:
    with _ruis(relay, ana_key) as ana:
        assert ana.last_checkpoint is None and ana.ledger_key is None
        fresh = _visitors(ana)
        assert fresh.verified and not fresh.cached
        assert ana.ledger_key == _server_key(admin)  # trusted on first use
        assert isinstance(fresh.receipt, Receipt)
        assert fresh.receipt.index == fresh.ledger_seq - 1
        assert fresh.receipt.entry["details"]["release_id"] == fresh.id
        first = ana.last_checkpoint
        assert isinstance(first, Checkpoint) and first.note == fresh.receipt.checkpoint
        assert first.size >= fresh.ledger_seq
        cached = _visitors(ana)
        assert cached.cached and cached.id == fresh.id and cached.verified
        reread = ana.release(fresh.id)
        assert reread.verified and reread.receipt is not None
        last = ana.last_checkpoint
        assert last is not None and last.size > first.size  # grown, consistently
        assert ana.inconsistencies == []
    assert relay.paths.count("/v1/ledger/key") == 1
    assert relay.paths.count("/v1/ledger/proofs/consistency") == 2


def test_a_pinned_key_is_not_fetched(admin: httpx.Client, ana_key: str, relay: Relay) -> None:
    with _ruis(relay, ana_key, ledger_key=_server_key(admin)) as ana:
        assert _visitors(ana).verified
    assert "/v1/ledger/key" not in relay.paths
    with pytest.raises(ValueError, match="verifier key"):
        _ruis(relay, ana_key, ledger_key="not-a-key")
    with pytest.raises(ValueError, match="on_inconsistency"):
        _ruis(relay, ana_key, on_inconsistency="ignore")


def test_the_canonical_hash_is_the_servers(admin: httpx.Client, ana_key: str, relay: Relay) -> None:
    with _ruis(relay, ana_key) as ana:
        _visitors(ana)
        ana.query("events", "count", where=[("municipality", "eq", MUNICIPALITIES[0])], epsilon=0.1)
    entries = ledger(admin)
    assert len({e["kind"] for e in entries}) >= 4
    for entry in entries:
        assert entry_hash(entry) == compute_hash(entry) == entry["hash"]
    odd = {"seq": 1, "details": {"naïve": "ünïcode ✓", "n": [1.5, None, True]}, "hash": "x"}
    assert entry_hash(odd) == compute_hash(odd)
    with pytest.raises(ValueError):
        entry_hash({"cost": float("nan")})


def test_the_client_does_not_import_the_server() -> None:
    """The client ships on its own: importing it loads no server package (tlog ships with it)."""
    code = (
        "import sys, ruis_client\n"
        "server = ('db', 'api', 'privacy', 'cli')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in server)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_the_checkpoint_file_carries_on_across_clients(
    server: Service, admin: httpx.Client, ana_key: str, relay: Relay, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / "ana-checkpoint.json"
    with _ruis(relay, ana_key, checkpoint_file=path) as first:
        assert _visitors(first).verified
        seen = first.last_checkpoint
    assert seen is not None
    stored = json.loads(path.read_text())
    assert stored == {
        "version": 1,
        "key": _server_key(admin),
        "checkpoint": seen.note,
        "size": seen.size,
        "root": seen.root_base64,
    }
    assert os.listdir(home) == [path.name]  # written by a rename: no temporary left
    other = server.client(create_consumer(admin, "bob"))  # the ledger goes on meanwhile
    set_budget(admin, "bob", amount=1.0)
    assert (
        other.post(
            "/v1/queries",
            json={"dataset": "events", "statistic": "count", "privacy": {"epsilon": 0.1}},
        ).status_code
        == 200
    )
    relay.paths.clear()
    with _ruis(relay, ana_key, checkpoint_file=path) as second:
        assert second.last_checkpoint == seen  # picks up where the first stopped
        later = _visitors(second, 0.2)
        assert later.verified
        assert second.last_checkpoint is not None and second.last_checkpoint.size > seen.size
    assert "/v1/ledger/proofs/consistency" in relay.paths
    assert json.loads(path.read_text())["size"] == second.last_checkpoint.size
    path.write_text('{"version": 1, "key": null, "checkpoint": "nonsense"}')
    with pytest.raises(ValueError, match="checkpoint file"):
        _ruis(relay, ana_key, checkpoint_file=path)


def _sqlite_path(settings: Settings) -> Path:
    url = settings.database_url
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def _backup(database: Path, copy: Path) -> None:
    """What an operator's backup does: SQLite's online backup of the live database."""
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    source.close()
    target.close()


def _restore(copy: Path, database: Path) -> None:
    """Put the backup back in place of the database (the service is stopped)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    _backup(copy, database)


@pytest.fixture
def restarts(server: Service) -> Iterator[list[Service]]:
    """The apps a test starts after stopping the first (each stopped afterwards)."""
    started: list[Service] = []
    yield started
    for app in started:
        app.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_operator_who_restores_an_older_database_is_noticed(
    server: Service,
    ana_key: str,
    relay: Relay,
    tmp_path: Path,
    restarts: list[Service],
) -> None:
    database, backup = _sqlite_path(server.settings), tmp_path / "backup.db"
    path = tmp_path / "ana-checkpoint.json"
    with _ruis(relay, ana_key, checkpoint_file=path) as ana:
        assert _visitors(ana, 0.05).verified
        _backup(database, backup)  # last week's backup
        for i in range(3):  # the week's releases: the client has seen them
            assert _visitors(ana, 0.1 + i / 100).verified
        seen = ana.last_checkpoint
        assert seen is not None
        # the operator restores the backup and carries on, with the same signing key
        server.stop()
        _restore(backup, database)
        restored = start_app(server.settings)
        restarts.append(restored)
        relay.target = _target(restored)
        with pytest.warns(LedgerInconsistencyWarning) as warned:
            smaller = _visitors(ana, 0.3)
        [report] = ana.inconsistencies
        assert warned[0].message.error is report  # type: ignore[union-attr]
        assert warned[0].filename == __file__  # it points at the analyst's call
        assert not smaller.verified and report.release is smaller
        assert report.old == seen and report.new is not None and report.new.size < seen.size
        assert f"size {seen.size}" in str(report) and seen.root_base64 in str(report)
        assert f"size {report.new.size}" in str(report) and report.new.root_base64 in str(report)
        assert ana.last_checkpoint == seen  # the evidence is kept
        # the restored ledger carries on past the size the client saw: a diverging history
        epsilon = 0.31
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                diverged = _visitors(ana, epsilon)
            assert [type(w.message) for w in caught] == [LedgerInconsistencyWarning]
            point = ana.inconsistencies[-1].new
            assert point is not None and not diverged.verified
            if point.size > seen.size:
                break
            epsilon += 0.01
        assert "consistency proof fails" in str(ana.inconsistencies[-1])
        assert ana.last_checkpoint == seen
    assert json.loads(path.read_text())["size"] == seen.size  # and on disk
    # the analyst's next run, raising: the file still holds the checkpoint of before
    with _ruis(relay, ana_key, checkpoint_file=path, on_inconsistency="raise") as again:
        with pytest.raises(LedgerInconsistency) as raised:
            _visitors(again, epsilon + 0.01)
        assert not isinstance(raised.value, ReceiptInvalid)
        assert raised.value.old == seen and raised.value.release is not None
        assert raised.value.release.frame.height > 0  # the values paid for are not lost
        assert again.inconsistencies == [raised.value] and again.last_checkpoint == seen


def test_an_older_but_consistent_answer_is_no_inconsistency(ana_key: str, relay: Relay) -> None:
    """An answer overtaken by a later one (threads sharing a client) is an older view."""
    replayed: dict[str, Any] = {}
    with _ruis(relay, ana_key, on_inconsistency="raise") as ana:
        first = _visitors(ana)
        relay.edit = replayed.update  # capture the re-read as served now
        ana.release(first.id)
        relay.edit = None
        _visitors(ana, 0.2)
        newest = ana.last_checkpoint

        def replay(body: dict[str, Any]) -> None:
            body.clear()
            body.update(replayed)

        relay.edit = replay
        old = ana.release(first.id)
        assert old.verified and old.receipt is not None
        assert ana.last_checkpoint == newest and ana.inconsistencies == []
        assert newest is not None and old.receipt.checkpoint != newest.note


def _flip_inclusion(body: dict[str, Any]) -> None:
    first = base64.b64decode(body["receipt"]["inclusion"][0])
    body["receipt"]["inclusion"][0] = base64.b64encode(bytes([first[0] ^ 1]) + first[1:]).decode()


def _entry_cost(body: dict[str, Any]) -> None:
    entry = body["receipt"]["entry"]
    entry["cost"] = {**entry["cost"], "epsilon": entry["cost"]["epsilon"] / 2}
    entry["hash"] = compute_hash(entry)  # a consistent forgery of the entry itself


def _release_cost(body: dict[str, Any]) -> None:
    body["cost"] = {**body["cost"], "epsilon": body["cost"]["epsilon"] / 2}


def _resign(body: dict[str, Any]) -> None:
    signed = note.Note.parse(body["receipt"]["checkpoint"])
    origin = note.Checkpoint.parse(signed.text).origin
    body["receipt"]["checkpoint"] = note.sign(signed.text, note.generate(origin)).render()


def _other_root(body: dict[str, Any]) -> None:
    signed = note.Note.parse(body["receipt"]["checkpoint"])
    text = signed.text.replace(signed.text.split("\n")[2], base64.b64encode(b"\0" * 32).decode())
    body["receipt"]["checkpoint"] = note.Note(text, signed.signatures).render()


def _entry_of_another_release(body: dict[str, Any]) -> None:
    entry = body["receipt"]["entry"]
    entry["details"] = {**entry["details"], "release_id": "rel_someone_else"}
    entry["hash"] = compute_hash(entry)


def _no_receipt(body: dict[str, Any]) -> None:
    del body["receipt"]


def _leaf_elsewhere(body: dict[str, Any]) -> None:
    body["receipt"]["index"] -= 1
    body["ledger_seq"] -= 1
    body["receipt"]["entry"]["seq"] -= 1
    body["receipt"]["entry"]["hash"] = compute_hash(body["receipt"]["entry"])


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_flip_inclusion, "inclusion proof fails"),
        (_entry_cost, "cost"),
        (_release_cost, "cost"),
        (_resign, "no signature of"),
        (_other_root, "does not verify"),
        (_entry_of_another_release, "rel_someone_else"),
        (_leaf_elsewhere, "inclusion proof fails"),
        (_no_receipt, "no receipt"),
    ],
)
def test_a_forged_receipt_is_invalid(ana_key: str, relay: Relay, forge: Edit, reason: str) -> None:
    with _ruis(relay, ana_key, on_inconsistency="raise") as ana:
        honest = _visitors(ana)
        assert honest.verified
        seen = ana.last_checkpoint
        relay.edit = forge
        with pytest.raises(ReceiptInvalid, match=reason) as raised:
            _visitors(ana, 0.2)
        assert raised.value.old == seen and ana.last_checkpoint == seen
        assert raised.value.release is not None and not raised.value.release.verified
        assert ana.inconsistencies == [raised.value]
    with _ruis(relay, ana_key) as warned:  # by default: a warning, the release unverified
        with pytest.warns(ReceiptInvalidWarning, match=reason):
            release = warned.release(honest.id)
        assert not release.verified and warned.last_checkpoint is None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_another_signing_key_is_an_inconsistency(
    server: Service,
    admin: httpx.Client,
    ana_key: str,
    relay: Relay,
    tmp_path: Path,
    restarts: list[Service],
) -> None:
    """A key trusted on first use and remembered: a server that later signs with another
    is reported, and its receipts do not verify with the remembered key."""
    path = tmp_path / "ana-checkpoint.json"
    key = _server_key(admin)
    with _ruis(relay, ana_key, checkpoint_file=path) as ana:
        assert _visitors(ana).verified
    server.stop()
    rekeyed = start_app(
        dataclasses.replace(server.settings, ledger_key_file=tmp_path / "another-key.pem")
    )
    restarts.append(rekeyed)
    relay.target = _target(rekeyed)
    with _ruis(relay, ana_key, checkpoint_file=path) as ana:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            release = _visitors(ana, 0.2)
        assert [type(w.message) for w in caught] == [
            LedgerInconsistencyWarning,
            ReceiptInvalidWarning,
        ]
        assert not release.verified and ana.ledger_key == key
        assert key in str(ana.inconsistencies[0]) and "ledger key" in str(ana.inconsistencies[0])
    assert json.loads(path.read_text())["key"] == key
    # the analyst told of the new key out of band pins it: the same tree, consistent
    new_key = rekeyed.client(ana_key).get("/v1/ledger/key").text.strip()
    with _ruis(relay, ana_key, checkpoint_file=path, ledger_key=new_key) as pinned:
        assert pinned.release(release.id).verified and pinned.inconsistencies == []
    assert json.loads(path.read_text())["key"] == new_key
