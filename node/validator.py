"""The validator service: answers ``/mycelia/vote/1`` for the economies that
name this node's key as a validator.

How a request is answered (DESIGN §4, §7):

1. Certificates attached to an entry (what its submitter sent after a
   ``missing``) are verified and applied first, through the one writer.
2. Every entry is checked with the protocol's ``check`` against the stored
   state, in a worker thread (each check verifies a signature). The lowest
   forked seq of the author, if this node holds fork evidence for its
   chain, goes with it: no vote at or past a fork (``forked``), since no
   node that knows of the fork would apply what it certifies.
3. For each entry that passes, the vote is signed and a
   :class:`~mycelia.node.store.VoteGrant` (its resources → its id) is queued.
   A group-commit task writes every queued grant — from all concurrent
   requests — in one transaction and fsync, and only then are the votes
   released to their requests. So a lock is durable before its vote leaves
   the node, many votes share one fsync, and a grant refused because a
   resource is locked to another entry (also across restarts: the locks are
   in LMDB) becomes a ``resource_locked`` answer.

Re-asking for an entry already voted for gets the stored vote again, before
any check: the entry may since have been applied here (``seq_reused`` to a
fresh check), and its certificate may have been lost everywhere — a
submitter that asks again must be able to gather the same quorum, or the
author's chain would stay blocked behind locks for an entry nobody holds.
Likewise an entry this node holds as certified at its slot gets a vote (and
the lock) even though a fresh check says ``seq_reused``: it is final, so no
other entry can take that slot, and the submitter asking has not got its
certificate yet.

Epochs (``handover.py``): votes are always in the epoch in force here; a
validator not in its committee answers ``not_validator``, one that has not
seeded that epoch's locks yet answers ``missing`` (the submitter asks
again). A vote for a ``gov.vote`` or ``gov.delegate`` also records the
ballot it holds; a ``gov.vote`` of a proposal this validator sealed is
refused ``voting_closed``. The same protocol serves seals and snapshot
parts (``seal-req``, ``snapshot-req``: ``wire.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier, ready_group, signature_work
from mycelia.node.handover import Ask, Handover
from mycelia.node.store import Store, VoteGrant
from mycelia.protocol import OK, Economy, Reason, Refused, SignedEntry, SigningKey, Vote, check
from mycelia.protocol.forks import forked
from mycelia.protocol.gov_bodies import GovDelegate, GovVote
from mycelia.protocol.locks import resources
from mycelia.protocol.seals import Held
from mycelia.protocol.state import Account

__all__ = ["StoreView", "ValidatorService"]

log = logging.getLogger("mycelia.validator")


class StoreView:
    """A protocol ``StateView`` over the store's latest committed state."""

    __slots__ = ("_economy", "_store")

    def __init__(self, store: Store, economy: bytes) -> None:
        self._store = store
        self._economy = economy

    def account(self, key: bytes) -> Account:
        return self._store.account(self._economy, key)

    def get_record(self, key: bytes) -> bytes | None:
        return self._store.record(self._economy, key)


def _signed_by_author(signed: SignedEntry) -> bool:
    try:
        signed.verify()
    except Refused:
        return False  # ``check`` says why
    return True


_SEALED = wire.VoteResult(
    reason=Reason.VOTING_CLOSED, detail="this validator has sealed the proposal"
)


@dataclass
class _Pending:
    grants: list[VoteGrant]
    done: trio.Event = field(default_factory=trio.Event)
    granted: list[bool] | None = None
    error: BaseException | None = None


class ValidatorService:
    def __init__(
        self, key: SigningKey, store: Store, applier: Applier, ask: Ask | None = None
    ) -> None:
        self.key = key
        self.store = store
        self.applier = applier
        self.handover = Handover(key, store, applier, ask)
        self._send, self._recv = trio.open_memory_channel[_Pending](1024)
        #: counters the daemon exports as metrics and logs at the end
        self.votes_cast = 0
        self.requests = 0
        self.items = 0

    def validates(self, economy: Economy) -> bool:
        return self.key.public in economy.index

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The group-commit loop."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.handover.run)
                task_status.started()
                await self._group_commit()
        finally:
            if self.requests:
                log.info(
                    "served %d vote requests, %d entries (%.1f per request), %d votes",
                    self.requests,
                    self.items,
                    self.items / self.requests,
                    self.votes_cast,
                )

    async def _group_commit(self) -> None:
        async for first in self._recv:
            group = ready_group(first, self._recv)
            grants = [g for p in group for g in p.grants]
            try:
                with trio.CancelScope(shield=True):
                    granted = await trio.to_thread.run_sync(self.store.grant_votes_sync, grants)
            except Exception as exc:
                log.error("persisting %d vote locks failed: %s", len(grants), exc)
                for p in group:
                    p.error = exc
                    p.done.set()
                continue
            i = 0
            for p in group:
                p.granted = granted[i : i + len(p.grants)]
                i += len(p.grants)
                p.done.set()

    async def handle(self, peer_id: str, data: bytes) -> bytes:
        """The ``/mycelia/vote/1`` handler: request bytes in, response bytes out."""
        try:
            request = wire.decode_validator_request(data)
        except Refused as exc:
            return wire.encode_error(exc.reason, exc.detail)
        if isinstance(request, wire.SealRequest):
            return await self.handover.serve_seal(request)
        if isinstance(request, wire.SnapshotRequest):
            return self.handover.serve_snapshot(request)
        economy_id, items = request
        return wire.encode_vote_response(await self.vote(economy_id, items))

    async def vote(self, economy_id: bytes, items: list[wire.VoteItem]) -> list[wire.VoteResult]:
        self.requests += 1
        self.items += len(items)
        economy = self.applier.economies.get(economy_id)
        if economy is None or not self.validates(economy):
            why = "this node does not validate that economy"
            if economy is not None:
                why += f" in epoch {economy.epoch}"
            return [wire.VoteResult(reason=Reason.NOT_VALIDATOR, detail=why) for _ in items]
        if not self.handover.ready(economy):
            why = f"this validator has not seeded the locks of epoch {economy.epoch} yet"
            return [wire.VoteResult(reason=Reason.MISSING, detail=why) for _ in items]
        attached = [c for item in items for c in item.attached]
        if attached:
            # Predecessors the submitter attached: verified and applied
            # like any certificate, before the entries that need them.
            await self.applier.apply(economy_id, attached)
        view = StoreView(self.store, economy_id)
        now_ms = int(time.time() * 1000)

        def check_all() -> list[tuple[wire.VoteResult, VoteGrant | None]]:
            out: list[tuple[wire.VoteResult, VoteGrant | None]] = []
            for item in items:
                entry_id = item.signed.id
                author = item.signed.entry.author
                fork_seq = self.store.fork_seq(economy_id, author)
                stored = self.store.vote(entry_id)
                if (
                    stored is not None
                    and (fork_seq is None or not forked(fork_seq, item.signed.entry.seq))
                    and _signed_by_author(item.signed)
                ):
                    old = Vote.decode(stored)
                    if old.economy == economy.id and old.epoch == economy.epoch:
                        out.append((wire.VoteResult(vote=old), None))
                        continue
                verdict = check(economy, view, item.signed, now_ms=now_ms, fork_seq=fork_seq)
                e = item.signed.entry
                if (
                    verdict.reason == Reason.SEQ_REUSED
                    and self.store.chain_entry(economy.id, e.author, e.seq) == entry_id
                ):
                    verdict = OK  # certified here: see the module docstring
                if not verdict.ok:
                    assert verdict.reason is not None
                    result = wire.VoteResult(
                        reason=verdict.reason, detail=verdict.detail, needs=verdict.needs
                    )
                    out.append((result, None))
                    continue
                body = e.body
                held = Held.of(entry_id, e) if isinstance(body, GovVote | GovDelegate) else None
                if held is not None and held.vote and self.store.sealed(held.scope) is not None:
                    out.append((_SEALED, None))
                    continue
                vote = Vote.make(self.key, economy.id, economy.epoch, entry_id)
                grant = VoteGrant(
                    entry_id,
                    resources(e),
                    vote.encode(),
                    held=held,
                    economy=economy.id,
                    epoch=economy.epoch,
                )
                out.append((wire.VoteResult(vote=vote), grant))
            return out

        checked = await signature_work(check_all, 2 * len(items))
        grants = [g for _, g in checked if g is not None]
        granted: list[bool] = []
        if grants:
            pending = _Pending(grants)
            await self._send.send(pending)
            await pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.granted is not None
            granted = pending.granted
        results = []
        it = iter(granted)
        for result, grant in checked:
            if grant is None:
                results.append(result)
            elif next(it):
                self.votes_cast += 1
                results.append(result)  # the vote, now that its lock is durable
            elif grant.held is not None and self.store.sealed(grant.held.scope) is not None:
                results.append(_SEALED)
            else:
                results.append(
                    wire.VoteResult(
                        reason=Reason.RESOURCE_LOCKED,
                        detail="this validator voted for another entry in that slot, "
                        "or its epoch ended here",
                    )
                )
        return results
