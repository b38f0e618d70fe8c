"""Fork evidence (forks.py): what counts as evidence and what does not (each
refusal with its reason), who is guilty, the evidence's one byte form, and
the rule after a fork in the ledger — what was applied stays, nothing of
the author at or past the fork is applied or voted for — under random
delivery orders."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    Certificate,
    Ledger,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Transfer,
    Vote,
    codec,
)
from mycelia.protocol.forks import MAX_EVIDENCE_BYTES, ForkEvidence, forked
from mycelia.protocol.quorum import make_bitmap
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import World, genesis, key, validator_keys

A, B, C = key(1), key(2), key(3)


def refused(fn: object) -> Refused:
    with pytest.raises(Refused) as info:
        fn()  # type: ignore[operator]
    return info.value


def world(weights: Sequence[int] = (1, 1, 1, 1)) -> World:
    vk = validator_keys(len(weights))
    return World(genesis(validators=vk, weights=weights), vk)


def entry(
    w: World, author: SigningKey, to: SigningKey, amount: int, seq: int, prev: bytes
) -> SignedEntry:
    return w.entry(author, Transfer(to.public, amount), seq=seq, prev=prev)


def branch(
    w: World, to: SigningKey, amounts: Sequence[int], signers: Sequence[int], prev: bytes = ZERO_ID
) -> list[Certificate]:
    """A's chain from seq 1 (after ``prev`` at seq 0), each certified by ``signers``."""
    out = []
    for seq, amount in enumerate(amounts, 1):
        cert = w.certify(entry(w, A, to, amount, seq, prev), signers)
        out.append(cert)
        prev = cert.entry_id
    return out


def a_fork(w: World) -> tuple[Certificate, Certificate]:
    """Two certificates for A's seq 1: validators 2 and 3 signed both."""
    x = w.certify(entry(w, A, B, 5, 1, ZERO_ID), [0, 2, 3])
    y = w.certify(entry(w, A, C, 5, 1, ZERO_ID), [1, 2, 3])
    return x, y


# -- what counts as evidence -------------------------------------------------------------


def test_two_certificates_for_one_slot_are_evidence_against_the_signers_of_both() -> None:
    w = world()
    x, y = a_fork(w)
    evidence = ForkEvidence.of(y, x)
    assert evidence.entry_ids == tuple(sorted((x.entry_id, y.entry_id)))
    assert (evidence.economy, evidence.author, evidence.seq) == (w.id, A.public, 1)
    guilty = evidence.verify(w.economy)
    assert guilty == (w.vkeys[2].public, w.vkeys[3].public)
    assert evidence.guilty(w.economy) == guilty
    assert ForkEvidence.of(x, y) == evidence  # one evidence whatever the order given


def test_successors_on_the_two_branches_are_evidence_of_a_fork_at_their_seq() -> None:
    """Different prevs do not matter: the slot is (author, seq)."""
    w = world()
    x, y = a_fork(w)
    x2 = w.certify(entry(w, A, B, 1, 2, x.entry_id), [0, 1, 3])
    y2 = w.certify(entry(w, A, C, 1, 2, y.entry_id), [1, 2, 3])
    assert ForkEvidence.of(x2, y2).verify(w.economy) == (w.vkeys[1].public, w.vkeys[3].public)


def test_the_same_entry_twice_is_not_a_fork() -> None:
    w = world()
    x, _ = a_fork(w)
    again = w.certify(x.signed_entry, [1, 2, 3])  # another quorum, same entry
    for other in (x, again):
        exc = refused(lambda other=other: ForkEvidence.of(x, other))
        assert exc.reason is Reason.NOT_A_FORK
        assert "same entry" in exc.detail
        # decoded from bytes too: the form is fine, the proof is not
        raw = codec.encode(["fork", 1, x.encode(), other.encode()])
        decoded = ForkEvidence.decode(raw)
        assert refused(lambda d=decoded: d.verify(w.economy)).reason is Reason.NOT_A_FORK


@pytest.mark.parametrize("what", ["seq", "author", "economy"])
def test_certificates_for_different_slots_are_not_a_fork(what: str) -> None:
    w = world()
    x, _ = a_fork(w)
    if what == "seq":
        other = w.certify(entry(w, A, C, 5, 2, x.entry_id))
    elif what == "author":
        other = w.certify(w.entry(B, Transfer(C.public, 5), seq=1, prev=ZERO_ID))
    else:
        elsewhere = World(genesis(validators=w.vkeys, nonce=b"another"), w.vkeys)
        other = elsewhere.certify(elsewhere.entry(A, Transfer(C.public, 5)))
    exc = refused(lambda: ForkEvidence.of(x, other))
    assert exc.reason is Reason.NOT_A_FORK
    assert "different slots" in exc.detail
    pair = (x, other) if x.entry_id < other.entry_id else (other, x)
    assert refused(lambda: ForkEvidence(*pair).verify(w.economy)).reason is Reason.NOT_A_FORK


def _forged(cert: Certificate, how: str, w: World) -> Certificate:
    if how == "bad_signature":  # a vote signature flipped
        sig = bytearray(cert.signatures[0])
        sig[0] ^= 1
        return dataclasses.replace(cert, signatures=(bytes(sig), *cert.signatures[1:]))
    if how == "quorum_not_reached":  # two of the signers only
        votes = [Vote.make(w.vkeys[i], w.id, 0, cert.entry_id) for i in (2, 3)]
        return dataclasses.replace(
            cert, bitmap=make_bitmap([2, 3], 4), signatures=tuple(v.signature for v in votes)
        )
    if how == "bad_bitmap":  # one more signer named than signatures follow
        return dataclasses.replace(cert, signatures=cert.signatures[:-1])
    if how == "wrong_epoch":
        return dataclasses.replace(cert, epoch=cert.epoch + 1)
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["bad_signature", "quorum_not_reached", "bad_bitmap", "wrong_epoch"]
)
def test_a_forged_certificate_is_not_evidence(how: str) -> None:
    w = world()
    x, y = a_fork(w)
    forged = _forged(y, how, w)
    evidence = ForkEvidence.of(x, forged)  # the slot is right; the proof is not
    assert refused(lambda: evidence.verify(w.economy)).reason is Reason(how)
    # …and off the wire it is the same refusal
    decoded = ForkEvidence.decode(evidence.encode())
    assert refused(lambda: decoded.verify(w.economy)).reason is Reason(how)


def test_evidence_for_another_economy_is_refused() -> None:
    w = world()
    evidence = ForkEvidence.of(*a_fork(w))
    elsewhere = World(genesis(validators=w.vkeys, nonce=b"another"), w.vkeys)
    assert refused(lambda: evidence.verify(elsewhere.economy)).reason is Reason.WRONG_ECONOMY


# -- the byte form ----------------------------------------------------------------------------


def test_evidence_has_one_byte_form_and_a_bounded_decoder() -> None:
    w = world()
    x, y = a_fork(w)
    evidence = ForkEvidence.of(x, y)
    data = evidence.encode()
    assert ForkEvidence.decode(data) == evidence
    assert ForkEvidence.decode(data).id == evidence.id
    assert len(data) <= MAX_EVIDENCE_BYTES
    low, high = evidence.first.encode(), evidence.second.encode()
    reversed_ = codec.encode(["fork", 1, high, low])
    assert refused(lambda: ForkEvidence.decode(reversed_)).reason is Reason.NON_CANONICAL
    assert refused(lambda: ForkEvidence.decode(data + b"\x00")).reason is Reason.NON_CANONICAL
    big = codec.encode(["fork", 1, low, b"\x00" * MAX_EVIDENCE_BYTES])
    assert refused(lambda: ForkEvidence.decode(big)).reason is Reason.TOO_LARGE
    for bad in (
        ["fork", 2, low, high],
        ["cert", 1, low, high],
        ["fork", 1, low],
        ["fork", 1, low, "high"],
        ["fork", 1, low, b"\x93\x01\x02\x03"],
    ):
        exc = refused(lambda bad=bad: ForkEvidence.decode(codec.encode(bad)))
        assert exc.reason is Reason.MALFORMED, bad


# -- who is guilty -----------------------------------------------------------------------------

PROFILES = [(1, 1, 1, 1), (2, 1, 1, 1), (5, 1, 1, 1), (1,) * 7, (3, 2, 2, 1, 1)]


@given(data=st.data())
def test_the_guilty_are_the_signers_of_both_and_weigh_at_least_the_quorum_overlap(
    data: st.DataObject,
) -> None:
    weights = data.draw(st.sampled_from(PROFILES), label="weights")
    w = world(weights)
    n, q, total = len(weights), w.economy.quorum, sum(weights)

    def quorum_set(label: str) -> list[int]:
        chosen = data.draw(st.sets(st.integers(0, n - 1), min_size=1), label=label)
        while sum(weights[i] for i in chosen) < q:  # top up to a quorum
            chosen.add(next(i for i in range(n) if i not in chosen))
        return sorted(chosen)

    s1, s2 = quorum_set("first signers"), quorum_set("second signers")
    x = w.certify(entry(w, A, B, 1, 1, ZERO_ID), s1)
    y = w.certify(entry(w, A, C, 2, 1, ZERO_ID), s2)
    guilty = ForkEvidence.of(x, y).verify(w.economy)
    assert guilty == tuple(w.vkeys[i].public for i in sorted(set(s1) & set(s2)))
    assert sum(weights[w.economy.index[k]] for k in guilty) >= 2 * q - total > 0


# -- the rule after a fork, in the ledger ----------------------------------------------------


def test_a_node_that_sees_both_applies_neither_branch_past_the_fork() -> None:
    w = world()
    x, x2, x3 = branch(w, B, [5, 1, 1], [0, 2, 3])
    y, y2 = branch(w, C, [5, 1], [1, 2, 3])
    ledger = Ledger(w.economy)
    assert ledger.apply(x) == [x.entry_id]
    state = ledger.state.snapshot()
    assert refused(lambda: ledger.apply(y)).reason is Reason.CONFLICT
    [evidence] = ledger.forks
    assert evidence == ForkEvidence.of(x, y)
    assert ledger.state.fork_seq(A.public) == 1
    # the branch applied stays; neither branch goes further
    for successor in (x2, y2, x3):
        assert refused(lambda s=successor: ledger.apply(s)).reason is Reason.FORKED
    assert ledger.state.snapshot() == state
    assert ledger.account(A.public).head == x.entry_id
    assert ledger.apply(x) == []  # what was applied is still a no-op
    # a validator that holds the evidence votes for nothing past it either
    x2_entry = entry(w, A, B, 1, 2, x.entry_id)
    assert ledger.check(x2_entry).reason is Reason.FORKED
    # a second delivery of the evidence records nothing new
    assert refused(lambda: ledger.apply(y)).reason is Reason.FORKED
    assert ledger.forks == [evidence]
    # other authors go on
    other = w.certify(w.entry(B, Transfer(C.public, 3), seq=1, prev=ZERO_ID))
    assert ledger.apply(other) == [other.entry_id]


def test_what_was_applied_before_the_evidence_stays_and_nothing_more_is_applied() -> None:
    w = world()
    x, x2, x3 = branch(w, B, [5, 1, 1], [0, 2, 3])
    (y,) = branch(w, C, [5], [1, 2, 3])
    ledger = Ledger(w.economy)
    assert ledger.apply(x3) == []  # waits for its gap
    assert ledger.apply(x) == [x.entry_id]
    assert ledger.apply(x2) == [x2.entry_id, x3.entry_id]
    assert refused(lambda: ledger.apply(y)).reason is Reason.CONFLICT
    assert ledger.account(A.public).seq == 3  # all three stay
    x4 = w.certify(entry(w, A, B, 1, 4, x3.entry_id))
    assert refused(lambda: ledger.apply(x4)).reason is Reason.FORKED


def test_a_fork_found_in_the_gap_buffer_drops_both_and_what_waits_behind_them() -> None:
    w = world()
    x, x2, x3 = branch(w, B, [5, 1, 1], [0, 2, 3])
    y, y2 = branch(w, C, [5, 1], [1, 2, 3])
    ledger = Ledger(w.economy)
    for cert in (x2, x3):
        assert ledger.apply(cert) == []
    assert refused(lambda: ledger.apply(y2)).reason is Reason.CONFLICT  # slot 2 in the buffer
    assert ledger.pending_count == 0
    assert ledger.state.fork_seq(A.public) == 2
    assert ledger.apply(x) == [x.entry_id]  # before the fork: applied
    assert ledger.account(A.public).seq == 1
    # the fork at seq 1 found later is recorded too, and lowers the bound
    assert refused(lambda: ledger.apply(y)).reason is Reason.CONFLICT
    assert ledger.state.fork_seq(A.public) == 1
    assert [e.seq for e in ledger.forks] == [2, 1]


def test_a_certificate_built_on_the_other_branch_names_what_to_fetch() -> None:
    w = world()
    (x,) = branch(w, B, [5], [0, 2, 3])
    y, y2 = branch(w, C, [5, 1], [1, 2, 3])
    ledger = Ledger(w.economy)
    ledger.apply(x)
    assert refused(lambda: ledger.apply(y2)).reason is Reason.CONFLICT
    assert ledger.suspects == [y.entry_id]
    assert ledger.forks == []  # not provable yet
    assert refused(lambda: ledger.apply(y)).reason is Reason.CONFLICT
    assert ledger.forks == [ForkEvidence.of(x, y)]


def test_the_rule_itself() -> None:
    assert not forked(None, 1)
    assert not forked(3, 2)
    assert forked(3, 3)
    assert forked(3, 4)


@given(data=st.data())
def test_any_delivery_order_detects_the_fork_and_applies_nothing_past_it(
    data: st.DataObject,
) -> None:
    """Two branches of A's chain (the fork at a random seq), other authors'
    certificates and repeats, delivered in a random order: once both
    certificates of the forked slot were delivered the fork is recorded;
    no certificate of A at or past a recorded fork is ever applied after it
    was recorded; nothing else is refused; balances sum to zero."""
    w = world()
    common = data.draw(st.integers(0, 2), label="seqs before the fork")
    shared = branch(w, B, [1] * common, [0, 1, 2])
    prev = shared[-1].entry_id if shared else ZERO_ID
    xs, ys = [], []
    for seq in range(common + 1, common + 4):
        xs.append(w.certify(entry(w, A, B, seq, seq, xs[-1].entry_id if xs else prev), [0, 2, 3]))
        ys.append(w.certify(entry(w, A, C, seq, seq, ys[-1].entry_id if ys else prev), [1, 2, 3]))
    others = [w.certify(w.entry(B, Transfer(C.public, 1), seq=1, prev=ZERO_ID))]
    pool = shared + xs + ys + others
    order = data.draw(st.permutations(pool), label="order")
    repeats = data.draw(st.lists(st.sampled_from(pool), max_size=4), label="repeats")
    ledger = Ledger(w.economy)
    for cert in [*order, *repeats]:
        fork_seq = ledger.state.fork_seq(A.public)
        try:
            applied = ledger.apply(cert)
        except Refused as exc:
            assert exc.reason in (Reason.CONFLICT, Reason.FORKED), exc
            assert cert.entry.author == A.public
            assert cert.entry.seq > common
        else:
            for entry_id in applied:
                done = next(c for c in pool if c.entry_id == entry_id).entry
                assert done.author != A.public or not forked(fork_seq, done.seq)
    # Both certificates of the first forked slot were delivered, one of them
    # applied or waiting when the other came: that fork is always proven.
    assert ledger.state.fork_seq(A.public) == common + 1
    assert ledger.account(A.public).seq in (common, common + 1, common + 2, common + 3)
    for evidence in ledger.forks:
        assert evidence.verify(w.economy) == (w.vkeys[2].public, w.vkeys[3].public)
    assert ledger.account(B.public).seq == 1
    assert sum(a.balance for a in ledger.state.accounts.values()) == 0  # type: ignore[attr-defined]
