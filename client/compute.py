"""Buying compute through a node, sans-IO: the flows both clients drive.

Why this exists: a wallet pays a provider per second of work with vouchers
it signs itself, and must never pay for what the provider did not sign, nor
more than it set out to spend (``protocol/compute.py``, the consumer's
rule). The node only relays (``compute_job_*``); every check and every
signature is here, in the wallet. Flows yield calls and sleeps like every
flow of ``core.py`` and are driven by :class:`~mycelia.client.Client` and
:class:`~mycelia.client.AsyncClient`.

* :func:`offers_flow` — ``compute_offers``, each offer's signature
  verified and the node's view of it checked against the signed bytes.
* :func:`channel_flow` — ``channel_get``, checked against the certified
  ``channel.open`` (``entry_get`` of the channel id, verified against the
  genesis) and, once settled, the certified settlement.
* :func:`start_flow`, :func:`voucher_flow`, :func:`status_flow`,
  :func:`result_flow`, :func:`cancel_flow` — one relayed request each; the
  job the node built must be exactly the one asked for, and each answer's
  view must be what its frame says.
* :func:`run_job_flow` — the consumer's loop: each answer through
  ``ConsumerJob.receive``; a voucher signed here for what it asks
  (``base + price`` of a report the provider signed, within the escrow and
  ``max_spend``); a poll about every ``poll_s`` otherwise; on a report that
  breaks the rule, **stop paying and cancel**; the final voucher for the
  RESULT. Returns a :class:`~mycelia.client.results.JobOutcome`.
* :func:`buy_flow` — the whole purchase: the cheapest offer that has the
  runtime, fits the job's limits and whose fee ``max_spend`` covers (by
  the price of the job at its limits, then the fee); a channel opened for
  ``max_spend`` to the offer's provider, expiring after the job's wall
  limit plus ``expiry_margin_ms``; the job started (asked again while the
  provider's ledger has not applied the open yet: ``channel_unknown``);
  :func:`run_job_flow`.
* :func:`refund_flow` — ``channel.refund`` of a channel the provider never
  closed (valid after its expiry plus ``REFUND_SKEW_MS``, or at once with
  the provider's release), built from the verified channel.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from mycelia.api import methods as declared
from mycelia.api.codecs import Json
from mycelia.api.encoding import hex_out
from mycelia.api.types import ChannelView, ComputeAnswer, OfferView
from mycelia.client.core import Flow, _Call, _Core, _params, _Sleep, parse_result
from mycelia.client.errors import ClientError, RpcError, VerifyError, _bad_response, _refused
from mycelia.client.results import JobOutcome
from mycelia.protocol import ChannelOpen, SigningKey, codec, did_decode
from mycelia.protocol.channels import (
    ChannelClose,
    ChannelRefund,
    SignedRelease,
    SignedVoucher,
    Voucher,
)
from mycelia.protocol.compute import ConsumerJob, Failed, Pay, Stop
from mycelia.protocol.compute_frames import Answer, ErrorFrame, InlineInput, Job
from mycelia.protocol.economy import max_channel_ms
from mycelia.protocol.offers import Limits, Offer
from mycelia.protocol.pricing import price_cap
from mycelia.protocol.reasons import Refused

__all__ = [
    "DEFAULT_EXPIRY_MARGIN_MS",
    "buy_flow",
    "cancel_flow",
    "channel_flow",
    "channels_flow",
    "check_answer",
    "choose_offer",
    "offers_flow",
    "open_channel_flow",
    "refund_flow",
    "result_flow",
    "run_job_flow",
    "start_flow",
    "status_flow",
    "voucher_flow",
]

#: How long a channel outlasts the job's wall limit: the provider must be
#: able to close it before it expires (its ``compute.close_margin_s``,
#: 5 minutes by default, plus the time to start and to settle).
DEFAULT_EXPIRY_MARGIN_MS = 15 * 60_000
#: Reasons a relayed request may be tried again (the provider or the path to
#: it is down for a moment).
_RETRYABLE = frozenset({"provider_unreachable"})

OnAnswer = Callable[[Answer, Pay | Stop | Failed | None], None]


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- listings, checked -------------------------------------------------------------------


def _offer(view: OfferView, economy: bytes | None = None) -> OfferView:
    signed = view.signed
    try:
        signed.verify()
    except Refused as exc:
        raise VerifyError(exc.reason.value, f"offer {hex_out(view.id)}: {exc.detail}") from None
    if view != OfferView.of(signed):
        raise VerifyError("malformed", f"offer {hex_out(view.id)}: the view is not its bytes")
    if economy is not None and signed.offer.economy != economy:
        raise VerifyError("wrong_economy", f"offer {hex_out(view.id)} is another economy's")
    return view


def offers_flow(core: _Core, economy: bytes) -> Flow[list[OfferView]]:
    """The economy's offers the node holds, each verified (its signature,
    its view, its economy)."""
    raw = yield _Call(declared.COMPUTE_OFFERS, {"economy": hex_out(economy)})
    return [_offer(v, economy) for v in parse_result(declared.COMPUTE_OFFERS, raw)]


def _settlement_of(body: Any) -> tuple[int, int]:
    """(to the provider, to the consumer) of a certified close or refund."""
    if isinstance(body, ChannelClose):
        return body.amount, body.rest
    assert isinstance(body, ChannelRefund)
    return body.to_provider, body.rest


def channel_flow(core: _Core, channel: bytes) -> Flow[ChannelView]:
    """``channel_get``, verified: the open is the certified ``channel.open``
    with the channel's id, and a settlement the node shows is a certified
    close or refund of it paying what the view says."""
    raw = yield _Call(declared.CHANNEL_GET, {"channel": hex_out(channel)})
    view: ChannelView = parse_result(declared.CHANNEL_GET, raw)
    what = f"channel {hex_out(channel)}"
    if view.id != channel:
        raise _bad_response(f"channel_get answered for {hex_out(view.id)}")
    opened = yield from core._entry_get_flow(channel)
    cert = opened.certificate
    if cert is None or not isinstance(cert.entry.body, ChannelOpen):
        raise VerifyError("missing", f"{what}: no certified channel.open with its id")
    body = cert.entry.body
    expected = (cert.entry.economy, cert.entry.author, body.provider, body.amount, body.expiry_ms)
    shown = (view.economy, did_decode(view.consumer), did_decode(view.provider))
    if (*shown, view.amount, view.expiry_ms) != expected or (view.offer or b"") != body.offer:
        raise VerifyError("malformed", f"{what}: the view is not its certified open")
    if view.settled_by is not None:
        settled = yield from core._entry_get_flow(view.settled_by)
        scert = settled.certificate
        sbody = None if scert is None else scert.entry.body
        if not isinstance(sbody, ChannelClose | ChannelRefund) or sbody.channel != channel:
            raise VerifyError("missing", f"{what}: no certified settlement {view.settled_by.hex()}")
        paid = _settlement_of(sbody)
        if (view.to_provider, view.to_consumer, view.escrow) != (*paid, 0):
            raise VerifyError("malformed", f"{what}: the settlement shown is not the certified one")
    elif view.escrow != view.amount:
        raise VerifyError("malformed", f"{what}: unsettled, but holding {view.escrow}")
    return view


def channels_flow(
    core: _Core, economy: bytes, account: str, limit: int | None
) -> Flow[list[ChannelView]]:
    """``channel_list``: a listing, as the node shows it (``channel_flow``
    verifies one)."""
    params = _params(economy=hex_out(economy), account=account, limit=limit)
    raw = yield _Call(declared.CHANNEL_LIST, params)
    views = parse_result(declared.CHANNEL_LIST, raw)
    me = did_decode(account)
    for v in views:
        if v.economy != economy or me not in (did_decode(v.consumer), did_decode(v.provider)):
            raise _bad_response("channel_list: a channel of another economy or account")
    return list(views)


# -- one relayed request each ------------------------------------------------------------


def check_answer(job: bytes, shown: ComputeAnswer) -> Answer:
    """The provider's answer a node relayed: its frame, which the node's
    view must describe."""
    if shown.job != job:
        raise _bad_response(f"an answer about job {hex_out(shown.job)}, not {hex_out(job)}")
    try:
        expected = ComputeAnswer.of(job, shown.frame)
    except Refused as exc:
        raise VerifyError(exc.reason.value, f"job {hex_out(job)}: no answer frame") from None
    if expected != shown:
        raise VerifyError("malformed", f"job {hex_out(job)}: the view is not the answer's frame")
    return shown.answer()


def _limits_json(limits: Limits) -> dict[str, Json]:
    return {
        "max_cpu_ms": limits.max_cpu_ms,
        "max_wall_ms": limits.max_wall_ms,
        "reserved_mib": limits.reserved_mib,
        "max_input_bytes": limits.max_input_bytes,
        "max_output_bytes": limits.max_output_bytes,
    }


def start_flow(
    core: _Core,
    offer: Offer,
    channel: bytes,
    runtime: str,
    data: bytes,
    limits: Limits | None,
    base: int,
) -> Flow[tuple[Job, Answer]]:
    """``compute_job_start``: the job the node built — which must be exactly
    the one asked for — and the provider's answer."""
    params: dict[str, Json] = {
        "offer": hex_out(offer.id),
        "channel": hex_out(channel),
        "runtime": runtime,
        "input": hex_out(data),
    }
    if limits is not None:
        params["limits"] = _limits_json(limits)
    if base:
        params["base"] = str(base)
    raw = yield _Call(declared.COMPUTE_JOB_START, params)
    started = parse_result(declared.COMPUTE_JOB_START, raw)
    try:
        job = Job.from_wire(codec.decode(started.job, max_size=len(started.job)))
    except Refused as exc:
        raise VerifyError(exc.reason.value, "compute_job_start: the job's bytes") from None
    want_limits = limits if limits is not None else offer.runtime(runtime).limits
    asked = (offer.economy, offer.id, channel, base, runtime, want_limits, InlineInput(data))
    got = (job.economy, job.offer, job.channel, job.base, job.runtime, job.limits, job.input)
    if got != asked or job.id != started.id or job.encode() != started.job:
        raise VerifyError("malformed", "compute_job_start: not the job asked for")
    return job, check_answer(job.id, started.answer)


def voucher_flow(core: _Core, job: bytes, voucher: SignedVoucher) -> Flow[Answer]:
    raw = yield _Call(
        declared.COMPUTE_JOB_VOUCHER, {"job": hex_out(job), "voucher": hex_out(voucher.encode())}
    )
    return check_answer(job, parse_result(declared.COMPUTE_JOB_VOUCHER, raw))


def status_flow(core: _Core, job: bytes) -> Flow[Answer]:
    raw = yield _Call(declared.COMPUTE_JOB_STATUS, {"job": hex_out(job)})
    return check_answer(job, parse_result(declared.COMPUTE_JOB_STATUS, raw))


def result_flow(core: _Core, job: bytes) -> Flow[Answer]:
    raw = yield _Call(declared.COMPUTE_JOB_RESULT, {"job": hex_out(job)})
    return check_answer(job, parse_result(declared.COMPUTE_JOB_RESULT, raw))


def cancel_flow(core: _Core, job: bytes) -> Flow[Answer]:
    raw = yield _Call(declared.COMPUTE_JOB_CANCEL, {"job": hex_out(job)})
    return check_answer(job, parse_result(declared.COMPUTE_JOB_CANCEL, raw))


# -- the consumer's loop -----------------------------------------------------------------


def _outcome(cj: ConsumerJob, offer: Offer) -> JobOutcome:
    report = None if cj.report is None else cj.report.report
    return JobOutcome(
        job=cj.job,
        offer=offer,
        result=cj.result,
        report=report,
        paid=cj.paid,
        stop=cj.stop,
        failed=cj.failed,
    )


def run_job_flow(
    core: _Core,
    key: SigningKey,
    offer: Offer,
    job: Job,
    first: Answer,
    *,
    escrow: int,
    max_spend: int,
    poll_s: float = 1.0,
    on_answer: OnAnswer | None = None,
) -> Flow[JobOutcome]:
    """Run the consumer's side of a started job to its end (see the module
    docstring). ``key`` signs the vouchers here; the node never sees it."""
    cj = ConsumerJob(offer, job, escrow=escrow, max_spend=max_spend)
    answer: Answer | None = first
    unsent: SignedVoucher | None = None  # signed, not yet through to the provider
    # Bounded: the job's own wall limit, then as long again for payments,
    # answers crossing and a provider briefly out of reach.
    deadline = time.monotonic() + 2 * job.limits.max_wall_ms / 1000 + 60
    while True:
        decision = None if answer is None else cj.receive(answer)
        if answer is not None and on_answer is not None:
            on_answer(answer, decision)
        if isinstance(decision, Stop):
            with contextlib.suppress(ClientError):  # it pays nothing more either way
                yield from cancel_flow(core, job.id)
            return _outcome(cj, offer)
        if cj.done and unsent is None:
            return _outcome(cj, offer)
        if time.monotonic() > deadline:
            raise ClientError("timeout", f"job {hex_out(job.id)} did not end in time")
        if isinstance(decision, Pay):
            unsent = Voucher(job.economy, job.channel, decision.amount).sign(key)
            cj.pay(unsent)
        elif unsent is None:
            yield _Sleep(poll_s)
        try:
            if unsent is not None:
                answer = yield from voucher_flow(core, job.id, unsent)
                unsent = None
            else:
                answer = yield from status_flow(core, job.id)
        except RpcError as exc:
            if exc.reason not in _RETRYABLE:
                raise
            answer = None  # nothing new: ask again in a moment
            yield _Sleep(poll_s)


# -- the whole purchase ------------------------------------------------------------------


def choose_offer(
    offers: list[OfferView], runtime: str, limits: Limits | None, max_spend: int, now_ms: int
) -> tuple[Offer, Limits] | None:
    """The cheapest unexpired offer with ``runtime`` whose runtime's limits
    hold the job's (``limits``, default the runtime's own) and whose fee
    ``max_spend`` covers; cheapest by the price of the job at its limits,
    then by fee, then by offer id. None when none fits."""
    best: tuple[tuple[int, int, bytes], Offer, Limits] | None = None
    for view in offers:
        offer = view.signed.offer
        if offer.expired(now_ms):
            continue
        try:
            rt = offer.runtime(runtime)
        except Refused:
            continue
        job_limits = limits if limits is not None else rt.limits
        if job_limits.within(rt.limits) is not None or rt.prices.fee > max_spend:
            continue
        rank = (price_cap(rt.prices, job_limits), rt.prices.fee, offer.id)
        if best is None or rank < best[0]:
            best = (rank, offer, job_limits)
    return None if best is None else (best[1], best[2])


def open_channel_flow(
    core: _Core,
    key: SigningKey,
    economy: bytes,
    provider: bytes,
    amount: int,
    expiry_ms: int,
    offer: bytes = b"",
) -> Flow[bytes]:
    """Submit ``key``'s ``channel.open``; its entry id, which is the channel
    id (the caller waits for its certificate)."""
    try:
        body = ChannelOpen(provider, amount, expiry_ms, offer)
    except Refused as exc:
        raise _refused(exc) from None
    return (yield from core._submit_flow(key, economy, body, None))


def buy_flow(
    core: _Core,
    key: SigningKey,
    economy: bytes,
    runtime: str,
    data: bytes,
    *,
    max_spend: int,
    limits: Limits | None = None,
    expiry_margin_ms: int = DEFAULT_EXPIRY_MARGIN_MS,
    poll_s: float = 1.0,
    timeout_s: float = 60.0,
    on_answer: OnAnswer | None = None,
) -> Flow[JobOutcome]:
    """Buy one job (see the module docstring); the outcome, with the channel
    that paid it (the provider closes it; :func:`refund_flow` after its
    expiry if it never does)."""
    econ = yield from core._economy_flow(economy)
    offers = yield from offers_flow(core, economy)
    now = _now_ms()
    chosen = choose_offer(offers, runtime, limits, max_spend, now)
    if chosen is None:
        raise ClientError(
            "no_offer", f"no offer of runtime {runtime!r} fits the limits and {max_spend}"
        )
    offer, job_limits = chosen
    expiry = min(
        now + job_limits.max_wall_ms + expiry_margin_ms,
        now + max_channel_ms(econ.genesis.policy),
    )
    channel = yield from open_channel_flow(
        core, key, economy, offer.provider, max_spend, expiry, offer.id
    )
    status = yield from core._wait_flow(channel, timeout_s, None)
    if not status.certified:
        raise ClientError(
            status.reason or "refused", f"the channel.open was not certified: {status.detail}"
        )
    deadline = time.monotonic() + timeout_s
    while True:  # until the provider's ledger has the open
        job, first = yield from start_flow(core, offer, channel, runtime, data, job_limits, 0)
        waiting = isinstance(first, ErrorFrame) and first.code == "channel_unknown"
        if not waiting or time.monotonic() > deadline:
            break
        yield _Sleep(poll_s / 2)
    outcome = yield from run_job_flow(
        core,
        key,
        offer,
        job,
        first,
        escrow=max_spend,
        max_spend=max_spend,
        poll_s=poll_s,
        on_answer=on_answer,
    )
    return outcome


def refund_flow(
    core: _Core,
    key: SigningKey,
    channel: bytes,
    release: SignedRelease | None = None,
    ts_ms: int | None = None,
) -> Flow[bytes]:
    """Submit ``key``'s ``channel.refund`` of ``channel`` (verified first,
    ``channel_flow``): after its expiry, or with the provider's ``release``.
    The entry id; the validators decide (``channel_not_expired`` before the
    time)."""
    view = yield from channel_flow(core, channel)
    if view.settled_by is not None:
        raise ClientError("channel_settled", f"channel {hex_out(channel)} is settled already")
    try:
        body = ChannelRefund.of(view.state(), release)
    except Refused as exc:
        raise _refused(exc) from None
    return (yield from core._submit_flow(key, view.economy, body, ts_ms))
