"""The node's durable state in LMDB.

Why LMDB: one memory-mapped file, readers that never block the writer,
atomic and durable write transactions, and nothing to run beside the node —
right for a Raspberry Pi's SD card as for a server.

Layout (named databases; all keys fixed-width bytes, all values canonical
msgpack or raw ids):

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
meta          b"schema"                                        schema version (ascii)
economies     economy id (32)                                  signed genesis bytes
certs         entry id (32)                                    certificate bytes
chains        economy (32) + author (32) + seq (8, big end.)   entry id
history       economy (32) + account (32) + n (8, big end.)    entry id
accounts      economy (32) + account (32)                      ``Account`` bytes
records       economy (32) + record key (state.py)             record bytes (msgpack)
locks         resource key (32)                                entry id (validator)
votes         entry id (32)                                    our vote's bytes
pending       entry id (32)                                    submission record
peers         peer id (utf-8)                                  canonical list of addrs
============  ===============================================  ==========================

Consistency: a batch of certificates is applied in ONE write transaction —
certificate bytes, chain index and every changed account and record
together — through the protocol's own :class:`~mycelia.protocol.ledger.Ledger` over a
transaction view, so the rules are the protocol's and a crash at any instant
leaves either the whole batch or none of it. Validator locks and our votes
are written in one transaction per group of requests and the call returns
only after the commit (fsync) — the caller sends votes after that, so a lock
is durable before its vote leaves the node, and many votes share one fsync.

Threads: every write transaction runs entirely inside one call of a
``*_sync`` method, which the node runs with ``trio.to_thread.run_sync`` under
a one-slot limiter (LMDB allows one writer; a transaction must stay on its
thread). Reads are short read transactions on any thread.

History: every applied certificate is indexed under each account whose
state it changed (the author, a recipient, an admitted member, a member
whose limit was set), numbered ``n = 1, 2, …`` per account in the order
this node applied them, for the wallet's ``account_history``.

Map size: starts at ``map_size`` (64 MiB by default, valid on 32-bit
systems), and doubles on ``MapFullError`` up to ``max_map_size`` — the
transaction is retried whole.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from mycelia.protocol import Account, Certificate, Economy, Ledger, SignedGenesis, codec
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.locks import lock_decision
from mycelia.protocol.reasons import Refused
from mycelia.protocol.state import EMPTY, Changes

__all__ = ["SCHEMA_VERSION", "ApplyResult", "Store", "StoreError", "VoteGrant"]

SCHEMA_VERSION = 3
MIB = 1 << 20
_DBS = (
    "meta",
    "economies",
    "certs",
    "chains",
    "history",
    "accounts",
    "records",
    "locks",
    "votes",
    "pending",
    "peers",
)
_SEQ = struct.Struct(">Q")
_LAST = b"\xff" * 8
T = TypeVar("T")


class StoreError(Exception):
    """A store that cannot be used as it is (schema mismatch, map at its bound)."""


def chain_key(economy: bytes, author: bytes, seq: int) -> bytes:
    return economy + author + _SEQ.pack(seq)


class _TxnState:
    """A ``ChainState`` over one LMDB transaction for one economy. Reads see
    the transaction's own writes, so a batch applies entry after entry."""

    __slots__ = (
        "_accounts",
        "_certs",
        "_chains",
        "_econ",
        "_history",
        "_records",
        "_touched",
        "_txn",
    )

    def __init__(self, store: Store, txn: lmdb.Transaction, economy: bytes) -> None:
        self._txn = txn
        self._econ = economy
        self._accounts = store._db["accounts"]
        self._chains = store._db["chains"]
        self._certs = store._db["certs"]
        self._history = store._db["history"]
        self._records = store._db["records"]
        self._touched: tuple[bytes, ...] = ()

    def account(self, key: bytes) -> Account:
        raw = self._txn.get(self._econ + key, db=self._accounts)
        return EMPTY if raw is None else Account.decode(raw)

    def get_record(self, key: bytes) -> bytes | None:
        return self._txn.get(self._econ + key, db=self._records)

    def update(self, changes: Changes) -> None:
        for key, acct in changes.accounts.items():
            self._txn.put(self._econ + key, acct.encode(), db=self._accounts)
        for key, value in changes.records.items():
            self._txn.put(self._econ + key, value, db=self._records)
        # The ledger calls update() then record() for each certificate.
        self._touched = tuple(changes.accounts)

    def chain_id(self, author: bytes, seq: int) -> bytes | None:
        return self._txn.get(chain_key(self._econ, author, seq), db=self._chains)

    def record(self, cert: Certificate) -> None:
        e = cert.entry
        self._txn.put(chain_key(self._econ, e.author, e.seq), cert.entry_id, db=self._chains)
        self._txn.put(cert.entry_id, cert.encode(), db=self._certs)
        touched = set(self._touched)
        touched.add(e.author)
        self._touched = ()
        cur = self._txn.cursor(db=self._history)
        for account in sorted(touched):
            prefix = self._econ + account
            n = 1
            found = cur.prev() if cur.set_range(prefix + _LAST) else cur.last()
            if found and cur.key()[:64] == prefix:
                n = _SEQ.unpack(cur.key()[64:])[0] + 1
            self._txn.put(prefix + _SEQ.pack(n), cert.entry_id, db=self._history)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[bytes, ...]
    #: Certificates refused by the ledger (conflict, buffer full) with why.
    refused: tuple[tuple[Certificate, Refused], ...]


@dataclass(frozen=True, slots=True)
class VoteGrant:
    """One validator decision to make durable: lock ``resources`` to
    ``entry_id`` and record ``vote`` — or refuse if any is locked elsewhere."""

    entry_id: bytes
    resources: tuple[bytes, ...]
    vote: bytes


class Store:
    def __init__(
        self,
        path: Path | str,
        *,
        map_size_mb: int = 64,
        max_map_size_mb: int = 1536,
        sync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._max_map = max_map_size_mb * MIB
        self._env = lmdb.open(
            str(self.path),
            map_size=min(map_size_mb, max_map_size_mb) * MIB,
            max_dbs=len(_DBS),
            subdir=True,
            sync=sync,
            metasync=sync,
            readahead=False,  # random reads on SD cards; readahead wastes RAM
            max_spare_txns=4,
        )
        self._db = {name: self._env.open_db(name.encode()) for name in _DBS}
        self._write_lock = threading.Lock()
        self._check_schema()

    def close(self) -> None:
        self._env.close()

    # -- schema ---------------------------------------------------------------

    def _check_schema(self) -> None:
        with self._env.begin(write=True) as txn:
            found = txn.get(b"schema", db=self._db["meta"])
            if found is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self._db["meta"])
                return
        if found != str(SCHEMA_VERSION).encode():
            raise StoreError(
                f"store at {self.path} has schema version {found.decode(errors='replace')}, "
                f"this mycelia uses {SCHEMA_VERSION}; use a matching mycelia version or a new "
                "data directory (the node re-syncs from its peers)"
            )

    # -- the writer --------------------------------------------------------------

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction, growing the map and retrying
        the whole transaction if it fills."""
        with self._write_lock:
            while True:
                try:
                    with self._env.begin(write=True) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    size = self._env.info()["map_size"]
                    if size >= self._max_map:
                        raise StoreError(
                            f"store is full at {size // MIB} MiB (store.max_map_size_mb)"
                        ) from None
                    self._env.set_mapsize(min(size * 2, self._max_map))

    def add_economy_sync(self, signed: SignedGenesis) -> Economy:
        """Store a signed genesis (verified here) and return its economy."""
        economy = Economy.from_signed(signed)
        data = signed.encode()
        self._write(lambda txn: txn.put(economy.id, data, db=self._db["economies"]))
        return economy

    def apply_sync(
        self, economy: Economy, buffer: GapBuffer, certs: list[Certificate]
    ) -> ApplyResult:
        """Apply verified certificates of one economy in one transaction
        (buffering gaps in ``buffer``). ``certs`` must already be verified."""

        held = buffer.snapshot()

        def txn_fn(txn: lmdb.Transaction) -> ApplyResult:
            # Runs again if the map had to grow: start from the same buffer.
            buffer.restore(held)
            ledger = Ledger(economy, _TxnState(self, txn, economy.id), buffer)
            applied: list[bytes] = []
            refused: list[tuple[Certificate, Refused]] = []
            for cert in sorted(certs, key=lambda c: c.entry.seq):
                try:
                    applied.extend(ledger.apply(cert, verified=True))
                except Refused as exc:
                    refused.append((cert, exc))
            return ApplyResult(tuple(applied), tuple(refused))

        try:
            return self._write(txn_fn)
        except BaseException:
            # The transaction was aborted: what it took out of the buffer
            # must go back, or those certificates would be lost.
            buffer.restore(held)
            raise

    def grant_votes_sync(self, grants: list[VoteGrant]) -> list[bool]:
        """Lock and record each grant that the lock rule allows, all in one
        durable transaction; returns per grant whether it was granted.
        Returns only after the commit, so callers may then send the votes."""

        def txn_fn(txn: lmdb.Transaction) -> list[bool]:
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

    def put_pending_sync(self, entry_id: bytes, record: list[Any]) -> None:
        self.update_pending_sync([(entry_id, record)], [])

    def update_pending_sync(
        self, records: list[tuple[bytes, list[Any]]], forget: list[bytes]
    ) -> None:
        """Add submission records and drop finished ones, in one transaction."""
        encoded = [(k, codec.encode(r)) for k, r in records]

        def txn_fn(txn: lmdb.Transaction) -> None:
            db = self._db["pending"]
            for k, data in encoded:
                txn.put(k, data, db=db)
            for k in forget:
                txn.delete(k, db=db)

        self._write(txn_fn)

    def delete_pending_sync(self, *entry_ids: bytes) -> None:
        self.update_pending_sync([], list(entry_ids))

    def put_peer_sync(self, peer_id: str, addrs: list[str]) -> None:
        data = codec.encode(list(addrs))
        self._write(lambda txn: txn.put(peer_id.encode(), data, db=self._db["peers"]))

    # -- readers ---------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[lmdb.Transaction]:
        with self._env.begin(write=False, buffers=False) as txn:
            yield txn

    def economies(self) -> list[SignedGenesis]:
        with self._read() as txn:
            return [SignedGenesis.decode(v) for _, v in txn.cursor(db=self._db["economies"])]

    def economy(self, economy_id: bytes) -> SignedGenesis | None:
        with self._read() as txn:
            raw = txn.get(economy_id, db=self._db["economies"])
        return None if raw is None else SignedGenesis.decode(raw)

    def account(self, economy_id: bytes, key: bytes) -> Account:
        with self._read() as txn:
            raw = txn.get(economy_id + key, db=self._db["accounts"])
        return EMPTY if raw is None else Account.decode(raw)

    def accounts(self, economy_id: bytes) -> dict[bytes, Account]:
        with self._read() as txn:
            cur = txn.cursor(db=self._db["accounts"])
            out = {}
            if cur.set_range(economy_id):
                for k, v in cur:
                    if k[:32] != economy_id:
                        break
                    out[k[32:]] = Account.decode(v)
            return out

    def record(self, economy_id: bytes, key: bytes) -> bytes | None:
        """A protocol state record (``protocol/state.py``), or None."""
        with self._read() as txn:
            return txn.get(economy_id + key, db=self._db["records"])

    def heads(self, economy_id: bytes) -> dict[bytes, int]:
        """``author -> seq`` of every chain in the economy."""
        return {k: a.seq for k, a in self.accounts(economy_id).items() if a.seq}

    def certificate_bytes(self, entry_id: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(entry_id, db=self._db["certs"])

    def unknown(self, entry_ids: list[bytes]) -> set[bytes]:
        """Those of ``entry_ids`` with no stored certificate (one read txn)."""
        with self._read() as txn:
            certs = self._db["certs"]
            return {i for i in entry_ids if txn.get(i, db=certs) is None}

    def certificate(self, entry_id: bytes) -> Certificate | None:
        raw = self.certificate_bytes(entry_id)
        return None if raw is None else Certificate.decode(raw)

    def chain_range(self, economy_id: bytes, author: bytes, first: int, limit: int) -> list[bytes]:
        """Certificate bytes of ``author``'s entries from seq ``first``, at most
        ``limit``, in seq order, stopping at the first gap."""
        out = []
        with self._read() as txn:
            certs = self._db["certs"]
            cur = txn.cursor(db=self._db["chains"])
            prefix = economy_id + author
            expect = first
            if cur.set_range(chain_key(economy_id, author, first)):
                for k, entry_id in cur:
                    if k[:64] != prefix or len(out) >= limit:
                        break
                    if _SEQ.unpack(k[64:])[0] != expect:
                        break
                    out.append(txn.get(entry_id, db=certs))
                    expect += 1
        return out

    def chain_ids(self, economy_id: bytes) -> dict[tuple[bytes, int], bytes]:
        """Every ``(author, seq) -> entry id`` of the economy (tests, audits)."""
        with self._read() as txn:
            cur = txn.cursor(db=self._db["chains"])
            out = {}
            if cur.set_range(economy_id):
                for k, v in cur:
                    if k[:32] != economy_id:
                        break
                    out[(k[32:64], _SEQ.unpack(k[64:])[0])] = v
            return out

    def history(
        self, economy_id: bytes, account: bytes, before: int | None, limit: int
    ) -> list[tuple[int, bytes]]:
        """``(n, certificate bytes)`` of the certificates that changed
        ``account``, newest first, starting below ``before`` (None: the
        newest), at most ``limit``."""
        out: list[tuple[int, bytes]] = []
        prefix = economy_id + account
        with self._read() as txn:
            certs = self._db["certs"]
            cur = txn.cursor(db=self._db["history"])
            start = prefix + (_LAST if before is None else _SEQ.pack(max(0, before)))
            found = cur.prev() if cur.set_range(start) else cur.last()
            while found and len(out) < limit:
                k, entry_id = cur.item()
                if k[:64] != prefix:
                    break
                out.append((_SEQ.unpack(k[64:])[0], txn.get(entry_id, db=certs)))
                found = cur.prev()
        return out

    def lock(self, resource: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(resource, db=self._db["locks"])

    def vote(self, entry_id: bytes) -> bytes | None:
        with self._read() as txn:
            return txn.get(entry_id, db=self._db["votes"])

    def pending(self) -> dict[bytes, list[Any]]:
        with self._read() as txn:
            return {k: codec.decode(v) for k, v in txn.cursor(db=self._db["pending"])}

    def peers(self) -> dict[str, list[str]]:
        with self._read() as txn:
            return {k.decode(): codec.decode(v) for k, v in txn.cursor(db=self._db["peers"])}

    def size_bytes(self) -> int:
        """Bytes in use (pages up to the last used one), for metrics."""
        info, stat = self._env.info(), self._env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]

    def map_size(self) -> int:
        return int(self._env.info()["map_size"])
