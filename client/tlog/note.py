"""C2SP signed notes, tlog checkpoints and tlog cosignatures, with Ed25519.

Formats followed exactly (an auditor's own tools are written against them):

- c2sp.org/signed-note: a text ending in a newline, a blank line, then signature lines
  ``— <key name> base64(key ID ‖ signature)``; key ID = SHA-256(name ‖ 0x0A ‖ type ‖
  public key)[:4]; the verifier key ``<name>+<hex key ID>+base64(type ‖ public key)``.
  Type 0x01: Ed25519 over the note text.
- c2sp.org/tlog-checkpoint: the text is the origin, the decimal tree size and the
  base64 root hash, one per line (then optional extension lines).
- c2sp.org/tlog-cosignature (Ed25519, type 0x04): the signature is a big-endian u64
  POSIX timestamp then an Ed25519 signature over ``cosignature/v1\\ntime <t>\\n`` ‖ the
  checkpoint text.

Signing and verifying are the ``cryptography`` package's Ed25519; nothing here is
cryptography of its own. It is imported only to sign or verify: parsing notes, keys and
checkpoints works without it (:func:`signatures_available` says whether it is installed;
without it signing or verifying raises :class:`SignaturesUnavailable`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
DASH = "\u2014"
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 1 << 20


class NoteError(ValueError):
    """A note, key or signature that is malformed or does not verify."""


class SignaturesUnavailable(ImportError):
    """Signing or verifying needs the ``cryptography`` package, which is not installed."""


def signatures_available() -> bool:
    """Whether the ``cryptography`` package (Ed25519) is installed: signatures can be
    made and checked."""
    try:
        _ed25519()
    except SignaturesUnavailable:
        return False
    return True


def _ed25519() -> ModuleType:
    """``cryptography``'s Ed25519 module, imported on first use."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise SignaturesUnavailable(
            "checking or making Ed25519 signatures needs the cryptography package "
            "(pip install cryptography, or ruis-client[verify])"
        ) from exc
    return ed25519


def _serialization() -> ModuleType:
    _ed25519()  # the same error when cryptography is missing
    from cryptography.hazmat.primitives import serialization

    return serialization


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{text[:40]!r} is not standard base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or any(ord(c) < 0x20 for c in name):
        raise NoteError(f"{name[:60]!r} is not a key name (non-empty, no spaces, no '+')")
    return name


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """SHA-256(name ‖ 0x0A ‖ signature type ‖ public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    serialization = _serialization()
    raw: bytes = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


@dataclass(frozen=True)
class Verifier:
    """A trusted key: a name, a signature type and an Ed25519 public key."""

    name: str
    signature_type: int
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID its signature lines carry."""
        return key_id(self.name, self.signature_type, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key text ``<name>+<hex key ID>+base64(type ‖ public key)``."""
        material = _b64(bytes([self.signature_type]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``
        (:class:`SignaturesUnavailable` without the ``cryptography`` package)."""
        public = _ed25519().Ed25519PublicKey.from_public_bytes(self.public_key)
        from cryptography.exceptions import InvalidSignature

        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A verifier key text; NoteError if malformed or its key ID does not match."""
        parts = vkey.strip().split("+", 2)  # the base64 key may hold "+" itself
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hex key ID>+<base64 key>")
        name, hex_id, material = parts
        _check_name(name)
        raw = _b64decode(material)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise NoteError("only Ed25519 verifier keys (type 0x01 or 0x04) are supported")
        verifier = cls(name, raw[0], raw[1:])
        if hex_id.lower() != verifier.key_id.hex() or len(hex_id) != 8:
            raise NoteError("the verifier key's ID does not match its name and key")
        return verifier


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key that signs notes (type 0x01) or cosignatures (0x04)."""

    name: str
    private_key: Ed25519PrivateKey
    signature_type: int = ED25519

    @property
    def verifier(self) -> Verifier:
        """The public half."""
        return Verifier(
            _check_name(self.name),
            self.signature_type,
            _raw_public(self.private_key.public_key()),
        )

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        signature: bytes = self.private_key.sign(message)
        return signature


@dataclass(frozen=True)
class Signature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        """``— <name> base64(key ID ‖ signature)`` and a newline."""
        return f"{DASH} {self.name} {_b64(self.key_id + self.signature)}\n"

    @classmethod
    def parse(cls, line: str) -> Signature:
        """One signature line (without its newline)."""
        prefix = DASH + " "
        if not line.startswith(prefix):
            raise NoteError("a signature line starts with an em dash and a space")
        fields = line[len(prefix) :].split(" ")
        if len(fields) != 2:
            raise NoteError("a signature line is '— <name> <base64>'")
        name, data = _check_name(fields[0]), _b64decode(fields[1])
        if len(data) < 5:
            raise NoteError("a signature holds a key ID and signature bytes")
        return cls(name, data[:4], data[4:])


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in a newline) and its signatures."""

    text: str
    signatures: tuple[Signature, ...]

    def render(self) -> str:
        """The note as sent: the text, a blank line, the signature lines."""
        return self.text + "\n" + "".join(s.line for s in self.signatures)

    @classmethod
    def parse(cls, note: str) -> Note:
        """A signed note's text and signature lines; NoteError if malformed."""
        if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
            raise NoteError("the note is too large")
        if any(ord(c) < 0x20 and c != "\n" for c in note):
            raise NoteError("a note holds no control characters other than newline")
        if not note.endswith("\n"):
            raise NoteError("a note ends with a newline")
        cut = note.rfind("\n\n")
        if cut < 0:
            raise NoteError("a note has a blank line between its text and signatures")
        text, block = note[: cut + 1], note[cut + 2 :]
        lines = block[:-1].split("\n") if block else []
        if not lines:
            raise NoteError("the note has no signatures")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError("the note has too many signatures")
        return cls(text, tuple(Signature.parse(line) for line in lines))

    def signed_by(self, verifier: Verifier, *, cosignature: bool = False) -> int | None:
        """Verify the signature of ``verifier`` (matched by name and key ID): None for a
        note signature, the timestamp for a cosignature. NoteError if it is absent or
        does not verify."""
        for signature in self.signatures:
            if signature.name != verifier.name or signature.key_id != verifier.key_id:
                continue  # unknown keys are ignored, as the format requires
            if cosignature:
                return verify_cosignature(self.text, signature, verifier)
            if not verifier.verify(self.text.encode("utf-8"), signature.signature):
                raise NoteError(f"the signature of {verifier.name} does not verify")
            return None
        raise NoteError(f"the note carries no signature of {verifier.name}")


def sign(text: str, signer: Signer) -> Note:
    """The note ``text`` (which must end in a newline) signed by ``signer`` (type 0x01)."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("a note text ends in one newline and has no blank line")
    verifier = signer.verifier
    return Note(text, (Signature(verifier.name, verifier.key_id, signer.sign(text.encode())),))


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: origin, tree size, root hash (and extension lines)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The note text: one field per line."""
        lines = [self.origin, str(self.size), _b64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint's note text; NoteError if it is not one."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint is at least three non-empty lines")
        origin, size, root = lines[0], lines[1], lines[2]
        if not size.isdigit() or (size != "0" and size.startswith("0")) or not size.isascii():
            raise NoteError("a checkpoint's tree size is a decimal without leading zeroes")
        digest = _b64decode(root)
        if len(digest) != 32:
            raise NoteError("a checkpoint's root hash is 32 bytes")
        return cls(origin, int(size), digest, tuple(lines[3:-1]))


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a v1 cosignature signs: the header line, the time line, the checkpoint text."""
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_text}".encode()


def cosign(checkpoint_text: str, witness: Signer, timestamp: int) -> Signature:
    """The tlog-cosignature/v1 of ``checkpoint_text`` by ``witness`` at ``timestamp``."""
    if witness.signature_type != COSIGNATURE_V1:
        raise NoteError("a cosigner signs with signature type 0x04")
    if not 0 <= timestamp < 2**63:
        raise NoteError("a cosignature's timestamp is below 2**63")
    verifier = witness.verifier
    signed = witness.sign(cosignature_message(checkpoint_text, timestamp))
    return Signature(verifier.name, verifier.key_id, struct.pack(">Q", timestamp) + signed)


def verify_cosignature(checkpoint_text: str, signature: Signature, witness: Verifier) -> int:
    """The timestamp of ``witness``'s valid cosignature of ``checkpoint_text``; NoteError
    otherwise."""
    if witness.signature_type != COSIGNATURE_V1:
        raise NoteError("a cosigner's verifier key has signature type 0x04")
    if signature.name != witness.name or signature.key_id != witness.key_id:
        raise NoteError("the cosignature is not by that witness key")
    if len(signature.signature) != 8 + 64:
        raise NoteError("an Ed25519 cosignature is a timestamp and 64 signature bytes")
    (timestamp,) = struct.unpack(">Q", signature.signature[:8])
    if timestamp >= 2**63:
        raise NoteError("a cosignature's timestamp is below 2**63")
    if not witness.verify(cosignature_message(checkpoint_text, timestamp), signature.signature[8:]):
        raise NoteError(f"the cosignature of {witness.name} does not verify")
    return int(timestamp)


def generate(name: str, signature_type: int = ED25519) -> Signer:
    """A new random Ed25519 signer."""
    _check_name(name)
    return Signer(name, _ed25519().Ed25519PrivateKey.generate(), signature_type)


def private_pem(signer: Signer) -> bytes:
    """The signer's private key as unencrypted PKCS#8 PEM (keep it mode 0600)."""
    serialization = _serialization()
    pem: bytes = signer.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem


def load_private_pem(data: bytes, name: str, signature_type: int = ED25519) -> Signer:
    """A signer from a PKCS#8 PEM Ed25519 private key; NoteError for any other key."""
    serialization = _serialization()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise NoteError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, _ed25519().Ed25519PrivateKey):
        raise NoteError("the key is not an Ed25519 key")
    return Signer(_check_name(name), key, signature_type)
