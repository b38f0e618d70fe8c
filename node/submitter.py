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
  attaching those certificates from our store; a refusal without needs is
  final for that validator. An unreachable validator is retried with
  backoff, forever: the entry stays pending and says so.
* When the votes reach quorum the certificate is assembled, applied through
  the one writer, published by gossip, and the entry is certified. When the
  final refusals make quorum impossible, the entry is refused with the
  reason carried by the most refusing weight.

Status changes go to subscribers inside the node (the RPC's subscriptions
build on this). A certificate for a pending entry that arrives by gossip or
sync (someone else submitted the same entry) also completes it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier, signature_work
from mycelia.node.store import Store
from mycelia.protocol import (
    Certificate,
    Economy,
    Reason,
    Refused,
    SignedEntry,
    Vote,
    assemble,
)
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain

__all__ = ["CERTIFIED", "PENDING", "REFUSED", "UNKNOWN", "Status", "Submitter"]

log = logging.getLogger("mycelia.submitter")
PENDING, CERTIFIED, REFUSED = "pending", "certified", "refused"
#: An id this node never saw: no submission, no outcome, no certificate.
UNKNOWN = "unknown"
#: Rounds a curable refusal may be retried with attachments before it is final.
MAX_CURE_ATTEMPTS = 3
#: An author's previous entry certified here less than this many seconds ago
#: is attached to the next one up front (gossip may not have carried it yet).
RECENT_S = 2.0

SendVotes = Callable[[bytes, bytes], Awaitable[bytes]]
Publish = Callable[[bytes, Certificate], None]


@dataclass(frozen=True, slots=True)
class Status:
    entry_id: bytes
    state: str  # PENDING, CERTIFIED, REFUSED or UNKNOWN
    reason: Reason | None = None
    detail: str = ""
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
    votes: dict[int, Vote] = field(default_factory=dict)
    final: dict[int, wire.VoteResult] = field(default_factory=dict)
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
    ) -> None:
        self.store = store
        self.applier = applier
        self._send_votes = send_votes
        self._publish = publish
        self._max_batch = max_batch
        self._max_backoff = max_backoff_s
        self._jobs: dict[bytes, _Job] = {}
        self._done: dict[bytes, Status] = {}
        self._events: dict[bytes, trio.Event] = {}
        self._subscribers: list[Callable[[Status], None]] = []
        self._wake = trio.Event()
        self._lanes: dict[tuple[bytes, int], trio.Event] = {}
        self._lane_economies: set[bytes] = set()
        self._new_economies: list[Economy] = []
        self._forget: list[bytes] = []
        #: (economy, author) -> when this node last certified an entry of theirs
        self._certified_at: dict[tuple[bytes, bytes], float] = {}
        self._to_persist: list[tuple[bytes, list[object], trio.Event]] = []
        applier.on_applied(self._on_applied)

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
        job = self._jobs.get(entry_id)
        if job is not None:
            return Status(entry_id, PENDING, waiting_on=len(job.unreachable))
        done = self._done.get(entry_id)
        if done is not None:
            return done
        cert = self.store.certificate(entry_id)
        if cert is not None:
            return Status(entry_id, CERTIFIED, certificate=cert)
        return Status(entry_id, UNKNOWN)

    async def wait(self, entry_id: bytes) -> Status:
        """Until the entry is certified or refused."""
        while entry_id in self._jobs:
            event = self._events.setdefault(entry_id, trio.Event())
            await event.wait()
        return self.status(entry_id)

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
                if self._to_persist or self._forget:
                    batch, self._to_persist = self._to_persist, []
                    ids, self._forget = self._forget, []
                    records = [(entry_id, record) for entry_id, record, _ in batch]
                    await trio.to_thread.run_sync(self.store.update_pending_sync, records, ids)
                    for _, _, done in batch:
                        done.set()
                self._wake = trio.Event()
                if self._to_persist or self._forget or self._new_economies:
                    continue
                await self._wake.wait()

    def _add_job(self, signed: SignedEntry, economy: Economy, now: float) -> None:
        self._jobs[signed.id] = _Job(signed, economy, now)
        if economy.id not in self._lane_economies:
            self._lane_economies.add(economy.id)
            self._new_economies.append(economy)
        self._poke()

    def _poke(self) -> None:
        self._wake.set()
        for event in self._lanes.values():
            event.set()

    def _eligible(self, economy: Economy, index: int) -> list[_Job]:
        """Jobs lane ``index`` should ask about now: per author only the
        lowest pending seq, not yet answered by this validator, not in flight."""
        lowest: dict[bytes, _Job] = {}
        for job in self._jobs.values():
            e = job.signed.entry
            if e.economy != economy.id:
                continue
            held = lowest.get(e.author)
            if held is None or e.seq < held.signed.entry.seq:
                lowest[e.author] = job
        out = [
            j
            for j in lowest.values()
            if index not in j.votes and index not in j.final and index not in j.asking
        ]
        return out[: self._max_batch]

    async def _lane(self, economy: Economy, index: int) -> None:
        key = economy.validators[index]
        lane = (economy.id, index)
        backoff = 0.0
        while True:
            jobs = self._eligible(economy, index)
            if not jobs:
                self._lanes[lane] = trio.Event()
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
                await trio.sleep(backoff)

    async def _ask(self, economy: Economy, index: int, key: bytes, jobs: list[_Job]) -> bool:
        items = [wire.VoteItem(j.signed, self._attachments(j, index)) for j in jobs]
        request = wire.encode_vote_request(economy.id, items)
        try:
            response = await self._send_votes(key, request)
            results = wire.decode_vote_response(response, len(jobs))
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
                if ok:
                    try:
                        vote.verify(economy)  # type: ignore[union-attr]
                    except Refused:
                        ok = False
                out.append(ok)
            return out

        valid = await signature_work(valid_votes, len(jobs))
        for job, result, ok in zip(jobs, results, valid, strict=True):
            job.unreachable.discard(index)
            if result.vote is not None:
                if not ok:
                    continue
                job.votes[index] = result.vote
                job.cures.pop(index, None)
            elif result.needs and job.attempts[index] < MAX_CURE_ATTEMPTS:
                job.attempts[index] += 1
                job.cures[index] = result.needs
            else:
                job.final[index] = result
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
            if job.id not in self._jobs:
                continue
            if economy.weight(job.votes) >= economy.quorum:
                if job.certifying:
                    continue
                job.certifying = True
                # Each vote was verified when it arrived (_ask).
                cert = assemble(economy, job.signed, job.votes.values(), verified=True)
                ready.append((job, cert))
            elif economy.quorum_blocked(job.final):
                by_reason: Counter[Reason] = Counter()
                details: dict[Reason, str] = {}
                for i, r in job.final.items():
                    assert r.reason is not None
                    by_reason[r.reason] += economy.weights[i]
                    details.setdefault(r.reason, r.detail)
                reason = by_reason.most_common(1)[0][0]
                self._finish(job, Status(job.id, REFUSED, reason, details[reason]))
        if not ready:
            return
        result = await self.applier.apply(economy.id, [c for _, c in ready], verified=True)
        refused = {c.entry_id: exc for c, exc in result.refused}
        for job, cert in ready:
            exc = refused.get(job.id)
            if exc is not None:
                self._finish(job, Status(job.id, REFUSED, exc.reason, exc.detail))
                continue
            self._publish(economy.id, cert)
            self._finish(job, Status(job.id, CERTIFIED, certificate=cert))

    def _finish(self, job: _Job, status: Status) -> None:
        if self._jobs.pop(job.id, None) is None:
            return
        self._done[job.id] = status
        if len(self._done) > 100_000:  # bounded memory: the store keeps certificates
            self._done.pop(next(iter(self._done)))
        self._forget.append(job.id)
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

    def _on_applied(self, economy_id: bytes, ids: tuple[bytes, ...]) -> None:
        for entry_id in ids:
            job = self._jobs.get(entry_id)
            if job is not None:
                cert = self.store.certificate(entry_id)
                self._finish(job, Status(entry_id, CERTIFIED, certificate=cert))
