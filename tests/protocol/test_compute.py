"""The compute rules (``protocol/compute.py``): the provider's job check,
the consumer's pay-or-stop rule, the provider's continue/freeze/kill rule
(with the property that it never carries more than its credit window plus
one step unpaid), billing, and each side's state of a job over requests and
answers — lost, repeated and skipped answers included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol.channels import Settlement, SignedVoucher, Voucher
from mycelia.protocol.compute import (
    Action,
    ConsumerJob,
    Failed,
    Pay,
    ProviderJob,
    Stop,
    billed,
    check_job,
    check_job_channel,
    consumer_decide,
    consumer_result,
    find_job,
    find_offer,
    provider_decide,
)
from mycelia.protocol.compute_frames import (
    CancelFrame,
    ErrorFrame,
    HashInput,
    InlineInput,
    JobFrame,
    PollFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
    decode_answer,
    decode_request,
)
from mycelia.protocol.offers import Limits, Offer, Runtime
from mycelia.protocol.pricing import Prices, Usage, cost, price
from mycelia.protocol.reasons import Reason, Refused
from mycelia.testing.economies import T0, key
from tests.protocol.compute_world import (
    CHANNEL,
    CONSUMER,
    ESCROW,
    LIMITS,
    MAX_SPEND,
    PROVIDER,
    channel,
    job,
    mid,
    offer,
    report,
)


def refused(reason: Reason, action: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as info:
        action(*args, **kw)
    assert info.value.reason is reason, info.value
    return info.value


# -- the provider's job check --------------------------------------------------------


def test_a_good_job_is_accepted() -> None:
    o = offer()
    assert check_job(o, job(o), now_ms=T0, held=0, escrow=ESCROW) == o.runtime("python3")
    j = job(o, base=700, runtime="wasm", input=HashInput(bytes(32), LIMITS.max_input_bytes))
    assert check_job(o, j, now_ms=o.expires_ms - 1, held=700, escrow=800).name == "wasm"


def test_job_refusals() -> None:
    o = offer()
    kw: dict[str, Any] = {"now_ms": T0, "held": 0, "escrow": ESCROW}
    refused(Reason.WRONG_ECONOMY, check_job, o, job(o, economy=bytes(32)), **kw)
    refused(Reason.UNKNOWN_OFFER, check_job, o, job(offer(credit_window=1)), **kw)
    refused(Reason.OFFER_EXPIRED, check_job, o, job(o), **(kw | {"now_ms": o.expires_ms}))
    refused(Reason.UNKNOWN_RUNTIME, check_job, o, job(o, runtime="java"), **kw)
    for field in ("max_cpu_ms", "max_wall_ms", "reserved_mib", "max_input_bytes"):
        more = dataclasses.replace(LIMITS, **{field: getattr(LIMITS, field) + 1})
        e = refused(Reason.OVER_LIMITS, check_job, o, job(o, limits=more), **kw)
        assert field in e.detail
    small = dataclasses.replace(LIMITS, max_input_bytes=3)
    refused(Reason.OVER_LIMITS, check_job, o, job(o, limits=small), **kw)  # inline, 12 bytes
    hashed = job(o, limits=small, input=HashInput(bytes(32), 4))
    refused(Reason.OVER_LIMITS, check_job, o, hashed, **kw)
    refused(Reason.BASE_MISMATCH, check_job, o, job(o, base=1), **kw)
    refused(Reason.BASE_MISMATCH, check_job, o, job(o), **(kw | {"held": 1}))
    refused(Reason.OVER_ESCROW, check_job, o, job(o, base=50), **(kw | {"held": 50, "escrow": 149}))
    assert check_job(o, job(o, base=50), now_ms=T0, held=50, escrow=150)  # exactly the fee


# -- the consumer's rule -------------------------------------------------------------


def run_reports(o: Offer, j: Any, reports: list[Any], **kw: Any) -> list[Pay | Stop]:
    """Feed reports through the rule as a consumer does: stop at the first Stop."""
    args = {"escrow": ESCROW, "max_spend": MAX_SPEND} | kw
    previous = None
    out: list[Pay | Stop] = []
    for r in reports:
        d = consumer_decide(o, j, previous, r, **args)
        out.append(d)
        if isinstance(d, Stop):
            break
        previous = r.report
    return out


def test_an_honest_job_is_paid_report_by_report() -> None:
    o = offer()
    j = job(o, base=1_000)
    usages = [Usage(), mid(1), mid(2), dataclasses.replace(mid(2), cpu_ms=2_500), mid(3)]
    reports = [report(o, j, i + 1, u) for i, u in enumerate(usages)]
    decisions = run_reports(o, j, reports)
    assert decisions == [Pay(1_000 + price(o, "python3", u)) for u in usages]
    assert decisions[0] == Pay(1_000 + 100)  # the fee, first


def test_the_result_is_checked_like_a_report_and_its_output_bounded() -> None:
    o = offer()
    j = job(o, limits=dataclasses.replace(LIMITS, max_output_bytes=4))
    first = report(o, j, 1, Usage()).report
    final = report(o, j, 2, mid(1), final=True)
    kw: dict[str, Any] = {"escrow": ESCROW, "max_spend": MAX_SPEND}
    good = ResultFrame(0, "completed", b"42\n!", final)
    assert consumer_result(o, j, first, good, **kw) == Pay(price(o, "python3", mid(1)))
    long = ResultFrame(0, "completed", b"42\n!!", final)
    assert consumer_result(o, j, first, long, **kw) == Stop(
        Reason.OVER_LIMITS, "output of 5 bytes > max_output_bytes 4"
    )
    assert consumer_decide(o, j, final.report, report(o, j, 3, mid(2)), **kw) == Stop(
        Reason.USAGE_OUT_OF_ORDER, "a report after the final one"
    )


def _stop(decision: Pay | Stop) -> Reason:
    assert isinstance(decision, Stop), decision
    return decision.reason


def test_consumer_refusals() -> None:
    o = offer()
    j = job(o)
    kw: dict[str, Any] = {"escrow": ESCROW, "max_spend": MAX_SPEND}
    first = report(o, j, 1, mid(5)).report

    def decide(new: Any, previous: Any = first, **more: Any) -> Reason:
        return _stop(consumer_decide(o, j, previous, new, **(kw | more)))

    assert decide(report(o, j, 2, mid(6), economy=bytes(32))) is Reason.WRONG_ECONOMY
    assert decide(report(o, j, 2, mid(6), channel=bytes(32))) is Reason.WRONG_JOB
    assert decide(report(o, j, 2, mid(6), job=bytes(32))) is Reason.WRONG_JOB
    assert decide(report(o, j, 2, mid(6), offer=bytes(32))) is Reason.WRONG_JOB
    stranger = key(5, "provider")
    assert decide(report(o, j, 2, mid(6), provider=stranger.public, signer=stranger)) is (
        Reason.WRONG_JOB
    )
    assert decide(report(o, j, 2, mid(6), signer=stranger)) is Reason.USAGE_BAD_SIG
    assert decide(report(o, j, 1, mid(6))) is Reason.USAGE_OUT_OF_ORDER  # replayed seq
    # A seq may skip (an answer was lost), and the first report seen need not be 1.
    assert consumer_decide(o, j, first, report(o, j, 3, mid(6)), **kw) == Pay(
        price(o, "python3", mid(6))
    )
    assert isinstance(consumer_decide(o, j, None, report(o, j, 2, mid(6)), **kw), Pay)
    for counter in ("cpu_ms", "wall_ms", "mib_ms"):
        back = dataclasses.replace(mid(6), **{counter: getattr(mid(5), counter) - 1})
        assert decide(report(o, j, 2, back)) is Reason.USAGE_REGRESSED
    over = [
        Usage(cpu_ms=LIMITS.max_cpu_ms + 1, wall_ms=10_000, mib_ms=512 * 10_000),
        Usage(cpu_ms=6_000, wall_ms=LIMITS.max_wall_ms + 1, mib_ms=512 * 6_000),
        Usage(cpu_ms=6_000, wall_ms=6_000, mib_ms=LIMITS.reserved_mib * 6_000 + 1),
    ]
    for u in over:
        assert decide(report(o, j, 2, u)) is Reason.OVER_LIMITS
    right = price(o, "python3", mid(6))
    assert decide(report(o, j, 2, mid(6), price_=right + 1)) is Reason.PRICE_MISMATCH
    assert decide(report(o, j, 2, mid(6), price_=right - 1)) is Reason.PRICE_MISMATCH
    assert decide(report(o, j, 2, mid(6)), escrow=right - 1) is Reason.OVER_ESCROW
    assert decide(report(o, j, 2, mid(6)), max_spend=right - 1) is Reason.OVER_MAX_SPEND
    stop = consumer_decide(o, j, first, report(o, j, 2, mid(6)), escrow=right - 1, max_spend=right)
    assert isinstance(stop, Stop)
    assert stop.error() == ErrorFrame("over_escrow", stop.detail)
    assert stop.detail == f"base 0 + price {right} > escrow {right - 1}"
    # At the bounds exactly, it pays.
    exact = consumer_decide(o, j, first, report(o, j, 2, mid(6)), escrow=right, max_spend=right)
    assert exact == Pay(right)


def test_the_escrow_counts_what_the_channel_paid_before_the_job() -> None:
    o = offer()
    j = job(o, base=900)
    r = report(o, j, 1, Usage())  # the fee: 100
    assert consumer_decide(o, j, None, r, escrow=1000, max_spend=100) == Pay(1000)
    assert _stop(consumer_decide(o, j, None, r, escrow=999, max_spend=100)) is Reason.OVER_ESCROW


def test_the_job_must_be_the_offers() -> None:
    o = offer()
    with pytest.raises(ValueError, match="offer"):
        consumer_decide(
            o, job(offer(seq=9)), None, report(o, job(o), 1, Usage()), escrow=1, max_spend=1
        )


@st.composite
def report_streams(draw: st.DrawFn) -> tuple[Offer, Any, list[Any]]:
    """Reports a provider might send, honest or not: counters that mostly
    grow (sometimes back), seqs mostly in order, prices mostly right."""
    o = offer()
    j = job(o, base=draw(st.integers(0, 1000)))
    usage = Usage()
    seq = 0
    out = []
    for _ in range(draw(st.integers(1, 12))):
        step = draw(
            st.tuples(st.integers(-50, 3_000), st.integers(-50, 3_000), st.integers(-50, 3_000))
        )
        cpu = max(0, usage.cpu_ms + step[0])
        wall = max(0, usage.wall_ms + step[1])
        mib = max(0, min(usage.mib_ms + step[2] * 512, 512 * wall + draw(st.integers(0, 2))))
        usage = Usage(cpu, wall, mib)
        seq += draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
        skew = draw(st.sampled_from([0, 0, 0, 0, 0, 1, -1]))
        honest = price(o, "python3", usage)
        out.append(report(o, j, max(seq, 1), usage, price_=max(0, honest + skew)))
    return o, j, out


@given(report_streams(), st.integers(0, 40_000), st.integers(0, 40_000))
def test_a_voucher_never_exceeds_the_price_of_the_reported_usage(
    stream: tuple[Offer, Any, list[Any]], escrow: int, max_spend: int
) -> None:
    o, j, reports = stream
    decisions = run_reports(o, j, reports, escrow=escrow, max_spend=max_spend)
    paid = [
        (d.amount, r.report) for d, r in zip(decisions, reports, strict=False) if isinstance(d, Pay)
    ]
    last = j.base
    for amount, r in paid:
        assert amount == j.base + price(o, "python3", r.usage) == j.base + r.price
        assert amount <= escrow
        assert amount - j.base <= max_spend
        assert amount >= last  # cumulative vouchers never go down
        last = amount
        assert LIMITS.excess(r.usage) is None
    seqs = [r.seq for _, r in paid]
    assert seqs == sorted(set(seqs))  # in order, each once


# -- the provider's rule ---------------------------------------------------------------


def test_provider_decisions() -> None:
    o = offer(credit_window=1_000, grace_ms=5_000)
    within = provider_decide(o, price=1_500, voucher=500, over_since_ms=None, now_ms=T0)
    assert within.action is Action.CONTINUE
    assert within.unpaid == 1_000
    over = provider_decide(o, price=1_501, voucher=500, over_since_ms=None, now_ms=T0)
    assert (over.action, over.unpaid, over.over_since_ms) == (Action.FREEZE, 1_001, T0)
    still = provider_decide(o, price=1_501, voucher=500, over_since_ms=T0, now_ms=T0 + 4_999)
    assert (still.action, still.over_since_ms) == (Action.FREEZE, T0)
    kill = provider_decide(o, price=1_501, voucher=500, over_since_ms=T0, now_ms=T0 + 5_000)
    assert kill.action is Action.KILL
    thaw = provider_decide(o, price=1_501, voucher=501, over_since_ms=T0, now_ms=T0 + 4_000)
    assert (thaw.action, thaw.over_since_ms) == (Action.CONTINUE, None)
    based = provider_decide(o, price=100, voucher=2_000, base=2_000, over_since_ms=None, now_ms=T0)
    assert based.unpaid == 100
    no_grace = offer(credit_window=0, grace_ms=0)
    assert provider_decide(no_grace, price=1, voucher=0, over_since_ms=None, now_ms=T0).action is (
        Action.KILL
    )


PAYS = st.sampled_from(["none", "part", "all"])


@st.composite
def metered_jobs(draw: st.DrawFn) -> dict[str, Any]:
    prices = Prices(
        draw(st.integers(0, 5_000)),
        draw(st.integers(0, 50)),
        draw(st.integers(0, 50)),
        draw(st.integers(0, 500)),
    )
    return {
        "prices": prices,
        "window": draw(st.integers(0, 20_000)),
        "grace": draw(st.integers(0, 10_000)),
        "tick_ms": draw(st.integers(1, 2_000)),
        "cores": draw(st.integers(1, 8)),
        "mib": draw(st.integers(1, 2048)),
        # per tick: how much of a tick's usage the job really uses, and what
        # the consumer pays (nothing, part, all, or stale)
        "ticks": draw(
            st.lists(
                st.tuples(st.integers(0, 100), st.sampled_from(["none", "part", "all"])),
                max_size=60,
            )
        ),
    }


@given(metered_jobs())
def test_the_provider_never_carries_more_than_the_window_plus_one_step(
    job_: dict[str, Any],
) -> None:
    """A provider that follows the rule — work a tick only on CONTINUE;
    frozen time is not billed — is never owed more than credit_window plus
    the most one step can cost: the fee at the start, or a tick of usage at
    full use of its cores and reservation."""
    p, tick, cores, mib = job_["prices"], job_["tick_ms"], job_["cores"], job_["mib"]
    lim = Limits(60_000 * cores * 1000, 60_000 * 1000, mib, 0, 0)
    o = offer(
        runtimes=(Runtime("python3", lim, p),), credit_window=job_["window"], grace_ms=job_["grace"]
    )
    full_tick = Usage(cores * tick, tick, mib * tick)
    step = max(p.fee, cost(p, full_tick) - p.fee)
    bound = o.credit_window + step

    usage = Usage()
    voucher = 0
    clock = T0
    over_since = None
    killed = False
    for use, pays in job_["ticks"]:
        owed = price(o, "python3", usage)  # the fee is owed from the start
        assert owed - voucher <= bound
        d = provider_decide(o, price=owed, voucher=voucher, over_since_ms=over_since, now_ms=clock)
        over_since = d.over_since_ms
        if d.action is Action.KILL:
            killed = True
            break
        if d.action is Action.CONTINUE:
            ran = tick * use // 100
            usage = Usage(usage.cpu_ms + cores * ran, usage.wall_ms + ran, usage.mib_ms + mib * ran)
            owed = price(o, "python3", usage)
            assert owed - voucher <= bound
        clock += tick
        # The consumer pays after seeing the report: nothing, part, or all.
        owed = price(o, "python3", usage)
        if pays == "all":
            voucher = owed
        elif pays == "part":
            voucher = max(voucher, (voucher + owed) // 2)
    if killed:
        assert price(o, "python3", usage) - voucher > o.credit_window
        assert clock - (over_since or clock) >= o.grace_ms


# -- billing -------------------------------------------------------------------------


def test_billing_holds_counters_to_the_limits_and_never_back() -> None:
    lim = dataclasses.replace(LIMITS, max_cpu_ms=5_000, max_wall_ms=10_000, reserved_mib=4)
    # Memory is billed as the job's reservation, whatever the runtime reserved.
    assert billed(lim, Usage(1_200, 2_000, 512 * 2_000)) == Usage(1_200, 2_000, 8_000)
    # Past a limit (the kill lands a poll later): billed at the limit.
    assert billed(lim, Usage(5_400, 12_000, 0)) == Usage(5_000, 10_000, 40_000)
    # Never below the previous report (two clocks read a moment apart).
    before = Usage(1_000, 2_500, 10_000)
    assert billed(lim, Usage(900, 2_400, 0), before) == before
    assert billed(lim, Usage()) == Usage()


@given(st.lists(st.tuples(st.integers(-300, 500), st.integers(-300, 500)), max_size=40))
def test_billed_counters_only_grow_and_stay_within_the_limits(
    steps: list[tuple[int, int]],
) -> None:
    lim = dataclasses.replace(LIMITS, max_cpu_ms=8_000, max_wall_ms=9_000)
    cpu = wall = 0
    previous = Usage()
    for dcpu, dwall in steps:
        cpu, wall = max(0, cpu + dcpu), max(0, wall + dwall)  # a meter may jitter back
        u = billed(lim, Usage(cpu, wall, 0), previous)
        assert u.covers(previous)
        assert lim.excess(u) is None
        assert u.wall_ms in (previous.wall_ms, min(wall, lim.max_wall_ms))
        previous = u


# -- the provider's side of a job ------------------------------------------------------


def _provider(o: Offer | None = None, **job_changes: Any) -> ProviderJob:
    o = o or offer()
    return ProviderJob(o, job(o, **job_changes), PROVIDER)


def test_a_provider_job_signs_a_report_only_when_the_counters_move() -> None:
    pj = _provider()
    first = pj.answer()
    assert isinstance(first, UsageFrame)
    assert (first.usage.report.seq, first.usage.report.price) == (1, 100)  # the fee
    assert pj.answer() == first  # nothing moved: the same report
    pj.meter(Usage(500, 1_000))
    second = pj.report()
    assert second.report.seq == 2
    assert second.report.usage == Usage(500, 1_000, 512 * 1_000)
    assert second.report.price == price(pj.offer, "python3", second.report.usage)
    assert second.report.peak_bytes == -1
    assert pj.report() is second
    pj.meter(Usage(500, 1_000), 7_000)  # frozen meanwhile: its clock stopped
    assert pj.report() is second
    second.verify(PROVIDER.public)


def test_a_provider_job_ends_with_one_result_that_answers_everything_after() -> None:
    pj = _provider(limits=dataclasses.replace(LIMITS, max_output_bytes=5))
    pj.meter(Usage(700, 1_500), 1 << 20)
    seq = pj.report().report.seq
    result = pj.finish(exit_status=0, outcome="completed", output=b"0123456789")
    assert result.output == b"01234"
    assert result.outcome == "limit"  # cut at the job's output limit
    r = result.usage.report
    assert (r.seq, r.final, r.usage, r.peak_bytes) == (seq + 1, True, pj.usage, 1 << 20)
    assert pj.answer() is result
    assert pj.finish(exit_status=1, outcome="failed", output=b"") is result
    pj.meter(Usage(9_000, 9_000))
    assert pj.answer() is result
    kept = _provider().finish(exit_status=-9, outcome="unpaid", output=b"x")
    assert (kept.exit_status, kept.outcome, kept.output) == (-9, "unpaid", b"x")


def test_a_provider_job_holds_the_newest_valid_voucher() -> None:
    o = offer()
    pj = _provider(o, base=100)
    ch = channel()
    v = Voucher(o.economy, CHANNEL, 300).sign(CONSUMER)
    assert pj.held == 100
    assert pj.check_voucher(ch, v)
    assert pj.held == 100  # checked, not yet held (the node persists it first)
    pj.hold(v)
    assert (pj.held, pj.voucher) == (300, v)
    assert not pj.check_voucher(ch, v)  # a replay changes nothing
    assert not pj.check_voucher(ch, Voucher(o.economy, CHANNEL, 200).sign(CONSUMER))
    assert not pj.check_voucher(ch, Voucher(o.economy, CHANNEL, 100).sign(CONSUMER))
    pj.hold(Voucher(o.economy, CHANNEL, 200).sign(CONSUMER))
    assert pj.held == 300
    other = Voucher(o.economy, bytes(32), 400).sign(CONSUMER)
    refused(Reason.WRONG_CHANNEL, pj.check_voucher, ch, other)
    forged = Voucher(o.economy, CHANNEL, 400).sign(key(9, "stranger"))
    refused(Reason.VOUCHER_BAD_SIG, pj.check_voucher, ch, forged)
    too_much = Voucher(o.economy, CHANNEL, ESCROW + 1).sign(CONSUMER)
    refused(Reason.VOUCHER_OVER_ESCROW, pj.check_voucher, ch, too_much)
    settled = channel(settlement=Settlement(bytes(32), "channel.close", 300, ESCROW - 300))
    refused(Reason.CHANNEL_SETTLED, pj.check_voucher, settled, v)
    refused(
        Reason.WRONG_ECONOMY, pj.check_voucher, ch, Voucher(bytes(32), CHANNEL, 400).sign(CONSUMER)
    )
    assert pj.held == 300


def test_a_provider_job_freezes_then_kills_an_unpaid_job_and_thaws_a_paid_one() -> None:
    o = offer(credit_window=1_000, grace_ms=5_000)
    pj = _provider(o)
    assert pj.decide(T0).action is Action.CONTINUE  # the fee (100) is within the window
    pj.meter(Usage(1_000, 1_000))  # 100 + 2000 + 512 + 5
    assert pj.decide(T0 + 1_000).action is Action.FREEZE
    assert pj.over_since_ms == T0 + 1_000
    assert pj.decide(T0 + 5_999).action is Action.FREEZE
    pj.hold(Voucher(o.economy, CHANNEL, pj.price - 1_000).sign(CONSUMER))
    thawed = pj.decide(T0 + 5_999)
    assert (thawed.action, thawed.unpaid, pj.over_since_ms) == (Action.CONTINUE, 1_000, None)
    pj.meter(Usage(1_100, 1_100))
    assert pj.decide(T0 + 7_000).action is Action.FREEZE
    assert pj.decide(T0 + 12_000).action is Action.KILL


def test_a_provider_job_is_its_offers_providers() -> None:
    with pytest.raises(ValueError, match="provider"):
        ProviderJob(offer(), job(), CONSUMER)


def test_the_provider_checks_the_channel_a_job_names() -> None:
    j = job()
    kw: dict[str, Any] = {"provider": PROVIDER.public, "now_ms": T0, "close_margin_ms": 60_000}
    ch = channel(expiry_ms=T0 + LIMITS.max_wall_ms + 60_000)
    assert check_job_channel(j, ch, **kw) is ch  # exactly enough time
    refused(Reason.CHANNEL_UNKNOWN, check_job_channel, j, None, **kw)
    refused(Reason.NOT_PROVIDER, check_job_channel, j, channel(provider=CONSUMER.public), **kw)
    done = channel(settlement=Settlement(bytes(32), "channel.refund", 0, ESCROW))
    refused(Reason.CHANNEL_SETTLED, check_job_channel, j, done, **kw)
    refused(Reason.CHANNEL_BUSY, check_job_channel, j, ch, busy=True, **kw)
    refused(Reason.CHANNEL_EXPIRING, check_job_channel, j, ch, **(kw | {"now_ms": T0 + 1}))


def test_the_offer_and_the_job_a_request_names() -> None:
    o, newer = offer(), offer(issued_ms=T0 + 60_000)
    held = {o.id: o, newer.id: newer}
    assert find_offer(held, job(o)) is o
    assert find_offer(held, job(newer)) is newer
    refused(Reason.UNKNOWN_OFFER, find_offer, held, job(offer(seq=2)))
    jobs = {job(o).id: "running"}
    assert find_job(jobs, job(o).id) == "running"
    refused(Reason.UNKNOWN_JOB, find_job, jobs, job(newer).id)


# -- the consumer's side of a job, against the provider's ---------------------------------


def _ask(pj: ProviderJob, request: Any) -> Any:
    """One round trip through bytes, as the node serves a request."""
    got = decode_request(request.encode())
    assert got == request
    return decode_answer(pj.answer().encode())


def test_an_honest_job_from_start_to_final_payment() -> None:
    o = offer(credit_window=50_000)
    j = job(o, base=40)
    pj = ProviderJob(o, j, PROVIDER)
    cj = ConsumerJob(o, j, escrow=ESCROW, max_spend=MAX_SPEND)
    assert decode_request(cj.start().encode()) == JobFrame(j)
    paid: list[int] = []

    def settle(decision: Any) -> None:
        if isinstance(decision, Pay):
            v = Voucher(o.economy, CHANNEL, decision.amount).sign(CONSUMER)
            request = decode_request(cj.pay(v).encode())
            assert isinstance(request, VoucherFrame)
            signed = SignedVoucher.decode(request.voucher)
            assert request.job == j.id
            assert pj.check_voucher(channel(), signed)
            pj.hold(signed)
            paid.append(decision.amount)

    settle(cj.receive(_ask(pj, cj.start())))
    assert paid == [40 + 100]  # base + the fee
    assert cj.receive(_ask(pj, cj.poll())) is None  # the same report: nothing new
    for second in (1, 2, 3):
        pj.meter(Usage(900 * second, 1_000 * second))
        if second == 2:
            pj.report()  # a report whose answer was lost: the next one skips a seq
            pj.meter(Usage(1_900, 2_100))
        settle(cj.receive(_ask(pj, cj.poll())))
    assert paid[-1] == 40 + pj.price == cj.paid == pj.held
    assert not cj.ended
    pj.meter(Usage(2_900, 3_400))  # the last moments
    result = pj.finish(exit_status=0, outcome="completed", output=b"42\n")
    settle(cj.receive(_ask(pj, cj.cancel())))  # crossed the RESULT: answered with it
    assert cj.result == result
    assert cj.done
    assert paid[-1] == 40 + result.usage.report.price == pj.held
    assert cj.receive(_ask(pj, cj.poll())) is None  # the RESULT again
    assert len(paid) == len(set(paid)) == 5


def _consumer(o: Offer, j: Any, **kw: Any) -> ConsumerJob:
    return ConsumerJob(
        o, j, escrow=kw.get("escrow", ESCROW), max_spend=kw.get("max_spend", MAX_SPEND)
    )


def test_the_consumer_stops_paying_a_provider_that_lies() -> None:
    o = offer()
    j = job(o)
    honest = report(o, j, 2, mid(5))
    cases: list[tuple[Any, Reason]] = [
        (
            UsageFrame(report(o, j, 3, dataclasses.replace(mid(5), cpu_ms=4_999))),
            Reason.USAGE_REGRESSED,
        ),
        (
            UsageFrame(report(o, j, 3, mid(6), price_=price(o, "python3", mid(6)) + 1)),
            Reason.PRICE_MISMATCH,
        ),
        (UsageFrame(report(o, j, 2, mid(6))), Reason.USAGE_OUT_OF_ORDER),
        (UsageFrame(report(o, j, 3, mid(6), signer=key(9, "stranger"))), Reason.USAGE_BAD_SIG),
        (UsageFrame(report(o, j, 3, mid(6), job=bytes(32))), Reason.WRONG_JOB),
        (
            ResultFrame(
                0,
                "completed",
                b"x" * (LIMITS.max_output_bytes + 1),
                report(o, j, 3, mid(6), final=True),
            ),
            Reason.OVER_LIMITS,
        ),
    ]
    for lie, reason in cases:
        cj = _consumer(o, j)
        assert cj.receive(UsageFrame(honest)) == Pay(price(o, "python3", mid(5)))
        cj.pay(Voucher(o.economy, CHANNEL, cj.owed).sign(CONSUMER))
        stop = cj.receive(lie)
        assert isinstance(stop, Stop), lie
        assert stop.reason is reason
        assert cj.stop == stop
        assert cj.done
        assert cj.ended
        assert cj.paid == price(o, "python3", mid(5))  # nothing more
        assert cj.receive(UsageFrame(report(o, j, 4, mid(7)))) is None  # stopped for good
        with pytest.raises(ValueError, match="stopped"):
            cj.pay(Voucher(o.economy, CHANNEL, cj.paid).sign(CONSUMER))
        assert isinstance(decode_request(cj.cancel().encode()), CancelFrame)


def test_the_consumer_stops_on_a_second_result_or_usage_after_it() -> None:
    o = offer()
    j = job(o)
    final = ResultFrame(0, "completed", b"ok", report(o, j, 2, mid(1), final=True))
    for after in (
        UsageFrame(report(o, j, 3, mid(2))),
        ResultFrame(1, "completed", b"ok", report(o, j, 2, mid(1), final=True)),
    ):
        cj = _consumer(o, j)
        assert isinstance(cj.receive(final), Pay)
        assert cj.receive(final) is None
        stop = cj.receive(after)
        assert isinstance(stop, Stop)
        assert stop.reason is Reason.UNEXPECTED_FRAME


def test_an_error_answer_ends_the_job_for_the_consumer() -> None:
    o = offer()
    cj = _consumer(o, job(o))
    failed = cj.receive(ErrorFrame("runner_busy", "1 jobs running"))
    assert failed == Failed("runner_busy", "1 jobs running")
    assert cj.failed == failed
    assert cj.done
    assert cj.receive(UsageFrame(report(o, job(o), 1, Usage()))) is None


def test_the_consumer_pays_only_what_a_report_asks_for_its_own_channel() -> None:
    o = offer()
    j = job(o)
    cj = _consumer(o, j)
    assert cj.receive(UsageFrame(report(o, j, 1, Usage()))) == Pay(100)
    with pytest.raises(ValueError, match="more than"):
        cj.pay(Voucher(o.economy, CHANNEL, 101).sign(CONSUMER))
    with pytest.raises(ValueError, match="channel"):
        cj.pay(Voucher(o.economy, bytes(32), 100).sign(CONSUMER))
    cj.pay(Voucher(o.economy, CHANNEL, 60).sign(CONSUMER))  # less: the rest is still owed
    assert (cj.paid, cj.owed) == (60, 100)
    with pytest.raises(ValueError, match="offer"):
        ConsumerJob(offer(seq=3), j, escrow=1, max_spend=1)


def test_requests_and_answers_are_told_apart() -> None:
    o = offer()
    j = job(o)
    answer = UsageFrame(report(o, j, 1, Usage()))
    refused(Reason.UNEXPECTED_FRAME, decode_request, answer.encode())
    refused(Reason.UNEXPECTED_FRAME, decode_answer, PollFrame(j.id).encode())
    assert decode_answer(answer.encode()) == answer
    assert decode_request(PollFrame(j.id).encode()) == PollFrame(j.id)


LOSSES = st.lists(
    st.tuples(st.integers(0, 2_000), st.sampled_from(["poll", "pay", "lost", "freeze"])),
    max_size=40,
)


@given(LOSSES, st.integers(0, 30_000), st.integers(0, 30_000))
def test_the_consumer_never_pays_past_the_newest_signed_price_whatever_is_lost(
    steps: list[tuple[int, str]], escrow: int, max_spend: int
) -> None:
    """Answers lost, repeated or skipped, frozen ticks: the consumer's vouchers
    never exceed base + the price of a report the provider signed, the
    escrow or max_spend, and never go down; the provider holds what it
    was paid."""
    o = offer(credit_window=1 << 40)
    j = job(o, base=7)
    pj = ProviderJob(o, j, PROVIDER)
    cj = ConsumerJob(o, j, escrow=escrow, max_spend=max_spend)
    signed_prices = {pj.report().report.price}
    cpu = wall = 0
    last_paid = cj.paid
    for dt, what in steps:
        wall += dt
        if what == "freeze":
            wall -= dt  # a frozen job's clock stops
        else:
            cpu += dt // 2
        pj.meter(Usage(cpu, wall))
        answer = pj.answer()
        signed_prices.add(pj.report().report.price)
        if what == "lost":
            continue
        decision = cj.receive(answer)
        if isinstance(decision, Stop):
            assert decision.reason in (Reason.OVER_ESCROW, Reason.OVER_MAX_SPEND)
            break
        if isinstance(decision, Pay) and what == "pay":
            v = Voucher(o.economy, CHANNEL, decision.amount).sign(CONSUMER)
            cj.pay(v)
            if pj.check_voucher(channel(amount=max(escrow, 1)), v):
                pj.hold(v)
        assert cj.paid - j.base in signed_prices | {0}
        assert cj.paid <= max(escrow, j.base)
        assert cj.paid - j.base <= max_spend
        assert cj.paid >= last_paid
        last_paid = cj.paid
        assert pj.held == cj.paid


def test_inline_and_hashed_inputs_size() -> None:
    assert InlineInput(b"abc").size == 3
    assert HashInput(bytes(32), 7).size == 7
