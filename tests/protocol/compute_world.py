"""Builders for the compute protocol tests: a provider, its offer, a job
against it and signed usage reports; and the scenario that produces each
compute reason code, for ``test_reasons.py``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from hashlib import blake2b
from typing import Any

from mycelia.protocol import codec, keys
from mycelia.protocol.channels import ChannelState
from mycelia.protocol.compute import check_job, check_job_channel, check_usage, find_job
from mycelia.protocol.compute_frames import (
    InlineInput,
    Job,
    UsageFrame,
    decode_frame,
    decode_request,
)
from mycelia.protocol.domains import COMPUTE_USAGE
from mycelia.protocol.offers import Limits, Offer, Runtime, SignedOffer
from mycelia.protocol.pricing import Prices, Usage, price
from mycelia.protocol.reasons import Reason
from mycelia.protocol.usage import NO_PEAK, SignedUsage, UsageReport
from mycelia.testing.economies import T0, key

PROVIDER = key(1, "provider")
CONSUMER = key(2, "consumer")
ECONOMY = blake2b(b"compute-test-economy", digest_size=32).digest()
CHANNEL = blake2b(b"compute-test-channel", digest_size=32).digest()
PEER = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
LIMITS = Limits(
    max_cpu_ms=60_000,
    max_wall_ms=120_000,
    reserved_mib=512,
    max_input_bytes=1 << 20,
    max_output_bytes=1 << 16,
)
PRICES = Prices(fee=100, per_cpu_ms=2, per_mib_s=1, per_wall_s=5)
RUNTIME = Runtime("python3", LIMITS, PRICES)
ESCROW = 10_000_000
MAX_SPEND = 5_000_000


def offer(**changes: Any) -> Offer:
    base = Offer(
        economy=ECONOMY,
        provider=PROVIDER.public,
        seq=1,
        issued_ms=T0,
        expires_ms=T0 + 3_600_000,
        peer=PEER,
        addrs=("/ip4/127.0.0.1/tcp/4001",),
        runtimes=(RUNTIME, Runtime("wasm", LIMITS, Prices(0, 1, 0, 0))),
        credit_window=10_000,
        grace_ms=5_000,
    )
    return dataclasses.replace(base, **changes)


def signed_offer(**changes: Any) -> SignedOffer:
    return offer(**changes).sign(PROVIDER)


def job(o: Offer | None = None, **changes: Any) -> Job:
    o = o or offer()
    base = Job(
        economy=o.economy,
        offer=o.id,
        channel=CHANNEL,
        base=0,
        nonce=bytes(range(16)),
        runtime="python3",
        limits=LIMITS,
        input=InlineInput(b"print(6 * 7)"),
    )
    return dataclasses.replace(base, **changes)


def report(
    o: Offer,
    j: Job,
    seq: int,
    usage: Usage,
    *,
    price_: int | None = None,
    final: bool = False,
    peak: int = NO_PEAK,
    signer: Any = PROVIDER,
    **changes: Any,
) -> SignedUsage:
    """A report of ``usage`` for ``j``, at the offer's price unless
    ``price_`` says otherwise; ``changes`` override any other field."""
    r = UsageReport(
        economy=o.economy,
        provider=o.provider,
        offer=o.id,
        job=j.id,
        channel=j.channel,
        seq=seq,
        usage=usage,
        peak_bytes=peak,
        price=price(o, j.runtime, usage) if price_ is None else price_,
        final=final,
    )
    r = dataclasses.replace(r, **changes)
    # Signed with the given key whatever the report's provider says, so a
    # test can forge one (UsageReport.sign guards honest callers).
    return SignedUsage(r, keys.sign(signer, COMPUTE_USAGE, r.id))


def mid(seconds: int) -> Usage:
    """A plausible usage after ``seconds`` of running: one core busy."""
    ms = seconds * 1000
    return Usage(cpu_ms=ms, wall_ms=ms, mib_ms=LIMITS.reserved_mib * ms)


# -- a scenario per compute reason (run by test_reasons.py) --------------------------

Action = Callable[[], object]


def _decide(previous: UsageReport | None, new: SignedUsage, **kw: Any) -> Action:
    o = offer()
    j = job(o)
    args = {"escrow": ESCROW, "max_spend": MAX_SPEND} | kw
    return lambda: check_usage(o, j, previous, new, **args)


def s_unknown_offer() -> tuple[None, Action]:
    o = offer()
    j = job(o, offer=offer(seq=2).id)
    return None, lambda: check_job(o, j, now_ms=T0, held=0, escrow=ESCROW)


def s_offer_expired() -> tuple[None, Action]:
    o = offer()
    return None, lambda: check_job(o, job(o), now_ms=o.expires_ms, held=0, escrow=ESCROW)


def s_unknown_runtime() -> tuple[None, Action]:
    o = offer()
    return None, lambda: check_job(o, job(o, runtime="java"), now_ms=T0, held=0, escrow=ESCROW)


def s_over_limits() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    return None, _decide(None, report(o, j, 1, Usage(cpu_ms=LIMITS.max_cpu_ms + 1)))


def s_base_mismatch() -> tuple[None, Action]:
    o = offer()
    return None, lambda: check_job(o, job(o, base=5), now_ms=T0, held=7, escrow=ESCROW)


def s_over_escrow() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    new = report(o, j, 1, mid(10))
    return None, _decide(None, new, escrow=new.report.price - 1)


def s_over_max_spend() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    new = report(o, j, 1, mid(10))
    return None, _decide(None, new, max_spend=new.report.price - 1)


def s_usage_regressed() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    first = report(o, j, 1, mid(10)).report
    return None, _decide(first, report(o, j, 2, dataclasses.replace(mid(10), cpu_ms=9_999)))


def s_usage_out_of_order() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    second = report(o, j, 2, mid(1)).report
    return None, _decide(second, report(o, j, 2, mid(2)))


def s_price_mismatch() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    usage = mid(10)
    return None, _decide(None, report(o, j, 1, usage, price_=price(o, "python3", usage) + 1))


def s_usage_bad_sig() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    return None, _decide(None, report(o, j, 1, mid(1), signer=CONSUMER))


def s_wrong_job() -> tuple[None, Action]:
    o = offer()
    return None, _decide(None, report(o, job(o, nonce=bytes(16)), 1, mid(1)))


def s_unknown_frame() -> tuple[None, Action]:
    return None, lambda: decode_frame(codec.encode(["PING", 1]))


def s_unexpected_frame() -> tuple[None, Action]:
    o = offer()
    j = job(o)
    return None, lambda: decode_request(UsageFrame(report(o, j, 1, Usage())).encode())


def channel(**changes: Any) -> ChannelState:
    """The job's channel as the provider's ledger holds it: open, paying the
    provider, an hour long."""
    base = ChannelState(CHANNEL, CONSUMER.public, PROVIDER.public, ESCROW, T0 + 3_600_000, b"")
    return dataclasses.replace(base, **changes)


def _channel_check(c: ChannelState, **kw: Any) -> Action:
    args: dict[str, Any] = {
        "provider": PROVIDER.public,
        "now_ms": T0,
        "close_margin_ms": 60_000,
    } | kw
    return lambda: check_job_channel(job(), c, **args)


def s_channel_expiring() -> tuple[None, Action]:
    # A two-minute job, a minute to close: the channel must last past T0 + 3 min.
    return None, _channel_check(channel(expiry_ms=T0 + 179_999))


def s_channel_busy() -> tuple[None, Action]:
    return None, _channel_check(channel(), busy=True)


def s_unknown_job() -> tuple[None, Action]:
    return None, lambda: find_job({job().id: "running"}, bytes(32))


COMPUTE_SCENARIOS: dict[Reason, Callable[[], tuple[None, Action]]] = {
    Reason.UNKNOWN_OFFER: s_unknown_offer,
    Reason.OFFER_EXPIRED: s_offer_expired,
    Reason.UNKNOWN_RUNTIME: s_unknown_runtime,
    Reason.OVER_LIMITS: s_over_limits,
    Reason.BASE_MISMATCH: s_base_mismatch,
    Reason.OVER_ESCROW: s_over_escrow,
    Reason.OVER_MAX_SPEND: s_over_max_spend,
    Reason.USAGE_REGRESSED: s_usage_regressed,
    Reason.USAGE_OUT_OF_ORDER: s_usage_out_of_order,
    Reason.PRICE_MISMATCH: s_price_mismatch,
    Reason.USAGE_BAD_SIG: s_usage_bad_sig,
    Reason.WRONG_JOB: s_wrong_job,
    Reason.UNKNOWN_FRAME: s_unknown_frame,
    Reason.UNEXPECTED_FRAME: s_unexpected_frame,
    Reason.CHANNEL_EXPIRING: s_channel_expiring,
    Reason.CHANNEL_BUSY: s_channel_busy,
    Reason.UNKNOWN_JOB: s_unknown_job,
}
