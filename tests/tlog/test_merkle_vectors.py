"""tlog.merkle against a reference written here from RFC 9162 §2.1, and published vectors.

The reference (``MTH``, ``PATH``, ``PROOF``/``SUBPROOF``) is the RFC's recursion over a
list of leaf data, transcribed without looking at :mod:`tlog.merkle`; nothing expected
here is computed by tlog. The same recursion run over leaf *positions* names the range
D[a:b] behind each proof hash, which gives a second, independent verifier: a proof is
good iff putting its hashes in for those ranges rebuilds the roots (``reference_*_ok``).
tlog's §2.1.3.2/§2.1.4.2 verifiers must agree with it on every good and tampered proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlog.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# ---------------------------------------------------------------------------------------
# RFC 9162 §2.1, transcribed.

D = TypeVar("D")
H = TypeVar("H")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_point(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: Sequence[bytes]) -> bytes:
    """MTH({}) = SHA-256(); MTH({d0}) = SHA-256(0x00 || d0);
    MTH(D_n) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + d[0])
    k = split_point(n)
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: Sequence[D], tree_hash: Callable[[Sequence[D]], H]) -> list[H]:
    """PATH(m, {d0}) = {}; PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k,
    PATH(m - k, D[k:n]) : MTH(D[0:k]) for m >= k."""
    n = len(d)
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*path(m, d[:k], tree_hash), tree_hash(d[k:])]
    return [*path(m - k, d[k:], tree_hash), tree_hash(d[:k])]


def subproof(m: int, d: Sequence[D], b: bool, tree_hash: Callable[[Sequence[D]], H]) -> list[H]:
    """SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}; for m < n:
    SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) if m <= k,
    SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]) if m > k."""
    n = len(d)
    if m == n:
        return [] if b else [tree_hash(d)]
    k = split_point(n)
    if m <= k:
        return [*subproof(m, d[:k], b, tree_hash), tree_hash(d[k:])]
    return [*subproof(m - k, d[k:], False, tree_hash), tree_hash(d[:k])]


def proof(m: int, d: Sequence[D], tree_hash: Callable[[Sequence[D]], H]) -> list[H]:
    """PROOF(m, D_n) = SUBPROOF(m, D_n, true)."""
    return subproof(m, d, True, tree_hash)


Span = tuple[int, int]


def span(positions: Sequence[int]) -> Span:
    """The range D[a:b] a sub-list of leaf positions stands for."""
    return (positions[0], positions[-1] + 1)


def rebuild(start: int, end: int, known: dict[Span, bytes]) -> bytes | None:
    """MTH(D[start:end]) from the hashes of known ranges, None if they do not cover it."""
    if (start, end) in known:
        return known[(start, end)]
    if end - start <= 1:
        return None
    k = split_point(end - start)
    left, right = rebuild(start, start + k, known), rebuild(start + k, end, known)
    return None if left is None or right is None else sha256(b"\x01" + left + right)


def reference_inclusion_ok(
    index: int, size: int, leaf: bytes, hashes: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``hashes``, read as PATH(index, D_size), rebuild ``root`` around ``leaf``."""
    if not 0 <= index < size:
        return False
    ranges = path(index, range(size), span)
    if len(ranges) != len(hashes):
        return False
    known = dict(zip(ranges, hashes, strict=True))
    known[(index, index + 1)] = leaf
    return rebuild(0, size, known) == root


def reference_consistency_ok(
    old: int, new: int, old_root: bytes, new_root: bytes, hashes: Sequence[bytes]
) -> bool:
    """Whether ``hashes``, read as PROOF(old, D_new), rebuild both roots (the verifier
    holds the old root: when ``old`` is a power of two it is a node of the new tree)."""
    if old > new:
        return False
    if old == new:
        return not hashes and old_root == new_root
    if old == 0:
        return not hashes
    ranges = proof(old, range(new), span)
    if len(ranges) != len(hashes):
        return False
    known = dict(zip(ranges, hashes, strict=True))
    old_ok = old & (old - 1) == 0 or rebuild(0, old, known) == old_root
    return old_ok and rebuild(0, new, {**known, (0, old): old_root}) == new_root


# ---------------------------------------------------------------------------------------
# Leaf data: the RFC 6962 test leaves, then distinct filler.

RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
LEAVES = RFC6962_LEAVES + [b"ruis leaf %d" % i for i in range(len(RFC6962_LEAVES), 2048)]
EXHAUSTIVE = 64


def build(data: Sequence[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for item in data:
        tree.append(leaf_hash(item))
    return tree


TREE = build(LEAVES)
"""One tree of 2048 leaves; every smaller tree is its prefix (``root(size)`` and the
proofs take the size)."""

SMALL_ROOTS = [mth(LEAVES[:n]) for n in range(EXHAUSTIVE + 2)]


def flipped(hashes: Sequence[bytes], at: int, byte: int = 0, mask: int = 0x01) -> list[bytes]:
    out = list(hashes)
    item = bytearray(out[at])
    item[byte] ^= mask
    out[at] = bytes(item)
    return out


# ---------------------------------------------------------------------------------------
# Hash primitives and published vectors.


def test_hash_primitives_and_the_empty_tree() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == mth([])
    assert MemoryTree().root() == EMPTY_ROOT
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )


# From transparency-dev/merkle, rfc6962/rfc6962_test.go (TestRFC6962Hasher, commit
# 78493b07ef9b552e3379abf9e23d4da26fbe797c).
def test_published_hasher_vectors() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        leaf_hash(b"L123456").hex()
        == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


# From transparency-dev/merkle, proof/verify_test.go (the RFC 6962 test data, commit
# 02194e9afb6c1d95b5381350007963aa70fff472): `roots` (the root of the first n of the
# eight leaves above, n = 1..8), `inclusionProofs` ({leaf (1-based), size, proof}) and
# `consistencyProofs` ({size1, size2, proof}).
PUBLISHED_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
PUBLISHED_INCLUSION: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (3, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        2,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
PUBLISHED_CONSISTENCY: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def test_published_roots() -> None:
    tree = build(RFC6962_LEAVES)
    for size, want in enumerate(PUBLISHED_ROOTS, start=1):
        assert tree.root(size).hex() == want
        assert mth(RFC6962_LEAVES[:size]).hex() == want  # the reference agrees


@pytest.mark.parametrize(("leaf", "size", "want"), PUBLISHED_INCLUSION)
def test_published_inclusion_proofs(leaf: int, size: int, want: list[str]) -> None:
    tree = build(RFC6962_LEAVES)
    index, hashes = leaf - 1, [bytes.fromhex(h) for h in want]
    assert tree.inclusion(index, size) == hashes
    assert path(index, RFC6962_LEAVES[:size], mth) == hashes
    root = bytes.fromhex(PUBLISHED_ROOTS[size - 1])
    verify_inclusion(index, size, leaf_hash(RFC6962_LEAVES[index]), hashes, root)


@pytest.mark.parametrize(("old", "new", "want"), PUBLISHED_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, want: list[str]) -> None:
    tree = build(RFC6962_LEAVES)
    hashes = [bytes.fromhex(h) for h in want]
    assert tree.consistency(old, new) == hashes
    assert proof(old, RFC6962_LEAVES[:new], mth) == hashes
    old_root, new_root = (bytes.fromhex(PUBLISHED_ROOTS[s - 1]) for s in (old, new))
    verify_consistency(old, new, old_root, new_root, hashes)


# ---------------------------------------------------------------------------------------
# Every tree of 1..64 leaves, every proof.


@pytest.mark.parametrize("size", range(1, EXHAUSTIVE + 1))
def test_roots_equal_the_reference(size: int) -> None:
    assert build(LEAVES[:size]).root() == SMALL_ROOTS[size]
    assert TREE.root(size) == SMALL_ROOTS[size]


@pytest.mark.parametrize("size", range(1, EXHAUSTIVE + 1))
def test_every_inclusion_proof(size: int) -> None:
    root = SMALL_ROOTS[size]
    for index in range(size):
        leaf = leaf_hash(LEAVES[index])
        hashes = TREE.inclusion(index, size)
        assert hashes == path(index, LEAVES[:size], mth), (index, size)
        assert reference_inclusion_ok(index, size, leaf, hashes, root)
        verify_inclusion(index, size, leaf, hashes, root)
        assert root_from_inclusion(index, size, leaf, hashes) == root
        assert_inclusion_tampering_fails(index, size, leaf, hashes, root)


def assert_inclusion_tampering_fails(
    index: int, size: int, leaf: bytes, hashes: list[bytes], root: bytes
) -> None:
    def rejected(i: int, n: int, lf: bytes, hs: Sequence[bytes], rt: bytes) -> None:
        assert not reference_inclusion_ok(i, n, lf, hs, rt), (index, size, i, n)
        with pytest.raises(ProofError):
            verify_inclusion(i, n, lf, hs, rt)

    for at in range(len(hashes)):  # a flipped bit in any hash, first and last byte
        rejected(index, size, leaf, flipped(hashes, at), root)
        rejected(index, size, leaf, flipped(hashes, at, byte=31, mask=0x80), root)
    for other in range(-1, size + 1):  # every wrong index, and out of range
        if other != index:
            rejected(other, size, leaf, hashes, root)
    rejected(index, size * 2, leaf, hashes, root)
    if size > 1:
        rejected(index, size // 2, leaf, hashes, root)
    if hashes:
        rejected(index, size, leaf, hashes[:-1], root)  # truncated
    if len(hashes) > 1:
        rejected(index, size, leaf, [*hashes[1:], hashes[0]], root)  # rotated
    rejected(index, size, leaf, [*hashes, root], root)  # extended
    with pytest.raises(ProofError):  # no root at all, not merely a wrong one
        root_from_inclusion(index, size, leaf, [*hashes, root])
    rejected(index, size, leaf, [*hashes, b""], root)
    rejected(index, size, leaf, [root, *hashes], root)  # prepended
    rejected(index, size, leaf_hash(b"not the leaf"), hashes, root)
    rejected(index, size, leaf, hashes, EMPTY_ROOT)
    rejected(index, size, leaf, hashes, SMALL_ROOTS[size + 1])
    # One more or one fewer leaf is not always visible: RFC 9162's verifier reads the
    # size only through the proof's shape (e.g. leaf 0 of 3 and of 4 take the same two
    # steps), so what binds the size is the signed checkpoint. tlog must then agree with
    # the reference exactly.
    for n in (size - 1, size + 1):
        expected = reference_inclusion_ok(index, n, leaf, hashes, root)
        try:
            verify_inclusion(index, n, leaf, hashes, root)
            verified = True
        except ProofError:
            verified = False
        assert verified == expected, (index, size, n)


@pytest.mark.parametrize("size", range(1, EXHAUSTIVE + 1))
def test_every_consistency_proof(size: int) -> None:
    new_root = SMALL_ROOTS[size]
    for old in range(1, size + 1):
        old_root = SMALL_ROOTS[old]
        hashes = TREE.consistency(old, size)
        assert hashes == proof(old, LEAVES[:size], mth), (old, size)
        assert reference_consistency_ok(old, size, old_root, new_root, hashes)
        verify_consistency(old, size, old_root, new_root, hashes)
        assert_consistency_tampering_fails(old, size, old_root, new_root, hashes)
    verify_consistency(0, size, EMPTY_ROOT, new_root, [])  # everything extends the empty tree


def assert_consistency_tampering_fails(
    old: int, new: int, old_root: bytes, new_root: bytes, hashes: list[bytes]
) -> None:
    def rejected(m: int, n: int, r1: bytes, r2: bytes, hs: Sequence[bytes]) -> None:
        assert not reference_consistency_ok(m, n, r1, r2, hs), (old, new, m, n)
        with pytest.raises(ProofError):
            verify_consistency(m, n, r1, r2, hs)

    for at in range(len(hashes)):
        rejected(old, new, old_root, new_root, flipped(hashes, at))
        rejected(old, new, old_root, new_root, flipped(hashes, at, byte=31, mask=0x80))
    other_root = sha256(b"some other root")
    rejected(old, new, other_root, new_root, hashes)
    rejected(old, new, old_root, other_root, hashes)
    rejected(old, new, old_root, new_root, [*hashes, new_root])  # extended
    rejected(old, new, old_root, new_root, [*hashes, b""])
    rejected(old, new, old_root, new_root, [old_root, *hashes])  # prepended
    rejected(new + 1, new, old_root, new_root, hashes)  # the old tree is bigger
    if old == new:
        return
    rejected(old, new, new_root, old_root, hashes)  # swapped roots
    rejected(old, new, old_root, new_root, [])
    rejected(old, new, old_root, new_root, hashes[:-1])  # truncated
    rejected(old, new, old_root, new_root, [hashes[0], *hashes])
    rejected(old - 1, new, old_root, new_root, hashes)
    rejected(old + 1, new, old_root, new_root, hashes)
    rejected(old, new * 2, old_root, new_root, hashes)
    # As for inclusion, a new size one off is visible only through the proof's shape;
    # tlog must agree with the reference.
    for m, n in ((old ^ 2, new), (old, new // 2), (old, new - 1), (old, new + 1)):
        expected = reference_consistency_ok(m, n, old_root, new_root, hashes)
        try:
            verify_consistency(m, n, old_root, new_root, hashes)
            verified = True
        except ProofError:
            verified = False
        assert verified == expected, (old, new, m, n)


def test_degenerate_sizes() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(0, 0, leaf_hash(b""), [], EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(0, 1, EMPTY_ROOT, SMALL_ROOTS[1], [SMALL_ROOTS[1]])
    with pytest.raises(ProofError):
        verify_consistency(1, 1, SMALL_ROOTS[1], SMALL_ROOTS[1], [SMALL_ROOTS[1]])
    with pytest.raises(ProofError):
        verify_consistency(1, 1, SMALL_ROOTS[1], SMALL_ROOTS[2], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])


# ---------------------------------------------------------------------------------------
# Random trees up to 2048 leaves.


@st.composite
def tree_points(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(st.integers(1, len(LEAVES)))
    return size, draw(st.integers(0, size - 1)), draw(st.integers(1, size))


@settings(max_examples=200, deadline=None)
@given(point=tree_points(), pick=st.integers(0, 10**6), byte=st.integers(0, 31))
def test_random_sizes_verify_and_tampering_fails(
    point: tuple[int, int, int], pick: int, byte: int
) -> None:
    size, index, old = point
    data = LEAVES[:size]
    root, old_root = TREE.root(size), TREE.root(old)
    assert root == mth(data)
    assert old_root == mth(LEAVES[:old])
    leaf = leaf_hash(data[index])

    inclusion = TREE.inclusion(index, size)
    assert inclusion == path(index, data, mth)
    verify_inclusion(index, size, leaf, inclusion, root)
    if inclusion:
        with pytest.raises(ProofError):
            verify_inclusion(
                index, size, leaf, flipped(inclusion, pick % len(inclusion), byte), root
            )
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, inclusion[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, [*inclusion, root], root)
    wrong = [i for i in (-1, *range(size), size) if i != index][pick % (size + 1)]
    with pytest.raises(ProofError):
        verify_inclusion(wrong, size, leaf, inclusion, root)

    consistency = TREE.consistency(old, size)
    assert consistency == proof(old, data, mth)
    verify_consistency(old, size, old_root, root, consistency)
    if consistency:
        tampered = flipped(consistency, pick % len(consistency), byte)
        with pytest.raises(ProofError):
            verify_consistency(old, size, old_root, root, tampered)
        with pytest.raises(ProofError):
            verify_consistency(old, size, old_root, root, consistency[:-1])
        with pytest.raises(ProofError):
            verify_consistency(old, size, root, old_root, consistency)
    with pytest.raises(ProofError):
        verify_consistency(old, size, old_root, root, [*consistency, root])
