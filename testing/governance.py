"""A governed economy for tests: proposals, ballots, seals and enactments
through one in-memory ledger.

Why this exists: governance scenarios (``tests/protocol/test_governance.py``,
the reason scenarios, the vectors) each need the same story — members
admitted, a proposal certified, ballots certified by some validators, seals
from those validators after the close, an enactment — and a failure must
reproduce, so everything comes from fixed keys and a clock the test moves.

A :class:`GovWorld` is a :class:`~mycelia.testing.economies.World` that
certifies with the committee *in force* (validator keys come from a
keyring, so a ``committee.set`` can bring in new ones) and remembers which
validators voted for which ballot (``held``), which is what an honest
validator's seal lists. The clock is the entries' ``ts_ms`` (``World.clock``,
one tick per entry); ``at(ms)`` moves it, e.g. past a close. Checks run
with ``now_ms`` = the entry's own ``ts_ms`` unless a test passes another.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mycelia.protocol import Certificate, SignedEntry, SigningKey, Vote, assemble
from mycelia.protocol.economy import DAY_MS, Genesis, Validator
from mycelia.protocol.gov_bodies import (
    CommitteeSet,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    ProposalRecord,
)
from mycelia.protocol.governance import PROPOSAL_FACT, enactment
from mycelia.protocol.seals import Held, Seal, seal
from mycelia.protocol.state import fact_key
from mycelia.testing.economies import World, genesis, key, validator_keys

__all__ = ["GovWorld", "new_validators"]


def new_validators(n: int, start: int = 100) -> list[SigningKey]:
    """Validator keys not in any genesis of the tests (for committee.set)."""
    return [key(start + i, "validator") for i in range(n)]


class GovWorld(World):
    """See the module docstring."""

    def __init__(
        self,
        g: Genesis | None = None,
        vkeys: list[SigningKey] | None = None,
        *,
        spare: Iterable[SigningKey] = (),
    ) -> None:
        vkeys = vkeys if vkeys is not None else validator_keys(4)
        super().__init__(g if g is not None else genesis(validators=vkeys), vkeys)
        self.keyring = {k.public: k for k in [*vkeys, *spare]}
        #: validator key -> the ballots it voted for (what its seal lists)
        self.held: dict[bytes, list[Held]] = {}

    # -- certifying with the committee in force ---------------------------------------

    def committee_keys(self) -> list[SigningKey]:
        return [self.keyring[k] for k in self.economy.validators]

    def certify(self, signed: SignedEntry, signers: Iterable[int] | None = None) -> Certificate:
        committee = self.committee_keys()
        idx = list(signers) if signers is not None else list(range(self.quorum_size()))
        votes = [Vote.make(committee[i], self.id, self.economy.epoch, signed.id) for i in idx]
        body = signed.entry.body
        if isinstance(body, GovVote | GovDelegate):
            for i in idx:
                self.held.setdefault(committee[i].public, []).append(
                    Held.of(signed.id, signed.entry)
                )
        return assemble(self.economy, signed, votes)

    def at(self, ms: int) -> None:
        """Move the clock so the next entry is stamped ``ms``."""
        self.clock = ms - 1

    def commit_by(self, author: SigningKey, body: object, signers: Iterable[int]) -> Certificate:
        """Like ``commit``, certified by the validators at ``signers``."""
        signed = self.entry(author, body)
        verdict = self.ledger.check(signed)
        assert verdict.ok, verdict
        cert = self.certify(signed, signers)
        self.ledger.apply(cert)
        return cert

    # -- governance -----------------------------------------------------------------------

    def propose(
        self,
        author: SigningKey,
        payload: PolicySet | CommitteeSet,
        method: Method,
        *,
        voting_ms: int | None = None,
    ) -> Certificate:
        """A certified proposal open for ``voting_ms`` (default: the
        economy's ``min_voting_ms``) from its timestamp."""
        action = "policy.set" if isinstance(payload, PolicySet) else "committee.set"
        ts = self.clock + 1
        span = self.economy.settings.min_voting_ms if voting_ms is None else voting_ms
        return self.commit(author, GovPropose(action, payload, method, ts + span))

    def record(self, proposal: Certificate) -> ProposalRecord:
        raw = self.ledger.state.get_record(fact_key(PROPOSAL_FACT, proposal.entry_id))
        assert raw is not None, "the proposal is not applied here"
        return ProposalRecord.decode(raw)

    def close(self, proposal: Certificate) -> None:
        """Move the clock to the proposal's close."""
        self.at(self.record(proposal).close_ms)

    def vote(
        self,
        voter: SigningKey,
        proposal: Certificate,
        choice: str,
        n: int = 0,
        signers: Iterable[int] | None = None,
    ) -> Certificate:
        body = GovVote(proposal.entry_id, choice, n)
        return self.commit(voter, body) if signers is None else self.commit_by(voter, body, signers)

    def delegate(
        self,
        voter: SigningKey,
        to: SigningKey,
        scope: bytes = b"",
        until: int | None = None,
    ) -> Certificate:
        until = self.clock + 365 * DAY_MS if until is None else until
        return self.commit(voter, GovDelegate(to.public, scope, until))

    def object(self, objector: SigningKey, proposal: Certificate) -> Certificate:
        return self.commit(objector, GovObject(proposal.entry_id))

    def seals(self, proposal: Certificate, sealers: Iterable[int] | None = None) -> list[Seal]:
        """Honest seals of the committee in force at ``sealers`` (default:
        all), each listing the ballots that validator voted for; the clock
        must be past the close."""
        committee = self.committee_keys()
        idx = range(len(committee)) if sealers is None else sealers
        record = self.record(proposal)
        return [
            seal(
                committee[i],
                self.economy,
                proposal.entry_id,
                record,
                self.held.get(committee[i].public, []),
                self.clock + 1,
            )
            for i in idx
        ]

    def enactment(
        self,
        proposal: Certificate,
        seals: Sequence[Seal] = (),
        yes_votes: Sequence[Certificate] = (),
    ) -> GovEnact:
        return enactment(
            self.economy,
            self.ledger.state,
            proposal.entry_id,
            seals=seals,
            yes_votes=[c.entry_id for c in yes_votes],
        )

    def enact(self, author: SigningKey, body: GovEnact) -> Certificate:
        return self.commit(author, body)

    def committee_set(
        self, validators: Sequence[SigningKey], weights: Sequence[int] | None = None
    ) -> CommitteeSet:
        """A ``committee.set`` payload for ``validators`` (added to the
        keyring) with the smallest valid quorum."""
        w = list(weights) if weights is not None else [1] * len(validators)
        for k in validators:
            self.keyring[k.public] = k
        total = sum(w)
        return CommitteeSet(
            tuple(Validator(k.public, x) for k, x in zip(validators, w, strict=True)),
            2 * total // 3 + 1,
        )
