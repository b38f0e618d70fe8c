"""The compute protocol's rules, sans-IO: which frame may come next, what a
provider accepts, when a consumer pays, when a provider stops working.

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
ledger (``channel.open``: an escrow; ``protocol/channels.py``), then dials
the provider's peer on ``/mycelia/compute/1`` (``compute_frames.py``).
One stream carries one job; one channel may pay for many jobs in turn.

*The stream* (frames in ``compute_frames.py``, order checked by
:class:`ConsumerSession` and :class:`ProviderSession`):

1. The provider's first frame is its current OFFER. The consumer may send
   its JOB at once (it knows the offer from gossip) or read the OFFER first.
2. The consumer sends one JOB: the offer id, the channel, the runtime, its
   own limits (each at most the runtime's), the input, and ``base`` — the
   channel's newest voucher amount before this job. The provider checks it
   (:func:`check_job`) and answers ERROR, or starts.
3. The provider sends USAGE frames, about one a second: a signed report of
   the job's cumulative counters and price (``usage.py``), the first one
   (seq 1) at the start with the price of nothing but the fee.
4. The consumer checks each report (:func:`consumer_decide`): it pays by
   VOUCHER (cumulative amount ``base + price``) or stops with an ERROR
   naming the reason. It may CANCEL at any time.
5. The provider checks its credit after each report and voucher
   (:func:`provider_decide`): it carries at most ``credit_window`` unpaid;
   beyond that it freezes the job (no more work, no more billing), and
   kills it if no voucher comes within the offer's ``grace_ms``.
6. The provider ends with one RESULT — exit status, outcome, output and
   the final signed report — after which it sends nothing. The consumer
   checks the final report like any other (:func:`consumer_result`) and
   pays it with one last VOUCHER. The provider then closes the channel
   with the newest voucher when it likes (``channel.close``).

ERROR from either side ends the session at once, both ways. Frames cross
in flight: a CANCEL or VOUCHER sent before the sender saw the RESULT reaches
the provider after it; the provider session accepts those.

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
provider signed, that follows the previous one (seq + 1, no counter
backwards), whose counters are within the job's limits, whose price is the
offer's price of those counters (``pricing.price``, exact integers), within
the channel's escrow and the consumer's own ``max_spend``.

*Clocks* are parameters: ``now_ms`` for the offer's expiry and the grace.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mycelia.protocol.compute_frames import (
    MAX_FRAME_BYTES,
    CancelFrame,
    ErrorFrame,
    Frame,
    HashInput,
    Job,
    JobFrame,
    OfferFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
    decode_frame,
)
from mycelia.protocol.framing import FrameReader, frame
from mycelia.protocol.offers import Offer, Runtime, SignedOffer
from mycelia.protocol.pricing import price
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.usage import SignedUsage, UsageReport

__all__ = [
    "Action",
    "ConsumerSession",
    "Credit",
    "Pay",
    "ProviderSession",
    "Stop",
    "check_job",
    "check_usage",
    "consumer_decide",
    "consumer_result",
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
    seq that is not the previous one's plus one, 1 first);
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
    expected = 1 if previous is None else previous.seq + 1
    if r.seq != expected:
        raise Refused(Reason.USAGE_OUT_OF_ORDER, f"seq {r.seq}, expected {expected}")
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


# -- the sessions ------------------------------------------------------------------


class _Session:
    """A side of one stream: frames out (:meth:`send`, checked and framed)
    and in (:meth:`receive_data`, then :meth:`next_frame` until None).
    Refuses a frame that may not come now with ``unexpected_frame``; after
    it refused an incoming frame, the session is broken: it refuses every
    later frame the same way and lets the node send one ERROR. ERROR sent or
    received ends it."""

    __slots__ = ("_broken", "_ended", "_reader")

    def __init__(self) -> None:
        self._reader = FrameReader(MAX_FRAME_BYTES)
        self._broken: Refused | None = None
        self._ended = False

    @property
    def ended(self) -> bool:
        """An ERROR was sent or received: nothing more either way."""
        return self._ended

    def send(self, f: Frame) -> bytes:
        """The bytes to write for ``f``, if it may be sent now."""
        if self._ended:
            raise Refused(Reason.UNEXPECTED_FRAME, f"{f.tag} after the session ended")
        if type(f) is ErrorFrame:
            self._ended = True
        else:
            if self._broken is not None:
                raise Refused(Reason.UNEXPECTED_FRAME, f"{f.tag} after a refused frame")
            self._may_send(f)
        # Every frame is within MAX_FRAME_BYTES by construction (its parts are
        # bounded when built; tests/protocol/test_compute_frames.py builds
        # the largest), so the peer's bound is never hit by an honest sender.
        return frame(f.encode())

    def receive_data(self, data: bytes) -> None:
        self._reader.feed(data)

    def next_frame(self) -> Frame | None:
        """The next incoming frame, or None until more bytes arrive. Refuses
        bad bytes (the decoders' reasons, ``unknown_frame``) and frames out
        of order (``unexpected_frame``)."""
        if self._broken is not None:
            raise self._broken
        try:
            payload = self._reader.next_frame()
            if payload is None:
                return None
            f = decode_frame(payload)
            self.receive(f)
        except Refused as exc:
            self._broken = exc
            raise
        return f

    def receive(self, f: Frame) -> None:
        """Check and record a decoded incoming frame (what :meth:`next_frame`
        does after decoding)."""
        if self._ended:
            raise Refused(Reason.UNEXPECTED_FRAME, f"{f.tag} after the session ended")
        if type(f) is ErrorFrame:
            self._ended = True
            return
        self._may_receive(f)

    def end_of_stream(self) -> None:
        """The remote closed its side: refuses (``malformed``) mid-frame."""
        self._reader.end()

    def _may_send(self, f: Frame) -> None:
        raise NotImplementedError

    def _may_receive(self, f: Frame) -> None:
        raise NotImplementedError


def _unexpected(detail: str) -> Refused:
    return Refused(Reason.UNEXPECTED_FRAME, detail)


class ConsumerSession(_Session):
    """The consumer's side. Sends JOB (once, first), VOUCHER (after the JOB;
    after the RESULT one more, the final payment), CANCEL (once, after the
    JOB, before the RESULT), ERROR. Receives OFFER (the provider's first
    frame), USAGE and RESULT (after the OFFER and the JOB, none after the
    RESULT; one RESULT), ERROR."""

    __slots__ = ("_cancelled", "_final_paid", "_received_any", "_result", "job", "offer")

    def __init__(self) -> None:
        super().__init__()
        self.offer: SignedOffer | None = None
        self.job: Job | None = None
        self._received_any = False
        self._result = False
        self._cancelled = False
        self._final_paid = False

    @property
    def done(self) -> bool:
        """The job ended and its final voucher was sent (or the session ended)."""
        return self._ended or self._final_paid

    def _may_send(self, f: Frame) -> None:
        if type(f) is JobFrame:
            if self.job is not None:
                raise _unexpected("JOB was sent already")
            self.job = f.job
        elif type(f) is VoucherFrame:
            if self.job is None:
                raise _unexpected("VOUCHER before the JOB")
            if self._final_paid:
                raise _unexpected("VOUCHER after the final one")
            if self._result:
                self._final_paid = True
        elif type(f) is CancelFrame:
            if self.job is None:
                raise _unexpected("CANCEL before the JOB")
            if self._cancelled:
                raise _unexpected("CANCEL was sent already")
            if self._result:
                raise _unexpected("CANCEL after the RESULT")
            self._cancelled = True
        else:
            raise _unexpected(f"a consumer does not send {f.tag}")

    def _may_receive(self, f: Frame) -> None:
        first = not self._received_any
        if type(f) is OfferFrame:
            if not first:
                raise _unexpected("OFFER is only the provider's first frame")
            self.offer = f.offer
        elif type(f) in (UsageFrame, ResultFrame):
            if self.offer is None:
                raise _unexpected(f"{f.tag} before the OFFER")
            if self.job is None:
                raise _unexpected(f"{f.tag} before the JOB")
            if self._result:
                raise _unexpected(f"{f.tag} after the RESULT")
            if type(f) is ResultFrame:
                self._result = True
        else:
            raise _unexpected(f"a provider does not send {f.tag}")
        self._received_any = True


class ProviderSession(_Session):
    """The provider's side. Sends OFFER (first, once), USAGE and RESULT
    (after the JOB, none after the RESULT; one RESULT), ERROR. Receives JOB
    (once, first), VOUCHER (after the JOB, any number, also after the
    RESULT: they cross it), CANCEL (once, after the JOB; one that crossed the
    RESULT is accepted and changes nothing), ERROR."""

    __slots__ = ("_cancelled", "_result", "job", "offer")

    def __init__(self) -> None:
        super().__init__()
        self.offer: SignedOffer | None = None
        self.job: Job | None = None
        self._result = False
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """The consumer sent CANCEL."""
        return self._cancelled

    def _may_send(self, f: Frame) -> None:
        if type(f) is OfferFrame:
            if self.offer is not None:
                raise _unexpected("OFFER was sent already")
            self.offer = f.offer
        elif type(f) in (UsageFrame, ResultFrame):
            if self.offer is None:
                raise _unexpected("the first frame is the OFFER")
            if self.job is None:
                raise _unexpected(f"{f.tag} before the JOB")
            if self._result:
                raise _unexpected(f"{f.tag} after the RESULT")
            if type(f) is ResultFrame:
                self._result = True
        else:
            raise _unexpected(f"a provider does not send {f.tag}")

    def _may_receive(self, f: Frame) -> None:
        if type(f) is JobFrame:
            if self.job is not None:
                raise _unexpected("JOB was received already")
            self.job = f.job
        elif type(f) in (VoucherFrame, CancelFrame):
            if self.job is None:
                raise _unexpected(f"{f.tag} before the JOB")
            if type(f) is CancelFrame:
                if self._cancelled:
                    raise _unexpected("CANCEL was received already")
                self._cancelled = True
        else:
            raise _unexpected(f"a consumer does not send {f.tag}")
