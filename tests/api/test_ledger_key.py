"""The ledger's signing key: made once at first start (mode 0600, one key however many
workers race to make it), read back the same, refused when it is not an Ed25519 key."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from api.ledger_key import LogSigner, load_or_create
from tlog import note


def test_made_at_first_start_with_mode_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger-key.pem"
    made = load_or_create(path, "stats.example/ruis")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create(path, "stats.example/ruis")
    assert again.verifier == made.verifier
    assert made.verifier.vkey.startswith("stats.example/ruis+")
    assert note.Verifier.parse(made.verifier.vkey) == made.verifier
    assert [p.name for p in path.parent.iterdir()] == ["ledger-key.pem"]  # no temporary left


def test_workers_racing_to_make_it_end_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "ledger-key.pem"
    keys: list[str] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        keys.append(load_or_create(path, "ruis.local/ledger").verifier.vkey)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert load_or_create(path, "ruis.local/ledger").verifier.vkey == keys[0]


def test_a_file_that_is_no_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger-key.pem"
    path.write_text("not a key\n")
    with pytest.raises(ValueError, match="RUIS_LEDGER_KEY_FILE"):
        load_or_create(path, "ruis.local/ledger")


def test_a_checkpoint_is_the_same_text_whenever_it_is_signed(tmp_path: Path) -> None:
    """Ed25519 is deterministic: every worker serves the same note for the same tree."""
    signer = load_or_create(tmp_path / "k.pem", "ruis.local/ledger")
    root = bytes(range(32))
    first = LogSigner(signer).checkpoint(7, root)
    second = LogSigner(load_or_create(tmp_path / "k.pem", "ruis.local/ledger")).checkpoint(7, root)
    assert first == second
    signed = note.Note.parse(first)
    signed.signed_by(signer.verifier)
    assert note.Checkpoint.parse(signed.text) == note.Checkpoint("ruis.local/ledger", 7, root)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("RUIS_LEDGER_ORIGIN", "two words", "RUIS_LEDGER_ORIGIN"),
        ("RUIS_LEDGER_ORIGIN", "a+b", "RUIS_LEDGER_ORIGIN"),
        ("RUIS_LEDGER_KEY_FILE", "KEYFILE", "RUIS_LEDGER_KEY_FILE"),
    ],
)
def test_ruis_serve_stops_with_one_line_on_a_bad_ledger_setting(
    variable: str,
    value: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cli.main import main

    bad_key = tmp_path / "not-a-key.pem"
    bad_key.write_text("garbage\n")
    monkeypatch.setenv("RUIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(variable, str(bad_key) if value == "KEYFILE" else value)
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ruis serve: ") and said in err[0]
