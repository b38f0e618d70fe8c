"""The provider: serves ``/mycelia/compute/1``, runs each job it takes while
it is paid, and keeps the newest voucher of each channel durably.

Why this exists: a node with ``[compute] enabled`` sells its runtimes to
consumers it does not trust (DESIGN §6, ``docs/compute.md``). Every rule it
follows is ``protocol/compute.py``'s (which JOB to take, what to bill, when
to freeze or kill, which voucher to keep); this module moves the frames,
runs the job through the runner (``runner.py``), persists vouchers and
reads the clock.

Requests (one frame in, one answer out: ``node/p2p.py``'s streams, each
bounded in size by ``compute_frames.MAX_FRAME_BYTES`` and in time by the
handler's timeout):

* **JOB** — a job this node holds already (its answer was lost) is answered
  as a POLL. Else, in order: ``compute_disabled``; ``peer_busy`` (the peer
  has ``compute.max_jobs_per_peer`` jobs running); the job names one of
  this node's unexpired offers (``find_offer``); its channel as this
  node's ledger holds it (``check_job_channel``: certified, paying this
  node, unsettled, not paying another job now nor being closed, lasting
  past the job's wall limit plus ``compute.close_margin_s``); the job
  against the offer (``check_job``, with the newest voucher held on the
  channel as ``held``); an input by hash is ``missing`` (this version
  fetches none); the runner admits it (``runtime_unknown``, ``over_limits``,
  ``runner_busy``). Then the job starts — or, when even its fee is beyond
  the credit window, waits for that voucher (within the grace) first — and
  the answer is its USAGE seq 1.
* **VOUCHER** — checked against the channel as the ledger holds it
  (``ProviderJob.check_voucher``); a newer one is written to the store
  (``VoucherKeeper``: a group commit, one fsync for every voucher that
  arrived meanwhile) and only then held, so the job works on only for what
  is durable. Answered as a POLL.
* **POLL** — the job's newest USAGE (signed anew only when the counters
  moved), or its RESULT.
* **CANCEL** — the job is killed (outcome ``cancelled``); answered as a POLL.

A job's task (in the provider's nursery) meters the job every
``compute.poll_interval_s``, applies the credit rule (continue, freeze,
kill — ``ProviderJob.decide``) at each tick and at each voucher, and at the
end signs the RESULT. It then waits up to ``compute.final_voucher_s`` for
the voucher of the final price and hands the channel to the closer
(``closer.py``), which settles it with the newest voucher held.

Jobs do not survive a restart: the runner's processes die with the node
(``runner.py``); a request about a job this node no longer holds is
answered ``unknown_job``, and the closer closes every channel it holds a
voucher of at start. A job that ended stays answerable (its RESULT) for
:data:`ENDED_KEPT_S`, at most :data:`MAX_ENDED` of them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mycelia.node.compute.market import Market
from mycelia.node.compute.reasons import RunnerReason, RunnerRefused
from mycelia.node.compute.runner import Job as RunningJob
from mycelia.node.compute.runner import JobError, JobResult, Outcome, Runner
from mycelia.node.config import ComputeConfig
from mycelia.node.store import Store
from mycelia.protocol import SigningKey, channel_state
from mycelia.protocol.channels import ChannelState, Settlement, SignedVoucher
from mycelia.protocol.compute import (
    Action,
    ProviderJob,
    check_job,
    check_job_channel,
    find_job,
    find_offer,
)
from mycelia.protocol.compute_frames import (
    COMPLETED,
    Answer,
    CancelFrame,
    ErrorFrame,
    InlineInput,
    Job,
    JobFrame,
    PollFrame,
    Request,
    UsageFrame,
    VoucherFrame,
    decode_request,
)
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["ENDED_KEPT_S", "MAX_ENDED", "Provider", "VoucherKeeper", "exit_and_outcome"]

log = logging.getLogger("mycelia.compute")

#: How long a job that ended still answers with its RESULT.
ENDED_KEPT_S = 3600.0
#: Most ended jobs kept for their RESULT.
MAX_ENDED = 1024
#: Most vouchers one transaction writes.
_GROUP = 512


# -- vouchers: persisted before they count ----------------------------------------------


@dataclass(eq=False, slots=True)
class _Batch:
    """Vouchers that go into one transaction, and when it committed."""

    items: list[tuple[bytes, SignedVoucher]] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)
    held: list[bool] = field(default_factory=list)
    error: BaseException | None = None


class VoucherKeeper:
    """Writes vouchers to the store in group commits: every voucher that
    arrives while one transaction commits goes into the next, so one fsync
    serves many. :meth:`hold` returns once its voucher is durable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next = _Batch()
        self._wake = trio.Event()
        #: plain counters (metrics): vouchers written, transactions
        self.persisted = 0
        self.commits = 0

    async def hold(self, economy: bytes, voucher: SignedVoucher) -> bool:
        """Keep ``voucher`` if it supersedes the one held on its channel;
        whether it is the one held now. Raises what the store raised."""
        batch = self._next
        index = len(batch.items)
        batch.items.append((economy, voucher))
        self._wake.set()
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.held[index]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._next = self._next, _Batch()
            for start in range(0, len(batch.items), _GROUP):
                part = batch.items[start : start + _GROUP]
                try:
                    held = await trio.to_thread.run_sync(self.store.hold_vouchers_sync, part)
                except Exception as exc:  # each waiter gets it; the keeper goes on
                    log.exception("could not persist %d vouchers", len(part))
                    batch.error = exc
                    break
                batch.held += held
                self.commits += 1
                self.persisted += sum(held)
            batch.done.set()


# -- the jobs ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Run:
    """One job this provider took."""

    pj: ProviderJob
    peer: str
    data: bytes
    #: its channel, as the JOB found it
    channel: ChannelState
    wake: trio.Event = field(default_factory=trio.Event)
    ended_at: float | None = None
    #: the job is held still for non-payment
    frozen: bool = False
    #: the runner's job, while it runs
    running: RunningJob | None = None
    #: the last answer and its bytes (answers repeat between reports)
    answered: tuple[object, bytes] | None = None

    def answer(self) -> bytes:
        frame = self.pj.answer()
        key = frame.usage if isinstance(frame, UsageFrame) else frame
        if self.answered is None or self.answered[0] is not key:
            self.answered = (key, frame.encode())
        return self.answered[1]

    def poke(self) -> None:
        self.wake.set()

    async def woken(self, timeout_s: float) -> None:
        """Wait until poked (a voucher, a cancel) or ``timeout_s``."""
        with trio.move_on_after(timeout_s):
            await self.wake.wait()
        self.wake = trio.Event()


def exit_and_outcome(result: JobResult, why: str | None) -> tuple[int, str]:
    """The RESULT's ``exit_status`` and ``outcome`` for how the runner says a
    job ended; ``why`` is the provider's reason when it killed the job itself
    (``unpaid``, ``cancelled``, ``failed``)."""
    killed = -(result.signal or 9)
    if result.outcome is Outcome.EXITED:
        code = result.exit_code or 0
        return code, "limit" if result.output_truncated else COMPLETED
    if result.outcome is Outcome.SIGNALLED:
        return -(result.signal or 9), COMPLETED
    if result.outcome in (Outcome.CPU_LIMIT, Outcome.WALL_LIMIT):
        return killed, "limit"
    if result.outcome is Outcome.KILLED:
        return killed, why or "failed"
    return 0, "failed"


class Provider:
    """Serves ``/mycelia/compute/1`` (see the module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        store: Store,
        market: Market,
        runner: Runner,
        keeper: VoucherKeeper,
        config: ComputeConfig,
        *,
        close: Callable[[bytes], None],
        closing: Callable[[bytes], bool],
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.key = key
        self.store = store
        self.market = market
        self.runner = runner
        self.keeper = keeper
        self.config = config
        self._close = close
        self._closing = closing
        self._wall_ms = wall_ms
        self._nursery: trio.Nursery | None = None
        #: jobs running and recently ended, by id (oldest first)
        self.jobs: OrderedDict[bytes, _Run] = OrderedDict()
        #: channel -> the job it pays now (until its close is handed over)
        self._channels: dict[bytes, bytes] = {}
        self._per_peer: Counter[str] = Counter()
        #: plain counters (metrics)
        self.outcomes: Counter[str] = Counter()
        self.cpu_ms = 0
        self.vouchers_received = 0
        self.vouchers_persisted = 0

    @property
    def running(self) -> int:
        return sum(1 for r in self.jobs.values() if r.ended_at is None)

    def pays(self, channel: bytes) -> bool:
        """Whether ``channel`` pays a job here now (running, or waiting for
        its final voucher)."""
        return channel in self._channels

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every job's task until cancelled (which kills them)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(60)
                    self._forget_ended()
            finally:
                self._nursery = None

    # -- the protocol handler ------------------------------------------------------------

    async def handle(self, peer: str, request: bytes) -> bytes:
        """``/mycelia/compute/1``: one request frame, one answer frame."""
        try:
            return await self._serve(peer, decode_request(request))
        except Refused as exc:
            return ErrorFrame.of(exc.reason, exc.detail).encode()
        except RunnerRefused as exc:
            return ErrorFrame.of(exc.reason, exc.detail).encode()

    async def _serve(self, peer: str, frame: Request) -> bytes:
        if type(frame) is JobFrame:
            held = self.jobs.get(frame.job.id)
            if held is not None:
                return held.answer()
            return (await self._start(peer, frame.job)).encode()
        assert isinstance(frame, VoucherFrame | PollFrame | CancelFrame)
        run = find_job(self.jobs, frame.job)
        if type(frame) is VoucherFrame:
            await self._voucher(run, frame.signed)
        elif type(frame) is CancelFrame and not run.pj.ended:
            run.pj.cancelled = True
            run.poke()
        return run.answer()

    def _channel(self, job: Job) -> ChannelState | None:
        return channel_state(lambda k: self.store.record(job.economy, k), job.channel)

    def _settled(self, run: _Run) -> ChannelState:
        """The job's channel as it was at the JOB, with its settlement now
        (the open is a fact: written once; only a settlement may come)."""
        job = run.pj.job
        raw = self.store.record(job.economy, Settlement.key(job.channel))
        if raw is None:
            return run.channel
        return dataclasses.replace(run.channel, settlement=Settlement.decode(raw))

    async def _start(self, peer: str, job: Job) -> Answer:
        if not self.market.providing or self._nursery is None:
            raise RunnerRefused(RunnerReason.COMPUTE_DISABLED, "this node runs no compute jobs")
        if self._per_peer[peer] >= self.config.max_jobs_per_peer:
            raise RunnerRefused(
                RunnerReason.PEER_BUSY,
                f"{self._per_peer[peer]} jobs of this peer run here (compute.max_jobs_per_peer)",
            )
        offer = find_offer(self.market.own(), job)
        now = self._wall_ms()
        held = self.store.held_voucher(job.channel)
        busy = (
            job.channel in self._channels
            or self._closing(job.channel)
            or (held is not None and bool(held.closing))
        )
        channel = check_job_channel(
            job,
            self._channel(job),
            provider=self.key.public,
            now_ms=now,
            close_margin_ms=round(self.config.close_margin_s * 1000),
            busy=busy,
        )
        check_job(
            offer, job, now_ms=now, held=0 if held is None else held.amount, escrow=channel.escrow
        )
        if not isinstance(job.input, InlineInput):
            raise Refused(Reason.MISSING, "this provider takes inline input only")
        data = job.input.data
        self.runner.admit(job.runtime, data)
        pj = ProviderJob(offer, job, self.key, held=None if held is None else held.voucher)
        run = _Run(pj, peer, data, channel)
        # Taken before the first await: a second JOB on this channel or from
        # this peer, arriving meanwhile, sees it.
        self.jobs[job.id] = run
        self._channels[job.channel] = job.id
        self._per_peer[peer] += 1
        try:
            await self._nursery.start(self._run_job, run)
        except BaseException:  # not started (the job's task released the peer's slot)
            del self.jobs[job.id]
            del self._channels[job.channel]
            raise
        log.info(
            "compute job %s: %s for %s on channel %s",
            job.id.hex()[:16],
            job.runtime,
            peer,
            job.channel.hex()[:16],
        )
        return pj.first

    async def _voucher(self, run: _Run, signed: SignedVoucher) -> None:
        self.vouchers_received += 1
        if not run.pj.check_voucher(self._settled(run), signed):
            return
        if await self.keeper.hold(run.pj.job.economy, signed):
            self.vouchers_persisted += 1
            run.pj.hold(signed)
            run.poke()

    # -- a job's life ----------------------------------------------------------------------

    def _release(self, run: _Run) -> None:
        self._per_peer[run.peer] -= 1
        if self._per_peer[run.peer] <= 0:
            del self._per_peer[run.peer]

    async def _run_job(self, run: _Run, *, task_status: trio.TaskStatus[None]) -> None:
        pj, job = run.pj, run.pj.job
        started = False
        try:
            if pj.decide(self._wall_ms()).action is not Action.CONTINUE:
                # Not even the fee is paid within the window: wait for it.
                task_status.started()
                started = True
                why = await self._await_payment(run)
                if why is not None:
                    pj.finish(exit_status=0, outcome=why, output=b"")
                    return
            async with self.runner.job(
                job.runtime,
                run.data,
                max_cpu_ms=job.limits.max_cpu_ms,
                max_wall_ms=job.limits.max_wall_ms,
            ) as running:
                if not started:
                    task_status.started()
                    started = True
                why = await self._supervise(run, running)
                result = await running.wait()
            usage = result.usage
            pj.meter(usage.counters(), usage.peak_memory_bytes)
            exit_status, outcome = exit_and_outcome(result, why)
            pj.finish(exit_status=exit_status, outcome=outcome, output=result.output)
        except RunnerRefused as exc:
            if not started:
                raise
            pj.finish(exit_status=0, outcome="failed", output=b"")
            log.warning("compute job %s could not start: %s", job.id.hex()[:16], exc)
        finally:
            run.ended_at = trio.current_time()
            self._release(run)
            run.data = b""
            if pj.result is not None:
                self.outcomes[pj.result.outcome] += 1
                self.cpu_ms += pj.usage.cpu_ms
        await self._settle(run)

    async def _await_payment(self, run: _Run) -> str | None:
        """Before the start: wait until the credit rule lets the job run;
        None then, else why it ends (``unpaid`` after the grace,
        ``cancelled``)."""
        while True:
            if run.pj.cancelled:
                return "cancelled"
            action = run.pj.decide(self._wall_ms()).action
            if action is Action.CONTINUE:
                return None
            if action is Action.KILL:
                return "unpaid"
            await run.woken(self.config.poll_interval_s)

    async def _supervise(self, run: _Run, running: RunningJob) -> str | None:
        """Meter the job and apply the credit rule until it ends; why the
        provider killed it (None: it ended by itself or at a limit)."""
        pj = run.pj
        run.running = running
        while not running.done:
            usage = running.usage()
            pj.meter(usage.counters(), usage.peak_memory_bytes)
            if pj.cancelled:
                await running.kill()
                return "cancelled"
            action = pj.decide(self._wall_ms()).action
            try:
                if action is Action.KILL:
                    log.info("compute job %s: unpaid beyond the grace", pj.id.hex()[:16])
                    await running.kill()
                    return "unpaid"
                if action is Action.FREEZE:
                    await running.freeze()
                elif running.frozen:
                    await running.thaw()
                run.frozen = running.frozen
            except JobError as exc:
                log.warning("compute job %s: %s; killing it", pj.id.hex()[:16], exc)
                await running.kill()
                return "failed"
            await run.woken(self.config.poll_interval_s)
        return None

    async def _settle(self, run: _Run) -> None:
        """After the RESULT: wait for the final voucher (within
        ``final_voucher_s``), then hand the channel to the closer."""
        pj = run.pj
        owed = pj.job.base + pj.price
        with trio.move_on_after(self.config.final_voucher_s):
            while pj.held < owed:
                await run.woken(self.config.final_voucher_s)
        channel = pj.job.channel
        if self._channels.get(channel) == pj.id:
            if self.store.held_voucher(channel) is not None:
                self._close(channel)
            del self._channels[channel]

    def _forget_ended(self) -> None:
        now = trio.current_time()
        ended = [i for i, r in self.jobs.items() if r.ended_at is not None]
        for i in ended[: max(0, len(ended) - MAX_ENDED)]:
            del self.jobs[i]
        for i in [i for i, r in self.jobs.items() if r.ended_at is not None]:
            ended_at = self.jobs[i].ended_at
            if ended_at is not None and now - ended_at > ENDED_KEPT_S:
                del self.jobs[i]
