"""Certificates and votes: what a forged, truncated or tampered certificate
is refused with, and how the ledger takes valid ones.

Every refusal is checked three ways — ``Certificate.verify(economy)``, the
same certificate re-decoded from its bytes, and ``Ledger.apply`` — each with
the exact :class:`Reason`, and the ledger's state, chains and gap buffer are
compared before and after: a refused certificate changes nothing. Where a
valid counterpart exists, it is then applied to the same ledger, so the
refusal is down to the forgery and not to the ledger's state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    Certificate,
    Entry,
    Ledger,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Transfer,
    Vote,
    assemble,
    codec,
    keys,
)
from mycelia.protocol.domains import ENTRY
from mycelia.protocol.gov_bodies import Method
from mycelia.protocol.quorum import make_bitmap
from mycelia.testing.economies import World, genesis, key, validator_keys
from mycelia.testing.governance import GovWorld, new_validators

A, B, C = key(1), key(2), key(3)
OUTSIDER = key(99, "validator")  # a well-formed key that is in no validator set
STEWARD = key(10, "steward")


def world(weights: Sequence[int] | None = None, nonce: bytes = b"") -> World:
    """Four validators (equal weights unless given) and a short history, so
    that "state unchanged" compares a non-empty ledger."""
    vk = validator_keys(4)
    w = World(genesis(validators=vk, weights=weights, nonce=nonce), vk)
    w.transfer(B, A, 40, "seed")
    w.transfer(A, C, 15, "lunch")
    return w


def refused(fn: Callable[[], object]) -> Refused:
    with pytest.raises(Refused) as info:
        fn()
    return info.value


def ledger_state(ledger: Ledger) -> tuple[object, ...]:
    return ledger.state.snapshot(), dict(ledger.chain), ledger.pending_count


def assert_refused(
    w: World, cert: Certificate, reason: Reason, *, then_accepts: Certificate | None = None
) -> None:
    """``cert`` is refused with ``reason`` by verify, off the wire, and by
    ``w.ledger.apply``, which changes nothing; ``then_accepts`` still applies."""
    assert refused(lambda: cert.verify(w.economy)).reason is reason
    decoded = Certificate.decode(cert.encode())
    assert refused(lambda: decoded.verify(w.economy)).reason is reason
    before = ledger_state(w.ledger)
    assert refused(lambda: w.ledger.apply(cert)).reason is reason
    assert ledger_state(w.ledger) == before
    if then_accepts is not None:
        assert w.ledger.apply(then_accepts) == [then_accepts.entry_id]
        assert w.ledger.chain[(then_accepts.entry.author, then_accepts.entry.seq)] == (
            then_accepts.entry_id
        )


def votes(w: World, signed: SignedEntry, signers: Iterable[int]) -> list[Vote]:
    return [Vote.make(w.vkeys[i], w.id, w.economy.epoch, signed.id) for i in signers]


def sigs(w: World, signed: SignedEntry) -> list[bytes]:
    """Every validator's signature over ``signed``'s vote id, by index."""
    return [v.signature for v in votes(w, signed, range(len(w.vkeys)))]


def forge(
    signed: SignedEntry, bitmap: bytes, signatures: Iterable[bytes], epoch: int = 0
) -> Certificate:
    return Certificate(signed.entry, signed.signature, epoch, bitmap, tuple(signatures))


def next_transfer(w: World, amount: int = 7, memo: str = "rent") -> SignedEntry:
    return w.entry(A, Transfer(C.public, amount, memo))


# -- the valid certificate ------------------------------------------------------


def test_valid_certificate_verifies_round_trips_and_applies() -> None:
    w = world()
    signed = next_transfer(w)
    cert = w.certify(signed)
    assert cert.bitmap == bytes([0b0111])
    assert len(cert.signatures) == 3
    assert cert.entry_id == signed.id
    cert.verify(w.economy)
    decoded = Certificate.decode(cert.encode())
    assert decoded == cert
    assert decoded.entry_id == signed.id
    assert decoded.encode() == cert.encode()
    a_before, c_before = w.balance(A), w.balance(C)
    assert w.ledger.apply(decoded) == [signed.id]
    assert (w.balance(A), w.balance(C)) == (a_before - 7, c_before + 7)
    assert w.ledger.account(A.public).head == signed.id
    assert w.ledger.chain[(A.public, signed.entry.seq)] == signed.id


# -- wrong economy, wrong epoch -----------------------------------------------------


def test_certificate_of_another_economy_is_wrong_economy() -> None:
    ours, theirs = world(), world(nonce=b"theirs")
    assert ours.id != theirs.id
    signed = next_transfer(theirs)
    cert = theirs.certify(signed)
    cert.verify(theirs.economy)  # valid where it was made
    assert_refused(ours, cert, Reason.WRONG_ECONOMY, then_accepts=ours.certify(next_transfer(ours)))


def test_entry_naming_another_economy_certified_by_our_validators_is_refused() -> None:
    """The entry says economy B; A's validators signed A's vote id for it."""
    ours, theirs = world(), world(nonce=b"theirs")
    cross = ours.entry(A, Transfer(C.public, 7), economy=theirs.id)
    ballots = votes(ours, cross, range(3))
    # assemble refuses to build it; a forger builds it by hand.
    assert refused(lambda: assemble(ours.economy, cross, ballots)).reason is Reason.WRONG_ECONOMY
    cert = forge(cross, make_bitmap(range(3), 4), [v.signature for v in ballots])
    assert_refused(ours, cert, Reason.WRONG_ECONOMY)
    # In B the economy matches, but the quorum signed A's vote id, not B's.
    assert_refused(theirs, cert, Reason.BAD_SIGNATURE)


def test_certificate_for_another_epoch_is_wrong_epoch() -> None:
    w = world()
    signed = next_transfer(w)
    epoch1 = [Vote.make(w.vkeys[i], w.id, 1, signed.id) for i in range(3)]
    assert refused(lambda: assemble(w.economy, signed, epoch1)).reason is Reason.WRONG_EPOCH
    cert1 = forge(signed, make_bitmap(range(3), 4), [v.signature for v in epoch1], epoch=1)
    assert_refused(w, cert1, Reason.WRONG_EPOCH)
    # a relabelled epoch-0 certificate is no better
    cert0 = w.certify(signed)
    relabelled = dataclasses.replace(cert0, epoch=1)
    assert_refused(w, relabelled, Reason.WRONG_EPOCH, then_accepts=cert0)


def test_epoch_0_certificate_against_an_economy_in_epoch_1() -> None:
    """A certificate is verified against the committee of *its* epoch
    (``economy.committee``): after a ``committee.set`` replaced every
    validator, an epoch-0 certificate still verifies and applies, while the
    old validators cannot certify anything new (their votes for epoch 1 are
    not the committee's) and the new ones cannot forge the past."""
    vk = validator_keys(4)
    new = new_validators(4)
    w = GovWorld(genesis(validators=vk, stewards=[STEWARD]), vk)
    signed = next_transfer(w)
    cert0 = w.certify(signed)  # certified in epoch 0, not applied yet
    p = w.propose(STEWARD, w.committee_set(new), Method("consent"))
    w.close(p)
    w.enact(STEWARD, w.enactment(p))
    assert w.economy.epoch == 1
    assert w.economy.validators == tuple(k.public for k in new)
    later = w.economy
    cert0.verify(later)
    assert later.committee(0).keys == tuple(k.public for k in vk)
    ledger = Ledger(later)
    assert ledger.apply(cert0) == [cert0.entry_id]
    # the old validators voting in epoch 1 are not its committee
    old_votes = [Vote.make(vk[i], w.id, 1, signed.id) for i in range(3)]
    assert refused(lambda: assemble(later, signed, old_votes)).reason is Reason.NOT_VALIDATOR
    forged = forge(signed, make_bitmap(range(3), 4), [v.signature for v in old_votes], epoch=1)
    assert refused(lambda: forged.verify(later)).reason is Reason.BAD_SIGNATURE
    # the new committee's signatures relabelled as epoch 0 are no better
    new_votes = [Vote.make(new[i], w.id, 1, signed.id) for i in range(3)]
    cert1 = assemble(later, signed, new_votes)
    assert cert1.epoch == 1
    cert1.verify(later)
    assert refused(lambda: dataclasses.replace(cert1, epoch=0).verify(later)).reason is (
        Reason.BAD_SIGNATURE
    )
    # an economy that has not reached epoch 1 cannot verify its certificates
    assert refused(lambda: cert1.verify(later.at(0))).reason is Reason.WRONG_EPOCH


# -- the signer bitmap ----------------------------------------------------------------


def test_bitmap_naming_a_validator_whose_signature_is_not_given() -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    # validators 0, 1 and 3 signed; the bitmap claims 0, 1 and 2
    lying = forge(signed, make_bitmap([0, 1, 2], 4), [s[0], s[1], s[3]])
    honest = forge(signed, make_bitmap([0, 1, 3], 4), [s[0], s[1], s[3]])
    assert_refused(w, lying, Reason.BAD_SIGNATURE, then_accepts=honest)


def test_signatures_out_of_bitmap_order_are_refused() -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    swapped = forge(signed, make_bitmap([0, 1, 2], 4), [s[1], s[0], s[2]])
    assert_refused(w, swapped, Reason.BAD_SIGNATURE, then_accepts=w.certify(signed))


@pytest.mark.parametrize(
    ("bitmap", "signers"),
    [
        pytest.param(make_bitmap([0, 1, 2, 3], 4), [0, 1, 2], id="more-bits-than-signatures"),
        pytest.param(make_bitmap([0, 1, 2], 4), [0, 1, 2, 3], id="fewer-bits-than-signatures"),
        pytest.param(make_bitmap([0, 1, 2], 4), [0, 1], id="one-signature-missing"),
        pytest.param(b"", [0, 1, 2], id="empty-bitmap"),
        pytest.param(b"\x07\x00", [0, 1, 2], id="two-bytes-for-four-validators"),
        pytest.param(bytes([0b0001_0111]), [0, 1, 2, 3], id="stray-bit-4"),
        pytest.param(bytes([0b1000_0111]), [0, 1, 2, 3], id="stray-bit-7"),
        pytest.param(bytes([0b1111_0000]), [0, 1, 2, 3], id="only-stray-bits"),
    ],
)
def test_bad_bitmaps(bitmap: bytes, signers: list[int]) -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    bad = forge(signed, bitmap, [s[i] for i in signers])
    assert_refused(w, bad, Reason.BAD_BITMAP, then_accepts=w.certify(signed))


# -- duplicate signers ----------------------------------------------------------------


def test_one_validator_signature_used_for_two_validators() -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    dup = forge(signed, make_bitmap([0, 1, 2], 4), [s[0], s[0], s[2]])
    assert_refused(w, dup, Reason.BAD_SIGNATURE, then_accepts=w.certify(signed))


def test_heavy_validator_signature_used_twice_with_a_two_bit_bitmap() -> None:
    """Weights [5, 1, 1, 1], quorum 6: bits {0, 1} carry quorum, so only the
    signature check stands between validator 0 and counting itself twice."""
    w = world([5, 1, 1, 1])
    assert w.economy.quorum == 6
    signed = next_transfer(w)
    s = sigs(w, signed)
    dup = forge(signed, make_bitmap([0, 1], 4), [s[0], s[0]])
    assert_refused(
        w, dup, Reason.BAD_SIGNATURE, then_accepts=forge(signed, dup.bitmap, [s[0], s[1]])
    )


def test_assemble_counts_a_repeated_vote_once() -> None:
    w = world()
    signed = next_transfer(w)
    v0, v1, v2 = votes(w, signed, range(3))
    short = refused(lambda: assemble(w.economy, signed, [v0, v0, v1, v1, v0]))
    assert short.reason is Reason.QUORUM_NOT_REACHED
    cert = assemble(w.economy, signed, [v2, v0, v1, v0, v2])
    assert cert.bitmap == bytes([0b0111])
    assert cert.signatures == (v0.signature, v1.signature, v2.signature)
    assert cert == assemble(w.economy, signed, [v0, v1, v2])
    assert w.ledger.apply(cert) == [signed.id]


def test_assemble_counts_a_repeated_heavy_vote_once() -> None:
    w = world([5, 1, 1, 1])
    signed = next_transfer(w)
    v0, v1 = votes(w, signed, [0, 1])
    short = refused(lambda: assemble(w.economy, signed, [v0, v0]))
    assert short.reason is Reason.QUORUM_NOT_REACHED
    assert assemble(w.economy, signed, [v0, v0, v1]).signatures == (v0.signature, v1.signature)


# -- weight below quorum --------------------------------------------------------------


def test_two_of_four_equal_validators_are_short_of_quorum() -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    assert refused(lambda: assemble(w.economy, signed, votes(w, signed, [1, 3]))).reason is (
        Reason.QUORUM_NOT_REACHED
    )
    short = forge(signed, make_bitmap([1, 3], 4), [s[1], s[3]])
    assert_refused(w, short, Reason.QUORUM_NOT_REACHED, then_accepts=w.certify(signed))


def test_quorum_is_checked_before_any_signature() -> None:
    """Cheapest check first: garbage signatures short of quorum are refused
    for their weight, without being verified."""
    w = world()
    signed = next_transfer(w)
    junk = forge(signed, make_bitmap([0, 1], 4), [bytes(64), bytes(64)])
    assert_refused(w, junk, Reason.QUORUM_NOT_REACHED)


@pytest.mark.parametrize(
    ("signers", "ok"),
    [
        ((1, 2, 3), False),  # weight 3: every light validator together
        ((0,), False),  # weight 5
        ((1, 2), False),  # weight 2
        ((0, 1), True),  # weight 6
        ((0, 2), True),
        ((0, 3), True),
        ((0, 1, 2, 3), True),  # weight 8
    ],
)
def test_unequal_weights(signers: tuple[int, ...], ok: bool) -> None:
    w = world([5, 1, 1, 1])
    signed = next_transfer(w)
    s = sigs(w, signed)
    hand = forge(signed, make_bitmap(signers, 4), [s[i] for i in signers])
    if ok:
        cert = assemble(w.economy, signed, votes(w, signed, signers))
        assert cert == hand
        cert.verify(w.economy)
        assert w.ledger.apply(hand) == [signed.id]
    else:
        assembled = refused(lambda: assemble(w.economy, signed, votes(w, signed, signers)))
        assert assembled.reason is Reason.QUORUM_NOT_REACHED
        assert_refused(w, hand, Reason.QUORUM_NOT_REACHED, then_accepts=w.certify(signed, [0, 1]))


# -- non-validators -------------------------------------------------------------------


def test_non_validator_signature_in_the_signature_list() -> None:
    w = world()
    signed = next_transfer(w)
    s = sigs(w, signed)
    outsider = Vote.make(OUTSIDER, w.id, 0, signed.id).signature
    bad = forge(signed, make_bitmap([0, 1, 2], 4), [s[0], s[1], outsider])
    assert_refused(w, bad, Reason.BAD_SIGNATURE, then_accepts=w.certify(signed))


def test_assemble_refuses_a_vote_from_a_non_validator() -> None:
    w = world()
    signed = next_transfer(w)
    outsider = Vote.make(OUTSIDER, w.id, 0, signed.id)
    enough = votes(w, signed, range(3))
    # refused even when the validators' votes alone would reach quorum
    for batch in ([outsider, *enough], [*enough, outsider], [outsider]):
        assert refused(lambda b=batch: assemble(w.economy, signed, b)).reason is (
            Reason.NOT_VALIDATOR
        )


# -- tampering after certification ----------------------------------------------------


def _set_amount(entry: list[Any]) -> None:
    entry[8][1] += 1


def _set_memo(entry: list[Any]) -> None:
    entry[8][2] = "rent, honest"


def _set_recipient(entry: list[Any]) -> None:
    entry[8][0] = B.public


def _set_ts(entry: list[Any]) -> None:
    entry[6] += 1


TAMPERS = [
    pytest.param(_set_amount, id="amount"),
    pytest.param(_set_memo, id="memo"),
    pytest.param(_set_recipient, id="recipient"),
    pytest.param(_set_ts, id="ts"),
]


@pytest.mark.parametrize("tamper", TAMPERS)
def test_entry_tampered_on_the_wire_after_certification(
    tamper: Callable[[list[Any]], None],
) -> None:
    w = world()
    signed = next_transfer(w)
    cert = w.certify(signed)
    wire = cert.to_wire()
    tamper(wire[2])
    forged = Certificate.decode(codec.encode(wire))
    assert forged.entry != cert.entry
    assert forged.entry_id != cert.entry_id
    assert_refused(w, forged, Reason.BAD_SIGNATURE, then_accepts=cert)


@pytest.mark.parametrize("tamper", TAMPERS)
def test_entry_tampered_and_re_signed_by_its_author(tamper: Callable[[list[Any]], None]) -> None:
    """The author's key cannot move a certified entry: the quorum signed the old id."""
    w = world()
    signed = next_transfer(w)
    cert = w.certify(signed)
    wire = signed.entry.to_wire()
    tamper(wire)
    changed = Entry.from_wire(wire).sign(A)
    forged = Certificate(changed.entry, changed.signature, 0, cert.bitmap, cert.signatures)
    assert forged.entry_id == changed.id != cert.entry_id
    changed.verify()  # the author's own signature is fine
    assert_refused(w, forged, Reason.BAD_SIGNATURE, then_accepts=cert)


def test_tampered_author_signature() -> None:
    w = world()
    signed = next_transfer(w)
    cert = w.certify(signed)
    flipped = bytearray(cert.author_signature)
    flipped[5] ^= 0x40
    other = next_transfer(w, amount=8)  # the author's valid signature on another entry
    by_b = keys.sign(B, ENTRY, signed.id)  # another key's signature over the right id
    for bad_sig in (bytes(flipped), other.signature, by_b, bytes(64)):
        forged = dataclasses.replace(cert, author_signature=bad_sig)
        assert_refused(w, forged, Reason.BAD_SIGNATURE)
    assert w.ledger.apply(cert) == [signed.id]


# -- truncated and corrupted bytes ----------------------------------------------------


@cache
def _sample() -> tuple[World, bytes]:
    w = world()
    return w, w.certify(next_transfer(w)).encode()


def test_every_truncation_of_a_certificate_is_non_canonical() -> None:
    w, data = _sample()
    for cut in range(len(data)):
        got = refused(lambda c=cut: Certificate.decode(data[:c]))
        assert got.reason is Reason.NON_CANONICAL, (cut, got)
    assert refused(lambda: Certificate.decode(data + b"\x00")).reason is Reason.NON_CANONICAL
    Certificate.decode(data).verify(w.economy)  # the whole is fine


@given(data=st.data())
def test_a_flipped_byte_anywhere_is_refused(data: st.DataObject) -> None:
    w, blob = _sample()
    index = data.draw(st.integers(0, len(blob) - 1), label="index")
    xor = data.draw(st.integers(1, 255), label="xor")
    corrupt = bytearray(blob)
    corrupt[index] ^= xor
    before = ledger_state(w.ledger)
    try:
        cert = Certificate.decode(bytes(corrupt))
    except Refused:
        return
    reason = refused(lambda: cert.verify(w.economy)).reason
    assert refused(lambda: w.ledger.apply(cert)).reason is reason
    assert ledger_state(w.ledger) == before


# -- votes ----------------------------------------------------------------------------


def test_vote_round_trip_and_verify() -> None:
    w = world()
    signed = next_transfer(w)
    v = Vote.make(w.vkeys[2], w.id, 0, signed.id)
    assert v.validator == w.vkeys[2].public
    assert Vote.decode(v.encode()) == v
    assert v.to_wire()[:2] == ["vote", 1]
    v.verify(w.economy)
    assert Vote.make(w.vkeys[2], w.id, 0, signed.id) == v  # deterministic
    data = v.encode()
    for cut in range(len(data)):
        assert refused(lambda c=cut: Vote.decode(data[:c])).reason is Reason.NON_CANONICAL


def _flip(sig: bytes) -> bytes:
    return bytes([sig[0] ^ 1]) + sig[1:]


VOTE_FORGERIES: list[Any] = [
    pytest.param(
        lambda w, s, other: Vote.make(w.vkeys[0], other.id, 0, s.id),
        Reason.WRONG_ECONOMY,
        id="another-economy",
    ),
    pytest.param(
        lambda w, s, other: Vote.make(w.vkeys[0], w.id, 1, s.id), Reason.WRONG_EPOCH, id="epoch-1"
    ),
    pytest.param(
        lambda w, s, other: Vote.make(OUTSIDER, w.id, 0, s.id),
        Reason.NOT_VALIDATOR,
        id="non-validator",
    ),
    pytest.param(
        lambda w, s, other: dataclasses.replace(
            Vote.make(w.vkeys[0], w.id, 0, s.id),
            signature=_flip(Vote.make(w.vkeys[0], w.id, 0, s.id).signature),
        ),
        Reason.BAD_SIGNATURE,
        id="flipped-signature",
    ),
    pytest.param(
        lambda w, s, other: dataclasses.replace(
            Vote.make(w.vkeys[1], w.id, 0, s.id), validator=w.vkeys[0].public
        ),
        Reason.BAD_SIGNATURE,
        id="validator-1-signature-claimed-by-0",
    ),
    pytest.param(
        lambda w, s, other: dataclasses.replace(
            Vote.make(w.vkeys[0], other.id, 0, s.id), economy=w.id
        ),
        Reason.BAD_SIGNATURE,
        id="relabelled-economy",
    ),
    pytest.param(
        lambda w, s, other: dataclasses.replace(Vote.make(w.vkeys[0], w.id, 1, s.id), epoch=0),
        Reason.BAD_SIGNATURE,
        id="relabelled-epoch",
    ),
]


@pytest.mark.parametrize(("make", "reason"), VOTE_FORGERIES)
def test_vote_verify_and_assemble_refuse(
    make: Callable[[World, SignedEntry, World], Vote], reason: Reason
) -> None:
    w, other = world(), world(nonce=b"theirs")
    signed = next_transfer(w)
    bad = make(w, signed, other)
    assert refused(lambda: bad.verify(w.economy)).reason is reason
    assert refused(lambda: Vote.decode(bad.encode()).verify(w.economy)).reason is reason
    good = votes(w, signed, range(3))
    assert refused(lambda: assemble(w.economy, signed, [*good, bad])).reason is reason


def test_vote_for_a_swapped_entry_id_does_not_verify() -> None:
    w = world()
    signed, other = next_transfer(w), next_transfer(w, amount=9)
    v = dataclasses.replace(Vote.make(w.vkeys[0], w.id, 0, signed.id), entry_id=other.id)
    assert refused(lambda: v.verify(w.economy)).reason is Reason.BAD_SIGNATURE


def test_assemble_refuses_a_vote_for_another_entry() -> None:
    w = world()
    signed, other = next_transfer(w), next_transfer(w, amount=9)
    assert signed.entry.seq == other.entry.seq
    mixed = [*votes(w, signed, [0, 1]), *votes(w, other, [2])]
    assert refused(lambda: assemble(w.economy, signed, mixed)).reason is Reason.MALFORMED
    # every one of them is a valid vote on its own
    for v in mixed:
        v.verify(w.economy)


def test_vote_decode_refuses_wrong_shapes() -> None:
    w = world()
    v = Vote.make(w.vkeys[0], w.id, 0, next_transfer(w).id)
    short_id = v.to_wire()
    short_id[4] = short_id[4][:31]
    assert refused(lambda: Vote.decode(codec.encode(short_id))).reason is Reason.MALFORMED
    tagged = v.to_wire()
    tagged[0] = "cert"
    assert refused(lambda: Vote.decode(codec.encode(tagged))).reason is Reason.MALFORMED


# -- the ledger's gap buffer, conflicts and replays -----------------------------------


def chain_of(w: World, author: SigningKey, amounts: Iterable[int]) -> list[Certificate]:
    """Certificates for ``author``'s next entries (per ``w.ledger``), not applied."""
    acct = w.ledger.account(author.public)
    seq, prev, out = acct.seq, acct.head, []
    for amount in amounts:
        seq += 1
        signed = w.entry(author, Transfer(C.public, amount), seq=seq, prev=prev)
        out.append(w.certify(signed))
        prev = signed.id
    return out


def test_gap_is_buffered_and_applied_when_filled() -> None:
    w = world()
    c1, c2, c3 = chain_of(w, A, [1, 2, 3])
    before = ledger_state(w.ledger)
    assert w.ledger.apply(c3) == []
    assert w.ledger.apply(c2) == []
    assert w.ledger.pending_count == 2
    assert (w.ledger.state.snapshot(), dict(w.ledger.chain)) == before[:2]
    a, c = w.balance(A), w.balance(C)
    assert w.ledger.apply(c1) == [c1.entry_id, c2.entry_id, c3.entry_id]
    assert w.ledger.pending_count == 0
    assert (w.balance(A), w.balance(C)) == (a - 6, c + 6)
    assert w.ledger.account(A.public).head == c3.entry_id


def test_gap_of_one_returns_both_ids_in_order() -> None:
    w = world()
    c1, c2 = chain_of(w, A, [4, 5])
    assert w.ledger.apply(c2) == []
    assert w.ledger.pending_count == 1
    assert w.ledger.apply(c1) == [c1.entry_id, c2.entry_id]
    assert w.ledger.pending_count == 0


def test_buffered_certificate_is_verified_first() -> None:
    w = world()
    _, c2 = chain_of(w, A, [4, 5])
    bad = dataclasses.replace(c2, signatures=(c2.signatures[1], c2.signatures[0], c2.signatures[2]))
    before = ledger_state(w.ledger)
    assert refused(lambda: w.ledger.apply(bad)).reason is Reason.BAD_SIGNATURE
    assert ledger_state(w.ledger) == before


def test_second_certified_entry_at_an_applied_seq_is_conflict() -> None:
    w = world()
    (c1,) = chain_of(w, A, [4])
    (fork,) = chain_of(w, A, [5])  # same seq and prev, different entry
    assert fork.entry.seq == c1.entry.seq
    assert fork.entry_id != c1.entry_id
    fork.verify(w.economy)
    assert w.ledger.apply(c1) == [c1.entry_id]
    before = ledger_state(w.ledger)
    assert refused(lambda: w.ledger.apply(fork)).reason is Reason.CONFLICT
    assert ledger_state(w.ledger) == before


def test_second_certified_entry_at_a_buffered_seq_is_conflict() -> None:
    """Both waited in the gap buffer, neither was applied: the pair is fork
    evidence, the buffered one is dropped, and when the gap fills only the
    entry before the fork is applied (forks.py: nothing at or past it)."""
    w = world()
    c1, c2 = chain_of(w, A, [4, 5])
    fork2 = w.certify(w.entry(A, Transfer(B.public, 6), seq=c2.entry.seq, prev=c2.entry.prev))
    assert w.ledger.apply(c2) == []
    state, chain, _pending = ledger_state(w.ledger)
    assert refused(lambda: w.ledger.apply(fork2)).reason is Reason.CONFLICT
    assert ledger_state(w.ledger) == (state, chain, 0)
    assert [e.entry_ids for e in w.ledger.forks] == [tuple(sorted((c2.entry_id, fork2.entry_id)))]
    assert w.ledger.apply(c1) == [c1.entry_id]
    assert refused(lambda: w.ledger.apply(c2)).reason is Reason.FORKED


def test_reapplying_a_certificate_is_a_no_op() -> None:
    w = world()
    c1, c2, c3 = chain_of(w, A, [1, 2, 3])
    assert w.ledger.apply(c1) == [c1.entry_id]
    after_c1 = ledger_state(w.ledger)
    assert w.ledger.apply(c1) == []
    assert ledger_state(w.ledger) == after_c1
    # a buffered certificate delivered again is held once
    assert w.ledger.apply(c3) == []
    assert w.ledger.apply(c3) == []
    assert w.ledger.pending_count == 1
    assert w.ledger.apply(c2) == [c2.entry_id, c3.entry_id]
    settled = ledger_state(w.ledger)
    for old in (c1, c2, c3, Certificate.decode(c1.encode())):
        assert w.ledger.apply(old) == []
    assert ledger_state(w.ledger) == settled


def test_buffer_bound_refuses_with_buffer_full() -> None:
    w = World()
    ledger = Ledger(w.economy, max_pending=2)
    c1, c2, c3, c4 = chain_of(w, A, [1, 2, 3, 4])
    c_ahead = w.certify(w.entry(C, Transfer(A.public, 1), seq=2, prev=bytes(range(32))))
    assert ledger.apply(c2) == []
    assert ledger.apply(c3) == []
    assert ledger.pending_count == 2
    before = ledger_state(ledger)
    assert refused(lambda: ledger.apply(c4)).reason is Reason.BUFFER_FULL
    assert ledger_state(ledger) == before
    # another author's certificate ahead of its chain meets the same bound
    assert refused(lambda: ledger.apply(c_ahead)).reason is Reason.BUFFER_FULL
    assert ledger_state(ledger) == before
    # a duplicate of a held certificate is not a new one
    assert ledger.apply(c2) == []
    assert ledger_state(ledger) == before
    # filling the gap drains the buffer, and the refused one can come again
    assert ledger.apply(c1) == [c1.entry_id, c2.entry_id, c3.entry_id]
    assert ledger.pending_count == 0
    assert ledger.apply(c4) == [c4.entry_id]
    assert ledger.account(A.public).seq == 4
    assert ledger.account(C.public).balance == 10


def test_a_forked_successor_in_the_buffer_is_reported_not_raised() -> None:
    """A buffered seq 2 whose prev is not the seq 1 that fills the gap (a fork
    only a faulty quorum can make): seq 1 is applied and returned, the bad
    successor is dropped into ``conflicts``, nothing is left pending."""
    w = World()  # A has no history yet
    one = w.certify(w.entry(A, Transfer(C.public, 1)))
    forked = w.certify(w.entry(A, Transfer(C.public, 2), seq=2, prev=bytes(range(32))))
    ledger = Ledger(w.economy)
    assert ledger.apply(forked) == []
    assert ledger.apply(one) == [one.entry_id]
    assert ledger.account(A.public).seq == 1
    assert ledger.pending_count == 0
    assert [(c.entry_id, e.reason) for c, e in ledger.conflicts] == [
        (forked.entry_id, Reason.CONFLICT)
    ]


def test_entry_id_is_always_derived_from_the_entry() -> None:
    w = world()
    cert = w.certify(next_transfer(w, amount=7))
    other = next_transfer(w, amount=8).entry
    rebuilt = dataclasses.replace(cert, entry=other)
    assert rebuilt.entry_id == other.id != cert.entry_id
    assert refused(lambda: rebuilt.verify(w.economy)).reason is Reason.BAD_SIGNATURE


def test_a_certificate_keeps_its_bytes() -> None:
    """Decoded: ``encode`` returns the very bytes (no re-encoding on the way
    to the store, gossip or the RPC); assembled: encoded once; rebuilt with
    ``dataclasses.replace``: encoded afresh, never the stale bytes."""
    w = World()
    cert = w.transfer(key(1), key(2), 5)
    data = cert.encode()
    assert cert.encode() is data  # assembled: encoded once, then kept
    decoded = Certificate.decode(data)
    assert decoded.encode() == data
    assert decoded == cert
    other = w.certify(cert.signed_entry, signers=[1, 2, 3])
    rebuilt = dataclasses.replace(decoded, bitmap=other.bitmap, signatures=other.signatures)
    assert rebuilt.encode() == other.encode() != data
