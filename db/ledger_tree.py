"""The ledger's RFC 9162 Merkle tree, kept in ``ledger_tree`` beside the entries.

Leaf i (0-based) is SHA-256(0x00 ‖ the 32 bytes of the hash of the entry with seq
i+1). The table holds every perfect subtree (:mod:`tlog.merkle`): an append, inside
the ledger's write transaction, reads the left siblings it closes and writes the leaf
and the subtrees it completes, O(log n) rows at worst and two on average. The tree's
size is always the ledger head's seq. Roots and proofs for any size up to it are
folded from O(log n) stored nodes read in one query; stored nodes are never changed,
so a read transaction sees one consistent tree.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from db.errors import InvalidInput
from db.models import LedgerHead, LedgerTreeNode
from tlog import merkle
from tlog.merkle import Node

_CHUNK = 400  # nodes per query (bound parameters stay well under every driver's limit)


class TreeSizeError(InvalidInput):
    """A tree size or index the ledger does not have."""


def position(node: Node) -> int:
    """The key of node (level, index) in ``ledger_tree``: its last leaf · 64 + its level."""
    level, idx = node
    return (((idx + 1) << level) - 1) * 64 + level


def node_at(pos: int) -> Node:
    """The node (level, index) whose key is ``pos``."""
    level, last = pos & 63, pos >> 6
    return level, ((last + 1) >> level) - 1


def nodes(session: Session, wanted: Iterable[Node]) -> dict[Node, bytes]:
    """The stored hashes of ``wanted``; RuntimeError if one is missing (a broken store)."""
    keys = sorted({position(n) for n in wanted})
    found: dict[Node, bytes] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        rows = session.exec(
            select(col(LedgerTreeNode.pos), col(LedgerTreeNode.hash)).where(
                col(LedgerTreeNode.pos).in_(chunk)
            )
        )
        for pos, value in rows:
            found[node_at(int(pos))] = bytes(value)
    missing = [node_at(k) for k in keys if node_at(k) not in found]
    if missing:
        raise RuntimeError(f"the ledger tree lacks node {missing[0]}; run ledger verification")
    return found


def append_leaf(session: Session, head: LedgerHead, index: int, entry_hash: str) -> None:
    """Add the leaf of the entry with seq ``index + 1`` and the subtrees it completes.

    Must run in the write transaction that appends the entry (which holds the ledger
    head's lock, so leaves are added in order, once). The left siblings come from the
    head's ``frontier`` (the hashes of the perfect subtrees of the tree of ``index``
    leaves, left to right), which this updates, so an append reads nothing; a missing
    or stale frontier is read from the stored nodes instead."""
    frontier = right_edge(session, head, index)
    made = merkle.appended_nodes(
        index, merkle.leaf_hash(bytes.fromhex(entry_hash)), frontier.__getitem__
    )
    session.execute(  # one executemany, not an ORM object per node
        insert(LedgerTreeNode),
        [{"pos": position(node), "hash": value} for node, value in made],
    )
    frontier.update(made)
    head.frontier = b"".join(frontier[n] for n in merkle.root_nodes(index + 1))


def right_edge(session: Session, head: LedgerHead, tree_size: int) -> dict[Node, bytes]:
    """The perfect subtrees whose fold is the root of the tree of ``tree_size`` leaves (the
    head's size): from the head's ``frontier``, or read from the stored nodes when the
    head has none that fits (a head from before it was kept, or one an insider reset)."""
    top = merkle.root_nodes(tree_size)
    edge = head.frontier or b""
    if len(edge) == merkle.HASH_SIZE * len(top):
        return {n: edge[i * 32 : (i + 1) * 32] for i, n in enumerate(top)}
    return nodes(session, top)


def current(session: Session) -> tuple[int, bytes]:
    """The tree's size now and its root, from the head alone (its frontier)."""
    head = session.get(LedgerHead, 1)
    if head is None:  # pragma: no cover - created by the first migration
        return 0, merkle.EMPTY_ROOT
    edge = right_edge(session, head, head.seq)
    return head.seq, merkle.fold([edge[n] for n in merkle.root_nodes(head.seq)])


def size(session: Session) -> int:
    """The current tree size: the number of ledger entries."""
    head = session.get(LedgerHead, 1)
    return head.seq if head is not None else 0


def _check_size(session: Session, tree_size: int) -> None:
    current = size(session)
    if not 0 <= tree_size <= current:
        raise TreeSizeError(f"the ledger's tree has {current} leaves; there is no size {tree_size}")


def root(session: Session, tree_size: int) -> bytes:
    """The root hash of the first ``tree_size`` leaves (TreeSizeError beyond the head)."""
    _check_size(session, tree_size)
    wanted = merkle.root_nodes(tree_size)
    found = nodes(session, wanted)
    return merkle.fold([found[n] for n in wanted])


def _hashes(session: Session, ranges: list[merkle.Range]) -> list[bytes]:
    found = nodes(session, merkle.nodes_for(ranges))
    return [merkle.range_hash(a, b, found.__getitem__) for a, b in ranges]


def inclusion(session: Session, index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(index, D[0:tree_size]): the inclusion proof of leaf ``index``."""
    _check_size(session, tree_size)
    if not 0 <= index < tree_size:
        raise TreeSizeError(f"leaf {index} is not in a tree of size {tree_size}")
    return _hashes(session, merkle.inclusion_ranges(index, tree_size))


def consistency(session: Session, old: int, new: int) -> list[bytes]:
    """RFC 9162 PROOF(old, D[0:new]): that the tree of size ``old`` is a prefix of ``new``."""
    _check_size(session, new)
    if not 0 < old <= new:
        raise TreeSizeError(f"no consistency proof from size {old} to {new}")
    return _hashes(session, merkle.consistency_ranges(old, new))


def stored_between(session: Session, first_leaf: int, last_leaf: int) -> dict[Node, bytes]:
    """The stored nodes that the appends of leaves ``first_leaf..last_leaf`` wrote (the
    node (l, i) is written by the append of its last leaf, (i+1)·2**l − 1): one key range."""
    rows = session.exec(
        select(col(LedgerTreeNode.pos), col(LedgerTreeNode.hash)).where(
            col(LedgerTreeNode.pos) >= first_leaf * 64,
            col(LedgerTreeNode.pos) <= last_leaf * 64 + 63,
        )
    )
    return {node_at(int(pos)): bytes(value) for pos, value in rows}


def stored_count(session: Session) -> int:
    """How many nodes are stored (a tree of n leaves has :func:`expected_count` of them)."""
    return int(session.exec(select(func.count()).select_from(LedgerTreeNode)).one())


def expected_count(tree_size: int) -> int:
    """The perfect subtrees of a tree of ``tree_size`` leaves: Σ_l ⌊n / 2**l⌋ = 2n − popcount(n)."""
    return 2 * tree_size - bin(tree_size).count("1")


def receipt_path(
    session: Session, index: int, known: MutableMapping[Node, bytes] | None = None
) -> tuple[int, bytes, list[bytes]]:
    """The tree's size now, its root and the inclusion proof of leaf ``index`` in it: what
    a receipt holds. Reads the head once (the root is folded from its frontier) and only
    the nodes ``known`` lacks: stored nodes never change, so a caller may keep them, and
    the nodes read are added to ``known``."""
    head = session.get(LedgerHead, 1)
    tree_size = head.seq if head is not None else 0
    if head is None or not 0 <= index < tree_size:
        raise TreeSizeError(f"leaf {index} is not in a tree of size {tree_size}")
    top = merkle.root_nodes(tree_size)
    cache = known if known is not None else {}
    cache.update(right_edge(session, head, tree_size))
    ranges = merkle.inclusion_ranges(index, tree_size)
    missing = [n for n in merkle.nodes_for(ranges) if n not in cache]
    if missing:
        cache.update(nodes(session, missing))
    found = {n: cache[n] for n in merkle.nodes_for(ranges) | set(top)}  # a snapshot
    proof = [merkle.range_hash(a, b, found.__getitem__) for a, b in ranges]
    return tree_size, merkle.fold([found[n] for n in top]), proof
