"""Merkle trees over attested batches (``protocol/merkle.py``).

The properties: every leaf's proof verifies against the root, for any batch
size 1…300; and every way of bending a proof — a changed sibling, another
index, another count, a sibling swapped for another hash or moved, a
sibling added or dropped, an inner node or a pair of hashes presented as a
leaf — fails. The hash layout is pinned against an independent BLAKE2b
computation, so another implementation can follow the docstring.
"""

from __future__ import annotations

from hashlib import blake2b

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import MerkleProof, MerkleTree, Reason, Refused, check_proof, merkle_root
from mycelia.protocol import codec as codec_
from mycelia.protocol.merkle import (
    MAX_LEAVES,
    MAX_PROOF_BYTES,
    leaf_hash,
    node_hash,
    root_hash,
    verify_proof,
)

PREFIX = b"mycelia/merkle/1\0"


def H(data: bytes) -> bytes:
    return blake2b(PREFIX + data, digest_size=32).digest()


@st.composite
def batches(draw: st.DrawFn, max_size: int = 300) -> list[bytes]:
    """Distinct leaves (real batches never repeat a reading), of varied lengths."""
    n = draw(st.integers(1, max_size))
    salt = draw(st.binary(max_size=40))
    return [salt + i.to_bytes(4, "big") for i in range(n)]


def test_hash_layout_is_the_documented_one() -> None:
    a, b, c = b"a", b"b", b"c"
    assert leaf_hash(a) == H(b"\x00a")
    assert node_hash(leaf_hash(a), leaf_hash(b)) == H(b"\x01" + H(b"\x00a") + H(b"\x00b"))
    assert root_hash(3, b"\x07" * 32) == H(b"\x02" + (3).to_bytes(8, "big") + b"\x07" * 32)
    # One leaf: the root commits to the leaf hash and the count 1.
    assert merkle_root([a]) == H(b"\x02" + (1).to_bytes(8, "big") + H(b"\x00a"))
    # Three leaves: the odd one is promoted, not duplicated.
    top = H(b"\x01" + H(b"\x01" + H(b"\x00a") + H(b"\x00b")) + H(b"\x00c"))
    assert merkle_root([a, b, c]) == H(b"\x02" + (3).to_bytes(8, "big") + top)


def test_no_duplicate_last_leaf_collision() -> None:
    # CVE-2012-2459: with duplication, [a, b, c] and [a, b, c, c] share a root.
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])
    # The same top at another size is another root.
    tree = MerkleTree([b"a", b"b", b"c", b"d"])
    assert tree.root != merkle_root([b"a", b"b", b"c"])


def test_empty_batch_has_no_root() -> None:
    with pytest.raises(ValueError, match="no Merkle root"):
        merkle_root([])


@given(batches())
def test_every_leaf_proof_verifies(leaves: list[bytes]) -> None:
    tree = MerkleTree(leaves)
    assert tree.count == len(leaves)
    assert tree.root == merkle_root(leaves)
    depth = (len(leaves) - 1).bit_length()
    for i, leaf in enumerate(leaves):
        proof = tree.proof(i)
        assert len(proof.siblings) <= depth
        assert verify_proof(tree.root, leaf, proof)
        check_proof(tree.root, leaf, proof)  # does not raise
        assert MerkleProof.decode(proof.encode()) == proof


@given(batches(), st.data())
def test_a_bent_proof_fails(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    n = len(leaves)
    i = data.draw(st.integers(0, n - 1), label="index")
    leaf, proof = leaves[i], tree.proof(i)
    sibs = proof.siblings

    def fails(p: MerkleProof, what: str, data_: bytes = leaf) -> None:
        assert not verify_proof(tree.root, data_, p), what
        with pytest.raises(Refused) as info:
            check_proof(tree.root, data_, p)
        assert info.value.reason is Reason.BAD_PROOF

    # another leaf's bytes, or this leaf changed by one bit
    fails(proof, "tampered leaf", leaf[:-1] + bytes([leaf[-1] ^ 1]))
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other")
        fails(proof, "another leaf", leaves[j])
        # wrong index, same siblings
        fails(MerkleProof(j, n, sibs), "wrong index")
    # wrong count (any other size that can hold the index)
    other_n = data.draw(
        st.integers(i + 1, max(i + 1, 2 * n + 2)).filter(lambda c: c != n), label="count"
    )
    fails(MerkleProof(i, other_n, sibs), "wrong count")
    if sibs:
        k = data.draw(st.integers(0, len(sibs) - 1), label="sibling")
        bit = data.draw(st.integers(0, 255), label="bit")
        flipped = bytearray(sibs[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        fails(MerkleProof(i, n, (*sibs[:k], bytes(flipped), *sibs[k + 1 :])), "tampered sibling")
        # a sibling replaced by another hash of the tree (a leaf hash here)
        stranger = leaf_hash(leaves[(i + 1 + k) % n] + b"!")
        fails(MerkleProof(i, n, (*sibs[:k], stranger, *sibs[k + 1 :])), "swapped sibling")
        fails(MerkleProof(i, n, sibs[:-1]), "dropped sibling")
    if len(sibs) >= 2:
        k = data.draw(st.integers(0, len(sibs) - 2), label="swap")
        moved = (*sibs[:k], sibs[k + 1], sibs[k], *sibs[k + 2 :])
        fails(MerkleProof(i, n, moved), "siblings swapped in order")
    if len(sibs) < 32:
        fails(MerkleProof(i, n, (*sibs, tree.root)), "extra sibling")
    # the right proof against another batch's root
    assert not verify_proof(merkle_root([*leaves, b"extra"]), leaf, proof)


@given(batches(max_size=64), st.data())
def test_inner_nodes_cannot_pass_as_leaves(leaves: list[bytes], data: st.DataObject) -> None:
    """Second preimages: the 64 bytes under an inner node, or the node's hash
    itself, presented as a leaf of the smaller tree above, fail."""
    n = len(leaves)
    if n < 2:
        leaves = [*leaves, leaves[0] + b"\x01"]
        n = 2
    tree = MerkleTree(leaves)
    pair = data.draw(st.integers(0, n // 2 - 1), label="pair")
    left, right = leaf_hash(leaves[2 * pair]), leaf_hash(leaves[2 * pair + 1])
    # The proof of the pair's node inside the level above: the leaf proof of
    # its left child, minus the first sibling (which was the right child).
    upper = tree.proof(2 * pair)
    assert upper.siblings[0] == right
    half = (n + 1) // 2
    rest = upper.siblings[1:]
    for count in (half, n):
        for index in {pair, 2 * pair} & set(range(count)):
            probe = MerkleProof(index, count, rest)
            assert not verify_proof(tree.root, left + right, probe)
            assert not verify_proof(tree.root, node_hash(left, right), probe)
    # A leaf hash presented as the leaf's data fails too.
    assert not verify_proof(tree.root, left, tree.proof(2 * pair))


def test_proof_bounds_and_wire() -> None:
    tree = MerkleTree([bytes([i]) for i in range(5)])
    proof = tree.proof(4)
    ls = [leaf_hash(bytes([i])) for i in range(5)]
    # leaf 4 is promoted twice; its one sibling is the node over leaves 0-3
    assert proof.siblings == (node_hash(node_hash(ls[0], ls[1]), node_hash(ls[2], ls[3])),)
    assert codec_.decode(proof.encode()) == [4, 5, [proof.siblings[0]]]
    for bad in (
        lambda: MerkleProof(5, 5, ()),  # index == count
        lambda: MerkleProof(-1, 5, ()),
        lambda: MerkleProof(0, 0, ()),
        lambda: MerkleProof(0, MAX_LEAVES + 1, ()),
        lambda: MerkleProof(0, 5, (b"\x00" * 31,)),
        lambda: MerkleProof(0, 5, (b"\x00" * 32,) * 33),
        lambda: MerkleProof(0, 5, [b"\x00" * 32]),  # type: ignore[arg-type]
        lambda: MerkleProof.decode(codec_.encode([0, 5, [b"\x00" * 32], 1])),
    ):
        with pytest.raises(Refused) as info:
            bad()
        assert info.value.reason is Reason.MALFORMED
    widest = MerkleProof(MAX_LEAVES - 1, MAX_LEAVES, (b"\xff" * 32,) * 32)
    assert len(widest.encode()) == MAX_PROOF_BYTES
    with pytest.raises(Refused) as info:
        MerkleProof.decode(widest.encode() + b"\x00")
    assert info.value.reason is Reason.TOO_LARGE
    with pytest.raises(IndexError):
        tree.proof(5)
