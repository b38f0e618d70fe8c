"""Governance bodies, action payloads and the records governance keeps.

Why this exists: the five governance kinds (``governance.py`` holds their
rules) carry structured bodies, and an enacted proposal changes the
economy through an *action* whose payload must mean the same on every node.
This module is their one wire form (``docs/governance.md`` gives the bytes),
validated when built like every other body; the rules that need the state
or the economy live in ``governance.py``.

Bodies (canonical arrays, DESIGN §3)::

    gov.propose   [action, payload, method, close_ms]
    gov.vote      [proposal, choice, n]
    gov.delegate  [delegate, scope, until]
    gov.object    [proposal]
    gov.enact     [proposal, epoch, tally, ballots, seals]

    method        ["majority", electorate] | ["absolute"] | ["quadratic"] | ["consent"]
    tally         [yes, no, abstain]
    seals         [[validator_index, bitmap, signature], ...]

Actions — :data:`ACTIONS` is the registry, one entry per action, so a new
action (``fed.agree`` with federation) is one class registered there:

``policy.set``     payload ``[[name, value], ...]``, names strictly ascending:
                   any field of the economy kind's policy (``membership``,
                   ``stewards``, ``default_limit``, ``issuers``,
                   ``units_per_credit``, … and any field a later policy adds,
                   e.g. ``max_channel_ms``), in its genesis wire form, or a
                   governance setting ``gov.<name>`` (``economy.GovSettings``).
                   The changed policy must pass every genesis rule.
``committee.set``  payload ``[[[key, weight], ...], quorum]``: the next
                   epoch's validators (in signer-bitmap order) and quorum,
                   held to the genesis rules (quorum above two thirds of
                   the weight, distinct valid keys, weights 1 … 2**32).

Named but refused ``unknown_action`` until they exist: :data:`FUTURE_ACTIONS`.

Records (``state.py``'s kinds): :class:`ProposalRecord` (fact
``gov.proposal/<id>``), :class:`VoteBallot` and :class:`DelegationBallot`
(fact ``gov.ballot/<id>``), written by the entries' own effects so a rule
checking another author's entry reads them as facts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.economy import (
    MAX_WEIGHT,
    SETTING_NAMES,
    EpochRecord,
    Genesis,
    GovSettings,
    Policy,
    Validator,
)
from mycelia.protocol.quorum import bitmap_indices
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "ABSOLUTE",
    "ABSTAIN",
    "ACTIONS",
    "CHOICES",
    "CONSENT",
    "FUTURE_ACTIONS",
    "MAJORITY",
    "MAX_BALLOTS",
    "MAX_COMMITTEE",
    "MAX_N",
    "METHODS",
    "NO",
    "QUADRATIC",
    "YES",
    "Action",
    "Ballot",
    "CommitteeSet",
    "DelegationBallot",
    "GovDelegate",
    "GovEnact",
    "GovObject",
    "GovPropose",
    "GovVote",
    "Method",
    "PolicySet",
    "ProposalRecord",
    "SealRef",
    "Tally",
    "VoteBallot",
    "decode_ballot",
]

_B = Reason.MALFORMED_BODY

MAJORITY = "majority"
ABSOLUTE = "absolute"
QUADRATIC = "quadratic"
CONSENT = "consent"
METHODS = (MAJORITY, ABSOLUTE, QUADRATIC, CONSENT)
YES, NO, ABSTAIN = "yes", "no", "abstain"
CHOICES = (YES, NO, ABSTAIN)

#: Most validators a ``committee.set`` names: its proposal must fit one
#: entry (``entries.MAX_ENTRY_BYTES``; 40 × 41 bytes leaves room for the rest).
MAX_COMMITTEE = 40
#: Most changes in one ``policy.set``.
MAX_CHANGES = 16
#: Most ballot ids a ``gov.enact`` lists. The entry bound is what really
#: limits it (about 45 ids beside a quorum of seals from 4–7 validators;
#: ``docs/governance.md``, "Sizes").
MAX_BALLOTS = 64
#: Largest quadratic ``n`` (its cost ``n**2`` stays within 2**32).
MAX_N = 1 << 16
MAX_NAME_BYTES = 32
MAX_VALIDATOR_INDEX = 63


def _body(value: Any, n: int, kind: str) -> list[Any]:
    return schema.list_(value, f"{kind} body", min_len=n, max_len=n, reason=_B)


def _id(value: Any, name: str) -> bytes:
    return schema.bytes_(value, name, ID_SIZE, reason=_B)


def _int(value: Any, name: str, lo: int = 0, hi: int = schema.INT64_MAX) -> int:
    return schema.int_(value, name, lo, hi, reason=_B)


def _payload_error(exc: Refused) -> Refused:
    """A genesis rule broken by an action's payload: ``bad_payload`` (a
    bad key stays ``bad_key``, as everywhere a key first enters)."""
    if exc.reason is Reason.BAD_KEY:
        return exc
    return Refused(Reason.BAD_PAYLOAD, exc.detail or exc.reason.value)


def reparse(genesis: Genesis, **wire: Any) -> Genesis:
    """``genesis`` with some of its wire fields replaced (``policy``,
    ``validators``, ``quorum``), through every genesis rule: the one home
    of what a valid policy and a valid committee are (``economy.py``)."""
    index = {"policy": 6, "validators": 7, "quorum": 8}
    raw = genesis.to_wire()
    for name, value in wire.items():
        raw[index[name]] = value
    try:
        return Genesis.from_wire(raw)
    except Refused as exc:
        raise _payload_error(exc) from None


# -- actions ------------------------------------------------------------------------


class Action:
    """One governance action: its payload type, the check of a payload
    against the epoch in force, and the next epoch it makes."""

    name: ClassVar[str]
    #: the payload's type (its ``to_wire`` is the payload's wire form)
    payload_type: ClassVar[type]

    @staticmethod
    def parse(raw: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def check(genesis: Genesis, record: EpochRecord, payload: Any) -> None:
        """Raise ``bad_payload`` (or ``bad_key``) unless ``payload`` can be
        enacted on top of ``record``."""
        raise NotImplementedError

    @staticmethod
    def next_epoch(
        genesis: Genesis, record: EpochRecord, payload: Any, enact: bytes, proposal: bytes
    ) -> EpochRecord:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PolicySet:
    """``policy.set``'s payload: ``(name, wire value)`` pairs, names ascending."""

    changes: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        if type(self.changes) is not tuple or not 1 <= len(self.changes) <= MAX_CHANGES:
            raise Refused(_B, f"policy.set: 1 to {MAX_CHANGES} changes")
        names = []
        for pair in self.changes:
            if type(pair) is not tuple or len(pair) != 2:
                raise Refused(_B, "policy.set: a change is a (name, value) pair")
            names.append(schema.str_(pair[0], "policy field", min_bytes=1, max_bytes=32, reason=_B))
            try:
                codec.encode(pair[1])
            except (TypeError, ValueError, OverflowError):
                raise Refused(_B, f"policy.set {pair[0]}: not a canonical value") from None
        if names != sorted(set(names)):
            raise Refused(_B, "policy.set: field names must be distinct and ascending")

    def to_wire(self) -> list[Any]:
        return [[name, value] for name, value in self.changes]

    def get(self, name: str) -> Any:
        return dict(self.changes).get(name)


class PolicySetAction(Action):
    name = "policy.set"
    payload_type = PolicySet

    @staticmethod
    def parse(raw: Any) -> PolicySet:
        pairs = schema.list_(raw, "policy.set payload", min_len=1, max_len=MAX_CHANGES, reason=_B)
        out = []
        for pair in pairs:
            p = schema.list_(pair, "policy.set change", min_len=2, max_len=2, reason=_B)
            out.append((p[0], p[1]))
        return PolicySet(tuple(out))

    @staticmethod
    def apply(
        genesis: Genesis, policy: Policy, settings: GovSettings, payload: PolicySet
    ) -> tuple[Policy, GovSettings]:
        """The policy and settings after ``payload``: each policy field set
        in the policy's wire form, which is then held to the genesis rules."""
        names = [f.name for f in dataclasses.fields(policy)]
        wire = policy.to_wire()
        for name, value in payload.changes:
            if name in SETTING_NAMES:
                settings = dataclasses.replace(settings, **{SETTING_NAMES[name]: value})
                continue
            if name not in names:
                raise Refused(Reason.BAD_PAYLOAD, f"a {genesis.kind} policy has no field {name!r}")
            i = names.index(name)
            if i < len(wire):
                wire[i] = value
            elif i == len(wire):  # an optional trailing field not written yet
                wire.append(value)
            else:
                raise Refused(Reason.BAD_PAYLOAD, f"{name} needs the policy fields before it set")
        return reparse(genesis, policy=wire).policy, settings

    @staticmethod
    def check(genesis: Genesis, record: EpochRecord, payload: PolicySet) -> None:
        PolicySetAction.apply(genesis, record.policy, record.settings, payload)

    @staticmethod
    def next_epoch(
        genesis: Genesis, record: EpochRecord, payload: PolicySet, enact: bytes, proposal: bytes
    ) -> EpochRecord:
        policy, settings = PolicySetAction.apply(genesis, record.policy, record.settings, payload)
        return EpochRecord(
            record.number + 1, record.validators, record.quorum, policy, settings, enact, proposal
        )


@dataclass(frozen=True, slots=True)
class CommitteeSet:
    """``committee.set``'s payload: the next committee (the genesis rules
    are checked against the economy, :meth:`CommitteeSetAction.check`)."""

    validators: tuple[Validator, ...]
    quorum: int

    def __post_init__(self) -> None:
        if type(self.validators) is not tuple or not 1 <= len(self.validators) <= MAX_COMMITTEE:
            raise Refused(_B, f"committee.set: 1 to {MAX_COMMITTEE} validators")
        for v in self.validators:
            if not isinstance(v, Validator):
                raise Refused(_B, "committee.set: validators are (key, weight)")
            schema.bytes_(v.key, "validator key", keys.PUBLIC_KEY_SIZE, reason=_B)
            _int(v.weight, "validator weight", 1, MAX_WEIGHT)
        _int(self.quorum, "quorum", 1, MAX_WEIGHT * MAX_COMMITTEE)

    def to_wire(self) -> list[Any]:
        return [[[v.key, v.weight] for v in self.validators], self.quorum]


class CommitteeSetAction(Action):
    name = "committee.set"
    payload_type = CommitteeSet

    @staticmethod
    def parse(raw: Any) -> CommitteeSet:
        f = schema.list_(raw, "committee.set payload", min_len=2, max_len=2, reason=_B)
        rows = schema.list_(f[0], "validators", min_len=1, max_len=MAX_COMMITTEE, reason=_B)
        vals = []
        for row in rows:
            pair = schema.list_(row, "validator", min_len=2, max_len=2, reason=_B)
            vals.append(Validator(pair[0], pair[1]))
        return CommitteeSet(tuple(vals), f[1])

    @staticmethod
    def committee(genesis: Genesis, payload: CommitteeSet) -> Genesis:
        wire = payload.to_wire()
        return reparse(genesis, validators=wire[0], quorum=wire[1])

    @staticmethod
    def check(genesis: Genesis, record: EpochRecord, payload: CommitteeSet) -> None:
        CommitteeSetAction.committee(genesis, payload)

    @staticmethod
    def next_epoch(
        genesis: Genesis, record: EpochRecord, payload: CommitteeSet, enact: bytes, proposal: bytes
    ) -> EpochRecord:
        g = CommitteeSetAction.committee(genesis, payload)
        return EpochRecord(
            record.number + 1,
            g.validators,
            g.quorum,
            record.policy,
            record.settings,
            enact,
            proposal,
        )


#: action name -> its rule. One entry per action.
ACTIONS: dict[str, type[Action]] = {a.name: a for a in (PolicySetAction, CommitteeSetAction)}
#: Named in DESIGN §7, refused ``unknown_action`` until they are built.
FUTURE_ACTIONS = ("fed.agree",)


def _action(name: Any) -> type[Action]:
    name = schema.str_(name, "action", max_bytes=MAX_NAME_BYTES, reason=_B)
    rule = ACTIONS.get(name)
    if rule is None:
        later = " (it comes with federation)" if name in FUTURE_ACTIONS else ""
        raise Refused(Reason.UNKNOWN_ACTION, f"unknown action {name!r}{later}")
    return rule


# -- methods ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    """How a proposal is decided. ``electorate`` (``majority`` only): the
    member count the participation quorum is relative to, stated by the
    proposer and checked against the member count the validators know."""

    name: str
    electorate: int = 0

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise Refused(_B, f"method {self.name!r} is not one of {', '.join(METHODS)}")
        if self.name == MAJORITY:
            _int(self.electorate, "electorate", 1, schema.UINT64_MAX >> 32)
        elif self.electorate != 0:
            raise Refused(_B, f"a {self.name} method has no electorate")

    def to_wire(self) -> list[Any]:
        return [self.name, self.electorate] if self.name == MAJORITY else [self.name]

    @classmethod
    def from_wire(cls, raw: Any) -> Method:
        f = schema.list_(raw, "method", min_len=1, max_len=2, reason=_B)
        name = schema.str_(f[0], "method", max_bytes=MAX_NAME_BYTES, reason=_B)
        if (len(f) == 2) != (name == MAJORITY):
            raise Refused(_B, "method: majority names its electorate, the others nothing")
        return cls(name, f[1] if len(f) == 2 else 0)


# -- bodies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GovPropose:
    kind: ClassVar[str] = "gov.propose"
    action: str
    payload: Any
    method: Method
    close_ms: int

    def __post_init__(self) -> None:
        rule = _action(self.action)
        if not isinstance(self.payload, rule.payload_type):
            raise Refused(_B, f"{self.action}: the payload is not a {rule.name} payload")
        if not isinstance(self.method, Method):
            raise Refused(_B, "method: expected a Method")
        _int(self.close_ms, "close_ms")

    def to_wire(self) -> list[Any]:
        return [self.action, self.payload.to_wire(), self.method.to_wire(), self.close_ms]

    @classmethod
    def from_wire(cls, raw: Any) -> GovPropose:
        f = _body(raw, 4, "gov.propose")
        rule = _action(f[0])
        return cls(f[0], rule.parse(f[1]), Method.from_wire(f[2]), f[3])


@dataclass(frozen=True, slots=True)
class GovVote:
    """``n``: the quadratic votes bought (cost ``n**2``); 0 for every other
    method, where one member is one vote."""

    kind: ClassVar[str] = "gov.vote"
    proposal: bytes
    choice: str
    n: int = 0

    def __post_init__(self) -> None:
        _id(self.proposal, "proposal")
        if type(self.choice) is not str or self.choice not in CHOICES:
            raise Refused(_B, f"choice {self.choice!r} is not one of {', '.join(CHOICES)}")
        _int(self.n, "n", 0, MAX_N)

    def to_wire(self) -> list[Any]:
        return [self.proposal, self.choice, self.n]

    @classmethod
    def from_wire(cls, raw: Any) -> GovVote:
        f = _body(raw, 3, "gov.vote")
        return cls(f[0], schema.str_(f[1], "choice", max_bytes=16, reason=_B), f[2])


@dataclass(frozen=True, slots=True)
class GovDelegate:
    """``scope``: a proposal id (that proposal only) or empty (every
    proposal); ``until``: the last close (ms) it counts for."""

    kind: ClassVar[str] = "gov.delegate"
    delegate: bytes
    scope: bytes
    until: int

    def __post_init__(self) -> None:
        schema.bytes_(self.delegate, "delegate", keys.PUBLIC_KEY_SIZE, reason=_B)
        scope = schema.bytes_(self.scope, "scope", max_size=ID_SIZE, reason=_B)
        if len(scope) not in (0, ID_SIZE):
            raise Refused(_B, "scope: a proposal id or empty (every proposal)")
        _int(self.until, "until")

    def to_wire(self) -> list[Any]:
        return [self.delegate, self.scope, self.until]

    @classmethod
    def from_wire(cls, raw: Any) -> GovDelegate:
        f = _body(raw, 3, "gov.delegate")
        return cls(f[0], f[1], f[2])


@dataclass(frozen=True, slots=True)
class GovObject:
    kind: ClassVar[str] = "gov.object"
    proposal: bytes

    def __post_init__(self) -> None:
        _id(self.proposal, "proposal")

    def to_wire(self) -> list[Any]:
        return [self.proposal]

    @classmethod
    def from_wire(cls, raw: Any) -> GovObject:
        return cls(*_body(raw, 1, "gov.object"))


@dataclass(frozen=True, slots=True)
class Tally:
    """Counted weight per choice: votes (1 each, delegations carried) in
    ``majority``, ``n`` per vote in ``quadratic``, yes votes in ``absolute``."""

    yes: int = 0
    no: int = 0
    abstain: int = 0

    def __post_init__(self) -> None:
        for name in ("yes", "no", "abstain"):
            _int(getattr(self, name), name)

    @property
    def cast(self) -> int:
        return self.yes + self.no + self.abstain

    def to_wire(self) -> list[Any]:
        return [self.yes, self.no, self.abstain]

    @classmethod
    def from_wire(cls, raw: Any) -> Tally:
        return cls(*schema.list_(raw, "tally", min_len=3, max_len=3, reason=_B))


@dataclass(frozen=True, slots=True)
class SealRef:
    """A seal inside an enactment: which validator (its index in the
    sealing epoch's committee), which of the enactment's ballots it lists
    (a bitmap over them, ``quorum.py``'s form) and its signature."""

    index: int
    bitmap: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _int(self.index, "seal validator index", 0, MAX_VALIDATOR_INDEX)
        schema.bytes_(self.bitmap, "seal bitmap", max_size=MAX_BALLOTS // 8, reason=_B)
        schema.bytes_(self.signature, "seal signature", keys.SIGNATURE_SIZE, reason=_B)

    def to_wire(self) -> list[Any]:
        return [self.index, self.bitmap, self.signature]


@dataclass(frozen=True, slots=True)
class GovEnact:
    """``ballots``: ascending ids — the union of the seals (``majority``,
    ``quadratic``), the yes votes (``absolute``), none (``consent``);
    ``epoch``: the epoch this enactment creates (one past the checker's)."""

    kind: ClassVar[str] = "gov.enact"
    proposal: bytes
    epoch: int
    tally: Tally
    ballots: tuple[bytes, ...] = ()
    seals: tuple[SealRef, ...] = ()

    def __post_init__(self) -> None:
        _id(self.proposal, "proposal")
        _int(self.epoch, "epoch", 1, schema.UINT64_MAX)
        if not isinstance(self.tally, Tally):
            raise Refused(_B, "tally: expected a Tally")
        if type(self.ballots) is not tuple or len(self.ballots) > MAX_BALLOTS:
            raise Refused(_B, f"ballots: at most {MAX_BALLOTS}")
        for b in self.ballots:
            _id(b, "ballot")
        if list(self.ballots) != sorted(set(self.ballots)):
            raise Refused(_B, "ballots must be distinct and ascending")
        if type(self.seals) is not tuple or len(self.seals) > MAX_VALIDATOR_INDEX + 1:
            raise Refused(_B, "seals: at most one per validator")
        if [s.index for s in self.seals] != sorted({s.index for s in self.seals}):
            raise Refused(_B, "seals must name distinct validators, ascending")
        listed: set[int] = set()
        for s in self.seals:
            try:
                listed.update(bitmap_indices(s.bitmap, len(self.ballots)))
            except Refused as exc:
                raise Refused(_B, f"seal of validator {s.index}: {exc.detail}") from None
        if self.seals and len(listed) != len(self.ballots):
            raise Refused(_B, "every ballot must be listed by a seal (the union of the seals)")

    def to_wire(self) -> list[Any]:
        return [
            self.proposal,
            self.epoch,
            self.tally.to_wire(),
            list(self.ballots),
            [s.to_wire() for s in self.seals],
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> GovEnact:
        f = _body(raw, 5, "gov.enact")
        ballots = schema.list_(f[3], "ballots", max_len=MAX_BALLOTS, reason=_B)
        seals = schema.list_(f[4], "seals", max_len=MAX_VALIDATOR_INDEX + 1, reason=_B)
        refs = []
        for s in seals:
            r = schema.list_(s, "seal", min_len=3, max_len=3, reason=_B)
            refs.append(SealRef(r[0], r[1], r[2]))
        return cls(f[0], f[1], Tally.from_wire(f[2]), tuple(ballots), tuple(refs))


# -- records ------------------------------------------------------------------------

MAX_RECORD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    """A certified proposal as other rules read it (fact ``gov.proposal/<id>``):
    its entry's author, timestamp and body, and its certificate's epoch
    (the electorate, the settings and the sealing rules are that epoch's)."""

    author: bytes
    ts_ms: int
    epoch: int
    body: GovPropose

    @property
    def method(self) -> Method:
        return self.body.method

    @property
    def close_ms(self) -> int:
        return self.body.close_ms

    def to_wire(self) -> list[Any]:
        return ["proposal", 1, self.author, self.ts_ms, self.epoch, self.body.to_wire()]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, raw: bytes) -> ProposalRecord:
        f = schema.array(codec.decode(raw, max_size=MAX_RECORD_BYTES), "proposal", 1, 6, "proposal")
        return cls(f[2], f[3], f[4], GovPropose.from_wire(f[5]))


@dataclass(frozen=True, slots=True)
class VoteBallot:
    """A certified ``gov.vote`` (fact ``gov.ballot/<id>``)."""

    voter: bytes
    seq: int
    ts_ms: int
    epoch: int
    proposal: bytes
    choice: str
    n: int

    def to_wire(self) -> list[Any]:
        return [
            "vote",
            self.voter,
            self.seq,
            self.ts_ms,
            self.epoch,
            self.proposal,
            self.choice,
            self.n,
        ]


@dataclass(frozen=True, slots=True)
class DelegationBallot:
    """A certified ``gov.delegate`` (fact ``gov.ballot/<id>``)."""

    voter: bytes
    seq: int
    ts_ms: int
    epoch: int
    scope: bytes
    delegate: bytes
    until: int

    def to_wire(self) -> list[Any]:
        return [
            "delegate",
            self.voter,
            self.seq,
            self.ts_ms,
            self.epoch,
            self.scope,
            self.delegate,
            self.until,
        ]


Ballot = VoteBallot | DelegationBallot


def encode_ballot(ballot: Ballot) -> bytes:
    return codec.encode(ballot.to_wire())


def decode_ballot(raw: bytes) -> Ballot:
    f = schema.list_(codec.decode(raw, max_size=MAX_RECORD_BYTES), "ballot", min_len=8, max_len=8)
    if f[0] == "vote":
        return VoteBallot(*f[1:])
    if f[0] == "delegate":
        return DelegationBallot(*f[1:])
    raise Refused(Reason.MALFORMED, f"ballot record of kind {f[0]!r}")
