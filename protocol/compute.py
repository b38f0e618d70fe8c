"""The compute protocol's rules, sans-IO: what a provider accepts and bills,
when a consumer pays, when a provider stops working, and which answer may
follow which request.

Why this exists: one node sells compute to another and is paid by vouchers
on a payment channel while the job runs (DESIGN §6). Neither side trusts
the other, and both run the same rules, so every rule lives here, as pure
functions and two small state machines (as h11 keeps every HTTP rule in its
state machine); the node's compute service only moves frames, runs jobs,
keeps vouchers and reads clocks.

Theory of operation
-------------------

*Offers.* A provider signs offers (``offers.py``) and gossips them in its
economy (``offer_book.py``). An offer lists runtimes — commands the
provider configured, each with limits and integer prices — and a credit
window: the most unpaid value the provider will carry.

*Channel.* The consumer opens a payment channel to the provider on the
ledger (``channel.open``: an escrow; ``protocol/channels.py``), then sends
requests to the provider's peer on ``/mycelia/compute/1``
(``compute_frames.py``). The protocol is **request/response**: each request
is one frame on a stream of its own, answered by one frame, so a job
outlives any one stream and a dropped connection or a lost answer costs
nothing but a retry. One channel pays for one job at a time, and for many
in turn.

*A job* (the consumer's side is :class:`ConsumerJob`, the provider's
:class:`ProviderJob`):

1. JOB: the offer id, the channel, the runtime, the consumer's own limits
   (each at most the runtime's), the input, and ``base`` — the channel's
   newest voucher amount before this job. The provider checks it
   (:func:`check_job`, :func:`check_job_channel`) and answers ERROR, or
   starts it and answers USAGE seq 1: zero counters, price = the fee. A JOB
   sent again (its answer was lost) is answered as a POLL.
2. The consumer asks about every second: VOUCHER (the channel's newest
   voucher: cumulative amount ``base + price`` of the newest report it
   accepted) or POLL (nothing new to pay). Each is answered with the job's
   newest signed USAGE report (``usage.py``: cumulative counters and
   price), or its RESULT once it ended. CANCEL asks the provider to kill
   the job; it is answered the same way.
3. The consumer checks each new report (:func:`consumer_decide`): it pays
   by VOUCHER or stops — pays nothing more and cancels. A report seen
   before (the same bytes) asks for nothing.
4. The provider checks its credit each metering tick and whenever a
   voucher arrives (:func:`provider_decide`): it carries at most
   ``credit_window`` unpaid; beyond that it freezes the job (no more work,
   no more billing), and kills it if no voucher comes within the offer's
   ``grace_ms``. It keeps the newest voucher (durably, before it does more
   work) and bills only running time (:meth:`ProviderJob.meter`).
5. The job ends with a RESULT — exit status, outcome, output and the final
   signed report — which answers every later request. The consumer checks
   the final report like any other (:func:`consumer_result`) and pays it
   with one last VOUCHER. The provider then closes the channel with the
   newest voucher (``channel.close``).

An ERROR answer ends the job for the consumer: it pays nothing more.
Report numbers only grow, but may skip (an answer that was lost), so a
consumer checks ``seq`` for order, not for contiguity: the price is a
function of the counters alone (``pricing.py``), so a skipped report
changes nothing owed.

*Why the provider is never owed more than the window plus one step.* The
provider decides before each step of work (a metering tick, or the start
with the fee) with the price so far; it works only while ``price - paid``
is within the window, so after the step the unpaid amount is at most the
window plus what that step costs. A frozen job accrues no billable time
(``pricing.py``: wall and memory time run only while the job runs), and
vouchers only lower the unpaid amount. ``tests/protocol/test_compute.py``
holds this as a property over random jobs, payments and clocks.

*Why the consumer never pays more than it was billed, and never more than
it set out to.* A voucher's amount is ``base + price`` of a report that the
provider signed, that follows the previous one (a higher seq, no counter
backwards), whose counters are within the job's limits, whose price is the
offer's price of those counters (``pricing.price``, exact integers), within
the channel's escrow and the consumer's own ``max_spend``.

*Clocks* are parameters: ``now_ms`` for the offer's expiry, the channel's
expiry and the grace.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from mycelia.protocol import keys
from mycelia.protocol.channels import (
    ChannelState,
    SignedVoucher,
    check_voucher,
    require_unsettled,
    supersedes,
)
from mycelia.protocol.compute_frames import (
    COMPLETED,
    Answer,
    CancelFrame,
    ErrorFrame,
    HashInput,
    Job,
    JobFrame,
    PollFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
)
from mycelia.protocol.offers import Limits, Offer, Runtime
from mycelia.protocol.pricing import Usage, price
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.usage import NO_PEAK, SignedUsage, UsageReport

__all__ = [
    "Action",
    "ConsumerJob",
    "Credit",
    "Failed",
    "Pay",
    "ProviderJob",
    "Stop",
    "billed",
    "check_job",
    "check_job_channel",
    "check_usage",
    "consumer_decide",
    "consumer_result",
    "find_job",
    "find_offer",
    "provider_decide",
]


# -- the provider's check of a JOB -------------------------------------------------


def check_job(offer: Offer, job: Job, *, now_ms: int, held: int, escrow: int) -> Runtime:
    """What a provider runs on a JOB before it starts it; returns the
    runtime. ``held`` is the newest voucher amount the provider holds on the
    job's channel, ``escrow`` the channel's escrow (the channel itself —
    that it is open, the provider's and not expired — is the channel
    rules'). Refuses, cheapest first:

    ``wrong_economy`` (the job is for another economy than the offer);
    ``unknown_offer`` (it names another offer); ``offer_expired``
    (``now_ms`` at or past the offer's expiry); ``unknown_runtime``;
    ``over_limits`` (a limit above the runtime's, or an input larger than
    the job's own ``max_input_bytes``); ``base_mismatch`` (``base`` is not
    ``held``); ``over_escrow`` (the channel cannot even pay the fee)."""
    if job.economy != offer.economy:
        raise Refused(Reason.WRONG_ECONOMY, "the job is for another economy than the offer")
    if job.offer != offer.id:
        raise Refused(Reason.UNKNOWN_OFFER, "the job names an offer that is not the current one")
    if offer.expired(now_ms):
        raise Refused(Reason.OFFER_EXPIRED, f"the offer expired at {offer.expires_ms}")
    runtime = offer.runtime(job.runtime)
    over = job.limits.within(runtime.limits)
    if over is not None:
        raise Refused(Reason.OVER_LIMITS, f"{over} is above the runtime's")
    size = job.input.size
    if size > job.limits.max_input_bytes:
        kind = "hashed" if type(job.input) is HashInput else "inline"
        raise Refused(
            Reason.OVER_LIMITS,
            f"{kind} input of {size} bytes > max_input_bytes {job.limits.max_input_bytes}",
        )
    if job.base != held:
        raise Refused(
            Reason.BASE_MISMATCH, f"base {job.base} is not the newest voucher amount {held}"
        )
    if job.base + runtime.prices.fee > escrow:
        raise Refused(
            Reason.OVER_ESCROW, f"base {job.base} + fee {runtime.prices.fee} > escrow {escrow}"
        )
    return runtime


def find_offer(offers: Mapping[bytes, Offer], job: Job) -> Offer:
    """The provider's own offer a JOB names, among ``offers`` (by id: the
    unexpired offers it issued — it republishes, so more than one may be
    current), else ``unknown_offer``."""
    offer = offers.get(job.offer)
    if offer is None:
        raise Refused(Reason.UNKNOWN_OFFER, "the job names an offer this provider does not hold")
    return offer


def check_job_channel(
    job: Job,
    channel: ChannelState | None,
    *,
    provider: bytes,
    now_ms: int,
    close_margin_ms: int,
    busy: bool = False,
) -> ChannelState:
    """The provider's check of the channel a JOB names, as its ledger holds it:
    ``channel_unknown`` (no certified ``channel.open`` with that id applied
    here — maybe not yet: the consumer may ask again); ``not_provider`` (the
    channel pays someone else); ``channel_settled``; ``channel_busy``
    (``busy``: the channel pays for another job of this provider's now, or
    its close is under way — one job at a time, each after the previous
    one's ``base``); ``channel_expiring`` (the job could run until ``now_ms +
    max_wall_ms``, and the provider needs ``close_margin_ms`` after that to
    close before the channel expires: ``docs/compute.md``, "Trust model")."""
    if channel is None:
        raise Refused(Reason.CHANNEL_UNKNOWN, f"no channel {job.channel.hex()} is certified here")
    if channel.provider != provider:
        raise Refused(Reason.NOT_PROVIDER, "the channel pays another provider")
    require_unsettled(channel)
    if busy:
        raise Refused(Reason.CHANNEL_BUSY, "the channel pays for another job now")
    latest = now_ms + job.limits.max_wall_ms + close_margin_ms
    if latest > channel.expiry_ms:
        raise Refused(
            Reason.CHANNEL_EXPIRING,
            f"the channel expires at {channel.expiry_ms}; the job may run and be closed "
            f"until {latest}",
        )
    return channel


T = TypeVar("T")


def find_job(jobs: Mapping[bytes, T], job_id: bytes) -> T:
    """The job a VOUCHER, POLL or CANCEL names, among those the provider
    holds, else ``unknown_job`` (jobs do not survive a provider's restart)."""
    held = jobs.get(job_id)
    if held is None:
        raise Refused(Reason.UNKNOWN_JOB, f"no job {job_id.hex()} here")
    return held


# -- the consumer's rule -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pay:
    """Sign a voucher for this cumulative amount (``base + price``)."""

    amount: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop paying and end the session: send :meth:`error`."""

    reason: Reason
    detail: str = ""

    def error(self) -> ErrorFrame:
        return ErrorFrame.of(self.reason, self.detail)


def check_usage(
    offer: Offer,
    job: Job,
    previous: UsageReport | None,
    new: SignedUsage,
    *,
    escrow: int,
    max_spend: int,
) -> UsageReport:
    """The consumer's check of a usage report; returns it, or refuses:

    ``wrong_economy``; ``wrong_job`` (another provider, offer, job or
    channel); ``bad_key`` / ``usage_bad_sig`` (not the provider's
    signature); ``usage_out_of_order`` (a report after the final one, or a
    seq not above the previous one's: seqs may skip, as answers get lost);
    ``usage_regressed`` (a counter below the previous report's);
    ``over_limits`` (counters beyond the job's limits: ``offers.Limits.excess``);
    ``price_mismatch`` (the price is not ``pricing.price`` of the counters);
    ``over_escrow`` (``base + price`` passes the channel's escrow);
    ``over_max_spend`` (the price passes ``max_spend``, the most the
    consumer will pay for this job).

    ``previous`` is the last report accepted in this job (None before the
    first); ``job`` the job sent, against ``offer``."""
    if job.offer != offer.id:
        raise ValueError("the job was not made against this offer")
    r = new.report
    if r.economy != offer.economy:
        raise Refused(Reason.WRONG_ECONOMY, "the report is for another economy")
    if (r.offer, r.job, r.channel) != (offer.id, job.id, job.channel):
        raise Refused(Reason.WRONG_JOB, "the report names another offer, job or channel")
    new.verify(offer.provider)
    if previous is not None and previous.final:
        raise Refused(Reason.USAGE_OUT_OF_ORDER, "a report after the final one")
    if previous is not None and r.seq <= previous.seq:
        raise Refused(Reason.USAGE_OUT_OF_ORDER, f"seq {r.seq} after seq {previous.seq}")
    if previous is not None and not r.usage.covers(previous.usage):
        raise Refused(
            Reason.USAGE_REGRESSED, f"counters {r.usage} below the previous {previous.usage}"
        )
    excess = job.limits.excess(r.usage)
    if excess is not None:
        raise Refused(Reason.OVER_LIMITS, excess)
    expected_price = price(offer, job.runtime, r.usage)
    if r.price != expected_price:
        raise Refused(
            Reason.PRICE_MISMATCH, f"price {r.price}, the offer's price is {expected_price}"
        )
    if job.base + r.price > escrow:
        raise Refused(Reason.OVER_ESCROW, f"base {job.base} + price {r.price} > escrow {escrow}")
    if r.price > max_spend:
        raise Refused(Reason.OVER_MAX_SPEND, f"price {r.price} > max spend {max_spend}")
    return r


def consumer_decide(
    offer: Offer,
    job: Job,
    previous: UsageReport | None,
    new: SignedUsage,
    *,
    escrow: int,
    max_spend: int,
) -> Pay | Stop:
    """Pay for a usage report, or stop (:func:`check_usage` has the
    reasons). The amount paid is ``base + price`` of the report: never
    more than the offer's price of the reported counters."""
    try:
        report = check_usage(offer, job, previous, new, escrow=escrow, max_spend=max_spend)
    except Refused as exc:
        return Stop(exc.reason, exc.detail)
    return Pay(job.base + report.price)


def consumer_result(
    offer: Offer,
    job: Job,
    previous: UsageReport | None,
    result: ResultFrame,
    *,
    escrow: int,
    max_spend: int,
) -> Pay | Stop:
    """The consumer's rule for the RESULT: its final report is checked as
    any other (:func:`consumer_decide`), and its output must be within the
    job's ``max_output_bytes`` (``over_limits``)."""
    if len(result.output) > job.limits.max_output_bytes:
        return Stop(
            Reason.OVER_LIMITS,
            f"output of {len(result.output)} bytes > max_output_bytes "
            f"{job.limits.max_output_bytes}",
        )
    return consumer_decide(offer, job, previous, result.usage, escrow=escrow, max_spend=max_spend)


# -- the provider's rule -----------------------------------------------------------


class Action(enum.StrEnum):
    #: run (or keep running) the job.
    CONTINUE = "continue"
    #: hold the job still: no more work, no more billing, until paid.
    FREEZE = "freeze"
    #: stop the job for good (RESULT with outcome ``unpaid``).
    KILL = "kill"


@dataclass(frozen=True, slots=True)
class Credit:
    """The provider's decision, the unpaid amount it is based on, and when
    the job went over its window (None while within): pass
    ``over_since_ms`` to the next :func:`provider_decide`."""

    action: Action
    unpaid: int
    over_since_ms: int | None


def provider_decide(
    offer: Offer,
    *,
    price: int,
    voucher: int,
    base: int = 0,
    over_since_ms: int | None,
    now_ms: int,
) -> Credit:
    """Continue, freeze or kill a job, given its price so far, the newest
    voucher amount held on its channel and the job's ``base``:

    * ``unpaid = base + price - voucher``; within ``credit_window``:
      CONTINUE (a frozen job thaws);
    * over it: FREEZE, and from the first time over (``over_since_ms``,
      else now) on, KILL once ``grace_ms`` has passed.

    Call it before every step of work and whenever a voucher arrives."""
    unpaid = base + price - voucher
    if unpaid <= offer.credit_window:
        return Credit(Action.CONTINUE, unpaid, None)
    since = now_ms if over_since_ms is None else over_since_ms
    action = Action.KILL if now_ms - since >= offer.grace_ms else Action.FREEZE
    return Credit(action, unpaid, since)


# -- billing -----------------------------------------------------------------------


def billed(limits: Limits, metered: Usage, previous: Usage | None = None) -> Usage:
    """The counters a provider bills for a job from what it metered: CPU
    time of all the job's processes and its running wall time (time the
    provider held it frozen for non-payment is not running time:
    ``pricing.py``; the runner's clock stops while a job is frozen). Each is
    held to the job's limits — a runner stops a job at a limit but may
    measure a little past it before the kill lands — and never below the
    ``previous`` report's (two clocks read a moment apart); ``mib_ms =
    reserved_mib × wall_ms`` with the job's reservation (memory is billed
    as reserved)."""
    cpu = min(metered.cpu_ms, limits.max_cpu_ms)
    wall = min(metered.wall_ms, limits.max_wall_ms)
    if previous is not None:
        cpu = max(cpu, previous.cpu_ms)
        wall = max(wall, previous.wall_ms)
    return Usage(cpu, wall, limits.reserved_mib * wall)


# -- the provider's side of a job ------------------------------------------------------


class ProviderJob:
    """One job as its provider holds it: the reports it signed, the newest
    voucher it holds on the job's channel, its credit and its result.

    The node meters (:meth:`meter`), asks for a decision each tick and on
    each voucher (:meth:`decide`), checks a voucher (:meth:`check_voucher`),
    persists it, then takes it (:meth:`hold`), and answers every request
    with :meth:`answer` — the newest report, signed anew only when the
    counters moved (:meth:`report`), or the RESULT once :meth:`finish` made
    it. Built after :func:`check_job` and :func:`check_job_channel` passed."""

    __slots__ = (
        "_key",
        "_last",
        "cancelled",
        "first",
        "job",
        "offer",
        "over_since_ms",
        "peak_bytes",
        "result",
        "runtime",
        "usage",
        "voucher",
    )

    def __init__(
        self,
        offer: Offer,
        job: Job,
        key: keys.SigningKey,
        *,
        held: SignedVoucher | None = None,
    ) -> None:
        if key.public != offer.provider:
            raise ValueError("a job's reports are signed by the offer's provider")
        self.offer = offer
        self.job = job
        self.runtime = offer.runtime(job.runtime)
        self._key = key
        #: the newest voucher held on the job's channel (from before the job, at first)
        self.voucher = held
        self.usage = Usage()
        self.peak_bytes = NO_PEAK
        self.over_since_ms: int | None = None
        self.cancelled = False
        self.result: ResultFrame | None = None
        self._last = self._sign(1, final=False)
        #: the answer to the JOB that started it: seq 1, the fee
        self.first = UsageFrame(self._last)

    @property
    def id(self) -> bytes:
        return self.job.id

    @property
    def held(self) -> int:
        """The newest voucher amount held on the channel (the job's base
        before any voucher of this job)."""
        return self.job.base if self.voucher is None else self.voucher.voucher.cumulative

    @property
    def price(self) -> int:
        """The job's price so far (excluding ``base``)."""
        return price(self.offer, self.job.runtime, self.usage)

    @property
    def ended(self) -> bool:
        return self.result is not None

    def meter(self, metered: Usage, peak_bytes: int | None = None) -> Usage:
        """Record what the job used so far (:func:`billed`): its CPU and
        running wall time, and its memory peak if known; the billed counters."""
        self.usage = billed(self.job.limits, metered, self.usage)
        if peak_bytes is not None:
            self.peak_bytes = max(self.peak_bytes, peak_bytes)
        return self.usage

    def decide(self, now_ms: int) -> Credit:
        """:func:`provider_decide` for the job now (and remember when it
        went over its window)."""
        credit = provider_decide(
            self.offer,
            price=self.price,
            voucher=self.held,
            base=self.job.base,
            over_since_ms=self.over_since_ms,
            now_ms=now_ms,
        )
        self.over_since_ms = credit.over_since_ms
        return credit

    def check_voucher(self, channel: ChannelState, signed: SignedVoucher) -> bool:
        """Whether ``signed`` is a valid voucher on the job's channel
        (``channels.check_voucher``'s refusals; ``wrong_channel`` for
        another channel's) newer than the one held — then persist it and
        :meth:`hold` it before doing more work. A replayed or older voucher
        is valid and changes nothing (False)."""
        if signed.voucher.channel != self.job.channel:
            raise Refused(Reason.WRONG_CHANNEL, "a voucher of another channel than the job's")
        check_voucher(self.job.economy, channel, signed)
        held = None if self.voucher is None else self.voucher.voucher
        return supersedes(signed.voucher, held) and signed.voucher.cumulative > self.held

    def hold(self, signed: SignedVoucher) -> None:
        """Keep ``signed`` as the newest voucher (it passed :meth:`check_voucher`
        and is durable)."""
        if signed.voucher.cumulative > self.held:
            self.voucher = signed

    def report(self) -> SignedUsage:
        """The newest report: the last one, or a new one (next seq) when the
        counters moved since."""
        if self.result is None and self._last.report.usage != self.usage:
            self._last = self._sign(self._last.report.seq + 1, final=False)
        return self._last

    def finish(self, *, exit_status: int, outcome: str, output: bytes) -> ResultFrame:
        """End the job: the RESULT with the final report of what it used (a
        new seq, ``final`` 1); ``output`` beyond the job's
        ``max_output_bytes`` is cut, and a cut ``completed`` job's outcome is
        ``limit`` (it hit its output limit). Every later answer is this."""
        if self.result is not None:
            return self.result
        room = self.job.limits.max_output_bytes
        if len(output) > room:
            output = output[:room]
            if outcome == COMPLETED:
                outcome = "limit"
        self._last = self._sign(self._last.report.seq + 1, final=True)
        self.result = ResultFrame(exit_status, outcome, output, self._last)
        return self.result

    def answer(self) -> UsageFrame | ResultFrame:
        """The answer to any request about the job now."""
        if self.result is not None:
            return self.result
        return UsageFrame(self.report())

    def _sign(self, seq: int, *, final: bool) -> SignedUsage:
        job = self.job
        return UsageReport(
            job.economy,
            self.offer.provider,
            self.offer.id,
            job.id,
            job.channel,
            seq,
            self.usage,
            self.peak_bytes,
            self.price,
            final,
        ).sign(self._key)


# -- the consumer's side of a job ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider answered ERROR: the job is over for the consumer."""

    code: str
    detail: str = ""


class ConsumerJob:
    """One job as its consumer runs it: what it asked, what it accepted,
    what it paid. Sans-IO: the caller sends the requests it makes, signs
    the vouchers :meth:`receive` asks for with the consumer's key (which
    stays with it), and feeds each answer back.

    :meth:`receive` returns :class:`Pay` (sign a voucher for that
    cumulative amount and send it with :meth:`pay`), :class:`Stop` (the
    provider's report broke the consumer's rule: pay nothing more, cancel),
    :class:`Failed` (the provider refused) or None (nothing new: a report
    seen before, or a new one that costs no more). ``done`` once the result
    is in and paid, or the job stopped or failed."""

    __slots__ = (
        "escrow",
        "failed",
        "job",
        "max_spend",
        "offer",
        "paid",
        "report",
        "result",
        "stop",
    )

    def __init__(self, offer: Offer, job: Job, *, escrow: int, max_spend: int) -> None:
        if job.offer != offer.id or job.economy != offer.economy:
            raise ValueError("the job was not made against this offer")
        self.offer = offer
        self.job = job
        self.escrow = escrow
        self.max_spend = max_spend
        #: the newest voucher amount signed on the channel (``base`` at first)
        self.paid = job.base
        #: the newest report accepted
        self.report: SignedUsage | None = None
        self.result: ResultFrame | None = None
        self.stop: Stop | None = None
        self.failed: Failed | None = None

    @property
    def id(self) -> bytes:
        return self.job.id

    @property
    def ended(self) -> bool:
        """Nothing more will come: the result is in, or the job stopped or failed."""
        return self.result is not None or self.stop is not None or self.failed is not None

    @property
    def owed(self) -> int:
        """The cumulative amount the newest accepted report asks for."""
        if self.report is None:
            return self.job.base
        return self.job.base + self.report.report.price

    @property
    def done(self) -> bool:
        """Over, and nothing is left to pay."""
        if self.stop is not None or self.failed is not None:
            return True
        return self.result is not None and self.paid >= self.owed

    def start(self) -> JobFrame:
        return JobFrame(self.job)

    def poll(self) -> PollFrame:
        return PollFrame(self.job.id)

    def cancel(self) -> CancelFrame:
        return CancelFrame(self.job.id)

    def pay(self, signed: SignedVoucher) -> VoucherFrame:
        """The VOUCHER request for ``signed``: for this job's economy and
        channel, for what the newest report asks (a caller that pays less
        simply owes the rest)."""
        v = signed.voucher
        if v.economy != self.job.economy or v.channel != self.job.channel:
            raise ValueError("a voucher of another economy or channel than the job's")
        if v.cumulative > self.owed:
            raise ValueError(f"paying {v.cumulative}, more than the {self.owed} owed")
        if self.stop is not None:
            raise ValueError("the job stopped: nothing more is paid")
        self.paid = max(self.paid, v.cumulative)
        return VoucherFrame(self.job.id, signed.encode())

    def receive(self, answer: Answer) -> Pay | Stop | Failed | None:
        """Apply the consumer's rule to the provider's answer (see the class
        docstring)."""
        if self.stop is not None or self.failed is not None:
            return None
        if type(answer) is ErrorFrame:
            self.failed = Failed(answer.code, answer.detail)
            return self.failed
        if type(answer) is UsageFrame:
            if self.result is not None:
                return self._stop(Reason.UNEXPECTED_FRAME, "a USAGE after the RESULT")
            if self.report is not None and answer.usage == self.report:
                return None
            decision = consumer_decide(
                self.offer,
                self.job,
                None if self.report is None else self.report.report,
                answer.usage,
                escrow=self.escrow,
                max_spend=self.max_spend,
            )
            return self._accept(decision, answer.usage)
        assert type(answer) is ResultFrame
        if self.result is not None:
            if answer == self.result:
                return None
            return self._stop(Reason.UNEXPECTED_FRAME, "a second, different RESULT")
        decision = consumer_result(
            self.offer,
            self.job,
            None if self.report is None else self.report.report,
            answer,
            escrow=self.escrow,
            max_spend=self.max_spend,
        )
        if isinstance(decision, Pay):
            self.result = answer
        return self._accept(decision, answer.usage)

    def _accept(self, decision: Pay | Stop, report: SignedUsage) -> Pay | Stop | None:
        if isinstance(decision, Stop):
            self.stop = decision
            return decision
        self.report = report
        return decision if decision.amount > self.paid else None

    def _stop(self, reason: Reason, detail: str) -> Stop:
        self.stop = Stop(reason, detail)
        return self.stop
