"""Per-economy summaries: what two nodes compare before they compare heads.

Why this exists: a sync round used to ask every peer for its heads
(``author -> seq`` of every chain) and both sides built that list by
decoding every account of the economy — O(authors) per round per peer even
when nothing had changed. A :class:`Summary` answers "do we hold the same
chains?" in O(1): the count of certified entries, the count of chains, and
a digest of the set of chain heads that the applier keeps up to date in the
transaction that applies a batch (``ledger.py``, table ``summary``). Two
nodes holding the same heads have the same summary whatever order they
applied in; a node whose summary equals its peer's skips the heads exchange
(``sync.py``; the wire form and the exact bytes are in ``docs/sync.md``).

The heads digest is a homomorphic set hash, LtHash16 (Lewi, Kim,
Maykov, Weis: "Securing Update Propagation with Homomorphic Hashing", 2019;
the construction of Facebook's folly ``LtHash<16, 1024>``): every head
``(author, seq)`` maps to 1024 lanes of 16 bits,

    lanes(author, seq) = SHAKE-256(b"mycelia/heads/1\\0" + author + seq as 8 bytes
                                    big-endian), 2048 bytes read as 1024
                                    little-endian uint16

and the set's state is the lane-wise sum mod 2^16 of its heads' lanes
(2048 bytes, all zero for no chains). A head moving from ``s`` to ``s'``
subtracts ``lanes(author, s)`` and adds ``lanes(author, s')``: O(1) per
author per batch, and order does not matter (addition commutes). What
peers compare is ``BLAKE2b-256(b"mycelia/heads-sum/1\\0" + state)``.

Why not XOR or a sum mod 2^256 of 256-bit hashes (the cheaper obvious
choices): both are linear enough to attack. With XOR, any 257 heads an
attacker controls give, by Gaussian elimination over GF(2), a subset whose
moves cancel: an author with 257 accounts who gossips some of their entries
to one node and not to another could leave the two nodes with different
heads and equal digests, and sync would then never repair the difference.
A sum mod 2^256 falls to lattice reduction and Wagner's k-sum algorithm for
a few thousand accounts. LtHash16 with 1024 lanes is a short-integer-
solution instance sized for about 200 bits of security, and costs one
SHAKE-256 of 2048 bytes (~10 µs) per head moved.

Fork slots (``forks``, rare, at most a few per economy) need no stored
state: the summary counts them and hashes the sorted list when it is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE

__all__ = ["LANES_BYTES", "HeadsSum", "Summary", "fork_digest", "head_lanes"]

#: 1024 lanes of 16 bits.
LANES_BYTES = 2048
HEAD_PREFIX = b"mycelia/heads/1\0"
DIGEST_PREFIX = b"mycelia/heads-sum/1\0"
FORKS_PREFIX = b"mycelia/fork-slots/1\0"

# The lanes as one little-endian integer: lane i is bits 16i .. 16i+15. Adding
# the even lanes and the odd lanes apart leaves 16 zero bits above each lane,
# where its carry lands and is masked off, so one big-integer addition adds
# 512 lanes mod 2^16 at once.
_EVEN = int.from_bytes(b"\xff\xff\x00\x00" * (LANES_BYTES // 4), "little")
_ODD = _EVEN << 16
_ALL = (1 << (8 * LANES_BYTES)) - 1
_ONES = int.from_bytes(b"\x01\x00" * (LANES_BYTES // 2), "little")
#: Heads summed before the lane sums are reduced (below 2^16: see advance).
_FOLD = 1 << 15


def _add(a: int, b: int) -> int:
    return (((a & _EVEN) + (b & _EVEN)) & _EVEN) | (((a & _ODD) + (b & _ODD)) & _ODD)


def _neg(a: int) -> int:
    """Each lane ``x`` to ``2^16 - x`` (mod 2^16): the complement plus one."""
    return _add(a ^ _ALL, _ONES)


def head_lanes(author: bytes, seq: int) -> int:
    """The lanes of one head, as a little-endian integer."""
    if len(author) != 32 or not 1 <= seq <= schema.UINT64_MAX:
        raise ValueError("a head is a 32-byte author and a seq >= 1")
    xof = hashlib.shake_256(HEAD_PREFIX + author + seq.to_bytes(8, "big"))
    return int.from_bytes(xof.digest(LANES_BYTES), "little")


@dataclass(frozen=True, slots=True)
class HeadsSum:
    """The LtHash16 state of an economy's set of chain heads (see the module
    docstring), with the number of chains it sums."""

    chains: int = 0
    lanes: bytes = bytes(LANES_BYTES)

    def __post_init__(self) -> None:
        if not 0 <= self.chains <= schema.UINT64_MAX:
            raise ValueError("chains: 0 .. 2^64-1")
        if type(self.lanes) is not bytes or len(self.lanes) != LANES_BYTES:
            raise ValueError(f"lanes: {LANES_BYTES} bytes")

    @classmethod
    def of(cls, heads: Iterable[tuple[bytes, int]]) -> HeadsSum:
        """The state of a set of ``(author, seq)`` heads, from scratch."""
        return cls().advance((author, 0, seq) for author, seq in heads)

    def advance(self, moves: Iterable[tuple[bytes, int, int]]) -> HeadsSum:
        """The state after each ``(author, old seq, new seq)`` move; an old
        seq of 0 is a new chain (nothing to take out)."""
        # Sums of the even and of the odd lanes apart, each lane with the 16
        # bits above it free for its carries: no masking per head, and one
        # mask reduces every lane mod 2^16 (before 2^16 heads could fill
        # those 16 bits).
        sums = [0, 0, 0, 0]  # added even, added odd, removed even, removed odd
        chains = self.chains
        for n, (author, old, new) in enumerate(moves, 1):
            if not old < new:
                raise ValueError(f"a head only advances, not from {old} to {new}")
            lanes = head_lanes(author, new)
            sums[0] += lanes & _EVEN
            sums[1] += lanes & _ODD
            if old:
                lanes = head_lanes(author, old)
                sums[2] += lanes & _EVEN
                sums[3] += lanes & _ODD
            else:
                chains += 1
            if n % _FOLD == 0:
                sums = [x & m for x, m in zip(sums, (_EVEN, _ODD, _EVEN, _ODD), strict=True)]
        added = (sums[0] & _EVEN) | (sums[1] & _ODD)
        removed = (sums[2] & _EVEN) | (sums[3] & _ODD)
        state = _add(_add(int.from_bytes(self.lanes, "little"), added), _neg(removed))
        return HeadsSum(chains, state.to_bytes(LANES_BYTES, "little"))

    def digest(self) -> bytes:
        """What peers compare: BLAKE2b-256 over the prefix and the lanes."""
        return hashlib.blake2b(DIGEST_PREFIX + self.lanes, digest_size=ID_SIZE).digest()

    # -- the stored record (table ``summary``) -------------------------------------

    def encode(self) -> bytes:
        return codec.encode_trusted(["summary", 1, self.chains, self.lanes])

    @classmethod
    def decode(cls, raw: bytes) -> HeadsSum:
        f = schema.array(codec.decode(raw, max_size=LANES_BYTES + 64), "summary", 1, 4, "summary")
        return cls(
            schema.int_(f[2], "chains", 0, schema.UINT64_MAX),
            schema.bytes_(f[3], "lanes", LANES_BYTES, max_size=LANES_BYTES),
        )


def fork_digest(slots: Iterable[tuple[bytes, int]]) -> bytes:
    """BLAKE2b-256 over the prefix and each fork slot's ``author + seq``
    (8 bytes big-endian), in (author, seq) order."""
    h = hashlib.blake2b(FORKS_PREFIX, digest_size=ID_SIZE)
    for author, seq in sorted(slots):
        h.update(author + seq.to_bytes(8, "big"))
    return h.digest()


@dataclass(frozen=True, slots=True)
class Summary:
    """What a node says about one economy in answer to ``summary``: the
    certified entries it applied, its chains and their heads' digest, and
    the fork slots it holds evidence for and their digest."""

    certified: int
    chains: int
    heads: bytes
    forks: int
    fork_digest: bytes

    def __post_init__(self) -> None:
        for name in ("certified", "chains", "forks"):
            if not 0 <= getattr(self, name) <= schema.UINT64_MAX:
                raise ValueError(f"{name}: 0 .. 2^64-1")
        for name in ("heads", "fork_digest"):
            if type(getattr(self, name)) is not bytes or len(getattr(self, name)) != ID_SIZE:
                raise ValueError(f"{name}: {ID_SIZE} bytes")

    @classmethod
    def of(cls, certified: int, heads: HeadsSum, slots: list[tuple[bytes, int]]) -> Summary:
        return cls(certified, heads.chains, heads.digest(), len(slots), fork_digest(slots))

    def same_heads(self, other: Summary) -> bool:
        """Both hold the same chain heads (so neither lacks a certificate the
        other could send)."""
        return (self.certified, self.chains, self.heads) == (
            other.certified,
            other.chains,
            other.heads,
        )

    def same_forks(self, other: Summary) -> bool:
        return (self.forks, self.fork_digest) == (other.forks, other.fork_digest)
