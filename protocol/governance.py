"""The governance kinds' rules: propose, vote, delegate, object, enact.

Why this exists: an economy changes its policy and its validators through
certified entries, without consensus (DESIGN §7). These are the rules a
validator checks before voting and every node applies after a certificate;
the bodies are in ``gov_bodies.py``, the electorate in ``electorate.py``,
seals in ``seals.py``, the count in ``tally.py``, and what an enactment does
to the economy (the next epoch) in ``epochs.py``. ``docs/governance.md`` is
the whole picture.

Theory of operation
-------------------

Records (``state.py``'s kinds; the commutativity rule decides each):

* fact ``gov.proposal/<id>`` — :class:`~mycelia.protocol.gov_bodies.ProposalRecord`,
  written by the proposal; votes, objections and enactments read it
  (``missing`` with the id until the checker has it);
* fact ``gov.ballot/<id>`` — a vote or a delegation, written by the ballot;
  the enactment reads the ones it counts;
* own ``<voter>/gov.voted/<proposal>`` — the voter's certified vote
  (``already_voted``); own ``<voter>/gov.voice/<period>`` — quadratic
  voice credits spent in a period (the vote's ``ts_ms`` over the epoch's
  ``voice_period_ms``). Effects never read another author's record, so a
  vote's ``n`` is 0 outside ``quadratic`` and every vote spends ``n**2``;
* fact ``gov.objection/<proposal>``, fact ``gov.outcome/<proposal>`` — the
  certified objection and enactment (the smaller id, were there two);
* fact ``epoch/<n>`` — the enactment that created epoch *n* (``epochs.py``).

Checks, with their refusals (besides ``malformed_body`` and ``missing``):

============  ======================================================================
kind          rule
============  ======================================================================
gov.propose   author a member (``not_member``); the action known
              (``unknown_action``, at decoding) and its payload valid on the
              epoch in force (``bad_payload``, ``bad_key``); ``close_ms`` at
              least ``min_voting_ms`` and at most ``MAX_VOTING_MS`` after the
              entry's ``ts_ms`` (``not_allowed``) and after the checker's
              clock (``voting_closed``); a majority's electorate not below the
              member count known (``tally_mismatch``)
gov.vote      before the close by the checker's clock and by the entry's
              ``ts_ms`` (``voting_closed``); not on a consent proposal, ``n``
              ≥ 1 exactly in quadratic ones, no abstaining there
              (``not_allowed``); the voter in the electorate
              (``not_eligible``); no certified vote yet (``already_voted``;
              lock ``("gov.vote", proposal, voter)``); quadratic: ``n**2``
              within the credits left (``insufficient_credits``)
gov.delegate  delegator a member, not itself the delegate; scoped to an
              open proposal or to all (``voting_closed``); ``until`` not
              passed (``not_allowed``); ``ts_ms`` no more than
              :data:`DELEGATION_SKEW_MS` behind the checker's clock
              (``clock_skew``: a backdated delegation would count for
              proposals already closed)
gov.object    a consent proposal (``not_allowed``), before its close
              (``voting_closed``), objector in the electorate
              (``not_eligible``), not yet enacted (``already_enacted``);
              lock ``("gov.outcome", proposal)``
gov.enact     the epoch it creates is the checker's next (``epoch_taken``
              for one already made, ``wrong_epoch`` otherwise); not yet
              enacted (``already_enacted``); after the close by the
              checker's clock and ``ts_ms`` (``voting_open``) except
              ``absolute``; the method's evidence: consent — no objection
              (``objected``); absolute — the listed yes votes; majority and
              quadratic — a quorum of seals of the checker's epoch
              (``bad_seal``, ``quorum_not_reached``) and every required id's
              certificate; the stated tally equal to the recomputed one
              (``tally_mismatch``) and passing (``threshold_not_met``); the
              action still valid on the epoch in force (``bad_payload``).
              Locks ``("gov.outcome", proposal)`` and ``("epoch", epoch)``
============  ======================================================================

The ``gov.outcome`` lock makes an objection and an enactment exclusive; the
``epoch`` lock totally orders enactments: two racing for one epoch, at most
one is certified, and the other enacts into the next epoch after it
(DESIGN §7). Votes, objections and delegations are accepted in any epoch
until the close; a proposal's seals must be of the epoch its enactment is
checked in, which is why new validators seed the ballots from lock
snapshots too (``handover.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.context import Context, Kind
from mycelia.protocol.economy import MAX_VOTING_MS, Economy
from mycelia.protocol.electorate import check_eligible, member_count
from mycelia.protocol.gov_bodies import (
    ABSOLUTE,
    ABSTAIN,
    ACTIONS,
    CONSENT,
    MAJORITY,
    QUADRATIC,
    YES,
    Ballot,
    DelegationBallot,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    ProposalRecord,
    SealRef,
    Tally,
    VoteBallot,
    decode_ballot,
    encode_ballot,
)
from mycelia.protocol.reasons import NeedCertificate, Reason, Refused
from mycelia.protocol.seals import Seal, compress, open_seals
from mycelia.protocol.state import StateView, own_key
from mycelia.protocol.tally import count, passes

__all__ = [
    "BALLOT_FACT",
    "DELEGATION_SKEW_MS",
    "EPOCH_FACT",
    "OBJECTION_FACT",
    "OUTCOME_FACT",
    "PROPOSAL_FACT",
    "GovDelegateRule",
    "GovEnactRule",
    "GovObjectRule",
    "GovProposeRule",
    "GovVoteRule",
    "ballot",
    "enactment",
    "epoch_key",
    "fact_entry",
    "proposal",
    "voice_left",
    "voice_period",
    "voice_spent",
]

PROPOSAL_FACT = "gov.proposal"
BALLOT_FACT = "gov.ballot"
OBJECTION_FACT = "gov.objection"
OUTCOME_FACT = "gov.outcome"
EPOCH_FACT = "epoch"
VOTED_OWN = "gov.voted"
VOICE_OWN = "gov.voice"
#: How far behind the checker's clock a delegation's ``ts_ms`` may be (the
#: ledger's default tolerance ahead, ``ledger.MAX_SKEW_MS``).
DELEGATION_SKEW_MS = 120_000

_B = Reason.MALFORMED_BODY


def epoch_key(epoch: int) -> bytes:
    """The id part of the ``epoch/<n>`` fact: ``n`` as 8 bytes big-endian."""
    return epoch.to_bytes(8, "big")


def proposal(ctx: Context, proposal_id: bytes) -> ProposalRecord:
    """The certified proposal, or ``missing`` with its id."""
    raw = ctx.fact(PROPOSAL_FACT, proposal_id)
    if raw is None:
        raise Refused(
            Reason.MISSING,
            f"proposal {proposal_id.hex()} is not known here",
            (NeedCertificate(proposal_id),),
        )
    return ProposalRecord.decode(raw)


def ballot(ctx: Context, ballot_id: bytes) -> Ballot:
    """A certified ballot, or ``missing`` with its id."""
    raw = ctx.fact(BALLOT_FACT, ballot_id)
    if raw is None:
        raise Refused(
            Reason.MISSING,
            f"ballot {ballot_id.hex()} is not known here",
            (NeedCertificate(ballot_id),),
        )
    return decode_ballot(raw)


def voice_period(economy: Economy, ts_ms: int) -> bytes:
    """The id of the voice-credit period holding ``ts_ms`` under
    ``economy``'s settings: ``[voice_period_ms, ts_ms // voice_period_ms]``
    (a changed period length starts afresh)."""
    period_ms = economy.settings.voice_period_ms
    return codec.encode_trusted([period_ms, ts_ms // period_ms])


def _spent(raw: bytes | None) -> int:
    return 0 if raw is None else schema.int_(codec.decode(raw, max_size=16), "spent", 0)


def voice_spent(ctx: Context) -> int:
    """The entry author's voice credits spent in the period of the entry."""
    return _spent(ctx.own(VOICE_OWN, voice_period(ctx.economy, ctx.entry.ts_ms)))


def voice_left(economy: Economy, view: StateView, voter: bytes, ts_ms: int) -> int:
    """The voice credits ``voter`` has left for a quadratic vote stamped
    ``ts_ms`` (what a wallet shows)."""
    key = own_key(voter, VOICE_OWN, voice_period(economy, ts_ms))
    return economy.settings.voice_credits - _spent(view.get_record(key))


def _open(ctx: Context, p: ProposalRecord, what: str) -> None:
    """Refuse ``voting_closed`` at or after the close, by the checker's
    clock or by the entry's own timestamp."""
    clock = ctx.now()
    if clock >= p.close_ms or ctx.entry.ts_ms >= p.close_ms:
        raise Refused(
            Reason.VOTING_CLOSED,
            f"{what} at {max(clock, ctx.entry.ts_ms)}: the proposal closed at {p.close_ms}",
        )


def _put_min(ctx: Context, name: str, id_: bytes, *more: bytes) -> None:
    """Write the fact ``name/id_`` = ``[this entry's id, *more]``, keeping
    the smaller entry id were there two (only a faulty quorum certifies two)."""
    held = ctx.fact(name, id_)
    if held is None or ctx.entry_id < fact_entry(held):
        ctx.put_fact(name, id_, codec.encode_trusted([ctx.entry_id, *more]))


def fact_entry(raw: bytes) -> bytes:
    """The entry id an outcome, objection or epoch fact holds (its first field)."""
    f = schema.list_(codec.decode(raw, max_size=128), "fact", min_len=1, max_len=2)
    return schema.bytes_(f[0], "entry id", 32)


# -- gov.propose ----------------------------------------------------------------------


class GovProposeRule(Kind):
    name = GovPropose.kind

    @staticmethod
    def parse(raw: Any) -> GovPropose:
        return GovPropose.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.require_member(e.author, "proposer")
        economy = ctx.economy
        ACTIONS[b.action].check(economy.genesis, economy.current, b.payload)
        least = e.ts_ms + economy.settings.min_voting_ms
        if not least <= b.close_ms <= e.ts_ms + MAX_VOTING_MS:
            raise Refused(
                Reason.NOT_ALLOWED,
                f"close {b.close_ms} must be {economy.settings.min_voting_ms} to "
                f"{MAX_VOTING_MS} ms after the proposal ({e.ts_ms})",
            )
        if b.close_ms <= ctx.now():
            raise Refused(Reason.VOTING_CLOSED, f"close {b.close_ms} has passed")
        if b.method.name == MAJORITY:
            known = member_count(economy, ctx)
            if b.method.electorate < known:
                raise Refused(
                    Reason.TALLY_MISMATCH,
                    f"electorate {b.method.electorate} is below the {known} members known here",
                )

    @staticmethod
    def effects(ctx: Context) -> None:
        e = ctx.entry
        record = ProposalRecord(e.author, e.ts_ms, ctx.economy.epoch, e.body)
        ctx.put_fact(PROPOSAL_FACT, ctx.entry_id, record.encode())


# -- gov.vote -------------------------------------------------------------------------


class GovVoteRule(Kind):
    name = GovVote.kind

    @staticmethod
    def parse(raw: Any) -> GovVote:
        return GovVote.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        p = proposal(ctx, b.proposal)
        method = p.method.name
        if method == CONSENT:
            raise Refused(Reason.NOT_ALLOWED, "a consent proposal takes objections, not votes")
        if (b.n >= 1) != (method == QUADRATIC):
            raise Refused(
                Reason.NOT_ALLOWED,
                "n (quadratic votes) is at least 1 in quadratic proposals, else 0",
            )
        if method == QUADRATIC and b.choice == ABSTAIN:
            raise Refused(Reason.NOT_ALLOWED, "a quadratic vote is yes or no")
        _open(ctx, p, "vote")
        check_eligible(ctx, e.author, p, "voter")
        if ctx.own(VOTED_OWN, b.proposal) is not None:
            raise Refused(Reason.ALREADY_VOTED, "the voter's vote on this proposal is certified")
        if b.n:
            spent, credits = voice_spent(ctx), ctx.economy.settings.voice_credits
            if spent + b.n * b.n > credits:
                raise Refused(
                    Reason.INSUFFICIENT_CREDITS,
                    f"{b.n} votes cost {b.n * b.n}; {credits - spent} of {credits} voice credits "
                    "are left in this period",
                )

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        ctx.put_own(VOTED_OWN, b.proposal, ctx.entry_id)
        record = VoteBallot(e.author, e.seq, e.ts_ms, ctx.economy.epoch, b.proposal, b.choice, b.n)
        ctx.put_fact(BALLOT_FACT, ctx.entry_id, encode_ballot(record))
        if b.n:
            spent = voice_spent(ctx) + b.n * b.n
            period = voice_period(ctx.economy, e.ts_ms)
            ctx.put_own(VOICE_OWN, period, codec.encode_trusted(spent))

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        return (("gov.vote", entry.body.proposal, entry.author),)


# -- gov.delegate ---------------------------------------------------------------------


class GovDelegateRule(Kind):
    name = GovDelegate.kind

    @staticmethod
    def parse(raw: Any) -> GovDelegate:
        return GovDelegate.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        if b.delegate == e.author:
            raise Refused(_B, "a voter does not delegate to itself")
        keys.check_public_key(b.delegate, "delegate")
        ctx.require_member(e.author, "delegator")
        clock = ctx.now()
        if e.ts_ms < clock - DELEGATION_SKEW_MS:
            raise Refused(
                Reason.CLOCK_SKEW,
                f"a delegation's ts {e.ts_ms} is more than {DELEGATION_SKEW_MS} ms behind {clock}",
            )
        if b.scope:
            _open(ctx, proposal(ctx, b.scope), "delegation")
        if b.until <= clock:
            raise Refused(Reason.NOT_ALLOWED, f"until {b.until} has passed")

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        record = DelegationBallot(
            e.author, e.seq, e.ts_ms, ctx.economy.epoch, b.scope, b.delegate, b.until
        )
        ctx.put_fact(BALLOT_FACT, ctx.entry_id, encode_ballot(record))


# -- gov.object -----------------------------------------------------------------------


class GovObjectRule(Kind):
    name = GovObject.kind

    @staticmethod
    def parse(raw: Any) -> GovObject:
        return GovObject.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        p = proposal(ctx, b.proposal)
        if p.method.name != CONSENT:
            raise Refused(Reason.NOT_ALLOWED, f"a {p.method.name} proposal takes votes")
        _open(ctx, p, "objection")
        check_eligible(ctx, e.author, p, "objector")
        if ctx.fact(OUTCOME_FACT, b.proposal) is not None:
            raise Refused(Reason.ALREADY_ENACTED, "the proposal is enacted")

    @staticmethod
    def effects(ctx: Context) -> None:
        _put_min(ctx, OBJECTION_FACT, ctx.entry.body.proposal)

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        return (("gov.outcome", entry.body.proposal),)


# -- gov.enact ------------------------------------------------------------------------


def recount(ctx: Context, p: ProposalRecord, b: GovEnact) -> Tally:
    """The tally the enactment's evidence gives (every refusal of the
    evidence on the way)."""
    method = p.method.name
    if method == CONSENT:
        if b.ballots or b.seals:
            raise Refused(_B, "a consent enactment carries no ballots and no seals")
        if ctx.fact(OBJECTION_FACT, b.proposal) is not None:
            raise Refused(Reason.OBJECTED, "the proposal has a certified objection")
        return Tally()
    if method == ABSOLUTE:
        if b.seals:
            raise Refused(_B, "an absolute enactment lists its yes votes, no seals")
        votes: dict[bytes, Ballot] = {}
        for bid in b.ballots:
            v = ballot(ctx, bid)
            if not (isinstance(v, VoteBallot) and v.proposal == b.proposal and v.choice == YES):
                raise Refused(Reason.TALLY_MISMATCH, f"ballot {bid.hex()} is not a yes vote on it")
            votes[bid] = v
        voters = {v.voter for v in votes.values()}
        if len(voters) != len(votes):
            raise Refused(Reason.TALLY_MISMATCH, "a voter is listed twice")
        return count(b.proposal, p, votes, lambda _a: False)
    if not b.seals:
        raise Refused(Reason.QUORUM_NOT_REACHED, f"a {method} enactment needs a quorum of seals")
    union = open_seals(ctx.economy, b.proposal, b)
    counted = {bid: ballot(ctx, bid) for bid in union.required()}

    def eligible(account: bytes) -> bool:
        try:
            check_eligible(ctx, account, p, "delegator")
        except Refused as exc:
            if exc.reason is Reason.NOT_ELIGIBLE:
                return False
            raise
        return True

    return count(b.proposal, p, counted, eligible)


def enactment(
    economy: Economy,
    view: StateView,
    proposal_id: bytes,
    *,
    seals: Sequence[Seal] = (),
    yes_votes: Sequence[bytes] = (),
) -> GovEnact:
    """The ``gov.enact`` body an enactor submits for ``proposal_id`` into
    ``economy``'s next epoch: the evidence its method needs (``seals`` for
    majority and quadratic, certified ``yes_votes`` for absolute, nothing
    for consent) and the tally it gives, counted by the rule validators
    recount with (``missing`` for a ballot the enactor must fetch first)."""
    ctx = Context(economy, view, None, b"")
    p = proposal(ctx, proposal_id)
    method = p.method.name
    ballots: tuple[bytes, ...] = ()
    refs: tuple[SealRef, ...] = ()
    if method in (MAJORITY, QUADRATIC):
        ballots, refs = compress(economy, seals)
    elif method == ABSOLUTE:
        ballots = tuple(sorted(set(yes_votes)))
    body = GovEnact(proposal_id, economy.epoch + 1, Tally(), ballots, refs)
    return dataclasses.replace(body, tally=recount(ctx, p, body))


class GovEnactRule(Kind):
    name = GovEnact.kind

    @staticmethod
    def parse(raw: Any) -> GovEnact:
        return GovEnact.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        economy = ctx.economy
        p = proposal(ctx, b.proposal)
        if b.epoch <= economy.epoch:
            raise Refused(Reason.EPOCH_TAKEN, f"epoch {b.epoch} exists (this is {economy.epoch})")
        if b.epoch != economy.epoch + 1:
            raise Refused(
                Reason.WRONG_EPOCH,
                f"epoch {b.epoch} does not follow {economy.epoch}, in force here",
            )
        if ctx.fact(OUTCOME_FACT, b.proposal) is not None:
            raise Refused(Reason.ALREADY_ENACTED, "the proposal is enacted")
        clock = ctx.now()
        if p.method.name != ABSOLUTE and min(clock, e.ts_ms) < p.close_ms:
            raise Refused(
                Reason.VOTING_OPEN,
                f"the proposal closes at {p.close_ms} (clock {clock}, entry {e.ts_ms})",
            )
        tally = recount(ctx, p, b)
        if tally != b.tally:
            raise Refused(
                Reason.TALLY_MISMATCH,
                f"stated {b.tally.to_wire()}, the seals and ballots give {tally.to_wire()}",
            )
        if not passes(p, tally, economy.at(p.epoch).settings):
            raise Refused(
                Reason.THRESHOLD_NOT_MET, f"{p.method.name} is not met by {tally.to_wire()}"
            )
        ACTIONS[p.body.action].check(economy.genesis, economy.current, p.body.payload)

    @staticmethod
    def effects(ctx: Context) -> None:
        b = ctx.entry.body
        _put_min(ctx, OUTCOME_FACT, b.proposal)
        if b.epoch == ctx.economy.epoch + 1:  # certified in the epoch before it: the rule
            _put_min(ctx, EPOCH_FACT, epoch_key(b.epoch), b.proposal)

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        b = entry.body
        return (("gov.outcome", b.proposal), ("epoch", b.epoch))
