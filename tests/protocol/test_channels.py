"""Compute payment channels (channels.py, channel_kinds.py, docs/compute.md):
the lifecycle in each economy kind, vouchers and releases, every refusal
with its reason and nothing changed, and the order-independence of apply.

:data:`CHANNEL_SCENARIOS` provokes each channel reason; ``test_reasons.py``
runs them with every other reason's scenario (a refusal changes nothing).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    Ledger,
    Reason,
    Refused,
    Release,
    SignedRelease,
    SignedVoucher,
    Transfer,
    Voucher,
    channel_state,
    codec,
    entry_accounts,
    transition,
)
from mycelia.protocol.channels import (
    DEFAULT_MAX_CHANNEL_MS,
    MAX_CHANNEL_MS_BOUND,
    MAX_SIGNED_VOUCHER_BYTES,
    REFUND_SKEW_MS,
    ChannelRecord,
    ReleaseTerms,
    Settlement,
    check_release,
    check_voucher,
    supersedes,
)
from mycelia.protocol.context import Context
from mycelia.protocol.domains import RELEASE, VOUCHER
from mycelia.protocol.economy import Economy, Genesis, IssuedPolicy, MutualCreditPolicy
from mycelia.protocol.entries import MAX_ENTRY_BYTES, Entry
from mycelia.protocol.ledger import MAX_SKEW_MS
from mycelia.protocol.locks import resources
from mycelia.protocol.reasons import NeedAdmission, NeedCertificate, is_final
from mycelia.protocol.schema import INT64_MAX
from mycelia.testing.economies import (
    World,
    device_key,
    genesis,
    impact_genesis,
    key,
    sign_genesis,
    validator_keys,
)

CONSUMER, PROVIDER, OTHER = key(1), key(2), key(3)
STEWARD, ISSUER = key(10, "steward"), key(11, "issuer")
HOUR = 3_600_000


def mutual(**kw: object) -> World:
    vk = validator_keys(4)
    return World(genesis(validators=vk, **kw), vk)  # type: ignore[arg-type]


def issued() -> World:
    vk = validator_keys(4)
    g = genesis(kind="issued", validators=vk, issuers=[(ISSUER, 100_000)], stewards=[STEWARD])
    return World(g, vk)


def opened(w: World | None = None, amount: int = 500) -> tuple[World, bytes]:
    """A world with CONSUMER's channel of ``amount`` to PROVIDER (an hour)."""
    w = w if w is not None else mutual()
    return w, w.open_channel(CONSUMER, PROVIDER, amount).entry_id


def check(w: World, signed: object, now_ms: int | None = None) -> Reason | None:
    return w.ledger.check(signed, now_ms=now_ms).reason  # type: ignore[arg-type]


def sums(w: World) -> int:
    """Balances plus what open channels hold (the economy's money)."""
    state = w.ledger.state
    total = sum(a.balance for a in state.accounts.values())  # type: ignore[attr-defined]
    for key_, raw in state.records.items():  # type: ignore[attr-defined]
        if key_.startswith(b"fact/channel/"):
            channel = key_[len(b"fact/channel/") :]
            found = channel_state(state, channel)
            assert found is not None
            total += found.escrow
            assert ChannelRecord.decode(raw).amount == found.amount
    return total


# -- the lifecycle ---------------------------------------------------------------------


def test_open_moves_the_amount_into_escrow() -> None:
    w, ch = opened()
    assert w.balance(CONSUMER) == -500
    assert w.balance(PROVIDER) == 0
    state = w.channel(ch)
    assert (state.consumer, state.provider) == (CONSUMER.public, PROVIDER.public)
    assert (state.amount, state.escrow, state.settled_by) == (500, 500, None)
    assert state.expiry_ms == w.ledger.state.certs[ch].entry.body.expiry_ms  # type: ignore[attr-defined]
    assert sums(w) == 0


def test_close_pays_the_voucher_and_returns_the_rest() -> None:
    w, ch = opened()
    cert = w.commit(PROVIDER, w.close_body(CONSUMER, ch, 180))
    assert w.balance(PROVIDER) == 180
    assert w.balance(CONSUMER) == -180
    state = w.channel(ch)
    assert state.escrow == 0
    assert state.settled_by == cert.entry_id
    assert state.settlement == Settlement(cert.entry_id, "channel.close", 180, 320)
    assert sums(w) == 0
    assert entry_accounts(cert.entry) == (PROVIDER.public, CONSUMER.public)


def test_close_for_the_whole_escrow_leaves_the_consumer_alone() -> None:
    w, ch = opened()
    cert = w.commit(PROVIDER, w.close_body(CONSUMER, ch, 500))
    assert (w.balance(PROVIDER), w.balance(CONSUMER)) == (500, -500)
    assert entry_accounts(cert.entry) == (PROVIDER.public,)
    changes = transition(w.economy, Ledger(w.economy).state, cert.entry, cert.entry_id)
    assert set(changes.accounts) == {PROVIDER.public}


def test_refund_after_expiry_returns_everything() -> None:
    w, ch = opened()
    state = w.channel(ch)
    body = w.refund_body(ch)
    early = w.entry(CONSUMER, body, ts_ms=state.refund_after_ms)
    assert check(w, early) is Reason.CHANNEL_NOT_EXPIRED
    w.clock = state.refund_after_ms  # the next entry is 1 ms past expiry + skew
    cert = w.commit(CONSUMER, body)
    assert w.balance(CONSUMER) == 0
    assert w.channel(ch).settlement == Settlement(cert.entry_id, "channel.refund", 0, 500)
    assert entry_accounts(cert.entry) == (CONSUMER.public,)


def test_refund_with_a_release_pays_final_at_any_time() -> None:
    w, ch = opened()
    release = w.release(PROVIDER, ch, 120)
    cert = w.commit(CONSUMER, w.refund_body(ch, release))
    assert (w.balance(PROVIDER), w.balance(CONSUMER)) == (120, -120)
    assert w.channel(ch).settlement == Settlement(cert.entry_id, "channel.refund", 120, 380)
    assert entry_accounts(cert.entry) == (CONSUMER.public, PROVIDER.public)
    assert sums(w) == 0


def test_a_release_of_zero_returns_everything_and_pays_the_provider_nothing() -> None:
    w, ch = opened()
    cert = w.commit(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 0)))
    assert (w.balance(PROVIDER), w.balance(CONSUMER)) == (0, 0)
    assert entry_accounts(cert.entry) == (CONSUMER.public,)
    assert PROVIDER.public not in w.ledger.state.accounts  # type: ignore[attr-defined]


def test_channels_work_in_an_issued_economy() -> None:
    w = issued()
    w.mint(ISSUER, CONSUMER, 1_000)
    ch = w.open_channel(CONSUMER, PROVIDER, 700).entry_id
    assert sums(w) == 1_000
    w.commit(PROVIDER, w.close_body(CONSUMER, ch, 250))
    accounts = w.ledger.state.accounts  # type: ignore[attr-defined]
    minted = sum(a.minted for a in accounts.values())
    assert sum(a.balance for a in accounts.values()) == minted == 1_000
    assert (w.balance(CONSUMER), w.balance(PROVIDER)) == (750, 250)


def test_channels_work_in_an_impact_economy() -> None:
    """Credits claimed from a meter pay for compute like any money."""
    w = World(impact_genesis(validators=validator_keys(4), units_per_credit=10), validator_keys(4))
    dev, host = device_key(1), key(5, "host")
    w.register(CONSUMER, dev, host)
    attestation = w.attest(host, w.readings(dev, [1, 2, 3], 100))
    w.claim(CONSUMER, dev, [attestation])
    assert w.balance(CONSUMER) == 30
    signed = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 31, w.clock + HOUR))
    assert check(w, signed) is Reason.INSUFFICIENT_BALANCE  # never below 0 here
    w.clock -= 1
    ch = w.open_channel(CONSUMER, PROVIDER, 30).entry_id
    w.commit(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 12)))
    assert (w.balance(CONSUMER), w.balance(PROVIDER)) == (18, 12)
    assert sums(w) == 30 == w.ledger.account(CONSUMER.public).minted


def test_issued_economy_debit_is_within_the_balance() -> None:
    w = issued()
    w.mint(ISSUER, CONSUMER, 300)
    signed = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 301, w.clock + HOUR))
    assert check(w, signed) is Reason.INSUFFICIENT_BALANCE
    ok = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 300, w.clock + HOUR))
    assert w.ledger.check(ok).ok


def test_the_offer_is_kept_with_the_channel() -> None:
    w = mutual()
    offer = bytes(range(32))
    ch = w.open_channel(CONSUMER, PROVIDER, 10, offer=offer).entry_id
    assert w.channel(ch).offer == offer
    plain = w.open_channel(CONSUMER, PROVIDER, 10).entry_id
    assert w.channel(plain).offer == b""


# -- the commutativity rule ----------------------------------------------------------------


def test_a_close_applied_before_its_open_gives_the_same_state() -> None:
    """A node may get the provider's close before the consumer's open: the
    close's effects read only its body, so the state converges."""
    w, ch = opened()
    close = w.commit(PROVIDER, w.close_body(CONSUMER, ch, 42))
    later = w.transfer(CONSUMER, OTHER, 7)
    certs = [c for c in w.ledger.state.certs.values()]  # type: ignore[attr-defined]
    expected = w.ledger.state.snapshot()
    lagging = Ledger(w.economy)
    assert lagging.apply(close) == [close.entry_id]
    assert lagging.account(PROVIDER.public).balance == 42
    for cert in certs:
        lagging.apply(cert, verified=True)
    assert lagging.state.snapshot() == expected
    assert later.entry_id in lagging.chain.values()


def test_a_validator_without_the_open_asks_for_it() -> None:
    w, ch = opened()
    signed = w.entry(PROVIDER, w.close_body(CONSUMER, ch, 5))
    stale = Ledger(w.economy)
    verdict = stale.check(signed)
    assert verdict.reason is Reason.MISSING
    assert verdict.needs == (NeedCertificate(ch),)
    stale.apply(w.ledger.state.certs[ch])  # type: ignore[attr-defined]
    assert stale.check(signed).ok


def test_close_and_refund_lock_the_same_resource() -> None:
    w, ch = opened()
    close = w.entry(PROVIDER, w.close_body(CONSUMER, ch, 5)).entry
    refund = w.entry(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 0))).entry
    assert resources(close)[1] == resources(refund)[1]
    assert resources(close)[0] != resources(refund)[0]  # different chain slots
    other = w.open_channel(CONSUMER, PROVIDER, 5).entry_id
    assert (
        resources(w.entry(PROVIDER, w.close_body(CONSUMER, other, 5)).entry)[1]
        != (resources(close)[1])
    )
    assert len(resources(w.ledger.state.certs[ch].entry)) == 1  # type: ignore[attr-defined]


def test_a_faulty_quorum_double_settlement_agrees_whatever_the_order() -> None:
    """Both a close and a refund certified (only possible past the fault
    bound): every order keeps the same settlement record and balances."""
    w, ch = opened()
    close = w.certify(w.entry(PROVIDER, w.close_body(CONSUMER, ch, 100)))
    refund = w.certify(w.entry(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 10))))
    open_cert = w.ledger.state.certs[ch]  # type: ignore[attr-defined]
    states = []
    # the consumer's open precedes its refund in every order (one chain)
    for order in (
        [open_cert, close, refund],
        [close, open_cert, refund],
        [open_cert, refund, close],
    ):
        ledger = Ledger(w.economy)
        for cert in order:
            assert ledger.apply(cert) == [cert.entry_id]
        found = channel_state(ledger.state, ch)
        assert found is not None
        assert found.settled_by == min(close.entry_id, refund.entry_id)
        states.append(ledger.state.snapshot())
    assert states[0] == states[1] == states[2]


def test_effects_never_read_the_clock() -> None:
    w, ch = opened()
    signed = w.entry(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 1)))
    ctx = Context(w.economy, w.ledger.state, signed.entry, signed.id)
    with pytest.raises(RuntimeError, match="outside check"):
        ctx.now()
    assert Context(w.economy, w.ledger.state, signed.entry, signed.id, now_ms=7).now() == 7


def test_the_clock_decides_expiry_and_a_check_without_one_uses_the_entry_ts() -> None:
    w, ch = opened()
    expiry = w.channel(ch).expiry_ms
    signed = w.entry(CONSUMER, w.refund_body(ch))
    assert check(w, signed) is Reason.CHANNEL_NOT_EXPIRED  # ts is before expiry
    assert check(w, signed, now_ms=expiry + REFUND_SKEW_MS) is Reason.CHANNEL_NOT_EXPIRED
    assert w.ledger.check(signed, now_ms=expiry + REFUND_SKEW_MS + 1).ok


def test_the_refund_margin_is_the_entry_timestamp_tolerance() -> None:
    assert REFUND_SKEW_MS == MAX_SKEW_MS  # docs/compute.md, "Clocks"


def test_the_largest_channel_entries_fit_an_entry() -> None:
    w = mutual()
    top = b"\xff" * 32
    for body in (
        ChannelOpen(PROVIDER.public, INT64_MAX, INT64_MAX, top),
        ChannelClose(top, INT64_MAX, bytes(64), CONSUMER.public, INT64_MAX),
        ChannelRefund(top, ReleaseTerms(INT64_MAX, bytes(64)), PROVIDER.public, INT64_MAX),
    ):
        signed = w.entry(CONSUMER, body, seq=(1 << 63) - 1, prev=top, ts_ms=INT64_MAX)
        assert len(signed.entry.encode()) <= MAX_ENTRY_BYTES
        assert Entry.decode(signed.entry.encode()) == signed.entry


def test_the_close_has_no_clock_and_works_after_expiry() -> None:
    w, ch = opened()
    signed = w.entry(PROVIDER, w.close_body(CONSUMER, ch, 9))
    assert w.ledger.check(signed, now_ms=signed.entry.ts_ms + 10 * 366 * 86_400_000).ok


# -- vouchers and releases -----------------------------------------------------------------


def test_voucher_bytes_id_and_signature() -> None:
    w, ch = opened()
    v = Voucher(w.id, ch, 77)
    assert codec.decode(v.encode()) == ["voucher", 1, w.id, ch, 77]
    assert v.id == VOUCHER.id(v.encode())
    signed = v.sign(CONSUMER)
    signed.verify(CONSUMER.public)
    assert SignedVoucher.decode(signed.encode()) == signed
    assert Voucher.decode(v.encode()) == v
    with pytest.raises(Refused) as info:
        signed.verify(PROVIDER.public)
    assert info.value.reason is Reason.VOUCHER_BAD_SIG
    r = Release(w.id, ch, 0)
    assert r.id == RELEASE.id(r.encode())
    assert r.id != Voucher(w.id, ch, 1).id
    srel = r.sign(PROVIDER)
    assert SignedRelease.decode(srel.encode()) == srel
    # the domains keep a signature for one from passing as the other
    forged = SignedVoucher(Voucher(w.id, ch, 1), Release(w.id, ch, 1).sign(CONSUMER).signature)
    with pytest.raises(Refused) as info:
        forged.verify(CONSUMER.public)
    assert info.value.reason is Reason.VOUCHER_BAD_SIG


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (["voucher", 2, bytes(32), bytes(32), 1], Reason.MALFORMED),
        (["release", 1, bytes(32), bytes(32), 1], Reason.MALFORMED),
        (["voucher", 1, bytes(31), bytes(32), 1], Reason.MALFORMED),
        (["voucher", 1, bytes(32), bytes(32), 0], Reason.AMOUNT_OUT_OF_RANGE),
        (["voucher", 1, bytes(32), bytes(32), "1"], Reason.MALFORMED),
        (["voucher", 1, bytes(32), bytes(32)], Reason.MALFORMED),
    ],
)
def test_voucher_decoding_is_strict(wire: list[object], reason: Reason) -> None:
    with pytest.raises(Refused) as info:
        Voucher.decode(codec.encode(wire))
    assert info.value.reason is reason


def test_decoders_are_bounded() -> None:
    w, ch = opened()
    data = Voucher(w.id, ch, INT64_MAX).sign(CONSUMER).encode()
    assert len(data) <= MAX_SIGNED_VOUCHER_BYTES
    with pytest.raises(Refused) as info:
        SignedVoucher.decode(data + b"\x00" * MAX_SIGNED_VOUCHER_BYTES)
    assert info.value.reason is Reason.TOO_LARGE
    with pytest.raises(Refused) as info:
        Voucher.decode(b"\x95" + data[1:])  # not canonical
    assert info.value.reason in (Reason.NON_CANONICAL, Reason.TOO_LARGE)
    with pytest.raises(Refused) as info:
        Release.decode(codec.encode(["release", 1, w.id, ch, -1]))
    assert info.value.reason is Reason.AMOUNT_OUT_OF_RANGE


@given(amounts=st.lists(st.integers(1, INT64_MAX), min_size=1, max_size=20))
def test_the_provider_keeps_the_largest_voucher_whatever_the_order(amounts: list[int]) -> None:
    econ, ch = bytes([7]) * 32, bytes([8]) * 32
    held: Voucher | None = None
    replaced = 0
    for n in amounts:
        new = Voucher(econ, ch, n)
        if supersedes(new, held):
            held = new
            replaced += 1
    assert held is not None
    assert held.cumulative == max(amounts)
    assert replaced == len({n for i, n in enumerate(amounts) if n > max(amounts[:i], default=0)})
    assert not supersedes(held, held)


def test_supersedes_compares_one_channel_only() -> None:
    a = Voucher(bytes(32), bytes([1]) * 32, 5)
    with pytest.raises(Refused) as info:
        supersedes(Voucher(bytes(32), bytes([2]) * 32, 9), a)
    assert info.value.reason is Reason.WRONG_CHANNEL
    with pytest.raises(Refused) as info:
        supersedes(Voucher(bytes([3]) * 32, a.channel, 9), a)
    assert info.value.reason is Reason.WRONG_ECONOMY


def test_provider_and_consumer_checks_off_the_ledger() -> None:
    w, ch = opened()
    state = w.channel(ch)
    check_voucher(w.id, state, w.voucher(CONSUMER, ch, 500))
    check_release(w.id, state, w.release(PROVIDER, ch, 500))
    cases: list[tuple[Callable[[], None], Reason]] = [
        (
            lambda: check_voucher(w.id, state, w.voucher(CONSUMER, ch, 501)),
            Reason.VOUCHER_OVER_ESCROW,
        ),
        (lambda: check_voucher(w.id, state, w.voucher(OTHER, ch, 5)), Reason.VOUCHER_BAD_SIG),
        (
            lambda: check_voucher(bytes(32), state, w.voucher(CONSUMER, ch, 5)),
            Reason.WRONG_ECONOMY,
        ),
        (lambda: check_release(w.id, state, w.release(CONSUMER, ch, 5)), Reason.RELEASE_BAD_SIG),
        (
            lambda: check_release(w.id, state, w.release(PROVIDER, ch, 501)),
            Reason.RELEASE_OVER_ESCROW,
        ),
    ]
    for action, reason in cases:
        with pytest.raises(Refused) as info:
            action()
        assert info.value.reason is reason
    w.commit(PROVIDER, w.close_body(CONSUMER, ch, 3))
    with pytest.raises(Refused) as info:
        check_voucher(w.id, w.channel(ch), w.voucher(CONSUMER, ch, 4))
    assert info.value.reason is Reason.CHANNEL_SETTLED


# -- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "wire"),
    [
        ("open", [bytes(32), 5, 10, b"\x01" * 5]),  # an offer id of 5 bytes
        ("open", [bytes(32), 5, -1, b""]),
        ("open", [bytes(32), 5, 10]),
        ("close", [bytes(32), 5, bytes(63), bytes(32), 5]),
        ("close", [bytes(32), 5, bytes(64), bytes(32)]),
        ("refund", [bytes(32), [5], bytes(32), 5]),  # a release without its signature
        ("refund", [bytes(32), [5, bytes(64), 1], bytes(32), 5]),
        ("refund", [bytes(32), b"", bytes(32), 5]),
    ],
)
def test_malformed_bodies_are_refused(kind: str, wire: list[object]) -> None:
    cls = {"open": ChannelOpen, "close": ChannelClose, "refund": ChannelRefund}[kind]
    with pytest.raises(Refused) as info:
        cls.from_wire(wire)  # type: ignore[attr-defined]
    assert info.value.reason is Reason.MALFORMED_BODY


def test_bodies_round_trip_through_the_wire() -> None:
    w, ch = opened()
    bodies = [
        ChannelOpen(PROVIDER.public, 5, 10, bytes(32)),
        w.close_body(CONSUMER, ch, 5),
        w.refund_body(ch),
        w.refund_body(ch, w.release(PROVIDER, ch, 2)),
    ]
    for body in bodies:
        again = type(body).from_wire(codec.decode(codec.encode(body.to_wire())))
        assert again == body
    assert w.refund_body(ch).to_wire()[1] == []
    assert ReleaseTerms(2, w.release(PROVIDER, ch, 2).signature) == bodies[3].release


def test_builders_refuse_another_channels_voucher_or_release() -> None:
    w, ch = opened()
    other = w.open_channel(CONSUMER, PROVIDER, 9).entry_id
    with pytest.raises(Refused) as info:
        ChannelClose.of(w.channel(ch), w.voucher(CONSUMER, other, 1))
    assert info.value.reason is Reason.WRONG_CHANNEL
    with pytest.raises(Refused) as info:
        ChannelRefund.of(w.channel(ch), w.release(PROVIDER, other, 1))
    assert info.value.reason is Reason.WRONG_CHANNEL


# -- the policy field -------------------------------------------------------------------------


def test_max_channel_ms_defaults_and_is_kept_per_kind() -> None:
    vk = validator_keys(4)
    assert World(genesis(validators=vk), vk).economy.max_channel_ms == DEFAULT_MAX_CHANNEL_MS
    base = genesis(validators=vk)
    assert isinstance(base.policy, MutualCreditPolicy)
    assert len(base.policy.to_wire()) == 3  # old geneses keep their bytes
    for g in (
        base,
        genesis(kind="issued", validators=vk, issuers=[(ISSUER, 5)]),
        impact_genesis(validators=vk),
    ):
        custom = dataclasses.replace(g, policy=dataclasses.replace(g.policy, max_channel_ms=60_000))
        econ = Economy.from_signed(sign_genesis(custom, vk))
        assert econ.max_channel_ms == 60_000
        assert Genesis.decode(custom.encode()) == custom
        assert custom.id != g.id
        assert len(custom.policy.to_wire()) == len(g.policy.to_wire()) + 1


@pytest.mark.parametrize("value", [0, -1, MAX_CHANNEL_MS_BOUND + 1, "60000"])
def test_max_channel_ms_out_of_bounds_is_malformed(value: object) -> None:
    vk = validator_keys(4)
    with pytest.raises(Refused) as info:
        MutualCreditPolicy("open", (), 5, value)  # type: ignore[arg-type]
    assert info.value.reason is Reason.MALFORMED
    g = genesis(kind="issued", validators=vk, issuers=[(ISSUER, 5)])
    assert isinstance(g.policy, IssuedPolicy)
    wire = g.to_wire()
    wire[6] = [*wire[6], value]
    with pytest.raises(Refused) as info:
        Genesis.decode(codec.encode(wire))
    assert info.value.reason is Reason.MALFORMED
    wire[6] = [*wire[6], 5]  # two trailing fields
    with pytest.raises(Refused) as info:
        Genesis.decode(codec.encode(wire))
    assert info.value.reason is Reason.MALFORMED


def test_expiry_is_bound_by_the_economy_policy() -> None:
    vk = validator_keys(4)
    g = genesis(validators=vk)
    w = World(dataclasses.replace(g, policy=dataclasses.replace(g.policy, max_channel_ms=HOUR)), vk)
    now = w.clock + 1
    at_most = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, now + HOUR))
    assert w.ledger.check(at_most, now_ms=now).ok
    w.clock -= 1
    beyond = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, now + HOUR + 1))
    assert check(w, beyond, now_ms=now) is Reason.EXPIRY_TOO_FAR
    assert w.ledger.check(beyond, now_ms=now + 1).ok  # a later clock accepts it


def test_the_provider_must_be_a_member_in_an_approved_economy() -> None:
    w = mutual(membership="approved", stewards=[STEWARD])
    w.admit(STEWARD, CONSUMER)
    signed = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, w.clock + HOUR))
    verdict = w.ledger.check(signed)
    assert verdict.reason is Reason.NOT_MEMBER
    assert verdict.needs == (NeedAdmission(PROVIDER.public),)
    w.clock -= 1
    w.admit(STEWARD, PROVIDER)
    again = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, w.clock + HOUR))
    assert w.ledger.check(again).ok


def test_clock_refusals_are_not_final_and_the_rest_are() -> None:
    assert not is_final(Reason.CHANNEL_NOT_EXPIRED)
    assert not is_final(Reason.EXPIRY_TOO_FAR)
    for reason in (
        Reason.EXPIRY_PAST,
        Reason.CHANNEL_SETTLED,
        Reason.VOUCHER_BAD_SIG,
        Reason.NOT_PROVIDER,
        Reason.CHANNEL_UNKNOWN,
    ):
        assert is_final(reason)


# -- every channel refusal: scenarios (run by test_reasons.py) ---------------------------------

Scenario = tuple[World | None, Callable[[], object]]


def s_channel_unknown() -> Scenario:
    w = mutual()
    w.transfer(CONSUMER, OTHER, 1)
    body = ChannelRefund(bytes([9]) * 32, None, PROVIDER.public, 5)
    signed = w.entry(CONSUMER, body)
    return w, lambda: w.ledger.check(signed)


def s_not_provider() -> Scenario:
    w, ch = opened()
    signed = w.entry(OTHER, w.close_body(CONSUMER, ch, 5))
    return w, lambda: w.ledger.check(signed)


def s_not_consumer() -> Scenario:
    w, ch = opened()
    signed = w.entry(OTHER, w.refund_body(ch, w.release(PROVIDER, ch, 1)))
    return w, lambda: w.ledger.check(signed)


def s_channel_mismatch() -> Scenario:
    w, ch = opened()
    body = dataclasses.replace(w.close_body(CONSUMER, ch, 5), escrow=499)
    signed = w.entry(PROVIDER, body)
    return w, lambda: w.ledger.check(signed)


def s_voucher_bad_sig() -> Scenario:
    w, ch = opened()
    signed = w.entry(PROVIDER, w.close_body(PROVIDER, ch, 5))  # signed by the provider
    return w, lambda: w.ledger.check(signed)


def s_voucher_over_escrow() -> Scenario:
    w, ch = opened()
    signed = w.entry(PROVIDER, w.close_body(CONSUMER, ch, 501))
    return w, lambda: w.ledger.check(signed)


def s_release_bad_sig() -> Scenario:
    w, ch = opened()
    signed = w.entry(CONSUMER, w.refund_body(ch, w.release(CONSUMER, ch, 0)))
    return w, lambda: w.ledger.check(signed)


def s_release_over_escrow() -> Scenario:
    w, ch = opened()
    signed = w.entry(CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 501)))
    return w, lambda: w.ledger.check(signed)


def s_channel_not_expired() -> Scenario:
    w, ch = opened()
    signed = w.entry(CONSUMER, w.refund_body(ch))
    return w, lambda: w.ledger.check(signed, now_ms=w.channel(ch).refund_after_ms)


def s_channel_settled() -> Scenario:
    w, ch = opened()
    w.commit(PROVIDER, w.close_body(CONSUMER, ch, 5))
    signed = w.entry(CONSUMER, w.refund_body(ch), ts_ms=w.channel(ch).refund_after_ms + 1)
    return w, lambda: w.ledger.check(signed)


def s_expiry_too_far() -> Scenario:
    w = mutual()
    now = w.clock + 1
    signed = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, now + DEFAULT_MAX_CHANNEL_MS + 1))
    return w, lambda: w.ledger.check(signed, now_ms=now)


def s_expiry_past() -> Scenario:
    w = mutual()
    signed = w.entry(CONSUMER, ChannelOpen(PROVIDER.public, 5, w.clock + 1))
    return w, lambda: w.ledger.check(signed)  # the clock is the entry's ts: not before it


def s_wrong_channel() -> Scenario:
    w, ch = opened()
    other = w.open_channel(CONSUMER, PROVIDER, 9).entry_id
    return w, lambda: check_voucher(w.id, w.channel(ch), w.voucher(CONSUMER, other, 1))


CHANNEL_SCENARIOS: dict[Reason, Callable[[], Scenario]] = {
    Reason.CHANNEL_UNKNOWN: s_channel_unknown,
    Reason.NOT_PROVIDER: s_not_provider,
    Reason.NOT_CONSUMER: s_not_consumer,
    Reason.CHANNEL_MISMATCH: s_channel_mismatch,
    Reason.VOUCHER_BAD_SIG: s_voucher_bad_sig,
    Reason.VOUCHER_OVER_ESCROW: s_voucher_over_escrow,
    Reason.RELEASE_BAD_SIG: s_release_bad_sig,
    Reason.RELEASE_OVER_ESCROW: s_release_over_escrow,
    Reason.CHANNEL_NOT_EXPIRED: s_channel_not_expired,
    Reason.CHANNEL_SETTLED: s_channel_settled,
    Reason.EXPIRY_TOO_FAR: s_expiry_too_far,
    Reason.EXPIRY_PAST: s_expiry_past,
    Reason.WRONG_CHANNEL: s_wrong_channel,
}


def test_more_ways_each_channel_entry_is_refused() -> None:
    """Refusals on other paths than the scenarios above, each changing nothing."""
    w, ch = opened()
    before = w.ledger.state.snapshot()
    mismatched_consumer = dataclasses.replace(w.close_body(CONSUMER, ch, 5), consumer=OTHER.public)
    mismatched_provider = dataclasses.replace(w.refund_body(ch), provider=OTHER.public)
    cases: list[tuple[object, object, Reason]] = [
        (CONSUMER, ChannelOpen(CONSUMER.public, 5, w.clock + HOUR), Reason.MALFORMED_BODY),
        (CONSUMER, ChannelOpen(bytes([1]) + bytes(31), 5, w.clock + HOUR), Reason.BAD_KEY),
        (
            CONSUMER,
            ChannelOpen(PROVIDER.public, 1_000_001, w.clock + HOUR),
            Reason.INSUFFICIENT_BALANCE,
        ),
        (PROVIDER, mismatched_consumer, Reason.CHANNEL_MISMATCH),
        (CONSUMER, mismatched_provider, Reason.CHANNEL_MISMATCH),
        (CONSUMER, dataclasses.replace(w.refund_body(ch), escrow=1), Reason.CHANNEL_MISMATCH),
    ]
    for author, body, reason in cases:
        signed = w.entry(author, body)  # type: ignore[arg-type]
        assert check(w, signed) is reason, (body, reason)
        w.clock -= 1
    w.commit(PROVIDER, w.close_body(CONSUMER, ch, 5))
    after_close = w.ledger.state.snapshot()
    for author, body in [
        (PROVIDER, w.close_body(CONSUMER, ch, 6)),  # a newer voucher, too late
        (CONSUMER, w.refund_body(ch, w.release(PROVIDER, ch, 0))),
    ]:
        assert check(w, w.entry(author, body)) is Reason.CHANNEL_SETTLED  # type: ignore[arg-type]
    assert w.ledger.state.snapshot() == after_close
    assert before != after_close


def test_a_stale_transfer_does_not_see_the_escrow() -> None:
    """The escrow left the consumer's balance: its limit binds what remains."""
    w = mutual(default_limit=1_000)
    w.open_channel(CONSUMER, PROVIDER, 800)
    assert check(w, w.entry(CONSUMER, Transfer(OTHER.public, 201))) is Reason.INSUFFICIENT_BALANCE
    w.clock -= 1
    assert w.ledger.check(w.entry(CONSUMER, Transfer(OTHER.public, 200))).ok
