"""The consumer relay: a wallet buys compute through its node, which dials
the provider and carries each request and answer, and signs nothing.

Why this exists: a wallet speaks the node's JSON-RPC, not libp2p; the
consumer's key stays in the wallet, which applies the consumer's rule to
every answer and signs every voucher itself (``mycelia.client``,
``protocol/compute.py``'s ``ConsumerJob``). So the node only relays: it
builds the job the wallet asks for (its economy, offer, channel, runtime,
input, limits and ``base``, with a fresh nonce), finds the provider's peer
and addresses in the offer it holds from gossip (``market.py``), dials it,
and sends the JOB, each VOUCHER, POLL and CANCEL as one
``/mycelia/compute/1`` request, returning the provider's answer as it came
(its bytes: the wallet verifies them, the node does not vouch for them).

It remembers the jobs it relays (at most ``compute.max_relayed_jobs``;
those that ended go first when it is full, and each is forgotten
:data:`KEPT_S` after its last request) — the provider's peer, the job and
the newest USAGE or RESULT — so the wallet names a job by its id alone. Watching a
job (the RPC's ``job`` subscription) polls the provider about once a
second (:data:`WATCH_S`) while someone watches and the job has not ended,
and tells the watchers each new answer.

Bounded: requests are one frame each way (``compute_frames.MAX_FRAME_BYTES``
the largest answer accepted), each within the node's p2p request timeout.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mycelia.node.compute.market import Market
from mycelia.node.p2p import P2P, P2PError
from mycelia.protocol.compute_frames import (
    MAX_FRAME_BYTES,
    NONCE_SIZE,
    PROTOCOL,
    CancelFrame,
    ErrorFrame,
    InlineInput,
    Job,
    JobFrame,
    PollFrame,
    Request,
    ResultFrame,
    VoucherFrame,
    decode_answer,
)
from mycelia.protocol.offers import Limits, SignedOffer
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["KEPT_S", "WATCH_S", "Relay", "RelayError", "Relayed"]

log = logging.getLogger("mycelia.compute")

#: Seconds between two polls of a watched job.
WATCH_S = 1.0
#: Seconds a relayed job is remembered after its last request.
KEPT_S = 3600.0

#: A watcher of a job: called with each new answer (its bytes), on the trio thread.
Watcher = Callable[["Relayed", bytes], None]


class RelayError(Exception):
    """The relay could not do what was asked: ``reason`` is a stable code
    (``unknown_offer``, ``unknown_job``, ``too_many_jobs``,
    ``provider_unreachable``), ``detail`` for humans."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(eq=False, slots=True)
class Relayed:
    """A job this node relays: the offer it was made against, the job, and
    the provider's newest answer (its bytes, as the provider sent them)."""

    offer: SignedOffer
    job: Job
    answer: bytes
    used_at: float
    watchers: dict[int, Watcher] = field(default_factory=dict)
    polling: bool = False

    @property
    def id(self) -> bytes:
        return self.job.id

    #: the provider no longer holds the job (it answered ``unknown_job``)
    gone: bool = False

    @property
    def ended(self) -> bool:
        """The provider answered its RESULT, or holds the job no more:
        nothing about it will change."""
        return self.gone or type(decode_answer(self.answer)) is ResultFrame


class Relay:
    """Relays wallets' jobs to providers (see the module docstring)."""

    def __init__(self, p2p: P2P, market: Market, *, max_jobs: int) -> None:
        self.p2p = p2p
        self.market = market
        self.max_jobs = max_jobs
        self.jobs: OrderedDict[bytes, Relayed] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self._watch_ids = 0
        #: plain counters (metrics)
        self.requests = 0
        self.failures = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the watchers' pollers until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- the wallet's requests ------------------------------------------------------------

    async def start(
        self,
        offer_id: bytes,
        channel: bytes,
        runtime: str,
        data: bytes,
        *,
        limits: Limits | None = None,
        base: int = 0,
    ) -> Relayed:
        """Build the job and send its JOB to the offer's provider. Raises
        ``Refused`` for a job the protocol refuses to build, ``RelayError``."""
        signed = self.market.offer(offer_id)
        if signed is None:
            raise RelayError("unknown_offer", f"no unexpired offer {offer_id.hex()} is known here")
        offer = signed.offer
        limits = limits if limits is not None else offer.runtime(runtime).limits
        job = Job(
            economy=offer.economy,
            offer=offer.id,
            channel=channel,
            base=base,
            nonce=secrets.token_bytes(NONCE_SIZE),
            runtime=runtime,
            limits=limits,
            input=InlineInput(data),
        )
        self._make_room()
        answer = await self._ask(signed, JobFrame(job))
        relayed = Relayed(signed, job, answer, trio.current_time())
        if type(decode_answer(answer)) is not ErrorFrame:
            self._make_room()
            self.jobs[job.id] = relayed
        return relayed

    # Each returns the provider's answer to the request (its bytes); a job
    # that ended is answered from what the relay holds, without asking.

    async def voucher(self, job_id: bytes, voucher: bytes) -> bytes:
        relayed = self.job(job_id)
        return await self._update(relayed, VoucherFrame(job_id, voucher))

    async def poll(self, job_id: bytes) -> bytes:
        relayed = self.job(job_id)
        if relayed.ended:
            return relayed.answer
        return await self._update(relayed, PollFrame(job_id))

    async def cancel(self, job_id: bytes) -> bytes:
        relayed = self.job(job_id)
        if relayed.ended:
            return relayed.answer
        return await self._update(relayed, CancelFrame(job_id))

    def job(self, job_id: bytes) -> Relayed:
        """The relayed job ``job_id``, else ``RelayError`` ``unknown_job``."""
        relayed = self.jobs.get(job_id)
        if relayed is None:
            raise RelayError("unknown_job", f"this node relays no job {job_id.hex()}")
        relayed.used_at = trio.current_time()
        self.jobs.move_to_end(job_id)
        return relayed

    def _make_room(self) -> None:
        now = trio.current_time()
        for job_id in [i for i, r in self.jobs.items() if now - r.used_at > KEPT_S]:
            del self.jobs[job_id]
        if len(self.jobs) < self.max_jobs:
            return
        for job_id, r in self.jobs.items():
            if r.ended and not r.watchers:
                del self.jobs[job_id]
                return
        raise RelayError(
            "too_many_jobs", f"this node relays {len(self.jobs)} jobs (compute.max_relayed_jobs)"
        )

    async def _update(self, relayed: Relayed, request: Request) -> bytes:
        answer = await self._ask(relayed.offer, request)
        self._answered(relayed, answer)
        return answer

    def _answered(self, relayed: Relayed, answer: bytes) -> None:
        """The job's state moves with a USAGE or RESULT; an ERROR refuses one
        request (a bad voucher, say), except ``unknown_job``: the job is gone."""
        if answer == relayed.answer or relayed.ended:
            return
        frame = decode_answer(answer)
        if type(frame) is ErrorFrame:
            if frame.code != Reason.UNKNOWN_JOB:
                return
            relayed.gone = True
        relayed.answer = answer
        for watcher in list(relayed.watchers.values()):
            try:
                watcher(relayed, answer)
            except Exception:  # never into the relay
                log.exception("a job watcher failed")

    async def _ask(self, signed: SignedOffer, request: Request) -> bytes:
        """One request to the offer's provider; the answer's bytes (checked
        to be an answer frame)."""
        offer = signed.offer
        self.requests += 1
        try:
            if offer.peer not in self.p2p.peers():
                await self._dial(signed)
            raw = await self.p2p.request(
                offer.peer, PROTOCOL, request.encode(), max_response_bytes=MAX_FRAME_BYTES
            )
            decode_answer(raw)
        except P2PError as exc:
            self.failures += 1
            raise RelayError(
                "provider_unreachable", f"the provider {offer.peer} did not answer: {exc}"
            ) from None
        except Refused as exc:
            self.failures += 1
            raise RelayError(
                "provider_unreachable", f"the provider {offer.peer} answered no answer: {exc}"
            ) from None
        return raw

    async def _dial(self, signed: SignedOffer) -> None:
        offer = signed.offer
        last: Exception | None = None
        for addr in offer.addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{offer.peer}"
            try:
                await self.p2p.connect(full)
                return
            except (P2PError, ValueError) as exc:
                last = exc
        if last is not None:
            raise P2PError(f"no address of the offer reached {offer.peer}: {last}")

    # -- watching -----------------------------------------------------------------------------

    def watch(self, job_id: bytes, watcher: Watcher) -> int:
        """Call ``watcher`` with each new answer of the job (polling the
        provider while someone watches); a handle for :meth:`unwatch`."""
        relayed = self.job(job_id)
        self._watch_ids += 1
        relayed.watchers[self._watch_ids] = watcher
        if not relayed.polling and not relayed.ended and self._nursery is not None:
            relayed.polling = True
            self._nursery.start_soon(self._poll_while_watched, relayed)
        return self._watch_ids

    def unwatch(self, job_id: bytes, handle: int) -> None:
        relayed = self.jobs.get(job_id)
        if relayed is not None:
            relayed.watchers.pop(handle, None)

    async def _poll_while_watched(self, relayed: Relayed) -> None:
        try:
            while relayed.watchers and not relayed.ended:
                await trio.sleep(WATCH_S)
                try:
                    answer = await self._ask(relayed.offer, PollFrame(relayed.id))
                except RelayError as exc:
                    log.info("watching job %s: %s", relayed.id.hex()[:16], exc)
                    continue
                self._answered(relayed, answer)
        finally:
            relayed.polling = False
