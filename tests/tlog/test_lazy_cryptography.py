"""``tlog`` imports ``cryptography`` only to sign or verify: parsing notes, keys and
checkpoints works without it (the client installs without it), and signing or verifying
then says what is missing, never that a signature is bad."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tlog import note

ROOT = Path(__file__).resolve().parents[2]

WITHOUT = """
import json, sys
sys.modules["cryptography"] = None  # as if it were not installed
from tlog import merkle, note

vkey, signed = sys.argv[1], sys.argv[2]
verifier = note.Verifier.parse(vkey)
parsed = note.Note.parse(signed)
point = note.Checkpoint.parse(parsed.text)
failures = {}
for name, attempt in {
    "verify": lambda: parsed.signed_by(verifier),
    "generate": lambda: note.generate("x"),
    "load": lambda: note.load_private_pem(b"", "x"),
}.items():
    try:
        attempt()
    except note.SignaturesUnavailable as exc:
        failures[name] = [isinstance(exc, ImportError), isinstance(exc, note.NoteError), str(exc)]
print(json.dumps({
    "available": note.signatures_available(),
    "name": verifier.name,
    "size": point.size,
    "leaf": merkle.leaf_hash(b"x").hex(),
    "failures": failures,
}))
"""


def test_parsing_needs_no_cryptography_and_signing_says_what_is_missing() -> None:
    signer = note.generate("ruis.example/ledger")
    text = note.Checkpoint("ruis.example/ledger", 3, bytes(32)).text
    signed = note.sign(text, signer).render()
    assert note.signatures_available()
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT, signer.verifier.vkey, signed],
        cwd=ROOT / "client",
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT / "client"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["available"] is False
    assert (result["name"], result["size"]) == ("ruis.example/ledger", 3)
    assert set(result["failures"]) == {"verify", "generate", "load"}
    for is_import_error, is_note_error, message in result["failures"].values():
        assert is_import_error and not is_note_error and "ruis-client[verify]" in message
