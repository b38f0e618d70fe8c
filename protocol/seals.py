"""Seals: closed tallies without consensus (DESIGN §7).

Why this exists: nobody may enact a ``majority`` or ``quadratic`` proposal
on a tally they built alone — an enactor could leave out a certified "no".
So after the close each validator *seals* the proposal: it signs the sorted
ids of the ballots (``tally.relevant``: the proposal's votes and the
delegations that count for it) it voted for — or holds, seeded from the
lock snapshots of the epoch before (``handover.py``)::

    seal    = ["seal", 1, economy, epoch, proposal, [ballot id, ...]]   (ascending)
    seal_id = BLAKE2b-256("mycelia/seal/1\\0" + canonical seal)
    signed with the domain ``seal``:  "mycelia/sig/seal/1\\0" + seal_id

and, once it sealed, never votes for a ballot of that proposal again (the
node keeps that promise even if its clock steps back). A seal names the
epoch its validator is in; an enactment checked in epoch *E* carries seals
of epoch *E*, together weighing at least *E*'s quorum, compressed
(``gov_bodies.SealRef``: the enactment lists the union of the seals' ids
once, each seal as a bitmap over it).

Why a quorum of seals cannot omit a certified ballot: a ballot certified in
*E* had a quorum's votes before the close; two quorums share more than the
Byzantine bound ``f = 2q - T - 1``, so at least one honest validator both
voted for it and sealed, and lists it. A ballot certified in an earlier
epoch is held by every honest validator of *E* (each seeded its locks from
a quorum of the previous epoch's snapshots, which the same argument makes
contain it). So the union contains every certified ballot.

Every id of the union must then be *accounted for* (:meth:`SealedUnion.required`):
its certificate is known to the checker (``missing`` with the id until it
is — the submitter attaches it), or the seals prove it can never have been
certified: the weight of the sealers listing it, plus the weight that did
not seal, plus ``f``, is below the quorum (each certifying quorum would
need more honest listers than that). So an enactor can neither drop a
ballot nor pad one in: a Byzantine seal may list junk, and junk is
excluded by the same bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ID_SIZE, SEAL
from mycelia.protocol.economy import Economy, EpochRecord
from mycelia.protocol.gov_bodies import GovDelegate, GovEnact, GovVote, ProposalRecord, SealRef
from mycelia.protocol.quorum import bitmap_indices, make_bitmap
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.tally import counts_for

__all__ = [
    "MAX_SEAL_BALLOTS",
    "Held",
    "Seal",
    "SealedUnion",
    "compress",
    "open_seals",
    "seal",
    "seal_id",
]

#: Most ballot ids a transported seal lists.
MAX_SEAL_BALLOTS = 4096
MAX_SEAL_BYTES = 256 + MAX_SEAL_BALLOTS * (ID_SIZE + 2)


def seal_id(economy: bytes, epoch: int, proposal: bytes, ballots: Sequence[bytes]) -> bytes:
    return SEAL.id(codec.encode_trusted(["seal", 1, economy, epoch, proposal, list(ballots)]))


@dataclass(frozen=True, slots=True)
class Seal:
    """One validator's seal of one proposal, as validators hand it to an
    enactor: ``["signed-seal", 1, economy, epoch, proposal, ballots,
    validator, signature]``."""

    economy: bytes
    epoch: int
    proposal: bytes
    ballots: tuple[bytes, ...]
    validator: bytes
    signature: bytes

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.int_(self.epoch, "epoch", 0, schema.UINT64_MAX)
        schema.bytes_(self.proposal, "proposal", ID_SIZE)
        if type(self.ballots) is not tuple or len(self.ballots) > MAX_SEAL_BALLOTS:
            raise Refused(Reason.MALFORMED, f"seal: at most {MAX_SEAL_BALLOTS} ballots")
        for b in self.ballots:
            schema.bytes_(b, "ballot", ID_SIZE)
        if list(self.ballots) != sorted(set(self.ballots)):
            raise Refused(Reason.MALFORMED, "seal: ballots must be distinct and ascending")
        schema.bytes_(self.validator, "validator", keys.PUBLIC_KEY_SIZE)
        schema.bytes_(self.signature, "signature", keys.SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return seal_id(self.economy, self.epoch, self.proposal, self.ballots)

    @classmethod
    def make(
        cls, key: keys.SigningKey, economy: Economy, proposal: bytes, ballots: Iterable[bytes]
    ) -> Seal:
        """``key``'s seal in ``economy``'s current epoch (no clock check:
        :func:`seal` is the rule)."""
        ids = tuple(sorted(set(ballots)))
        sig = keys.sign(key, SEAL, seal_id(economy.id, economy.epoch, proposal, ids))
        return cls(economy.id, economy.epoch, proposal, ids, key.public, sig)

    def verify(self, economy: Economy) -> int:
        """The sealer's index in its epoch's committee; ``wrong_economy``,
        ``wrong_epoch`` (an epoch ``economy`` does not have) or ``bad_seal``."""
        if self.economy != economy.id:
            raise Refused(Reason.WRONG_ECONOMY, "seal is for another economy")
        committee = economy.committee(self.epoch)
        if self.validator not in committee.keys:
            raise Refused(Reason.BAD_SEAL, f"sealer is not a validator of epoch {self.epoch}")
        if not keys.verify(self.validator, SEAL, self.id, self.signature):
            raise Refused(Reason.BAD_SEAL, "seal signature does not verify")
        return committee.keys.index(self.validator)

    def to_wire(self) -> list[Any]:
        return [
            "signed-seal",
            1,
            self.economy,
            self.epoch,
            self.proposal,
            list(self.ballots),
            self.validator,
            self.signature,
        ]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Seal:
        f = schema.array(codec.decode(data, max_size=MAX_SEAL_BYTES), "signed-seal", 1, 8, "seal")
        ballots = schema.list_(f[5], "ballots", max_len=MAX_SEAL_BALLOTS)
        return cls(f[2], f[3], f[4], tuple(ballots), f[6], f[7])


@dataclass(frozen=True, slots=True)
class Held:
    """A ballot a validator holds — voted for, or seeded with from lock
    snapshots (``handover.py``) — with what deciding its relevance takes:
    ``[ballot id, vote, scope, ts_ms, until]`` on the wire (``vote`` 1 for
    a ``gov.vote``, whose scope is its proposal and ``until`` 0; 0 for a
    ``gov.delegate``)."""

    ballot: bytes
    vote: bool
    scope: bytes
    ts_ms: int
    until: int = 0

    def __post_init__(self) -> None:
        schema.bytes_(self.ballot, "ballot", ID_SIZE)
        if type(self.vote) is not bool:
            raise Refused(Reason.MALFORMED, "held ballot: vote is 1 or 0")
        scope = schema.bytes_(self.scope, "scope", max_size=ID_SIZE)
        if len(scope) not in (0, ID_SIZE) or (self.vote and not scope):
            raise Refused(Reason.MALFORMED, "held ballot: scope is a proposal id (or empty)")
        schema.int_(self.ts_ms, "ts_ms", 0)
        schema.int_(self.until, "until", 0)

    @classmethod
    def of(cls, ballot_id: bytes, entry: Any) -> Held:
        """From the ``gov.vote`` or ``gov.delegate`` entry a validator voted for."""
        body = entry.body
        if isinstance(body, GovVote):
            return cls(ballot_id, True, body.proposal, entry.ts_ms)
        if isinstance(body, GovDelegate):
            return cls(ballot_id, False, body.scope, entry.ts_ms, body.until)
        raise TypeError(f"a {entry.kind} entry is not a ballot")

    def counts_for(self, proposal_id: bytes, proposal: ProposalRecord) -> bool:
        return counts_for(
            proposal_id,
            proposal,
            vote=self.vote,
            scope=self.scope,
            ts_ms=self.ts_ms,
            until=self.until,
        )

    def to_wire(self) -> list[Any]:
        return [self.ballot, int(self.vote), self.scope, self.ts_ms, self.until]

    @classmethod
    def from_wire(cls, raw: Any) -> Held:
        f = schema.list_(raw, "held ballot", min_len=5, max_len=5)
        vote = schema.int_(f[1], "vote", 0, 1)
        return cls(f[0], bool(vote), f[2], f[3], f[4])


def seal(
    key: keys.SigningKey,
    economy: Economy,
    proposal_id: bytes,
    proposal: ProposalRecord,
    held: Iterable[Held],
    now_ms: int,
) -> Seal:
    """The seal a validator signs: of the ballots it ``held`` (voted for or
    was seeded with), those of this proposal; ``voting_open`` before the
    close by its clock ``now_ms``."""
    if now_ms < proposal.close_ms:
        raise Refused(
            Reason.VOTING_OPEN, f"the proposal closes at {proposal.close_ms}, it is {now_ms}"
        )
    mine = [h.ballot for h in held if h.counts_for(proposal_id, proposal)]
    return Seal.make(key, economy, proposal_id, mine)


def compress(
    economy: Economy, seals: Sequence[Seal]
) -> tuple[tuple[bytes, ...], tuple[SealRef, ...]]:
    """An enactment's ``ballots`` and ``seals`` from full seals (verified,
    one per validator): the union, and each seal as a bitmap over it."""
    by_index = {s.verify(economy): s for s in seals}
    union = tuple(sorted({b for s in seals for b in s.ballots}))
    at = {b: i for i, b in enumerate(union)}
    refs = tuple(
        SealRef(i, make_bitmap((at[b] for b in s.ballots), len(union)), s.signature)
        for i, s in sorted(by_index.items())
    )
    return union, refs


@dataclass(frozen=True, slots=True)
class SealedUnion:
    """What verified seals say about an enactment's ballots."""

    committee: EpochRecord
    ballots: tuple[bytes, ...]
    #: ballot id -> the weight of the sealers listing it
    listing: dict[bytes, int]
    sealed_weight: int

    def excluded(self, ballot: bytes) -> bool:
        """The seals prove ``ballot`` was never certified (module docstring)."""
        c = self.committee
        unsealed = c.total_weight - self.sealed_weight
        return self.listing[ballot] + unsealed + c.byzantine_bound < c.quorum

    def required(self) -> list[bytes]:
        """The ballots whose certificates the checker must hold."""
        return [b for b in self.ballots if not self.excluded(b)]


def open_seals(economy: Economy, proposal_id: bytes, body: GovEnact) -> SealedUnion:
    """Verify an enactment's seals — of the checker's epoch, ``bad_seal``
    for one that is not a validator's or does not verify, and together at
    least its quorum (``quorum_not_reached``)."""
    committee = economy.current
    n = len(committee.keys)
    listing = dict.fromkeys(body.ballots, 0)
    sealed = 0
    for ref in body.seals:
        if ref.index >= n:
            raise Refused(Reason.BAD_SEAL, f"seal of validator {ref.index}: only {n} validators")
        listed = [body.ballots[i] for i in bitmap_indices(ref.bitmap, len(body.ballots))]
        sid = seal_id(economy.id, committee.number, proposal_id, listed)
        if not keys.verify(committee.keys[ref.index], SEAL, sid, ref.signature):
            raise Refused(Reason.BAD_SEAL, f"the seal of validator {ref.index} does not verify")
        weight = committee.weights[ref.index]
        sealed += weight
        for b in listed:
            listing[b] += weight
    if sealed < committee.quorum:
        raise Refused(
            Reason.QUORUM_NOT_REACHED, f"seals weigh {sealed} < quorum {committee.quorum}"
        )
    return SealedUnion(committee, body.ballots, listing, sealed)
