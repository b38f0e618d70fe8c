"""Sync: catch up from peers, and serve them.

Gossip is best-effort (a node may be offline, a message may be dropped), so
every node also compares notes: on each new connection and every
``interval_s``, for every followed economy, it asks the peer for its
summary of the economy (``summary``: certified entries, chains and a digest
of their heads, fork slots and a digest of them — ``store/summary.py``),
which the store keeps up in O(1) per head a batch moves. When the heads
parts are equal the two nodes hold the same chains and the round is over
for that economy — the idle case, and by far the common one: a request
of 43 bytes and an answer of at most 105, whatever the number of authors
(``docs/sync.md``; ``bench/sync_rounds.py`` measures it). Otherwise it asks for the
peer's heads (``author -> seq``) and fetches every chain range it lacks,
in batches of ``batch`` certificates, over ``/mycelia/sync/1``. Fetched
certificates go through the same path as gossip: verified in worker
threads, applied by the one writer. An economy we follow but have no
genesis for is fetched first (and its signatures checked like any
genesis).

Peers that predate ``summary``: such a peer answers it with ``error`` (an
unknown request), so the round falls back to ``heads`` and ``forks`` as
before, and the peer is not asked for summaries again until it
reconnects (it may have been upgraded meanwhile). Any other failure of the
request (a timeout, an unreachable peer) fails the economy's round, as a
failed ``heads`` did.

Serving: the same protocol answers summaries from the store's two records
per economy, heads from the account table, ranges and ids straight from
stored certificate bytes, and the genesis. Every request is bounded
(``wire``); a bad request gets an ``error`` answer and the node keeps
serving.

Forks (``forks.py``): unless the summaries' fork parts are equal, a round
also asks the peer which slots it holds fork evidence for (``forks``) and
fetches the evidence of those this node lacks (``fork``), verified whole
before anything is applied; a peer that predates these requests answers
``error`` and is simply not asked further.
A forked author's chain is not fetched at or past its fork (the ledger
would refuse it: ``forked``), and it does not count as lag.

Each peer's round runs on its own: a peer that connects (or reconnects
after a cut, when it matters most) is synced at once, not after a round
that waits on an unresponsive peer until the request timeout; a peer
kicked while its round runs gets one more round after it.

Epochs: a chain whose next certificates are of an epoch this node has not
reached (``wrong_epoch``: the enactment is on another author's chain) waits
while the round fetches the other chains, and is fetched again after them;
passes repeat while one applies something. The same protocol serves the
economy's committee chain (``chain``: one link per epoch, the enactment's
and the proposal's certificates), which verifies from the genesis alone
(:meth:`Sync.committee_chain`).

Lag (``mycelia_sync_lag_certificates``): how many certificates the last
round of heads showed peers having that we did not (none for a peer whose
summary equals ours).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.config import DEFAULTS
from mycelia.node.forks import add_evidence
from mycelia.node.store import Store
from mycelia.node.store.summary import Summary
from mycelia.protocol import Economy, Reason, Refused
from mycelia.protocol.epochs import MAX_CHAIN_LINKS, CommitteeChain
from mycelia.protocol.forks import forked

__all__ = ["Requester", "Sync"]

log = logging.getLogger("mycelia.sync")
#: Most slots' evidence fetched from one peer in one round.
MAX_FORKS_PER_ROUND = 64


class Requester(Protocol):
    """What sync needs of the p2p host (:class:`~mycelia.node.p2p.P2P`)."""

    def peers(self) -> list[str]: ...

    async def request(
        self,
        peer_id: str,
        protocol: str,
        payload: bytes,
        /,
        *,
        max_response_bytes: int | None = None,
    ) -> bytes: ...


class Sync:
    def __init__(
        self,
        p2p: Requester,
        store: Store,
        applier: Applier,
        *,
        follow: set[bytes],
        interval_s: float = DEFAULTS.sync.interval_s,
        batch: int = DEFAULTS.sync.batch,
        on_economy: Callable[[Economy], Awaitable[None]] | None = None,
    ) -> None:
        self.p2p = p2p
        self.store = store
        self.applier = applier
        self.follow = follow
        self.interval_s = interval_s
        self.batch = min(batch, wire.MAX_BATCH)
        #: called when sync learns a followed economy's genesis
        self.on_economy = on_economy
        self.lag = 0
        self._kick = trio.Event()
        self._peers_to_sync: set[str] = set()
        self._syncing: set[str] = set()  # a round with the peer runs
        self._again: set[str] = set()  # ... and it was kicked meanwhile
        #: connected peers that answered ``summary`` with an error (older
        #: nodes): synced through heads until they reconnect
        self.no_summary: set[str] = set()

    # -- serving -------------------------------------------------------------------

    async def handle(self, peer_id: str, data: bytes) -> bytes:
        try:
            op, args = wire.decode_sync_request(data)
        except Refused as exc:
            return wire.encode_error(exc.reason, exc.detail)
        return await trio.to_thread.run_sync(self._serve, op, args)

    def _serve(self, op: str, args: list[Any]) -> bytes:
        if op == "summary":
            return wire.encode_summary(self.store.summary_of(args[0]))
        if op == "heads":
            return wire.encode_heads(self.store.heads(args[0]))
        if op == "range":
            economy, author, first, limit = args
            return wire.encode_cert_response(self.store.chain_range(economy, author, first, limit))
        if op == "by-id":
            blobs = [self.store.certificate_bytes(i) for i in args[0]]
            return wire.encode_cert_response([b for b in blobs if b is not None])
        if op == "genesis":
            return wire.encode_genesis(self.store.economy(args[0]))
        if op == "forks":
            return wire.encode_fork_slots(self.store.fork_slots(args[0]))
        if op == "fork":
            return wire.encode_fork(self.store.fork(*args))
        if op == "chain":
            return self._serve_chain(*args)
        return wire.encode_error(Reason.MALFORMED, f"unknown op {op}")  # pragma: no cover

    def _serve_chain(self, economy_id: bytes, first_epoch: int) -> bytes:
        economy = self.applier.economies.get(economy_id)
        if economy is None:
            return wire.encode_error(Reason.WRONG_ECONOMY, "this node does not follow it")
        if first_epoch > economy.epoch + 1:
            return wire.encode_error(Reason.WRONG_EPOCH, f"this node is at epoch {economy.epoch}")
        last = min(economy.epoch, first_epoch + MAX_CHAIN_LINKS - 1)
        try:
            chain = CommitteeChain.build(economy.at(last), self.store.certificate, first_epoch)
        except Refused as exc:
            return wire.encode_error(exc.reason, exc.detail)
        return wire.encode_chain(chain)

    # -- fetching -------------------------------------------------------------------

    def peer_connected(self, peer_id: str) -> None:
        self._peers_to_sync.add(peer_id)
        self.no_summary.discard(peer_id)  # it may run newer code now
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                with trio.move_on_after(self.interval_s):
                    await self._kick.wait()
                self._kick = trio.Event()
                peers, self._peers_to_sync = self._peers_to_sync, set()
                if not peers:  # the periodic round: everyone
                    peers = set(self.p2p.peers())
                    self.no_summary &= peers  # forget who left
                for peer in peers:
                    if peer in self._syncing:
                        self._again.add(peer)
                    else:
                        self._syncing.add(peer)
                        nursery.start_soon(self._rounds, peer)

    async def _rounds(self, peer: str) -> None:
        """Sync with ``peer``, once more for each kick during a round."""
        try:
            while True:
                self._again.discard(peer)
                await self.sync_with(peer)
                if peer not in self._again:
                    return
        finally:
            self._syncing.discard(peer)
            self._again.discard(peer)

    async def sync_with(self, peer: str) -> int:
        """One round with ``peer`` over every followed economy; returns the
        number of certificates applied. Errors are logged, never raised."""
        applied = 0
        lag = 0
        for economy_id in list(self.follow):
            try:
                got, behind = await self._economy(peer, economy_id)
            except Exception as exc:  # unreachable, timeout, refused: next round
                log.info("sync with %s failed: %s", peer, exc)
                continue
            applied += got
            lag += behind
        self.lag = lag
        return applied

    async def _request(
        self, peer: str, op: str, *args: object, max_response_bytes: int | None = None
    ) -> bytes:
        request = wire.encode_sync_request(op, *args)
        return await self.p2p.request(
            peer, wire.SYNC_PROTOCOL, request, max_response_bytes=max_response_bytes
        )

    async def _summary(self, peer: str, economy_id: bytes) -> Summary | None:
        """The peer's summary of the economy, or None if it cannot give one
        (it predates ``summary``, or answered something else than one)."""
        if peer in self.no_summary:
            return None
        answer = await self._request(
            peer, "summary", economy_id, max_response_bytes=wire.MAX_SUMMARY_RESPONSE_BYTES
        )
        try:
            return wire.decode_summary(answer)
        except Refused as exc:
            log.info("%s gives no summary (%s): syncing through heads", peer, exc)
            self.no_summary.add(peer)
            return None

    async def _differs(self, peer: str, economy_id: bytes) -> tuple[bool, bool]:
        """Whether the peer's heads, and its fork slots, may differ from
        ours: compared by summary, or (a peer without) assumed to."""
        theirs = await self._summary(peer, economy_id)
        if theirs is None:
            return True, True
        ours = self.store.summary_of(economy_id)
        return not theirs.same_heads(ours), not theirs.same_forks(ours)

    async def _economy(self, peer: str, economy_id: bytes) -> tuple[int, int]:
        if economy_id not in self.applier.economies:
            signed = wire.decode_genesis(await self._request(peer, "genesis", economy_id))
            if signed is None or signed.genesis.id != economy_id:
                return 0, 0
            economy = await self.applier.add_economy(signed)
            if self.on_economy is not None:
                await self.on_economy(economy)
        need_heads, need_forks = await self._differs(peer, economy_id)
        if not need_heads:
            if need_forks:
                await self._forks(peer, economy_id)
            return 0, 0
        theirs = wire.decode_heads(await self._request(peer, "heads", economy_id))
        ours = self.store.heads(economy_id)
        behind = {
            a: n - ours.get(a, 0)
            for a, n in theirs.items()
            if n > ours.get(a, 0)
            and not forked(self.store.fork_seq(economy_id, a), ours.get(a, 0) + 1)
        }
        total_behind = sum(behind.values())
        applied = 0
        # Chains whose next certificates are of an epoch not reached here
        # wait for the others (one of them holds the enactment): passes
        # repeat while one makes progress.
        waiting = list(behind)
        progress = True
        while waiting and progress:
            progress = False
            later = []
            for author in waiting:
                got, epoch_ahead = await self._chain(peer, economy_id, author, theirs[author])
                applied += got
                progress = progress or got > 0
                if epoch_ahead:
                    later.append(author)
            waiting = later
        if need_forks:
            await self._forks(peer, economy_id)
        return applied, max(0, total_behind - applied)

    async def _chain(
        self, peer: str, economy_id: bytes, author: bytes, through: int
    ) -> tuple[int, bool]:
        """Fetch ``author``'s chain from the peer up to ``through``: the
        certificates applied, and whether it stopped at certificates of an
        epoch this node has not reached yet."""
        applied = 0
        first = self.store.account(economy_id, author).seq + 1
        while first <= through:
            limit = min(self.batch, through - first + 1)
            certs = wire.decode_cert_response(
                await self._request(peer, "range", economy_id, author, first, limit)
            )
            if not certs:
                break
            if any(c.entry.author != author or c.entry.economy != economy_id for c in certs):
                raise Refused(Reason.MALFORMED, "peer sent certificates of another chain")
            result = await self.applier.apply(economy_id, certs)
            applied += len(result.applied)
            if result.refused:
                _cert, exc = result.refused[0]
                if exc.reason is Reason.WRONG_EPOCH:
                    return applied, True
                if exc.reason in (Reason.CONFLICT, Reason.FORKED):
                    # The peer is on another branch of a fork: the fork
                    # monitor reports it; nothing more to fetch here.
                    log.info("peer %s holds another branch of a fork: %s", peer, exc)
                else:
                    log.warning("peer %s sent a bad certificate: %s", peer, exc)
                break
            first += len(certs)
        return applied, False

    async def committee_chain(self, peer: str, economy_id: bytes) -> Economy:
        """The peer's committee chain of the economy from the genesis,
        verified from the genesis alone (``epochs.CommitteeChain``): the
        economy at the epoch it reaches. Raises :class:`Refused`."""
        signed = self.store.economy(economy_id)
        if signed is None:
            raise Refused(Reason.WRONG_ECONOMY, "no genesis of that economy here")
        answer = await self._request(
            peer, "chain", economy_id, 1, max_response_bytes=wire.MAX_CHAIN_RESPONSE_BYTES
        )
        return wire.decode_chain(answer).verify(Economy.from_signed(signed))

    async def _forks(self, peer: str, economy_id: bytes) -> int:
        """Fetch the fork evidence ``peer`` holds and this node lacks;
        returns how many slots it proved here. Never raises."""
        try:
            slots = wire.decode_fork_slots(await self._request(peer, "forks", economy_id))
        except Exception as exc:  # an older peer, a timeout: next round
            log.debug("asking %s for forks failed: %s", peer, exc)
            return 0
        proved = 0
        fetched = 0
        for author, seq in slots:
            if forked(self.store.fork_seq(economy_id, author), seq):
                continue  # known, or past a fork known here
            if fetched >= MAX_FORKS_PER_ROUND:
                break
            fetched += 1
            try:
                evidence = wire.decode_fork(
                    await self._request(peer, "fork", economy_id, author, seq)
                )
                if evidence is None:
                    continue
                if (evidence.economy, evidence.author, evidence.seq) != (economy_id, author, seq):
                    raise Refused(Reason.MALFORMED, "evidence for another slot than asked")
                result = await add_evidence(self.applier, economy_id, evidence)
            except Refused as exc:
                log.warning("peer %s served bad fork evidence: %s", peer, exc)
                continue
            except Exception as exc:
                log.info("fetching fork evidence from %s failed: %s", peer, exc)
                break
            proved += len(result.forks)
        return proved

    async def fetch_by_id(self, economy_id: bytes, ids: list[bytes]) -> int:
        """Ask the peers, one after another, for the certificates ``ids``
        (of ``economy_id``) this node lacks, and apply what they send;
        returns how many were found. For suspected forks (``forks.py``)."""
        want = self.store.unknown(ids[: wire.MAX_BATCH])
        found = 0
        for peer in list(self.p2p.peers()):
            if not want:
                break
            try:
                certs = wire.decode_cert_response(await self._request(peer, "by-id", sorted(want)))
            except Exception as exc:
                log.info("asking %s for %d certificates failed: %s", peer, len(want), exc)
                continue
            certs = [c for c in certs if c.entry_id in want and c.entry.economy == economy_id]
            if not certs:
                continue
            await self.applier.apply(economy_id, certs)
            want -= {c.entry_id for c in certs}
            found += len(certs)
        return found
