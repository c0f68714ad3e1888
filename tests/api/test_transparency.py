"""The ledger outsiders can verify, over HTTP: the verifier key, signed checkpoints,
inclusion and consistency proofs, receipts on every release, key ids on entries,
witnesses' cosignatures; and what each catches when the database is rewritten."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from db import accounts
from db.ledger import compute_hash
from tests.conftest import Service
from tests.support.api import VISITORS, analyst, create_consumer, ledger, register_events
from tests.support.insider import rebuild_tree
from tlog import merkle, note

PROBLEM = "application/problem+json"


def _log_key(client: httpx.Client) -> note.Verifier:
    response = client.get("/v1/ledger/key")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return note.Verifier.parse(response.text)


def _checkpoint(client: httpx.Client, key: note.Verifier, size: int | None = None) -> note.Note:
    params = {"size": size} if size is not None else {}
    response = client.get("/v1/ledger/checkpoint", params=params)
    assert response.status_code == 200, response.text
    signed = note.Note.parse(response.text)
    signed.signed_by(key)  # raises unless the log's signature verifies
    return signed


def _tree(client: httpx.Client, key: note.Verifier) -> tuple[int, bytes]:
    point = note.Checkpoint.parse(_checkpoint(client, key).text)
    return point.size, point.root


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _leaf(entry: dict[str, Any]) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(entry["hash"]))


def _check_receipt(answer: dict[str, Any], key: note.Verifier) -> note.Checkpoint:
    """What a client checks of a receipt; the checkpoint it holds."""
    receipt = answer["receipt"]
    signed = note.Note.parse(receipt["checkpoint"])
    signed.signed_by(key)
    point = note.Checkpoint.parse(signed.text)
    entry = receipt["entry"]
    assert compute_hash(entry) == entry["hash"]
    assert entry["seq"] == answer["ledger_seq"] == receipt["index"] + 1
    assert entry["kind"] == "release" and entry["details"]["release_id"] == answer["id"]
    assert entry["cost"] == answer["cost"]
    merkle.verify_inclusion(
        receipt["index"], point.size, _leaf(entry), _b64(receipt["inclusion"]), point.root
    )
    return point


@pytest.fixture
def populated(server: Service, admin: httpx.Client) -> httpx.Client:
    """The events dataset, an analyst with a budget and one release; the analyst."""
    register_events(server, admin)
    ana = analyst(server, admin, amount=5.0)
    assert ana.post("/v1/queries", json=VISITORS).status_code == 200
    return ana


def test_checkpoint_proofs_and_receipts_verify(
    server: Service, admin: httpx.Client, populated: httpx.Client
) -> None:
    key = _log_key(admin)
    assert key.name == "ruis.local/ledger" and key.signature_type == note.ED25519
    assert _log_key(populated).vkey == key.vkey  # analysts need it for their receipts
    entries = ledger(admin)
    size, root = _tree(admin, key)
    assert size == len(entries)
    # the root is RFC 9162's over the entries' hashes, whatever Ruis stores
    memory = merkle.MemoryTree()
    for entry in entries:
        memory.append(_leaf(entry))
    assert memory.root() == root
    for entry in entries:
        proof = admin.get(
            "/v1/ledger/proofs/inclusion", params={"index": entry["seq"] - 1, "size": size}
        )
        assert proof.status_code == 200, proof.text
        merkle.verify_inclusion(
            entry["seq"] - 1, size, _leaf(entry), _b64(proof.json()["hashes"]), root
        )
    # the log grows; every earlier size is consistent with the newer one
    fresh = populated.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}})
    assert fresh.status_code == 200, fresh.text
    point = _check_receipt(fresh.json(), key)
    assert point.size > size
    for old in range(1, size + 1):
        old_root = note.Checkpoint.parse(_checkpoint(admin, key, old).text).root
        proof = populated.get(
            "/v1/ledger/proofs/consistency", params={"from": old, "to": point.size}
        )
        assert proof.status_code == 200, proof.text
        body = proof.json()
        assert (body["from"], body["to"]) == (old, point.size)
        merkle.verify_consistency(old, point.size, old_root, point.root, _b64(body["hashes"]))
    # cached and re-read answers carry a receipt too, with the newer checkpoint
    cached = populated.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.25}})
    assert cached.json()["cached"] is True
    later = _check_receipt(cached.json(), key)
    assert later.size > point.size  # the cached answer's own ledger entry came in between
    reread = populated.get(f"/v1/queries/{fresh.json()['id']}")
    assert _check_receipt(reread.json(), key).size > later.size
    # the stored release never holds a receipt (each answer gets its own)
    listed = populated.get("/v1/queries").json()["items"]
    assert all("receipt" not in item for item in listed)


def test_every_entry_made_with_a_key_carries_its_id(
    server: Service, admin: httpx.Client, populated: httpx.Client
) -> None:
    keys = admin.get("/v1/consumers/ana/keys")
    assert keys.status_code == 200, keys.text
    ana_key = keys.json()["items"][0]["id"]
    entries = ledger(admin)
    releases = [e for e in entries if e["kind"] in ("release", "release_output")]
    assert releases and all(e["key_id"] == ana_key for e in releases)
    made_by_admin = [e for e in entries if e["actor"] == accounts.BOOTSTRAP_ADMIN]
    assert made_by_admin and all(e.get("key_id", "").startswith("key_") for e in made_by_admin)
    system = [e for e in entries if e["actor"] == "system"]
    assert system and all("key_id" not in e for e in system)  # absent, not null
    for entry in entries:  # the hash covers key_id exactly as served
        assert compute_hash(entry) == entry["hash"]
    verified = admin.get("/v1/ledger/verify").json()
    assert verified["valid"] and verified["tree_valid"], verified


def test_roles_and_bad_sizes(server: Service, admin: httpx.Client, populated: httpx.Client) -> None:
    assert populated.get("/v1/ledger/checkpoint").status_code == 403
    assert server.client().get("/v1/ledger/key").status_code == 401
    size = len(ledger(admin))
    for path, params in [
        ("/v1/ledger/checkpoint", {"size": size + 1}),
        ("/v1/ledger/proofs/inclusion", {"index": size, "size": size}),
        ("/v1/ledger/proofs/inclusion", {"index": 0, "size": size + 5}),
        ("/v1/ledger/proofs/consistency", {"from": size, "to": size + 1}),
        ("/v1/ledger/proofs/consistency", {"from": 3, "to": 2}),
        ("/v1/ledger/proofs/consistency", {"from": 0, "to": 2}),
        ("/v1/ledger/proofs/inclusion", {"index": -1, "size": 2}),
    ]:
        response = admin.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.headers["content-type"] == PROBLEM


def _witness(name: str = "witness.example/w1") -> note.Signer:
    return note.generate(name, note.COSIGNATURE_V1)


def _cosigned(checkpoint_note: str, witness: note.Signer) -> str:
    signed = note.Note.parse(checkpoint_note)
    line = note.cosign(signed.text, witness, int(time.time()))
    return note.Note(signed.text, (*signed.signatures, line)).render()


def test_cosignatures_are_stored_and_served(
    server: Service, admin: httpx.Client, populated: httpx.Client
) -> None:
    key = _log_key(admin)
    auditor = server.client(create_consumer(admin, "aud", role="auditor"))
    other = server.client(create_consumer(admin, "aud2", role="auditor"))
    witness = _witness()
    current = auditor.get("/v1/ledger/checkpoint").text
    size = note.Checkpoint.parse(note.Note.parse(current).text).size
    body = {"witness": witness.verifier.vkey, "checkpoint": _cosigned(current, witness)}
    assert admin.post("/v1/ledger/cosignatures", json=body).status_code == 403
    accepted = auditor.post("/v1/ledger/cosignatures", json=body)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["size"] == size
    # the checkpoint at that size now carries both signatures; the log's still verifies
    served = note.Note.parse(auditor.get("/v1/ledger/checkpoint", params={"size": size}).text)
    served.signed_by(key)
    assert served.signed_by(witness.verifier, cosignature=True) is not None
    history = auditor.get("/v1/ledger/checkpoints").json()["items"]
    assert any(h["size"] == size and h["witnesses"] == [witness.name] for h in history)
    # another auditor cannot cosign in that witness's name
    impostor = _witness(witness.name)
    taken = other.post(
        "/v1/ledger/cosignatures",
        json={"witness": impostor.verifier.vkey, "checkpoint": _cosigned(current, impostor)},
    )
    assert taken.status_code == 409, taken.text
    # a signature that does not verify, or a witness key of the wrong type: 422
    wrong = _witness("witness.example/w2")
    forged = body | {"witness": wrong.verifier.vkey}
    assert auditor.post("/v1/ledger/cosignatures", json=forged).status_code == 422
    note_key = note.generate("witness.example/w3")
    as_note = body | {"witness": note_key.verifier.vkey}
    assert auditor.post("/v1/ledger/cosignatures", json=as_note).status_code == 422
    # a checkpoint of another history (another root at that size): 409 checkpoint-mismatch
    other_view = note.Checkpoint(key.name, size, hashlib.sha256(b"elsewhere").digest())
    bogus = note.Note(other_view.text, ()).text + "\n"
    line = note.cosign(other_view.text, witness, int(time.time()))
    mismatch = auditor.post(
        "/v1/ledger/cosignatures",
        json={"witness": witness.verifier.vkey, "checkpoint": bogus + line.line},
    )
    assert mismatch.status_code == 409, mismatch.text
    assert mismatch.json()["type"].endswith("checkpoint-mismatch")


def test_an_insider_rewrite_is_caught_by_an_earlier_checkpoint(
    server: Service, admin: httpx.Client, populated: httpx.Client, engine: Engine
) -> None:
    """Editing an entry and recomputing every later hash keeps the chain valid: the
    server's own verification and an earlier checkpoint's consistency catch it."""
    key = _log_key(admin)
    auditor = server.client(create_consumer(admin, "aud", role="auditor"))
    witness = _witness()
    witnessed = auditor.get("/v1/ledger/checkpoint").text
    body = {"witness": witness.verifier.vkey, "checkpoint": _cosigned(witnessed, witness)}
    assert auditor.post("/v1/ledger/cosignatures", json=body).status_code == 201
    size, root = _tree(admin, key)
    entries = ledger(admin)
    assert note.Checkpoint.parse(note.Note.parse(witnessed).text).size == size
    target = next(e for e in entries if e["kind"] == "budget_set")
    with engine.begin() as conn:  # the insider: new details, every later hash recomputed
        previous = target["prev_hash"]
        for entry in entries[target["seq"] - 1 :]:
            if entry["seq"] == target["seq"]:
                entry["details"] = {**entry["details"], "total": {"model": "pure", "epsilon": 50}}
            entry["prev_hash"] = previous
            entry["hash"] = compute_hash(entry)
            previous = entry["hash"]
            conn.execute(
                text(
                    "UPDATE ledger SET details_json = :d, prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {
                    "d": json.dumps(entry["details"], sort_keys=True, separators=(",", ":")),
                    "p": entry["prev_hash"],
                    "h": entry["hash"],
                    "s": entry["seq"],
                },
            )
        conn.execute(text("UPDATE ledger_head SET hash = :h"), {"h": previous})
    verified = admin.get("/v1/ledger/verify").json()
    assert verified["chain_valid"] is True  # the chain alone is fooled
    assert verified["tree_valid"] is False and verified["valid"] is False
    assert verified["tree_first_bad_seq"] == target["seq"]
    # an insider who also rebuilds the tree is caught by the earlier checkpoint
    rebuild_tree(engine, entries)
    verified = admin.get("/v1/ledger/verify").json()
    assert verified["chain_valid"] and verified["tree_valid"] and verified["reconciled"]
    # ... but not its record of the checkpoints it showed: size no longer has that root
    assert verified["checkpoints_valid"] is False and verified["valid"] is False
    assert verified["checkpoint_first_bad_size"] == size
    # and the witness's cosignature of the old root is no longer served with the new one
    served = note.Note.parse(auditor.get("/v1/ledger/checkpoint", params={"size": size}).text)
    served.signed_by(key)
    assert [s.name for s in served.signatures] == [key.name]
    with engine.begin() as conn:  # the insider cleans that up too
        conn.execute(text("DELETE FROM ledger_cosignatures"))
        conn.execute(text("DELETE FROM ledger_checkpoints"))
    assert admin.get("/v1/ledger/verify").json()["valid"] is True  # the server is fooled
    # whoever kept the earlier checkpoint is not: the ledger goes on, and the consistency
    # proof from the old checkpoint to any newer one fails against the old root
    more = populated.post("/v1/queries", json={**VISITORS, "privacy": {"epsilon": 0.125}})
    assert more.status_code == 200, more.text
    new_size, new_root = _tree(admin, key)
    assert new_size > size
    proof = admin.get("/v1/ledger/proofs/consistency", params={"from": size, "to": new_size})
    assert proof.status_code == 200, proof.text
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(size, new_size, root, new_root, _b64(proof.json()["hashes"]))


def test_a_query_refused_for_what_it_asks_is_ledgered(
    server: Service, admin: httpx.Client, populated: httpx.Client
) -> None:
    """Who asked what, and when, even when nothing was released: the first refusal per
    consumer and problem type each minute is an entry (cost 0), the rest are counted."""
    key_id = admin.get("/v1/consumers/ana/keys").json()["items"][0]["id"]
    before = len(ledger(admin, kind="refused"))
    bad = {**VISITORS, "group_by": ["no_such_column"]}
    answers = [populated.post("/v1/queries", json=bad) for _ in range(3)]
    assert {a.status_code for a in answers} == {422}
    assert populated.post("/v1/queries/preview", json=bad).status_code == 422  # not ledgered
    refused = ledger(admin, kind="refused")[before:]
    assert len(refused) == 1, refused
    entry = refused[0]
    assert entry["details"]["reason"] == "invalid-query"
    assert entry["details"]["detail"] == answers[0].json()["detail"][:500]
    assert entry["details"]["gateway"] == "release"
    assert entry["key_id"] == key_id and entry["consumer"] == "ana"
    assert entry["dataset"] == "events" and entry["cost"] == {"model": "pure", "epsilon": 0}
    # another problem type is ledgered at once; a dataset the analyst holds no budget on
    # (or that does not exist) is not named
    unknown = populated.post("/v1/queries", json={**VISITORS, "dataset": "secret_registry"})
    assert unknown.status_code == 404
    latest = ledger(admin, kind="refused")[-1]
    assert latest["details"]["reason"] == "not-found" and latest["dataset"] is None


def test_a_dropped_tail_is_caught_by_the_checkpoints_shown(
    server: Service, admin: httpx.Client, populated: httpx.Client, engine: Engine
) -> None:
    """Cutting the newest entries (and their tree nodes, and the head) fools the chain and
    the tree, not the record of a checkpoint shown at the longer size."""
    key = _log_key(admin)
    size, _ = _tree(admin, key)
    kept = ledger(admin)[: size - 2]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger WHERE seq > :s"), {"s": size - 2})
    rebuild_tree(engine, kept)
    verified = admin.get("/v1/ledger/verify").json()
    assert verified["chain_valid"] and verified["tree_valid"], verified
    assert verified["checkpoints_valid"] is False and verified["valid"] is False
    assert verified["checkpoint_first_bad_size"] == size
