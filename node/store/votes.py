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
============  ===============================================  ==========================

Durability: validator locks and our votes are written in one transaction
per group of requests and the call returns only after the commit (fsync) —
the caller sends votes after that, so a lock is durable before its vote
leaves the node, and many votes share one fsync.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from mycelia.node.store.env import Tables
from mycelia.protocol.locks import lock_decision
from mycelia.protocol.reasons import Refused

__all__ = ["VoteGrant", "VoteTables"]


@dataclass(frozen=True, slots=True)
class VoteGrant:
    """One validator decision to make durable: lock ``resources`` to
    ``entry_id`` and record ``vote`` — or refuse if any is locked elsewhere."""

    entry_id: bytes
    resources: tuple[bytes, ...]
    vote: bytes


class VoteTables(Tables):
    """Locks and votes (see the module docstring); its one writer is
    :meth:`grant_votes_sync`."""

    DATABASES = ("locks", "votes")

    def grant_votes_sync(self, grants: list[VoteGrant]) -> list[bool]:
        """Lock and record each grant that the lock rule allows, all in one
        durable transaction; returns per grant whether it was granted.
        Returns only after the commit, so callers may then send the votes."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> list[bool]:
            locks = self._db["locks"]
            out = []
            for g in grants:
                try:
                    new = lock_decision(lambda r: txn.get(r, db=locks), g.entry_id, g.resources)
                except Refused:
                    out.append(False)
                    continue
                for resource in new:
                    txn.put(resource, g.entry_id, db=locks)
                txn.put(g.entry_id, g.vote, db=self._db["votes"])
                out.append(True)
            return out

        return self._write(txn_fn)

    def lock(self, resource: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(resource, db=self._db["locks"])

    def vote(self, entry_id: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(entry_id, db=self._db["votes"])
