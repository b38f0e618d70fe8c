"""Counting a proposal's ballots: direct votes, delegations, thresholds.

Why this exists: an enactment states a tally and every validator recomputes
it (``governance.py``); the count must be a pure function of the ballots
the enactment accounts for, so that every honest validator gets the same
numbers. This module is that function and the pass rule of each method.

Which ballots count for proposal *p* (``relevant``):

* a ``gov.vote`` naming *p*;
* a ``gov.delegate`` whose scope is *p* or empty (every proposal), made
  before *p*'s close (its ``ts_ms``) and lasting to it (``until >=
  close_ms``).

The count (:func:`count`):

* one direct vote per voter (a second is refused by its lock; were two ever
  certified, only by a faulty quorum, the smaller entry id counts);
* ``majority``: a vote weighs 1; a voter with no direct vote is carried by
  its latest delegation (highest seq; the smaller id on a tie) to the
  delegate, and on through the delegate's own latest delegation, until a
  direct voter is reached — whose choice the delegator's weight joins. A
  chain that comes back to a voter already on it (a cycle) or ends at
  someone who neither voted nor delegated carries nothing. A delegator
  must be in the electorate (``eligible``);
* ``quadratic``: a vote weighs its ``n``; no delegation (voice credits are
  the voter's own);
* ``absolute``: yes votes, 1 each; no delegation (a yes count that only
  grows needs no seals, and delegation could shrink it).

Pass rules (:func:`passes`): ``majority`` — yes > no and ``cast × 10 000 ≥
participation_bps × electorate``; ``quadratic`` — yes > no; ``absolute`` —
yes ≥ ``absolute_k``; ``consent`` — no tally (no objection certified).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mycelia.protocol.economy import MAX_BPS, GovSettings
from mycelia.protocol.gov_bodies import (
    ABSOLUTE,
    MAJORITY,
    NO,
    QUADRATIC,
    YES,
    Ballot,
    DelegationBallot,
    ProposalRecord,
    Tally,
    VoteBallot,
)

__all__ = ["count", "counts_for", "passes", "relevant"]


def counts_for(
    proposal_id: bytes,
    proposal: ProposalRecord,
    *,
    vote: bool,
    scope: bytes,
    ts_ms: int,
    until: int,
) -> bool:
    """The relevance rule (module docstring) on a ballot's parts: a vote's
    ``scope`` is its proposal."""
    if vote:
        return scope == proposal_id
    return scope in (b"", proposal_id) and ts_ms < proposal.close_ms <= until


def relevant(proposal_id: bytes, proposal: ProposalRecord, ballot: Ballot) -> bool:
    """Whether ``ballot`` is one of proposal ``proposal_id``'s (docstring)."""
    if isinstance(ballot, VoteBallot):
        return counts_for(
            proposal_id, proposal, vote=True, scope=ballot.proposal, ts_ms=ballot.ts_ms, until=0
        )
    return counts_for(
        proposal_id,
        proposal,
        vote=False,
        scope=ballot.scope,
        ts_ms=ballot.ts_ms,
        until=ballot.until,
    )


def count(
    proposal_id: bytes,
    proposal: ProposalRecord,
    ballots: Mapping[bytes, Ballot],
    eligible: Callable[[bytes], bool],
) -> Tally:
    """The tally of ``ballots`` (id -> ballot; irrelevant ones are ignored).
    ``eligible(account)``: whether a delegator is in the electorate (it may
    raise a curable refusal when the checker cannot tell yet)."""
    method = proposal.method.name
    direct: dict[bytes, tuple[bytes, VoteBallot]] = {}
    delegations: dict[bytes, tuple[int, bytes, DelegationBallot]] = {}
    for bid in sorted(ballots):
        ballot = ballots[bid]
        if not relevant(proposal_id, proposal, ballot):
            continue
        if isinstance(ballot, VoteBallot):
            if ballot.voter not in direct:  # ascending ids: the smaller one stays
                direct[ballot.voter] = (bid, ballot)
        elif method == MAJORITY:
            held = delegations.get(ballot.voter)
            if held is None or ballot.seq > held[0]:
                delegations[ballot.voter] = (ballot.seq, bid, ballot)
    weights = {YES: 0, NO: 0, "abstain": 0}
    for _bid, vote in direct.values():
        if method == ABSOLUTE and vote.choice != YES:
            continue
        weights[vote.choice] += vote.n if method == QUADRATIC else 1
    for voter in sorted(delegations):
        if voter in direct:
            continue  # a direct vote overrides the voter's delegation
        chosen = _carried_to(voter, direct, delegations)
        if chosen is None or not eligible(voter):
            continue
        weights[chosen] += 1
    return Tally(weights[YES], weights[NO], weights["abstain"])


def _carried_to(
    voter: bytes,
    direct: Mapping[bytes, tuple[bytes, VoteBallot]],
    delegations: Mapping[bytes, tuple[int, bytes, DelegationBallot]],
) -> str | None:
    """The choice ``voter``'s delegation chain reaches, or None."""
    seen = {voter}
    at = delegations[voter][2].delegate
    while at not in direct:
        if at in seen or at not in delegations:
            return None
        seen.add(at)
        at = delegations[at][2].delegate
    return direct[at][1].choice


def passes(proposal: ProposalRecord, tally: Tally, settings: GovSettings) -> bool:
    """Whether ``tally`` passes ``proposal``'s method under ``settings``
    (the proposal's epoch's)."""
    method = proposal.method
    if method.name == MAJORITY:
        return (
            tally.yes > tally.no
            and tally.cast * MAX_BPS >= settings.participation_bps * method.electorate
        )
    if method.name == QUADRATIC:
        return tally.yes > tally.no
    if method.name == ABSOLUTE:
        return tally.yes >= settings.absolute_k
    return True
