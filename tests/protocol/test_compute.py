"""The compute rules (``protocol/compute.py``): the provider's job check,
the consumer's pay-or-stop rule, the provider's continue/freeze/kill rule
(with the property that it never carries more than its credit window plus
one step unpaid), and the two session state machines, checked against an
independent statement of which frame sequences are valid.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol.channels import Voucher
from mycelia.protocol.compute import (
    Action,
    ConsumerSession,
    Pay,
    ProviderSession,
    Stop,
    check_job,
    consumer_decide,
    consumer_result,
    provider_decide,
)
from mycelia.protocol.compute_frames import (
    CancelFrame,
    ErrorFrame,
    Frame,
    HashInput,
    InlineInput,
    JobFrame,
    OfferFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
)
from mycelia.protocol.framing import frame
from mycelia.protocol.offers import Limits, Offer, Runtime
from mycelia.protocol.pricing import Prices, Usage, cost, price
from mycelia.protocol.reasons import Reason, Refused
from mycelia.testing.economies import T0, key
from tests.protocol.compute_world import (
    CONSUMER,
    ESCROW,
    LIMITS,
    MAX_SPEND,
    job,
    mid,
    offer,
    report,
    signed_offer,
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
    assert decide(report(o, j, 3, mid(6))) is Reason.USAGE_OUT_OF_ORDER  # skipped
    assert decide(report(o, j, 2, mid(6)), previous=None) is Reason.USAGE_OUT_OF_ORDER
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
    assert seqs == list(range(1, len(seqs) + 1))


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


# -- the sessions ------------------------------------------------------------------

OF = offer()
J = job(OF)
SAMPLE: dict[str, Frame] = {
    "OFFER": OfferFrame(signed_offer()),
    "JOB": JobFrame(J),
    "USAGE": UsageFrame(report(OF, J, 1, Usage())),
    "VOUCHER": VoucherFrame(Voucher(bytes(32), bytes(32), 1).sign(CONSUMER).encode()),
    "RESULT": ResultFrame(0, "completed", b"ok", report(OF, J, 2, mid(1), final=True)),
    "CANCEL": CancelFrame(),
    "ERROR": ErrorFrame.of(Reason.MALFORMED, "test"),
}
# An event is (direction, frame tag) seen from the side the session is for.
CONSUMER_SENDS = ("JOB", "VOUCHER", "CANCEL", "ERROR")
PROVIDER_SENDS = ("OFFER", "USAGE", "RESULT", "ERROR")
Event = tuple[str, str]


def _count(seq: list[Event], ev: Event) -> int:
    return sum(1 for e in seq if e == ev)


def _before(seq: list[Event], i: int, ev: Event) -> bool:
    return ev in seq[:i]


def consumer_valid(seq: list[Event]) -> bool:
    """Which event sequences a consumer may see, as constraints on the
    whole sequence (independent of the state machine's bookkeeping)."""
    for ev in [("send", "JOB"), ("recv", "OFFER"), ("recv", "RESULT"), ("send", "CANCEL")]:
        if _count(seq, ev) > 1:
            return False
    for i, (way, tag) in enumerate(seq):
        if tag == "ERROR" and i != len(seq) - 1:
            return False  # ERROR, either way, is the last event
        if way == "send" and tag not in CONSUMER_SENDS:
            return False
        if way == "recv" and tag not in PROVIDER_SENDS:
            return False
        received_before = [t for w, t in seq[:i] if w == "recv"]
        if (way, tag) == ("recv", "OFFER") and received_before:
            return False  # the provider's first frame, or never
        if way == "recv" and tag in ("USAGE", "RESULT"):
            if not _before(seq, i, ("recv", "OFFER")) or not _before(seq, i, ("send", "JOB")):
                return False
            if _before(seq, i, ("recv", "RESULT")):
                return False
        if way == "send" and tag in ("VOUCHER", "CANCEL") and not _before(seq, i, ("send", "JOB")):
            return False
        if (way, tag) == ("send", "CANCEL") and _before(seq, i, ("recv", "RESULT")):
            return False
        if (way, tag) == ("send", "VOUCHER") and _before(seq, i, ("recv", "RESULT")):
            after = seq[seq.index(("recv", "RESULT")) : i]
            if ("send", "VOUCHER") in after:
                return False  # one final voucher after the result
    return True


def provider_valid(seq: list[Event]) -> bool:
    for ev in [("send", "OFFER"), ("recv", "JOB"), ("send", "RESULT"), ("recv", "CANCEL")]:
        if _count(seq, ev) > 1:
            return False
    for i, (way, tag) in enumerate(seq):
        if tag == "ERROR" and i != len(seq) - 1:
            return False
        if way == "send" and tag not in PROVIDER_SENDS:
            return False
        if way == "recv" and tag not in CONSUMER_SENDS:
            return False
        if way == "send" and tag in ("USAGE", "RESULT"):
            if not _before(seq, i, ("send", "OFFER")) or not _before(seq, i, ("recv", "JOB")):
                return False
            if _before(seq, i, ("send", "RESULT")):
                return False
        if (way, tag) == ("send", "OFFER") and any(w == "send" for w, _ in seq[:i]):
            return False
        if way == "recv" and tag in ("VOUCHER", "CANCEL") and not _before(seq, i, ("recv", "JOB")):
            return False
    return True


TAGS = list(SAMPLE)
ALL_EVENTS = [(way, tag) for way in ("send", "recv") for tag in TAGS]


@st.composite
def event_sequences(draw: st.DrawFn, valid: Any) -> list[Event]:
    """Mostly valid sequences longer than the exhaustive test reaches (many
    USAGE and VOUCHER frames, crossings, the final voucher), with an
    arbitrary event at any point; ``valid`` only steers the drawing."""
    seq: list[Event] = []
    for _ in range(draw(st.integers(0, 24))):
        good = [ev for ev in ALL_EVENTS if valid([*seq, ev])]
        pool = good if good and draw(st.integers(0, 3)) else ALL_EVENTS
        seq.append(draw(st.sampled_from(pool)))
    return seq


FRAMED = {tag: frame(f.encode()) for tag, f in SAMPLE.items()}
SIDES = [(ConsumerSession, consumer_valid), (ProviderSession, provider_valid)]


def _apply(session: ConsumerSession | ProviderSession, ev: Event) -> None:
    way, tag = ev
    if way == "send":
        assert session.send(SAMPLE[tag]) == FRAMED[tag]
    else:
        session.receive_data(FRAMED[tag])
        assert session.next_frame() == SAMPLE[tag]


def _accepts(session: ConsumerSession | ProviderSession, ev: Event) -> bool:
    try:
        _apply(session, ev)
    except Refused as exc:
        assert exc.reason is Reason.UNEXPECTED_FRAME, exc
        return False
    return True


@pytest.mark.parametrize(("make", "valid"), SIDES, ids=["consumer", "provider"])
def test_sessions_accept_exactly_the_valid_sequences_up_to_seven_events(
    make: Any, valid: Any
) -> None:
    """Every valid sequence of up to 6 events, and every event after each:
    the machine accepts the event exactly when the sequence stays valid."""
    checked = 0
    stack: list[tuple[list[Event], Any]] = [([], make())]
    while stack:
        seq, session = stack.pop()
        for ev in ALL_EVENTS:
            child = copy.deepcopy(session)
            ok = valid([*seq, ev])
            assert _accepts(child, ev) is ok, [*seq, ev]
            checked += 1
            if ok and len(seq) < 6:
                stack.append(([*seq, ev], child))
    assert checked > 10_000  # the enumeration really ran


@pytest.mark.parametrize(("make", "valid"), SIDES, ids=["consumer", "provider"])
@given(data=st.data())
def test_sessions_accept_exactly_the_valid_sequences(
    make: Any, valid: Any, data: st.DataObject
) -> None:
    seq = data.draw(event_sequences(valid))
    session = make()
    for i, ev in enumerate(seq):
        ok = valid(seq[: i + 1])
        assert _accepts(session, ev) is ok, seq[: i + 1]
        if not ok:
            break


@pytest.mark.parametrize(("make", "valid"), SIDES, ids=["consumer", "provider"])
@given(data=st.data())
def test_a_refused_frame_breaks_the_session_but_one_error_may_be_sent(
    make: Any, valid: Any, data: st.DataObject
) -> None:
    seq = data.draw(event_sequences(valid))
    session = make()
    for ev in seq:
        try:
            _apply(session, ev)
        except Refused:
            break
    else:
        return
    if session.ended:  # an ERROR already ended it: nothing more either way
        refused(Reason.UNEXPECTED_FRAME, session.send, SAMPLE["ERROR"])
        return
    if ev[0] == "recv":
        # A refused incoming frame: every later one is refused the same way...
        session.receive_data(frame(SAMPLE[data.draw(st.sampled_from(TAGS))].encode()))
        with pytest.raises(Refused):
            session.next_frame()
        # ...and the node may answer with one ERROR, then nothing.
        assert session.send(SAMPLE["ERROR"])
        assert session.ended
        refused(Reason.UNEXPECTED_FRAME, session.send, SAMPLE["ERROR"])


def test_a_whole_job_through_bytes_in_odd_chunks() -> None:
    consumer, provider = ConsumerSession(), ProviderSession()
    wire_to_consumer = bytearray()
    wire_to_provider = bytearray()
    wire_to_consumer += provider.send(SAMPLE["OFFER"])
    wire_to_provider += consumer.send(SAMPLE["JOB"])  # sent before reading the OFFER

    def pump(data: bytearray, session: ConsumerSession | ProviderSession) -> list[Frame]:
        out = []
        while data:
            chunk, data[:] = bytes(data[:3]), data[3:]
            session.receive_data(chunk)
            while (f := session.next_frame()) is not None:
                out.append(f)
        return out

    assert pump(wire_to_provider, provider) == [SAMPLE["JOB"]]
    assert provider.job == J
    wire_to_consumer += provider.send(SAMPLE["USAGE"])
    assert pump(wire_to_consumer, consumer) == [SAMPLE["OFFER"], SAMPLE["USAGE"]]
    assert consumer.offer == SAMPLE["OFFER"].offer  # type: ignore[union-attr]
    wire_to_provider += consumer.send(SAMPLE["VOUCHER"])
    wire_to_provider += consumer.send(SAMPLE["CANCEL"])
    wire_to_consumer += provider.send(SAMPLE["RESULT"])  # crosses the CANCEL
    assert pump(wire_to_provider, provider) == [SAMPLE["VOUCHER"], SAMPLE["CANCEL"]]
    assert provider.cancelled
    assert pump(wire_to_consumer, consumer) == [SAMPLE["RESULT"]]
    assert not consumer.done
    wire_to_provider += consumer.send(SAMPLE["VOUCHER"])  # the final payment
    assert consumer.done
    assert pump(wire_to_provider, provider) == [SAMPLE["VOUCHER"]]
    refused(Reason.UNEXPECTED_FRAME, provider.send, SAMPLE["USAGE"])  # nothing after RESULT
    consumer.end_of_stream()
    provider.end_of_stream()


def test_bad_bytes_break_the_session_with_their_reason() -> None:
    s = ConsumerSession()
    s.receive_data(frame(b"\xc1"))  # a msgpack byte that is never valid
    refused(Reason.NON_CANONICAL, s.next_frame)
    refused(Reason.NON_CANONICAL, s.next_frame)  # broken for good
    refused(Reason.UNEXPECTED_FRAME, s.send, SAMPLE["JOB"])
    assert s.send(SAMPLE["ERROR"]).endswith(SAMPLE["ERROR"].encode())
    p = ProviderSession()
    p.receive_data(b"\xff\xff\xff\x7f")  # a frame of 256 MiB
    refused(Reason.TOO_LARGE, p.next_frame)
    cut = ProviderSession()
    cut.receive_data(frame(SAMPLE["JOB"].encode())[:-1])
    assert cut.next_frame() is None
    refused(Reason.MALFORMED, cut.end_of_stream)


@given(st.binary(max_size=200))
def test_sessions_never_crash_on_random_bytes(data: bytes) -> None:
    for session in (ConsumerSession(), ProviderSession()):
        session.receive_data(data)
        try:
            while session.next_frame() is not None:
                pass
        except Refused as exc:
            assert isinstance(exc.reason, Reason)


def test_inline_and_hashed_inputs_size() -> None:
    assert InlineInput(b"abc").size == 3
    assert HashInput(bytes(32), 7).size == 7
