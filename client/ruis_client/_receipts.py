"""A receipt's own checks, with no network: what makes a release's receipt check out.

A receipt proves the release's ledger entry is in the ledger's signed Merkle tree
(SPEC.md, "A ledger that outside auditors can verify"): the checkpoint note is signed
by the ledger's key, the entry's hash recomputes from its canonical JSON, the entry is
this release's debit, and its leaf's inclusion proof leads to the checkpoint's root.
Whether that checkpoint is consistent with earlier ones is :mod:`ruis_client._ledger`'s job.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ruis_client._models import Checkpoint, Release
from tlog import merkle, note


class ReceiptError(ValueError):
    """Why a receipt does not check out (the message says)."""


def canonical_json(value: Any) -> str:
    """The canonical JSON text the ledger hashes: sorted keys, no spaces, UTF-8 (not
    ASCII-escaped), no NaN or infinity (ValueError for those)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a ledger entry without its ``hash`` field: what
    its ``hash`` must be (the server's ``db.ledger.compute_hash``)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _hash_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ReceiptError("the entry's hash is not 64 hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ReceiptError("the entry's hash is not 64 hex digits") from None


def _proof(hashes: tuple[str, ...]) -> list[bytes]:
    try:
        proof = [base64.b64decode(h.encode("ascii"), validate=True) for h in hashes]
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ReceiptError("the inclusion proof is not base64 hashes") from None
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise ReceiptError("the inclusion proof holds a hash that is not 32 bytes")
    return proof


def signed_checkpoint(text: str, key: note.Verifier, *, signature: bool = True) -> Checkpoint:
    """The checkpoint of a note signed by ``key`` (the ledger's: its origin is the key's
    name); ReceiptError when the note is malformed, unsigned by ``key`` or of another log.
    ``signature=False`` (no ``cryptography`` installed) leaves the signature unchecked."""
    try:
        signed = note.Note.parse(text)
        if signature:
            signed.signed_by(key)
        point = note.Checkpoint.parse(signed.text)
    except note.NoteError as exc:
        raise ReceiptError(f"the checkpoint is not the ledger's: {exc}") from None
    if point.origin != key.name:
        raise ReceiptError(f"the checkpoint is of log {point.origin!r}, not {key.name!r}")
    return Checkpoint(size=point.size, root=point.root, note=text)


def check(release: Release, key: note.Verifier, *, signature: bool = True) -> Checkpoint:
    """The checkpoint ``release``'s receipt proves its entry in; ReceiptError unless the
    note is signed by ``key`` (unchecked with ``signature=False``), the entry's hash
    recomputes, the entry is the release's debit (kind ``release``, seq = ``ledger_seq``
    = index + 1, its release id and cost) and the inclusion proof leads from the entry's
    leaf to the checkpoint's root."""
    receipt = release.receipt
    if receipt is None:
        absent = "receipt" not in release.document
        raise ReceiptError("the answer carries no receipt" if absent else "malformed receipt")
    point = signed_checkpoint(receipt.checkpoint, key, signature=signature)
    entry = receipt.entry
    try:
        recomputed = entry_hash(entry)
    except (TypeError, ValueError) as exc:
        raise ReceiptError(f"the entry is not canonical JSON: {exc}") from None
    if entry.get("hash") != recomputed:
        raise ReceiptError("the entry's hash does not recompute from its contents")
    seq = entry.get("seq")
    if not (seq == release.ledger_seq == receipt.index + 1):
        raise ReceiptError(
            f"the entry is seq {seq!r}, the release's is {release.ledger_seq}, "
            f"the receipt's index {receipt.index}"
        )
    details = entry.get("details")
    if entry.get("kind") != "release" or not isinstance(details, Mapping):
        raise ReceiptError(f"the entry is a {entry.get('kind')!r} entry, not a release's debit")
    if details.get("release_id") != release.id:
        raise ReceiptError(f"the entry is release {details.get('release_id')!r}'s")
    if entry.get("cost") != release.document.get("cost"):
        raise ReceiptError(
            f"the entry's cost {entry.get('cost')!r} is not the release's "
            f"{release.document.get('cost')!r}"
        )
    leaf = merkle.leaf_hash(_hash_bytes(entry.get("hash")))
    proof = _proof(receipt.inclusion)
    try:
        merkle.verify_inclusion(receipt.index, point.size, leaf, proof, point.root)
    except merkle.ProofError as exc:
        raise ReceiptError(f"the inclusion proof fails: {exc}") from None
    return point
