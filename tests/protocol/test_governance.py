"""Governance scenarios (issue 12): each method on both sides of its
threshold, votes after the close and twice, consent with and without an
objection, quadratic credits, delegation, an enactment that leaves out a
certified "no", two enactments racing for one epoch, the actions and their
payload rules, and the policy of a certificate's own epoch.

Every refusal is asserted with its reason and with the ledger unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from mycelia.protocol import (
    Certificate,
    Economy,
    Ledger,
    Reason,
    Refused,
    SignedEntry,
    SigningKey,
    Verdict,
    Vote,
    assemble,
)
from mycelia.protocol.economy import DAY_MS, Validator
from mycelia.protocol.electorate import admission_records
from mycelia.protocol.gov_bodies import (
    ABSOLUTE,
    CONSENT,
    MAJORITY,
    QUADRATIC,
    CommitteeSet,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    Tally,
)
from mycelia.protocol.governance import voice_left
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.reasons import NeedAdmission, NeedCertificate
from mycelia.protocol.seals import Seal, open_seals
from mycelia.protocol.state import fact_key
from mycelia.testing.economies import genesis, impact_genesis, key, validator_keys
from mycelia.testing.governance import GovWorld, new_validators
from tests.protocol.gov_scenarios import (
    LATE,
    MEMBERS,
    RAISE,
    STEWARD,
    bare_enactment,
    council,
    electorate,
    method,
)

A, B, C, D, E, F, G, H, J = MEMBERS


def refused(w: GovWorld, signed: SignedEntry, **kw: int) -> Verdict:
    """``signed`` is refused by ``w``'s ledger, which stays as it was."""
    before = w.ledger.state.snapshot()
    verdict = w.ledger.check(signed, **kw)
    assert not verdict.ok
    assert w.ledger.state.snapshot() == before
    return verdict


def reason(w: GovWorld, author: SigningKey, body: object, **kw: int) -> Reason | None:
    return refused(w, w.entry(author, body), **kw).reason


def enacts(w: GovWorld, body: GovEnact) -> bool:
    """Whether ``body`` is accepted (then it is certified and applied)."""
    signed = w.entry(STEWARD, body)
    if not w.ledger.check(signed).ok:
        return False
    w.ledger.apply(w.certify(signed))
    return True


def ballots(w: GovWorld, p: Certificate, choices: list[str], n: list[int] | None = None) -> None:
    for voter, choice, k in zip(MEMBERS, choices, n or [0] * len(choices), strict=False):
        w.vote(voter, p, choice, k)


# -- each method on both sides of its threshold ----------------------------------------------


@pytest.mark.parametrize(
    ("choices", "passes"),
    [
        (["yes", "yes", "no"], True),
        (["yes", "no"], False),  # a tie is not a majority
        (["yes", "yes", "no", "no"], False),
        (["yes", "abstain"], True),  # cast 2 of 10 = exactly the 20 % participation
        (["yes"], False),  # 1 of 10 is below it
    ],
)
def test_majority_needs_more_yes_than_no_and_the_participation_quorum(
    choices: list[str], passes: bool
) -> None:
    w = council()
    assert electorate(w) == 10
    assert w.economy.settings.participation_bps == 2_000
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    ballots(w, p, choices)
    w.close(p)
    body = w.enactment(p, w.seals(p))
    assert body.tally == Tally(choices.count("yes"), choices.count("no"), choices.count("abstain"))
    if passes:
        assert enacts(w, body)
        assert w.economy.epoch == 1
        assert w.economy.default_limit == 2_000
    else:
        assert reason(w, STEWARD, body) is Reason.THRESHOLD_NOT_MET
        assert w.economy.epoch == 0


def test_the_electorate_is_the_member_count_known_at_least() -> None:
    w = council()
    known = electorate(w)
    close = w.clock + 100 + w.economy.settings.min_voting_ms
    low = GovPropose("policy.set", RAISE, Method(MAJORITY, known - 1), close)
    assert reason(w, STEWARD, low) is Reason.TALLY_MISMATCH
    w.commit(STEWARD, dataclasses.replace(low, method=Method(MAJORITY, known)))
    # a larger electorate only makes the participation quorum harder
    w.commit(STEWARD, dataclasses.replace(low, method=Method(MAJORITY, known + 5)))


@pytest.mark.parametrize(("yes", "passes"), [(3, True), (2, False)])
def test_absolute_needs_k_yes_votes_and_no_seals(yes: int, passes: bool) -> None:
    w = council()
    assert w.economy.settings.absolute_k == 3
    p = w.propose(STEWARD, RAISE, Method(ABSOLUTE))
    yes_votes = [w.vote(m, p, "yes") for m in MEMBERS[:yes]]
    w.vote(MEMBERS[yes], p, "no")  # a no changes nothing in absolute
    body = w.enactment(p, yes_votes=yes_votes)  # before the close: it only grows
    assert body.tally == Tally(yes, 0, 0)
    assert body.seals == ()
    if passes:
        assert enacts(w, body)
        assert w.economy.default_limit == 2_000
    else:
        assert reason(w, STEWARD, body) is Reason.THRESHOLD_NOT_MET


def test_absolute_lists_only_yes_votes_on_the_proposal() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(ABSOLUTE))
    yes = [w.vote(m, p, "yes") for m in MEMBERS[:3]]
    no = w.vote(D, p, "no")
    body = w.enactment(p, yes_votes=yes)
    padded = dataclasses.replace(
        body, ballots=tuple(sorted([*body.ballots, no.entry_id])), tally=Tally(4, 0, 0)
    )
    assert reason(w, STEWARD, padded) is Reason.TALLY_MISMATCH


@pytest.mark.parametrize(("yes_n", "no_n", "passes"), [(3, 2, True), (2, 2, False), (1, 2, False)])
def test_quadratic_passes_on_more_yes_votes_than_no(yes_n: int, no_n: int, passes: bool) -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(QUADRATIC))
    w.vote(A, p, "yes", yes_n)
    w.vote(B, p, "no", no_n)
    w.close(p)
    body = w.enactment(p, w.seals(p))
    assert body.tally == Tally(yes_n, no_n, 0)
    if passes:
        assert enacts(w, body)
    else:
        assert reason(w, STEWARD, body) is Reason.THRESHOLD_NOT_MET


def test_consent_passes_without_an_objection_and_never_with_one() -> None:
    w = council()
    quiet = w.propose(STEWARD, RAISE, Method(CONSENT))
    blocked = w.propose(STEWARD, PolicySet((("default_limit", 5),)), Method(CONSENT))
    objection = w.object(C, blocked)
    assert reason(w, STEWARD, bare_enactment(w, blocked)) is Reason.VOTING_OPEN
    w.close(blocked)
    assert reason(w, STEWARD, bare_enactment(w, blocked)) is Reason.OBJECTED
    # the objection holds ("gov.outcome", p): a validator that locked it
    # never votes for the enactment, even one that has not applied it yet
    locks = dict.fromkeys(resources(objection.entry), objection.entry_id)
    attempt = w.entry(STEWARD, bare_enactment(w, blocked))
    with pytest.raises(Refused) as info:
        lock_decision(locks, attempt.id, resources(attempt.entry))
    assert info.value.reason is Reason.RESOURCE_LOCKED
    assert enacts(w, w.enactment(quiet))
    assert w.economy.default_limit == 2_000
    # the blocked proposal stays blocked in the next epoch too
    assert reason(w, STEWARD, bare_enactment(w, blocked)) is Reason.OBJECTED
    # and after the close nobody objects any more
    assert reason(w, D, GovObject(quiet.entry_id)) is Reason.VOTING_CLOSED


def test_an_objection_before_the_close_only_and_on_consent_only() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(CONSENT))
    m = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    assert reason(w, A, GovObject(m.entry_id)) is Reason.NOT_ALLOWED
    assert reason(w, A, GovVote(p.entry_id, "no")) is Reason.NOT_ALLOWED
    w.admit(STEWARD, LATE)
    assert reason(w, LATE, GovObject(p.entry_id)) is Reason.NOT_ELIGIBLE
    w.close(p)
    assert reason(w, A, GovObject(p.entry_id)) is Reason.VOTING_CLOSED


# -- votes: after the close, twice, eligibility -------------------------------------------------


def test_a_vote_after_the_close_is_refused_by_clock_and_by_timestamp() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    close = w.record(p).close_ms
    w.at(close - 10)
    early = w.entry(A, GovVote(p.entry_id, "yes"))
    assert w.ledger.check(early, now_ms=close - 1).ok
    # the same entry, checked by a validator whose clock passed the close
    assert refused(w, early, now_ms=close).reason is Reason.VOTING_CLOSED
    w.at(close)
    assert reason(w, B, GovVote(p.entry_id, "yes"), now_ms=close - 5) is Reason.VOTING_CLOSED


def test_a_double_vote_is_refused_by_the_lock_and_by_the_state() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    first = w.entry(A, GovVote(p.entry_id, "yes"))
    cert = w.certify(first)
    # a validator that voted for the first: the second consumes the same resource
    second_signed = w.entry(A, GovVote(p.entry_id, "no"), seq=2, prev=first.id)
    locks = dict.fromkeys(resources(first.entry), first.id)
    with pytest.raises(Refused) as info:
        lock_decision(locks, second_signed.id, resources(second_signed.entry))
    assert info.value.reason is Reason.RESOURCE_LOCKED
    # and one that applied the first's certificate refuses it outright
    w.ledger.apply(cert)
    assert reason(w, A, GovVote(p.entry_id, "no")) is Reason.ALREADY_VOTED


def test_only_members_admitted_before_the_proposal_vote() -> None:
    w = council(admitted=3)
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.admit(STEWARD, D)  # after the proposal
    assert reason(w, D, GovVote(p.entry_id, "yes")) is Reason.NOT_ELIGIBLE
    # an account this validator has not seen admitted: curable
    verdict = refused(w, w.entry(E, GovVote(p.entry_id, "yes")))
    assert verdict.reason is Reason.NOT_MEMBER
    assert verdict.needs == (NeedAdmission(E.public),)
    # the steward is a member by policy
    w.vote(STEWARD, p, "yes")


def test_in_an_open_economy_the_stewards_govern() -> None:
    vk = validator_keys(4)
    w = GovWorld(genesis(validators=vk, stewards=[STEWARD]), vk)
    p = w.propose(STEWARD, RAISE, Method(ABSOLUTE))
    assert reason(w, A, GovVote(p.entry_id, "yes")) is Reason.NOT_ELIGIBLE
    w.vote(STEWARD, p, "yes")


def test_a_vote_on_an_unknown_proposal_is_missing_it() -> None:
    w = council()
    verdict = refused(w, w.entry(A, GovVote(b"\x07" * 32, "yes")))
    assert verdict.reason is Reason.MISSING
    assert verdict.needs == (NeedCertificate(b"\x07" * 32),)


# -- quadratic voice credits ----------------------------------------------------------------------


def test_quadratic_debits_n_squared_and_refuses_beyond_the_credits() -> None:
    w = council()
    settings = w.economy.settings
    assert settings.voice_credits == 100
    p1, p2 = (w.propose(STEWARD, RAISE, Method(QUADRATIC)) for _ in range(2))
    # open across the next voice period
    p3 = w.propose(STEWARD, RAISE, Method(QUADRATIC), voting_ms=settings.voice_period_ms + DAY_MS)

    def left() -> int:
        return voice_left(w.economy, w.ledger.state, A.public, w.clock + 1)

    w.vote(A, p1, "yes", 6)
    assert left() == 100 - 36
    assert reason(w, A, GovVote(p2.entry_id, "yes", 9)) is Reason.INSUFFICIENT_CREDITS  # +81
    w.vote(A, p2, "no", 8)  # 36 + 64: exactly the credits
    assert left() == 0
    assert reason(w, A, GovVote(p3.entry_id, "yes", 1)) is Reason.INSUFFICIENT_CREDITS
    assert voice_left(w.economy, w.ledger.state, B.public, w.clock + 1) == 100  # B's own
    # the next period gives new credits
    period_ms = settings.voice_period_ms
    w.at((w.clock // period_ms + 1) * period_ms)
    assert left() == 100
    w.vote(A, p3, "yes", 10)
    assert left() == 0
    assert w.ledger.state.get_record(fact_key("gov.ballot", p3.entry_id)) is None


def test_n_is_quadratic_only() -> None:
    w = council()
    q = w.propose(STEWARD, RAISE, Method(QUADRATIC))
    m = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    assert reason(w, A, GovVote(q.entry_id, "yes", 0)) is Reason.NOT_ALLOWED
    assert reason(w, A, GovVote(q.entry_id, "abstain", 1)) is Reason.NOT_ALLOWED
    assert reason(w, A, GovVote(m.entry_id, "yes", 1)) is Reason.NOT_ALLOWED


# -- delegation -----------------------------------------------------------------------------------


def tally_of(w: GovWorld, p: Certificate) -> Tally:
    w.close(p)
    return w.enactment(p, w.seals(p)).tally


def test_a_delegation_carries_its_voter_once() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.delegate(A, D)
    w.delegate(A, D)  # the latest counts: still one voter
    w.delegate(B, D, scope=p.entry_id)
    w.vote(D, p, "yes")
    w.vote(E, p, "no")
    assert tally_of(w, p) == Tally(3, 1, 0)


def test_a_direct_vote_overrides_the_delegation_in_either_order() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.vote(A, p, "no")  # before delegating
    w.delegate(A, D)
    w.delegate(B, D)
    w.vote(D, p, "yes")
    w.vote(B, p, "abstain")  # after delegating
    assert tally_of(w, p) == Tally(1, 1, 1)


def test_the_latest_delegation_counts() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.delegate(A, D)
    w.delegate(A, E)
    w.vote(D, p, "yes")
    w.vote(E, p, "no")
    assert tally_of(w, p) == Tally(1, 2, 0)


def test_a_delegation_chain_reaches_its_end_and_a_cycle_carries_nothing() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.delegate(A, B)
    w.delegate(B, C)  # A -> B -> C, C votes
    w.vote(C, p, "yes")
    w.delegate(D, E)
    w.delegate(E, F)
    w.delegate(F, D)  # D -> E -> F -> D, nobody votes
    w.delegate(G, D)  # into the cycle
    w.delegate(H, LATE)  # to someone who never votes
    w.vote(J, p, "no")
    assert tally_of(w, p) == Tally(3, 1, 0)


def test_delegations_do_not_count_outside_majority_or_past_their_until() -> None:
    w = council()
    q = w.propose(STEWARD, RAISE, Method(QUADRATIC))
    m = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    close = w.record(m).close_ms
    w.delegate(A, D)
    w.delegate(B, D, until=close - 1)  # ends before the close
    w.vote(D, q, "yes", 2)
    w.vote(D, m, "yes")
    w.vote(E, m, "no")
    assert tally_of(w, m) == Tally(2, 1, 0)
    assert w.enactment(q, w.seals(q)).tally == Tally(2, 0, 0)


def test_delegation_refusals() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    assert reason(w, A, GovDelegate(A.public, b"", w.clock + DAY_MS)) is Reason.MALFORMED_BODY
    assert reason(w, A, GovDelegate(B.public, b"", w.clock)) is Reason.NOT_ALLOWED
    backdated = w.entry(A, GovDelegate(B.public, b"", w.clock + DAY_MS))
    assert refused(w, backdated, now_ms=backdated.entry.ts_ms + 10 * 60_000).reason is (
        Reason.CLOCK_SKEW
    )
    w.close(p)
    assert reason(w, A, GovDelegate(B.public, p.entry_id, w.clock + DAY_MS)) is (
        Reason.VOTING_CLOSED
    )


# -- seals: nobody leaves out a certified "no" -------------------------------------------------


def test_an_enactment_cannot_leave_out_a_certified_no() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    yes = [w.vote(m, p, "yes", signers=[0, 1, 2]) for m in (A, B)]
    no = w.vote(C, p, "no", signers=[1, 2, 3])
    w.close(p)
    seals = w.seals(p)
    # every quorum of seals lists the "no": each has validator 1, 2 or 3
    for sealers in itertools.combinations(range(4), 3):
        chosen = [seals[i] for i in sealers]
        assert no.entry_id in {b for s in chosen for b in s.ballots}
        body = w.enactment(p, chosen)
        assert body.tally == Tally(2, 1, 0)
    honest = w.enactment(p, seals[:3])
    # stating a tally without it
    assert reason(w, STEWARD, dataclasses.replace(honest, tally=Tally(2, 0, 0))) is (
        Reason.TALLY_MISMATCH
    )
    # dropping it from the union breaks the seals that list it
    keep = tuple(b for b in honest.ballots if b != no.entry_id)
    dropped = dataclasses.replace(
        honest,
        ballots=keep,
        seals=tuple(dataclasses.replace(s, bitmap=b"\x03") for s in honest.seals),
        tally=Tally(2, 0, 0),
    )
    assert reason(w, STEWARD, dropped) is Reason.BAD_SEAL
    # seals short of a quorum (validators 1 and 2 list every ballot)
    assert {b for s in seals[1:3] for b in s.ballots} == set(honest.ballots)
    short = w.enactment(p, seals[:3])
    short = dataclasses.replace(short, seals=short.seals[1:])
    assert reason(w, STEWARD, short) is Reason.QUORUM_NOT_REACHED
    assert set(honest.ballots) == {*(c.entry_id for c in yes), no.entry_id}
    assert enacts(w, honest)


def test_a_ballot_no_quorum_could_certify_needs_no_certificate() -> None:
    """A Byzantine sealer lists a ballot nobody certified: with every
    validator sealed, it is excluded by the bound; with a bare quorum that
    includes the liar, it is required and the enactor must choose other seals."""
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.vote(A, p, "yes")
    w.vote(B, p, "yes")
    w.close(p)
    record = w.record(p)
    honest = w.seals(p)
    ghost = b"\x0b" * 32
    liar_key = w.committee_keys()[3]
    liar = Seal.make(liar_key, w.economy, p.entry_id, [*honest[3].ballots, ghost])
    assert record.close_ms <= w.clock + 1
    everyone = w.enactment(p, [*honest[:3], liar])
    union = open_seals(w.economy, p.entry_id, everyone)
    assert ghost in everyone.ballots
    assert union.excluded(ghost)
    assert enacts(w, everyone)
    w2 = council()
    p2 = w2.propose(STEWARD, RAISE, method(w2, MAJORITY))
    w2.vote(A, p2, "yes")
    w2.vote(B, p2, "yes")
    w2.close(p2)
    seals2 = w2.seals(p2)
    liar2 = Seal.make(w2.committee_keys()[3], w2.economy, p2.entry_id, [ghost])
    with pytest.raises(Refused) as info:
        w2.enactment(p2, [seals2[0], seals2[1], liar2])
    assert info.value.reason is Reason.MISSING
    assert info.value.needs == (NeedCertificate(ghost),)
    assert enacts(w2, w2.enactment(p2, seals2[:3]))


def test_a_seal_before_the_close_is_refused() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.vote(A, p, "yes")
    with pytest.raises(Refused) as info:
        w.seals(p)
    assert info.value.reason is Reason.VOTING_OPEN


# -- two enactments racing for one epoch ---------------------------------------------------------


class Lockbox:
    """An honest validator's lock table (``locks.py``) over one world."""

    def __init__(self) -> None:
        self.locks: dict[bytes, bytes] = {}

    def vote(self, w: GovWorld, i: int, signed: SignedEntry) -> Vote | None:
        if not w.ledger.check(signed).ok:
            return None
        try:
            new = lock_decision(self.locks, signed.id, resources(signed.entry))
        except Refused:
            return None
        self.locks.update(dict.fromkeys(new, signed.id))
        return Vote.make(w.committee_keys()[i], w.id, w.economy.epoch, signed.id)


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_two_enactments_racing_for_one_epoch_certify_exactly_one(order: tuple[int, ...]) -> None:
    w = council()
    p1 = w.propose(STEWARD, RAISE, Method(CONSENT))
    p2 = w.propose(STEWARD, PolicySet((("default_limit", 3_000),)), Method(CONSENT))
    w.close(p2)
    x = w.entry(STEWARD, w.enactment(p1))
    y = w.entry(A, w.enactment(p2))
    assert x.entry.body.epoch == y.entry.body.epoch == 1
    boxes = [Lockbox() for _ in range(4)]
    votes: dict[bytes, list[Vote]] = {x.id: [], y.id: []}
    # validator k sees x first iff it comes early in the order
    for rank, k in enumerate(order):
        first, second = (x, y) if rank % 2 == 0 else (y, x)
        for signed in (first, second):
            vote = boxes[k].vote(w, k, signed)
            if vote is not None:
                votes[signed.id].append(vote)
    certs = []
    for signed in (x, y):
        try:
            certs.append(assemble(w.economy, signed, votes[signed.id]))
        except Refused as exc:
            assert exc.reason is Reason.QUORUM_NOT_REACHED
    # each validator locked exactly one of them
    assert all(len(set(box.locks.values())) == 1 for box in boxes)
    assert len(certs) <= 1
    # with every vote cast, a 2-2 split certifies neither; otherwise one
    split = sorted(len(v) for v in votes.values())
    assert len(certs) == (0 if split == [2, 2] else 1)
    if not certs:
        return
    (winner,) = certs
    w.ledger.apply(winner)
    assert w.economy.epoch == 1
    loser = y if winner.entry_id == x.id else x
    assert refused(w, loser).reason is Reason.EPOCH_TAKEN
    # the runner-up enacts into the next epoch
    runner_up = p2 if loser is y else p1
    assert enacts(w, w.enactment(runner_up))
    assert w.economy.epoch == 2
    assert w.economy.current.proposal == runner_up.entry_id


def test_an_enactment_names_the_next_epoch_only() -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(CONSENT))
    w.close(p)
    body = w.enactment(p)
    assert reason(w, STEWARD, dataclasses.replace(body, epoch=2)) is Reason.WRONG_EPOCH
    assert enacts(w, body)
    assert reason(w, STEWARD, dataclasses.replace(body, epoch=1)) is Reason.EPOCH_TAKEN
    assert reason(w, STEWARD, dataclasses.replace(body, epoch=2)) is Reason.ALREADY_ENACTED


# -- actions --------------------------------------------------------------------------------------


def enact_consent(w: GovWorld, payload: PolicySet | CommitteeSet) -> None:
    p = w.propose(STEWARD, payload, Method(CONSENT))
    w.close(p)
    assert enacts(w, w.enactment(p))


def propose_refusal(w: GovWorld, action: str, payload: object) -> Reason | None:
    close = w.clock + 100 + w.economy.settings.min_voting_ms
    return reason(w, STEWARD, GovPropose(action, payload, Method(CONSENT), close))


def test_policy_set_changes_any_field_of_the_kind_and_the_settings() -> None:
    w = council()
    enact_consent(
        w,
        PolicySet(
            (
                ("default_limit", 7),
                ("gov.absolute_k", 5),
                ("gov.min_voting_ms", DAY_MS),
                ("stewards", [STEWARD.public, A.public]),
            )
        ),
    )
    assert w.economy.default_limit == 7
    assert w.economy.settings.absolute_k == 5
    assert w.economy.settings.min_voting_ms == DAY_MS
    assert w.economy.stewards == {STEWARD.public, A.public}
    assert w.economy.at(0).default_limit == 1_000
    enact_consent(w, PolicySet((("membership", "open"),)))
    assert w.economy.membership == "open"
    assert w.economy.epoch == 2


def test_policy_set_refusals() -> None:
    w = council()
    for payload in [
        PolicySet((("issuers", []),)),  # no such field in mutual credit
        PolicySet((("default_limit", -1),)),
        PolicySet((("membership", "closed"),)),
        PolicySet((("stewards", []),)),  # approved membership needs a steward
        PolicySet((("gov.participation_bps", 10_001),)),
        PolicySet((("gov.voice_credits", "many"),)),
    ]:
        assert propose_refusal(w, "policy.set", payload) is Reason.BAD_PAYLOAD, payload
    assert propose_refusal(w, "policy.set", PolicySet((("stewards", [bytes(32)]),))) is (
        Reason.BAD_KEY
    )
    with pytest.raises(Refused) as info:
        PolicySet((("membership", "open"), ("default_limit", 1)))  # not ascending
    assert info.value.reason is Reason.MALFORMED_BODY


def test_policy_set_in_issued_and_impact_economies() -> None:
    issuer = key(11, "issuer")
    vk = validator_keys(4)
    issued = GovWorld(
        genesis(kind="issued", validators=vk, stewards=[STEWARD], issuers=[(issuer, 500)]), vk
    )
    enact_consent(issued, PolicySet((("issuers", [[issuer.public, 9_000]]),)))
    assert issued.economy.issuers == {issuer.public: 9_000}
    impact = GovWorld(impact_genesis(validators=vk, stewards=[STEWARD]), vk)
    enact_consent(impact, PolicySet((("units_per_credit", 50),)))
    assert impact.economy.impact.units_per_credit == 50
    assert propose_refusal(impact, "policy.set", PolicySet((("default_limit", 5),))) is (
        Reason.BAD_PAYLOAD
    )


def test_committee_set_is_held_to_the_genesis_rules() -> None:
    w = council()
    vk = w.committee_keys()
    keys_ = [k.public for k in vk]
    for validators, quorum in [
        ([1, 1, 1, 1], 2),  # 2 of 4 is not above two thirds
        ([1, 1, 1, 1], 5),  # more than the weight
        ([3, 1, 1, 1], 4),  # 4 of 6 is not above two thirds
    ]:
        payload = CommitteeSet(
            tuple(Validator(k, x) for k, x in zip(keys_, validators, strict=True)), quorum
        )
        assert propose_refusal(w, "committee.set", payload) is Reason.BAD_PAYLOAD
    dup = CommitteeSet((Validator(keys_[0], 1), Validator(keys_[0], 1)), 2)
    assert propose_refusal(w, "committee.set", dup) is Reason.BAD_PAYLOAD
    bad = CommitteeSet((Validator(bytes(32), 1),), 1)
    assert propose_refusal(w, "committee.set", bad) is Reason.BAD_KEY
    ok = CommitteeSet(tuple(Validator(k, 1) for k in keys_), 3)
    w.propose(STEWARD, ok, Method(CONSENT))


def test_fed_agree_is_a_named_future_action() -> None:
    with pytest.raises(Refused) as info:
        GovPropose("fed.agree", RAISE, Method(CONSENT), 1)
    assert info.value.reason is Reason.UNKNOWN_ACTION
    assert "federation" in info.value.detail


def test_the_largest_committee_set_proposal_fits_an_entry() -> None:
    from mycelia.protocol.entries import MAX_ENTRY_BYTES
    from mycelia.protocol.gov_bodies import MAX_COMMITTEE
    from mycelia.protocol.schema import INT64_MAX

    w = council()
    big = CommitteeSet(
        tuple(Validator(k.public, 1 << 32) for k in new_validators(MAX_COMMITTEE)),
        (1 << 32) * MAX_COMMITTEE,
    )
    signed = w.entry(
        STEWARD, GovPropose("committee.set", big, Method(MAJORITY, (1 << 32) - 1), INT64_MAX)
    )
    assert len(signed.entry.encode()) <= MAX_ENTRY_BYTES


# -- epochs: the committee and policy of a certificate's own epoch ----------------------------


def test_a_committee_change_replaces_who_certifies() -> None:
    vk = validator_keys(4)
    new = new_validators(4)
    w = council()
    enact_consent(w, w.committee_set(new))
    assert w.economy.epoch == 1
    assert w.economy.validators == tuple(k.public for k in new)
    signed = w.entry(A, GovVote(b"\x01" * 32, "yes"))
    old = [Vote.make(k, w.id, 1, signed.id) for k in vk[:3]]
    with pytest.raises(Refused) as info:
        assemble(w.economy, signed, old)
    assert info.value.reason is Reason.NOT_VALIDATOR
    with pytest.raises(Refused) as info:
        old[0].verify(w.economy)
    assert info.value.reason is Reason.NOT_VALIDATOR


def test_a_certificate_applies_under_its_own_epochs_policy() -> None:
    """An impact claim certified in epoch 0 and applied after a rate change
    mints at epoch 0's rate (``Economy.at``)."""
    from mycelia.testing.economies import device_key

    vk = validator_keys(4)
    owner, host = key(30, "owner"), key(32, "host")
    w = GovWorld(impact_genesis(validators=vk, stewards=[STEWARD], units_per_credit=1_000), vk)
    dev = device_key(40)
    w.register(owner, dev, host)
    att = w.attest(host, w.readings(dev, [1, 2, 3], 2_000))
    claim = w.entry(owner, w.claim_body(dev, [att]))
    claim_cert = w.certify(claim)  # epoch 0, not applied yet
    enact_consent(w, PolicySet((("units_per_credit", 1),)))
    assert w.economy.impact.units_per_credit == 1
    w.ledger.apply(claim_cert)
    assert w.balance(owner) == 6  # 6000 Wh at 1000 a credit, not 6000
    # a node that replays every certificate from the genesis agrees
    replay = Ledger(Economy.from_genesis(w.genesis))
    certs = [w.ledger.state.certificate(i) for i in w.ledger.chain.values()]
    pending = sorted(certs, key=lambda c: (c.epoch, c.entry.ts_ms))
    while pending:
        retry = []
        for cert in pending:
            try:
                replay.apply(cert)
            except Refused as exc:
                assert exc.reason is Reason.WRONG_EPOCH
                retry.append(cert)
        assert len(retry) < len(pending)
        pending = retry
    assert replay.state.snapshot() == w.ledger.state.snapshot()
    assert replay.economy.epoch == 1


def test_admissions_keep_their_time_and_count_once() -> None:
    w = council(admitted=0)
    w.admit(STEWARD, A)
    second_steward = key(11, "steward")
    enact_consent(w, PolicySet((("stewards", [STEWARD.public, second_steward.public]),)))
    w.admit(second_steward, B)
    assert electorate(w) == 3
    records = admission_records([(A.public, 5), (A.public, 3), (B.public, 9)])
    assert records[fact_key("admission", A.public)] == b"\x03"
    assert len(records) == 3


def test_a_sealed_enactment_of_47_ballots_fits_an_entry() -> None:
    """docs/governance.md, "Sizes": three seals and 47 ballots at the largest
    field values fit the 2048-byte entry; 48 do not."""
    from mycelia.protocol import Entry
    from mycelia.protocol.entries import MAX_ENTRY_BYTES
    from mycelia.protocol.gov_bodies import SealRef
    from mycelia.protocol.quorum import make_bitmap
    from mycelia.protocol.schema import INT64_MAX

    def size(n: int) -> int:
        ballots = tuple(sorted(i.to_bytes(2, "big") + bytes(30) for i in range(n)))
        seals = tuple(SealRef(i, make_bitmap(range(n), n), bytes(64)) for i in range(3))
        body = GovEnact(bytes(32), 2**32, Tally(2**40, 2**40, 2**40), ballots, seals)
        return len(Entry(bytes(32), bytes(32), 2**40, bytes(32), INT64_MAX, body).encode())

    assert size(47) <= MAX_ENTRY_BYTES < size(48)


def test_policy_set_sets_the_channel_limit_an_economy_did_not_write() -> None:
    """``max_channel_ms`` (compute channels, docs/compute.md) is an optional
    trailing policy field: absent from the genesis, set by appending it."""
    from mycelia.protocol.channels import DEFAULT_MAX_CHANNEL_MS, MAX_CHANNEL_MS_BOUND

    w = council()
    assert w.economy.max_channel_ms == DEFAULT_MAX_CHANNEL_MS
    assert propose_refusal(
        w, "policy.set", PolicySet((("max_channel_ms", MAX_CHANNEL_MS_BOUND + 1),))
    ) is (Reason.BAD_PAYLOAD)
    enact_consent(w, PolicySet((("max_channel_ms", DAY_MS),)))
    assert w.economy.max_channel_ms == DAY_MS
    assert w.economy.at(0).max_channel_ms == DEFAULT_MAX_CHANNEL_MS
    enact_consent(w, PolicySet((("default_limit", 9), ("max_channel_ms", 2 * DAY_MS))))
    assert (w.economy.default_limit, w.economy.max_channel_ms) == (9, 2 * DAY_MS)
