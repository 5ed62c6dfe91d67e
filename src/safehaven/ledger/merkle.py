"""RFC 6962 §2.1 Merkle tree hashing and proofs, as pure functions.

We follow RFC 6962 exactly (SHA-256, 0x00 leaf prefix, 0x01 node prefix, split at the largest
power of two below n) rather than inventing a tree shape, so that oversight can check our
heads and proofs with any Certificate Transparency tool, not only with ours.

Two layers:

* the list functions (``root``, ``inclusion_proof``, ``consistency_proof``) take the leaf
  *data* ``D[n]`` as in the RFC; they are the reference the store is tested against;
* the range functions (``inclusion_ranges``, ``consistency_ranges``, ``complete_subtrees``,
  ``fold``) say *which* subtree hashes a proof needs, so a store that keeps the hashes of
  complete subtrees can answer a proof with O(log n) lookups instead of rehashing the log.

The verifiers (RFC 9162 §2.1.3.2 and §2.1.4.2) take only hashes, sizes and the proof, so
they run anywhere: a verifier needs nothing from us but a signed head and a proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]
"""Leaves ``[start, end)``; the unit a proof is made of."""

Node = tuple[int, int]
"""``(level, index)``: the complete subtree over leaves ``[index << level, (index+1) << level)``."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


# --- which subtrees ------------------------------------------------------------------------


def complete_subtrees(start: int, end: int) -> list[Node]:
    """The maximal aligned complete subtrees covering ``[start, end)``, left to right.

    Every range an RFC 6962 proof or root refers to starts at a multiple of a power of two at
    least as large as the range, so this decomposition is the left-full shape the RFC hashes.
    """
    nodes: list[Node] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while start + (1 << level) > end:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Hash of a range from its ``complete_subtrees`` hashes (right to left, as RFC 6962)."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes make ``PATH(index, D[size])``, bottom-up (RFC 6962 §2.1.1)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges whose hashes make ``PROOF(m, D[n])``, in RFC 6962 §2.1.2 order."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    out: list[Range] = []
    start, end, m, whole = 0, new_size, old_size, True
    while True:
        if m == end - start:
            if not whole:
                out.append((start, end))
            break
        k = _split(end - start)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
            m -= k
            whole = False
    out.reverse()
    return out


# --- reference implementation over the leaf data --------------------------------------------


def _range_hash(leaf_hashes: Sequence[bytes], span: Range) -> bytes:
    start, end = span
    if end - start == 1:
        return leaf_hashes[start]
    k = _split(end - start)
    return node_hash(_range_hash(leaf_hashes, (start, start + k)),
                     _range_hash(leaf_hashes, (start + k, end)))


def root(leaves: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` of the leaf data."""
    if not leaves:
        return EMPTY_ROOT
    return _range_hash([leaf_hash(d) for d in leaves], (0, len(leaves)))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    hashes = [leaf_hash(d) for d in leaves]
    return [_range_hash(hashes, r) for r in inclusion_ranges(index, len(leaves))]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    hashes = [leaf_hash(d) for d in leaves]
    return [_range_hash(hashes, r) for r in consistency_ranges(old_size, len(leaves))]


# --- verification (needs no leaves) ---------------------------------------------------------


def _well_formed(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """Does ``proof`` show the leaf with hash ``leaf`` at ``index`` in the tree ``root_hash``?"""
    if not 0 <= index < size or not _well_formed(leaf, root_hash, *proof):
        return False
    fn, sn, acc = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            acc = node_hash(p, acc)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            acc = node_hash(acc, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and acc == root_hash


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Is the tree ``old_root`` of ``old_size`` a prefix of ``new_root`` of ``new_size``?

    Stricter than some verifiers at the edges on purpose: an empty old tree must carry the
    empty-tree root, so no field of a published head is ever left unchecked.
    """
    if not 0 <= old_size <= new_size or not _well_formed(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is a complete subtree: its root is implied
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
