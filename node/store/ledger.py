"""The ledger's part of the store: certified state, the same on every node.

Why a part of its own: everything here is written by the one applier, in
the one transaction per batch that the protocol's ledger runs over
(``apply_sync``), and is what sync serves to peers — unlike the other
parts, which hold this node's own work (its votes, its submissions, its
sensor readings).

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
economies     economy id (32)                                  signed genesis bytes
certs         entry id (32)                                    certificate bytes
chains        economy (32) + author (32) + seq (8, big end.)   entry id
history       economy (32) + account (32) + n (8, big end.)    entry id
accounts      economy (32) + account (32)                      ``Account`` bytes
records       economy (32) + record key (state.py)             record bytes (msgpack)
parked        entry id (32)                                    certificate bytes (verified,
                                                               waiting for a gap in its chain)
attests       economy (32) + device (32) + last counter (8)    ``sensor.attest`` entry id
forks         economy (32) + author (32) + seq (8, big end.)   :class:`ForkEvidence` bytes
sizes         economy (32)                                     ``["sizes", 1, accounts,
                                                               certified entries]``
summary       economy (32)                                     ``["summary", 1, chains,
                                                               lanes (2048)]``
============  ===============================================  ==========================

Sizes: ``sizes`` counts, per economy, the accounts with state and the
certified entries applied, updated in the same transaction as the batch, so
``economy_get`` / ``economy_list`` answer in one read instead of scanning
every account (``sizes_of``).

Summary: ``summary`` holds, per economy, the number of chains and the
LtHash16 lanes of the set of their heads (``summary.py``), updated in the
same transaction as the batch: each author whose head the batch moved
from ``s`` to ``s'`` costs one subtraction and one addition, whatever the
number of authors. With ``sizes`` (the certified entries) and the fork
slots it makes the :class:`~mycelia.node.store.summary.Summary` that sync
compares before it asks a peer for its heads (``summary_of``).

Consistency: a batch of certificates is applied in ONE write transaction —
certificate bytes, chain index and every changed account and record
together — through the protocol's own :class:`~mycelia.protocol.ledger.Ledger` over a
transaction view, so the rules are the protocol's and a crash at any instant
leaves either the whole batch or none of it.

Parked certificates: a verified certificate whose author's chain has a gap
here (its predecessor has not arrived) cannot be applied yet, but it is
already final. It is written to ``parked`` in the same transaction that
finds the gap, and deleted in the one that applies it, so the protocol's
in-memory :class:`~mycelia.protocol.ledger.GapBuffer` is only a cache of
``parked``: at start the node reloads it (:meth:`LedgerTables.parked`). A
certificate counts as stored — :meth:`LedgerTables.certificate` finds it, a
status may say "certified" — as soon as it is in either table.

History: every applied certificate is indexed under each account whose
state it changed (the author, a recipient, an admitted member, a member
whose limit was set), numbered ``n = 1, 2, …`` per account in the order
this node applied them, for the wallet's ``account_history``.

Sensors: ``attests`` is ledger data, a secondary index over the certified
``sensor.attest`` entries (written with them, in the same transaction), so
``sensor_claimable`` finds a device's attestations without a scan. (The
readings themselves are the host's own: ``readings.py``.)

Epochs: the economy's epoch history is ledger records too — the
``epoch/<n>`` facts (enactment and proposal of epoch ``n``) and the
``gov.proposal/<id>`` facts, written by the certificates' effects in the
batch's transaction — and the certificates they name are in ``certs``. So
the store keeps every epoch's committee and policy without a table of its
own: :meth:`LedgerTables.economy_in_force` derives them with the
protocol's ``epochs.follow`` (the one rule), the node's ``Applier`` holds
the result and each batch returns the economy it left in force
(``ApplyResult.economy``), which is how certificates of every epoch verify
against their own epoch's committee on gossip, sync and submit; the
committee chain is built from ``certs`` (``epochs.CommitteeChain.build``).

Forks: ``forks`` is ledger data too, written by the ledger in the apply
transaction that found the conflict (``_TxnState.record_fork``), so a fork
is never applied past even across a crash: the first evidence per slot is
kept (one pair proves the slot forked); :meth:`LedgerTables.fork_seq` gives
the lowest forked seq of an author, which the validator's ``check`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from mycelia.node.store.env import _LAST, _SEQ, Environment, Tables, _counter, _stored
from mycelia.node.store.summary import HeadsSum, Summary
from mycelia.protocol import (
    Account,
    Certificate,
    Economy,
    Ledger,
    SignedGenesis,
    codec,
    schema,
)
from mycelia.protocol.epochs import follow
from mycelia.protocol.forks import ForkEvidence
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.reasons import Refused
from mycelia.protocol.sensors import ImpactClaim, SensorAttest
from mycelia.protocol.state import EMPTY, Changes

__all__ = ["ApplyResult", "LedgerTables", "chain_key"]


def encode_sizes(accounts: int, certified: int) -> bytes:
    return codec.encode_trusted(["sizes", 1, accounts, certified])


def decode_sizes(raw: bytes) -> tuple[int, int]:
    f = schema.array(codec.decode(raw, max_size=64), "sizes", 1, 4, "sizes")
    return schema.int_(f[2], "accounts", 0), schema.int_(f[3], "certified", 0)


def chain_key(economy: bytes, author: bytes, seq: int) -> bytes:
    return economy + author + _SEQ.pack(seq)


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
        "moves",
        "new_accounts",
    )

    def __init__(self, tables: LedgerTables, txn: lmdb.Transaction[bytes], economy: bytes) -> None:
        self._txn = txn
        self._econ = economy
        self._accounts = tables._db["accounts"]
        self._chains = tables._db["chains"]
        self._certs = tables._db["certs"]
        self._history = tables._db["history"]
        self._records = tables._db["records"]
        self._attests = tables._db["attests"]
        self._forks = tables._db["forks"]
        self._touched: tuple[bytes, ...] = ()
        #: totals of the impact claims applied in this transaction (metrics)
        self.claims: list[int] = []
        #: accounts this transaction gave their first state (``sizes``)
        self.new_accounts = 0
        #: author -> [head seq before the transaction, head seq now] of every
        #: chain it advanced (``summary``)
        self.moves: dict[bytes, list[int]] = {}

    def account(self, key: bytes) -> Account:
        raw = self._txn.get(self._econ + key, db=self._accounts)
        return EMPTY if raw is None else Account.decode(raw)

    def get_record(self, key: bytes) -> bytes | None:
        return self._txn.get(self._econ + key, db=self._records)

    def update(self, changes: Changes) -> None:
        for key, acct in changes.accounts.items():
            put = self._txn.put(self._econ + key, acct.encode(), db=self._accounts, overwrite=False)
            if put:
                self.new_accounts += 1
            else:
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
        # The ledger records a chain's entries in seq order, gap-free.
        move = self.moves.setdefault(e.author, [e.seq - 1, e.seq])
        move[1] = e.seq
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


def _first_fork(txn: lmdb.Transaction[bytes], db: lmdb._Database, prefix: bytes) -> int | None:
    """The lowest seq with fork evidence under ``economy + author``."""
    cur = txn.cursor(db=db)
    if cur.set_range(prefix) and cur.key()[:64] == prefix:
        return _counter(cur.key())
    return None


def _fork_slots(
    txn: lmdb.Transaction[bytes], db: lmdb._Database, economy_id: bytes
) -> list[tuple[bytes, int]]:
    """``(author, seq)`` of the economy's slots with evidence, in key order."""
    cur = txn.cursor(db=db)
    out = []
    if cur.set_range(economy_id):
        for k in cur.iternext(keys=True, values=False):
            if k[:32] != economy_id:
                break
            out.append((bytes(k[32:64]), _counter(k)))
    return out


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
    #: The economy in force after the batch (later than the one passed in
    #: when the batch applied an enactment and its proposal); None when
    #: nothing was written.
    economy: Economy | None = None


class LedgerTables(Tables):
    """Economies, certificates, chains and the state they derive (see the
    module docstring); its one writer is :meth:`apply_sync`."""

    DATABASES = (
        "economies",
        "certs",
        "chains",
        "history",
        "accounts",
        "records",
        "parked",
        "attests",
        "forks",
        "sizes",
        "summary",
    )

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        #: impact claims applied since this store was opened, and the sum of
        #: their totals (the daemon exports both as metrics)
        self.claims_applied = 0
        self.claimed_units = 0

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

        def txn_fn(txn: lmdb.Transaction[bytes]) -> ApplyResult:
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
            if applied or states[0].new_accounts:
                accounts, certified = self._sizes(txn, economy.id)
                txn.put(
                    economy.id,
                    encode_sizes(accounts + states[0].new_accounts, certified + len(applied)),
                    db=self._db["sizes"],
                )
            moves = states[0].moves
            if moves:
                heads = self._heads_sum(txn, economy.id).advance(
                    (author, old, new) for author, (old, new) in moves.items()
                )
                txn.put(economy.id, heads.encode(), db=self._db["summary"])
            return ApplyResult(
                tuple(applied),
                tuple(refused),
                parked,
                tuple(ledger.forks),
                tuple(ledger.suspects),
                ledger.economy,
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

    def _sizes(self, txn: lmdb.Transaction[bytes], economy_id: bytes) -> tuple[int, int]:
        raw = txn.get(economy_id, db=self._db["sizes"])
        return (0, 0) if raw is None else decode_sizes(raw)

    def _heads_sum(self, txn: lmdb.Transaction[bytes], economy_id: bytes) -> HeadsSum:
        raw = txn.get(economy_id, db=self._db["summary"])
        return HeadsSum() if raw is None else HeadsSum.decode(raw)

    # -- readers ---------------------------------------------------------------

    def economy_in_force(self, economy: Economy) -> Economy:
        """``economy`` advanced over every later epoch whose enactment and
        proposal this store applied (module docstring: Epochs)."""
        with self._read() as txn:
            return follow(economy, _TxnState(self, txn, economy.id))

    def sizes_of(self, economy_id: bytes) -> tuple[int, int]:
        """``(accounts with state, certified entries applied)`` of the economy."""
        with self._read() as txn:
            return self._sizes(txn, economy_id)

    def summary_of(self, economy_id: bytes) -> Summary:
        """What sync compares with a peer before the heads (``summary.py``):
        certified entries, chains and their heads' digest, fork slots; from
        two records and the fork slots (usually none), in one read."""
        with self._read() as txn:
            _, certified = self._sizes(txn, economy_id)
            heads = self._heads_sum(txn, economy_id)
            slots = _fork_slots(txn, self._db["forks"], economy_id)
        return Summary.of(certified, heads, slots)

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

    def certificate(self, entry_id: bytes) -> Certificate | None:
        raw = self.certificate_bytes(entry_id)
        return None if raw is None else Certificate.decode(raw)

    def chain_range(self, economy_id: bytes, author: bytes, first: int, limit: int) -> list[bytes]:
        """Certificate bytes of ``author``'s entries from seq ``first``, at most
        ``limit``, in seq order, stopping at the first gap."""
        out: list[bytes] = []
        with self._read() as txn:
            certs = self._db["certs"]
            cur = txn.cursor(db=self._db["chains"])
            prefix = economy_id + author
            expect = first
            if cur.set_range(chain_key(economy_id, author, first)):
                for k, entry_id in cur:
                    if k[:64] != prefix or len(out) >= limit:
                        break
                    if _counter(k) != expect:
                        break
                    out.append(_stored(txn.get(entry_id, db=certs), entry_id, "certs"))
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
            out: dict[tuple[bytes, int], bytes] = {}
            if cur.set_range(economy_id):
                for k, v in cur:
                    if k[:32] != economy_id:
                        break
                    out[(k[32:64], _counter(k))] = v
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
                out.append((_counter(k), _stored(txn.get(entry_id, db=certs), entry_id, "certs")))
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
            return _fork_slots(txn, self._db["forks"], economy_id)

    def fork(self, economy_id: bytes, author: bytes, seq: int) -> bytes | None:
        """The evidence bytes kept for one slot, or None."""
        with self._read() as txn:
            return txn.get(chain_key(economy_id, author, seq), db=self._db["forks"])

    def fork_seq(self, economy_id: bytes, author: bytes) -> int | None:
        """The lowest seq of ``author``'s chain with fork evidence, or None."""
        with self._read() as txn:
            return _first_fork(txn, self._db["forks"], economy_id + author)

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
