"""``ruis verify``: an export checked offline against signed (and cosigned) checkpoints;
tampering, a rewritten history and a dropped tail are caught and the first bad seq named."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main
from cli.verify import read_verifier
from db.ledger import compute_hash
from tests.cli.ledgers import b64, chain, checkpoint_note, jsonl, rechain, tree
from tests.conftest import Service
from tlog import merkle
from tlog.note import (
    COSIGNATURE_V1,
    Checkpoint,
    Note,
    Signature,
    Signer,
    Verifier,
    cosign,
    generate,
)


@dataclass
class Outcome:
    """What one ``ruis verify`` run did."""

    code: int
    out: str
    err: str


Verify = Callable[..., Outcome]


@pytest.fixture
def log_signer() -> Signer:
    return generate("ruis.test/ledger")


@pytest.fixture
def ruis_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path, log_signer: Signer) -> Verify:
    """Run ``ruis verify`` on ``entries`` (written as an export) against checkpoint notes
    (written to files); ``key`` defaults to the log's verifier key."""

    def run(
        entries: list[dict[str, Any]] | str | bytes,
        *notes: str,
        key: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> Outcome:
        export = tmp_path / "export.jsonl"
        if isinstance(entries, bytes):
            export.write_bytes(entries)
        else:
            export.write_text(entries if isinstance(entries, str) else jsonl(entries))
        args = ["verify", str(export), "--key", key or log_signer.verifier.vkey, *extra]
        for number, note in enumerate(notes):
            path = tmp_path / f"checkpoint-{number}.txt"
            path.write_text(note)
            args += ["--checkpoint", str(path)]
        capsys.readouterr()
        code = main(args)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def test_a_valid_export_passes_with_a_one_line_summary(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    entries = chain(10)
    outcome = ruis_verify(entries, checkpoint_note(entries, log_signer))
    assert outcome.code == 0, outcome.err
    root = b64(tree(entries).root())
    assert outcome.out == f"ok: 10 entries, checkpoint size 10, root {root}\n"
    assert outcome.err == ""


def test_entries_beyond_the_checkpoint_are_chain_checked_and_named(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    entries = chain(12)
    outcome = ruis_verify(entries, checkpoint_note(entries, log_signer, size=9))
    assert outcome.code == 0, outcome.err
    assert "checkpoint size 9" in outcome.out and "seqs 10..12 are in no checkpoint" in outcome.out
    entries[10]["details"] = {"note": "edited"}  # past the checkpoint: only the chain sees it
    outcome = ruis_verify(entries, checkpoint_note(chain(12), log_signer, size=9))
    assert outcome.code == 1
    assert "first bad seq: 11" in outcome.err


def test_the_key_may_be_a_file_and_the_empty_log_verifies(
    ruis_verify: Verify, log_signer: Signer, tmp_path: Path
) -> None:
    key_file = tmp_path / "ledger.vkey"
    key_file.write_text(log_signer.verifier.vkey + "\n")
    outcome = ruis_verify([], checkpoint_note([], log_signer), key=str(key_file))
    assert outcome.code == 0, outcome.err
    assert outcome.out.startswith("ok: 0 entries, checkpoint size 0, root ")


def test_an_insider_who_rewrites_history_is_caught_by_an_earlier_checkpoint(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    honest = chain(20)
    at_5, at_12 = (checkpoint_note(honest, log_signer, size=n) for n in (5, 12))
    forged = json.loads(json.dumps(honest))
    forged[7]["details"] = {"note": "nobody consulted this"}  # seq 8
    rechain(forged, 7)
    now = checkpoint_note(forged, log_signer)  # the log signs the rewritten tree, too

    outcome = ruis_verify(forged, now)  # the chain and today's checkpoint agree
    assert outcome.code == 0, outcome.err

    outcome = ruis_verify(forged, at_5, at_12, now)
    assert outcome.code == 1
    assert "first bad seq between 6 and 12" in outcome.err
    assert "checkpoint-1.txt (size 12)" in outcome.err
    assert outcome.out == ""

    at_7, at_8 = (checkpoint_note(honest, log_signer, size=n) for n in (7, 8))
    outcome = ruis_verify(forged, at_8, at_7)  # order does not matter
    assert outcome.code == 1
    assert "first bad seq: 8" in outcome.err


def test_two_checkpoints_of_one_size_with_different_roots_are_a_split_view(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    honest = chain(6)
    forged = rechain(chain(6, tag="-fork"))
    outcome = ruis_verify(
        honest, checkpoint_note(honest, log_signer), checkpoint_note(forged, log_signer)
    )
    assert outcome.code == 1
    assert "first bad seq between 1 and 6" in outcome.err
    assert "not consistent with each other" in outcome.err


def test_a_dropped_tail_is_detected(ruis_verify: Verify, log_signer: Signer) -> None:
    entries = chain(10)
    outcome = ruis_verify(entries[:7], checkpoint_note(entries, log_signer))
    assert outcome.code == 1
    assert "the export ends at seq 7 but the checkpoint covers 10 entries" in outcome.err
    assert "first bad seq: 8" in outcome.err


def _relink(entries: list[dict[str, Any]]) -> None:
    """Seq 6 points at another predecessor, its own hash recomputed."""
    entries[5]["prev_hash"] = "ab" * 32
    entries[5]["hash"] = compute_hash(entries[5])


def _at_line(number: int, text: str) -> Callable[[str], str]:
    """Insert ``text`` as line ``number`` of the export."""

    def insert(export: str) -> str:
        lines = export.splitlines(keepends=True)
        lines.insert(number - 1, text)
        return "".join(lines)

    return insert


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        (lambda e: e[2].update(actor="someone-else"), 3, "hash does not match its content"),
        (_relink, 6, "prev_hash is not the previous entry's hash"),
        (lambda e: e[4].update(hash="0" * 63 + "1"), 5, "hash does not match"),
        (lambda e: e.pop(4), 5, "seq 5 is missing"),
        (lambda e: e.insert(4, dict(e[3])), 5, "holds seq 4 where seq 5 belongs"),
        (lambda e: e[1].update(hash="XYZ"), 2, "64 lowercase hex"),
        (lambda e: e[0].pop("seq"), 1, "no integer seq"),
    ],
)
def test_a_broken_chain_names_the_first_bad_seq(
    ruis_verify: Verify,
    log_signer: Signer,
    tamper: Callable[[list[Any]], Any],
    seq: int,
    reason: str,
) -> None:
    honest = chain(8)
    note = checkpoint_note(honest, log_signer)
    entries = json.loads(json.dumps(honest))
    tamper(entries)
    outcome = ruis_verify(entries, note)
    assert outcome.code == 1, outcome.err
    assert f"first bad seq: {seq}" in outcome.err
    assert reason in outcome.err


@pytest.mark.parametrize(
    ("lines", "seq", "reason"),
    [
        (_at_line(3, "not json\n"), 3, "not a JSON entry"),
        (_at_line(2, "[1]\n"), 2, "not a JSON object"),
        (_at_line(4, "\n"), 4, "line 4 (seq 4) is empty"),
        (lambda t: t.replace('"seq":2,', '"seq":2,"seq":2,'), 2, "duplicate key"),
        (lambda t: t.replace('"ratio":', '"ratio":NaN,"x":'), 1, "hashed canonically"),
    ],
)
def test_every_line_must_be_one_entry(
    ruis_verify: Verify, log_signer: Signer, lines: Callable[[str], str], seq: int, reason: str
) -> None:
    entries = chain(5)
    outcome = ruis_verify(lines(jsonl(entries)), checkpoint_note(entries, log_signer))
    assert outcome.code == 1, outcome.err
    assert f"seq {seq}" in outcome.err and reason in outcome.err


def test_a_line_that_is_not_utf8_is_named(ruis_verify: Verify, log_signer: Signer) -> None:
    entries = chain(4)
    lines = jsonl(entries).encode().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"entry 3", b"entry \xff")
    outcome = ruis_verify(b"".join(lines), checkpoint_note(entries, log_signer))
    assert outcome.code == 1
    assert "line 3 (seq 3): not a JSON entry" in outcome.err


def test_verifier_keys_whose_base64_holds_a_plus_parse() -> None:
    """c2sp.org/signed-note splits a verifier key at its first two '+' only."""
    for _ in range(200):
        signer = generate("ruis.test/ledger")
        vkey = signer.verifier.vkey
        if "+" in vkey.split("+", 2)[2]:
            break
    else:  # pragma: no cover - 200 keys without a '+' in 44 base64 digits
        pytest.fail("no key with '+' in its base64")
    assert Verifier.parse(vkey) == signer.verifier
    assert read_verifier(vkey, "log key", signer.signature_type) == signer.verifier


def test_blank_lines_at_the_end_and_crlf_are_harmless(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    entries = chain(4)
    text = jsonl(entries).replace("\n", "\r\n") + "\n\n"
    assert ruis_verify(text, checkpoint_note(entries, log_signer)).code == 0


def test_a_checkpoint_signed_by_another_key_does_not_verify(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    entries = chain(3)
    impostor = generate("ruis.test/ledger")  # same name, other key
    outcome = ruis_verify(entries, checkpoint_note(entries, impostor))
    assert outcome.code == 1
    assert "no signature of ruis.test/ledger" in outcome.err
    outcome = ruis_verify(
        entries, checkpoint_note(entries, log_signer), key=generate("other").verifier.vkey
    )
    assert outcome.code == 1
    assert "carries no signature of other" in outcome.err


def test_a_tampered_checkpoint_text_does_not_verify(
    ruis_verify: Verify, log_signer: Signer
) -> None:
    entries = chain(3)
    note = checkpoint_note(entries, log_signer).replace("\n3\n", "\n2\n", 1)
    outcome = ruis_verify(entries, note)
    assert outcome.code == 1
    assert "does not verify" in outcome.err


def test_checkpoints_of_two_logs_are_refused(ruis_verify: Verify, log_signer: Signer) -> None:
    entries = chain(3)
    outcome = ruis_verify(
        entries,
        checkpoint_note(entries, log_signer),
        checkpoint_note(entries, log_signer, origin="elsewhere/ledger"),
    )
    assert outcome.code == 1
    assert "different logs" in outcome.err


def _cosigned(entries: list[dict[str, Any]], log: Signer, *witnesses: Signer) -> str:
    text = Checkpoint("ruis.test/ledger", len(entries), tree(entries).root()).text
    return checkpoint_note(
        entries, log, cosigners=[cosign(text, w, 1_700_000_000) for w in witnesses]
    )


def test_a_required_witness_must_have_cosigned(
    ruis_verify: Verify, log_signer: Signer, tmp_path: Path
) -> None:
    entries = chain(5)
    alice, bob = generate("alice.example", COSIGNATURE_V1), generate("bob.example", COSIGNATURE_V1)
    note = _cosigned(entries, log_signer, alice)
    vkey_file = tmp_path / "alice.vkey"
    vkey_file.write_text(alice.verifier.vkey)

    outcome = ruis_verify(entries, note, extra=("--witness", str(vkey_file)))
    assert outcome.code == 0, outcome.err
    assert "cosigned by alice.example" in outcome.out

    outcome = ruis_verify(
        entries, note, extra=("--witness", alice.verifier.vkey, "--witness", bob.verifier.vkey)
    )
    assert outcome.code == 1
    assert "no signature of bob.example" in outcome.err

    genuine = cosign(Note.parse(note).text, alice, 1_700_000_000)
    forged = checkpoint_note(
        entries,
        log_signer,
        cosigners=[Signature(genuine.name, genuine.key_id, genuine.signature[:8] + bytes(64))],
    )
    outcome = ruis_verify(entries, forged, extra=("--witness", alice.verifier.vkey))
    assert outcome.code == 1
    assert "the cosignature of alice.example does not verify" in outcome.err


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--key", "nonsense"], "neither a verifier key"),
        (["--key", "/no/such/file.vkey"], "neither a verifier key"),
        (["--witness", "LOG"], "not a witness"),
        (["--checkpoint", "/no/such/checkpoint"], "cannot read checkpoint"),
        (["--checkpoint", "BAD"], "not a signed checkpoint note"),
        (["EXPORT=/no/such/export.jsonl"], "cannot read export"),
    ],
)
def test_unusable_input_is_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    log_signer: Signer,
    args: list[str],
    reason: str,
) -> None:
    entries = chain(3)
    export = tmp_path / "export.jsonl"
    export.write_text(jsonl(entries))
    good = tmp_path / "good.txt"
    good.write_text(checkpoint_note(entries, log_signer))
    bad = tmp_path / "bad.txt"
    bad.write_text("ruis.test/ledger\nthree\nroot\n\n— ruis.test/ledger AAAAAAAA\n")
    options = {"--key": log_signer.verifier.vkey, "--checkpoint": str(good)}
    path = str(export)
    extra: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=False):
        value = {"LOG": log_signer.verifier.vkey, "BAD": str(bad)}.get(value, value)
        if flag == "--witness":
            extra += [flag, value]
        else:
            options[flag] = value
    if args[0].startswith("EXPORT="):
        path = args[0].removeprefix("EXPORT=")
    argv = ["verify", path, *[x for kv in options.items() for x in kv], *extra]
    capsys.readouterr()
    assert main(argv) == 2
    assert reason in capsys.readouterr().err


def test_json_output(ruis_verify: Verify, log_signer: Signer) -> None:
    honest = chain(9)
    forged = rechain(json.loads(json.dumps(honest)), 0)
    forged[3]["kind"] = "release"
    rechain(forged, 3)
    outcome = ruis_verify(
        forged,
        checkpoint_note(honest, log_signer, size=2),
        checkpoint_note(honest, log_signer, size=6),
        extra=("--json",),
    )
    assert outcome.code == 1
    report = json.loads(outcome.out)
    assert report["valid"] is False and report["usable"] is True
    assert report["first_bad_seq"] == 3 and report["first_bad_range"] == [3, 6]
    assert [c["matches"] for c in report["checkpoints"]] == [True, False]
    assert report["entries"] == 9

    outcome = ruis_verify(honest, checkpoint_note(honest, log_signer), extra=("--json",))
    report = json.loads(outcome.out)
    assert outcome.code == 0 and report["valid"] is True and report["first_bad_seq"] is None
    assert report["checkpoints"][0]["root"] == b64(tree(honest).root())

    outcome = ruis_verify(honest, "garbage\n", extra=("--json",))
    assert outcome.code == 2 and json.loads(outcome.out)["usable"] is False


def test_the_frontier_gives_the_roots_of_the_full_tree() -> None:
    full, frontier = merkle.MemoryTree(), merkle.Frontier()
    assert frontier.root() == merkle.EMPTY_ROOT
    for index in range(64):
        leaf = merkle.leaf_hash(index.to_bytes(4, "big"))
        full.append(leaf)
        frontier.append(leaf)
        assert frontier.root() == full.root()
        assert len(frontier.nodes) == bin(index + 1).count("1")  # O(log n), not O(n)


def test_an_export_of_the_real_ledger_verifies(
    server: Service, admin: httpx.Client, ruis_verify: Verify, log_signer: Signer
) -> None:
    """The server's own export format (until it signs its own checkpoints, the test signs
    the tree over the export's hashes)."""
    for name in ("alice", "bob", "carol"):
        assert (
            admin.post("/v1/consumers", json={"name": name, "role": "analyst"}).status_code == 201
        )
    assert admin.post("/v1/consumers/bob/keys").status_code == 201
    response = admin.get("/v1/ledger/export", params={"format": "jsonl"})
    assert response.status_code == 200, response.text
    entries = [json.loads(line) for line in response.text.splitlines()]
    assert len(entries) >= 4
    outcome = ruis_verify(response.text, checkpoint_note(entries, log_signer))
    assert outcome.code == 0, outcome.err
    outcome = ruis_verify(
        response.text.replace('"bob"', '"mallory"', 1), checkpoint_note(entries, log_signer)
    )
    assert outcome.code == 1 and "first bad seq" in outcome.err
