"""The gateway's part of the store: submissions in progress and refusals.

Why a part of its own: these are this node's own work as a wallet's
gateway (the submitter), not ledger state; they make a restart lose
nothing a wallet was told.

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
pending       entry id (32)                                    submission record
refusals      entry id (32)                                    :class:`Refusal` (bounded)
============  ===============================================  ==========================

Pending submissions: a signed entry the submitter took and has not
finished, resumed at the next start.

Refusals: the submitter's final answers survive restarts, bounded to
:data:`MAX_REFUSALS` (the oldest go first), so a wallet can tell an entry
that was refused from one this node never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lmdb

from mycelia.node.store.env import Tables
from mycelia.protocol import codec, schema

__all__ = ["MAX_REFUSALS", "Refusal", "SubmissionTables"]

#: Refusals kept for ``entry_get`` across restarts.
MAX_REFUSALS = 100_000


@dataclass(frozen=True, slots=True)
class Refusal:
    """A submitter's final answer for an entry that was not certified.
    ``final`` is False when the validators' reasons depended on their state
    (``reasons.STALE_STATE``) and the submitter gave up at its deadline."""

    reason: str
    detail: str
    final: bool
    at_ms: int

    def encode(self) -> bytes:
        return codec.encode(
            ["refusal", 1, self.reason, self.detail[:1024], int(self.final), self.at_ms]
        )

    @classmethod
    def decode(cls, data: bytes) -> Refusal:
        f = schema.array(codec.decode(data, max_size=4096), "refusal", 1, 6, "refusal")
        return cls(
            schema.str_(f[2], "reason", max_bytes=64),
            schema.str_(f[3], "detail", max_bytes=4096),
            bool(schema.int_(f[4], "final", 0, 1)),
            schema.int_(f[5], "at_ms", 0, schema.UINT64_MAX),
        )


class SubmissionTables(Tables):
    """Pending submissions and refusals (see the module docstring)."""

    DATABASES = ("pending", "refusals")

    def update_pending_sync(
        self,
        records: list[tuple[bytes, list[Any]]],
        forget: list[bytes],
        refusals: Sequence[tuple[bytes, Refusal]] = (),
    ) -> None:
        """Add submission records, drop finished ones and record refusals,
        in one transaction."""
        encoded = [(k, codec.encode(r)) for k, r in records]
        refused = [(k, r.encode()) for k, r in refusals]

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
            db = self._db["pending"]
            for k, data in encoded:
                txn.put(k, data, db=db)
            for k in forget:
                txn.delete(k, db=db)
            if refused:
                rdb = self._db["refusals"]
                for k, data in refused:
                    txn.put(k, data, db=rdb)
                count = txn.stat(rdb)["entries"]
                if count > MAX_REFUSALS * 11 // 10:  # amortised: one scan per 10%
                    ages = sorted((Refusal.decode(v).at_ms, k) for k, v in txn.cursor(db=rdb))
                    for _, k in ages[: count - MAX_REFUSALS]:
                        txn.delete(k, db=rdb)

        self._write(txn_fn)

    def refusal(self, entry_id: bytes) -> Refusal | None:
        with self._read() as txn:
            raw = txn.get(entry_id, db=self._db["refusals"])
        return None if raw is None else Refusal.decode(raw)

    def pending(self) -> dict[bytes, list[Any]]:
        with self._read() as txn:
            return {k: codec.decode(v) for k, v in txn.cursor(db=self._db["pending"])}
