"""Compute payment channels: vouchers, releases, the three entry bodies, the
channel records the ledger keeps, and the checks a provider and a consumer
run off the ledger.

Why this exists: compute one node does for another is paid through a
unidirectional payment channel (DESIGN §6; Filecoin paych, µRaiden). The
consumer locks an escrow in its own chain (``channel.open``), pays as the
work goes with *vouchers* — one Ed25519 signature each, no validator, so
metering can be a voucher per second — and the channel ends once, either by
the provider's ``channel.close`` with the best voucher it holds, or by the
consumer's ``channel.refund`` after expiry or with the provider's *release*.
This module holds every value of that story and the checks on them, in one
place, so the ledger rules (``channel_kinds.py``), a provider node keeping
vouchers and a consumer node keeping a release all call the same code. The
wire contract, the trust model and the reason codes are in
``docs/compute.md``.

Off-ledger values (each its own signing domain, ``domains.py``)::

    voucher        = ["voucher", 1, economy, channel, cumulative]   # consumer signs
    signed-voucher = ["signed-voucher", 1, voucher, signature]
    release        = ["release", 1, economy, channel, final]         # provider signs
    signed-release = ["signed-release", 1, release, signature]

``id = BLAKE2b-256("mycelia/voucher/1\\0" + voucher bytes)`` and the
consumer signs ``"mycelia/sig/voucher/1\\0" + id`` (the release likewise in
the ``release`` domain, signed by the provider). ``cumulative`` (1 …
2**63-1) is the total promised so far: it is its own nonce, the provider
keeps the largest (:func:`supersedes`), and a close pays exactly it.
``final`` (0 … 2**63-1) is what a release leaves the provider; the rest of
the escrow goes back to the consumer.

Entry bodies (``channel`` is the id of the ``channel.open`` entry)::

    channel.open   (consumer)  [provider, amount, expiry_ms, offer]
    channel.close  (provider)  [channel, amount, voucher_sig, consumer, escrow]
    channel.refund (consumer)  [channel, release, provider, escrow]
    release        = [] | [final, release_sig]

``offer`` is the 32-byte id of the provider's offer the channel was opened
for, or empty bytes for none (the canonical form has no nil). A close and a
refund begin with the fields of DESIGN §6 and then carry *copies* of the
channel's counterparty and escrow, checked against the open at ``check``:
so ``apply`` reads only the entry (the ``impact.claim`` pattern — a node
may apply the provider's close before the consumer's open reaches it, and
the result is the same), and ``entry_accounts`` names everyone paid without
reading state.

Records (``state.py``; both are facts, written once):

* ``fact/channel/<channel>`` — :class:`ChannelRecord`, by the consumer's
  open: consumer, provider, escrow, expiry, offer. Read by the provider's
  close (a monotonic fact of another author: a checker without it answers
  ``missing`` with the open's id) and by the consumer's refund (its own).
* ``fact/channel-settled/<channel>`` — :class:`Settlement`, by the close or
  the refund that ended the channel: which entry, what it paid each side.
  Close and refund lock the same resource ``("channel", channel)``, so
  only one is certified; under a faulty quorum that certified both, the
  smaller entry id is kept, so every node still agrees.

Bounds: every decoder bounds its input (:data:`MAX_VOUCHER_BYTES` …) and
every field; amounts are 1 … 2**63-1 (``final`` may be 0), times 0 …
2**63-1 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ID_SIZE, RELEASE, VOUCHER, Domain
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.state import fact_key

__all__ = [
    "CHANNEL_FACT",
    "DEFAULT_MAX_CHANNEL_MS",
    "MAX_CHANNEL_MS_BOUND",
    "MAX_RELEASE_BYTES",
    "MAX_SIGNED_RELEASE_BYTES",
    "MAX_SIGNED_VOUCHER_BYTES",
    "MAX_VOUCHER_BYTES",
    "NO_OFFER",
    "REFUND_SKEW_MS",
    "SETTLED_FACT",
    "ChannelClose",
    "ChannelOpen",
    "ChannelRecord",
    "ChannelRefund",
    "ChannelState",
    "RecordReader",
    "Release",
    "ReleaseTerms",
    "Settlement",
    "SignedRelease",
    "SignedVoucher",
    "Voucher",
    "channel_state",
    "check_release",
    "check_voucher",
    "require_unsettled",
    "supersedes",
]

#: The policy's ``max_channel_ms`` when a genesis does not name it: a week,
#: long enough to reuse a channel for many jobs, short enough that a
#: consumer whose provider vanished gets its escrow back within days.
DEFAULT_MAX_CHANNEL_MS = 7 * 86_400_000
#: The largest ``max_channel_ms`` a genesis may name (366 days).
MAX_CHANNEL_MS_BOUND = 366 * 86_400_000
#: A refund without a release is valid once the checker's clock is *past*
#: ``expiry_ms + REFUND_SKEW_MS``. The margin is the entry timestamp
#: tolerance (``ledger.MAX_SKEW_MS``): a provider closing up to expiry by its
#: own clock is not beaten by validators whose clocks run that much ahead.
#: A protocol constant, not a setting, so every honest validator agrees.
REFUND_SKEW_MS = 120_000
#: ``offer`` of a channel opened without one.
NO_OFFER = b""

MAX_VOUCHER_BYTES = 96
MAX_SIGNED_VOUCHER_BYTES = 192
MAX_RELEASE_BYTES = 96
MAX_SIGNED_RELEASE_BYTES = 192
_MAX_RECORD_BYTES = 192

#: Record names (see the module docstring).
CHANNEL_FACT = "channel"
SETTLED_FACT = "channel-settled"

_B = Reason.MALFORMED_BODY
_M = Reason.MALFORMED
CLOSE = "channel.close"
REFUND = "channel.refund"


def _id(value: Any, name: str, reason: Reason) -> bytes:
    return schema.bytes_(value, name, ID_SIZE, reason=reason)


def _key(value: Any, name: str, reason: Reason) -> bytes:
    return schema.bytes_(value, name, keys.PUBLIC_KEY_SIZE, reason=reason)


def _amount(value: Any, name: str, reason: Reason, low: int = 1) -> int:
    if type(value) is not int:
        raise Refused(reason, f"{name}: expected an integer")
    if not low <= value <= schema.INT64_MAX:
        raise Refused(Reason.AMOUNT_OUT_OF_RANGE, f"{name} {value} not in [{low}, 2**63 - 1]")
    return value


def _time(value: Any, name: str, reason: Reason) -> int:
    return schema.int_(value, name, 0, schema.INT64_MAX, reason=reason)


def _signature(value: Any, name: str, reason: Reason) -> bytes:
    return schema.bytes_(value, name, keys.SIGNATURE_SIZE, reason=reason)


def _offer(value: Any, reason: Reason) -> bytes:
    offer = schema.bytes_(value, "offer", max_size=ID_SIZE, reason=reason)
    if len(offer) not in (0, ID_SIZE):
        raise Refused(reason, f"offer: an offer id is {ID_SIZE} bytes (or empty for none)")
    return offer


def _verify(public: bytes, domain: Domain, id_: bytes, signature: bytes, who: str) -> None:
    keys.check_public_key(public, who)  # bad_key before the signature, as everywhere
    if not keys.verify(public, domain, id_, signature):
        reason = Reason.VOUCHER_BAD_SIG if domain is VOUCHER else Reason.RELEASE_BAD_SIG
        raise Refused(reason, f"the {domain.what} does not verify under the {who}'s key")


# -- vouchers and releases ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Voucher:
    """The consumer's promise of ``cumulative`` in total to the provider of
    ``channel`` (see the module docstring)."""

    economy: bytes
    channel: bytes
    cumulative: int

    TAG: ClassVar[str] = "voucher"

    def __post_init__(self) -> None:
        _id(self.economy, "economy", _M)
        _id(self.channel, "channel", _M)
        _amount(self.cumulative, "cumulative", _M)

    def to_wire(self) -> list[Any]:
        return [self.TAG, 1, self.economy, self.channel, self.cumulative]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return VOUCHER.id(self.encode())

    def sign(self, consumer: keys.SigningKey) -> SignedVoucher:
        return SignedVoucher(self, keys.sign(consumer, VOUCHER, self.id))

    @classmethod
    def from_wire(cls, value: Any) -> Voucher:
        f = schema.array(value, cls.TAG, 1, 5, "voucher")
        return cls(f[2], f[3], f[4])

    @classmethod
    def decode(cls, data: bytes) -> Voucher:
        return cls.from_wire(codec.decode(data, max_size=MAX_VOUCHER_BYTES))


@dataclass(frozen=True, slots=True)
class SignedVoucher:
    """A voucher with the consumer's signature: what the consumer sends the
    provider (the ``VOUCHER`` frame) and the provider keeps, newest only."""

    voucher: Voucher
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.voucher) is not Voucher:
            raise Refused(_M, "voucher: expected a Voucher")
        _signature(self.signature, "signature", _M)

    def to_wire(self) -> list[Any]:
        return ["signed-voucher", 1, self.voucher.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self, consumer: bytes) -> None:
        """Raise unless ``consumer`` signed this voucher: ``bad_key`` for an
        invalid key, ``voucher_bad_sig`` for a signature that does not verify."""
        _verify(consumer, VOUCHER, self.voucher.id, self.signature, "consumer")

    @classmethod
    def from_wire(cls, value: Any) -> SignedVoucher:
        f = schema.array(value, "signed-voucher", 1, 4, "signed voucher")
        return cls(Voucher.from_wire(f[2]), f[3])

    @classmethod
    def decode(cls, data: bytes) -> SignedVoucher:
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_VOUCHER_BYTES))


@dataclass(frozen=True, slots=True)
class Release:
    """The provider's consent that ``channel`` ends now, paying it ``final``
    and the consumer the rest of the escrow (``channel.refund`` carries it)."""

    economy: bytes
    channel: bytes
    final: int

    TAG: ClassVar[str] = "release"

    def __post_init__(self) -> None:
        _id(self.economy, "economy", _M)
        _id(self.channel, "channel", _M)
        _amount(self.final, "final", _M, low=0)

    def to_wire(self) -> list[Any]:
        return [self.TAG, 1, self.economy, self.channel, self.final]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return RELEASE.id(self.encode())

    def sign(self, provider: keys.SigningKey) -> SignedRelease:
        return SignedRelease(self, keys.sign(provider, RELEASE, self.id))

    @classmethod
    def from_wire(cls, value: Any) -> Release:
        f = schema.array(value, cls.TAG, 1, 5, "release")
        return cls(f[2], f[3], f[4])

    @classmethod
    def decode(cls, data: bytes) -> Release:
        return cls.from_wire(codec.decode(data, max_size=MAX_RELEASE_BYTES))


@dataclass(frozen=True, slots=True)
class SignedRelease:
    """A release with the provider's signature."""

    release: Release
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.release) is not Release:
            raise Refused(_M, "release: expected a Release")
        _signature(self.signature, "signature", _M)

    def to_wire(self) -> list[Any]:
        return ["signed-release", 1, self.release.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self, provider: bytes) -> None:
        """Raise unless ``provider`` signed this release: ``bad_key``, then
        ``release_bad_sig``."""
        _verify(provider, RELEASE, self.release.id, self.signature, "provider")

    @classmethod
    def from_wire(cls, value: Any) -> SignedRelease:
        f = schema.array(value, "signed-release", 1, 4, "signed release")
        return cls(Release.from_wire(f[2]), f[3])

    @classmethod
    def decode(cls, data: bytes) -> SignedRelease:
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_RELEASE_BYTES))


def supersedes(new: Voucher, held: Voucher | None) -> bool:
    """Whether a provider holding ``held`` (None: nothing yet) should keep
    ``new`` instead: the cumulative amount is the voucher's nonce, so the
    larger one replaces the smaller and an equal or smaller one (a replay,
    a reordered message) changes nothing. ``wrong_economy`` /
    ``wrong_channel`` if the two are not for the same channel."""
    if held is None:
        return True
    if new.economy != held.economy:
        raise Refused(Reason.WRONG_ECONOMY, "the vouchers are for different economies")
    if new.channel != held.channel:
        raise Refused(Reason.WRONG_CHANNEL, "the vouchers are for different channels")
    return new.cumulative > held.cumulative


# -- the ledger's records and the channel view ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A certified ``channel.open`` as the other channel entries read it
    (record :meth:`key`)."""

    consumer: bytes
    provider: bytes
    amount: int
    expiry_ms: int
    offer: bytes = NO_OFFER

    def __post_init__(self) -> None:
        _key(self.consumer, "consumer", _M)
        _key(self.provider, "provider", _M)
        _amount(self.amount, "amount", _M)
        _time(self.expiry_ms, "expiry_ms", _M)
        _offer(self.offer, _M)

    @staticmethod
    def key(channel: bytes) -> bytes:
        """The record key of the channel opened by the entry ``channel``."""
        return fact_key(CHANNEL_FACT, channel)

    def to_wire(self) -> list[Any]:
        return [
            "channel",
            1,
            self.consumer,
            self.provider,
            self.amount,
            self.expiry_ms,
            self.offer,
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> ChannelRecord:
        f = schema.array(codec.decode(data, max_size=_MAX_RECORD_BYTES), "channel", 1, 7, "channel")
        return cls(f[2], f[3], f[4], f[5], f[6])


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a channel ended (record :meth:`key`): the certified close or refund
    ``entry``, and what it paid the provider and the consumer (together the
    escrow)."""

    entry: bytes
    kind: str
    to_provider: int
    to_consumer: int

    def __post_init__(self) -> None:
        _id(self.entry, "entry", _M)
        if type(self.kind) is not str or self.kind not in (CLOSE, REFUND):
            raise Refused(_M, f"settlement kind {self.kind!r} is not {CLOSE} or {REFUND}")
        _amount(self.to_provider, "to_provider", _M, low=0)
        _amount(self.to_consumer, "to_consumer", _M, low=0)

    @staticmethod
    def key(channel: bytes) -> bytes:
        return fact_key(SETTLED_FACT, channel)

    def to_wire(self) -> list[Any]:
        return ["channel-settled", 1, self.entry, self.kind, self.to_provider, self.to_consumer]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Settlement:
        value = codec.decode(data, max_size=_MAX_RECORD_BYTES)
        f = schema.array(value, "channel-settled", 1, 6, "settlement")
        return cls(f[2], f[3], f[4], f[5])


class RecordReader(Protocol):
    """Anything records can be read from: a ``StateView`` (a node's store, a
    ``MemoryState``) or a rule's ``Context`` (which sees its own writes)."""

    def get_record(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel as a reader sees it (a future ``channel_get``): the open,
    and the settlement once there is one."""

    id: bytes
    consumer: bytes
    provider: bytes
    #: the amount the open locked
    amount: int
    expiry_ms: int
    offer: bytes
    settlement: Settlement | None = None

    @property
    def escrow(self) -> int:
        """What the channel still holds: the amount until it is settled, then 0."""
        return 0 if self.settlement is not None else self.amount

    @property
    def settled_by(self) -> bytes | None:
        """The id of the close or refund that ended the channel, if any."""
        return None if self.settlement is None else self.settlement.entry

    @property
    def refund_after_ms(self) -> int:
        """A refund without a release is valid once the checker's clock is past this."""
        return self.expiry_ms + REFUND_SKEW_MS


def channel_state(
    records: RecordReader | Callable[[bytes], bytes | None], channel: bytes
) -> ChannelState | None:
    """The channel opened by the entry ``channel``, or None if no open with
    that id is applied in ``records`` (a reader, or a function from record
    key to value such as a store's lookup in one economy)."""
    get = records if callable(records) else records.get_record
    raw = get(ChannelRecord.key(channel))
    if raw is None:
        return None
    rec = ChannelRecord.decode(raw)
    settled = get(Settlement.key(channel))
    return ChannelState(
        channel,
        rec.consumer,
        rec.provider,
        rec.amount,
        rec.expiry_ms,
        rec.offer,
        None if settled is None else Settlement.decode(settled),
    )


def require_unsettled(channel: ChannelState) -> None:
    """``channel_settled`` once a close or a refund of ``channel`` is applied."""
    if channel.settlement is not None:
        raise Refused(
            Reason.CHANNEL_SETTLED,
            f"channel {channel.id.hex()} was settled by {channel.settlement.entry.hex()}",
        )


def _signed_for(
    economy: bytes, channel: ChannelState, economy_of: bytes, channel_of: bytes
) -> None:
    """What a voucher or a release was signed for is this economy's ``channel``,
    which is still open."""
    if economy_of != economy:
        raise Refused(Reason.WRONG_ECONOMY, "signed for another economy")
    if channel_of != channel.id:
        raise Refused(Reason.WRONG_CHANNEL, f"signed for channel {channel_of.hex()}")
    require_unsettled(channel)


def check_voucher(economy: bytes, channel: ChannelState, signed: SignedVoucher) -> None:
    """Whether ``signed`` is a voucher a provider may keep and close with:
    for this economy (``wrong_economy``) and channel (``wrong_channel``), the
    channel not settled (``channel_settled``), at most the escrow
    (``voucher_over_escrow``), signed by the consumer (``bad_key`` /
    ``voucher_bad_sig``). ``channel.close`` runs exactly this."""
    v = signed.voucher
    _signed_for(economy, channel, v.economy, v.channel)
    if v.cumulative > channel.amount:
        raise Refused(
            Reason.VOUCHER_OVER_ESCROW,
            f"voucher for {v.cumulative} but the escrow is {channel.amount}",
        )
    signed.verify(channel.consumer)


def check_release(economy: bytes, channel: ChannelState, signed: SignedRelease) -> None:
    """Whether ``signed`` lets the consumer refund ``channel`` at once:
    ``wrong_economy``, ``wrong_channel``, ``channel_settled``,
    ``release_over_escrow``, then ``bad_key`` / ``release_bad_sig`` (signed
    by the provider). ``channel.refund`` runs exactly this."""
    r = signed.release
    _signed_for(economy, channel, r.economy, r.channel)
    if r.final > channel.amount:
        raise Refused(
            Reason.RELEASE_OVER_ESCROW, f"release of {r.final} but the escrow is {channel.amount}"
        )
    signed.verify(channel.provider)


# -- entry bodies --------------------------------------------------------------------------------


def _body(value: Any, n: int, kind: str) -> list[Any]:
    return schema.list_(value, f"{kind} body", min_len=n, max_len=n, reason=_B)


@dataclass(frozen=True, slots=True)
class ChannelOpen:
    """``channel.open`` (author: the consumer): lock ``amount`` for
    ``provider`` until ``expiry_ms``."""

    kind: ClassVar[str] = "channel.open"
    provider: bytes
    amount: int
    expiry_ms: int
    offer: bytes = NO_OFFER

    def __post_init__(self) -> None:
        _key(self.provider, "provider", _B)
        _amount(self.amount, "amount", _B)
        _time(self.expiry_ms, "expiry_ms", _B)
        _offer(self.offer, _B)

    def to_wire(self) -> list[Any]:
        return [self.provider, self.amount, self.expiry_ms, self.offer]

    @classmethod
    def from_wire(cls, value: Any) -> ChannelOpen:
        return cls(*_body(value, 4, cls.kind))


@dataclass(frozen=True, slots=True)
class ChannelClose:
    """``channel.close`` (author: the provider): take ``amount`` (the
    voucher's cumulative) and return the rest of ``escrow`` to ``consumer``.
    Build it with :meth:`of`."""

    kind: ClassVar[str] = CLOSE
    channel: bytes
    amount: int
    voucher_sig: bytes
    #: copies of the open's consumer and amount (see the module docstring)
    consumer: bytes
    escrow: int

    def __post_init__(self) -> None:
        _id(self.channel, "channel", _B)
        _amount(self.amount, "amount", _B)
        _signature(self.voucher_sig, "voucher_sig", _B)
        _key(self.consumer, "consumer", _B)
        _amount(self.escrow, "escrow", _B)

    @property
    def rest(self) -> int:
        """What goes back to the consumer (never negative once checked)."""
        return self.escrow - self.amount

    def voucher(self, economy: bytes) -> SignedVoucher:
        """The signed voucher this close pays (its signature is in the body)."""
        return SignedVoucher(Voucher(economy, self.channel, self.amount), self.voucher_sig)

    @classmethod
    def of(cls, channel: ChannelState, signed: SignedVoucher) -> ChannelClose:
        """The close of ``channel`` with the provider's best voucher;
        ``wrong_channel`` if the voucher is another channel's."""
        if signed.voucher.channel != channel.id:
            raise Refused(Reason.WRONG_CHANNEL, "the voucher is for another channel")
        return cls(
            channel.id,
            signed.voucher.cumulative,
            signed.signature,
            channel.consumer,
            channel.amount,
        )

    def to_wire(self) -> list[Any]:
        return [self.channel, self.amount, self.voucher_sig, self.consumer, self.escrow]

    @classmethod
    def from_wire(cls, value: Any) -> ChannelClose:
        return cls(*_body(value, 5, cls.kind))


@dataclass(frozen=True, slots=True)
class ReleaseTerms:
    """The release a refund carries, ``[final, release_sig]``: the economy
    and the channel it was signed for are the refund entry's own."""

    final: int
    signature: bytes

    def __post_init__(self) -> None:
        _amount(self.final, "release final", _B, low=0)
        _signature(self.signature, "release_sig", _B)

    def signed(self, economy: bytes, channel: bytes) -> SignedRelease:
        return SignedRelease(Release(economy, channel, self.final), self.signature)


@dataclass(frozen=True, slots=True)
class ChannelRefund:
    """``channel.refund`` (author: the consumer): end the channel, after its
    expiry or at once with the provider's release (``release`` None: none).
    Build it with :meth:`of`."""

    kind: ClassVar[str] = REFUND
    channel: bytes
    release: ReleaseTerms | None
    #: copies of the open's provider and amount (see the module docstring)
    provider: bytes
    escrow: int

    def __post_init__(self) -> None:
        _id(self.channel, "channel", _B)
        if self.release is not None and type(self.release) is not ReleaseTerms:
            raise Refused(_B, "release: expected ReleaseTerms or None")
        _key(self.provider, "provider", _B)
        _amount(self.escrow, "escrow", _B)

    @property
    def to_provider(self) -> int:
        return 0 if self.release is None else self.release.final

    @property
    def rest(self) -> int:
        """What goes back to the consumer (never negative once checked)."""
        return self.escrow - self.to_provider

    @classmethod
    def of(cls, channel: ChannelState, release: SignedRelease | None = None) -> ChannelRefund:
        """The refund of ``channel``, with the provider's release or without
        (then valid only after expiry); ``wrong_channel`` if the release is
        another channel's."""
        terms = None
        if release is not None:
            if release.release.channel != channel.id:
                raise Refused(Reason.WRONG_CHANNEL, "the release is for another channel")
            terms = ReleaseTerms(release.release.final, release.signature)
        return cls(channel.id, terms, channel.provider, channel.amount)

    def to_wire(self) -> list[Any]:
        release = [] if self.release is None else [self.release.final, self.release.signature]
        return [self.channel, release, self.provider, self.escrow]

    @classmethod
    def from_wire(cls, value: Any) -> ChannelRefund:
        f = _body(value, 4, cls.kind)
        raw = schema.list_(f[1], "release", max_len=2, reason=_B)
        if len(raw) == 1:
            raise Refused(_B, "release: [] or [final, release_sig]")
        terms = ReleaseTerms(raw[0], raw[1]) if raw else None
        return cls(f[0], terms, f[2], f[3])
