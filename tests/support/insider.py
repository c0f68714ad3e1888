"""What an insider with write access to the database does to hide a rewrite: rebuild the
Merkle tree from the entries as they are now and point the head at the last one, so the
server's own chain and tree checks pass."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from db.ledger import GENESIS_HASH
from db.ledger_tree import position
from tlog import merkle


def rebuild_tree(engine: Engine, entries: list[dict[str, Any]]) -> None:
    """``ledger_tree`` holding every perfect subtree of ``entries`` (documents, in seq
    order), and ``ledger_head`` on the last one (its frontier dropped: read again)."""
    tree = merkle.MemoryTree()
    for entry in entries:
        tree.append(merkle.leaf_hash(bytes.fromhex(entry["hash"])))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM ledger_tree"))
        conn.execute(
            text("INSERT INTO ledger_tree (pos, hash) VALUES (:p, :h)"),
            [{"p": position(node), "h": value} for node, value in tree.nodes.items()],
        )
        head = entries[-1] if entries else {"seq": 0, "hash": GENESIS_HASH}
        conn.execute(
            text("UPDATE ledger_head SET seq = :s, hash = :h, frontier = NULL"),
            {"s": head["seq"], "h": head["hash"]},
        )
