"""Quorum signatures: a signer bitmap plus the signers' signatures.

Why this exists: a certificate (validators over an entry's vote id) and a
signed genesis (validators over the economy id) both prove "a quorum of this
validator set signed this id". One rule, here, for both.

Wire form: ``bitmap`` is ``ceil(n / 8)`` bytes for ``n`` validators in genesis
order; validator ``i`` signed iff bit ``i % 8`` (least significant first) of
byte ``i // 8`` is set. No bit at or past ``n`` may be set. ``signatures``
lists one 64-byte signature per set bit, in increasing validator index. So
one validator cannot be counted twice, and the bitmap is canonical.

Checks run cheapest first — shape, then weight, then signatures — so a
certificate that could never reach quorum costs no verification.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mycelia.protocol import keys
from mycelia.protocol.domains import Domain
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["bitmap_indices", "make_bitmap", "verify_quorum"]


def make_bitmap(indices: Iterable[int], n: int) -> bytes:
    out = bytearray((n + 7) // 8)
    for i in indices:
        if not 0 <= i < n:
            raise ValueError(f"validator index {i} out of range")
        out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def bitmap_indices(bitmap: bytes, n: int) -> list[int]:
    """The set bits of a canonical bitmap for ``n`` validators, ascending."""
    if type(bitmap) is not bytes or len(bitmap) != (n + 7) // 8:
        raise Refused(Reason.BAD_BITMAP, f"bitmap must be {(n + 7) // 8} bytes for {n} validators")
    out = []
    for byte_index, byte in enumerate(bitmap):
        base = byte_index << 3
        while byte:
            low = byte & -byte
            i = base + low.bit_length() - 1
            if i >= n:
                raise Refused(Reason.BAD_BITMAP, f"bit {i} set but only {n} validators")
            out.append(i)
            byte ^= low
    return out


def verify_quorum(
    validators: Sequence[bytes],
    weights: Sequence[int],
    quorum: int,
    domain: Domain,
    id_: bytes,
    bitmap: bytes,
    signatures: Sequence[bytes],
) -> list[int]:
    """Raise :class:`Refused` unless ``signatures`` prove a quorum over
    ``id_`` in ``domain``; return the signer indices."""
    n = len(validators)
    signers = bitmap_indices(bitmap, n)
    if len(signers) != len(signatures):
        raise Refused(
            Reason.BAD_BITMAP,
            f"bitmap names {len(signers)} signers but {len(signatures)} signatures follow",
        )
    weight = 0
    for i in signers:
        weight += weights[i]
    if weight < quorum:
        raise Refused(Reason.QUORUM_NOT_REACHED, f"signed weight {weight} < quorum {quorum}")
    for i, sig in zip(signers, signatures, strict=True):
        if not keys.verify(validators[i], domain, id_, sig):
            raise Refused(Reason.BAD_SIGNATURE, f"validator {i} signature does not verify")
    return signers
