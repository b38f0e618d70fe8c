"""The sensor entry kinds in the ledger (``protocol/impact.py``): register a
device, attest its readings, claim credits — and every refusal, each with
its reason code and an unchanged ledger.
"""

from __future__ import annotations

import dataclasses

import pytest

from mycelia.protocol import (
    AttestationRecord,
    ClaimCursor,
    DeviceRegister,
    ImpactClaim,
    Ledger,
    Metric,
    Mint,
    Reason,
    Refused,
    SensorAttest,
    SignedEntry,
    SigningKey,
    Transfer,
    Verdict,
    credits_for,
)
from mycelia.protocol import Burn as BurnBody
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.reasons import NeedAdmission, NeedCertificate
from mycelia.protocol.schema import INT64_MAX
from mycelia.protocol.sensors import P256_N, Aggregate, AttestedDevice
from mycelia.protocol.state import own_key
from mycelia.testing.economies import (
    ENERGY,
    TEMPERATURE,
    World,
    device_key,
    genesis,
    impact_genesis,
    key,
    validator_keys,
)

OWNER, STRANGER = key(1), key(2)
HOST, OTHER_HOST = key(5, "host"), key(6, "host")
STEWARD = key(10, "steward")
KEY_TYPES = ["ed25519", "p256"]


def world(**kw: object) -> World:
    return World(impact_genesis(**kw), validator_keys(4))  # type: ignore[arg-type]


def state_of(w: World) -> tuple[object, ...]:
    return w.ledger.state.snapshot(), dict(w.ledger.chain), w.ledger.pending_count


def refuses(w: World, author: SigningKey, body: object, reason: Reason) -> Verdict:
    """``author``'s next entry with ``body`` is refused with ``reason``, and
    checking it changed nothing."""
    before = state_of(w)
    verdict = w.ledger.check(w.entry(author, body))
    assert verdict.reason is reason, verdict
    assert state_of(w) == before
    return verdict


def total_supply(w: World) -> tuple[int, int, int]:
    accounts = w.ledger.state.accounts  # type: ignore[attr-defined]
    return (
        sum(a.balance for a in accounts.values()),
        sum(a.minted for a in accounts.values()),
        sum(a.burned for a in accounts.values()),
    )


def cursor(w: World, owner: SigningKey, device: bytes) -> ClaimCursor | None:
    raw = w.ledger.state.get_record(ClaimCursor.key(owner.public, device))  # type: ignore[attr-defined]
    assert ClaimCursor.key(owner.public, device) == own_key(owner.public, "claimed", device)
    return None if raw is None else ClaimCursor.decode(raw)


def attestation(w: World, cert_id: bytes) -> AttestationRecord:
    raw = w.ledger.state.get_record(AttestationRecord.key(cert_id))  # type: ignore[attr-defined]
    assert raw is not None
    return AttestationRecord.decode(raw)


# -- the story ----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_register_attest_claim_mints_and_carries(key_type: str) -> None:
    w = world()  # 1000 Wh make one credit
    dev = device_key(1, key_type)
    reg = w.register(OWNER, dev, HOST)
    record = w.device_record(dev)
    assert record is not None
    assert (record.registration, record.owner, record.host) == (
        reg.entry_id,
        OWNER.public,
        HOST.public,
    )
    assert record.body.key_type == key_type
    a1 = w.attest(HOST, w.readings(dev, range(1, 11), 150))  # 1500 Wh
    a2 = w.attest(HOST, w.readings(dev, range(11, 15), 700))  # 2800 Wh
    assert attestation(w, a1.entry_id).previous == (-1,)
    assert attestation(w, a2.entry_id).previous == (10,)
    assert attestation(w, a2.entry_id).host == HOST.public

    w.claim(OWNER, dev, [a1])
    assert w.balance(OWNER) == 1  # floor(1500 / 1000)
    assert cursor(w, OWNER, dev.device) == ClaimCursor(10, 500)
    w.claim(OWNER, dev, [a2])
    assert w.balance(OWNER) == 4  # floor((500 + 2800) / 1000)
    assert cursor(w, OWNER, dev.device) == ClaimCursor(14, 300)
    assert w.ledger.account(OWNER.public).minted == 4

    # Impact credits move and retire as issued money does: never below zero.
    w.transfer(OWNER, STRANGER, 3)
    w.burn(STRANGER, 1)
    assert (w.balance(OWNER), w.balance(STRANGER)) == (1, 2)
    refuses(w, OWNER, Transfer(STRANGER.public, 2), Reason.INSUFFICIENT_BALANCE)
    refuses(w, STRANGER, BurnBody(3), Reason.INSUFFICIENT_BALANCE)
    assert total_supply(w) == (3, 4, 1)  # balances = minted - burned


def test_one_claim_may_span_attestations_across_lost_counters() -> None:
    w = world()
    dev = device_key(1)
    w.register(OWNER, dev, HOST)
    a1 = w.attest(HOST, w.readings(dev, range(1, 6), 400))
    a2 = w.attest(HOST, w.readings(dev, [9, 10, 12], 600))  # 6-8 and 11 never arrived
    w.claim(OWNER, dev, [a1, a2])
    assert w.balance(OWNER) == 3  # 2000 + 1800 = 3800 Wh
    assert cursor(w, OWNER, dev.device) == ClaimCursor(12, 800)


def test_a_negative_total_is_carried_as_a_debt() -> None:
    w = world()
    dev = device_key(1)
    net = Metric("energy_wh", "Wh", 0, -10_000, 10_000)  # a meter that can run backwards
    w.register(OWNER, dev, HOST, metrics=(net,))
    a1 = w.attest(HOST, w.readings(dev, [1, 2], -250))
    w.claim(OWNER, dev, [a1])
    assert w.balance(OWNER) == 0
    assert cursor(w, OWNER, dev.device) == ClaimCursor(2, -500)
    a2 = w.attest(HOST, w.readings(dev, [3, 4], 850))
    w.claim(OWNER, dev, [a2])
    assert w.balance(OWNER) == 1
    assert cursor(w, OWNER, dev.device) == ClaimCursor(4, 200)


@pytest.mark.parametrize(
    ("carry", "total", "rate", "expected"),
    [(0, 1500, 1000, (1, 500)), (500, 2800, 1000, (3, 300)), (0, 999, 1000, (0, 999)),
     (-500, 200, 1000, (0, -300)), (0, 0, 1, (0, 0)), (7, 3, 5, (2, 0))],
)  # fmt: skip
def test_credits_for(carry: int, total: int, rate: int, expected: tuple[int, int]) -> None:
    minted, new_carry = credits_for(carry, total, rate)
    assert (minted, new_carry) == expected
    assert minted * rate + new_carry == carry + total


def test_metrics_other_than_the_economy_metric_mint_nothing() -> None:
    w = world()
    dev = device_key(1)
    w.register(OWNER, dev, HOST, metrics=(ENERGY, TEMPERATURE))
    att = w.attest(
        HOST,
        [
            *w.readings(dev, [1], 2_000),
            *w.readings(dev, [2, 3], 215, metric="temp_c", exponent=-1),
        ],
    )
    w.claim(OWNER, dev, [att])
    assert w.balance(OWNER) == 2


# -- refusals: device.register ------------------------------------------------------------


def test_a_second_registration_of_the_same_key_loses_the_lock() -> None:
    w = world()
    dev = device_key(1, "p256")
    first = w.entry(OWNER, w.registration_body(OWNER, dev, HOST))
    second = w.entry(STRANGER, w.registration_body(STRANGER, dev, OTHER_HOST))
    assert w.ledger.check(first).ok
    assert w.ledger.check(second).ok
    locks = {r: first.id for r in lock_decision({}, first.id, resources(first.entry))}
    before = dict(locks)
    with pytest.raises(Refused) as info:
        lock_decision(locks, second.id, resources(second.entry))
    assert getattr(info.value, "reason", None) is Reason.RESOURCE_LOCKED
    assert locks == before
    # Once the first is applied, a validator that never locked refuses too.
    w.ledger.apply(w.certify(first))
    refuses(
        w,
        STRANGER,
        w.registration_body(STRANGER, dev, OTHER_HOST),
        Reason.ALREADY_REGISTERED,
    )
    refuses(w, OWNER, w.registration_body(OWNER, dev, OTHER_HOST), Reason.ALREADY_REGISTERED)


def test_two_certified_registrations_merge_the_same_way_in_any_order() -> None:
    """Only a faulty quorum certifies both; every node still agrees."""
    w = world()
    dev = device_key(1)
    one = w.certify(w.entry(OWNER, w.registration_body(OWNER, dev, HOST)))
    two = w.certify(w.entry(STRANGER, w.registration_body(STRANGER, dev, OTHER_HOST)))
    states = []
    for order in ((one, two), (two, one)):
        ledger = Ledger(w.economy)
        for c in order:
            ledger.apply(c)
        states.append(ledger.state.snapshot())
    assert states[0] == states[1]


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_a_bad_proof_of_possession_is_refused(key_type: str) -> None:
    w = world()
    dev, other = device_key(1, key_type), device_key(2, key_type)
    good = w.registration_body(OWNER, dev, HOST)
    by_other = dataclasses.replace(good, pop=w.registration_body(OWNER, other, HOST).pop)
    refuses(w, OWNER, by_other, Reason.BAD_SIGNATURE)
    # a pop the device gave another owner (or another economy) does not transfer
    for_stranger = w.registration_body(STRANGER, dev, HOST)
    refuses(w, OWNER, dataclasses.replace(good, pop=for_stranger.pop), Reason.BAD_SIGNATURE)
    other_econ = world(nonce=b"elsewhere")
    foreign = other_econ.registration_body(OWNER, dev, HOST)
    refuses(w, OWNER, dataclasses.replace(good, pop=foreign.pop), Reason.BAD_SIGNATURE)
    # a pop over other metrics
    more = w.registration_body(OWNER, dev, HOST, metrics=(ENERGY, TEMPERATURE))
    refuses(w, OWNER, dataclasses.replace(good, pop=more.pop), Reason.BAD_SIGNATURE)
    refuses(w, OWNER, dataclasses.replace(good, pop=bytes(64)), Reason.BAD_SIGNATURE)
    if key_type == "p256":
        s = int.from_bytes(good.pop[32:], "big")
        twin = good.pop[:32] + (P256_N - s).to_bytes(32, "big")
        refuses(w, OWNER, dataclasses.replace(good, pop=twin), Reason.HIGH_S)
    assert w.ledger.check(w.entry(OWNER, good)).ok


def test_registration_rules() -> None:
    w = world(device_kinds=("solar-meter",))
    dev = device_key(1)
    refuses(
        w, OWNER, w.registration_body(OWNER, dev, HOST, device_kind="kettle"), Reason.NOT_ALLOWED
    )
    milli = Metric("energy_wh", "mWh", -3, 0, 10**9)
    refuses(w, OWNER, w.registration_body(OWNER, dev, HOST, metrics=(milli,)), Reason.NOT_ALLOWED)
    small_order = bytes([1]) + bytes(31)  # a host key that is no valid point
    bad_host = DeviceRegister.make(dev, w.id, OWNER.public, "solar-meter", small_order, (ENERGY,))
    refuses(w, OWNER, bad_host, Reason.BAD_KEY)
    off_curve = b"\x02" + (1).to_bytes(32, "big")  # x = 1 is not on P-256
    good = w.registration_body(OWNER, device_key(1, "p256"), HOST)
    refuses(w, OWNER, dataclasses.replace(good, public_key=off_curve), Reason.BAD_KEY)
    # Approved membership: the owner must be a member (curable).
    a = world(membership="approved", stewards=[STEWARD])
    v = refuses(a, OWNER, a.registration_body(OWNER, dev, HOST), Reason.NOT_MEMBER)
    assert v.needs == (NeedAdmission(OWNER.public),)
    # Outside impact economies none of the sensor kinds is allowed.
    m = World(genesis(), validator_keys(4))
    refuses(m, OWNER, m.registration_body(OWNER, dev, HOST), Reason.NOT_ALLOWED)
    i = World(genesis(kind="issued", issuers=[(STEWARD, 10)]), validator_keys(4))
    refuses(i, OWNER, ImpactClaim(dev.device, 1, 2, (bytes(32),), 0), Reason.NOT_ALLOWED)
    row = AttestedDevice(dev.device, bytes(32), 1, 1, 1, (Aggregate("energy_wh", 1, 1, 1),))
    refuses(i, HOST, SensorAttest(bytes(32), 1, (row,)), Reason.NOT_ALLOWED)
    refuses(i, OWNER, i.registration_body(OWNER, dev, HOST), Reason.NOT_ALLOWED)
    refuses(w, STEWARD, Mint(OWNER.public, 5), Reason.NOT_ALLOWED)  # impact money is claimed


# -- refusals: sensor.attest -----------------------------------------------------------


@pytest.fixture
def registered() -> tuple[World, object]:
    w = world()
    dev = device_key(1, "p256")
    w.register(OWNER, dev, HOST)
    return w, dev


def test_an_attestation_by_another_host_is_refused(registered: tuple[World, object]) -> None:
    w, dev = registered
    body, _, _ = w.attest_body(w.readings(dev, [1, 2]))
    refuses(w, OTHER_HOST, body, Reason.NOT_HOST)
    refuses(w, OWNER, body, Reason.NOT_HOST)  # not even the owner
    assert w.ledger.check(w.entry(HOST, body)).ok


def test_overlapping_attestation_ranges_are_refused(registered: tuple[World, object]) -> None:
    w, dev = registered
    w.attest(HOST, w.readings(dev, range(1, 11)))
    for counters in ([10, 11], [5], [1, 20]):
        body, _, _ = w.attest_body(w.readings(dev, counters))
        refuses(w, HOST, body, Reason.OVERLAP)
    body, _, _ = w.attest_body(w.readings(dev, [11]))
    assert w.ledger.check(w.entry(HOST, body)).ok


def test_attestation_row_checks(registered: tuple[World, object]) -> None:
    w, dev = registered
    body, _, _ = w.attest_body(w.readings(dev, [1, 2], 10))
    row = body.devices[0]

    def with_row(**changes: object) -> SensorAttest:
        return dataclasses.replace(body, devices=(dataclasses.replace(row, **changes),))

    refuses(w, HOST, with_row(registration=b"\x01" * 32), Reason.UNKNOWN_DEVICE)
    water = (Aggregate("water_l", 1, 1, 1),)
    refuses(w, HOST, with_row(aggregates=water), Reason.UNKNOWN_METRIC)
    too_much = (Aggregate("energy_wh", 20, 10, 1_000_001),)
    refuses(w, HOST, with_row(aggregates=too_much), Reason.OUT_OF_RANGE)
    too_little = (Aggregate("energy_wh", 20, -1, 10),)
    refuses(w, HOST, with_row(aggregates=too_little), Reason.OUT_OF_RANGE)


def test_an_unseen_registration_is_named_and_cured() -> None:
    w = world()
    dev = device_key(1)
    reg = w.register(OWNER, dev, HOST)
    body, _, _ = w.attest_body(w.readings(dev, [1, 2]))
    signed = w.entry(HOST, body)
    stale = Ledger(w.economy)  # a validator that has not applied the registration
    verdict = stale.check(signed)
    assert verdict.reason is Reason.MISSING
    assert verdict.needs == (NeedCertificate(reg.entry_id),)
    stale.apply(reg)  # the submitter attaches it
    assert stale.check(signed).ok


# -- refusals: impact.claim ---------------------------------------------------------------


@pytest.fixture
def attested() -> tuple[World, object, list[object]]:
    w = world()
    dev = device_key(1)
    w.register(OWNER, dev, HOST)
    atts = [
        w.attest(HOST, w.readings(dev, range(1, 6), 300)),
        w.attest(HOST, w.readings(dev, range(6, 11), 300)),
        w.attest(HOST, w.readings(dev, range(11, 16), 300)),
    ]
    return w, dev, atts


def test_a_claim_overlapping_an_earlier_claim_is_refused(attested: tuple) -> None:
    w, dev, (a1, a2, a3) = attested
    w.claim(OWNER, dev, [a1, a2])
    refuses(w, OWNER, w.claim_body(dev, [a2]), Reason.OVERLAP)
    refuses(w, OWNER, w.claim_body(dev, [a1]), Reason.OVERLAP)
    refuses(w, OWNER, w.claim_body(dev, [a2, a3]), Reason.OVERLAP)
    assert w.ledger.check(w.entry(OWNER, w.claim_body(dev, [a3]))).ok


def test_a_claim_beyond_the_attested_range_is_refused(attested: tuple) -> None:
    w, dev, (a1, a2, _a3) = attested
    refuses(w, OWNER, w.claim_body(dev, [a1], last=6), Reason.NOT_ATTESTED)
    refuses(w, OWNER, w.claim_body(dev, [a1, a2], last=11), Reason.NOT_ATTESTED)
    refuses(w, OWNER, w.claim_body(dev, [a1], first=0), Reason.NOT_ATTESTED)
    refuses(w, OWNER, w.claim_body(dev, [a1], first=2), Reason.NOT_ATTESTED)
    refuses(w, OWNER, w.claim_body(dev, [a1], last=4), Reason.NOT_ATTESTED)
    # an attestation without a row for the device
    other = device_key(2)
    w.register(OWNER, other, HOST)
    foreign = w.attest(HOST, w.readings(other, [1]))
    claim = ImpactClaim(dev.device, 1, 5, (foreign.entry_id,), 300)
    refuses(w, OWNER, claim, Reason.NOT_ATTESTED)


def test_a_claim_by_someone_other_than_the_owner_is_refused(attested: tuple) -> None:
    w, dev, (a1, _a2, _a3) = attested
    refuses(w, STRANGER, w.claim_body(dev, [a1]), Reason.NOT_OWNER)
    refuses(w, HOST, w.claim_body(dev, [a1]), Reason.NOT_OWNER)
    unknown = dataclasses.replace(w.claim_body(dev, [a1]), device=device_key(9).device)
    refuses(w, OWNER, unknown, Reason.UNKNOWN_DEVICE)


def test_a_claim_whose_total_does_not_match_is_refused(attested: tuple) -> None:
    w, dev, (a1, a2, _a3) = attested
    refuses(w, OWNER, w.claim_body(dev, [a1], total=1_501), Reason.TOTAL_MISMATCH)
    refuses(w, OWNER, w.claim_body(dev, [a1, a2], total=1_500), Reason.TOTAL_MISMATCH)
    refuses(w, OWNER, w.claim_body(dev, [a1], total=0), Reason.TOTAL_MISMATCH)


def test_claims_may_not_skip_attestations(attested: tuple) -> None:
    w, dev, (a1, a2, a3) = attested
    refuses(w, OWNER, w.claim_body(dev, [a2]), Reason.NOT_CONTIGUOUS)  # the first is a1
    refuses(w, OWNER, w.claim_body(dev, [a1, a3]), Reason.NOT_CONTIGUOUS)
    body = w.claim_body(dev, [a1, a2])
    reversed_ = dataclasses.replace(body, attestations=(a2.entry_id, a1.entry_id))
    refuses(w, OWNER, reversed_, Reason.NOT_CONTIGUOUS)
    w.claim(OWNER, dev, [a1])
    refuses(w, OWNER, w.claim_body(dev, [a3]), Reason.NOT_CONTIGUOUS)


def test_an_unseen_attestation_is_named_and_cured(attested: tuple) -> None:
    w, dev, (a1, _a2, _a3) = attested
    body, _, _ = w.attest_body(w.readings(dev, range(16, 20), 300))
    pending = w.certify(w.entry(HOST, body))  # certified, not applied here yet
    w.claim(OWNER, dev, [a1])
    claim = w.claim_body(dev, [*attested[2][1:], pending])
    v = refuses(w, OWNER, claim, Reason.MISSING)
    assert v.needs == (NeedCertificate(pending.entry_id),)
    w.ledger.apply(pending)
    assert w.ledger.check(w.entry(OWNER, claim)).ok


def test_claim_amount_bounds() -> None:
    w = world(units_per_credit=INT64_MAX)
    dev = device_key(1)
    w.register(OWNER, dev, HOST, metrics=(Metric("energy_wh", "Wh", 0, 0, INT64_MAX),))
    a1 = w.attest(HOST, w.readings(dev, [1], INT64_MAX - 1))
    w.claim(OWNER, dev, [a1])
    assert w.balance(OWNER) == 0
    assert cursor(w, OWNER, dev.device) == ClaimCursor(1, INT64_MAX - 1)
    a2 = w.attest(HOST, w.readings(dev, [2], 2))
    refuses(w, OWNER, w.claim_body(dev, [a2]), Reason.AMOUNT_OUT_OF_RANGE)

    w = world(units_per_credit=1)
    w.register(OWNER, dev, HOST, metrics=(Metric("energy_wh", "Wh", 0, 0, INT64_MAX),))
    w.claim(OWNER, dev, [w.attest(HOST, w.readings(dev, [1], INT64_MAX))])
    assert w.balance(OWNER) == INT64_MAX
    a2 = w.attest(HOST, w.readings(dev, [2], 1))
    refuses(w, OWNER, w.claim_body(dev, [a2]), Reason.BALANCE_OVERFLOW)


def test_sensor_entries_round_trip_as_certificates(attested: tuple) -> None:
    from mycelia.protocol import Certificate, Entry

    w, dev, (a1, _a2, _a3) = attested
    claim = w.claim(OWNER, dev, [a1])
    for cert in (a1, claim):
        again = Certificate.decode(cert.encode())
        assert again == cert
        assert again.entry_id == cert.entry_id
        again.verify(w.economy)
    reg = w.entry(OWNER, w.registration_body(OWNER, device_key(5), HOST))
    assert SignedEntry.decode(reg.encode()) == reg
    assert isinstance(Entry.decode(reg.entry.encode()).body, DeviceRegister)
