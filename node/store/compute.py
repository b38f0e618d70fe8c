"""The compute provider's part of the store: the newest voucher it holds on
each channel that pays it, and the close it has under way.

Why a part of its own: a voucher is the provider's only claim on a
channel's escrow — the consumer signed it, nobody else holds it — so the
provider keeps the newest one durably *before* it does more work for it
(``protocol/compute.py``), and closes the channel with it even after a
crash (``node/compute/closer.py``). It is this node's own state, not
ledger data.

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
vouchers      channel id (32)                                  :class:`HeldVoucher`
============  ===============================================  ==========================

A row is written by the first voucher of a channel and replaced only by a
voucher of a larger cumulative amount (the amount is the voucher's nonce:
``channels.supersedes``, which the provider checked with the voucher), in
a group commit (:meth:`ComputeTables.hold_vouchers_sync`: one transaction,
one fsync, for every voucher that arrived meanwhile). When
the provider closes the channel it records the signed ``channel.close``
entry in the row first (``closing``), so a restart resubmits that very
entry instead of a second one in the same chain slot; the row is deleted
once a settlement of the channel (the close, or a refund that won) is
applied.

Value: ``["held-voucher", 1, economy, amount, signed_voucher, closing]``,
canonical msgpack; ``amount`` the voucher's cumulative amount (so a group
commit compares amounts without decoding the voucher), ``signed_voucher``
the voucher's own canonical bytes (as the consumer sent them),
``closing`` the signed close entry's bytes or empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lmdb

from mycelia.node.store.env import StoreError, Tables
from mycelia.protocol import codec, schema
from mycelia.protocol.channels import MAX_SIGNED_VOUCHER_BYTES, SignedVoucher
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.entries import MAX_ENTRY_BYTES

__all__ = ["ComputeTables", "HeldVoucher"]

_MAX_ROW_BYTES = 80 + MAX_SIGNED_VOUCHER_BYTES + MAX_ENTRY_BYTES


@dataclass(frozen=True, slots=True)
class HeldVoucher:
    """The newest voucher a provider holds on one channel, and the signed
    ``channel.close`` it submitted with it (empty: none yet)."""

    economy: bytes
    voucher: SignedVoucher
    closing: bytes = b""

    @property
    def channel(self) -> bytes:
        return self.voucher.voucher.channel

    @property
    def amount(self) -> int:
        return self.voucher.voucher.cumulative

    def encode(self) -> bytes:
        return _row(self.economy, self.amount, self.voucher.encode(), self.closing)

    @classmethod
    def decode(cls, data: bytes) -> HeldVoucher:
        f = _fields(data)
        economy = schema.bytes_(f[2], "economy", ID_SIZE)
        voucher = SignedVoucher.decode(schema.bytes_(f[4], "voucher", max_size=_MAX_ROW_BYTES))
        if voucher.voucher.cumulative != f[3]:
            raise StoreError("a held voucher whose amount is not its voucher's")
        return cls(economy, voucher, schema.bytes_(f[5], "closing", max_size=MAX_ENTRY_BYTES))


def _row(economy: bytes, amount: int, voucher: bytes, closing: bytes) -> bytes:
    return codec.encode_trusted(["held-voucher", 1, economy, amount, voucher, closing])


def _fields(data: bytes) -> list[Any]:
    return schema.array(
        codec.decode(data, max_size=_MAX_ROW_BYTES), "held-voucher", 1, 6, "held voucher"
    )


class ComputeTables(Tables):
    """Held vouchers (see the module docstring)."""

    DATABASES = ("vouchers",)

    def hold_vouchers_sync(self, vouchers: list[tuple[bytes, SignedVoucher]]) -> list[bool]:
        """Keep each ``(economy, voucher)`` that supersedes the one held on its
        channel, all in one durable transaction; per voucher, whether it is
        now the one held. Returns after the commit, so the caller may go on
        working for what it pays. A channel whose close is under way keeps
        its row (and so the voucher the close carries)."""

        rows = [(e, v.voucher, v.encode()) for e, v in vouchers]

        def txn_fn(txn: lmdb.Transaction[bytes]) -> list[bool]:
            db = self._db["vouchers"]
            out = []
            for economy, voucher, blob in rows:
                key = voucher.channel
                raw = txn.get(key, db=db)
                if raw is not None:
                    f = _fields(raw)  # the amount, without decoding the voucher
                    if f[2] != economy:
                        raise StoreError(f"channel {key.hex()}: a voucher of another economy")
                    if f[5] or voucher.cumulative <= f[3]:  # closing, or not newer
                        out.append(f[4] == blob)
                        continue
                txn.put(key, _row(economy, voucher.cumulative, blob, b""), db=db)
                out.append(True)
            return out

        return self._write(txn_fn)

    def begin_close_sync(self, channel: bytes, signed_close: bytes) -> None:
        """Record the signed ``channel.close`` submitted for ``channel``."""
        self._update(channel, signed_close)

    def abort_close_sync(self, channel: bytes) -> None:
        """The close was refused for a reason another entry can cure: forget it."""
        self._update(channel, b"")

    def forget_voucher_sync(self, channel: bytes) -> None:
        """The channel is settled: its voucher is of no more use."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
            txn.delete(channel, db=self._db["vouchers"])

        self._write(txn_fn)

    def _update(self, channel: bytes, closing: bytes) -> None:
        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
            db = self._db["vouchers"]
            raw = txn.get(channel, db=db)
            if raw is None:
                raise KeyError(f"no voucher held on channel {channel.hex()}")
            held = HeldVoucher.decode(raw)
            txn.put(channel, HeldVoucher(held.economy, held.voucher, closing).encode(), db=db)

        self._write(txn_fn)

    def held_voucher(self, channel: bytes) -> HeldVoucher | None:
        with self._read() as txn:
            raw = txn.get(channel, db=self._db["vouchers"])
        return None if raw is None else HeldVoucher.decode(raw)

    def held_vouchers(self) -> dict[bytes, HeldVoucher]:
        """Every held voucher, by channel (the closer's work list at start)."""
        with self._read() as txn:
            rows: list[Any] = list(txn.cursor(db=self._db["vouchers"]))
        return {bytes(k): HeldVoucher.decode(v) for k, v in rows}
