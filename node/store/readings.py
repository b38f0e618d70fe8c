"""The host's part of the store: the sensor readings it accepted and their
way into attestations.

Why a part of its own: these are this node's own, not ledger state — the
readings it accepted as a host, each with the attestation that covers it
and its leaf index there (so a proof can be rebuilt from the batch). The
certified attestations and claims are ledger data (``ledger.py``, with the
``attests`` index).

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
readings      device (32) + counter (8)                        :class:`StoredReading`
ingest        device (32)                                      :class:`IngestState`
unattested    economy (32) + device (32) + counter (8)         empty (the attester's queue)
inflight      entry id (32)                                    signed attestation + its
                                                               reading keys, in batch order
batches       attestation id (32)                              reading keys in batch order,
                                                               newest received ms
received      received ms (8) + device (32) + counter (8)      empty (retention index)
============  ===============================================  ==========================

A reading moves ``unattested`` → ``inflight`` (the attester built and
signed an attestation of it and submits it) → attested (``batches`` lists
the batch; the reading names its attestation), or back to ``unattested``
if the attestation was refused. The ``inflight`` record holds the signed
entry, so after a crash the attester resubmits the *same* entry rather
than a second one in its chain slot. Ingest writes a whole group of
requests' readings in one transaction (``ingest_sync``); retention
(``prune_readings_sync``) deletes old readings by the ``received`` index, a
batch only once all of its readings are old (its proofs need all of them),
and never the certificates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import lmdb

from mycelia.node.store.env import _SEQ, Tables, _counter
from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE

__all__ = [
    "MAX_BATCH_READINGS",
    "Accepted",
    "InFlight",
    "IngestState",
    "ReadingTables",
    "StoredReading",
    "reading_key",
]

#: Most readings in one attested batch: its key list must decode within the
#: codec's item bound (the attester never builds larger ones).
MAX_BATCH_READINGS = 60_000


def reading_key(device: bytes, counter: int) -> bytes:
    """The key of a stored reading: device (32) + counter (8, big-endian),
    so a device's readings are adjacent and in counter order."""
    return device + _SEQ.pack(counter)


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


class ReadingTables(Tables):
    """Readings, their ingest state and their attestation pipeline (see the
    module docstring)."""

    DATABASES = ("readings", "ingest", "unattested", "inflight", "batches", "received")

    def ingest_sync(self, accepted: list[Accepted], received_ms: int) -> None:
        """Store readings ingest accepted (already checked, counters already
        increasing per device in list order), each queued for attestation,
        in ONE durable transaction: the caller answers "accepted" only after
        this returns."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
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

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
            txn.put(entry_id, flight.encode(), db=self._db["inflight"])
            for key in flight.keys:
                txn.delete(flight.economy + key, db=self._db["unattested"])

        self._write(txn_fn)

    def finish_attestation_sync(self, entry_id: bytes) -> int:
        """The attestation ``entry_id`` is certified: each of its readings
        records it and its leaf index, and the batch is listed for proofs.
        Returns how many readings it covers (0 if it was not in flight)."""

        def txn_fn(txn: lmdb.Transaction[bytes]) -> int:
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

        def txn_fn(txn: lmdb.Transaction[bytes]) -> None:
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
                functools.partial(self._prune_chunk, start=start, end=end, chunk=chunk)
            )
            total += deleted
            if not more:
                return total

    def _prune_chunk(
        self, txn: lmdb.Transaction[bytes], start: bytes, end: bytes, chunk: int
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
