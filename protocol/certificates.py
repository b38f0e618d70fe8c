"""Votes and certificates: how a quorum of validators makes an entry final.

Why this exists: there is no global chain; an entry is final once validators
holding a quorum of the economy's weight have voted for it (Byzantine
consistent broadcast, as FastPay). The certificate carries the entry, the
author's signature and the quorum's signatures, and anyone holding the
genesis can verify it offline.

Wire form::

    vote = ["vote", 1, economy, epoch, entry_id, validator, signature]
    cert = ["cert", 1, entry, author_signature, epoch, bitmap, signatures]

A validator signs the *vote id*::

    vote_id = BLAKE2b-256("mycelia/vote/1\\0" + canonical ["vote", 1, economy, epoch, entry_id])

so every validator signs the same 32 bytes for an entry and a certificate
needs one hash however many signers. ``bitmap`` and ``signatures`` follow
``quorum.py``. A certificate is valid iff: its entry's economy is the
economy's id (``wrong_economy``), its epoch is one the economy has — the
current one or an earlier one (``wrong_epoch`` for one it does not know
yet) —, the bitmap is canonical for *that epoch's* committee
(``bad_bitmap``), the signers' weight reaches that committee's quorum
(``quorum_not_reached``), every validator signature verifies
(``bad_signature``), and the author's signature verifies
(``bad_signature``). So a certificate stays valid after the committee
changes: it is checked against the committee of its own epoch, which an
``Economy`` keeps (``economy.py``) and anyone holding the genesis rebuilds
offline from the committee chain (``epochs.py``). A *vote* is only ever for
the epoch in force: a validator votes in its current epoch. Whether the
entry is the *next* one in its author's chain is the ledger's business, not
the certificate's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ENTRY, ID_SIZE, VOTE
from mycelia.protocol.economy import MAX_VALIDATORS, Economy
from mycelia.protocol.entries import MAX_ENTRY_BYTES, Entry, SignedEntry
from mycelia.protocol.quorum import make_bitmap, verify_quorum
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["MAX_CERT_BYTES", "Certificate", "Vote", "assemble", "vote_id"]

MAX_CERT_BYTES = MAX_ENTRY_BYTES + MAX_VALIDATORS * 66 + 128
MAX_VOTE_BYTES = 256


def vote_id(economy: bytes, epoch: int, entry_id: bytes) -> bytes:
    return VOTE.id(codec.encode_trusted(["vote", 1, economy, epoch, entry_id]))


@dataclass(frozen=True, slots=True)
class Vote:
    economy: bytes
    epoch: int
    entry_id: bytes
    validator: bytes
    signature: bytes

    @classmethod
    def make(cls, key: keys.SigningKey, economy: bytes, epoch: int, entry_id: bytes) -> Vote:
        sig = keys.sign(key, VOTE, vote_id(economy, epoch, entry_id))
        return cls(economy, epoch, entry_id, key.public, sig)

    def verify(self, economy: Economy) -> None:
        """Raise :class:`Refused` unless this is a valid vote of one of
        ``economy``'s validators in the epoch in force."""
        if self.economy != economy.id:
            raise Refused(Reason.WRONG_ECONOMY, "vote is for another economy")
        if self.epoch != economy.epoch:
            raise Refused(Reason.WRONG_EPOCH, f"vote epoch {self.epoch} != {economy.epoch}")
        if self.validator not in economy.index:
            raise Refused(Reason.NOT_VALIDATOR, "vote from a key that is not a validator")
        vid = vote_id(self.economy, self.epoch, self.entry_id)
        keys.check_signature(self.validator, VOTE, vid, self.signature, "validator")

    def to_wire(self) -> list[Any]:
        return [
            "vote",
            1,
            self.economy,
            self.epoch,
            self.entry_id,
            self.validator,
            self.signature,
        ]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        return cls.from_wire(codec.decode(data, max_size=MAX_VOTE_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Vote:
        f = schema.array(value, "vote", 1, 7, "vote")
        return cls(
            schema.bytes_(f[2], "economy", ID_SIZE),
            schema.int_(f[3], "epoch", 0, schema.UINT64_MAX),
            schema.bytes_(f[4], "entry_id", ID_SIZE),
            schema.bytes_(f[5], "validator", keys.PUBLIC_KEY_SIZE),
            schema.bytes_(f[6], "signature", keys.SIGNATURE_SIZE),
        )


@dataclass(frozen=True, slots=True)
class Certificate:
    entry: Entry
    author_signature: bytes
    epoch: int
    bitmap: bytes
    signatures: tuple[bytes, ...]
    #: Always derived from ``entry`` (never passed in), so a certificate
    #: rebuilt with ``dataclasses.replace`` cannot carry a stale id.
    entry_id: bytes = field(init=False, compare=False, repr=False)
    #: The canonical bytes, once known: those it was decoded from (strict
    #: decoding proved them canonical) or its first ``encode``. Never passed
    #: in, so ``dataclasses.replace`` starts without them.
    _bytes: bytes | None = field(init=False, default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # The entry's fields were validated on construction, so the trusted
        # encoder gives its canonical bytes without a second type walk.
        object.__setattr__(self, "entry_id", ENTRY.id(codec.encode_trusted(self.entry.to_wire())))

    @property
    def signed_entry(self) -> SignedEntry:
        return SignedEntry(self.entry, self.author_signature)

    def to_wire(self) -> list[Any]:
        return [
            "cert",
            1,
            self.entry.to_wire(),
            self.author_signature,
            self.epoch,
            self.bitmap,
            list(self.signatures),
        ]

    def encode(self) -> bytes:
        """The canonical bytes; a certificate keeps them, so storing,
        gossiping, attaching and serving it never encodes it again."""
        if self._bytes is None:
            object.__setattr__(self, "_bytes", codec.encode(self.to_wire()))
        assert self._bytes is not None
        return self._bytes

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        cert = cls.from_wire(codec.decode(data, max_size=MAX_CERT_BYTES))
        # decode re-encoded and compared: ``data`` is the canonical form.
        object.__setattr__(cert, "_bytes", bytes(data))
        return cert

    @classmethod
    def from_wire(cls, value: Any) -> Certificate:
        f = schema.array(value, "cert", 1, 7, "certificate")
        entry = Entry.from_wire(f[2])
        author_sig = schema.bytes_(f[3], "author_signature", keys.SIGNATURE_SIZE)
        epoch = schema.int_(f[4], "epoch", 0, schema.UINT64_MAX)
        bitmap = schema.bytes_(f[5], "bitmap", max_size=MAX_VALIDATORS // 8)
        raw_sigs = schema.list_(f[6], "signatures", max_len=MAX_VALIDATORS)
        sigs = tuple(schema.bytes_(s, "signature", keys.SIGNATURE_SIZE) for s in raw_sigs)
        return cls(entry, author_sig, epoch, bitmap, sigs)

    def verify(self, economy: Economy) -> None:
        """Raise :class:`Refused` unless this certificate is valid for
        ``economy`` (see the module docstring). Pure and offline."""
        if self.entry.economy != economy.id:
            raise Refused(Reason.WRONG_ECONOMY, "certificate is for another economy")
        if self.epoch > economy.epoch:
            raise Refused(
                Reason.WRONG_EPOCH,
                f"certificate epoch {self.epoch} is past the epoch in force {economy.epoch}",
            )
        committee = economy.committee(self.epoch)
        verify_quorum(
            committee.keys,
            committee.weights,
            committee.quorum,
            VOTE,
            vote_id(economy.id, self.epoch, self.entry_id),
            self.bitmap,
            self.signatures,
        )
        keys.check_signature(
            self.entry.author, ENTRY, self.entry_id, self.author_signature, "author"
        )


def assemble(
    economy: Economy, signed: SignedEntry, votes: Iterable[Vote], *, verified: bool = False
) -> Certificate:
    """Form a certificate from votes for ``signed``. Every vote is verified
    (unless the caller already did: ``verified``); votes for other entries,
    economies or epochs are refused, a validator voting twice counts once.
    Raises ``quorum_not_reached`` if the votes' weight is short."""
    if signed.entry.economy != economy.id:
        raise Refused(Reason.WRONG_ECONOMY, "entry is for another economy")
    entry_id = signed.id
    by_index: dict[int, bytes] = {}
    for vote in votes:
        if vote.entry_id != entry_id:
            raise Refused(Reason.MALFORMED, "vote is for another entry")
        if not verified:
            vote.verify(economy)
        elif vote.validator not in economy.index:
            raise Refused(Reason.NOT_VALIDATOR, "vote from a key that is not a validator")
        by_index[economy.index[vote.validator]] = vote.signature
    weight = economy.weight(by_index)
    if weight < economy.quorum:
        raise Refused(
            Reason.QUORUM_NOT_REACHED, f"votes carry weight {weight} < quorum {economy.quorum}"
        )
    order = sorted(by_index)
    return Certificate(
        entry=signed.entry,
        author_signature=signed.signature,
        epoch=economy.epoch,
        bitmap=make_bitmap(order, len(economy.validators)),
        signatures=tuple(by_index[i] for i in order),
    )
