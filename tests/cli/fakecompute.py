"""A compute provider played in memory, behind :class:`~tests.cli.fakenode.FakeNode`'s
``compute_*`` methods, honest or lying.

Why: the client's consumer loop (``mycelia.client.compute``) must stop
paying a provider whose reports break the consumer's rule, which a real
provider never does; and client tests run without trio or processes. So
:class:`FakeProvider` runs the provider's side with the protocol's own
``ProviderJob`` — the same checks a provider node makes on a JOB
(``find_offer``, ``check_job_channel``, ``check_job``) and on a voucher,
against the fake's :class:`~mycelia.testing.economies.World` — but its
"job" is a script: every request after the JOB advances it one step
(``step`` more CPU and running time), and after ``steps`` steps it ends
with the input reversed. ``lie`` rewrites an answer (given the job, the
honest answer and the step) into a dishonest one, signed with the
provider's key.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mycelia.protocol import SigningKey, channel_state
from mycelia.protocol.channels import SignedVoucher
from mycelia.protocol.compute import (
    ProviderJob,
    check_job,
    check_job_channel,
    find_job,
    find_offer,
)
from mycelia.protocol.compute_frames import (
    Answer,
    CancelFrame,
    ErrorFrame,
    InlineInput,
    JobFrame,
    PollFrame,
    UsageFrame,
    VoucherFrame,
    decode_request,
)
from mycelia.protocol.offers import Limits, Offer, Runtime, SignedOffer
from mycelia.protocol.pricing import Prices, Usage, cost
from mycelia.protocol.reasons import Refused
from mycelia.protocol.usage import SignedUsage, UsageReport
from mycelia.testing.economies import World, key

PROVIDER = key(30, "fake-provider")
LIMITS = Limits(
    max_cpu_ms=60_000,
    max_wall_ms=120_000,
    reserved_mib=64,
    max_input_bytes=4096,
    max_output_bytes=4096,
)
PRICES = Prices(fee=10, per_cpu_ms=1, per_mib_s=0, per_wall_s=20)
Lie = Callable[[ProviderJob, Answer, int], Answer]


def now_ms() -> int:
    return int(time.time() * 1000)


def resign(report: UsageReport, **changes: object) -> SignedUsage:
    """A report with other fields, signed with the provider's key: a lie a
    consumer cannot tell from the signature."""
    return dataclasses.replace(report, **changes).sign(PROVIDER)


@dataclass
class FakeProvider:
    world: World
    steps: int = 3
    step: Usage = field(default_factory=lambda: Usage(100, 500, 0))
    lie: Lie | None = None
    key: SigningKey = PROVIDER
    offers: dict[bytes, SignedOffer] = field(default_factory=dict)
    jobs: dict[bytes, ProviderJob] = field(default_factory=dict)
    done_steps: dict[bytes, int] = field(default_factory=dict)
    inputs: dict[bytes, bytes] = field(default_factory=dict)
    #: every request it was sent, decoded
    requests: list[object] = field(default_factory=list)

    def offer(
        self, *runtimes: Runtime, credit_window: int = 10_000, **changes: object
    ) -> SignedOffer:
        """A fresh signed offer of this provider in the world's economy."""
        t = now_ms()
        o = Offer(
            economy=self.world.id,
            provider=self.key.public,
            seq=1 + len(self.offers),
            issued_ms=t,
            expires_ms=t + 3_600_000,
            peer="12D3KooWFakeProvider",
            addrs=("/ip4/127.0.0.1/tcp/4999",),
            runtimes=runtimes or (Runtime("python", LIMITS, PRICES),),
            credit_window=credit_window,
            grace_ms=1_000,
        )
        signed = dataclasses.replace(o, **changes).sign(self.key)
        self.offers[signed.id] = signed
        return signed

    def handle(self, request: bytes) -> bytes:
        """One request, one answer: what the provider node's handler does."""
        try:
            frame = decode_request(request)
            self.requests.append(frame)
            answer = self._serve(frame)
        except Refused as exc:
            answer = ErrorFrame.of(exc.reason, exc.detail)
        return answer.encode()

    def _serve(self, frame: object) -> Answer:
        if isinstance(frame, JobFrame):
            job = frame.job
            if job.id in self.jobs:
                return self._answer(self.jobs[job.id])
            offer = find_offer({i: o.offer for i, o in self.offers.items()}, job)
            channel = channel_state(self.world.ledger.state, job.channel)
            state = check_job_channel(
                job, channel, provider=self.key.public, now_ms=now_ms(), close_margin_ms=0
            )
            check_job(offer, job, now_ms=now_ms(), held=0, escrow=state.escrow)
            assert isinstance(job.input, InlineInput)
            pj = ProviderJob(offer, job, self.key)
            self.jobs[job.id] = pj
            self.done_steps[job.id] = 0
            self.inputs[job.id] = job.input.data
            return pj.first
        assert isinstance(frame, VoucherFrame | PollFrame | CancelFrame)
        pj = find_job(self.jobs, frame.job)
        if isinstance(frame, VoucherFrame):
            signed = SignedVoucher.decode(frame.voucher)
            channel = channel_state(self.world.ledger.state, pj.job.channel)
            assert channel is not None
            if pj.check_voucher(channel, signed):
                pj.hold(signed)
        elif isinstance(frame, CancelFrame) and not pj.ended:
            pj.finish(exit_status=-9, outcome="cancelled", output=b"")
        self._advance(pj)
        return self._answer(pj)

    def _advance(self, pj: ProviderJob) -> None:
        if pj.ended:
            return
        n = self.done_steps[pj.id] = self.done_steps[pj.id] + 1
        s = self.step
        pj.meter(Usage(s.cpu_ms * n, s.wall_ms * n, 0))
        if n >= self.steps:
            output = self.inputs[pj.id][::-1]
            pj.finish(exit_status=0, outcome="completed", output=output)

    def _answer(self, pj: ProviderJob) -> Answer:
        honest = pj.answer()
        if self.lie is None:
            return honest
        return self.lie(pj, honest, self.done_steps[pj.id])


def inflate_price(pj: ProviderJob, honest: Answer, step: int) -> Answer:
    """From the second step on, bill one unit more than the counters cost."""
    if step >= 2 and isinstance(honest, UsageFrame):
        r = honest.usage.report
        return UsageFrame(resign(r, price=r.price + 1))
    return honest


def regress_counters(pj: ProviderJob, honest: Answer, step: int) -> Answer:
    """At the second step, report less CPU than before (a newer seq)."""
    if step == 2 and isinstance(honest, UsageFrame):
        r = honest.usage.report
        less = dataclasses.replace(r.usage, cpu_ms=0)
        priced = pj.offer.runtimes[0].prices
        return UsageFrame(resign(r, usage=less, price=cost(priced, less)))
    return honest
