"""The submitter: turns a signed entry into a certificate.

How it works (DESIGN §4, §7):

* :meth:`Submitter.submit` checks what it can locally (known economy, the
  author's signature), records the entry as pending in the store (so a
  restart resumes it) and returns its id at once.
* One *lane* per (economy, validator) asks that validator about the entries
  it has not answered — at most one per author, the lowest seq, since an
  author's next entry can only be voted once the previous one is certified —
  as ONE batched ``/mycelia/vote/1`` request, and loops. Lanes are
  independent: a slow validator delays nobody, and an entry settles as soon
  as any answer completes its quorum.
* An entry whose author's previous entry this node certified moments ago
  goes with that certificate, since gossip (batched) has likely not
  delivered it yet.
* A vote is verified and counted. A refusal that names needs (``missing``
  predecessors, an unseen admission) is answered on the next round by
  attaching those certificates from our store. An unreachable validator is
  retried with backoff, forever: the entry stays pending and says so. The
  backoff ends early when the validator's node connects again
  (:meth:`Submitter.validator_reachable`): while one validator of four is
  down the other three must all vote, so a lane asleep for its full backoff
  after its validator came back would hold every entry up.
* A refusal is *final* for that validator only if its reason is
  (``reasons.is_final``: a bad signature, a malformed body, the slot taken
  by another entry). A refusal that depends on the validator's possibly
  stale state (``missing`` we cannot cure yet, ``insufficient_balance``,
  ``not_member``, ``clock_skew``, ``buffer_full``) is asked again with
  backoff, while gossip and sync bring this node and the validators what
  they lack, until ``retry_deadline_s`` after the submission; the entry is
  pending *with that reason* meanwhile.
* When the votes reach quorum the certificate is assembled, applied through
  the one writer — which stores it, applied, or parked when this node lacks
  the author's previous entry (``store.py``) — and only once it is durable
  is it published and the entry certified. When the final refusals make
  quorum impossible, the entry is refused (``final``); when the deadline
  passes with final and stale refusals together blocking the quorum, it is
  refused with ``final`` false: the same entry may still be certified
  through another node. Either way the reason is the one carried by the
  most refusing weight, and the refusal is stored (bounded), so
  ``entry_get`` still knows it after a restart.

Statuses come from the store first: an entry whose certificate is stored
(applied or parked) is certified, whatever this node concluded before — a
certificate that arrives by gossip or sync for an entry we refused, or that
survived a crash between its commit and the pending record's delete. At
start, a pending record whose certificate is stored is finished, not
resubmitted. Resubmitting an entry that was refused, or whose certificate
was lost, starts again: validators re-send the vote they locked for it.

Status changes go to subscribers inside the node (the RPC's subscriptions
build on this). A certificate for a pending entry that arrives by gossip or
sync (someone else submitted the same entry) also completes it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier, signature_work
from mycelia.node.config import DEFAULTS
from mycelia.node.store import ApplyResult, Refusal, Store
from mycelia.protocol import (
    Certificate,
    Economy,
    Reason,
    Refused,
    SignedEntry,
    Vote,
    assemble,
)
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain, is_final

__all__ = ["CERTIFIED", "PENDING", "REFUSED", "UNKNOWN", "Status", "Submitter"]

log = logging.getLogger("mycelia.submitter")
PENDING, CERTIFIED, REFUSED = "pending", "certified", "refused"
#: An id this node never saw: no submission, no outcome, no certificate.
UNKNOWN = "unknown"
#: Rounds a curable refusal is retried with attachments at once; after that
#: it is retried with backoff like any refusal that depends on state.
MAX_CURE_ATTEMPTS = 3
#: Backoff between asks after a refusal that depends on state: first, cap (s).
RETRY_FIRST_S, RETRY_MAX_S = 0.25, 5.0
#: Default for how long such refusals are retried after the submission.
RETRY_DEADLINE_S = DEFAULTS.submit.retry_deadline_s
#: An author's previous entry certified here less than this many seconds ago
#: is attached to the next one up front (gossip may not have carried it yet).
RECENT_S = 2.0

#: ``send_votes(validator key, economy id, items) -> one result per item``:
#: the daemon encodes a ``/mycelia/vote/1`` request for another node, and
#: calls its own validator directly (no bytes in between).
SendVotes = Callable[[bytes, bytes, list[wire.VoteItem]], Awaitable[list[wire.VoteResult]]]
Publish = Callable[[bytes, Certificate], None]


@dataclass(frozen=True, slots=True)
class Status:
    entry_id: bytes
    state: str  # PENDING, CERTIFIED, REFUSED or UNKNOWN
    #: refused: why; pending: the refusal being retried, if any
    reason: Reason | None = None
    detail: str = ""
    #: refused only: False when the reason depended on validators' state and
    #: the submitter gave up at its deadline (the entry may yet be certified)
    final: bool = True
    certificate: Certificate | None = None
    #: pending only: validators found unreachable for this entry, so a
    #: caller can tell "waiting for votes" from "waiting for validators".
    waiting_on: int = 0
    #: certified only, and only when certified by this node's submitter:
    #: seconds from submit to certificate.
    latency_s: float | None = None


@dataclass
class _Job:
    signed: SignedEntry
    economy: Economy
    submitted: float
    deadline: float
    votes: dict[int, Vote] = field(default_factory=dict)
    final: dict[int, wire.VoteResult] = field(default_factory=dict)
    #: refusals that depend on the validator's state, asked again at retry_at
    stale: dict[int, wire.VoteResult] = field(default_factory=dict)
    retry_at: dict[int, float] = field(default_factory=dict)
    cures: dict[int, tuple[Need, ...]] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    asking: set[int] = field(default_factory=set)
    unreachable: set[int] = field(default_factory=set)
    certifying: bool = False

    @property
    def id(self) -> bytes:
        return self.signed.id


class Submitter:
    def __init__(
        self,
        store: Store,
        applier: Applier,
        send_votes: SendVotes,
        publish: Publish,
        *,
        max_batch: int = 512,
        max_backoff_s: float = 10.0,
        retry_deadline_s: float = RETRY_DEADLINE_S,
    ) -> None:
        self.store = store
        self.applier = applier
        self._send_votes = send_votes
        self._publish = publish
        self._max_batch = max_batch
        self._max_backoff = max_backoff_s
        self._retry_deadline = retry_deadline_s
        self._jobs: dict[bytes, _Job] = {}
        self._done: dict[bytes, Status] = {}
        self._events: dict[bytes, trio.Event] = {}
        self._subscribers: list[Callable[[Status], None]] = []
        self._wake = trio.Event()
        self._lanes: dict[tuple[bytes, int], trio.Event] = {}
        #: per lane: set when its validator's node connects (ends a backoff)
        self._reachable: dict[tuple[bytes, int], trio.Event] = {}
        self._lane_economies: set[bytes] = set()
        #: the epoch whose committee the economy's lanes ask
        self._lane_epochs: dict[bytes, int] = {}
        self._new_economies: list[Economy] = []
        self._forget: list[bytes] = []
        self._refusals: list[tuple[bytes, Refusal]] = []
        #: jobs with a quorum whose certificate could not be stored yet
        #: (the gap buffer was full): settled again after a pause
        self._unsettled: dict[bytes, Economy] = {}
        #: (economy, author) -> when this node last certified an entry of theirs
        self._certified_at: dict[tuple[bytes, bytes], float] = {}
        self._to_persist: list[tuple[bytes, list[object], trio.Event]] = []
        applier.on_applied(self._on_applied)
        applier.on_result(self._on_result)

    def _on_result(self, economy_id: bytes, result: ApplyResult) -> None:
        """A new epoch (``handover.py``): entries whose votes of the ended
        epoch did not reach its quorum start again in the new one — votes
        of an ended epoch never certify with votes of another, and the old
        committee stopped voting — asked of the new committee's lanes."""
        economy = result.economy
        if economy is None or economy_id not in self._lane_economies:
            return
        started = False
        now = time.monotonic()
        for job in list(self._jobs.values()):
            if job.economy.id != economy_id or job.economy.epoch >= economy.epoch:
                continue
            if job.certifying:
                continue  # a quorum of the ended epoch: its certificate stands
            self._jobs[job.id] = _Job(
                job.signed, economy, job.submitted, now + self._retry_deadline
            )
            started = True
        if economy.epoch > self._lane_epochs.get(economy_id, 0):
            self._lane_epochs[economy_id] = economy.epoch
            self._new_economies.append(economy)
            started = True
        if started:
            self._poke()

    # -- the node-internal API --------------------------------------------------

    async def submit(self, signed: SignedEntry) -> bytes:
        """Accept ``signed`` for certification and return its id once the
        entry is durably recorded. Raises :class:`Refused` for what can be
        refused locally (unknown economy, bad signature); everything else is
        the validators' to decide. Call only while :meth:`run` is running:
        it performs the group commit this waits for (the daemon starts it
        before reporting ready)."""
        economy = self.applier.economies.get(signed.entry.economy)
        if economy is None:
            raise Refused(Reason.WRONG_ECONOMY, "this node does not follow that economy")
        entry_id = await signature_work(signed.verify, 1)
        if entry_id in self._jobs or self.status(entry_id).state == CERTIFIED:
            return entry_id
        # A refused (or lost) entry submitted again is asked for again.
        self._done.pop(entry_id, None)
        record = [signed.to_wire(), int(time.time() * 1000)]
        # Group commit: concurrent submissions share one transaction; the
        # entry is durable before its id is returned.
        done = trio.Event()
        self._to_persist.append((entry_id, record, done))
        self._poke()
        await done.wait()
        self._add_job(signed, economy, time.monotonic())
        return entry_id

    def status(self, entry_id: bytes) -> Status:
        """The store first: a stored certificate makes the entry certified
        whatever was concluded before; then the pending job, this run's
        outcome, a stored refusal."""
        done = self._done.get(entry_id)
        if done is not None and done.state == CERTIFIED:
            return done
        cert = self.store.certificate(entry_id)
        if cert is not None:
            return Status(entry_id, CERTIFIED, certificate=cert)
        job = self._jobs.get(entry_id)
        if job is not None:
            stale = self._stale_reason(job)
            return Status(
                entry_id,
                PENDING,
                reason=stale[0] if stale else None,
                detail=stale[1] if stale else "",
                waiting_on=len(job.unreachable),
            )
        if done is not None:
            return done
        refusal = self.store.refusal(entry_id)
        if refusal is not None:
            try:
                reason = Reason(refusal.reason)
            except ValueError:  # written by a newer version
                reason = Reason.MALFORMED
            return Status(entry_id, REFUSED, reason, refusal.detail, final=refusal.final)
        return Status(entry_id, UNKNOWN)

    async def wait(self, entry_id: bytes) -> Status:
        """Until the entry is certified or refused."""
        while entry_id in self._jobs:
            event = self._events.setdefault(entry_id, trio.Event())
            await event.wait()
        return self.status(entry_id)

    def validator_reachable(self, validator: bytes) -> None:
        """``validator``'s node has connected: lanes waiting out a backoff
        for it ask it again now."""
        for (economy_id, index), event in self._reachable.items():
            economy = self.applier.economies.get(economy_id)
            if economy is not None and economy.validators[index] == validator:
                event.set()

    def subscribe(self, fn: Callable[[Status], None]) -> None:
        self._subscribers.append(fn)

    @property
    def pending_count(self) -> int:
        return len(self._jobs)

    # -- the lanes -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume stored pending entries, then run one lane per (economy,
        validator) as economies get work. Lanes are independent, so a slow or
        unreachable validator delays nobody."""
        for entry_id, record in self.store.pending().items():
            if self.store.certificate_bytes(entry_id) is not None:
                # Certified (committed) before the pending record's delete:
                # done, never asked again (validators would say seq_reused).
                self._forget.append(entry_id)
                continue
            try:
                signed = SignedEntry.from_wire(record[0])
                economy = self.applier.economies[signed.entry.economy]
            except (Refused, KeyError, IndexError) as exc:
                log.warning("dropping unreadable pending entry %s: %s", entry_id.hex(), exc)
                self._forget.append(entry_id)
                continue
            self._add_job(signed, economy, time.monotonic())
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                while self._new_economies:
                    economy = self._new_economies.pop()
                    for index in range(len(economy.validators)):
                        self._lanes[(economy.id, index)] = trio.Event()
                        nursery.start_soon(self._lane, economy, index)
                if self._unsettled:
                    nursery.start_soon(self._resettle, dict(self._unsettled))
                    self._unsettled.clear()
                if self._to_persist or self._forget or self._refusals:
                    batch, self._to_persist = self._to_persist, []
                    ids, self._forget = self._forget, []
                    refusals, self._refusals = self._refusals, []
                    records = [(entry_id, record) for entry_id, record, _ in batch]
                    await trio.to_thread.run_sync(
                        self.store.update_pending_sync, records, ids, refusals
                    )
                    for _, _, done in batch:
                        done.set()
                self._wake = trio.Event()
                if self._to_persist or self._forget or self._refusals or self._new_economies:
                    continue
                await self._wake.wait()

    async def _resettle(self, jobs: dict[bytes, Economy]) -> None:
        await trio.sleep(1.0)
        by_economy: dict[bytes, tuple[Economy, list[_Job]]] = {}
        for entry_id, economy in jobs.items():
            job = self._jobs.get(entry_id)
            if job is not None:
                by_economy.setdefault(economy.id, (economy, []))[1].append(job)
        for economy, group in by_economy.values():
            await self._settle(economy, group)

    def _add_job(self, signed: SignedEntry, economy: Economy, now: float) -> None:
        self._jobs[signed.id] = _Job(signed, economy, now, now + self._retry_deadline)
        if economy.id not in self._lane_economies:
            self._lane_economies.add(economy.id)
            self._lane_epochs[economy.id] = economy.epoch
            self._new_economies.append(economy)
        self._poke()

    def _poke(self) -> None:
        self._wake.set()
        for event in self._lanes.values():
            event.set()

    def _eligible(self, economy: Economy, index: int) -> tuple[list[_Job], float | None]:
        """Jobs lane ``index`` should ask about now: per author only the
        lowest pending seq, not yet answered by this validator (or due to be
        asked again), not in flight; and when the next retry falls due."""
        lowest: dict[bytes, _Job] = {}
        for job in self._jobs.values():
            e = job.signed.entry
            if e.economy != economy.id or job.economy.epoch != economy.epoch:
                continue
            held = lowest.get(e.author)
            if held is None or e.seq < held.signed.entry.seq:
                lowest[e.author] = job
        now = time.monotonic()
        out = []
        next_retry: float | None = None
        for j in lowest.values():
            if index in j.votes or index in j.final or index in j.asking:
                continue
            due = j.retry_at.get(index)
            if due is not None and due > now:
                next_retry = due if next_retry is None else min(next_retry, due)
                continue
            out.append(j)
        return out[: self._max_batch], next_retry

    async def _lane(self, economy: Economy, index: int) -> None:
        key = economy.validators[index]
        lane = (economy.id, index)
        backoff = 0.0
        while True:
            if self._lane_epochs.get(economy.id, economy.epoch) != economy.epoch:
                return  # the new epoch's lanes ask its committee
            jobs, next_retry = self._eligible(economy, index)
            if not jobs:
                self._lanes[lane] = trio.Event()
                # Woken by new work, or when a refusal falls due to be asked again.
                wait_s = math.inf if next_retry is None else next_retry - time.monotonic()
                with trio.move_on_after(max(0.0, wait_s)):
                    await self._lanes[lane].wait()
                continue
            for j in jobs:
                j.asking.add(index)
            try:
                answered = await self._ask(economy, index, key, jobs)
            finally:
                for j in jobs:
                    j.asking.discard(index)
            await self._settle(economy, jobs)
            if answered:
                backoff = 0.0
            else:  # unreachable: the entries stay pending; try again later
                backoff = min(self._max_backoff, max(0.05, backoff * 2))
                for job in jobs:
                    job.unreachable.add(index)
                reachable = self._reachable[lane] = trio.Event()
                with trio.move_on_after(backoff):
                    await reachable.wait()
                if reachable.is_set():
                    backoff = 0.0

    async def _ask(self, economy: Economy, index: int, key: bytes, jobs: list[_Job]) -> bool:
        items = [wire.VoteItem(j.signed, self._attachments(j, index)) for j in jobs]
        try:
            results = await self._send_votes(key, economy.id, items)
            if len(results) != len(jobs):
                raise Refused(Reason.MALFORMED, f"{len(results)} results for {len(jobs)} entries")
        except Refused as exc:
            log.warning("validator %d answered badly: %s", index, exc)
            return False
        except Exception as exc:  # unreachable, timeout, reset: retry later
            log.info("validator %d unreachable: %s", index, exc)
            return False

        def valid_votes() -> list[bool]:  # in a worker thread for more than a few
            out = []
            for job, result in zip(jobs, results, strict=True):
                vote = result.vote
                ok = vote is not None and vote.entry_id == job.id and vote.validator == key
                if ok and vote is not None:
                    try:
                        vote.verify(economy)
                    except Refused:
                        ok = False
                out.append(ok)
            return out

        valid = await signature_work(valid_votes, len(jobs))
        now = time.monotonic()
        for job, result, ok in zip(jobs, results, valid, strict=True):
            if self._jobs.get(job.id) is not job:
                continue  # started again in a new epoch meanwhile
            job.unreachable.discard(index)
            job.retry_at.pop(index, None)
            if result.vote is not None:
                if not ok:
                    continue
                job.votes[index] = result.vote
                job.cures.pop(index, None)
                job.stale.pop(index, None)
                continue
            assert result.reason is not None
            job.attempts[index] += 1
            if result.needs and job.attempts[index] <= MAX_CURE_ATTEMPTS:
                job.cures[index] = result.needs  # attached on the next ask
            elif is_final(result.reason):
                job.final[index] = result
                job.stale.pop(index, None)
            else:
                # Not final: ask again later (with what we may have learnt).
                job.stale[index] = result
                if result.needs:
                    job.cures[index] = result.needs
                k = max(0, job.attempts[index] - MAX_CURE_ATTEMPTS - 1)
                job.retry_at[index] = now + min(RETRY_MAX_S, RETRY_FIRST_S * 2**k)
        return True

    def _attachments(self, job: _Job, index: int) -> tuple[Certificate, ...]:
        needs = job.cures.get(index, ())
        out: list[Certificate] = []
        econ = job.economy.id
        entry = job.signed.entry
        if (
            not needs
            and entry.seq > 1
            and time.monotonic() - self._certified_at.get((econ, entry.author), -1e9) < RECENT_S
        ):
            # The author's previous entry was certified here a moment ago;
            # gossip batches it for a while, so the validator most likely
            # lacks it: attach it now rather than pay a round trip for
            # "missing". A validator that has it skips it with one lookup.
            previous = self.store.chain_range(econ, entry.author, entry.seq - 1, 1)
            return tuple(Certificate.decode(b) for b in previous)

        for need in needs:
            if isinstance(need, NeedChain):
                count = job.signed.entry.seq - 1 - need.after_seq
                if count > 0:
                    blobs = self.store.chain_range(
                        econ, need.author, need.after_seq + 1, min(count, wire.MAX_ATTACHED)
                    )
                    out.extend(Certificate.decode(b) for b in blobs)
            elif isinstance(need, NeedAdmission):
                admitted = self.store.account(econ, need.account).admitted
                cert = self.store.certificate(admitted) if admitted else None
                if cert is not None:
                    out.append(cert)
            elif isinstance(need, NeedCertificate):
                cert = self.store.certificate(need.id)
                if cert is not None:
                    out.append(cert)
        return tuple(out[: wire.MAX_ATTACHED])

    async def _settle(self, economy: Economy, jobs: list[_Job]) -> None:
        """Certify the jobs that reached quorum — ONE apply for all of them,
        so one answer's worth of certificates shares one transaction (applied
        one by one, each waited for its own fsync and stalled the lane) —
        and refuse those whose quorum the final refusals block."""
        ready: list[tuple[_Job, Certificate]] = []
        for job in jobs:
            if self._jobs.get(job.id) is not job:
                continue  # done, or started again in a new epoch
            if economy.weight(job.votes) >= economy.quorum:
                if job.certifying:
                    continue
                job.certifying = True
                # Each vote was verified when it arrived (_ask).
                cert = assemble(economy, job.signed, job.votes.values(), verified=True)
                ready.append((job, cert))
            elif economy.quorum_blocked(job.final):
                reason, detail = _heaviest(economy, job.final)
                self._finish(job, Status(job.id, REFUSED, reason, detail))
            elif time.monotonic() >= job.deadline and economy.quorum_blocked(
                job.final.keys() | job.stale.keys()
            ):
                reason, detail = _heaviest(economy, {**job.stale, **job.final})
                detail = (
                    f"{detail} (not certified within {self._retry_deadline:g} s; this refusal "
                    "depends on what the validators had seen and is not final: the same entry "
                    "may still be certified, e.g. submitted again)"
                )
                self._finish(job, Status(job.id, REFUSED, reason, detail, final=False))
        if not ready:
            return
        result = await self.applier.apply(economy.id, [c for _, c in ready], verified=True)
        refused = {c.entry_id: exc for c, exc in result.refused}
        for job, cert in ready:
            exc = refused.get(job.id)
            if exc is not None:
                if not is_final(exc.reason):  # e.g. the gap buffer is full: later
                    job.certifying = False
                    self._unsettled[job.id] = economy
                    self._wake.set()
                    continue
                self._finish(job, Status(job.id, REFUSED, exc.reason, exc.detail))
                continue
            # Durable now: applied, parked behind a gap, or stored before.
            self._publish(economy.id, cert)
            self._finish(job, Status(job.id, CERTIFIED, certificate=cert))

    @staticmethod
    def _stale_reason(job: _Job) -> tuple[Reason, str] | None:
        if not job.stale:
            return None
        return _heaviest(job.economy, job.stale)

    def _finish(self, job: _Job, status: Status) -> None:
        if self._jobs.pop(job.id, None) is None:
            return
        self._done[job.id] = status
        if len(self._done) > 100_000:  # bounded memory: the store keeps certificates
            self._done.pop(next(iter(self._done)))
        self._forget.append(job.id)
        if status.state == REFUSED:
            assert status.reason is not None
            refusal = Refusal(
                status.reason.value, status.detail, status.final, int(time.time() * 1000)
            )
            self._refusals.append((job.id, refusal))
        if status.state == CERTIFIED:
            e = job.signed.entry
            self._certified_at[(e.economy, e.author)] = time.monotonic()
            if len(self._certified_at) > 100_000:
                self._certified_at.pop(next(iter(self._certified_at)))
            status = dataclasses.replace(status, latency_s=time.monotonic() - job.submitted)
            self._done[job.id] = status
        event = self._events.pop(job.id, None)
        if event is not None:
            event.set()
        for fn in self._subscribers:
            fn(status)
        self._poke()  # the author's next entry may be eligible now

    def _on_applied(self, economy_id: bytes, certs: tuple[Certificate, ...]) -> None:
        for cert in certs:
            job = self._jobs.get(cert.entry_id)
            if job is not None:
                self._finish(job, Status(cert.entry_id, CERTIFIED, certificate=cert))


def _heaviest(economy: Economy, answers: dict[int, wire.VoteResult]) -> tuple[Reason, str]:
    """The reason carried by the most validator weight among ``answers``,
    with the first detail given for it."""
    by_reason: Counter[Reason] = Counter()
    details: dict[Reason, str] = {}
    for i, r in answers.items():
        assert r.reason is not None
        by_reason[r.reason] += economy.weights[i]
        details.setdefault(r.reason, r.detail)
    reason = by_reason.most_common(1)[0][0]
    return reason, details[reason]
