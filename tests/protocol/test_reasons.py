"""Every reason code has a scenario that produces it, and a refusal leaves
the ledger unchanged.

``SCENARIOS`` maps each :class:`Reason` to a function that provokes it; the
parametrised test runs over the *enum*, so adding a reason without a scenario
fails here. Each scenario works on a :class:`World` whose ledger is
snapshotted before and compared after.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from mycelia.protocol import (
    Burn,
    Certificate,
    CreditSet,
    Economy,
    Entry,
    MemberAdmit,
    Mint,
    Reason,
    Refused,
    Transfer,
    Verdict,
    Vote,
    check,
    codec,
    transition,
)
from mycelia.protocol.certificates import assemble, vote_id
from mycelia.protocol.domains import ENTRY, READING, Domain
from mycelia.protocol.economy import Genesis
from mycelia.protocol.entries import SignedEntry
from mycelia.protocol.forks import ForkEvidence
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.merkle import MerkleProof
from mycelia.protocol.reasons import NeedAdmission, NeedChain
from mycelia.protocol.schema import INT64_MAX
from mycelia.protocol.sensors import (
    ED25519,
    P256_N,
    Aggregate,
    AttestationAudit,
    Reading,
    SignedReading,
    check_reading,
    device_id,
    verify_device_signature,
)
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import (
    T0,
    World,
    device_key,
    genesis,
    impact_genesis,
    key,
    sign_genesis,
    validator_keys,
)
from tests.protocol.compute_world import COMPUTE_SCENARIOS
from tests.protocol.gov_scenarios import GOV_SCENARIOS
from tests.protocol.test_channels import CHANNEL_SCENARIOS
from tests.protocol.test_keys import BAD_SIGNER_IDS, BAD_SIGNERS

A, B, C = key(1), key(2), key(3)
STEWARD, ISSUER = key(10, "steward"), key(11, "issuer")
SMALL_ORDER = bytes([1]) + bytes(31)  # the identity point


def mutual(**kw: object) -> World:
    vk = validator_keys(4)
    return World(genesis(validators=vk, **kw), vk)  # type: ignore[arg-type]


def approved() -> World:
    return mutual(membership="approved", stewards=[STEWARD])


def issued() -> World:
    vk = validator_keys(4)
    g = genesis(kind="issued", validators=vk, issuers=[(ISSUER, 1_000)], stewards=[STEWARD])
    return World(g, vk)


def refused(fn: Callable[[], object]) -> Refused:
    with pytest.raises(Refused) as info:
        fn()
    return info.value


def outcome(action: Callable[[], object]) -> tuple[Reason, tuple[object, ...]]:
    """Run a refused action: it either raises Refused or returns a refusing Verdict."""
    try:
        result = action()
    except Refused as exc:
        return exc.reason, exc.needs
    assert isinstance(result, Verdict), result
    assert not result.ok, result
    return result.reason, result.needs


# A scenario sets up a world and returns it with the action that is refused.
# world is None for refusals that involve no ledger (pure decoding).
Scenario = tuple[World | None, Callable[[], object]]


def s_non_canonical() -> Scenario:
    return None, lambda: codec.decode(b"\xcc\x05")


def s_too_large() -> Scenario:
    w = World()
    data = w.transfer(A, B, 1).encode()
    return w, lambda: Certificate.decode(data + b"\x00" * 20_000)


def s_malformed() -> Scenario:
    w = World()
    wire = w.entry(A, Transfer(B.public, 1)).entry.to_wire()
    wire[1] = 2  # version
    return w, lambda: Entry.decode(codec.encode(wire))


def s_malformed_body() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(A.public, 5))  # parses, but a transfer to oneself
    return w, lambda: w.ledger.check(signed)


def s_unknown_kind() -> Scenario:
    w = World()
    wire = w.entry(A, Transfer(B.public, 1)).entry.to_wire()
    wire[7] = "no.such.kind"
    return w, lambda: Entry.decode(codec.encode(wire))


def s_bad_key() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(SMALL_ORDER, 5))
    return w, lambda: w.ledger.check(signed)


def s_bad_signature() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5))
    forged = SignedEntry(signed.entry, w.entry(A, Transfer(B.public, 6)).signature)
    return w, lambda: w.ledger.check(forged)


def s_bad_genesis() -> Scenario:
    vk = validator_keys(4)
    g = genesis(validators=vk)
    return None, lambda: Economy.from_signed(sign_genesis(g, vk[:2]))


def s_wrong_economy() -> Scenario:
    w = World()
    other = World(genesis(nonce=b"other"))
    signed = w.entry(A, Transfer(B.public, 5), economy=other.id)
    return w, lambda: w.ledger.check(signed)


def s_wrong_epoch() -> Scenario:
    w = World()
    wire = w.certify(w.entry(A, Transfer(B.public, 5))).to_wire()
    wire[4] = 1
    bad = Certificate.from_wire(wire)
    return w, lambda: w.ledger.apply(bad)


def s_not_validator() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5))
    vote = Vote.make(key(99, "stranger"), w.id, 0, signed.id)
    return w, lambda: vote.verify(w.economy)


def s_bad_bitmap() -> Scenario:
    w = World()
    wire = w.certify(w.entry(A, Transfer(B.public, 5))).to_wire()
    wire[5] = b"\x07\x00"  # two bytes for four validators
    bad = Certificate.from_wire(wire)
    return w, lambda: w.ledger.apply(bad)


def s_quorum_not_reached() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5))
    return w, lambda: w.certify(signed, [0, 1])


def s_seq_gap() -> Scenario:
    w = World()
    w.transfer(A, B, 1)
    ahead = w.certify(w.entry(A, Transfer(B.public, 1), seq=3, prev=b"\x03" * 32))
    # The functional apply names the gap (the Ledger buffers instead; see below).
    return w, lambda: transition(w.economy, w.ledger.state, ahead.entry, ahead.entry_id)


def s_seq_reused() -> Scenario:
    w = World()
    w.transfer(A, B, 1)
    signed = w.entry(A, Transfer(B.public, 2), seq=1, prev=bytes(32))
    return w, lambda: w.ledger.check(signed)


def s_prev_mismatch() -> Scenario:
    w = World()
    w.transfer(A, B, 1)
    signed = w.entry(A, Transfer(B.public, 2), prev=b"\x01" * 32)
    return w, lambda: w.ledger.check(signed)


def s_conflict() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 1))
    twin = w.certify(w.entry(A, Transfer(C.public, 1)))  # a faulty quorum's second entry
    w.ledger.apply(w.certify(signed))
    return w, lambda: w.ledger.apply(twin)


def s_forked() -> Scenario:
    """After the conflict above, the author's next entry on the applied
    branch: certified, valid, but past the fork."""
    w = World()
    first = w.certify(w.entry(A, Transfer(B.public, 1)))
    twin = w.certify(w.entry(A, Transfer(C.public, 1), seq=1, prev=first.entry.prev))
    w.ledger.apply(first)
    refused(lambda: w.ledger.apply(twin))
    successor = w.certify(w.entry(A, Transfer(B.public, 2)))
    return w, lambda: w.ledger.apply(successor)


def s_not_a_fork() -> Scenario:
    w = World()
    cert = w.transfer(A, B, 1)
    return w, lambda: ForkEvidence.of(cert, Certificate.decode(cert.encode())).verify(w.economy)


def s_clock_skew() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 1), ts_ms=w.clock + 10 * 60_000)
    now = w.clock
    return w, lambda: w.ledger.check(signed, now_ms=now)


def s_ts_regression() -> Scenario:
    w = World()
    w.transfer(A, B, 1)
    signed = w.entry(A, Transfer(B.public, 1), ts_ms=w.clock - 100)
    return w, lambda: w.ledger.check(signed)


def s_amount_out_of_range() -> Scenario:
    w = World()
    return w, lambda: w.entry(A, Transfer(B.public, 0))


def s_insufficient_balance() -> Scenario:
    w = World()  # default limit 1000
    signed = w.entry(A, Transfer(B.public, 1_001))
    return w, lambda: w.ledger.check(signed)


def s_balance_overflow() -> Scenario:
    w = mutual(default_limit=INT64_MAX)
    w.transfer(A, B, INT64_MAX)
    signed = w.entry(C, Transfer(B.public, 1))
    return w, lambda: w.ledger.check(signed)


def s_not_member() -> Scenario:
    w = approved()
    signed = w.entry(A, Transfer(STEWARD.public, 1))
    return w, lambda: w.ledger.check(signed)


def s_already_member() -> Scenario:
    w = approved()
    w.admit(STEWARD, A)
    signed = w.entry(STEWARD, MemberAdmit(A.public))
    return w, lambda: w.ledger.check(signed)


def s_not_steward() -> Scenario:
    w = approved()
    w.admit(STEWARD, A)
    signed = w.entry(A, MemberAdmit(B.public))
    return w, lambda: w.ledger.check(signed)


def s_not_issuer() -> Scenario:
    w = issued()
    signed = w.entry(A, Mint(A.public, 5))
    return w, lambda: w.ledger.check(signed)


def s_cap_exceeded() -> Scenario:
    w = issued()
    w.mint(ISSUER, ISSUER, 600)
    signed = w.entry(ISSUER, Mint(ISSUER.public, 401))
    return w, lambda: w.ledger.check(signed)


def s_not_allowed() -> Scenario:
    w = World()  # mutual credit: no minting
    signed = w.entry(A, Mint(A.public, 5))
    return w, lambda: w.ledger.check(signed)


def s_resource_locked() -> Scenario:
    w = World()
    one = w.entry(A, Transfer(B.public, 1))
    two = w.entry(A, Transfer(C.public, 1))
    locks = {r: one.id for r in lock_decision({}, one.id, resources(one.entry))}

    def action() -> object:
        before = dict(locks)
        try:
            return lock_decision(locks, two.id, resources(two.entry))
        finally:
            assert locks == before

    return w, action


def s_missing() -> Scenario:
    w = World()
    signed = w.entry(A, Transfer(B.public, 1), seq=3, prev=b"\x02" * 32)
    return w, lambda: w.ledger.check(signed)


def s_buffer_full() -> Scenario:
    w = World()
    w.ledger.buffer.max_pending = 1
    w.transfer(A, B, 1)
    c3 = w.certify(w.entry(A, Transfer(B.public, 1), seq=3, prev=b"\x03" * 32))
    c4 = w.certify(w.entry(A, Transfer(B.public, 1), seq=4, prev=b"\x04" * 32))
    w.ledger.apply(c3)
    return w, lambda: w.ledger.apply(c4)


# -- sensors -------------------------------------------------------------------------

OWNER, HOST = key(20, "owner"), key(21, "host")
DEV = device_key(1, "p256")


def sensors(attested: int = 0) -> tuple[World, list[Certificate]]:
    """An impact economy with DEV registered to OWNER on HOST, and
    ``attested`` attestations of 5 readings each (300 Wh a reading)."""
    vk = validator_keys(4)
    w = World(impact_genesis(validators=vk), vk)
    w.register(OWNER, DEV, HOST)
    atts = [
        w.attest(HOST, w.readings(DEV, range(5 * i + 1, 5 * i + 6), 300)) for i in range(attested)
    ]
    return w, atts


def s_high_s() -> Scenario:
    vk = validator_keys(4)
    w = World(impact_genesis(validators=vk), vk)
    body = w.registration_body(OWNER, DEV, HOST)
    s = int.from_bytes(body.pop[32:], "big")
    twin = dataclasses.replace(body, pop=body.pop[:32] + (P256_N - s).to_bytes(32, "big"))
    signed = w.entry(OWNER, twin)
    return w, lambda: w.ledger.check(signed)


def s_bad_proof() -> Scenario:
    w, _ = sensors()
    body, tree, ordered = w.attest_body(w.readings(DEV, range(1, 5)))
    cert = w.commit(HOST, body)
    audit = AttestationAudit(w.economy, cert, [w.device_record(DEV)])  # type: ignore[list-item]
    proof = tree.proof(0)
    bent = MerkleProof(proof.index, proof.count, (bytes(32), *proof.siblings[1:]))
    return w, lambda: audit.check(ordered[0].encode(), bent)


def s_unknown_device() -> Scenario:
    w, atts = sensors(1)
    claim = w.claim_body(DEV, atts)
    signed = w.entry(OWNER, dataclasses.replace(claim, device=device_key(9).device))
    return w, lambda: w.ledger.check(signed)


def s_already_registered() -> Scenario:
    w, _ = sensors()
    signed = w.entry(OWNER, w.registration_body(OWNER, DEV, key(22, "host")))
    return w, lambda: w.ledger.check(signed)


def s_not_host() -> Scenario:
    w, _ = sensors()
    body, _, _ = w.attest_body(w.readings(DEV, [1]))
    signed = w.entry(key(22, "host"), body)
    return w, lambda: w.ledger.check(signed)


def s_not_owner() -> Scenario:
    w, atts = sensors(1)
    signed = w.entry(A, w.claim_body(DEV, atts))
    return w, lambda: w.ledger.check(signed)


def _aggregate(w: World, agg: Aggregate) -> Callable[[], object]:
    body, _, _ = w.attest_body(w.readings(DEV, [1]))
    row = dataclasses.replace(body.devices[0], aggregates=(agg,))
    signed = w.entry(HOST, dataclasses.replace(body, devices=(row,)))
    return lambda: w.ledger.check(signed)


def s_unknown_metric() -> Scenario:
    w, _ = sensors()
    return w, _aggregate(w, Aggregate("water_l", 5, 5, 5))


def s_out_of_range() -> Scenario:
    w, _ = sensors()
    return w, _aggregate(w, Aggregate("energy_wh", 2_000_000, 2_000_000, 2_000_000))


def s_replayed_counter() -> Scenario:
    w, _ = sensors()
    record = w.device_record(DEV)
    assert record is not None
    signed = Reading(w.id, DEV.device, 7, w.clock, "energy_wh", 1, 0).sign(DEV)
    return w, lambda: check_reading(
        signed, record, economy=w.id, host=HOST.public, last_counter=7, now_ms=w.clock
    )


def s_counter_out_of_range() -> Scenario:
    w, _ = sensors()
    record = w.device_record(DEV)
    assert record is not None
    signed = Reading(w.id, DEV.device, (1 << 64) - 1, w.clock, "energy_wh", 1, 0).sign(DEV)
    return w, lambda: check_reading(
        signed, record, economy=w.id, host=HOST.public, last_counter=7, now_ms=w.clock
    )


def s_overlap() -> Scenario:
    w, _ = sensors(1)  # counters 1-5 attested
    body, _, _ = w.attest_body(w.readings(DEV, [5, 6]))
    signed = w.entry(HOST, body)
    return w, lambda: w.ledger.check(signed)


def s_not_contiguous() -> Scenario:
    w, atts = sensors(2)
    signed = w.entry(OWNER, w.claim_body(DEV, atts[1:]))  # skips the first
    return w, lambda: w.ledger.check(signed)


def s_not_attested() -> Scenario:
    w, atts = sensors(1)
    signed = w.entry(OWNER, w.claim_body(DEV, atts, last=6))
    return w, lambda: w.ledger.check(signed)


def s_total_mismatch() -> Scenario:
    w, atts = sensors(1)
    signed = w.entry(OWNER, w.claim_body(DEV, atts, total=1_501))
    return w, lambda: w.ledger.check(signed)


SCENARIOS: dict[Reason, Callable[[], Scenario]] = {
    Reason.NON_CANONICAL: s_non_canonical,
    Reason.TOO_LARGE: s_too_large,
    Reason.MALFORMED: s_malformed,
    Reason.MALFORMED_BODY: s_malformed_body,
    Reason.UNKNOWN_KIND: s_unknown_kind,
    Reason.BAD_KEY: s_bad_key,
    Reason.BAD_SIGNATURE: s_bad_signature,
    Reason.BAD_GENESIS: s_bad_genesis,
    Reason.WRONG_ECONOMY: s_wrong_economy,
    Reason.WRONG_EPOCH: s_wrong_epoch,
    Reason.NOT_VALIDATOR: s_not_validator,
    Reason.BAD_BITMAP: s_bad_bitmap,
    Reason.QUORUM_NOT_REACHED: s_quorum_not_reached,
    Reason.SEQ_GAP: s_seq_gap,
    Reason.SEQ_REUSED: s_seq_reused,
    Reason.PREV_MISMATCH: s_prev_mismatch,
    Reason.CONFLICT: s_conflict,
    Reason.FORKED: s_forked,
    Reason.NOT_A_FORK: s_not_a_fork,
    Reason.CLOCK_SKEW: s_clock_skew,
    Reason.TS_REGRESSION: s_ts_regression,
    Reason.AMOUNT_OUT_OF_RANGE: s_amount_out_of_range,
    Reason.INSUFFICIENT_BALANCE: s_insufficient_balance,
    Reason.BALANCE_OVERFLOW: s_balance_overflow,
    Reason.NOT_MEMBER: s_not_member,
    Reason.ALREADY_MEMBER: s_already_member,
    Reason.NOT_STEWARD: s_not_steward,
    Reason.NOT_ISSUER: s_not_issuer,
    Reason.CAP_EXCEEDED: s_cap_exceeded,
    Reason.NOT_ALLOWED: s_not_allowed,
    Reason.RESOURCE_LOCKED: s_resource_locked,
    Reason.MISSING: s_missing,
    Reason.BUFFER_FULL: s_buffer_full,
    Reason.HIGH_S: s_high_s,
    Reason.BAD_PROOF: s_bad_proof,
    Reason.UNKNOWN_DEVICE: s_unknown_device,
    Reason.ALREADY_REGISTERED: s_already_registered,
    Reason.NOT_HOST: s_not_host,
    Reason.NOT_OWNER: s_not_owner,
    Reason.UNKNOWN_METRIC: s_unknown_metric,
    Reason.OUT_OF_RANGE: s_out_of_range,
    Reason.REPLAYED_COUNTER: s_replayed_counter,
    Reason.COUNTER_OUT_OF_RANGE: s_counter_out_of_range,
    Reason.OVERLAP: s_overlap,
    Reason.NOT_CONTIGUOUS: s_not_contiguous,
    Reason.NOT_ATTESTED: s_not_attested,
    Reason.TOTAL_MISMATCH: s_total_mismatch,
    # compute payment channels: tests/protocol/test_channels.py
    **CHANNEL_SCENARIOS,
    # governance and epochs (tests/protocol/gov_scenarios.py)
    **GOV_SCENARIOS,
}
# The compute protocol's reasons (offers, jobs, channels, usage, frames, requests).
SCENARIOS.update(COMPUTE_SCENARIOS)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_is_produced_and_changes_nothing(reason: Reason) -> None:
    assert reason in SCENARIOS, f"no test produces {reason.value}"
    world, action = SCENARIOS[reason]()
    if world is not None:
        state = world.ledger.state.snapshot()
        chain = dict(world.ledger.chain)
        pending = world.ledger.pending_count
    produced, _needs = outcome(action)
    assert produced is reason
    if world is not None:
        assert world.ledger.state.snapshot() == state
        assert world.ledger.chain == chain
        assert world.ledger.pending_count == pending


def test_a_gap_is_buffered_by_the_ledger_without_changing_state() -> None:
    w = World()
    w.transfer(A, B, 1)
    state = w.ledger.state.snapshot()
    ahead = w.certify(w.entry(A, Transfer(B.public, 1), seq=3, prev=b"\x03" * 32))
    assert w.ledger.apply(ahead) == []
    assert w.ledger.pending_count == 1
    assert w.ledger.state.snapshot() == state


def test_curable_refusals_name_what_is_needed() -> None:
    reason, needs = outcome(s_not_member()[1])
    assert reason is Reason.NOT_MEMBER
    assert needs == (NeedAdmission(A.public),)
    reason, needs = outcome(s_missing()[1])
    assert reason is Reason.MISSING
    assert needs == (NeedChain(A.public, 0, b"\x02" * 32),)


def test_not_member_is_cured_by_applying_the_admission() -> None:
    w = approved()
    signed = w.entry(STEWARD, Transfer(A.public, 1))
    assert w.ledger.check(signed).reason is Reason.NOT_MEMBER
    # Another validator certified the admission; once applied here, the same
    # entry (steward's seq 1 is still free) passes.
    other = approved()
    admission = other.certify(other.entry(STEWARD, MemberAdmit(A.public)))
    assert w.ledger.apply(admission) == [admission.entry_id]
    assert w.ledger.account(A.public).admitted == admission.entry_id
    again = w.entry(STEWARD, Transfer(A.public, 1))
    assert w.ledger.check(again).ok


def test_refused_kinds_outside_their_economy() -> None:
    w = issued()
    assert w.ledger.check(w.entry(STEWARD, CreditSet(A.public, 5))).reason is Reason.NOT_ALLOWED
    m = World()
    assert m.ledger.check(m.entry(A, Burn(5))).reason is Reason.NOT_ALLOWED
    assert m.ledger.check(m.entry(A, MemberAdmit(B.public))).reason is Reason.NOT_ALLOWED


def test_check_is_pure_and_vote_id_is_stable() -> None:
    w = World()
    signed = w.entry(A, Transfer(B.public, 5))
    before = w.ledger.state.snapshot()
    assert check(w.economy, w.ledger.state, signed).ok
    assert w.ledger.state.snapshot() == before
    assert vote_id(w.id, 0, signed.id) == vote_id(w.id, 0, signed.id)
    assert vote_id(w.id, 0, signed.id) != vote_id(w.id, 1, signed.id)


def test_genesis_refusal_is_stable_for_unsigned_economy() -> None:
    g = genesis()
    wire = g.to_wire()
    wire[8] = 2  # quorum 2 of 4 is not more than two thirds
    assert refused(lambda: Genesis.from_wire(wire)).reason is Reason.BAD_GENESIS


# -- one cause, one reason: an invalid key is bad_key on every path ---------------------------


@pytest.mark.parametrize(("public", "signer"), BAD_SIGNERS, ids=BAD_SIGNER_IDS)
def test_an_invalid_key_is_bad_key_on_every_path(
    public: bytes, signer: Callable[[Domain, bytes], bytes]
) -> None:
    """The same small-order (or mixed-order) key, whatever it signed, is
    ``bad_key`` from ``ledger.check``, from ``SignedEntry.verify`` (what a
    node's ``entry_submit`` runs), from a certificate's author check and
    from the device signature check — never ``bad_signature``, never
    accepted — and no state changes."""
    w = World()
    entry = Entry(w.id, public, 1, ZERO_ID, T0 + 1, Transfer(B.public, 5))
    signed = SignedEntry(entry, signer(ENTRY, entry.id))
    votes = [Vote.make(k, w.id, w.economy.epoch, entry.id) for k in w.vkeys[:3]]
    cert = assemble(w.economy, signed, votes)
    reading_id = bytes(range(32))
    device_sig = signer(READING, reading_id)
    state, chain = w.ledger.state.snapshot(), dict(w.ledger.chain)
    paths: dict[str, Callable[[], object]] = {
        "ledger.check": lambda: w.ledger.check(signed),
        "SignedEntry.verify": signed.verify,
        "Certificate.verify": lambda: cert.verify(w.economy),
        "ledger.apply": lambda: w.ledger.apply(cert),
        "verify_device_signature": lambda: verify_device_signature(
            ED25519, public, READING, reading_id, device_sig
        ),
        "SignedReading.verify": lambda: SignedReading(
            Reading(w.id, device_id(ED25519, public), 1, T0, "energy_wh", 1, 0), device_sig
        ).verify(ED25519, public),
    }
    for name, action in paths.items():
        assert outcome(action)[0] is Reason.BAD_KEY, name
    assert w.ledger.state.snapshot() == state
    assert w.ledger.chain == chain
