"""The ledger's attacks end to end: the real server over HTTP (uvicorn), the real
database rewritten by an insider, and the real ``ruis verify`` and ``ruis witness``
commands (``cli.main.main``, in-process; the witness talks to the served URL).

- An insider edits an entry, recomputes every later hash and rebuilds the Merkle tree:
  the server's own verification is fooled, ``ruis verify`` against checkpoints saved
  before names the range of the edited seq, and the witness alarms.
- An operator restores an older database and carries on: the witness's consistency
  proof from the checkpoint it cosigned fails, and the restored log refuses that
  checkpoint (409 ``checkpoint-mismatch``).
- Dropping the tail: ``ruis verify`` says the export ends before the checkpoint's size;
  the witness sees the tree shrink.
- The normal path: the witness cosigns round after round, the checkpoint carries its
  cosignature, and ``ruis verify --witness`` of an export accepts it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from api.settings import Settings
from cli.main import main
from db.ledger import canonical_json, compute_hash
from tests.conftest import ADMIN_KEY, Service, _pg_database, require_postgres, start_server
from tests.support.api import VISITORS, analyst, create_consumer, ledger, register_events
from tests.support.insider import rebuild_tree
from tlog.note import Checkpoint, Note, Verifier

pytestmark = pytest.mark.live  # the witness reaches the server at its URL

WITNESS = "auditor.example/w1"


@dataclass
class Ran:
    """What one ``ruis`` command did."""

    code: int
    out: str
    err: str


@dataclass
class Auditor:
    """An outside auditor: the log's pinned key, a witness key and state, and a place to
    keep checkpoints and exports; runs the real commands."""

    folder: Path
    api_key: str
    log_key: Path
    witness_key: Path
    witness_vkey: str
    capsys: pytest.CaptureFixture[str]

    @property
    def state(self) -> Path:
        """The witness's state file."""
        return self.folder / "witness-state.json"

    def ruis(self, *argv: str) -> Ran:
        """Run ``ruis argv`` in-process; its exit status and output."""
        self.capsys.readouterr()
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    def witness(self, url: str) -> Ran:
        """One round of ``ruis witness`` against the server at ``url``."""
        return self.ruis(
            "witness",
            "--url",
            url,
            "--api-key",
            self.api_key,
            "--log-key",
            str(self.log_key),
            "--key-file",
            str(self.witness_key),
            "--name",
            WITNESS,
            "--state",
            str(self.state),
        )

    def witnessed(self) -> Note:
        """The last checkpoint the witness cosigned (its state's note)."""
        return Note.parse(json.loads(self.state.read_text())["note"])

    def evidence(self) -> list[dict[str, Any]]:
        """The witness's evidence files, oldest first."""
        paths = sorted(self.folder.glob(f"{self.state.name}.alarm-*.json"))
        return [json.loads(p.read_text()) for p in paths]

    def save(self, name: str, content: str | bytes) -> str:
        """Keep ``content`` in a file of the auditor's; its path."""
        path = self.folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def verify(self, export: str, *checkpoints: str, witness: bool = False) -> Ran:
        """``ruis verify`` of ``export`` against ``checkpoints`` (and the witness's key)."""
        argv = ["verify", export, "--key", str(self.log_key)]
        for path in checkpoints:
            argv += ["--checkpoint", path]
        if witness:
            argv += ["--witness", self.witness_vkey]
        return self.ruis(*argv)


@dataclass
class Scene:
    """A served log with activity, an analyst, an admin and an auditor."""

    server: Service
    admin: httpx.Client
    ana: httpx.Client
    auditor: Auditor
    aud: httpx.Client

    def size(self, client: httpx.Client | None = None) -> int:
        """The current tree size served (the checkpoint's)."""
        return _point((client or self.aud).get("/v1/ledger/checkpoint").text).size

    def checkpoint(self, name: str, client: httpx.Client | None = None) -> str:
        """Fetch the current checkpoint and keep it in a file; the file."""
        response = (client or self.aud).get("/v1/ledger/checkpoint")
        assert response.status_code == 200, response.text
        return self.auditor.save(name, response.text)

    def export(self, name: str, client: httpx.Client | None = None) -> str:
        """Fetch the unfiltered JSONL export and keep it in a file; the file."""
        response = (client or self.admin).get("/v1/ledger/export", params={"format": "jsonl"})
        assert response.status_code == 200, response.text
        return self.auditor.save(name, response.content)


def _point(note_text: str) -> Checkpoint:
    return Checkpoint.parse(Note.parse(note_text).text)


def _release(ana: httpx.Client, epsilon: float) -> dict[str, Any]:
    response = ana.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": epsilon}})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _reread(ana: httpx.Client, release_id: str) -> None:
    response = ana.get(f"/v1/queries/{release_id}")
    assert response.status_code == 200, response.text


@pytest.fixture
def scene(
    server: Service, admin: httpx.Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Scene:
    """The events dataset, an analyst ``ana`` with one release, an auditor ``aud`` with a
    witness key made by ``ruis witness-key`` and the log's key pinned in a file."""
    register_events(server, admin)
    ana = analyst(server, admin, amount=10.0)
    _release(ana, 0.5)
    aud_key = create_consumer(admin, "aud", role="auditor")
    aud = server.client(aud_key)
    folder = tmp_path / "auditor"
    folder.mkdir()
    log_key = folder / "log.vkey"
    served_key = aud.get("/v1/ledger/key")
    assert served_key.status_code == 200, served_key.text
    log_key.write_text(served_key.text, encoding="utf-8")
    auditor = Auditor(folder, aud_key, log_key, folder / "witness.pem", "", capsys)
    made = auditor.ruis("witness-key", "--name", WITNESS, "--out", str(auditor.witness_key))
    assert made.code == 0, made.err
    auditor.witness_vkey = made.out.strip()
    assert Verifier.parse(auditor.witness_vkey).name == WITNESS
    return Scene(server, admin, ana, auditor, aud)


def _entries(scene: Scene) -> list[dict[str, Any]]:
    entries = ledger(scene.admin)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    return entries


def _cover_tracks(engine: Engine, from_size: int) -> None:
    """Forget the checkpoints served and cosigned at ``from_size`` and after (the history
    the server keeps would otherwise show other roots there)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_cosignatures WHERE size >= :s"), {"s": from_size})
        conn.execute(text("DELETE FROM ledger_checkpoints WHERE size >= :s"), {"s": from_size})


def _fooled(scene: Scene) -> None:
    """The server's own verification passes: chain, tree and reconciliation."""
    verified = scene.admin.get("/v1/ledger/verify").json()
    assert verified["valid"] is True, verified
    assert verified["chain_valid"] and verified["tree_valid"] and verified["reconciled"]


def _alarmed(ran: Ran, auditor: Auditor, before: str, reason: str) -> dict[str, Any]:
    """The witness alarmed for ``reason``, wrote its evidence and kept its state; the
    evidence."""
    assert ran.code == 3, (ran.out, ran.err)
    assert "ALARM" in ran.err and reason in ran.err, ran.err
    assert auditor.state.read_text() == before  # nothing cosigned, state untouched
    evidence = auditor.evidence()
    assert len(evidence) == 1 and reason in evidence[0]["alarm"]
    assert evidence[0]["witness"] == auditor.witness_vkey
    return evidence[0]


def test_an_insider_rewrite_is_caught_by_verify_and_the_witness(
    scene: Scene, engine: Engine
) -> None:
    auditor = scene.auditor
    first = auditor.witness(scene.server.url)
    assert first.code == 0 and "first sight" in first.out, (first.out, first.err)
    early = scene.checkpoint("early.note")
    early_size = _point(Path(early).read_text()).size
    # who consulted what, and when: a re-read the insider wants to hide
    release = _release(scene.ana, 0.25)
    middle = scene.checkpoint("middle.note")
    middle_size = _point(Path(middle).read_text()).size
    _reread(scene.ana, release["id"])
    late = scene.checkpoint("late.note")
    late_size = _point(Path(late).read_text()).size
    second = auditor.witness(scene.server.url)
    assert second.code == 0 and f"consistent with size {early_size}" in second.out, second.err
    witnessed = auditor.save("witnessed.note", auditor.witnessed().render())
    before = auditor.state.read_text()

    entries = _entries(scene)
    target = next(e for e in entries if e["kind"] == "reread")
    assert early_size < middle_size < target["seq"] == late_size
    with engine.begin() as conn:  # another time, another way in; every later hash recomputed
        previous = target["prev_hash"]
        for entry in entries[target["seq"] - 1 :]:
            if entry["seq"] == target["seq"]:
                entry["time"] = "2020-01-01T00:00:00.000000Z"
                entry["details"] = {**entry["details"], "via": "nobody"}
            entry["prev_hash"] = previous
            entry["hash"] = compute_hash(entry)
            previous = entry["hash"]
            conn.execute(
                text(
                    "UPDATE ledger SET time = :t, details_json = :d, prev_hash = :p, hash = :h "
                    "WHERE seq = :s"
                ),
                {
                    "t": entry["time"],
                    "d": canonical_json(entry["details"]),
                    "p": entry["prev_hash"],
                    "h": entry["hash"],
                    "s": entry["seq"],
                },
            )
    rebuild_tree(engine, entries)
    _cover_tracks(engine, target["seq"])
    _fooled(scene)
    assert scene.size() == late_size  # same size, another root

    export = scene.export("rewritten.jsonl")
    prefix = auditor.verify(export, early, middle)  # the entries before the edit still hold
    assert prefix.code == 0, prefix.err
    assert f"seqs {middle_size + 1}..{late_size} are in no checkpoint" in prefix.out
    caught = auditor.verify(export, early, late)
    assert caught.code == 1, (caught.out, caught.err)
    assert f"first bad seq between {early_size + 1} and {late_size}" in caught.err, caught.err
    assert "does not match checkpoint" in caught.err
    pinned = auditor.verify(export, early, middle, late)  # a checkpoint either side of it
    assert pinned.code == 1, (pinned.out, pinned.err)
    assert f"first bad seq: {target['seq']}" in pinned.err, pinned.err
    against_witnessed = auditor.verify(export, witnessed, witness=True)
    assert against_witnessed.code == 1, against_witnessed.err
    assert f"first bad seq between 1 and {late_size}" in against_witnessed.err

    alarm = auditor.witness(scene.server.url)
    evidence = _alarmed(alarm, auditor, before, "two different roots for the same size")
    assert evidence["cosigned_before"]["size"] == evidence["served_now"]["size"] == late_size
    assert evidence["cosigned_before"]["root"] != evidence["served_now"]["root"]


@pytest.fixture
def spare_url(server: Service, tmp_path: Path) -> Iterator[str]:
    """An empty database on the server's backend, to restore a backup into."""
    if server.settings.database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    yield from _pg_database()


def _backup(source: str, target: str) -> None:
    """Copy the database at ``source`` into the empty ``target``, as an operator's backup
    and restore would (SQLite's online backup; pg_dump into psql)."""
    if source.startswith("sqlite"):
        with (
            sqlite3.connect(make_url(source).database or "") as src,
            sqlite3.connect(make_url(target).database or "") as dst,
        ):
            src.backup(dst)
        return
    require_postgres(shutil.which("pg_dump") is not None, "pg_dump")  # the PostgreSQL backup
    dump = subprocess.run(
        ["pg_dump", "--no-owner", make_url(source).set(drivername="postgresql").render_as_string()],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(
        [
            "psql",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            make_url(target).set(drivername="postgresql").render_as_string(),
        ],
        input=dump,
        check=True,
        capture_output=True,
    )


def test_a_restored_database_that_carries_on_is_caught_by_the_witness(
    scene: Scene, spare_url: str
) -> None:
    auditor = scene.auditor
    assert auditor.witness(scene.server.url).code == 0
    _backup(scene.server.settings.database_url, spare_url)  # last week's backup
    backed_up = scene.size()
    for epsilon in (0.25, 0.125):  # the ledger goes on; the witness cosigns a later size
        _release(scene.ana, epsilon)
    witnessed_round = auditor.witness(scene.server.url)
    assert witnessed_round.code == 0, witnessed_round.err
    witnessed = auditor.witnessed()
    witnessed_size = Checkpoint.parse(witnessed.text).size
    assert witnessed_size > backed_up
    before = auditor.state.read_text()

    scene.server.stop()  # the operator restores the backup and serves it, same key
    restored = start_server(
        Settings(
            database_url=spare_url,
            data_dir=scene.server.settings.data_dir,
            bootstrap_admin_key=ADMIN_KEY,
            ledger_key_file=scene.server.settings.ledger_key_path,
        )
    )
    try:
        aud = restored.client(auditor.api_key)
        assert aud.get("/v1/ledger/key").text == auditor.log_key.read_text()
        ana = restored.client(scene.ana.headers["Authorization"].removeprefix("Bearer "))
        epsilon = 0.5
        while scene.size(aud) <= witnessed_size:  # the refunded budget, spent anew
            epsilon /= 2
            _release(ana, epsilon)
        verified = restored.client(ADMIN_KEY).get("/v1/ledger/verify").json()
        assert verified["valid"] is True, verified  # a restore is internally consistent

        alarm = auditor.witness(restored.url)
        reason = f"the consistency proof from size {witnessed_size} to"
        evidence = _alarmed(alarm, auditor, before, reason)
        assert evidence["consistency_proof"]["from"] == witnessed_size
        assert evidence["served_now"]["size"] > witnessed_size

        refused = aud.post(
            "/v1/ledger/cosignatures",
            json={"witness": auditor.witness_vkey, "checkpoint": witnessed.render()},
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("checkpoint-mismatch")

        export = auditor.save(
            "restored.jsonl",
            restored.client(ADMIN_KEY).get("/v1/ledger/export", params={"format": "jsonl"}).content,
        )
        kept = auditor.save("witnessed.note", witnessed.render())
        caught = auditor.verify(export, kept, witness=True)
        assert caught.code == 1, (caught.out, caught.err)
        assert f"first bad seq between 1 and {witnessed_size}" in caught.err
    finally:
        restored.stop()


def test_a_dropped_tail_is_caught_by_verify_and_the_witness(scene: Scene, engine: Engine) -> None:
    auditor = scene.auditor
    release = _release(scene.ana, 0.25)
    assert auditor.witness(scene.server.url).code == 0
    kept_size = scene.size()
    for _ in range(3):  # re-reads the operator would rather nobody knew of
        _reread(scene.ana, release["id"])
    checkpoint = scene.checkpoint("before.note")
    full_size = _point(Path(checkpoint).read_text()).size
    assert full_size == kept_size + 3
    assert auditor.witness(scene.server.url).code == 0
    before = auditor.state.read_text()

    entries = _entries(scene)
    assert all(e["kind"] == "reread" for e in entries[kept_size:])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger WHERE seq > :s"), {"s": kept_size})
    rebuild_tree(engine, entries[:kept_size])
    _cover_tracks(engine, kept_size + 1)
    _fooled(scene)
    assert scene.size() == kept_size

    export = scene.export("truncated.jsonl")
    caught = auditor.verify(export, checkpoint)
    assert caught.code == 1, (caught.out, caught.err)
    assert (
        f"the export ends at seq {kept_size} but the checkpoint covers {full_size} entries"
        in caught.err
    ), caught.err
    assert f"first bad seq: {kept_size + 1}" in caught.err

    alarm = auditor.witness(scene.server.url)
    _alarmed(alarm, auditor, before, f"the log shrank from {full_size} to {kept_size} entries")


def test_the_witness_cosigns_round_after_round_and_verify_accepts(scene: Scene) -> None:
    auditor = scene.auditor
    first = auditor.witness(scene.server.url)
    assert first.code == 0 and "first sight, trusted without a proof" in first.out, first.err
    sizes = [Checkpoint.parse(auditor.witnessed().text).size]
    for epsilon in (0.25, 0.125, 0.0625):  # releases, cached answers and re-reads
        answer = _release(scene.ana, epsilon)
        _release(scene.ana, epsilon)
        _reread(scene.ana, answer["id"])
        ran = auditor.witness(scene.server.url)
        assert ran.code == 0, ran.err
        assert f"(consistent with size {sizes[-1]})" in ran.out, ran.out
        sizes.append(Checkpoint.parse(auditor.witnessed().text).size)
    assert sizes == sorted(set(sizes))
    again = auditor.witness(scene.server.url)
    assert again.code == 0 and "already cosigned" in again.out, again.out
    assert auditor.evidence() == []

    served = Note.parse(scene.aud.get("/v1/ledger/checkpoint").text)
    assert Checkpoint.parse(served.text).size == sizes[-1]
    served.signed_by(Verifier.parse(auditor.log_key.read_text()))
    assert served.signed_by(Verifier.parse(auditor.witness_vkey), cosignature=True)
    history = scene.aud.get("/v1/ledger/checkpoints").json()["items"]
    cosigned = {h["size"] for h in history if h["witnesses"] == [WITNESS]}
    assert set(sizes) <= cosigned

    checkpoint = scene.checkpoint("cosigned.note")
    export = scene.export("ledger.jsonl")
    ok = auditor.verify(export, checkpoint, witness=True)
    assert ok.code == 0, (ok.out, ok.err)
    assert ok.out.startswith(f"ok: {sizes[-1]} entries, checkpoint size {sizes[-1]}")
    assert f"cosigned by {WITNESS}" in ok.out
    # every checkpoint the witness cosigned on the way holds for the same export
    earlier = [
        auditor.save(
            f"cosigned-{size}.note",
            scene.aud.get("/v1/ledger/checkpoint", params={"size": size}).text,
        )
        for size in sizes
    ]
    assert auditor.verify(export, *earlier, witness=True).code == 0
