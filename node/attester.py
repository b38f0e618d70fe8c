"""The attester: turns the readings a host accepted into certified ``sensor.attest`` entries.

Why this exists: readings stay with their host; the ledger learns of them
through the host's attestations (docs/sensors.md, DESIGN §5) — a Merkle
root over a batch plus per-device counter ranges and aggregates, in the
host's own chain, signed with the node key. Once one is certified, every
reading in it records the attestation id and its leaf index, so the audit
can serve proofs, and the device's owner can claim credits for it.

How it works:

* Every ``interval_s``, or as soon as ``max_readings`` wait (ingest calls
  :meth:`Attester.queued`), a round takes the queued readings of each
  economy (the store keeps the queue, so it survives restarts) up to
  ``max_readings`` at a time, and the protocol's ``build_attestations``
  splits them into bodies that each fit one entry.
* For each body: the entry is built on the host's chain as the store has it
  (seq, prev), signed with the node key, recorded *in flight* together with
  its readings (moving them out of the queue), submitted through the node's
  submitter, and waited for. Certified: the store records the attestation
  on each reading. Refused: the readings go back to the queue and the round
  ends (the next one retries; the log says why).
* One attestation at a time: an author's next entry can only be voted once
  the previous is certified anyway, and a refusal then never strands later
  entries of the chain behind a hole.
* At start, attestations left in flight are settled first: certified while
  the node was down (the certificate is in the store), still pending (the
  submitter resumed it), or resubmitted as the very same signed entry — a
  second entry in the same chain slot could lose to the first.
* Retention: every ``prune_interval_s`` the readings older than
  ``retention_ms`` are deleted (``Store.prune_readings_sync``); attestations
  and claims are certificates and stay.

Everything runs in the attester's own task, so rounds and pruning never
overlap; :meth:`attest_now` and :meth:`prune` take the same lock, so a test
(or an operator command) may call them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio

from mycelia.node.applier import Applier
from mycelia.node.store import InFlight, Store, reading_key
from mycelia.node.submitter import CERTIFIED, Submitter
from mycelia.protocol import (
    DeviceRecord,
    Economy,
    Reason,
    Refused,
    SignedEntry,
    SignedReading,
    SigningKey,
    build_attestations,
)
from mycelia.protocol.economy import IMPACT
from mycelia.protocol.ledger import ChainHead, Position, next_entry

__all__ = ["Attester"]

log = logging.getLogger("mycelia.attester")

DAY_MS = 86_400_000


class Attester:
    def __init__(
        self,
        key: SigningKey,
        store: Store,
        applier: Applier,
        submitter: Submitter,
        *,
        interval_s: float = 60.0,
        max_readings: int = 4096,
        retention_ms: int = 30 * DAY_MS,
        prune_interval_s: float = 3600.0,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.key = key
        self.store = store
        self.applier = applier
        self.submitter = submitter
        self.interval_s = interval_s
        self.max_readings = max_readings
        self.retention_ms = retention_ms
        self.prune_interval_s = prune_interval_s
        self._wall_ms = wall_ms
        self._lock = trio.Lock()
        self._wake = trio.Event()
        self._waiting = 0
        #: plain counters the daemon exports as metrics
        self.certified = 0
        self.readings_attested = 0
        self.refused = 0
        self.pruned = 0

    def queued(self, count: int) -> None:
        """Ingest stored ``count`` more readings: attest early once enough wait."""
        self._waiting += count
        if self._waiting >= self.max_readings:
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle what was in flight, then attest and prune until cancelled."""
        self._waiting = self.store.unattested_count()
        task_status.started()
        await self.recover()
        next_prune = trio.current_time()
        while True:
            with trio.move_on_after(self.interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.attest_now()
            if trio.current_time() >= next_prune:
                await self.prune()
                next_prune = trio.current_time() + self.prune_interval_s

    # -- rounds ----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Settle the attestations a previous run left in flight, in chain order."""
        async with self._lock:
            flights = self.store.in_flight()
            signed = sorted(
                (SignedEntry.decode(f.signed_entry) for f in flights.values()),
                key=lambda s: s.entry.seq,
            )
            for s in signed:
                if self.submitter.status(s.id).state == CERTIFIED:
                    await self._finish(s.id)
                elif not await self._settle(s):
                    return

    async def attest_now(self) -> int:
        """One round: attest every queued reading (in batches); returns the
        number of attestations certified. Stops at the first refusal."""
        async with self._lock:
            done = 0
            for economy_id in await trio.to_thread.run_sync(self.store.unattested_economies):
                economy = self.applier.economies.get(economy_id)
                if economy is None or economy.kind != IMPACT:
                    continue
                ok, n = await self._economy(economy)
                done += n
                if not ok:
                    break
            self._waiting = self.store.unattested_count()
            return done

    async def _economy(self, economy: Economy) -> tuple[bool, int]:
        done = 0
        limit = self.max_readings
        while True:
            rows = await trio.to_thread.run_sync(self.store.unattested, economy.id, limit)
            if not rows:
                return True, done
            parts = await trio.to_thread.run_sync(self._build, economy, rows)
            if parts is None:
                return False, done
            for signed, flight in parts:
                await trio.to_thread.run_sync(self.store.begin_attestation_sync, signed.id, flight)
                if not await self._settle(signed):
                    return False, done
                done += 1
            if len(rows) < limit:
                return True, done

    def _build(
        self, economy: Economy, rows: list[tuple[bytes, bytes]]
    ) -> list[tuple[SignedEntry, InFlight]] | None:
        """The signed attestations of ``rows`` (reading key, signed-reading
        bytes) on the host's chain, or None when nothing can be attested."""
        registrations: dict[bytes, bytes] = {}
        readings = []
        for _key, data in rows:
            signed = SignedReading.decode(data)
            device = signed.reading.device
            if device not in registrations:
                raw = self.store.record(economy.id, DeviceRecord.key(device))
                if raw is None:  # ingest checked it; only a bug gets here
                    log.error("no registration for device %s; not attesting it", device.hex())
                    continue
                registrations[device] = DeviceRecord.decode(raw).registration
            readings.append(signed)
        while readings:
            try:
                parts = build_attestations(readings, registrations)
                break
            except Refused as exc:
                if exc.reason != Reason.TOO_LARGE or len(readings) == 1:
                    log.error("cannot attest %d readings: %s", len(readings), exc)
                    return None
                # A sum past 64 bits: attest fewer readings at a time.
                readings = readings[: len(readings) // 2]
        else:
            return None
        me = self.key.public
        head: ChainHead = self.store.account(economy.id, me)
        now_ms = self._wall_ms()
        out = []
        for body, _tree, ordered in parts:
            signed_entry = next_entry(economy.id, me, head, body, now_ms).sign(self.key)
            keys = tuple(reading_key(r.reading.device, r.reading.counter) for r in ordered)
            out.append((signed_entry, InFlight(economy.id, signed_entry.encode(), keys)))
            head = Position.after(signed_entry)
        return out

    async def _settle(self, signed: SignedEntry) -> bool:
        """Submit (again) and wait; record the outcome. True if certified."""
        try:
            await self.submitter.submit(signed)
        except Refused as exc:
            return await self._abort(signed, exc.reason, exc.detail)
        status = await self.submitter.wait(signed.id)
        if status.state == CERTIFIED:
            await self._finish(signed.id)
            return True
        reason = status.reason or Reason.MALFORMED
        return await self._abort(signed, reason, status.detail)

    async def _finish(self, entry_id: bytes) -> None:
        count = await trio.to_thread.run_sync(self.store.finish_attestation_sync, entry_id)
        self.certified += 1
        self.readings_attested += count
        log.info("attestation %s certified: %d readings", entry_id.hex()[:16], count)

    async def _abort(self, signed: SignedEntry, reason: Reason, detail: str) -> bool:
        await trio.to_thread.run_sync(self.store.abort_attestation_sync, signed.id)
        self.refused += 1
        log.warning(
            "attestation %s (seq %d) refused: %s %s; its readings wait for the next round",
            signed.id.hex()[:16],
            signed.entry.seq,
            reason.value,
            detail,
        )
        return False

    # -- retention -------------------------------------------------------------------------

    async def prune(self, older_than_ms: int | None = None) -> int:
        """Delete the readings received before ``older_than_ms`` (default:
        ``retention_ms`` ago); returns how many."""
        cutoff = self._wall_ms() - self.retention_ms if older_than_ms is None else older_than_ms
        async with self._lock:
            count = await trio.to_thread.run_sync(self.store.prune_readings_sync, cutoff)
        if count:
            self.pruned += count
            log.info("retention: deleted %d readings received before %d", count, cutoff)
        return count
