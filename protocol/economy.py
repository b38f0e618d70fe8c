"""Economies: the genesis document, its validator signatures, and the derived
:class:`Economy` every rule reads.

Why this exists: an economy (a local currency, a time bank, a compute-credit
pool, an impact-credit pool) is defined by one signed document. Its id is
the genesis id, and it is inside every entry, vote and certificate, so
nothing signed for one economy is accepted in another. A certificate is
verifiable offline by anyone who holds the genesis.

Wire form (canonical arrays, DESIGN §3)::

    genesis        = ["genesis", 1, name, symbol, decimals, kind, policy,
                      validators, quorum, ts_ms, nonce]
    validators     = [[key32, weight], ...]          # genesis order = index
    policy         = [membership, stewards, default_limit, ?max_channel_ms]
                                                            # mutual_credit
                   | [membership, stewards, issuers, ?max_channel_ms]
                                                            # issued
                   | [membership, stewards, metric, exponent,
                      units_per_credit, device_kinds, ?max_channel_ms]
                                                            # impact
    issuers        = [[key32, cap], ...]
    signed-genesis = ["signed-genesis", 1, genesis, bitmap, signatures]

Rules, checked by :func:`Genesis.from_wire` and :meth:`Economy.from_genesis`:

* ``name`` 1–64 bytes, ``symbol`` 1–12 bytes, ``decimals`` 0–18.
* ``kind`` is ``mutual_credit``, ``issued`` or ``impact``; the policy has
  the fields of its kind (3, 3 and 6), optionally followed by
  ``max_channel_ms``.
* ``max_channel_ms`` (every kind: compute channels work in any economy,
  ``docs/compute.md``): the longest a ``channel.open`` may lock its escrow,
  from the validator's clock to the channel's expiry, 1 ms …
  :data:`~mycelia.protocol.channels.MAX_CHANNEL_MS_BOUND` (366 days).
  Absent, the policy has :data:`~mycelia.protocol.channels.DEFAULT_MAX_CHANNEL_MS`
  (7 days): a genesis written before channels existed keeps its bytes and
  id. A genesis that names the default explicitly is a different document
  (another id) with the same rules, as one with another ``nonce`` is.
* ``membership`` is ``open`` (anyone transacts) or ``approved`` (stewards
  admit members with ``member.admit``; needs at least one steward). Stewards
  and issuers are members by definition.
* ``default_limit`` (mutual credit) is the credit limit of an account no
  steward has set: a balance may go down to ``-limit``.
* issuers have caps ≥ 1, and the caps sum to at most 2**63 - 1, so no
  balance in an issued economy can ever leave the signed 64-bit range.
* 1–64 validators with distinct valid keys and weights 1–2**32; ``quorum``
  is more than two thirds of the total weight and at most the total:
  ``3 * quorum > 2 * total``. Any two quorums then share more than a third
  of the weight, so an honest validator when fewer than a third are faulty.
* impact (``docs/sensors.md``): ``metric`` (1–32 bytes) is the one metric
  whose attested sums become credits, counted in units of ``10^exponent``
  (-18…18; a device declaring the metric must declare it with this
  exponent), ``units_per_credit`` ≥ 1 of them make one credit (minor unit),
  ``device_kinds`` are the 1–16 distinct eligible device kinds (1–32 bytes
  each). Credits come only from ``impact.claim``; no ``mint``.
* every key (validator, steward, issuer) must pass ``check_public_key``.
* ``nonce`` (≤ 32 bytes) lets two otherwise identical economies differ.

A genesis is valid once validators holding a quorum of its weight signed its
id (domain ``genesis``). The genesis validator set and policy are epoch 0.

Epochs (DESIGN §7, ``docs/governance.md``): a certified ``gov.enact`` that
changes the policy or the committee creates the next epoch. An
:class:`Economy` holds its whole epoch history — one :class:`EpochRecord`
(committee, policy, governance settings, the enactment that made it) per
epoch, the genesis first — and is immutable: a new epoch gives a new value
(:meth:`Economy.advanced`). Everything a rule reads of the economy
(validators, quorum, stewards, issuers, limits) is the *current* epoch's;
:meth:`Economy.at` gives the economy as it was in an earlier epoch, which is
what a certificate of that epoch is applied under, and
:meth:`Economy.committee` the committee a certificate of any known epoch is
verified against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.channels import DEFAULT_MAX_CHANNEL_MS, MAX_CHANNEL_MS_BOUND
from mycelia.protocol.domains import GENESIS
from mycelia.protocol.quorum import make_bitmap, verify_quorum
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.sensor_bodies import (
    MAX_DEVICE_KIND_BYTES,
    MAX_EXPONENT,
    MAX_METRIC_BYTES,
    MIN_EXPONENT,
)
from mycelia.protocol.state import Account

__all__ = [
    "IMPACT",
    "ISSUED",
    "KINDS",
    "MEMBERSHIP_APPROVED",
    "MEMBERSHIP_OPEN",
    "MUTUAL_CREDIT",
    "Economy",
    "EpochRecord",
    "Genesis",
    "GovSettings",
    "ImpactPolicy",
    "IssuedPolicy",
    "MutualCreditPolicy",
    "SignedGenesis",
    "Validator",
    "byzantine_bound",
    "max_channel_ms",
    "smallest_quorum",
]

MUTUAL_CREDIT = "mutual_credit"
ISSUED = "issued"
IMPACT = "impact"
KINDS = (MUTUAL_CREDIT, ISSUED, IMPACT)
MEMBERSHIP_OPEN = "open"
MEMBERSHIP_APPROVED = "approved"
MAX_VALIDATORS = 64
MAX_STEWARDS = 64
MAX_ISSUERS = 64
MAX_DEVICE_KINDS = 16
MAX_WEIGHT = 1 << 32
MAX_GENESIS_BYTES = 16 * 1024
MAX_SIGNED_GENESIS_BYTES = MAX_GENESIS_BYTES + MAX_VALIDATORS * 70 + 64
#: The epoch of the genesis validator set.
GENESIS_EPOCH = 0


@dataclass(frozen=True, slots=True)
class Validator:
    key: bytes
    weight: int


def _max_channel_ms(value: Any) -> int | None:
    """A policy's ``max_channel_ms``: None (not written: the default) or
    1 … :data:`MAX_CHANNEL_MS_BOUND`; ``malformed`` otherwise."""
    if value is None:
        return None
    return schema.int_(value, "max_channel_ms", 1, MAX_CHANNEL_MS_BOUND)


def _channel_tail(max_channel_ms: int | None) -> list[Any]:
    return [] if max_channel_ms is None else [max_channel_ms]


@dataclass(frozen=True, slots=True)
class MutualCreditPolicy:
    membership: str
    stewards: tuple[bytes, ...]
    default_limit: int
    #: None: not written in the genesis, :data:`DEFAULT_MAX_CHANNEL_MS` applies.
    max_channel_ms: int | None = None

    def __post_init__(self) -> None:
        _max_channel_ms(self.max_channel_ms)

    def to_wire(self) -> list[Any]:
        return [
            self.membership,
            list(self.stewards),
            self.default_limit,
            *_channel_tail(self.max_channel_ms),
        ]


@dataclass(frozen=True, slots=True)
class IssuedPolicy:
    membership: str
    stewards: tuple[bytes, ...]
    issuers: tuple[tuple[bytes, int], ...]
    #: None: not written in the genesis, :data:`DEFAULT_MAX_CHANNEL_MS` applies.
    max_channel_ms: int | None = None

    def __post_init__(self) -> None:
        _max_channel_ms(self.max_channel_ms)

    def to_wire(self) -> list[Any]:
        return [
            self.membership,
            list(self.stewards),
            [[k, c] for k, c in self.issuers],
            *_channel_tail(self.max_channel_ms),
        ]


@dataclass(frozen=True, slots=True)
class ImpactPolicy:
    membership: str
    stewards: tuple[bytes, ...]
    #: The metric whose attested sums become credits …
    metric: str
    #: … counted in units of ``10^exponent`` of the metric's unit …
    exponent: int
    #: … of which this many make one credit (one minor unit).
    units_per_credit: int
    #: The eligible ``device_kind`` values of ``device.register``.
    device_kinds: tuple[str, ...]
    #: None: not written in the genesis, :data:`DEFAULT_MAX_CHANNEL_MS` applies.
    max_channel_ms: int | None = None

    def __post_init__(self) -> None:
        _max_channel_ms(self.max_channel_ms)

    def to_wire(self) -> list[Any]:
        return [
            self.membership,
            list(self.stewards),
            self.metric,
            self.exponent,
            self.units_per_credit,
            list(self.device_kinds),
            *_channel_tail(self.max_channel_ms),
        ]


Policy = MutualCreditPolicy | IssuedPolicy | ImpactPolicy


def max_channel_ms(policy: Policy) -> int:
    """The ``max_channel_ms`` in force under ``policy``: the one written in
    the genesis, else :data:`DEFAULT_MAX_CHANNEL_MS`."""
    written = policy.max_channel_ms
    return DEFAULT_MAX_CHANNEL_MS if written is None else written


def smallest_quorum(total_weight: int) -> int:
    """The least quorum a genesis may name for ``total_weight``: more than
    two thirds of it (``3 * quorum > 2 * total``), so any two quorums share
    more than a third of the weight."""
    return 2 * total_weight // 3 + 1


def byzantine_bound(total_weight: int, quorum: int) -> int:
    """The most weight that may be faulty while any two quorums still share
    an honest validator: two quorums share at least ``2 * quorum - total``,
    so less than that, ``2 * quorum - total - 1`` (1 of 4 equal validators,
    2 of 7)."""
    return 2 * quorum - total_weight - 1


def _bad(detail: str) -> Refused:
    return Refused(Reason.BAD_GENESIS, detail)


def _distinct_keys(raw: list[Any], what: str) -> tuple[bytes, ...]:
    out = tuple(keys.check_public_key(schema.bytes_(k, what, 32), what) for k in raw)
    if len(set(out)) != len(out):
        raise _bad(f"{what}: duplicate key")
    return out


def _impact_policy(
    membership: str, stewards: tuple[bytes, ...], p: list[Any], max_channel_ms: int | None
) -> ImpactPolicy:
    metric = schema.str_(p[2], "metric", min_bytes=1, max_bytes=MAX_METRIC_BYTES)
    exponent = schema.int_(p[3], "exponent", MIN_EXPONENT, MAX_EXPONENT)
    units = schema.int_(p[4], "units_per_credit", 1, schema.INT64_MAX)
    raw = schema.list_(p[5], "device_kinds", min_len=1, max_len=MAX_DEVICE_KINDS)
    kinds = tuple(
        schema.str_(k, "device kind", min_bytes=1, max_bytes=MAX_DEVICE_KIND_BYTES) for k in raw
    )
    if len(set(kinds)) != len(kinds):
        raise _bad("device_kinds: duplicate kind")
    return ImpactPolicy(membership, stewards, metric, exponent, units, kinds, max_channel_ms)


@dataclass(frozen=True, slots=True)
class Genesis:
    name: str
    symbol: str
    decimals: int
    kind: str
    policy: Policy
    validators: tuple[Validator, ...]
    quorum: int
    ts_ms: int
    nonce: bytes = b""

    def to_wire(self) -> list[Any]:
        return [
            "genesis",
            1,
            self.name,
            self.symbol,
            self.decimals,
            self.kind,
            self.policy.to_wire(),
            [[v.key, v.weight] for v in self.validators],
            self.quorum,
            self.ts_ms,
            self.nonce,
        ]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @property
    def id(self) -> bytes:
        """The economy id."""
        return GENESIS.id(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        return cls.from_wire(codec.decode(data, max_size=MAX_GENESIS_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Genesis:
        """Parse and check every rule in the module docstring except
        signatures. ``malformed`` for shape and per-field bounds (types,
        lengths of name and symbol, decimals, list sizes such as an empty
        issuer list); ``bad_genesis`` for the economy rules (kind and
        membership values, quorum, duplicate keys, stewards for approved
        membership, the caps' sum); ``bad_key`` for an invalid key."""
        f = schema.array(value, "genesis", 1, 11, "genesis")
        name = schema.str_(f[2], "name", min_bytes=1, max_bytes=64)
        symbol = schema.str_(f[3], "symbol", min_bytes=1, max_bytes=12)
        decimals = schema.int_(f[4], "decimals", 0, 18)
        kind = schema.str_(f[5], "kind", max_bytes=32)
        if kind not in KINDS:
            raise _bad(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        fields = 6 if kind == IMPACT else 3
        p = schema.list_(f[6], "policy", min_len=fields, max_len=fields + 1)
        max_channel_ms = _max_channel_ms(p[fields]) if len(p) > fields else None
        membership = schema.str_(p[0], "membership", max_bytes=16)
        if membership not in (MEMBERSHIP_OPEN, MEMBERSHIP_APPROVED):
            raise _bad(f"membership {membership!r} is not 'open' or 'approved'")
        stewards = _distinct_keys(schema.list_(p[1], "stewards", max_len=MAX_STEWARDS), "steward")
        if membership == MEMBERSHIP_APPROVED and not stewards:
            raise _bad("approved membership needs at least one steward")
        policy: Policy
        if kind == MUTUAL_CREDIT:
            limit = schema.int_(p[2], "default_limit", 0, schema.INT64_MAX)
            policy = MutualCreditPolicy(membership, stewards, limit, max_channel_ms)
        elif kind == IMPACT:
            policy = _impact_policy(membership, stewards, p, max_channel_ms)
        else:
            raw = schema.list_(p[2], "issuers", min_len=1, max_len=MAX_ISSUERS)
            pairs = [schema.list_(x, "issuer", min_len=2, max_len=2) for x in raw]
            issuer_keys = _distinct_keys([x[0] for x in pairs], "issuer")
            caps = [schema.int_(x[1], "issuer cap", 1, schema.INT64_MAX) for x in pairs]
            if sum(caps) > schema.INT64_MAX:
                raise _bad("issuer caps sum past 2**63 - 1")
            policy = IssuedPolicy(
                membership, stewards, tuple(zip(issuer_keys, caps, strict=True)), max_channel_ms
            )
        raw_validators = schema.list_(f[7], "validators", min_len=1, max_len=MAX_VALIDATORS)
        vpairs = [schema.list_(x, "validator", min_len=2, max_len=2) for x in raw_validators]
        vkeys = _distinct_keys([x[0] for x in vpairs], "validator")
        weights = [schema.int_(x[1], "validator weight", 1, MAX_WEIGHT) for x in vpairs]
        quorum = schema.int_(f[8], "quorum", 1, MAX_WEIGHT * MAX_VALIDATORS)
        total = sum(weights)
        if not (quorum >= smallest_quorum(total) and quorum <= total):
            raise _bad(f"quorum {quorum} must be > 2/3 of total weight {total} and <= it")
        ts_ms = schema.int_(f[9], "ts_ms", 0, schema.INT64_MAX)
        nonce = schema.bytes_(f[10], "nonce", max_size=32)
        validators = tuple(Validator(k, w) for k, w in zip(vkeys, weights, strict=True))
        return cls(name, symbol, decimals, kind, policy, validators, quorum, ts_ms, nonce)

    def checked(self) -> Genesis:
        """Re-parse from the wire form: applies every rule to a genesis built
        in code. Returns the parsed copy."""
        return Genesis.from_wire(codec.decode(self.encode(), max_size=MAX_GENESIS_BYTES))

    def sign(self, key: keys.SigningKey) -> bytes:
        """A validator's signature over this genesis (its economy id)."""
        return keys.sign(key, GENESIS, self.id)


@dataclass(frozen=True, slots=True)
class SignedGenesis:
    genesis: Genesis
    bitmap: bytes
    signatures: tuple[bytes, ...]

    def to_wire(self) -> list[Any]:
        return ["signed-genesis", 1, self.genesis.to_wire(), self.bitmap, list(self.signatures)]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> SignedGenesis:
        value = codec.decode(data, max_size=MAX_SIGNED_GENESIS_BYTES)
        f = schema.array(value, "signed-genesis", 1, 5, "signed genesis")
        genesis = Genesis.from_wire(f[2])
        bitmap = schema.bytes_(f[3], "bitmap", max_size=MAX_VALIDATORS // 8)
        sigs = schema.list_(f[4], "signatures", max_len=MAX_VALIDATORS)
        return cls(genesis, bitmap, tuple(schema.bytes_(s, "signature", 64) for s in sigs))

    @classmethod
    def assemble(cls, genesis: Genesis, signatures: dict[bytes, bytes]) -> SignedGenesis:
        """Build from ``{validator key: signature}``; unknown keys are refused
        (``not_validator``). Does not check quorum: :meth:`Economy.from_signed` does."""
        index = {v.key: i for i, v in enumerate(genesis.validators)}
        for k in signatures:
            if k not in index:
                raise Refused(Reason.NOT_VALIDATOR, f"{keys.did_encode(k)} is not a validator")
        order = sorted(signatures, key=index.__getitem__)
        bitmap = make_bitmap((index[k] for k in order), len(genesis.validators))
        return cls(genesis, bitmap, tuple(signatures[k] for k in order))


# -- epochs ----------------------------------------------------------------------------

DAY_MS = 86_400_000
#: The longest a proposal may stay open, from its timestamp to its close.
MAX_VOTING_MS = 366 * DAY_MS
#: Bound of a voice-credit period (``GovSettings.voice_period_ms``).
MAX_PERIOD_MS = 10 * 366 * DAY_MS
MAX_BPS = 10_000


def _setting(value: Any, name: str, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise Refused(Reason.BAD_PAYLOAD, f"{name}: expected an integer")
    if not lo <= value <= hi:
        raise Refused(Reason.BAD_PAYLOAD, f"{name}: {value} not in [{lo}, {hi}]")
    return value


@dataclass(frozen=True, slots=True)
class GovSettings:
    """How an economy governs itself (``governance.py``): part of each
    epoch's policy, the defaults below in epoch 0 (a genesis does not name
    them), changed like any policy field by ``policy.set`` under the names
    in :data:`SETTING_NAMES`."""

    #: ``majority``: ballots cast (yes + no + abstain) must reach this share
    #: of the proposal's electorate, in basis points (0 … 10 000).
    participation_bps: int = 2_000
    #: ``absolute``: certified yes votes needed (1 … 2**32).
    absolute_k: int = 3
    #: ``quadratic``: voice credits per voter and period (1 … 2**32).
    voice_credits: int = 100
    #: the voice-credit period (1 ms … ten years): a vote at ``ts_ms``
    #: spends from period ``ts_ms // voice_period_ms``.
    voice_period_ms: int = 30 * DAY_MS
    #: the shortest a proposal may be open (0 … :data:`MAX_VOTING_MS`).
    min_voting_ms: int = 3 * DAY_MS

    def __post_init__(self) -> None:
        _setting(self.participation_bps, "participation_bps", 0, MAX_BPS)
        _setting(self.absolute_k, "absolute_k", 1, MAX_WEIGHT)
        _setting(self.voice_credits, "voice_credits", 1, MAX_WEIGHT)
        _setting(self.voice_period_ms, "voice_period_ms", 1, MAX_PERIOD_MS)
        _setting(self.min_voting_ms, "min_voting_ms", 0, MAX_VOTING_MS)

    def to_wire(self) -> list[Any]:
        return [
            self.participation_bps,
            self.absolute_k,
            self.voice_credits,
            self.voice_period_ms,
            self.min_voting_ms,
        ]


#: ``policy.set`` names of the governance settings -> the field they set.
SETTING_NAMES: dict[str, str] = {
    f"gov.{name}": name
    for name in (
        "participation_bps",
        "absolute_k",
        "voice_credits",
        "voice_period_ms",
        "min_voting_ms",
    )
}


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch: its committee (validators in their order, which is the
    signer-bitmap order of its certificates, and quorum), its policy and
    governance settings, and what created it."""

    number: int
    validators: tuple[Validator, ...]
    quorum: int
    policy: Policy
    settings: GovSettings
    #: The ``gov.enact`` entry that created this epoch (the economy id for epoch 0).
    enact: bytes
    #: The proposal it enacted (empty for epoch 0).
    proposal: bytes = b""
    keys: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    weights: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(v.key for v in self.validators))
        object.__setattr__(self, "weights", tuple(v.weight for v in self.validators))

    @property
    def total_weight(self) -> int:
        return sum(self.weights)

    @property
    def byzantine_bound(self) -> int:
        return byzantine_bound(self.total_weight, self.quorum)

    def weight_of(self, indices: Iterable[int]) -> int:
        return sum(self.weights[i] for i in indices)


@dataclass(frozen=True, slots=True, eq=False)
class Economy:
    """A checked genesis and its epochs, with the lookups every rule needs
    precomputed for the current epoch."""

    id: bytes
    genesis: Genesis
    validators: tuple[bytes, ...]
    weights: tuple[int, ...]
    quorum: int
    index: dict[bytes, int] = field(repr=False)
    stewards: frozenset[bytes] = field(repr=False)
    issuers: dict[bytes, int] = field(repr=False)
    #: Every epoch so far, the genesis (epoch 0) first; the last is in force.
    epochs: tuple[EpochRecord, ...] = field(repr=False)
    #: :meth:`at`'s results, built once each.
    _earlier: dict[int, Economy] = field(default_factory=dict, repr=False)

    @property
    def epoch(self) -> int:
        """The epoch in force (votes and new certificates name it)."""
        return self.epochs[-1].number

    @property
    def current(self) -> EpochRecord:
        return self.epochs[-1]

    @property
    def kind(self) -> str:
        return self.genesis.kind

    @property
    def membership(self) -> str:
        return self.current.policy.membership

    @property
    def policy(self) -> Policy:
        """The policy in force (its type follows :attr:`kind`)."""
        return self.current.policy

    @property
    def settings(self) -> GovSettings:
        """The governance settings in force."""
        return self.current.settings

    @property
    def impact(self) -> ImpactPolicy:
        """The impact policy; ``not_allowed`` in an economy of another kind."""
        policy = self.current.policy
        if not isinstance(policy, ImpactPolicy):
            raise Refused(Reason.NOT_ALLOWED, f"a {self.kind} economy has no impact policy")
        return policy

    @property
    def max_channel_ms(self) -> int:
        """The longest a ``channel.open`` may lock its escrow (its expiry
        at most this far past the validator's clock), in every kind."""
        return max_channel_ms(self.current.policy)

    @property
    def default_limit(self) -> int:
        policy = self.current.policy
        return policy.default_limit if isinstance(policy, MutualCreditPolicy) else 0

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Economy:
        """Trust ``genesis``'s signatures (e.g. it came from our own store),
        but check its rules."""
        g = genesis.checked()
        first = EpochRecord(GENESIS_EPOCH, g.validators, g.quorum, g.policy, GovSettings(), g.id)
        return cls._of(g, (first,))

    @classmethod
    def _of(cls, g: Genesis, epochs: tuple[EpochRecord, ...]) -> Economy:
        now = epochs[-1]
        policy = now.policy
        issuers = dict(policy.issuers) if isinstance(policy, IssuedPolicy) else {}
        return cls(
            id=g.id,
            genesis=g,
            validators=now.keys,
            weights=now.weights,
            quorum=now.quorum,
            index={k: i for i, k in enumerate(now.keys)},
            stewards=frozenset(policy.stewards),
            issuers=issuers,
            epochs=epochs,
        )

    def committee(self, epoch: int) -> EpochRecord:
        """The record of ``epoch`` (its committee verifies that epoch's
        certificates); ``wrong_epoch`` for an epoch this economy does not
        have (yet)."""
        if type(epoch) is not int or not 0 <= epoch <= self.epoch:
            raise Refused(
                Reason.WRONG_EPOCH, f"epoch {epoch} is not one this economy has (at {self.epoch})"
            )
        return self.epochs[epoch]

    def at(self, epoch: int) -> Economy:
        """This economy as it was in ``epoch`` (its committee and policy in
        force): what a certificate of that epoch is applied under."""
        if epoch == self.epoch:
            return self
        earlier = self._earlier.get(epoch)
        if earlier is None:
            self.committee(epoch)  # wrong_epoch past the current one
            earlier = Economy._of(self.genesis, self.epochs[: epoch + 1])
            self._earlier[epoch] = earlier
        return earlier

    def advanced(self, record: EpochRecord) -> Economy:
        """This economy with ``record`` as its next epoch in force."""
        if record.number != self.epoch + 1:
            raise ValueError(f"epoch {record.number} does not follow {self.epoch}")
        return Economy._of(self.genesis, (*self.epochs, record))

    @classmethod
    def from_signed(cls, signed: SignedGenesis) -> Economy:
        """Check the genesis rules and that a quorum of its validators signed
        it (``bad_genesis`` if not, with the underlying reason in the detail)."""
        economy = cls.from_genesis(signed.genesis)
        try:
            verify_quorum(
                economy.validators,
                economy.weights,
                economy.quorum,
                GENESIS,
                economy.id,
                signed.bitmap,
                signed.signatures,
            )
        except Refused as exc:
            raise Refused(Reason.BAD_GENESIS, f"signatures: {exc}") from None
        return economy

    def weight(self, indices: Iterable[int]) -> int:
        """The total weight of the validators at ``indices``."""
        return sum(self.weights[i] for i in indices)

    def quorum_blocked(self, refused: Iterable[int]) -> bool:
        """True once the validators at ``refused`` hold so much weight that
        the others together can no longer reach quorum."""
        return self.weight(refused) > sum(self.weights) - self.quorum

    def is_member(self, account: bytes, state: Account) -> bool:
        """Whether ``account`` (with its applied ``state``) is a member in
        force: by policy, or admitted (an admission is a monotonic fact)."""
        return bool(state.admitted) or self.is_member_by_policy(account)

    def credit_limit(self, state: Account) -> int:
        """The credit limit in force for an account with ``state``: its balance
        may go down to ``-credit_limit``. Mutual credit: the steward-set limit,
        else the default; issued and impact economies: 0."""
        return state.limit(self.default_limit) if self.kind == MUTUAL_CREDIT else 0

    def is_member_by_policy(self, account: bytes) -> bool:
        """Members without an admission: everyone in an open economy,
        stewards and issuers in any economy."""
        return (
            self.current.policy.membership == MEMBERSHIP_OPEN
            or account in self.stewards
            or account in self.issuers
        )
