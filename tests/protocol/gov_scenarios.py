"""Governance worlds for the tests, and one scenario per governance refusal.

``GOV_SCENARIOS`` joins ``test_reasons.SCENARIOS`` (every reason has a
scenario that produces it and changes nothing); ``test_governance.py``
builds its stories on the same :func:`council`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mycelia.protocol import Certificate, Entry, Reason, codec
from mycelia.protocol.economy import Validator
from mycelia.protocol.gov_bodies import (
    ABSOLUTE,
    CONSENT,
    MAJORITY,
    QUADRATIC,
    CommitteeSet,
    GovEnact,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    Tally,
)
from mycelia.protocol.seals import seal
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import World, genesis, key, validator_keys
from mycelia.testing.governance import GovWorld

STEWARD = key(10, "steward")
MEMBERS = [key(i, "member") for i in range(9)]
LATE = key(20, "member")  # admitted after the proposals of the scenarios
RAISE = PolicySet((("default_limit", 2_000),))


def council(n_validators: int = 4, admitted: int = len(MEMBERS)) -> GovWorld:
    """An approved-membership economy: one steward, ``admitted`` members."""
    vk = validator_keys(n_validators)
    w = GovWorld(genesis(validators=vk, membership="approved", stewards=[STEWARD]), vk)
    for m in MEMBERS[:admitted]:
        w.admit(STEWARD, m)
    return w


def electorate(w: GovWorld) -> int:
    """The member count the validators know: the steward and the admitted."""
    return 1 + sum(1 for m in [*MEMBERS, LATE] if w.ledger.account(m.public).admitted)


def method(w: GovWorld, name: str) -> Method:
    return Method(name, electorate(w)) if name == MAJORITY else Method(name)


Scenario = tuple[World | None, Callable[[], object]]


def s_voting_closed() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.close(p)
    signed = w.entry(MEMBERS[0], _vote(p, "yes"))
    return w, lambda: w.ledger.check(signed)


def _vote(p: Certificate, choice: str, n: int = 0) -> GovVote:
    return GovVote(p.entry_id, choice, n)


def bare_enactment(w: GovWorld, p: Certificate) -> GovEnact:
    """An enactment without evidence into the next epoch (consent's form)."""
    return GovEnact(p.entry_id, w.economy.epoch + 1, Tally())


def s_voting_open() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    for m in MEMBERS[:4]:
        w.vote(m, p, "yes")
    close = w.record(p).close_ms
    record = w.record(p)
    seals = [
        seal(k, w.economy, p.entry_id, record, w.held.get(k.public, []), close)
        for k in w.committee_keys()
    ]
    body = w.enactment(p, seals)
    signed = w.entry(STEWARD, body)  # stamped before the close
    assert signed.entry.ts_ms < close
    return w, lambda: w.ledger.check(signed)


def s_not_eligible() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.admit(STEWARD, LATE)
    signed = w.entry(LATE, _vote(p, "yes"))
    return w, lambda: w.ledger.check(signed)


def s_already_voted() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    w.vote(MEMBERS[0], p, "yes")
    signed = w.entry(MEMBERS[0], _vote(p, "no"))
    return w, lambda: w.ledger.check(signed)


def s_objected() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(CONSENT))
    w.object(MEMBERS[2], p)
    w.close(p)
    signed = w.entry(STEWARD, bare_enactment(w, p))
    return w, lambda: w.ledger.check(signed)


def s_tally_mismatch() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    for m in MEMBERS[:3]:
        w.vote(m, p, "yes")
    w.vote(MEMBERS[3], p, "no")
    w.close(p)
    honest = w.enactment(p, w.seals(p))
    assert honest.tally == Tally(3, 1, 0)
    # the enactor leaves the certified "no" out of the tally it states
    signed = w.entry(STEWARD, dataclasses.replace(honest, tally=Tally(3, 0, 0)))
    return w, lambda: w.ledger.check(signed)


def s_epoch_taken() -> Scenario:
    w = council()
    p1 = w.propose(STEWARD, RAISE, Method(CONSENT))
    p2 = w.propose(STEWARD, PolicySet((("default_limit", 3_000),)), Method(CONSENT))
    w.close(p2)
    late = w.enactment(p2)  # for epoch 1, built before p1's enactment is applied
    w.enact(STEWARD, w.enactment(p1))
    signed = w.entry(STEWARD, late)
    return w, lambda: w.ledger.check(signed)


def s_unknown_action() -> Scenario:
    w = council()
    body = GovPropose("policy.set", RAISE, Method(CONSENT), w.clock + 10**9)
    wire = Entry(w.id, STEWARD.public, 1, ZERO_ID, w.clock, body).to_wire()
    wire[8][0] = "fed.agree"
    return w, lambda: Entry.decode(codec.encode(wire))


def s_bad_seal() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    for m in MEMBERS[:4]:
        w.vote(m, p, "yes")
    w.close(p)
    body = w.enactment(p, w.seals(p))
    first = body.seals[0]
    forged = dataclasses.replace(first, signature=bytes(64))
    signed = w.entry(STEWARD, dataclasses.replace(body, seals=(forged, *body.seals[1:])))
    return w, lambda: w.ledger.check(signed)


def s_insufficient_credits() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(QUADRATIC))
    n = 11  # 121 > the default 100 voice credits
    assert n * n > w.economy.settings.voice_credits
    signed = w.entry(MEMBERS[0], _vote(p, "yes", n))
    return w, lambda: w.ledger.check(signed)


def s_threshold_not_met() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, method(w, MAJORITY))
    for m, choice in zip(MEMBERS[:4], ["yes", "yes", "no", "no"], strict=True):
        w.vote(m, p, choice)
    w.close(p)
    signed = w.entry(STEWARD, w.enactment(p, w.seals(p)))  # a tie: stated truly
    return w, lambda: w.ledger.check(signed)


def s_bad_payload() -> Scenario:
    w = council()
    vk = w.committee_keys()
    low = CommitteeSet(tuple(Validator(k.public, 1) for k in vk), 2)  # 2 of 4: not > 2/3
    close = w.clock + 1 + w.economy.settings.min_voting_ms
    signed = w.entry(STEWARD, GovPropose("committee.set", low, Method(ABSOLUTE), close))
    return w, lambda: w.ledger.check(signed)


def s_already_enacted() -> Scenario:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(CONSENT))
    w.close(p)
    w.enact(STEWARD, w.enactment(p))
    signed = w.entry(STEWARD, bare_enactment(w, p))
    return w, lambda: w.ledger.check(signed)


GOV_SCENARIOS: dict[Reason, Callable[[], Scenario]] = {
    Reason.VOTING_CLOSED: s_voting_closed,
    Reason.VOTING_OPEN: s_voting_open,
    Reason.NOT_ELIGIBLE: s_not_eligible,
    Reason.ALREADY_VOTED: s_already_voted,
    Reason.OBJECTED: s_objected,
    Reason.TALLY_MISMATCH: s_tally_mismatch,
    Reason.EPOCH_TAKEN: s_epoch_taken,
    Reason.UNKNOWN_ACTION: s_unknown_action,
    Reason.BAD_SEAL: s_bad_seal,
    Reason.INSUFFICIENT_CREDITS: s_insufficient_credits,
    Reason.THRESHOLD_NOT_MET: s_threshold_not_met,
    Reason.BAD_PAYLOAD: s_bad_payload,
    Reason.ALREADY_ENACTED: s_already_enacted,
}

__all__ = [
    "GOV_SCENARIOS",
    "LATE",
    "MEMBERS",
    "RAISE",
    "STEWARD",
    "bare_enactment",
    "council",
    "electorate",
    "method",
]
