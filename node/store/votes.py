"""The validator's part of the store: its resource locks and its votes.

Why a part of its own: these are the one state a validator must never lose
or get wrong — a lock forgotten could sign a conflicting entry — and they
are this node's own decisions, not ledger data. The migrations refuse a
store whose locks and votes do not read back (``migrations.py``).

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
locks         resource key (32)                                entry id (validator)
votes         entry id (32)                                    our vote's bytes
held          economy (32) + ballot id (32)                    ``seals.Held`` wire bytes
inherited     resource key (32)                                economy (32): a lock seeded
                                                               at a handover
sealed        proposal id (32)                                 our ``signed-seal`` bytes
snapshots     economy (32) + epoch (8) + part (8)              our ``signed-lock-snapshot``
                                                               part bytes
seeded        economy (32)                                     the epoch (8, big end.)
                                                               whose locks we hold
============  ===============================================  ==========================

Governance (``docs/governance.md``, "The handover"): a vote for a
``gov.vote`` or ``gov.delegate`` entry also records the ballot it holds
(``held``), in the grant's transaction; a seal (``sealed``) is signed in a
transaction that reads every held ballot of the economy and writes the
seal, and a grant for a ballot of a sealed proposal is refused in its own
transaction, so "never vote a ballot of a proposal it sealed" holds across
any interleaving and restart. At an epoch boundary the validator signs a
snapshot of the economy's locks (those of entries it voted for in that
economy plus those it ``inherited``) and held ballots, once per epoch
(``snapshots``); a validator of the next epoch replaces the economy's locks
and held ballots with the seed of a quorum of snapshots and records the
epoch (``seeded``) in one transaction — it votes in an epoch only once
that epoch is seeded (epoch 0 needs no seed).

Durability: validator locks and our votes are written in one transaction
per group of requests and the call returns only after the commit (fsync) —
the caller sends votes after that, so a lock is durable before its vote
leaves the node, and many votes share one fsync.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import lmdb

from mycelia.node.store.env import StoreError, Tables
from mycelia.protocol import Vote, codec
from mycelia.protocol.handover import LockSnapshot, Seeded
from mycelia.protocol.locks import lock_decision
from mycelia.protocol.reasons import Refused
from mycelia.protocol.seals import Held, Seal

_U64 = struct.Struct(">Q")

__all__ = ["VoteGrant", "VoteTables"]


@dataclass(frozen=True, slots=True)
class VoteGrant:
    """One validator decision to make durable: lock ``resources`` to
    ``entry_id`` and record ``vote`` — or refuse if any is locked elsewhere."""

    entry_id: bytes
    resources: tuple[bytes, ...]
    vote: bytes
    #: the ballot this vote makes us hold (a ``gov.vote``/``gov.delegate``)
    held: Held | None = None
    #: the economy and epoch of the vote: refused once this validator
    #: snapshotted that epoch (``handover.py``); b"" for none
    economy: bytes = b""
    epoch: int = 0


def _held_key(economy: bytes, ballot: bytes) -> bytes:
    return economy + ballot


def _encode_held(h: Held) -> bytes:
    return codec.encode_trusted(h.to_wire())


def _decode_held(raw: bytes) -> Held:
    return Held.from_wire(codec.decode(raw, max_size=128))


class VoteTables(Tables):
    """Locks, votes and the governance state of this validator (see the
    module docstring); its writers are :meth:`grant_votes_sync`,
    :meth:`seal_sync`, :meth:`snapshot_sync` and :meth:`seed_sync`."""

    DATABASES = ("locks", "votes", "held", "inherited", "sealed", "snapshots", "seeded")

    def grant_votes_sync(self, grants: list[VoteGrant]) -> list[bool]:
        """Lock and record each grant that the lock rule allows, all in one
        durable transaction; returns per grant whether it was granted.
        Returns only after the commit, so callers may then send the votes."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> list[bool]:
            locks = self._db["locks"]
            out = []
            for g in grants:
                if (
                    g.held is not None
                    and g.held.vote
                    and txn.get(g.held.scope, db=self._db["sealed"]) is not None
                ):
                    out.append(False)  # we sealed its proposal: never again
                    continue
                part0 = g.economy + _U64.pack(g.epoch) + _U64.pack(0)
                if g.economy and txn.get(part0, db=self._db["snapshots"]) is not None:
                    out.append(False)  # that epoch ended here: we snapshotted it
                    continue
                try:
                    new = lock_decision(lambda r: txn.get(r, db=locks), g.entry_id, g.resources)
                except Refused:
                    out.append(False)
                    continue
                for resource in new:
                    txn.put(resource, g.entry_id, db=locks)
                txn.put(g.entry_id, g.vote, db=self._db["votes"])
                if g.held is not None:
                    key = _held_key(g.economy, g.held.ballot)
                    txn.put(key, _encode_held(g.held), db=self._db["held"])
                out.append(True)
            return out

        return self._write(txn_fn)

    def _held_of(self, txn: lmdb.Transaction[bytes], economy: bytes) -> list[Held]:
        cur = txn.cursor(db=self._db["held"])
        out = []
        if cur.set_range(economy):
            for k, v in cur:
                if k[:32] != economy:
                    break
                out.append(_decode_held(v))
        return out

    def held(self, economy: bytes) -> list[Held]:
        """The ballots this validator holds in ``economy``."""
        with self._read() as txn:
            return self._held_of(txn, economy)

    def sealed(self, proposal: bytes) -> Seal | None:
        with self._read() as txn:
            raw = txn.get(proposal, db=self._db["sealed"])
        return None if raw is None else Seal.decode(raw)

    def seal_sync(
        self, economy: bytes, epoch: int, proposal: bytes, make: Callable[[list[Held]], Seal]
    ) -> Seal:
        """Our seal of ``proposal`` in ``epoch``: the stored one, or
        ``make(held ballots)`` stored in the same transaction (a refusal
        ``make`` raises writes nothing)."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> Seal:
            raw = txn.get(proposal, db=self._db["sealed"])
            if raw is not None:
                old = Seal.decode(raw)
                if old.epoch == epoch:
                    return old
            new = make(self._held_of(txn, economy))
            txn.put(proposal, new.encode(), db=self._db["sealed"])
            return new

        return self._write(txn_fn)

    def _locks_of(self, txn: lmdb.Transaction[bytes], economy: bytes) -> dict[bytes, bytes]:
        """The economy's locks: of entries we voted for in it, and inherited."""
        votes, inherited = self._db["votes"], self._db["inherited"]
        out = {}
        for resource, entry_id in txn.cursor(db=self._db["locks"]):
            mine = txn.get(resource, db=inherited)
            if mine is None:
                raw = txn.get(entry_id, db=votes)
                if raw is None:
                    raise StoreError(f"a lock on {bytes(resource).hex()} with no vote")
                mine = Vote.decode(raw).economy
            if mine == economy:
                out[bytes(resource)] = bytes(entry_id)
        return out

    def snapshot_sync(
        self,
        economy: bytes,
        epoch: int,
        make: Callable[[dict[bytes, bytes], list[Held]], list[LockSnapshot]],
    ) -> list[LockSnapshot]:
        """Our snapshot of ``economy`` at the end of ``epoch``: the stored
        parts, or ``make(locks, held)`` stored in the same transaction."""
        prefix = economy + _U64.pack(epoch)

        def txn_fn(txn: lmdb.Transaction[bytes]) -> list[LockSnapshot]:
            stored = self._parts(txn, prefix)
            if stored:
                return stored
            parts = make(self._locks_of(txn, economy), self._held_of(txn, economy))
            for part in parts:
                txn.put(prefix + _U64.pack(part.part), part.encode(), db=self._db["snapshots"])
            return parts

        return self._write(txn_fn)

    def _parts(self, txn: lmdb.Transaction[bytes], prefix: bytes) -> list[LockSnapshot]:
        cur = txn.cursor(db=self._db["snapshots"])
        out = []
        if cur.set_range(prefix):
            for k, v in cur:
                if k[:40] != prefix:
                    break
                out.append(LockSnapshot.decode(v))
        return out

    def snapshot_part(self, economy: bytes, epoch: int, part: int) -> bytes | None:
        """One part of our snapshot of ``economy`` at the end of ``epoch``."""
        with self._read() as txn:
            key = economy + _U64.pack(epoch) + _U64.pack(part)
            raw = txn.get(key, db=self._db["snapshots"])
        return None if raw is None else bytes(raw)

    def seeded_epoch(self, economy: bytes) -> int:
        """The epoch whose locks we hold (0 until a handover seeded one)."""
        with self._read() as txn:
            raw = txn.get(economy, db=self._db["seeded"])
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def seed_sync(self, economy: bytes, epoch: int, seeded: Seeded) -> None:
        """Replace ``economy``'s locks and held ballots with ``seeded`` and
        record that we hold ``epoch``'s (one transaction)."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
            locks, inherited, held = self._db["locks"], self._db["inherited"], self._db["held"]
            for resource in self._locks_of(txn, economy):
                txn.delete(resource, db=locks)
                txn.delete(resource, db=inherited)
            for h in self._held_of(txn, economy):
                txn.delete(_held_key(economy, h.ballot), db=held)
            for resource, entry_id in seeded.locks.items():
                txn.put(resource, entry_id, db=locks)
                txn.put(resource, economy, db=inherited)
            for h in seeded.held:
                txn.put(_held_key(economy, h.ballot), _encode_held(h), db=held)
            txn.put(economy, _U64.pack(epoch), db=self._db["seeded"])

        self._write(txn_fn)

    def lock(self, resource: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(resource, db=self._db["locks"])

    def vote(self, entry_id: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(entry_id, db=self._db["votes"])
