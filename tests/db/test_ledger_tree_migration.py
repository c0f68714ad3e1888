"""Migration 0009 builds the Merkle tree of a ledger that existed before it: the stored
nodes are RFC 9162's over the old entries, whose hashes (without ``key_id``) still hold,
and appends after it go on in the same tree."""

from __future__ import annotations

from sqlalchemy import text

from db import ledger, ledger_tree
from db.engine import Database
from db.migrate import upgrade
from tlog import merkle

ENTRIES = 37  # not a power of two: the frontier has several subtrees


def _old_entries(database: Database) -> list[str]:
    """``ENTRIES`` chained entries written as revision 0008 stored them; their hashes."""
    hashes: list[str] = []
    previous = ledger.GENESIS_HASH
    with database.engine.begin() as connection:
        for seq in range(1, ENTRIES + 1):
            document = {
                "seq": seq,
                "time": f"2026-03-01T00:00:{seq:02d}.000Z",
                "kind": "budget_set",
                "actor": "admin",
                "consumer": "ana",
                "dataset": "events",
                "cost": None,
                "request_id": f"r{seq}",
                "details": {"n": seq},
                "prev_hash": previous,
            }
            digest = ledger.compute_hash(document)
            connection.execute(
                text(
                    "INSERT INTO ledger (seq, time, kind, actor, consumer, dataset, cost_json,"
                    " request_id, details_json, prev_hash, hash) VALUES (:seq, :time, :kind,"
                    " :actor, :consumer, :dataset, NULL, :request_id, :details, :prev, :hash)"
                ),
                {
                    **{k: document[k] for k in ("seq", "time", "kind", "actor", "consumer")},
                    "dataset": document["dataset"],
                    "request_id": document["request_id"],
                    "details": ledger.canonical_json(document["details"]),
                    "prev": previous,
                    "hash": digest,
                },
            )
            hashes.append(digest)
            previous = digest
        connection.execute(
            text("UPDATE ledger_head SET seq = :s, hash = :h"), {"s": ENTRIES, "h": previous}
        )
    return hashes


def test_the_tree_is_built_for_an_existing_ledger(db_url: str) -> None:
    database = Database(db_url)
    try:
        upgrade(database, "0008")
        hashes = _old_entries(database)
        upgrade(database)
        expected = merkle.MemoryTree()
        for digest in hashes:
            expected.append(merkle.leaf_hash(bytes.fromhex(digest)))
        with database.read() as session:
            stored = ledger_tree.stored_between(session, 0, ENTRIES - 1)
            assert stored == expected.nodes
            assert ledger_tree.root(session, ENTRIES) == expected.root()
            checked = ledger.verify(session)
        assert checked.valid and checked.tree_valid and checked.root == expected.root()
        with database.write() as session:  # appending goes on in the same tree
            entry = ledger.append(session, kind="refused", actor="ana", details={"x": 1})
        expected.append(merkle.leaf_hash(bytes.fromhex(entry.hash)))
        with database.read() as session:
            assert ledger_tree.root(session, ENTRIES + 1) == expected.root()
            assert ledger_tree.consistency(session, ENTRIES, ENTRIES + 1) == expected.consistency(
                ENTRIES
            )
            assert ledger.verify(session).tree_valid
    finally:
        database.dispose()


def test_an_append_without_the_heads_frontier_reads_it_from_the_nodes(db_url: str) -> None:
    """The head's frontier saves every append a read; without it (or with a stale one)
    the append reads the right edge from the stored nodes and the tree stays right."""
    database = Database(db_url)
    try:
        upgrade(database)
        expected = merkle.MemoryTree()
        for i in range(ENTRIES):
            with database.write() as session:
                entry = ledger.append(session, kind="refused", actor="ana", details={"i": i})
            expected.append(merkle.leaf_hash(bytes.fromhex(entry.hash)))
            if i % 5 == 0:  # lose it now and then
                with database.engine.begin() as connection:
                    connection.execute(text("UPDATE ledger_head SET frontier = NULL"))
        with database.read() as session:
            assert ledger_tree.root(session, ENTRIES) == expected.root()
            assert ledger.verify(session).tree_valid
    finally:
        database.dispose()
