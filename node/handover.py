"""A validator's governance duties: seals, lock snapshots and seeding at
the epoch handover (``docs/governance.md``; the rules are
``protocol/seals.py`` and ``protocol/handover.py``, the state
``node/store/votes.py``).

Why a module of its own: the vote path (``validator.py``) answers entries
one request at a time; these duties follow the economy's epochs instead,
and talk to the other validators:

* **Seal** (on request, ``seal-req``): after a proposal's close by this
  node's clock, the validator signs the ids of the ballots of that proposal
  it holds, in its current epoch, once per epoch; it never votes for a
  ballot of that proposal again (``VoteTables.grant_votes_sync``).
* **Snapshot** (when the applier reaches a new epoch): a validator of the
  epoch that ended signs a snapshot of its locks and held ballots in that
  economy, once; from then on it grants no vote of the ended epoch (the
  grant transaction checks for the snapshot), so the snapshot holds every
  lock it ever voted with there.
* **Seed** (when the applier reaches an epoch this validator belongs to):
  it fetches complete snapshots of the ended epoch's validators (its own
  from its store, the others' with ``snapshot-req``) until they weigh that
  epoch's quorum, replaces its locks and held ballots with
  ``handover.seed`` of them, and records the epoch seeded. Until then
  :meth:`Handover.ready` is false and the validator answers every entry
  ``missing`` (stale: the submitter asks again), so it never votes in an
  epoch whose locks it does not hold. Epoch 0 needs no seed.

A validator removed by a ``committee.set`` is simply not in the new
epoch's committee: ``ValidatorService.validates`` answers
``not_validator``; it still serves its snapshot and seals of the epochs it
was in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import ApplyResult, Store
from mycelia.protocol import Economy, Reason, Refused, SigningKey
from mycelia.protocol.gov_bodies import ProposalRecord
from mycelia.protocol.governance import PROPOSAL_FACT
from mycelia.protocol.handover import LockSnapshot, seed, snapshot
from mycelia.protocol.seals import Held, Seal, seal
from mycelia.protocol.state import fact_key

__all__ = ["Ask", "Handover"]

log = logging.getLogger("mycelia.handover")

#: ``ask(validator key, request bytes, max response bytes)`` -> response
#: bytes: one request on ``/mycelia/vote/1`` to another validator.
Ask = Callable[[bytes, bytes, int], Awaitable[bytes]]
#: Parts fetched from one validator at most (a snapshot of more parts is
#: ignored: 256 parts hold two million locks).
MAX_FETCHED_PARTS = 256
#: Seconds between seeding attempts while the snapshots do not weigh a quorum.
RETRY_S = 0.5


class Handover:
    def __init__(
        self, key: SigningKey, store: Store, applier: Applier, ask: Ask | None = None
    ) -> None:
        self.key = key
        self.store = store
        self.applier = applier
        self._ask = ask
        self._wake = trio.Event()
        applier.on_result(self._on_result)

    def _on_result(self, economy_id: bytes, result: ApplyResult) -> None:
        if result.economy is not None and result.economy.epoch > 0:
            self._wake.set()

    # -- voting gate --------------------------------------------------------------

    def ready(self, economy: Economy) -> bool:
        """Whether this validator holds the locks of ``economy``'s epoch."""
        return economy.epoch == 0 or self.store.seeded_epoch(economy.id) == economy.epoch

    # -- requests -------------------------------------------------------------------

    async def serve_seal(self, request: wire.SealRequest) -> bytes:
        try:
            return wire.encode_seal(await self.seal(request.economy, request.proposal))
        except Refused as exc:
            return wire.encode_error(exc.reason, exc.detail)

    async def seal(self, economy_id: bytes, proposal_id: bytes) -> Seal:
        economy = self.applier.economies.get(economy_id)
        if economy is None or self.key.public not in economy.index:
            raise Refused(Reason.NOT_VALIDATOR, "this node does not validate that economy")
        if not self.ready(economy):
            raise Refused(Reason.MISSING, f"the locks of epoch {economy.epoch} are not seeded yet")
        raw = self.store.record(economy_id, fact_key(PROPOSAL_FACT, proposal_id))
        if raw is None:
            raise Refused(Reason.MISSING, f"proposal {proposal_id.hex()} is not applied here")
        record = ProposalRecord.decode(raw)
        now_ms = int(time.time() * 1000)

        def make(held: list[Held]) -> Seal:
            return seal(self.key, economy, proposal_id, record, held, now_ms)

        return await trio.to_thread.run_sync(
            self.store.seal_sync, economy_id, economy.epoch, proposal_id, make
        )

    def serve_snapshot(self, request: wire.SnapshotRequest) -> bytes:
        raw = self.store.snapshot_part(request.economy, request.epoch, request.part)
        if raw is None:
            detail = f"no snapshot part {request.part} of epoch {request.epoch} here (yet)"
            return wire.encode_error(Reason.MISSING, detail)
        return wire.encode_snapshot(raw)

    # -- the boundary -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()
            waiting = False
            for economy in list(self.applier.economies.values()):
                await self._snapshot_if_due(economy)
                if not await self._seed_if_due(economy):
                    waiting = True
            with trio.move_on_after(RETRY_S if waiting else 3600):
                await self._wake.wait()

    async def _snapshot_if_due(self, economy: Economy) -> None:
        if economy.epoch == 0:
            return
        ended = economy.at(economy.epoch - 1)
        if self.key.public not in ended.index:
            return
        if self.store.snapshot_part(economy.id, ended.epoch, 0) is not None:
            return

        def make(locks: dict[bytes, bytes], held: list[Held]) -> list[LockSnapshot]:
            return snapshot(self.key, ended, locks, held)

        parts = await trio.to_thread.run_sync(
            self.store.snapshot_sync, economy.id, ended.epoch, make
        )
        log.info(
            "snapshot of epoch %d signed: %d locks, %d ballots",
            ended.epoch,
            sum(len(p.locks) for p in parts),
            sum(len(p.ballots) for p in parts),
        )

    async def _seed_if_due(self, economy: Economy) -> bool:
        """Seed ``economy``'s epoch if this validator is in it and has not;
        False while the snapshots do not weigh a quorum yet."""
        if self.ready(economy) or self.key.public not in economy.index:
            return True
        ended = economy.epoch - 1
        parts: list[LockSnapshot] = []
        for validator in economy.committee(ended).keys:
            parts.extend(await self._parts_of(economy.id, ended, validator))
        try:
            seeded = seed(economy, ended, parts)
        except Refused as exc:
            log.info("seeding epoch %d: %s", economy.epoch, exc)
            return False
        await trio.to_thread.run_sync(self.store.seed_sync, economy.id, economy.epoch, seeded)
        log.info(
            "seeded epoch %d: %d locks, %d ballots",
            economy.epoch,
            len(seeded.locks),
            len(seeded.held),
        )
        return True

    async def _parts_of(
        self, economy_id: bytes, epoch: int, validator: bytes
    ) -> list[LockSnapshot]:
        """Every part of ``validator``'s snapshot of ``epoch``, or [] if any
        part cannot be had (now)."""
        out: list[LockSnapshot] = []
        part, parts = 0, 1
        while part < min(parts, MAX_FETCHED_PARTS):
            got = await self._part(economy_id, epoch, validator, part)
            if got is None or got.validator != validator:
                return []
            parts = got.parts
            out.append(got)
            part += 1
        return out if len(out) == parts else []

    async def _part(
        self, economy_id: bytes, epoch: int, validator: bytes, part: int
    ) -> LockSnapshot | None:
        if validator == self.key.public:
            raw = self.store.snapshot_part(economy_id, epoch, part)
            return None if raw is None else LockSnapshot.decode(raw)
        if self._ask is None:
            return None
        request = wire.encode_snapshot_request(economy_id, epoch, part)
        try:
            response = await self._ask(validator, request, wire.MAX_SNAPSHOT_RESPONSE_BYTES)
            return wire.decode_snapshot(response)
        except Refused as exc:
            log.debug("snapshot part %d of epoch %d: %s", part, epoch, exc)
            return None
        except Exception as exc:  # unreachable, timeout: asked again on the next round
            log.debug("snapshot part %d of epoch %d unavailable: %s", part, epoch, exc)
            return None
