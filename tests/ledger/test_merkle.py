"""RFC 6962 hashing and proofs against published vectors, then properties on random trees.

Vectors: the Certificate Transparency reference tree of eight leaves, as published in
transparency-dev/merkle ``proof/verify_test.go`` (originally Google's
certificate-transparency C++ ``merkle_tree_test.cc``): leaf data, the root of every prefix
size 1..8, and the inclusion and consistency proofs listed there.  Their leaf indexes are
1-based; ours are 0-based.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safehaven.ledger import merkle
from safehaven.ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # ROOTS[k] is the root of the first k + 1 leaves


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


INCLUSION = [  # (1-based leaf, tree size, proof)
    (1, 1, []),
    (1, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (3, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (2, 5, _h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
]

CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, _h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, _h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]


def test_hash_prefixes_separate_leaves_from_nodes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest() == ROOTS[0]
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == EMPTY_ROOT
    assert root([]) == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_vectors(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_matches_published_vectors(leaf: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAVES[:size], leaf - 1) == proof
    assert verify_inclusion(leaf_hash(LEAVES[leaf - 1]), leaf - 1, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_matches_published_vectors(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAVES[:new], old) == proof
    assert verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("old", "new", "proof"), [c for c in CONSISTENCY if c[2]])
def test_consistency_vectors_fail_when_corrupted(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert not verify_consistency(old - 1, new, r1, r2, proof)
    assert not verify_consistency(old + 1, new, r1, r2, proof)
    assert not verify_consistency(old, new * 2, r1, r2, proof)
    assert not verify_consistency(old, new, r2, r1, proof)
    assert not verify_consistency(old, new, r1, r2, [])
    assert not verify_consistency(old, new, r1, r2, [*proof, r1])
    assert not verify_consistency(old, new, r1, r2, [proof[0], *proof])
    assert not verify_consistency(old, new, r1, r2, proof[:-1])


def test_edge_cases() -> None:
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    assert not verify_consistency(0, 5, ROOTS[0], ROOTS[4], [])  # empty tree has one root
    assert not verify_consistency(3, 2, ROOTS[2], ROOTS[1], [])  # time travel
    assert not verify_consistency(1, 1, ROOTS[0], ROOTS[1], [])
    assert not verify_consistency(1, 1, ROOTS[0], ROOTS[0], [ROOTS[0]])
    assert not verify_inclusion(leaf_hash(b""), 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf_hash(b""), 1, 1, [], ROOTS[0])
    assert not verify_inclusion(b"short", 0, 1, [], b"short")
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(3, 3)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(4, 3)


@pytest.mark.parametrize(("start", "end", "expected"), [
    (0, 1, [(0, 0)]),
    (0, 7, [(2, 0), (1, 2), (0, 6)]),
    (4, 7, [(1, 2), (0, 6)]),
    (8, 16, [(3, 1)]),
    (0, 0, []),
])
def test_complete_subtrees(start: int, end: int, expected: list[tuple[int, int]]) -> None:
    assert merkle.complete_subtrees(start, end) == expected


def _flip(b: bytes, bit: int) -> bytes:
    i = (bit // 8) % len(b)
    return b[:i] + bytes([b[i] ^ (1 << (bit % 8))]) + b[i + 1:]


def _tree(n: int) -> list[bytes]:
    return [b"entry-%d" % i for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_inclusion_proof_verifies_and_any_flipped_bit_fails(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    leaves = _tree(n)
    r, leaf, proof = root(leaves), leaf_hash(leaves[i]), inclusion_proof(leaves, i)
    assert verify_inclusion(leaf, i, n, proof, r)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_inclusion(_flip(leaf, bit), i, n, proof, r)
    assert not verify_inclusion(leaf, i, n, proof, _flip(r, bit))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1:]]
        assert not verify_inclusion(leaf, i, n, bad, r)
    other = data.draw(st.integers(0, 2 * n), label="other index")
    if other != i:
        assert not verify_inclusion(leaf, other, n, proof, r)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_consistency_proof_verifies_and_any_flipped_bit_fails(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300), label="new size")
    m = data.draw(st.integers(0, n), label="old size")
    leaves = _tree(n)
    r_m, r_n, proof = root(leaves[:m]), root(leaves), consistency_proof(leaves, m)
    assert verify_consistency(m, n, r_m, r_n, proof)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not verify_consistency(m, n, _flip(r_m, bit), r_n, proof)
    if m > 0:  # every tree extends the empty one, so only then does the new root matter
        assert not verify_consistency(m, n, r_m, _flip(r_n, bit), proof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:k], _flip(proof[k], bit), *proof[k + 1:]]
        assert not verify_consistency(m, n, r_m, r_n, bad)
    # A different tree of the same size is not an extension of the old one.
    if m > 0:
        forged = [*leaves[: m - 1], b"rewritten", *leaves[m:]]
        assert not verify_consistency(m, n, r_m, root(forged), consistency_proof(forged, m))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.data())
def test_range_functions_agree_with_the_reference(n: int, data: st.DataObject) -> None:
    """The store builds proofs from ranges and stored subtrees; same hashes as the RFC."""
    leaves = _tree(n)
    hashes = [leaf_hash(x) for x in leaves]

    def subtree(level: int, index: int) -> bytes:
        return merkle._range_hash(hashes, (index << level, (index + 1) << level))

    i = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(0, n))
    via_ranges = [merkle.fold([subtree(*x) for x in merkle.complete_subtrees(a, b)])
                  for a, b in merkle.inclusion_ranges(i, n)]
    assert via_ranges == inclusion_proof(leaves, i)
    assert merkle.fold([subtree(*x) for x in merkle.complete_subtrees(0, n)]) == root(leaves)
    assert merkle.fold([subtree(*x) for x in merkle.complete_subtrees(0, m)]) == root(leaves[:m])
