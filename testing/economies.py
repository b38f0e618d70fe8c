"""Deterministic keys, economies, entries and certificates.

Why this exists: a failure must reproduce, so tests and benchmarks use
keys from fixed seeds (``key(n)``, ``device_key(n)``) and geneses with
fixed contents, and they need certified entries without running a node.
The genesis makers (:func:`genesis`, :func:`impact_genesis`) are also the
ones ``mycelia devnet`` makes its demo economies with, so there is one way
to make an economy outside a steward's ``economy create``.

A :class:`World` holds one economy with its validator keys and an
in-memory ledger, and builds each author's next entry from the ledger's
view of that author's chain (seq, prev), so tests read as the story they
tell (payments, sensors, compute channels). Its ``clock`` is the
timestamp of the last entry it built; checks without a clock of their own
read the entry's. Imports only ``mycelia.protocol``.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b
from typing import TypedDict, Unpack

from mycelia.protocol import (
    Burn,
    Certificate,
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    ChannelState,
    CreditSet,
    Economy,
    Entry,
    Genesis,
    Ledger,
    MemberAdmit,
    Mint,
    Release,
    SignedEntry,
    SignedGenesis,
    SignedRelease,
    SignedVoucher,
    SigningKey,
    Transfer,
    Validator,
    Vote,
    Voucher,
    assemble,
    channel_state,
    smallest_quorum,
)
from mycelia.protocol.economy import ImpactPolicy, IssuedPolicy, MutualCreditPolicy, Policy
from mycelia.protocol.merkle import MerkleTree
from mycelia.protocol.sensors import (
    AttestedDevice,
    DeviceKey,
    DeviceRecord,
    DeviceRegister,
    Ed25519DeviceKey,
    ImpactClaim,
    Metric,
    P256DeviceKey,
    Reading,
    SensorAttest,
    SignedReading,
    build_attestation,
)

T0 = 1_700_000_000_000


def key(n: int, label: str = "account") -> SigningKey:
    return SigningKey(blake2b(f"{label}/{n}".encode(), digest_size=32).digest())


def validator_keys(n: int) -> list[SigningKey]:
    return [key(i, "validator") for i in range(n)]


def genesis(
    *,
    kind: str = "mutual_credit",
    membership: str = "open",
    validators: Iterable[SigningKey] | None = None,
    weights: Iterable[int] | None = None,
    quorum: int | None = None,
    stewards: Iterable[SigningKey] = (),
    issuers: Iterable[tuple[SigningKey, int]] = (),
    default_limit: int = 1_000,
    name: str = "Test Valley Hours",
    symbol: str = "TVH",
    decimals: int = 2,
    ts_ms: int = T0,
    nonce: bytes = b"",
) -> Genesis:
    """A mutual-credit (or, with ``kind``, issued) economy; by default four
    validators of weight 1, the smallest quorum above two thirds."""
    vkeys = list(validators) if validators is not None else validator_keys(4)
    w = list(weights) if weights is not None else [1] * len(vkeys)
    total = sum(w)
    q = quorum if quorum is not None else smallest_quorum(total)
    steward_keys = tuple(s.public for s in stewards)
    policy: Policy
    if kind == "mutual_credit":
        policy = MutualCreditPolicy(membership, steward_keys, default_limit)
    else:
        policy = IssuedPolicy(membership, steward_keys, tuple((k.public, c) for k, c in issuers))
    return Genesis(
        name=name,
        symbol=symbol,
        decimals=decimals,
        kind=kind,
        policy=policy,
        validators=tuple(Validator(v.public, x) for v, x in zip(vkeys, w, strict=True)),
        quorum=q,
        ts_ms=ts_ms,
        nonce=nonce,
    )


#: The metric the impact economies of the tests turn into credits.
ENERGY = Metric("energy_wh", "Wh", 0, 0, 1_000_000)
TEMPERATURE = Metric("temp_c", "degC", -1, -400, 1_000)


def impact_genesis(
    *,
    validators: Iterable[SigningKey] | None = None,
    membership: str = "open",
    stewards: Iterable[SigningKey] = (),
    metric: str = "energy_wh",
    exponent: int = 0,
    units_per_credit: int = 1_000,
    device_kinds: Iterable[str] = ("solar-meter", "wind-meter"),
    name: str = "Test Valley Solar",
    symbol: str = "TVS",
    decimals: int = 3,
    ts_ms: int = T0,
    nonce: bytes = b"",
) -> Genesis:
    """An impact economy: ``units_per_credit`` Wh make one credit (minor unit)."""
    vkeys = list(validators) if validators is not None else validator_keys(4)
    policy = ImpactPolicy(
        membership,
        tuple(s.public for s in stewards),
        metric,
        exponent,
        units_per_credit,
        tuple(device_kinds),
    )
    return Genesis(
        name=name,
        symbol=symbol,
        decimals=decimals,
        kind="impact",
        policy=policy,
        validators=tuple(Validator(v.public, 1) for v in vkeys),
        quorum=smallest_quorum(len(vkeys)),
        ts_ms=ts_ms,
        nonce=nonce,
    )


def device_key(n: int, key_type: str = "ed25519") -> DeviceKey:
    """A device key from a fixed seed, of either key type."""
    seed = blake2b(f"device/{key_type}/{n}".encode(), digest_size=32).digest()
    return Ed25519DeviceKey(seed) if key_type == "ed25519" else P256DeviceKey(seed)


def sign_genesis(g: Genesis, signers: Iterable[SigningKey]) -> SignedGenesis:
    return SignedGenesis.assemble(g, {k.public: g.sign(k) for k in signers})


class RegistrationOptions(TypedDict, total=False):
    """What :meth:`World.registration_body` takes besides the keys."""

    metrics: Iterable[Metric]
    device_kind: str


def _row(cert: Certificate, device: bytes) -> AttestedDevice:
    """``device``'s row in the ``sensor.attest`` that ``cert`` certifies."""
    body = cert.entry.body
    assert isinstance(body, SensorAttest), f"a {cert.entry.kind}, not an attestation"
    row = body.row(device)
    assert row is not None, "the attestation has no row for the device"
    return row


class World:
    """One economy, its validators, and an in-memory ledger of what is certified."""

    def __init__(self, g: Genesis | None = None, vkeys: list[SigningKey] | None = None) -> None:
        self.vkeys = vkeys if vkeys is not None else validator_keys(4)
        self.genesis = g if g is not None else genesis(validators=self.vkeys)
        self.ledger = Ledger(Economy.from_signed(sign_genesis(self.genesis, self.vkeys)))
        self.clock = T0

    @property
    def economy(self) -> Economy:
        """The economy in force (the ledger's: it follows enacted epochs)."""
        return self.ledger.economy

    @property
    def id(self) -> bytes:
        return self.economy.id

    def entry(
        self,
        author: SigningKey,
        body: object,
        *,
        seq: int | None = None,
        prev: bytes | None = None,
        ts_ms: int | None = None,
        economy: bytes | None = None,
    ) -> SignedEntry:
        """``author``'s next entry (per the ledger), signed; override any field."""
        acct = self.ledger.account(author.public)
        self.clock += 1
        e = Entry(
            economy=self.id if economy is None else economy,
            author=author.public,
            seq=acct.seq + 1 if seq is None else seq,
            prev=acct.head if prev is None else prev,
            ts_ms=self.clock if ts_ms is None else ts_ms,
            body=body,
        )
        return e.sign(author)

    def certify(self, signed: SignedEntry, signers: Iterable[int] | None = None) -> Certificate:
        """Votes from validators ``signers`` (default: the first quorum)."""
        idx = list(signers) if signers is not None else list(range(self.quorum_size()))
        votes = [Vote.make(self.vkeys[i], self.id, self.economy.epoch, signed.id) for i in idx]
        return assemble(self.economy, signed, votes)

    def quorum_size(self) -> int:
        """How many of the first validators it takes to reach quorum."""
        total = 0
        for n, w in enumerate(self.economy.weights, 1):
            total += w
            if total >= self.economy.quorum:
                return n
        raise AssertionError("unreachable quorum")

    def commit(self, author: SigningKey, body: object) -> Certificate:
        """Check, certify and apply ``author``'s next entry; fail loudly if refused."""
        signed = self.entry(author, body)
        verdict = self.ledger.check(signed)
        assert verdict.ok, verdict
        cert = self.certify(signed)
        self.ledger.apply(cert)
        return cert

    def transfer(self, a: SigningKey, b: SigningKey, amount: int, memo: str = "") -> Certificate:
        return self.commit(a, Transfer(b.public, amount, memo))

    def mint(self, issuer: SigningKey, to: SigningKey, amount: int) -> Certificate:
        return self.commit(issuer, Mint(to.public, amount, ""))

    def burn(self, a: SigningKey, amount: int) -> Certificate:
        return self.commit(a, Burn(amount))

    def admit(self, steward: SigningKey, member: SigningKey) -> Certificate:
        return self.commit(steward, MemberAdmit(member.public))

    def set_limit(self, steward: SigningKey, member: SigningKey, limit: int) -> Certificate:
        return self.commit(steward, CreditSet(member.public, limit))

    def balance(self, k: SigningKey) -> int:
        return self.ledger.account(k.public).balance

    # -- sensors (impact economies) ------------------------------------------------

    def registration_body(
        self,
        owner: SigningKey,
        dev: DeviceKey,
        host: SigningKey,
        *,
        metrics: Iterable[Metric] = (ENERGY,),
        device_kind: str = "solar-meter",
    ) -> DeviceRegister:
        return DeviceRegister.make(dev, self.id, owner.public, device_kind, host.public, metrics)

    def register(
        self,
        owner: SigningKey,
        dev: DeviceKey,
        host: SigningKey,
        **kw: Unpack[RegistrationOptions],
    ) -> Certificate:
        return self.commit(owner, self.registration_body(owner, dev, host, **kw))

    def device_record(self, dev: DeviceKey) -> DeviceRecord | None:
        raw = self.ledger.state.get_record(DeviceRecord.key(dev.device))
        return None if raw is None else DeviceRecord.decode(raw)

    def readings(
        self,
        dev: DeviceKey,
        counters: Iterable[int],
        value: int | Iterable[int] = 100,
        *,
        metric: str = "energy_wh",
        exponent: int = 0,
        economy: bytes | None = None,
    ) -> list[SignedReading]:
        """Signed readings of ``dev`` at ``counters`` (one value for all, or one each)."""
        cs = list(counters)
        values = [value] * len(cs) if isinstance(value, int) else list(value)
        econ = self.id if economy is None else economy
        return [
            Reading(econ, dev.device, c, T0 + c, metric, v, exponent).sign(dev)
            for c, v in zip(cs, values, strict=True)
        ]

    def attest_body(
        self, readings: Iterable[SignedReading]
    ) -> tuple[SensorAttest, MerkleTree, list[SignedReading]]:
        """The attestation of ``readings``, naming each device's registration here."""
        batch = list(readings)
        regs = {}
        for r in batch:
            raw = self.ledger.state.get_record(DeviceRecord.key(r.reading.device))
            assert raw is not None, "attesting a device not registered here"
            regs[r.reading.device] = DeviceRecord.decode(raw).registration
        return build_attestation(batch, regs)

    def attest(self, host: SigningKey, readings: Iterable[SignedReading]) -> Certificate:
        body, _tree, _ordered = self.attest_body(readings)
        return self.commit(host, body)

    def claim(
        self,
        owner: SigningKey,
        dev: DeviceKey,
        attestations: Iterable[Certificate],
        *,
        total: int | None = None,
        first: int | None = None,
        last: int | None = None,
    ) -> Certificate:
        return self.commit(owner, self.claim_body(dev, attestations, total, first, last))

    def claim_body(
        self,
        dev: DeviceKey,
        attestations: Iterable[Certificate],
        total: int | None = None,
        first: int | None = None,
        last: int | None = None,
    ) -> ImpactClaim:
        """A claim of ``dev`` over ``attestations``; by default exactly their
        range and the sum of the economy metric in them."""
        certs = list(attestations)
        rows = [_row(c, dev.device) for c in certs]
        metric = self.economy.impact.metric
        computed = sum((a.sum if (a := row.aggregate(metric)) is not None else 0) for row in rows)
        return ImpactClaim(
            dev.device,
            rows[0].first if first is None else first,
            rows[-1].last if last is None else last,
            tuple(c.entry_id for c in certs),
            computed if total is None else total,
        )

    # -- compute channels ------------------------------------------------------------------

    def open_channel(
        self,
        consumer: SigningKey,
        provider: SigningKey,
        amount: int,
        *,
        lasts_ms: int = 3_600_000,
        offer: bytes = b"",
    ) -> Certificate:
        """``consumer`` opens a channel to ``provider`` expiring ``lasts_ms``
        after the entry's timestamp; the certificate's entry id is the channel id."""
        return self.commit(
            consumer, ChannelOpen(provider.public, amount, self.clock + 1 + lasts_ms, offer)
        )

    def channel(self, channel: bytes) -> ChannelState:
        state = channel_state(self.ledger.state, channel)
        assert state is not None, "no such channel here"
        return state

    def voucher(self, consumer: SigningKey, channel: bytes, cumulative: int) -> SignedVoucher:
        return Voucher(self.id, channel, cumulative).sign(consumer)

    def release(self, provider: SigningKey, channel: bytes, final: int) -> SignedRelease:
        return Release(self.id, channel, final).sign(provider)

    def close_body(self, consumer: SigningKey, channel: bytes, cumulative: int) -> ChannelClose:
        """The provider's close of ``channel`` with ``consumer``'s voucher for ``cumulative``."""
        return ChannelClose.of(self.channel(channel), self.voucher(consumer, channel, cumulative))

    def refund_body(self, channel: bytes, release: SignedRelease | None = None) -> ChannelRefund:
        return ChannelRefund.of(self.channel(channel), release)
