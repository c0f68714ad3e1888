"""``ruis witness`` against a fake log (the HTTP contract over ``tlog.merkle.MemoryTree``):
normal growth is cosigned and posted, a restored backup or a rewritten history is an
ALARM with evidence and an untouched state; ``ruis witness-key`` makes the key."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import witness
from cli.main import build_parser, main
from tests.cli.ledgers import FakeLog, b64, tree
from tlog.note import COSIGNATURE_V1, Checkpoint, Note, Signer, Verifier, generate, private_pem

URL = "https://ruis.test"
NOW = 1_750_000_000


@dataclass
class Outcome:
    """What one ``ruis witness`` run did."""

    code: int
    out: str
    err: str


@dataclass
class Setup:
    log: FakeLog
    signer: Signer
    state: Path
    run: Callable[..., Outcome]

    def saved(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.state.read_text())
        return document

    def evidence(self) -> list[Path]:
        return sorted(self.state.parent.glob(f"{self.state.name}.alarm-*.json"))


@pytest.fixture
def setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Setup:
    """A fake log with 5 entries, a witness key on disk and a runner of ``ruis witness``."""
    log = FakeLog(generate("ruis.test/ledger"))
    log.grow(5)
    signer = generate("auditor.example", COSIGNATURE_V1)
    key_file = tmp_path / "witness.pem"
    key_file.write_bytes(private_pem(signer))
    state = tmp_path / "witness-state.json"
    pinned, api_key = log.signer.verifier.vkey, log.auditor_key

    def run(*extra: str, sleep: Callable[[float], None] | None = None) -> Outcome:
        argv = [
            "witness",
            "--url",
            URL,
            "--api-key",
            api_key,
            "--log-key",
            pinned,
            "--key-file",
            str(key_file),
            "--name",
            "auditor.example",
            "--state",
            str(state),
            *extra,
        ]
        args = build_parser().parse_args(argv)
        capsys.readouterr()
        with httpx.Client(transport=log.transport()) as client:
            code = witness.run(
                args, client=client, sleep=sleep or (lambda _: None), clock=lambda: NOW
            )
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return Setup(log, signer, state, run)


def _posted_note(setup: Setup, index: int = -1) -> Note:
    """The cosigned note of a POST, verified as the server and an auditor would."""
    body = setup.log.posted[index]
    assert Verifier.parse(body["witness"]) == setup.signer.verifier
    note = Note.parse(body["checkpoint"])
    note.signed_by(setup.log.signer.verifier)
    assert note.signed_by(setup.signer.verifier, cosignature=True) == NOW
    return note


def test_first_sight_trusts_cosigns_posts_and_remembers(setup: Setup) -> None:
    outcome = setup.run()
    assert outcome.code == 0, outcome.err
    assert "first sight" in outcome.out and "size 5" in outcome.out
    note = _posted_note(setup)
    assert Checkpoint.parse(note.text).size == 5
    saved = setup.saved()
    assert saved["origin"] == "ruis.test/ledger" and saved["size"] == 5
    assert saved["root"] == b64(tree(setup.log.entries).root())
    assert saved["note"] == setup.log.posted[0]["checkpoint"]
    requests = [(r.method, r.url.path) for r in setup.log.requests]
    assert requests == [("GET", "/v1/ledger/checkpoint"), ("POST", "/v1/ledger/cosignatures")]
    assert all(r.headers["authorization"] == "Bearer auditor-key" for r in setup.log.requests)


def test_normal_growth_is_checked_by_a_consistency_proof_and_cosigned(setup: Setup) -> None:
    assert setup.run().code == 0
    setup.log.grow(8)
    outcome = setup.run()
    assert outcome.code == 0, outcome.err
    assert "consistent with size 5" in outcome.out and "size 13" in outcome.out
    proof = [r for r in setup.log.requests if r.url.path == "/v1/ledger/proofs/consistency"]
    assert [dict(r.url.params) for r in proof] == [{"from": "5", "to": "13"}]
    note = _posted_note(setup)
    assert Checkpoint.parse(note.text).size == 13
    assert setup.saved()["size"] == 13
    assert setup.evidence() == []


def test_nothing_new_is_not_cosigned_twice(setup: Setup) -> None:
    assert setup.run().code == 0
    outcome = setup.run()
    assert outcome.code == 0, outcome.err
    assert "unchanged" in outcome.out
    assert len(setup.log.posted) == 1


def test_a_cosignature_the_log_lost_is_posted_again(setup: Setup) -> None:
    assert setup.run().code == 0
    setup.log.cosignatures.clear()  # e.g. restored to a backup of the same size
    outcome = setup.run()
    assert outcome.code == 0, outcome.err
    assert len(setup.log.posted) == 2
    assert len(Note.parse(setup.log.posted[1]["checkpoint"]).signatures) == 2  # log + us


def test_a_restored_backup_that_shrank_is_an_alarm(setup: Setup) -> None:
    setup.log.grow(5)
    assert setup.run().code == 0
    before = setup.state.read_text()
    setup.log.restore(7)
    outcome = setup.run()
    assert outcome.code == 3
    assert "ALARM" in outcome.err and "shrank from 10 to 7" in outcome.err
    assert "size 10" in outcome.err and "size 7" in outcome.err  # both checkpoints named
    assert setup.state.read_text() == before
    assert len(setup.log.posted) == 1
    (evidence,) = setup.evidence()
    assert str(evidence) in outcome.err
    document = json.loads(evidence.read_text())
    assert document["cosigned_before"]["size"] == 10 and document["served_now"]["size"] == 7
    assert Note.parse(document["served_now"]["note"])


def test_a_restored_backup_that_carried_on_fails_the_consistency_proof(setup: Setup) -> None:
    setup.log.grow(3)
    assert setup.run().code == 0
    before = setup.state.read_text()
    cosigned = json.loads(before)["note"]
    setup.log.restore(4)  # last week's backup ...
    setup.log.grow(9, tag="-after-restore")  # ... and carry on: the size grows past 8
    outcome = setup.run()
    assert outcome.code == 3, outcome.err
    assert "consistency proof from size 8 to 13 fails" in outcome.err
    assert setup.state.read_text() == before
    assert len(setup.log.posted) == 1
    (evidence,) = setup.evidence()
    document = json.loads(evidence.read_text())
    assert document["cosigned_before"]["note"] == cosigned
    assert document["served_now"]["size"] == 13
    assert Note.parse(document["served_now"]["note"]).text.startswith("ruis.test/ledger\n13\n")
    assert document["consistency_proof"]["from"] == 8 and document["consistency_proof"]["hashes"]
    assert document["log_key"] == setup.log.signer.verifier.vkey
    assert document["witness"] == setup.signer.verifier.vkey


def test_an_insider_who_rewrites_an_entry_is_caught(setup: Setup) -> None:
    assert setup.run().code == 0
    setup.log.rewrite(2)  # same size, every later hash recomputed
    outcome = setup.run()
    assert outcome.code == 3
    assert "two different roots for the same size 5" in outcome.err
    setup.log.grow(2)
    outcome = setup.run()
    assert outcome.code == 3
    assert "consistency proof from size 5 to 7 fails" in outcome.err
    assert len(setup.evidence()) == 2
    assert setup.saved()["size"] == 5


def test_a_checkpoint_not_signed_by_the_pinned_key_is_an_alarm(setup: Setup) -> None:
    assert setup.run().code == 0
    setup.log.signer = generate("ruis.test/ledger")  # a new key, or an impostor
    outcome = setup.run()
    assert outcome.code == 3
    assert "not signed by the pinned log key" in outcome.err
    assert setup.saved()["size"] == 5


def test_a_forged_consistency_proof_is_an_alarm(setup: Setup) -> None:
    assert setup.run().code == 0
    setup.log.grow(3)
    honest = setup.log.handle

    def forged(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/consistency"):
            return httpx.Response(200, json={"from": 5, "to": 8, "hashes": [b64(bytes(32))]})
        return honest(request)

    setup.log.handle = forged  # type: ignore[method-assign]
    outcome = setup.run()
    assert outcome.code == 3 and "consistency proof from size 5 to 8 fails" in outcome.err


def test_the_log_denying_its_own_checkpoint_is_an_alarm(setup: Setup) -> None:
    honest = setup.log.handle

    def denying(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(409, json={"title": "checkpoint-mismatch", "detail": "no"})
        return honest(request)

    setup.log.handle = denying  # type: ignore[method-assign]
    outcome = setup.run()
    assert outcome.code == 3 and "refused its own checkpoint" in outcome.err
    assert not setup.state.exists()


def test_network_errors_are_exit_4_and_leave_the_state(setup: Setup) -> None:
    assert setup.run().code == 0
    before = setup.state.read_text()
    setup.log.grow(1)
    setup.log.down = True
    outcome = setup.run()
    assert outcome.code == 4
    assert "cannot check the log" in outcome.err and "connection refused" in outcome.err
    assert setup.state.read_text() == before and setup.evidence() == []
    setup.log.down = False
    setup.log.auditor_key = "another-key"  # an HTTP error, not an alarm
    outcome = setup.run()
    assert outcome.code == 4 and "HTTP 401" in outcome.err
    assert setup.state.read_text() == before


def test_a_failed_post_leaves_the_state(setup: Setup) -> None:
    honest = setup.log.handle

    def failing(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(503, json={"title": "Service Unavailable", "detail": "busy"})
        return honest(request)

    setup.log.handle = failing  # type: ignore[method-assign]
    outcome = setup.run()
    assert outcome.code == 4 and "HTTP 503" in outcome.err
    assert not setup.state.exists()


def test_every_loops_until_an_alarm(setup: Setup) -> None:
    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 1:
            setup.log.grow(2)
        elif len(rounds) == 2:
            setup.log.down = True  # a network error does not stop the loop
        elif len(rounds) == 3:
            setup.log.down = False
        else:
            setup.log.restore(3)

    outcome = setup.run("--every", "60", sleep=sleep)
    assert outcome.code == 3
    assert rounds == [60.0] * 4
    assert "first sight" in outcome.out and "consistent with size 5" in outcome.out
    assert "cannot check the log" in outcome.err and "ALARM" in outcome.err
    assert setup.saved()["size"] == 7


def test_a_corrupt_state_is_exit_2(setup: Setup) -> None:
    setup.state.write_text('{"origin": "x"}')
    outcome = setup.run()
    assert outcome.code == 2 and "not a witness state" in outcome.err
    assert setup.log.posted == []


def test_a_state_is_saved_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = witness.State("o", 1, bytes(32), "n")
    witness.save_state(path, state)
    witness.save_state(path, state)
    assert json.loads(path.read_text())["size"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"--log-key": "nonsense"}, "neither a verifier key"),
        ({"--key-file": "/no/such.pem"}, "witness key /no/such.pem"),
        ({"--state": "/no/such/dir/state.json"}, "does not exist"),
        ({"--every": "0"}, "positive"),
    ],
)
def test_unusable_options_are_exit_2(
    setup: Setup, change: dict[str, str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {
        "--url": URL,
        "--api-key": "k",
        "--log-key": setup.log.signer.verifier.vkey,
        "--key-file": str(setup.state.parent / "witness.pem"),
        "--name": "auditor.example",
        "--state": str(setup.state),
        **change,
    }
    capsys.readouterr()
    assert main(["witness", *[x for kv in options.items() for x in kv]]) == 2
    assert reason in capsys.readouterr().err


def test_witness_key_writes_a_private_key_and_prints_the_vkey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w.pem"
    assert main(["witness-key", "--name", "auditor.example", "--out", str(out)]) == 0
    vkey = capsys.readouterr().out.strip()
    verifier = Verifier.parse(vkey)
    assert verifier.name == "auditor.example" and verifier.signature_type == COSIGNATURE_V1
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    from tlog.note import load_private_pem

    assert (
        load_private_pem(out.read_bytes(), "auditor.example", COSIGNATURE_V1).verifier == verifier
    )
    assert main(["witness-key", "--name", "auditor.example", "--out", str(out)]) == 2
    assert "not overwritten" in capsys.readouterr().err
    assert main(["witness-key", "--name", "bad name", "--out", str(tmp_path / "x")]) == 2
