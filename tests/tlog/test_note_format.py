"""tlog.note against an independent reading of the C2SP specs, and published vectors.

The ``spec_*`` functions below are written here from c2sp.org/signed-note,
c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature (the C2SP/C2SP repository at
5ba5ee830903e91240fc6f9f3a7a9293d49e69c9), using only hashlib, base64, struct and
``cryptography``'s Ed25519 keys, and never tlog's parsing or verifying code. Notes that
tlog signs must open with them, notes they sign must open with tlog, and every
tampering the specs forbid must be refused by both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tlog import note as tn

# ---------------------------------------------------------------------------------------
# The specs, read independently.

EM_DASH = "\u2014"


class SpecError(Exception):
    """The note, key or checkpoint breaks the spec, or no known signature verifies."""


def spec_b64decode(text: str) -> bytes:
    """RFC 4648 §4 standard base64, padding required."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise SpecError(f"not base64: {text!r}") from exc


def spec_valid_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode spaces and no '+'."""
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def spec_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\x0a" + bytes([signature_type]) + public_key
    ).digest()[:4]


@dataclass(frozen=True)
class SpecKey:
    name: str
    key_id: bytes
    signature_type: int
    public_key: bytes


def spec_parse_vkey(vkey: str) -> SpecKey:
    """``<name>+hex(key ID)+base64(type || public key)``, Ed25519 (0x01) or Ed25519
    cosignature (0x04) keys, with the key ID the spec derives."""
    name, plus1, rest = vkey.partition("+")
    hex_id, plus2, material = rest.partition("+")
    if not plus1 or not plus2 or not spec_valid_name(name):
        raise SpecError("a vkey is name+id+key")
    if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
        raise SpecError("the key ID is 8 lowercase hex digits")
    raw = spec_b64decode(material)
    if len(raw) != 33 or raw[0] not in (0x01, 0x04):
        raise SpecError("only 32-byte Ed25519 keys of type 0x01 or 0x04")
    key_id = bytes.fromhex(hex_id)
    if key_id != spec_key_id(name, raw[0], raw[1:]):
        raise SpecError("the key ID does not match")
    return SpecKey(name, key_id, raw[0], raw[1:])


def spec_ed25519_ok(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def spec_cosignature_message(body: str, timestamp: int) -> bytes:
    """``cosignature/v1``, ``time <t>`` (decimal, no leading zeroes), then the note body."""
    return b"cosignature/v1\n" + b"time %d\n" % timestamp + body.encode("utf-8")


@dataclass(frozen=True)
class Opened:
    body: str
    verified: list[tuple[str, int | None]]
    """(key name, cosignature timestamp or None) of each known signature that verified."""


def spec_open(message: bytes, known: Sequence[SpecKey]) -> Opened:
    """Open a signed note: verify every signature by a known (name, key ID), ignore the
    others, reject the note if a known one fails or none verifies."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("not UTF-8") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise SpecError("a control character other than newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise SpecError("no blank line")
    body, block = text[: cut + 1], text[cut + 2 :]
    if not block or not block.endswith("\n"):
        raise SpecError("no signature lines, or no final newline")
    verified: list[tuple[str, int | None]] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise SpecError(f"not a signature line: {line!r}")
        name, space, encoded = line[2:].partition(" ")
        if not space or not spec_valid_name(name) or not encoded:
            raise SpecError(f"not a signature line: {line!r}")
        raw = spec_b64decode(encoded)
        if len(raw) < 5:
            raise SpecError("a signature is a key ID and at least one byte")
        key_id, signature = raw[:4], raw[4:]
        key = next((k for k in known if k.name == name and k.key_id == key_id), None)
        if key is None:
            continue  # MUST ignore signatures from unknown keys
        if key.signature_type == 0x01:
            if not spec_ed25519_ok(key.public_key, signature, body.encode("utf-8")):
                raise SpecError(f"the signature of {name} does not verify")
            verified.append((name, None))
        else:  # 0x04: a timestamped_signature, u64 big-endian then 64 bytes
            if len(signature) != 8 + 64:
                raise SpecError("a cosignature is 8 + 64 bytes")
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp > 2**63 - 1:
                raise SpecError("a cosignature's timestamp exceeds 2^63 - 1")
            message_ = spec_cosignature_message(body, timestamp)
            if not spec_ed25519_ok(key.public_key, signature[8:], message_):
                raise SpecError(f"the cosignature of {name} does not verify")
            verified.append((name, timestamp))
    if not verified:
        raise SpecError("no signature by a known key")
    return Opened(body, verified)


def spec_parse_checkpoint(body: str) -> tuple[str, int, bytes, list[str]]:
    """At least three non-empty lines: origin, decimal size (no leading zeroes), base64
    root hash; then non-empty extension lines."""
    if not body.endswith("\n"):
        raise SpecError("the body ends in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise SpecError("at least three non-empty lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size or any(c not in "0123456789" for c in size) or (size[0] == "0" and size != "0"):
        raise SpecError("the size is ASCII decimal without leading zeroes")
    digest = spec_b64decode(root)
    if len(digest) != 32:
        raise SpecError("the root is a 32-byte SHA-256 hash")
    return origin, int(size), digest, lines[3:]


def spec_signature_line(name: str, key_id: bytes, signature: bytes) -> str:
    return f"{EM_DASH} {name} {base64.b64encode(key_id + signature).decode('ascii')}\n"


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def spec_vkey(name: str, signature_type: int, key: Ed25519PrivateKey) -> str:
    public = raw_public(key)
    material = base64.b64encode(bytes([signature_type]) + public).decode("ascii")
    return f"{name}+{spec_key_id(name, signature_type, public).hex()}+{material}"


def spec_cosign(body: str, name: str, key: Ed25519PrivateKey, timestamp: int) -> str:
    """A tlog-cosignature/v1 line (type 0x04), made from the spec alone."""
    signed = key.sign(spec_cosignature_message(body, timestamp))
    key_id = spec_key_id(name, 0x04, raw_public(key))
    return spec_signature_line(name, key_id, struct.pack(">Q", timestamp) + signed)


def tlog_open(message: str, verifier: tn.Verifier, *, cosignature: bool = False) -> int | None:
    """tlog's way of checking one key's signature on a note."""
    return tn.Note.parse(message).signed_by(verifier, cosignature=cosignature)


# ---------------------------------------------------------------------------------------
# Published vectors.

# c2sp.org/signed-note, "Verifier keys / Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYj"
    "OBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

# golang.org/x/mod, sumdb/note/note_test.go (golang/mod, commit
# 02c991387e35f9e4c0a9b7ce137717055f8d716d): TestSign, TestOpen, TestNewVerifier.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
    "KvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ov"
    "TG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
BAD_VKEYS_GO = [
    # wrong length key, with adjusted key hash; unknown algorithm, with adjusted key hash
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
]

# transparency-dev/formats, note/note_cosigv1_test.go (commit
# 091ce41666c09683aa9350785e572be27f0c026d), TestCoSigV1NewVerifier: a type 0x01 key whose
# base64 holds a '+', and a type 0x04 (cosignature) key.
PLUS_VKEY = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
COSIGNATURE_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"

# c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature: the example (cosigned) checkpoint.
SPEC_CHECKPOINT_BODY = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
SPEC_COSIGNED = (
    SPEC_CHECKPOINT_BODY + "\n"
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q"
    "1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 "
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
    "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)

# c2sp.org/signed-note, the opening example: a text with an empty line of its own.
SPEC_POEM = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU"
    "0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def test_the_signed_note_spec_example_verifies_both_ways() -> None:
    opened = spec_open(SPEC_NOTE.encode(), [spec_parse_vkey(SPEC_VKEY)])
    assert opened.body == "This is an example message.\n"
    assert opened.verified == [("example.com/foo", None)]

    verifier = tn.Verifier.parse(SPEC_VKEY)
    assert verifier.vkey == SPEC_VKEY
    assert (verifier.name, verifier.signature_type) == ("example.com/foo", tn.ED25519)
    assert verifier.key_id == bytes.fromhex("530d903a")
    assert tlog_open(SPEC_NOTE, verifier) is None
    parsed = tn.Note.parse(SPEC_NOTE)
    assert parsed.text == opened.body
    assert parsed.render() == SPEC_NOTE

    tampered = SPEC_NOTE.replace("example message", "example massage")
    with pytest.raises(SpecError):
        spec_open(tampered.encode(), [spec_parse_vkey(SPEC_VKEY)])
    with pytest.raises(tn.NoteError):
        tlog_open(tampered, verifier)


def test_the_go_sumdb_vectors() -> None:
    """tlog signs the published text to the published note byte for byte (Ed25519 is
    deterministic), and both sides open the doubly signed note key by key."""
    _, _, name, hex_id, material = PETER_SKEY.split("+", 4)
    raw = base64.b64decode(material)
    assert raw[0] == 0x01
    signer = tn.Signer(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    assert signer.verifier.vkey == PETER_VKEY
    assert signer.verifier.key_id.hex() == hex_id
    assert tn.sign(PETER_TEXT, signer).render() == PETER_TEXT + "\n" + PETER_SIG

    both = PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    peter, enoch = spec_parse_vkey(PETER_VKEY), spec_parse_vkey(ENOCH_VKEY)
    assert spec_open(both.encode(), [peter]).verified == [("PeterNeumann", None)]
    assert spec_open(both.encode(), [enoch]).verified == [("EnochRoot", None)]
    assert spec_open(both.encode(), [peter, enoch]).verified == [
        ("PeterNeumann", None),
        ("EnochRoot", None),
    ]
    assert tlog_open(both, tn.Verifier.parse(PETER_VKEY)) is None
    assert tlog_open(both, tn.Verifier.parse(ENOCH_VKEY)) is None
    with pytest.raises(SpecError):
        spec_open(both.encode(), [])
    bad = PETER_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]  # TestOpen's invalid
    with pytest.raises(SpecError):
        spec_open(bad.encode(), [peter])
    with pytest.raises(tn.NoteError):
        tlog_open(bad, tn.Verifier.parse(PETER_VKEY))


@pytest.mark.parametrize("vkey", [SPEC_VKEY, PETER_VKEY, ENOCH_VKEY, PLUS_VKEY, COSIGNATURE_VKEY])
def test_published_vkeys_parse_alike(vkey: str) -> None:
    mine, theirs = spec_parse_vkey(vkey), tn.Verifier.parse(vkey)
    assert (theirs.name, theirs.key_id, theirs.signature_type, theirs.public_key) == (
        mine.name,
        mine.key_id,
        mine.signature_type,
        mine.public_key,
    )
    assert theirs.vkey == vkey


def mangled_vkeys() -> list[str]:
    name, hex_id, material = PETER_VKEY.split("+", 2)
    raw = base64.b64decode(material)
    return [
        *BAD_VKEYS_GO,
        f"{name}+{'c74f20a4'}+{material}",  # the wrong key ID
        f"{name}x+{hex_id}+{material}",  # the wrong name for the ID
        f"{name}+{hex_id}",
        f"{name}+{hex_id}+",
        f"{name}+{hex_id}+{material[:-4]}",
        f"{name}+{hex_id[:7]}+{material}",
        f"+{hex_id}+{material}",
        f"Peter Neumann+{hex_id}+{material}",
        # an unsupported type (0x02) with a key ID derived for it
        f"{name}+{spec_key_id(name, 0x02, raw[1:]).hex()}+"
        + base64.b64encode(b"\x02" + raw[1:]).decode(),
    ]


@pytest.mark.parametrize("vkey", mangled_vkeys())
def test_mangled_vkeys_are_refused_by_both(vkey: str) -> None:
    with pytest.raises(SpecError):
        spec_parse_vkey(vkey)
    with pytest.raises(tn.NoteError):
        tn.Verifier.parse(vkey)


def test_the_spec_examples_parse_alike() -> None:
    """No vkeys are published for these, so: the split, the lines and the cosignature's
    timestamp (1679315147, the spec's own example time line)."""
    parsed = tn.Note.parse(SPEC_COSIGNED)
    assert parsed.text == SPEC_CHECKPOINT_BODY
    assert [s.name for s in parsed.signatures] == [
        "example.com/behind-the-sofa",
        "witness.example.com/w1",
    ]
    cosignature = parsed.signatures[1]
    assert len(cosignature.signature) == 8 + 64
    assert struct.unpack(">Q", cosignature.signature[:8]) == (1679315147,)
    checkpoint = tn.Checkpoint.parse(parsed.text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root, list(checkpoint.extensions)) == (
        spec_parse_checkpoint(SPEC_CHECKPOINT_BODY)
    )
    assert checkpoint.size == 20852163
    assert checkpoint.text == SPEC_CHECKPOINT_BODY
    with pytest.raises(SpecError):  # unknown keys only: nothing verifies
        spec_open(SPEC_COSIGNED.encode(), [spec_parse_vkey(SPEC_VKEY)])

    poem = tn.Note.parse(SPEC_POEM)  # the text keeps its own empty line
    assert poem.text.endswith(":\n\ned è subito sera.\n")
    assert poem.text == SPEC_POEM[: SPEC_POEM.rindex("\n\n") + 1]
    assert poem.render() == SPEC_POEM


# ---------------------------------------------------------------------------------------
# tlog's notes, checkpoints and cosignatures against the independent reading.

ORIGIN = "example.org/ruis-log"
WITNESS = "witness.example/w1"
ROOT = hashlib.sha256(b"a root").digest()


@dataclass(frozen=True)
class Signed:
    log: tn.Signer
    witness: tn.Signer
    checkpoint: tn.Checkpoint
    note: tn.Note
    timestamp: int

    @property
    def message(self) -> str:
        return self.note.render()


def make_signed(size: int = 123456, timestamp: int = 1_700_000_000) -> Signed:
    log, witness = tn.generate(ORIGIN), tn.generate(WITNESS, tn.COSIGNATURE_V1)
    checkpoint = tn.Checkpoint(ORIGIN, size, ROOT)
    signed = tn.sign(checkpoint.text, log)
    cosignature = tn.cosign(checkpoint.text, witness, timestamp)
    note = tn.Note(signed.text, (*signed.signatures, cosignature))
    return Signed(log, witness, checkpoint, note, timestamp)


@pytest.mark.parametrize("round_", range(24))  # fresh keys each time: some base64 hold '+'
def test_a_tlog_checkpoint_opens_with_the_spec(round_: int) -> None:
    signed = make_signed(size=round_ * 1000)
    log_key = spec_parse_vkey(signed.log.verifier.vkey)
    public = raw_public(signed.log.private_key)
    assert log_key.public_key == public
    assert log_key.key_id == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + public).digest()[:4]
    assert tn.Verifier.parse(signed.log.verifier.vkey) == signed.log.verifier

    body = f"{ORIGIN}\n{round_ * 1000}\n{base64.b64encode(ROOT).decode()}\n"
    assert signed.checkpoint.text == body
    log_line = signed.message.split("\n")[-3] + "\n"
    assert log_line.startswith(f"{EM_DASH} {ORIGIN} ")
    raw = spec_b64decode(log_line.split(" ")[2].rstrip("\n"))
    assert raw[:4] == log_key.key_id and len(raw) == 4 + 64
    assert spec_ed25519_ok(public, raw[4:], body.encode())
    assert signed.message.startswith(body + "\n" + log_line)

    opened = spec_open(signed.message.encode(), [log_key])
    assert opened.body == body
    assert opened.verified == [(ORIGIN, None)]  # the witness line is an unknown key here
    assert spec_parse_checkpoint(opened.body) == (ORIGIN, round_ * 1000, ROOT, [])


def test_extension_lines_are_signed_and_parsed() -> None:
    log = tn.generate(ORIGIN)
    checkpoint = tn.Checkpoint(ORIGIN, 7, ROOT, ("ext one", "ext two"))
    message = tn.sign(checkpoint.text, log).render()
    opened = spec_open(message.encode(), [spec_parse_vkey(log.verifier.vkey)])
    assert spec_parse_checkpoint(opened.body) == (ORIGIN, 7, ROOT, ["ext one", "ext two"])
    assert tn.Checkpoint.parse(opened.body) == checkpoint
    with pytest.raises(SpecError):
        spec_open(
            message.replace("ext two", "ext 2").encode(), [spec_parse_vkey(log.verifier.vkey)]
        )


@pytest.mark.parametrize("timestamp", [0, 1, 1679315147, 2**32, 2**63 - 1])
def test_a_tlog_cosignature_opens_with_the_spec(timestamp: int) -> None:
    signed = make_signed(timestamp=timestamp)
    witness_key = spec_parse_vkey(signed.witness.verifier.vkey)
    assert witness_key.signature_type == 0x04
    public = raw_public(signed.witness.private_key)
    assert witness_key.key_id == hashlib.sha256(WITNESS.encode() + b"\n\x04" + public).digest()[:4]

    cosignature = signed.note.signatures[1]
    assert cosignature.line.startswith(f"{EM_DASH} {WITNESS} ")
    raw = spec_b64decode(cosignature.line.split(" ")[2].rstrip("\n"))
    assert raw[:4] == witness_key.key_id
    assert raw[4:12] == timestamp.to_bytes(8, "big")
    message = (
        b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + signed.checkpoint.text.encode()
    )
    assert spec_ed25519_ok(public, raw[12:], message)

    opened = spec_open(signed.message.encode(), [witness_key])
    assert opened.verified == [(WITNESS, timestamp)]
    log_key = spec_parse_vkey(signed.log.verifier.vkey)
    assert spec_open(signed.message.encode(), [log_key, witness_key]).verified == [
        (ORIGIN, None),
        (WITNESS, timestamp),
    ]
    # and tlog reads its own the same way
    assert tlog_open(signed.message, signed.witness.verifier, cosignature=True) == timestamp


@pytest.mark.parametrize("timestamp", [0, 1679315147, 2**63 - 1])
def test_a_spec_cosignature_verifies_with_tlog(timestamp: int) -> None:
    signed = make_signed()
    key = Ed25519PrivateKey.generate()
    vkey = spec_vkey(WITNESS, 0x04, key)
    line = spec_cosign(signed.checkpoint.text, WITNESS, key, timestamp)
    verifier = tn.Verifier.parse(vkey)
    assert verifier.signature_type == tn.COSIGNATURE_V1
    assert (
        tn.verify_cosignature(signed.checkpoint.text, tn.Signature.parse(line[:-1]), verifier)
        == timestamp
    )
    message = signed.message + line
    assert tlog_open(message, verifier, cosignature=True) == timestamp
    assert tlog_open(message, signed.log.verifier) is None
    # tlog's own cosignature for the same key and time is the same line (Ed25519 is
    # deterministic): the message format matches byte for byte
    same = tn.cosign(signed.checkpoint.text, tn.Signer(WITNESS, key, tn.COSIGNATURE_V1), timestamp)
    assert same.line == line


def test_a_spec_note_signature_verifies_with_tlog() -> None:
    key = Ed25519PrivateKey.generate()
    body = tn.Checkpoint(ORIGIN, 42, ROOT).text
    key_id = spec_key_id(ORIGIN, 0x01, raw_public(key))
    message = body + "\n" + spec_signature_line(ORIGIN, key_id, key.sign(body.encode()))
    verifier = tn.Verifier.parse(spec_vkey(ORIGIN, 0x01, key))
    assert tlog_open(message, verifier) is None
    assert tn.sign(body, tn.Signer(ORIGIN, key)).render() == message


def test_timestamps_past_two_to_the_63_are_refused() -> None:
    signed = make_signed()
    with pytest.raises(tn.NoteError):
        tn.cosign(signed.checkpoint.text, signed.witness, 2**63)
    key = Ed25519PrivateKey.generate()
    line = spec_cosign(signed.checkpoint.text, WITNESS, key, 2**63)  # validly signed, too late
    message = signed.message + line
    with pytest.raises(SpecError):
        spec_open(message.encode(), [spec_parse_vkey(spec_vkey(WITNESS, 0x04, key))])
    with pytest.raises(tn.NoteError):
        tlog_open(message, tn.Verifier.parse(spec_vkey(WITNESS, 0x04, key)), cosignature=True)


# ---------------------------------------------------------------------------------------
# Tampering.


def _replace_line(index: int, new: Callable[[str], str]) -> Callable[[Signed], str]:
    def mutate(signed: Signed) -> str:
        lines = signed.message.split("\n")
        lines[index] = new(lines[index])
        return "\n".join(lines)

    return mutate


def _resign_name(signed: Signed) -> str:
    lines = signed.message.split("\n")
    lines[4] = lines[4].replace(f" {ORIGIN} ", f" {ORIGIN}x ")
    return "\n".join(lines)


def _key_id_changed(signed: Signed) -> str:
    lines = signed.message.split("\n")
    dash, name, encoded = lines[4].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[0] ^= 0x01
    lines[4] = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join(lines)


def _signature_changed(signed: Signed) -> str:
    lines = signed.message.split("\n")
    dash, name, encoded = lines[4].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 0x01
    lines[4] = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join(lines)


# The signed message is "origin\nsize\nroot\n\n— log …\n— witness …\n": lines 0..2 are the
# body, 3 the blank line, 4 the log's signature, 5 the witness's.
LOG_TAMPERINGS: dict[str, Callable[[Signed], str]] = {
    "size line": _replace_line(1, lambda size: str(int(size) + 1)),
    "size with a leading zero": _replace_line(1, lambda size: "0" + size),
    "root line": _replace_line(2, lambda root: base64.b64encode(b"\x00" * 32).decode()),
    "origin line": _replace_line(0, lambda origin: origin + "2"),
    "key name": _resign_name,
    "key ID": _key_id_changed,
    "signature bytes": _signature_changed,
    "a tab in the text": _replace_line(0, lambda origin: origin + "\t"),
    "a carriage return": _replace_line(1, lambda size: size + "\r"),
    "a NUL": _replace_line(2, lambda root: root + "\x00"),
    "an escape in a signature line": _replace_line(4, lambda line: line + "\x1b"),
    "no final newline": lambda s: s.message[:-1],
    "no blank line": lambda s: s.message.replace("\n\n", "\n"),
    "two blank lines": lambda s: s.message.replace("\n\n", "\n\n\n"),
    "a hyphen for the em dash": _replace_line(4, lambda line: "-" + line[1:]),
    "a line after the signatures": lambda s: s.message + "trailing words\n",
    "an empty line after the signatures": lambda s: s.message + "\n",
    "no signatures": lambda s: s.message.split("\n\n")[0] + "\n\n",
    "two spaces": _replace_line(4, lambda line: line.replace(" ", "  ", 1)),
}


@pytest.mark.parametrize("tamper", LOG_TAMPERINGS.values(), ids=LOG_TAMPERINGS.keys())
def test_tampering_with_the_log_signature_is_refused(tamper: Callable[[Signed], str]) -> None:
    signed = make_signed()
    message = tamper(signed)
    assert message != signed.message
    with pytest.raises(SpecError):
        spec_open(message.encode(), [spec_parse_vkey(signed.log.verifier.vkey)])
    with pytest.raises(tn.NoteError):
        tlog_open(message, signed.log.verifier)


def _cosignature_time_changed(signed: Signed) -> str:
    lines = signed.message.split("\n")
    dash, name, encoded = lines[5].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[11] ^= 0x01  # the low byte of the timestamp
    lines[5] = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join(lines)


def _cosignature_truncated(signed: Signed) -> str:
    lines = signed.message.split("\n")
    dash, name, encoded = lines[5].split(" ")
    raw = base64.b64decode(encoded)
    lines[5] = f"{dash} {name} {base64.b64encode(raw[:4] + raw[12:]).decode()}"  # no time
    return "\n".join(lines)


COSIGNATURE_TAMPERINGS: dict[str, Callable[[Signed], str]] = {
    "size line": _replace_line(1, lambda size: str(int(size) + 1)),
    "root line": _replace_line(2, lambda root: base64.b64encode(b"\x01" * 32).decode()),
    "timestamp": _cosignature_time_changed,
    "timestamp removed": _cosignature_truncated,
    "witness name": _replace_line(5, lambda line: line.replace(WITNESS, WITNESS + "x")),
}


@pytest.mark.parametrize(
    "tamper", COSIGNATURE_TAMPERINGS.values(), ids=COSIGNATURE_TAMPERINGS.keys()
)
def test_tampering_with_a_cosignature_is_refused(tamper: Callable[[Signed], str]) -> None:
    signed = make_signed()
    message = tamper(signed)
    with pytest.raises(SpecError):
        spec_open(message.encode(), [spec_parse_vkey(signed.witness.verifier.vkey)])
    with pytest.raises(tn.NoteError):
        tlog_open(message, signed.witness.verifier, cosignature=True)


def test_a_cosignature_is_no_note_signature_and_back() -> None:
    """The key ID commits to the type: the witness key as a 0x01 key, or the log key as
    a cosigner, matches no line, so nothing verifies."""
    signed = make_signed()
    as_note_key = spec_vkey(WITNESS, 0x01, signed.witness.private_key)
    with pytest.raises(SpecError):
        spec_open(signed.message.encode(), [spec_parse_vkey(as_note_key)])
    with pytest.raises(tn.NoteError):
        tlog_open(signed.message, tn.Verifier.parse(as_note_key))
    as_cosigner = spec_vkey(ORIGIN, 0x04, signed.log.private_key)
    with pytest.raises(SpecError):
        spec_open(signed.message.encode(), [spec_parse_vkey(as_cosigner)])
    with pytest.raises(tn.NoteError):
        tlog_open(signed.message, tn.Verifier.parse(as_cosigner), cosignature=True)
    with pytest.raises(tn.NoteError):  # a note key is refused as a cosigner outright
        tlog_open(signed.message, signed.log.verifier, cosignature=True)


def test_unknown_signatures_are_ignored_and_the_known_one_still_verifies() -> None:
    """Lines by other keys, by a key with the log's name but another ID, with the log's
    ID but another name, and well-formed garbage, all before the real one."""
    signed = make_signed()
    body = signed.checkpoint.text
    stranger = Ed25519PrivateKey.generate()
    namesake = Ed25519PrivateKey.generate()  # the log's name, its own key and ID
    log_line = tn.sign(body, signed.log).signatures[0]
    lines = [
        spec_signature_line(
            "other.example/log",
            spec_key_id("other.example/log", 1, raw_public(stranger)),
            stranger.sign(body.encode()),
        ),
        spec_signature_line(
            ORIGIN, spec_key_id(ORIGIN, 1, raw_public(namesake)), namesake.sign(body.encode())
        ),
        spec_signature_line(ORIGIN + ".mirror", log_line.key_id, b"\x00" * 64),
        spec_signature_line("garbage.example", b"\xff" * 4, b"\x01" * 64),
        log_line.line,
    ]
    message = body + "\n" + "".join(lines)
    log_key = spec_parse_vkey(signed.log.verifier.vkey)
    assert spec_open(message.encode(), [log_key]).verified == [(ORIGIN, None)]
    assert tlog_open(message, signed.log.verifier) is None
    assert len(tn.Note.parse(message).signatures) == 5
    # the same lines without the known one: nothing verifies
    unknown_only = body + "\n" + "".join(lines[:-1])
    with pytest.raises(SpecError):
        spec_open(unknown_only.encode(), [log_key])
    with pytest.raises(tn.NoteError):
        tlog_open(unknown_only, signed.log.verifier)


def test_sixteen_signatures_are_accepted() -> None:
    """Verifiers MUST accept at least 16 signatures."""
    signed = make_signed()
    others = [tn.generate(f"w{i}.example", tn.COSIGNATURE_V1) for i in range(15)]
    lines = [tn.cosign(signed.checkpoint.text, w, 1) for w in others]
    note = tn.Note(signed.checkpoint.text, (signed.note.signatures[0], *lines))
    message = note.render()
    assert len(tn.Note.parse(message).signatures) == 16
    assert tlog_open(message, signed.log.verifier) is None
    assert tlog_open(message, others[-1].verifier, cosignature=True) == 1
    assert spec_open(message.encode(), [spec_parse_vkey(others[-1].verifier.vkey)]).verified == [
        ("w14.example", 1)
    ]


# ---------------------------------------------------------------------------------------
# Checkpoint bodies.

B64_ROOT = base64.b64encode(ROOT).decode()
REFUSED_CHECKPOINTS = {
    "leading zero": f"o\n01\n{B64_ROOT}\n",
    "two zeroes": f"o\n00\n{B64_ROOT}\n",
    "a sign": f"o\n+1\n{B64_ROOT}\n",
    "negative": f"o\n-1\n{B64_ROOT}\n",
    "a fraction": f"o\n1.0\n{B64_ROOT}\n",
    "hexadecimal": f"o\n0x1f\n{B64_ROOT}\n",
    "an exponent": f"o\n1e3\n{B64_ROOT}\n",
    "a space before": f"o\n 1\n{B64_ROOT}\n",
    "a space after": f"o\n1 \n{B64_ROOT}\n",
    "an underscore": f"o\n1_000\n{B64_ROOT}\n",
    "Arabic-Indic digits": f"o\n\u0661\u0662\n{B64_ROOT}\n",
    "a superscript digit": f"o\n\u00b2\n{B64_ROOT}\n",
    "fullwidth digits": f"o\n\uff11\uff12\n{B64_ROOT}\n",
    "an empty size": f"o\n\n{B64_ROOT}\n",
    "a 31-byte root": f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",
    "a 33-byte root": f"o\n1\n{base64.b64encode(ROOT + b'!').decode()}\n",
    "an unpadded root": f"o\n1\n{B64_ROOT.rstrip('=')}\n",
    "a URL-safe root": "o\n1\n" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode() + "\n",
    "a hex root": f"o\n1\n{ROOT.hex()}\n",
    "two lines": "o\n1\n",
    "one line": "o\n",
    "nothing": "",
    "an empty origin": f"\n1\n{B64_ROOT}\n",
    "an empty extension line": f"o\n1\n{B64_ROOT}\n\n",
    "an empty line among extensions": f"o\n1\n{B64_ROOT}\next\n\nmore\n",
    "no final newline": f"o\n1\n{B64_ROOT}",
}


@pytest.mark.parametrize("body", REFUSED_CHECKPOINTS.values(), ids=REFUSED_CHECKPOINTS.keys())
def test_malformed_checkpoints_are_refused_by_both(body: str) -> None:
    with pytest.raises(SpecError):
        spec_parse_checkpoint(body)
    with pytest.raises(tn.NoteError):
        tn.Checkpoint.parse(body)


ACCEPTED_CHECKPOINTS = {
    "the empty tree": f"o\n0\n{base64.b64encode(hashlib.sha256(b'').digest()).decode()}\n",
    "one": f"o\n1\n{B64_ROOT}\n",
    "large": f"example.com/log\n18446744073709551615\n{B64_ROOT}\n",
    "extensions": f"o\n10\n{B64_ROOT}\nfirst ext\nsecond ext\n",
    "an origin with spaces": f"an origin with spaces\n10\n{B64_ROOT}\n",
}


@pytest.mark.parametrize("body", ACCEPTED_CHECKPOINTS.values(), ids=ACCEPTED_CHECKPOINTS.keys())
def test_well_formed_checkpoints_parse_alike(body: str) -> None:
    checkpoint = tn.Checkpoint.parse(body)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root, list(checkpoint.extensions)) == (
        spec_parse_checkpoint(body)
    )
    assert checkpoint.text == body
