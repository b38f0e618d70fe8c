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
parked        entry id (32)                                    certificate bytes (verified,
                                                               waiting for a gap in its chain)
pending       entry id (32)                                    submission record
refusals      entry id (32)                                    :class:`Refusal` (bounded)
peers         peer id (utf-8)                                  canonical list of addrs
attests       economy (32) + device (32) + last counter (8)    ``sensor.attest`` entry id
readings      device (32) + counter (8)                        :class:`StoredReading`
ingest        device (32)                                      :class:`IngestState`
unattested    economy (32) + device (32) + counter (8)         empty (the attester's queue)
inflight      entry id (32)                                    signed attestation + its
                                                               reading keys, in batch order
batches       attestation id (32)                              reading keys in batch order,
                                                               newest received ms
received      received ms (8) + device (32) + counter (8)      empty (retention index)
forks         economy (32) + author (32) + seq (8, big end.)   :class:`ForkEvidence` bytes
============  ===============================================  ==========================

Consistency: a batch of certificates is applied in ONE write transaction —
certificate bytes, chain index and every changed account and record
together — through the protocol's own :class:`~mycelia.protocol.ledger.Ledger` over a
transaction view, so the rules are the protocol's and a crash at any instant
leaves either the whole batch or none of it. Validator locks and our votes
are written in one transaction per group of requests and the call returns
only after the commit (fsync) — the caller sends votes after that, so a lock
is durable before its vote leaves the node, and many votes share one fsync.

Parked certificates: a verified certificate whose author's chain has a gap
here (its predecessor has not arrived) cannot be applied yet, but it is
already final. It is written to ``parked`` in the same transaction that
finds the gap, and deleted in the one that applies it, so the protocol's
in-memory :class:`~mycelia.protocol.ledger.GapBuffer` is only a cache of
``parked``: at start the node reloads it (:meth:`Store.parked`). A
certificate counts as stored — :meth:`Store.certificate` finds it, a status
may say "certified" — as soon as it is in either table.

Refusals: the submitter's final answers survive restarts, bounded to
:data:`MAX_REFUSALS` (the oldest go first), so a wallet can tell an entry
that was refused from one this node never saw.

Schema versions and migration: ``meta/schema`` names the layout. Opening a
store of an older schema migrates it in place, one step ``N -> N+1`` at a
time, each in one write transaction that also bumps the version (a crash
leaves the store at N or at N+1, never between). Migrations keep every
certificate, chain, account, validator lock and vote, pending submission and
reading: a validator that lost its locks could vote for a conflicting entry,
so there is no "delete and re-sync". A store of an unknown (newer) schema,
or whose locks and votes cannot be read, is refused with
:class:`StoreError` before anything is written.

==========  =============================================================
schema      change
==========  =============================================================
4 -> 5      adds ``parked``, ``refusals`` and ``forks`` (empty: schema 4
            kept its gap buffer in memory, its refusals nowhere, and
            recorded no fork evidence); checks that every lock and vote
            reads back
==========  =============================================================

Threads: every write transaction runs entirely inside one call of a
``*_sync`` method, which the node runs with ``trio.to_thread.run_sync`` under
a one-slot limiter (LMDB allows one writer; a transaction must stay on its
thread). Reads are short read transactions on any thread.

History: every applied certificate is indexed under each account whose
state it changed (the author, a recipient, an admitted member, a member
whose limit was set), numbered ``n = 1, 2, …`` per account in the order
this node applied them, for the wallet's ``account_history``.

Sensors: ``attests`` is ledger data, a secondary index over the certified
``sensor.attest`` entries (written with them, in the same transaction), so
``sensor_claimable`` finds a device's attestations without a scan. The other
sensor databases are this node's own, not ledger state: the readings it
accepted as a host, each with the attestation that covers it and its leaf
index there (so a proof can be rebuilt from the batch). A reading moves
``unattested`` → ``inflight`` (the attester built and signed an attestation
of it and submits it) → attested (``batches`` lists the batch; the reading
names its attestation), or back to ``unattested`` if the attestation was
refused. The ``inflight`` record holds the signed entry, so after a crash
the attester resubmits the *same* entry rather than a second one in its
chain slot. Ingest writes a whole group of requests' readings in one
transaction (``ingest_sync``); retention (``prune_readings_sync``) deletes
old readings by the ``received`` index, a batch only once all of its
readings are old (its proofs need all of them), and never the certificates.

Forks: ``forks`` is ledger data too, written by the ledger in the apply
transaction that found the conflict (``_TxnState.record_fork``), so a fork
is never applied past even across a crash: the first evidence per slot is
kept (one pair proves the slot forked); :meth:`Store.fork_seq` gives the
lowest forked seq of an author, which the validator's ``check`` reads.

Map size: starts at ``map_size`` (64 MiB by default, valid on 32-bit
systems), and doubles on ``MapFullError`` up to ``max_map_size`` — the
transaction is retried whole.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from mycelia.protocol import (
    Account,
    Certificate,
    Economy,
    Ledger,
    SignedGenesis,
    Vote,
    codec,
    schema,
)
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.forks import ForkEvidence
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.locks import lock_decision
from mycelia.protocol.reasons import Refused
from mycelia.protocol.sensors import ImpactClaim, SensorAttest
from mycelia.protocol.state import EMPTY, Changes

__all__ = [
    "MAX_BATCH_READINGS",
    "SCHEMA_VERSION",
    "Accepted",
    "ApplyResult",
    "InFlight",
    "IngestState",
    "Refusal",
    "Store",
    "StoreError",
    "StoredReading",
    "VoteGrant",
    "reading_key",
]

SCHEMA_VERSION = 5
#: The oldest schema this code migrates from.
OLDEST_SCHEMA = 4
#: Refusals kept for ``entry_get`` across restarts.
MAX_REFUSALS = 100_000
MIB = 1 << 20
log = logging.getLogger("mycelia.store")
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
    "parked",
    "pending",
    "refusals",
    "peers",
    "attests",
    "readings",
    "ingest",
    "unattested",
    "inflight",
    "batches",
    "received",
    "forks",
)
_SEQ = struct.Struct(">Q")
_LAST = b"\xff" * 8
#: Most readings in one attested batch: its key list must decode within the
#: codec's item bound (the attester never builds larger ones).
MAX_BATCH_READINGS = 60_000
T = TypeVar("T")


class StoreError(Exception):
    """A store that cannot be used as it is (schema mismatch, map at its bound)."""


def chain_key(economy: bytes, author: bytes, seq: int) -> bytes:
    return economy + author + _SEQ.pack(seq)


def reading_key(device: bytes, counter: int) -> bytes:
    """The key of a stored reading: device (32) + counter (8, big-endian),
    so a device's readings are adjacent and in counter order."""
    return device + _SEQ.pack(counter)


def _counter(key: bytes) -> int:
    return int(_SEQ.unpack(key[-8:])[0])


# -- the sensor records (this node's own, not ledger state) -------------------------


@dataclass(frozen=True, slots=True)
class StoredReading:
    """A reading this node accepted as its device's host: the signed-reading
    bytes as the device sent them (canonical: they were decoded strictly),
    when it arrived, and — once attested — the attestation's entry id and
    the reading's leaf index in that batch (``b""`` and -1 before)."""

    economy: bytes
    signed: bytes
    received_ms: int
    attestation: bytes = b""
    index: int = -1

    @property
    def attested(self) -> bool:
        return bool(self.attestation)

    def encode(self) -> bytes:
        return codec.encode_trusted(
            [
                "stored-reading",
                1,
                self.economy,
                self.signed,
                self.received_ms,
                self.attestation,
                self.index,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> StoredReading:
        f = schema.array(codec.decode(data, max_size=512), "stored-reading", 1, 7, "reading")
        return cls(
            schema.bytes_(f[2], "economy", ID_SIZE),
            schema.bytes_(f[3], "signed", max_size=256),
            schema.int_(f[4], "received_ms", 0),
            schema.bytes_(f[5], "attestation", max_size=ID_SIZE),
            schema.int_(f[6], "index", -1),
        )


@dataclass(frozen=True, slots=True)
class IngestState:
    """Per device: the economy its readings here name, the last counter this
    node accepted (replay protection across restarts) and how many of its
    readings the store holds."""

    economy: bytes
    last_accepted: int
    readings: int

    def encode(self) -> bytes:
        return codec.encode_trusted(["ingest", 1, self.economy, self.last_accepted, self.readings])

    @classmethod
    def decode(cls, data: bytes) -> IngestState:
        f = schema.array(codec.decode(data, max_size=128), "ingest", 1, 5, "ingest state")
        return cls(
            schema.bytes_(f[2], "economy", ID_SIZE),
            schema.int_(f[3], "last_accepted", 0, schema.UINT64_MAX),
            schema.int_(f[4], "readings", 0),
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    """One reading ingest accepted, to be written by :meth:`Store.ingest_sync`."""

    economy: bytes
    device: bytes
    counter: int
    signed: bytes


@dataclass(frozen=True, slots=True)
class InFlight:
    """An attestation the attester signed and submitted, not yet settled:
    the signed entry (resubmitted as is after a restart) and the keys of its
    readings in batch order (leaf ``i`` is ``keys[i]``)."""

    economy: bytes
    signed_entry: bytes
    keys: tuple[bytes, ...]

    def encode(self) -> bytes:
        return codec.encode_trusted(
            ["inflight", 1, self.economy, self.signed_entry, list(self.keys)]
        )

    @classmethod
    def decode(cls, data: bytes) -> InFlight:
        f = schema.array(codec.decode(data, max_size=64 << 20), "inflight", 1, 5, "in flight")
        return cls(
            schema.bytes_(f[2], "economy", ID_SIZE),
            schema.bytes_(f[3], "signed entry", max_size=1 << 16),
            tuple(
                schema.bytes_(k, "reading key", 40)
                for k in schema.list_(f[4], "keys", max_len=MAX_BATCH_READINGS)
            ),
        )


def _encode_batch(economy: bytes, keys: list[bytes], newest_ms: int) -> bytes:
    return codec.encode_trusted(["batch", 1, economy, keys, newest_ms])


def _decode_batch(data: bytes) -> tuple[bytes, list[bytes], int]:
    f = schema.array(codec.decode(data, max_size=64 << 20), "batch", 1, 5, "batch")
    keys = [
        schema.bytes_(k, "reading key", 40)
        for k in schema.list_(f[3], "keys", max_len=MAX_BATCH_READINGS)
    ]
    return f[2], keys, schema.int_(f[4], "newest", 0)


class _TxnState:
    """A ``ChainState`` over one LMDB transaction for one economy. Reads see
    the transaction's own writes, so a batch applies entry after entry."""

    __slots__ = (
        "_accounts",
        "_attests",
        "_certs",
        "_chains",
        "_econ",
        "_forks",
        "_history",
        "_records",
        "_touched",
        "_txn",
        "claims",
    )

    def __init__(self, store: Store, txn: lmdb.Transaction, economy: bytes) -> None:
        self._txn = txn
        self._econ = economy
        self._accounts = store._db["accounts"]
        self._chains = store._db["chains"]
        self._certs = store._db["certs"]
        self._history = store._db["history"]
        self._records = store._db["records"]
        self._attests = store._db["attests"]
        self._forks = store._db["forks"]
        self._touched: tuple[bytes, ...] = ()
        #: totals of the impact claims applied in this transaction (metrics)
        self.claims: list[int] = []

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

    def certificate(self, entry_id: bytes) -> Certificate | None:
        raw = self._txn.get(entry_id, db=self._certs)
        return None if raw is None else Certificate.decode(raw)

    def fork_seq(self, author: bytes) -> int | None:
        return _first_fork(self._txn, self._forks, self._econ + author)

    def record_fork(self, evidence: ForkEvidence) -> bool:
        key = chain_key(self._econ, evidence.author, evidence.seq)
        return bool(self._txn.put(key, evidence.encode(), db=self._forks, overwrite=False))

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
        body = e.body
        if isinstance(body, SensorAttest):
            # Per (device, last counter): successive attestations of a device
            # strictly increase, so the index lists them in order.
            for row in body.devices:
                key = self._econ + row.device + _SEQ.pack(row.last)
                self._txn.put(key, cert.entry_id, db=self._attests)
        elif isinstance(body, ImpactClaim):
            self.claims.append(body.total)


def _first_fork(txn: lmdb.Transaction, db: Any, prefix: bytes) -> int | None:
    """The lowest seq with fork evidence under ``economy + author``."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix) and cur.key()[:64] == prefix:
        return _counter(cur.key())
    return None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[bytes, ...]
    #: Certificates refused by the ledger (conflict, buffer full) with why.
    refused: tuple[tuple[Certificate, Refused], ...]
    #: Certificates of this call stored in ``parked`` (durable, waiting for
    #: their chain's gap to fill), including ones parked before.
    parked: tuple[bytes, ...] = ()

    #: Fork evidence the batch recorded (slots new to this store).
    forks: tuple[ForkEvidence, ...] = ()
    #: Certified entries the batch showed to exist on another branch
    #: (``Ledger.suspects``): fetching them proves a fork.
    suspects: tuple[bytes, ...] = ()


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
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            found = self._schema_found()
            if found is not None and found < SCHEMA_VERSION:
                self._check_locks_and_votes()  # before anything is written
            self._db = {name: self._env.open_db(name.encode()) for name in _DBS}
            self._migrate(found)
        except BaseException:
            self._env.close()
            raise
        #: impact claims applied since this store was opened, and the sum of
        #: their totals (the daemon exports both as metrics)
        self.claims_applied = 0
        self.claimed_units = 0

    def close(self) -> None:
        # After any write transaction still running in a worker thread (the
        # ingest's group commit may outlive the node's services at a stop).
        with self._write_lock:
            self._closed = True
            self._env.close()

    # -- schema ---------------------------------------------------------------

    def _schema_found(self) -> int | None:
        """The schema of an existing store (None for a new one), read
        without writing anything; :class:`StoreError` if this code cannot
        open it."""
        try:
            meta = self._env.open_db(b"meta", create=False)
        except lmdb.NotFoundError:
            return None
        with self._env.begin(write=False) as txn:
            raw = txn.get(b"schema", db=meta)
        if raw is None:
            return None
        try:
            found = int(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise StoreError(f"store at {self.path} has an unreadable schema version") from None
        if found > SCHEMA_VERSION or found < OLDEST_SCHEMA:
            raise StoreError(
                f"store at {self.path} has schema version {found}; this mycelia reads "
                f"{OLDEST_SCHEMA} to {SCHEMA_VERSION} (nothing was changed: run the mycelia "
                "version that wrote it, or one that migrates from it)"
            )
        return found

    def _check_locks_and_votes(self) -> None:
        """Every validator lock and vote must read back, or the store is
        refused before it is migrated: voting with locks it cannot read
        could sign a conflicting entry."""
        try:
            locks = self._env.open_db(b"locks", create=False)
            votes = self._env.open_db(b"votes", create=False)
        except lmdb.NotFoundError:
            raise StoreError(f"store at {self.path} has no lock tables") from None
        with self._env.begin(write=False) as txn:
            for key, value in txn.cursor(db=locks):
                if len(key) != ID_SIZE or len(value) != ID_SIZE:
                    raise StoreError(f"store at {self.path}: an unreadable validator lock")
            for key, value in txn.cursor(db=votes):
                try:
                    vote = Vote.decode(value)
                except Refused as exc:
                    raise StoreError(f"store at {self.path}: an unreadable vote ({exc})") from None
                if vote.entry_id != key:
                    raise StoreError(f"store at {self.path}: a vote stored under another entry")

    def _migrate(self, found: int | None) -> None:
        meta = self._db["meta"]
        if found is None:  # a new store
            with self._env.begin(write=True) as txn:
                txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=meta)
            return
        while found < SCHEMA_VERSION:
            step = _MIGRATIONS[found]
            with self._env.begin(write=True) as txn:
                step(self, txn)
                txn.put(b"schema", str(found + 1).encode(), db=meta)
            log.warning("store at %s migrated from schema %d to %d", self.path, found, found + 1)
            found += 1

    # -- the writer --------------------------------------------------------------

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction, growing the map and retrying
        the whole transaction if it fills."""
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store at {self.path} is closed")
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
        states: list[_TxnState] = []

        held_ids = {c.entry_id for c in held}

        def txn_fn(txn: lmdb.Transaction) -> ApplyResult:
            # Runs again if the map had to grow: start from the same buffer.
            buffer.restore(held)
            states.clear()
            states.append(_TxnState(self, txn, economy.id))
            ledger = Ledger(economy, states[0], buffer)
            applied: list[bytes] = []
            refused: list[tuple[Certificate, Refused]] = []
            for cert in sorted(certs, key=lambda c: c.entry.seq):
                try:
                    applied.extend(ledger.apply(cert, verified=True))
                except Refused as exc:
                    refused.append((cert, exc))
            # The buffer is a cache of ``parked``: what entered it is made
            # durable, what left it (applied, or dropped as a conflict) goes.
            now = {c.entry_id: c for c in buffer.snapshot()}
            parked_db = self._db["parked"]
            for entry_id, cert in now.items():
                if entry_id not in held_ids:
                    txn.put(entry_id, cert.encode(), db=parked_db)
            for entry_id in held_ids - now.keys():
                txn.delete(entry_id, db=parked_db)
            parked = tuple(c.entry_id for c in certs if c.entry_id in now)
            return ApplyResult(
                tuple(applied),
                tuple(refused),
                parked,
                tuple(ledger.forks),
                tuple(ledger.suspects),
            )

        try:
            result = self._write(txn_fn)
        except BaseException:
            # The transaction was aborted: what it took out of the buffer
            # must go back, or those certificates would be lost.
            buffer.restore(held)
            raise
        claims = states[0].claims
        if claims:  # counted once committed (a retried transaction counts once)
            self.claims_applied += len(claims)
            self.claimed_units += sum(claims)
        return result

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
        self,
        records: list[tuple[bytes, list[Any]]],
        forget: list[bytes],
        refusals: Sequence[tuple[bytes, Refusal]] = (),
    ) -> None:
        """Add submission records, drop finished ones and record refusals,
        in one transaction."""
        encoded = [(k, codec.encode(r)) for k, r in records]
        refused = [(k, r.encode()) for k, r in refusals]

        def txn_fn(txn: lmdb.Transaction) -> None:
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

    def delete_pending_sync(self, *entry_ids: bytes) -> None:
        self.update_pending_sync([], list(entry_ids))

    def put_peer_sync(self, peer_id: str, addrs: list[str]) -> None:
        data = codec.encode(list(addrs))
        self._write(lambda txn: txn.put(peer_id.encode(), data, db=self._db["peers"]))

    # -- sensors: ingest, attestation, retention -----------------------------

    def ingest_sync(self, accepted: list[Accepted], received_ms: int) -> None:
        """Store readings ingest accepted (already checked, counters already
        increasing per device in list order), each queued for attestation,
        in ONE durable transaction: the caller answers "accepted" only after
        this returns."""

        def txn_fn(txn: lmdb.Transaction) -> None:
            db = self._db
            states: dict[bytes, IngestState] = {}
            for a in accepted:
                key = reading_key(a.device, a.counter)
                record = StoredReading(a.economy, a.signed, received_ms)
                if not txn.put(key, record.encode(), db=db["readings"], overwrite=False):
                    continue  # never happens: ingest refuses replayed counters
                txn.put(a.economy + key, b"", db=db["unattested"])
                txn.put(_SEQ.pack(received_ms) + key, b"", db=db["received"])
                state = states.get(a.device)
                if state is None:
                    raw = txn.get(a.device, db=db["ingest"])
                    state = (
                        IngestState(a.economy, a.counter, 0)
                        if raw is None
                        else (IngestState.decode(raw))
                    )
                states[a.device] = IngestState(
                    a.economy, max(state.last_accepted, a.counter), state.readings + 1
                )
            for device, state in states.items():
                txn.put(device, state.encode(), db=db["ingest"])

        self._write(txn_fn)

    def begin_attestation_sync(self, entry_id: bytes, flight: InFlight) -> None:
        """Move a batch's readings from the queue to ``inflight`` under the
        attestation's entry id (before it is submitted)."""

        def txn_fn(txn: lmdb.Transaction) -> None:
            txn.put(entry_id, flight.encode(), db=self._db["inflight"])
            for key in flight.keys:
                txn.delete(flight.economy + key, db=self._db["unattested"])

        self._write(txn_fn)

    def finish_attestation_sync(self, entry_id: bytes) -> int:
        """The attestation ``entry_id`` is certified: each of its readings
        records it and its leaf index, and the batch is listed for proofs.
        Returns how many readings it covers (0 if it was not in flight)."""

        def txn_fn(txn: lmdb.Transaction) -> int:
            db = self._db
            raw = txn.get(entry_id, db=db["inflight"])
            if raw is None:
                return 0
            flight = InFlight.decode(raw)
            newest = 0
            for index, key in enumerate(flight.keys):
                data = txn.get(key, db=db["readings"])
                if data is None:
                    continue
                r = StoredReading.decode(data)
                newest = max(newest, r.received_ms)
                attested = StoredReading(r.economy, r.signed, r.received_ms, entry_id, index)
                txn.put(key, attested.encode(), db=db["readings"])
            txn.put(
                entry_id, _encode_batch(flight.economy, list(flight.keys), newest), db=db["batches"]
            )
            txn.delete(entry_id, db=db["inflight"])
            return len(flight.keys)

        return self._write(txn_fn)

    def abort_attestation_sync(self, entry_id: bytes) -> None:
        """The attestation ``entry_id`` was refused: its readings (those
        still stored) go back to the queue."""

        def txn_fn(txn: lmdb.Transaction) -> None:
            db = self._db
            raw = txn.get(entry_id, db=db["inflight"])
            if raw is None:
                return
            flight = InFlight.decode(raw)
            for key in flight.keys:
                if txn.get(key, db=db["readings"]) is not None:
                    txn.put(flight.economy + key, b"", db=db["unattested"])
            txn.delete(entry_id, db=db["inflight"])

        self._write(txn_fn)

    def prune_readings_sync(self, older_than_ms: int, *, chunk: int = 4096) -> int:
        """Delete the readings received before ``older_than_ms``; returns how
        many. An attested reading goes only with its whole batch, once the
        batch's newest reading is old too (a proof needs every leaf); a
        reading in flight stays until its attestation settles. Certificates
        (attestations, claims) are ledger data and stay. Works in
        transactions of at most ``chunk`` index entries."""
        total = 0
        start = b""
        end = _SEQ.pack(max(0, older_than_ms))
        while True:
            deleted, start, more = self._write(
                lambda txn, start=start: self._prune_chunk(txn, start, end, chunk)
            )
            total += deleted
            if not more:
                return total

    def _prune_chunk(
        self, txn: lmdb.Transaction, start: bytes, end: bytes, chunk: int
    ) -> tuple[int, bytes, bool]:
        db = self._db
        # Read first, then delete: no deletes under a live cursor.
        candidates: list[bytes] = []
        cur = txn.cursor(db=db["received"])
        if cur.set_range(start):
            for k in cur.iternext(keys=True, values=False):
                if k >= end or len(candidates) >= chunk:
                    break
                candidates.append(k)
        more = len(candidates) >= chunk
        resume = candidates[-1] + b"\x00" if candidates else start
        in_flight = {
            key for _, raw in txn.cursor(db=db["inflight"]) for key in InFlight.decode(raw).keys
        }
        cutoff = _SEQ.unpack(end)[0]
        fewer: dict[bytes, int] = {}
        deleted = 0
        settled: set[bytes] = set()

        def drop(key: bytes, r: StoredReading) -> None:
            nonlocal deleted
            txn.delete(key, db=db["readings"])
            txn.delete(_SEQ.pack(r.received_ms) + key, db=db["received"])
            txn.delete(r.economy + key, db=db["unattested"])
            fewer[key[:32]] = fewer.get(key[:32], 0) + 1
            deleted += 1

        for k in candidates:
            key = k[8:]
            data = txn.get(key, db=db["readings"])
            if data is None:
                txn.delete(k, db=db["received"])
                continue
            if key in in_flight:
                continue
            r = StoredReading.decode(data)
            if not r.attested:
                drop(key, r)
                continue
            if r.attestation in settled:
                continue
            settled.add(r.attestation)
            raw = txn.get(r.attestation, db=db["batches"])
            if raw is None:
                drop(key, r)
                continue
            _economy, keys, newest = _decode_batch(raw)
            if newest >= cutoff:
                continue  # the batch has newer readings: keep it whole
            for member in keys:
                member_data = txn.get(member, db=db["readings"])
                if member_data is not None:
                    drop(member, StoredReading.decode(member_data))
            txn.delete(r.attestation, db=db["batches"])
        for device, n in fewer.items():
            raw = txn.get(device, db=db["ingest"])
            if raw is not None:
                s = IngestState.decode(raw)
                # The last accepted counter stays: it is the replay guard.
                state = IngestState(s.economy, s.last_accepted, max(0, s.readings - n))
                txn.put(device, state.encode(), db=db["ingest"])
        return deleted, resume, more

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
        """The stored certificate, applied or parked."""
        with self._read() as txn:
            raw = txn.get(entry_id, db=self._db["certs"])
            return raw if raw is not None else txn.get(entry_id, db=self._db["parked"])

    def unknown(self, entry_ids: list[bytes]) -> set[bytes]:
        """Those of ``entry_ids`` with no stored certificate, applied or
        parked (one read txn)."""
        with self._read() as txn:
            certs, parked = self._db["certs"], self._db["parked"]
            return {
                i
                for i in entry_ids
                if txn.get(i, db=certs) is None and txn.get(i, db=parked) is None
            }

    def not_stored_as_is(self, certs: list[Certificate]) -> list[Certificate]:
        """Those of ``certs`` that are not byte for byte a stored certificate.
        A certificate's signatures are not part of its entry id, so a known
        id proves nothing about the signatures beside it: only identical
        bytes were verified before."""
        with self._read() as txn:
            dbs = self._db["certs"], self._db["parked"]
            out = []
            for cert in certs:
                stored = txn.get(cert.entry_id, db=dbs[0])
                if stored is None:
                    stored = txn.get(cert.entry_id, db=dbs[1])
                if stored is None or stored != cert.encode():
                    out.append(cert)
            return out

    def parked(self, economy_id: bytes) -> list[Certificate]:
        """The economy's parked certificates (to reload its gap buffer)."""
        with self._read() as txn:
            out = []
            for _, raw in txn.cursor(db=self._db["parked"]):
                cert = Certificate.decode(raw)
                if cert.entry.economy == economy_id:
                    out.append(cert)
            return out

    def refusal(self, entry_id: bytes) -> Refusal | None:
        with self._read() as txn:
            raw = txn.get(entry_id, db=self._db["refusals"])
        return None if raw is None else Refusal.decode(raw)

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

    def chain_entry(self, economy_id: bytes, author: bytes, seq: int) -> bytes | None:
        """The id of the entry applied at ``(author, seq)``, or None."""
        with self._read() as txn:
            return txn.get(chain_key(economy_id, author, seq), db=self._db["chains"])

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

    def forks(self, economy_id: bytes) -> list[bytes]:
        """The fork evidence bytes of the economy, in (author, seq) order."""
        with self._read() as txn:
            cur = txn.cursor(db=self._db["forks"])
            out = []
            if cur.set_range(economy_id):
                for k, v in cur:
                    if k[:32] != economy_id:
                        break
                    out.append(v)
            return out

    def fork_slots(self, economy_id: bytes) -> list[tuple[bytes, int]]:
        """``(author, seq)`` of every slot of the economy with evidence."""
        with self._read() as txn:
            cur = txn.cursor(db=self._db["forks"])
            out = []
            if cur.set_range(economy_id):
                for k in cur.iternext(keys=True, values=False):
                    if k[:32] != economy_id:
                        break
                    out.append((k[32:64], _counter(k)))
            return out

    def fork(self, economy_id: bytes, author: bytes, seq: int) -> bytes | None:
        """The evidence bytes kept for one slot, or None."""
        with self._read() as txn:
            return txn.get(chain_key(economy_id, author, seq), db=self._db["forks"])

    def fork_seq(self, economy_id: bytes, author: bytes) -> int | None:
        """The lowest seq of ``author``'s chain with fork evidence, or None."""
        with self._read() as txn:
            return _first_fork(txn, self._db["forks"], economy_id + author)

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

    def records(self, economy_id: bytes, prefix: bytes = b"") -> dict[bytes, bytes]:
        """Every protocol state record of the economy whose key starts with
        ``prefix`` (e.g. ``b"fact/device/"``), by record key."""
        start = economy_id + prefix
        with self._read() as txn:
            cur = txn.cursor(db=self._db["records"])
            out = {}
            if cur.set_range(start):
                for k, v in cur:
                    if not k.startswith(start):
                        break
                    out[k[32:]] = v
            return out

    def attestations_of(
        self, economy_id: bytes, device: bytes, after: int, limit: int
    ) -> list[bytes]:
        """Ids of the certified ``sensor.attest`` entries with a row for
        ``device`` whose last counter is above ``after``, in counter order."""
        prefix = economy_id + device
        out: list[bytes] = []
        with self._read() as txn:
            cur = txn.cursor(db=self._db["attests"])
            if after < schema.UINT64_MAX and cur.set_range(prefix + _SEQ.pack(after + 1)):
                for k, v in cur:
                    if k[:64] != prefix or len(out) >= limit:
                        break
                    out.append(v)
        return out

    def last_attested(self, economy_id: bytes, device: bytes) -> int | None:
        """The last counter of ``device`` in a certified attestation, or None."""
        prefix = economy_id + device
        with self._read() as txn:
            cur = txn.cursor(db=self._db["attests"])
            found = cur.prev() if cur.set_range(prefix + _LAST) else cur.last()
            if found and cur.key()[:64] == prefix:
                return _counter(cur.key())
        return None

    def ingest_state(self, device: bytes) -> IngestState | None:
        with self._read() as txn:
            raw = txn.get(device, db=self._db["ingest"])
        return None if raw is None else IngestState.decode(raw)

    def reading(self, device: bytes, counter: int) -> StoredReading | None:
        with self._read() as txn:
            raw = txn.get(reading_key(device, counter), db=self._db["readings"])
        return None if raw is None else StoredReading.decode(raw)

    def readings(
        self, economy_id: bytes, device: bytes, first: int, last: int, limit: int
    ) -> tuple[list[tuple[int, StoredReading]], int | None]:
        """``(counter, reading)`` of ``device`` in the economy with counters in
        ``[first, last]``, at most ``limit``, in counter order; and the
        counter to continue from, None when there are no more."""
        out: list[tuple[int, StoredReading]] = []
        with self._read() as txn:
            cur = txn.cursor(db=self._db["readings"])
            if first > last or not cur.set_range(reading_key(device, first)):
                return out, None
            for k, v in cur:
                counter = _counter(k)
                if k[:32] != device or counter > last:
                    break
                r = StoredReading.decode(v)
                if r.economy != economy_id:
                    continue
                if len(out) >= limit:
                    return out, counter
                out.append((counter, r))
        return out, None

    def batch(self, attestation: bytes) -> list[bytes] | None:
        """The signed-reading bytes of an attested batch in batch order (leaf
        ``i`` first), or None if the batch is unknown or partly pruned."""
        with self._read() as txn:
            raw = txn.get(attestation, db=self._db["batches"])
            if raw is None:
                return None
            _economy, keys, _newest = _decode_batch(raw)
            leaves = []
            for key in keys:
                data = txn.get(key, db=self._db["readings"])
                if data is None:
                    return None
                leaves.append(StoredReading.decode(data).signed)
            return leaves

    def unattested(self, economy_id: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` queued readings of the economy as ``(reading key,
        signed-reading bytes)``, in ``(device, counter)`` order."""
        out: list[tuple[bytes, bytes]] = []
        with self._read() as txn:
            readings = self._db["readings"]
            cur = txn.cursor(db=self._db["unattested"])
            if cur.set_range(economy_id):
                for k in cur.iternext(keys=True, values=False):
                    if k[:32] != economy_id or len(out) >= limit:
                        break
                    data = txn.get(k[32:], db=readings)
                    if data is not None:
                        out.append((k[32:], StoredReading.decode(data).signed))
        return out

    def unattested_economies(self) -> list[bytes]:
        """The economies with queued readings."""
        out: list[bytes] = []
        with self._read() as txn:
            cur = txn.cursor(db=self._db["unattested"])
            found = cur.first()
            while found:
                economy = cur.key()[:32]
                out.append(economy)
                # Skip to the next economy.
                found = cur.set_range(economy + b"\xff" * 40 + b"\x00")
        return out

    def unattested_count(self) -> int:
        with self._read() as txn:
            return int(txn.stat(self._db["unattested"])["entries"])

    def in_flight(self) -> dict[bytes, InFlight]:
        with self._read() as txn:
            return {k: InFlight.decode(v) for k, v in txn.cursor(db=self._db["inflight"])}

    def readings_size_bytes(self) -> int:
        """Bytes the readings and their indexes take (pages in use), for metrics."""
        with self._read() as txn:
            total = 0
            for name in ("readings", "ingest", "unattested", "inflight", "batches", "received"):
                st = txn.stat(self._db[name])
                pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                total += pages * st["psize"]
            return total

    def size_bytes(self) -> int:
        """Bytes in use (pages up to the last used one), for metrics."""
        info, stat = self._env.info(), self._env.stat()
        return (info["last_pgno"] + 1) * stat["psize"]

    def map_size(self) -> int:
        return int(self._env.info()["map_size"])


def _v4_to_v5(store: Store, txn: lmdb.Transaction) -> None:
    """``parked``, ``refusals`` and ``forks`` were created empty when the
    store opened (after ``_check_locks_and_votes``); every other table keeps
    its layout."""


#: ``N -> migration to N+1`` (see the module docstring).
_MIGRATIONS: dict[int, Callable[[Store, lmdb.Transaction], None]] = {4: _v4_to_v5}
