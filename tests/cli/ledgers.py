"""Ledgers for the auditor commands' tests: chained entry documents, signed checkpoints
over them, and a fake log server (``httpx.MockTransport``) that can be restored from an
older backup and carry on with other entries."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import httpx

from db.ledger import GENESIS_HASH, compute_hash
from tlog import merkle
from tlog.note import Checkpoint, Note, Signature, Signer, Verifier, sign

ORIGIN = "ruis.test/ledger"


def entry(seq: int, prev_hash: str, tag: str = "") -> dict[str, Any]:
    """One entry document chained to ``prev_hash``, its hash computed."""
    document: dict[str, Any] = {
        "seq": seq,
        "time": f"2025-01-01T00:00:{seq % 60:02d}.000Z",
        "kind": "budget_set",
        "actor": "admin",
        "consumer": f"analyst-{seq % 3}",
        "dataset": "events",
        "cost": {"epsilon": "0.5"},
        "request_id": f"req-{seq}{tag}",
        "details": {"note": f"entry {seq}{tag}", "ratio": seq / 7},
        "prev_hash": prev_hash,
    }
    document["hash"] = compute_hash(document)
    return document


def chain(count: int, tag: str = "") -> list[dict[str, Any]]:
    """``count`` entries, seq 1.., correctly chained from the genesis hash."""
    entries: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        entries.append(entry(seq, entries[-1]["hash"] if entries else GENESIS_HASH, tag))
    return entries


def rechain(entries: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Recompute every hash and prev_hash from index ``start`` on (an insider's cover-up)."""
    for index in range(start, len(entries)):
        document = entries[index]
        document["prev_hash"] = entries[index - 1]["hash"] if index else GENESIS_HASH
        document["hash"] = compute_hash(document)
    return entries


def jsonl(entries: Sequence[dict[str, Any]]) -> str:
    """The export text, as the server writes it."""
    return "".join(json.dumps(e, separators=(",", ":"), ensure_ascii=False) + "\n" for e in entries)


def tree(entries: Sequence[dict[str, Any]]) -> merkle.MemoryTree:
    """The Merkle tree over the entries' hashes."""
    built = merkle.MemoryTree()
    for document in entries:
        built.append(merkle.leaf_hash(bytes.fromhex(document["hash"])))
    return built


def checkpoint_note(
    entries: Sequence[dict[str, Any]],
    signer: Signer,
    size: int | None = None,
    cosigners: Sequence[Signature] = (),
    origin: str = ORIGIN,
) -> str:
    """The log's signed checkpoint over the first ``size`` entries (all by default)."""
    size = len(entries) if size is None else size
    text = Checkpoint(origin, size, tree(entries).root(size)).text
    note = sign(text, signer)
    return Note(note.text, (*note.signatures, *cosigners)).render()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class FakeLog:
    """The log's HTTP contract over an in-memory ledger: checkpoint, consistency proofs
    and cosignatures (verified as the server will), and a record of every request."""

    def __init__(self, signer: Signer, auditor_key: str = "auditor-key") -> None:
        self.signer = signer
        self.auditor_key = auditor_key
        self.entries: list[dict[str, Any]] = []
        self.cosignatures: dict[int, list[Signature]] = {}
        self.posted: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.down = False

    def grow(self, count: int, tag: str = "") -> None:
        """Append ``count`` entries."""
        for _ in range(count):
            previous = self.entries[-1]["hash"] if self.entries else GENESIS_HASH
            self.entries.append(entry(len(self.entries) + 1, previous, tag))

    def restore(self, size: int) -> None:
        """Restore an older backup: only the first ``size`` entries are left."""
        del self.entries[size:]
        self.cosignatures = {k: v for k, v in self.cosignatures.items() if k <= size}

    def rewrite(self, index: int, tag: str = "-rewritten") -> None:
        """An insider edits the entry at ``index`` and recomputes every later hash."""
        self.entries[index]["details"] = {"note": f"edited{tag}"}
        rechain(self.entries, index)
        self.cosignatures.clear()

    def note(self) -> str:
        return checkpoint_note(
            self.entries, self.signer, cosigners=self.cosignatures.get(len(self.entries), ())
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers.get("authorization") != f"Bearer {self.auditor_key}":
            return httpx.Response(401, json={"title": "Unauthorized", "detail": "bad key"})
        path = request.url.path
        if request.method == "GET" and path == "/v1/ledger/checkpoint":
            return httpx.Response(200, text=self.note())
        if request.method == "GET" and path == "/v1/ledger/proofs/consistency":
            old, new = int(request.url.params["from"]), int(request.url.params["to"])
            if not 0 < old <= new <= len(self.entries):
                return httpx.Response(400, json={"title": "Bad Request", "detail": "sizes"})
            proof = tree(self.entries).consistency(old, new)
            return httpx.Response(
                200, json={"from": old, "to": new, "hashes": [b64(h) for h in proof]}
            )
        if request.method == "POST" and path == "/v1/ledger/cosignatures":
            body = json.loads(request.content)
            self.posted.append(body)
            witness = Verifier.parse(body["witness"])
            note = Note.parse(body["checkpoint"])
            note.signed_by(Verifier.parse(self.signer.verifier.vkey))
            timestamp = note.signed_by(witness, cosignature=True)
            checkpoint = Checkpoint.parse(note.text)
            if checkpoint.size > len(self.entries) or checkpoint.root != tree(self.entries).root(
                checkpoint.size
            ):
                return httpx.Response(409, json={"title": "Conflict", "detail": "mismatch"})
            mine = [s for s in note.signatures if s.name == witness.name]
            self.cosignatures.setdefault(checkpoint.size, []).extend(mine)
            return httpx.Response(
                201,
                json={
                    "size": checkpoint.size,
                    "root": b64(checkpoint.root),
                    "witness": body["witness"],
                    "timestamp": timestamp,
                },
            )
        return httpx.Response(404, json={"title": "Not Found", "detail": path})
