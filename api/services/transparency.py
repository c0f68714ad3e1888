"""What outsiders verify the ledger with: signed checkpoints, proofs, receipts, cosignatures.

The ledger's Merkle tree (:mod:`db.ledger_tree`) is signed as a C2SP checkpoint
(:mod:`tlog.note`) by the server's Ed25519 key (:mod:`api.ledger_key`). Ed25519 is
deterministic, so the checkpoint at a size is the same text whenever it is signed.
"""

from __future__ import annotations

import base64
import logging

from api.ledger_key import LogSigner
from api.problems import InvalidRequest
from api.release_body import Receipt
from api.schemas import (
    CheckpointSummary,
    ConsistencyProof,
    CosignatureAccepted,
    CosignatureSubmission,
    InclusionProof,
    Page,
)
from api.services import Actor
from db import checkpoints, ledger, ledger_tree
from db.engine import Database
from db.models import LedgerEntry
from tlog import note

log = logging.getLogger("ruis.ledger")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def checkpoint(db: Database, log: LogSigner, size: int | None) -> str:
    """The signed checkpoint of the tree at ``size`` (default: now), with the witnesses'
    cosignatures stored for that size; the size is recorded in the history."""
    with db.read() as session:
        if size is None:
            tree_size, root = ledger_tree.current(session)
        else:
            tree_size, root = size, ledger_tree.root(session, size)
        stored = checkpoints.cosignatures(session, tree_size)
    text = note.Checkpoint(log.origin, tree_size, root).text
    lines = tuple(c.line for c in stored if _cosigns(c, text))
    checkpoints.record(db, tree_size, root)
    return log.checkpoint(tree_size, root, lines)


def _cosigns(stored: checkpoints.StoredCosignature, text: str) -> bool:
    """Whether a stored cosignature is of this checkpoint text. One that is not (its
    witness saw another root at this size) is never served: the history it cosigned was
    rewritten since, which ``GET /v1/ledger/verify`` reports."""
    try:
        witness = note.Verifier.parse(stored.vkey)
        note.verify_cosignature(text, note.Signature.parse(stored.line.rstrip("\n")), witness)
    except note.NoteError:
        log.error(
            "the cosignature of %s at size %d is not of this ledger's checkpoint",
            stored.witness,
            stored.size,
        )
        return False
    return True


def history(db: Database, *, before: int | None, limit: int) -> Page[CheckpointSummary]:
    """The checkpoints served or cosigned, newest first, with who cosigned each."""
    with db.read() as session:
        records, next_before = checkpoints.history(session, before=before, limit=limit)
    items = [
        CheckpointSummary(
            size=r.size, root=_b64(r.root), first_served=r.created_at, witnesses=list(r.witnesses)
        )
        for r in records
    ]
    return Page[CheckpointSummary](
        items=items, next_cursor=str(next_before) if next_before is not None else None
    )


def inclusion(db: Database, index: int, size: int) -> InclusionProof:
    """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    with db.read() as session:
        hashes = ledger_tree.inclusion(session, index, size)
    return InclusionProof(index=index, size=size, hashes=[_b64(h) for h in hashes])


def consistency(db: Database, old: int, new: int) -> ConsistencyProof:
    """RFC 9162 consistency proof from the tree of ``old`` leaves to that of ``new``."""
    with db.read() as session:
        hashes = ledger_tree.consistency(session, old, new)
    return ConsistencyProof(**{"from": old, "to": new, "hashes": [_b64(h) for h in hashes]})


def receipt(db: Database, log: LogSigner, seq: int) -> Receipt:
    """The receipt of ledger entry ``seq``: the entry, the signed checkpoint of the tree
    now, and the inclusion proof of the entry's leaf (index ``seq − 1``) in it.

    One read: the head, the tree nodes the signer has not kept yet and, the first time,
    the entry (nodes and entries never change; a rewrite by an insider shows as a receipt
    that does not verify)."""
    log.trim()
    with db.read() as session:
        tree_size, root, proof = ledger_tree.receipt_path(session, seq - 1, log.nodes)
        document = log.entries.get(seq)
        if document is None:
            entry = session.get(LedgerEntry, seq)
            if entry is None:  # pragma: no cover - the tree has the leaf, so the entry exists
                raise RuntimeError(f"ledger entry {seq} is missing")
            document = log.entries[seq] = ledger.entry_document(entry)
    return Receipt(
        checkpoint=log.checkpoint(tree_size, root),
        index=seq - 1,
        inclusion=[_b64(h) for h in proof],
        entry=document,
    )


def add_cosignature(
    db: Database, log: LogSigner, actor: Actor, body: CosignatureSubmission
) -> CosignatureAccepted:
    """Store a witness's cosignature of one of this ledger's checkpoints.

    The note must carry this ledger's checkpoint text (origin, a size it has, the root
    it has at that size: else 409 ``checkpoint-mismatch``) and a valid tlog-cosignature
    by the witness key given (else 422)."""
    try:
        witness = note.Verifier.parse(body.witness)
        if witness.signature_type != note.COSIGNATURE_V1:
            raise note.NoteError("a witness key has signature type 0x04 (tlog-cosignature)")
        signed = note.Note.parse(body.checkpoint)
        point = note.Checkpoint.parse(signed.text)
        timestamp = signed.signed_by(witness, cosignature=True)
    except note.NoteError as exc:
        raise InvalidRequest(f"the cosignature cannot be used: {exc}") from None
    if point.origin != log.origin or point.extensions:
        raise InvalidRequest(f"the checkpoint is not of this ledger (origin {log.origin})")
    assert timestamp is not None
    line = next(
        s.line for s in signed.signatures if s.name == witness.name and s.key_id == witness.key_id
    )
    checkpoints.add_cosignature(
        db,
        consumer_id=actor.consumer_id or 0,
        size=point.size,
        root=point.root,
        cosignature=checkpoints.StoredCosignature(
            size=point.size,
            witness=witness.name,
            key_id=witness.key_id.hex(),
            vkey=witness.vkey,
            timestamp=timestamp,
            line=line,
        ),
    )
    return CosignatureAccepted(
        size=point.size, root=_b64(point.root), witness=witness.vkey, timestamp=timestamp
    )
