"""Merkle trees over attested batches of readings.

Why this exists: a host node attests a batch of signed readings with one
``sensor.attest`` entry holding a 32-byte root, not the readings. Anyone who
later fetches a reading together with a proof can check, offline and without
the rest of the batch, that the reading is one the host attested.

Theory of operation
-------------------

Every hash is BLAKE2b-256 in the ``merkle`` domain (``domains.py``, prefix
``"mycelia/merkle/1\\0"``), and the first byte after the prefix says what is
hashed, so a hash of one kind can never stand in for another::

    leaf(data)        = H(0x00 || data)                  # data: signed-reading bytes
    node(left, right) = H(0x01 || left || right)
    root              = H(0x02 || uint64_be(count) || top)

The tree is built level by level from the leaves in batch order: pairs
``(0, 1), (2, 3), …`` are joined into nodes; a last, odd node is promoted to
the next level unchanged (never duplicated — duplicating it is what let two
different Bitcoin blocks share a root, CVE-2012-2459). ``top`` is the one
node left. The root commits to ``count`` as well, so a proof cannot be
re-read against another batch size (RFC 6962 gets the same effect by
signing the tree size beside the root; here the attestation needs just the
root). An empty batch has no root: nothing is attested.

Second preimages: the 0x00 / 0x01 bytes keep a leaf's hash from ever equal
to a node's (that would need a BLAKE2b collision), so neither the 64 bytes
``left || right`` presented as a leaf nor a node hash presented as a leaf
verifies. Promotion without duplication keeps each tree shape unique per
``count``, and ``count`` is in the root.

A proof is ``[index, count, [sibling hashes, from the leaf up]]``; a
promoted level has no sibling and contributes nothing. Verification walks
up from ``leaf(data)`` using ``index``'s bits for left/right, must use every
sibling exactly once, and compares ``H(0x02 || count || top)`` with the
root. Wire form: canonical msgpack (DESIGN §3), at most
:data:`MAX_PROOF_BYTES`.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE, MERKLE
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "MAX_LEAVES",
    "MAX_PROOF_BYTES",
    "MerkleProof",
    "MerkleTree",
    "check_proof",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_hash",
    "verify_proof",
]

_LEAF = b"\x00"
_NODE = b"\x01"
_ROOT = b"\x02"
#: Largest batch a root may commit to; a proof then has at most 32 siblings.
MAX_LEAVES = (1 << 32) - 1
MAX_DEPTH = 32
#: array(1) + index(5) + count(5) + array16 header(3) + 32 × (2 + 32).
MAX_PROOF_BYTES = 1 + 5 + 5 + 3 + MAX_DEPTH * (2 + ID_SIZE)


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf (a signed reading's bytes)."""
    return MERKLE.id(_LEAF + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node over its two children's hashes."""
    return MERKLE.id(_NODE + left + right)


def root_hash(count: int, top: bytes) -> bytes:
    """The root of a tree of ``count`` leaves whose top node is ``top``."""
    return MERKLE.id(_ROOT + count.to_bytes(8, "big") + top)


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """That the leaf at ``index`` of a ``count``-leaf batch is under a root.

    Validates on construction (``malformed``): ``0 <= index < count <=
    MAX_LEAVES``, at most 32 siblings of 32 bytes each. Whether the number
    of siblings fits ``index`` and ``count`` is the verifier's business."""

    index: int
    count: int
    siblings: tuple[bytes, ...]

    def __post_init__(self) -> None:
        schema.int_(self.count, "proof count", 1, MAX_LEAVES)
        schema.int_(self.index, "proof index", 0, self.count - 1)
        if type(self.siblings) is not tuple or len(self.siblings) > MAX_DEPTH:
            raise Refused(Reason.MALFORMED, f"proof siblings: a tuple of at most {MAX_DEPTH}")
        for s in self.siblings:
            schema.bytes_(s, "proof sibling", ID_SIZE)

    def to_wire(self) -> list[Any]:
        return [self.index, self.count, list(self.siblings)]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> MerkleProof:
        return cls.from_wire(codec.decode(data, max_size=MAX_PROOF_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> MerkleProof:
        f = schema.list_(value, "proof", min_len=3, max_len=3)
        sibs = schema.list_(f[2], "proof siblings", max_len=MAX_DEPTH)
        return cls(f[0], f[1], tuple(sibs))


class MerkleTree:
    """A batch's tree, built once (``O(count)`` hashes) to hand out every
    proof in ``O(log count)``. ``leaves`` are the leaf *bytes* in batch order."""

    __slots__ = ("_levels", "count", "root")

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = [leaf_hash(data) for data in leaves]
        if not level:
            raise ValueError("an empty batch has no Merkle root")
        if len(level) > MAX_LEAVES:
            raise ValueError(f"more than {MAX_LEAVES} leaves")
        self.count = len(level)
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])  # promoted unchanged, never duplicated
            self._levels.append(nxt)
            level = nxt
        self.root: bytes = root_hash(self.count, level[0])

    def proof(self, index: int) -> MerkleProof:
        """The proof for the leaf at ``index``."""
        if not 0 <= index < self.count:
            raise IndexError(f"leaf {index} of {self.count}")
        siblings = []
        i = index
        for level in self._levels[:-1]:
            if i % 2:
                siblings.append(level[i - 1])
            elif i + 1 < len(level):
                siblings.append(level[i + 1])
            i //= 2
        return MerkleProof(index, self.count, tuple(siblings))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The root over ``leaves`` (leaf bytes, batch order); ``ValueError`` if empty."""
    return MerkleTree(leaves).root


def _top(leaf: bytes, proof: MerkleProof) -> bytes | None:
    h = leaf_hash(leaf)
    i, n, used = proof.index, proof.count, 0
    sibs = proof.siblings
    while n > 1:
        if i % 2:
            if used == len(sibs):
                return None
            h = node_hash(sibs[used], h)
            used += 1
        elif i + 1 < n:
            if used == len(sibs):
                return None
            h = node_hash(h, sibs[used])
            used += 1
        # else: the last node of an odd level, promoted without a sibling
        i //= 2
        n = (n + 1) // 2
    return h if used == len(sibs) else None


def verify_proof(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True iff ``proof`` shows ``leaf`` (bytes) at ``proof.index`` of a batch
    of ``proof.count`` leaves whose root is ``root``. Never raises."""
    if type(root) is not bytes or type(leaf) is not bytes or not isinstance(proof, MerkleProof):
        return False
    top = _top(leaf, proof)
    return top is not None and hmac.compare_digest(root_hash(proof.count, top), root)


def check_proof(root: bytes, leaf: bytes, proof: MerkleProof) -> None:
    """:func:`verify_proof`, raising ``Refused(bad_proof)`` when it fails."""
    if not verify_proof(root, leaf, proof):
        raise Refused(
            Reason.BAD_PROOF,
            f"proof for leaf {proof.index} of {proof.count} does not lead to the root",
        )
