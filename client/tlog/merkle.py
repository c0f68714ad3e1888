"""The Merkle tree of RFC 9162 §2.1: hashes, proofs and their verification.

Leaf hash = SHA-256(0x00 ‖ leaf data), node hash = SHA-256(0x01 ‖ left ‖ right), and the
tree over n leaves splits at the largest power of two below n. A store keeps every
*perfect* subtree (2**level leaves starting at a multiple of 2**level) as the node
``(level, index)``: appending a leaf adds it and the perfect subtrees it completes, so
an append writes O(log n) nodes (amortised two), and every hash a proof needs is
folded from O(log n) stored nodes (:func:`perfect_nodes`). Proof generation here is
RFC 9162's PATH and SUBPROOF over ranges; verification is its §2.1.3.2 and §2.1.4.2
algorithms, which need nothing but the proof, the sizes and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
Node = tuple[int, int]
"""A stored perfect subtree: ``(level, index)`` covers leaves
``[index·2**level, (index+1)·2**level)``."""
Range = tuple[int, int]
"""A range of leaves ``[start, end)``, as RFC 9162's D[start:end]."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the empty tree (RFC 9162: the hash of the empty string)."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_nodes(start: int, end: int) -> list[Node]:
    """The stored perfect subtrees whose right fold is MTH(D[start:end]), left to right.

    Valid for every range RFC 9162's recursion visits (``start`` a multiple of the
    smallest power of two ≥ ``end - start``): the greedy left-to-right cut into the
    largest aligned powers of two is then exactly the recursion's split.
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[Node] = []
    at = start
    while at < end:
        level = (end - at).bit_length() - 1
        while at % (1 << level):
            level -= 1
        nodes.append((level, at >> level))
        at += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """The right fold H(h1, H(h2, … H(hk-1, hk))) of perfect subtree hashes, left to right."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes, in order, are RFC 9162's PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    m = index
    # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k, else PATH(m-k, D[k:n]) : MTH(D[0:k])
    # The sibling of each step comes *after* the deeper steps: collect, then reverse.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose hashes, in order, are RFC 9162's PROOF(old, D[0:new])."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    if old == new:
        return []
    ranges: list[Range] = []
    start, end, m, whole = 0, new, old, True
    # SUBPROOF(m, D[n], b): [] if m = n and b; [MTH(D[n])] if m = n and not b;
    # else with k the split: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k,
    # SUBPROOF(m-k, D[k:n], false) : MTH(D[0:k]) otherwise.
    while True:
        if m == end - start:
            if not whole:
                ranges.append((start, end))
            break
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    ranges.reverse()  # the deepest step's hash (if any) leads
    return ranges


def nodes_for(ranges: Iterable[Range]) -> set[Node]:
    """Every stored node the hashes of ``ranges`` are folded from."""
    return {node for start, end in ranges for node in perfect_nodes(start, end)}


def range_hash(start: int, end: int, node: Callable[[Node], bytes]) -> bytes:
    """MTH(D[start:end]) from the stored perfect subtrees (``node`` looks one up)."""
    return fold([node(n) for n in perfect_nodes(start, end)])


def root_nodes(size: int) -> list[Node]:
    """The perfect subtrees whose fold is the root of a tree of ``size`` leaves."""
    return perfect_nodes(0, size) if size else []


def appended_nodes(
    index: int, leaf: bytes, node: Callable[[Node], bytes]
) -> list[tuple[Node, bytes]]:
    """The nodes that appending ``leaf`` (a leaf hash) at ``index`` completes, bottom up:
    the leaf itself, then each perfect subtree it closes. ``node`` looks up the left
    siblings, which exist already (the nodes ``(level, (index >> level) - 1)`` for each
    trailing one bit of ``index``)."""
    made: list[tuple[Node, bytes]] = [((0, index), leaf)]
    level, at, current = 0, index, leaf
    while at & 1:
        current = node_hash(node((level, at - 1)), current)
        level, at = level + 1, at >> 1
        made.append(((level, at), current))
    return made


def siblings_needed(index: int) -> list[Node]:
    """The stored left siblings that appending a leaf at ``index`` reads."""
    needed: list[Node] = []
    level, at = 0, index
    while at & 1:
        needed.append((level, at - 1))
        level, at = level + 1, at >> 1
    return needed


class ProofError(ValueError):
    """A proof that does not verify."""


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` proves ``leaf`` (a leaf hash) at ``index`` is under
    (RFC 9162 §2.1.3.2); ProofError when the proof has the wrong shape."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"leaf {index} is not in the tree of size {size} with that root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless ``proof`` shows the tree of size ``old`` with ``old_root``
    is a prefix of the tree of size ``new`` with ``new_root`` (RFC 9162 §2.1.4.2)."""
    if old > new:
        raise ProofError(f"a tree of size {new} cannot extend one of size {old}")
    if old == new:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {old}")
        return
    if old == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"the tree of size {old} is not a prefix of this one (old root)")
    if sr != new_root:
        raise ProofError(f"the tree of size {old} is not a prefix of this one (new root)")


class Frontier:
    """A growing tree that keeps only the perfect subtrees its root is folded from (one
    per set bit of the size): O(log n) memory, for streaming verifiers."""

    def __init__(self) -> None:
        self.size = 0
        self.nodes: dict[Node, bytes] = {}

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; the nodes its append completes (as :func:`appended_nodes`)."""
        made = appended_nodes(self.size, leaf, self.nodes.__getitem__)
        for sibling in siblings_needed(self.size):
            del self.nodes[sibling]
        top, value = made[-1]
        self.nodes[top] = value
        self.size += 1
        return made

    def root(self) -> bytes:
        """The root of every leaf appended so far."""
        return fold([self.nodes[n] for n in root_nodes(self.size)])


class MemoryTree:
    """A tree kept in memory the same way a store keeps it: every perfect subtree.

    For offline verifiers (``ruis verify``) and tests; the database keeps the same
    nodes in ``ledger_tree`` (:mod:`db.ledger`)."""

    def __init__(self) -> None:
        self.nodes: dict[Node, bytes] = {}
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash."""
        for key, value in appended_nodes(self.size, leaf, self.nodes.__getitem__):
            self.nodes[key] = value
        self.size += 1

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all by default)."""
        size = self.size if size is None else size
        return fold([self.nodes[n] for n in root_nodes(size)])

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size])."""
        size = self.size if size is None else size
        return [range_hash(a, b, self.nodes.__getitem__) for a, b in inclusion_ranges(index, size)]

    def consistency(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, D[0:new])."""
        new = self.size if new is None else new
        return [range_hash(a, b, self.nodes.__getitem__) for a, b in consistency_ranges(old, new)]
