"""Every value the RPC answers with, declared once (``codecs.py``): the
node builds these and writes ``to_json()``; the client reads them with
``from_json``; the OpenRPC document's schemas are their ``schema()``.

Values that come from the protocol are built from it here (``of``): an
entry's view from the entry, an account's from its state, an economy's
from its signed genesis, a fork's from its evidence. The node adds only
what it alone knows (counts, its own state); a client rebuilds the same
views from what it verified and compares.

Python types: ids, keys and hashes are ``bytes``; did:keys stay their
(checked) strings; amounts, balances and metric values are ``int`` (written
as decimal strings); certificates, the signed genesis, fork evidence and
unsigned entries are the protocol's objects (written as the hex of their
canonical bytes, which they keep).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypedDict

from mycelia.api.bodies import BODY, KIND, Body, body_in
from mycelia.api.codecs import (
    Decoded,
    Json,
    ListOf,
    Nullable,
    Record,
    RecordField,
    member,
)
from mycelia.api.encoding import did_out, hex_out
from mycelia.api.scalars import (
    AMOUNT,
    BOOL,
    COUNTER,
    DID,
    HEX,
    ID,
    INT64,
    NAT,
    SIGNATURE,
    SIGNED_AMOUNT,
    UNITS,
    Choice,
    hex_bytes,
    integer,
    text,
)
from mycelia.protocol import (
    Account,
    Certificate,
    Economy,
    Entry,
    ForkEvidence,
    SignedGenesis,
    did_decode,
)
from mycelia.protocol.channels import (
    CLOSE,
    DEFAULT_MAX_CHANNEL_MS,
    NO_OFFER,
    REFUND,
    ChannelState,
    Settlement,
)
from mycelia.protocol.compute_frames import (
    MAX_FRAME_BYTES,
    OUTCOMES,
    Answer,
    ErrorFrame,
    ResultFrame,
    UsageFrame,
    decode_answer,
)
from mycelia.protocol.economy import (
    ImpactPolicy,
    IssuedPolicy,
    MutualCreditPolicy,
    max_channel_ms,
)
from mycelia.protocol.impact import Claimable as ProtocolClaimable
from mycelia.protocol.offers import (
    MAX_OUTPUT_BYTES,
    MAX_RUNTIME_NAME_BYTES,
    MAX_SIGNED_OFFER_BYTES,
    Limits,
    Runtime,
    SignedOffer,
)
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain
from mycelia.protocol.sensors import MAX_SIGNED_READING_BYTES

__all__ = [
    "ACCEPTED",
    "CERTIFIED",
    "FINAL",
    "PENDING",
    "REFUSED",
    "AccountHistory",
    "AccountInfo",
    "Attestation",
    "CertifiedEntry",
    "ChannelView",
    "Claimable",
    "ClaimableAttestation",
    "ComputeAnswer",
    "ComputeInfo",
    "Created",
    "EconomySummary",
    "EconomyView",
    "EntryStatus",
    "EntryView",
    "Followed",
    "Fork",
    "ForksPage",
    "GenesisSignature",
    "HostedDevice",
    "ImpactTerms",
    "Issuer",
    "JobStarted",
    "NodeInfo",
    "OfferRuntime",
    "OfferView",
    "Peer",
    "Prepared",
    "ReadingResult",
    "ReadingsPage",
    "StoredReading",
    "Submitted",
    "ValidatorWeight",
    "need_json",
]

#: Entry statuses (``entry_get``); the last two are final.
PENDING = "pending"
CERTIFIED = "certified"
REFUSED = "refused"
FINAL = frozenset({CERTIFIED, REFUSED})

_ECONOMY_KINDS = ("mutual_credit", "issued", "impact")
_MEMBERSHIPS = ("open", "approved")


#: ``member`` under another name, for records with a field named ``member``.
_member = member


#: Text a node writes (names, reasons, details): any string, bounded.
_TEXT = text()
_LONG_TEXT = text(64 * 1024)
_ADDRESS = text(1024)
_CERTIFICATE = Decoded(Certificate, HEX.schema)


# -- entries ------------------------------------------------------------------------------


class EntryFields(TypedDict):
    """An :class:`EntryView`'s fields, as keyword arguments."""

    id: bytes
    economy: bytes
    author: str
    seq: int
    prev: bytes
    ts_ms: int
    kind: str
    body: Body


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryView(Record):
    """An entry as the RPC shows it: its fields, the body in the JSON of
    its kind (``docs/rpc.md``, "Encoding")."""

    COMPONENT = "EntryView"

    id: bytes = member(ID)
    economy: bytes = member(ID)
    author: str = member(DID)
    seq: int = member(integer(1))
    prev: bytes = member(ID)
    ts_ms: int = member(NAT)
    kind: str = member(KIND)
    body: Body = member(BODY)

    @classmethod
    def _load(cls, f: RecordField, raw: object, path: str, loaded: dict[str, object]) -> object:
        if f.name == "body":  # read with the kind read before it
            return body_in(loaded["kind"], raw, path)
        return f.member.codec.load(raw, path)

    @staticmethod
    def fields_of(entry: Entry, entry_id: bytes | None = None) -> EntryFields:
        return {
            "id": entry.id if entry_id is None else entry_id,
            "economy": entry.economy,
            "author": did_out(entry.author),
            "seq": entry.seq,
            "prev": entry.prev,
            "ts_ms": entry.ts_ms,
            "kind": entry.kind,
            "body": entry.body,
        }

    @classmethod
    def of(cls, entry: Entry, entry_id: bytes | None = None) -> EntryView:
        """The view of ``entry`` (``entry_id``: its id, if known already)."""
        return EntryView(**EntryView.fields_of(entry, entry_id))

    def view(self) -> EntryView:
        """Just the entry view (of a record that extends it)."""
        return EntryView(**{f.name: getattr(self, f.name) for f in EntryView.fields()})

    def to_entry(self) -> Entry:
        """The protocol entry it describes (which may not hash to ``id``;
        ``Refused`` if the protocol refuses its fields)."""
        return Entry(
            self.economy, did_decode(self.author), self.seq, self.prev, self.ts_ms, self.body
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CertifiedEntry(EntryView):
    """An entry view with its certificate (verifiable offline against the
    economy's genesis): ``account_history`` items and ``account``
    notifications."""

    COMPONENT = "CertifiedEntry"

    certificate: Certificate = member(_CERTIFICATE, "the certificate's bytes")

    @classmethod
    def of_certificate(cls, cert: Certificate) -> CertifiedEntry:
        return CertifiedEntry(**EntryView.fields_of(cert.entry, cert.entry_id), certificate=cert)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountHistory(Record):
    """``account_history``: a page of certified entries, newest first."""

    entries: tuple[CertifiedEntry, ...] = member(ListOf(CertifiedEntry.codec()))
    next_cursor: str | None = member(Nullable(_ADDRESS), "null on the last page")


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryStatus(Record):
    """``entry_get`` (and an ``entry`` notification): ``pending`` (with
    ``waiting_on``, and the refusal being asked again, if any),
    ``certified`` (with the certificate and the view) or ``refused``."""

    COMPONENT = "EntryStatus"

    id: bytes = member(ID)
    status: str = member(Choice(PENDING, CERTIFIED, REFUSED))
    reason: str | None = member(
        _TEXT,
        "refused: the protocol reason; pending: the refusal (depending on the validators' "
        "state) that is being asked again",
        omit=True,
    )
    detail: str | None = member(_LONG_TEXT, omit=True)
    retryable: bool | None = member(
        BOOL,
        "refused: true when the reason depended on what the validators had seen (the node "
        "gave up at its deadline): the same entry may still be certified, e.g. submitted again",
        omit=True,
    )
    waiting_on: int | None = member(NAT, "pending: validators found unreachable", omit=True)
    certificate: Certificate | None = member(_CERTIFICATE, omit=True)
    view: EntryView | None = member(EntryView.codec(), omit=True)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def certified(self) -> bool:
        return self.status == CERTIFIED

    @property
    def entry(self) -> Entry | None:
        """The entry: the certificate's, else the one the view describes."""
        if self.certificate is not None:
            return self.certificate.entry
        return None if self.view is None else self.view.to_entry()


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared(Record):
    """``entry_prepare``: an unsigned entry, its id and the message to sign."""

    id: bytes = member(ID)
    entry: Entry = member(Decoded(Entry, HEX.schema), "the canonical unsigned entry bytes")
    signing_message: bytes = member(HEX, "sign these bytes with Ed25519")
    view: EntryView = member(EntryView.codec())


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted(Record):
    """``entry_submit``: the id of the entry, durable on the node."""

    id: bytes = member(ID)


# -- accounts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountInfo(Record):
    """``account_get``; amounts in minor units."""

    COMPONENT = "Account"

    account: str = member(DID)
    balance: int = member(SIGNED_AMOUNT)
    limit: int | None = member(
        Nullable(SIGNED_AMOUNT), "the credit limit in force (mutual credit); null in issued"
    )
    seq: int = member(NAT)
    head: bytes = member(ID)
    ts_ms: int = member(NAT, "the head entry's timestamp (0 before the first entry)")
    member: bool = _member(BOOL)
    minted: int = _member(SIGNED_AMOUNT)
    burned: int = _member(SIGNED_AMOUNT)

    @classmethod
    def of(cls, economy: Economy, public: bytes, acct: Account) -> AccountInfo:
        mutual = isinstance(economy.genesis.policy, MutualCreditPolicy)
        return AccountInfo(
            account=did_out(public),
            balance=acct.balance,
            limit=economy.credit_limit(acct) if mutual else None,
            seq=acct.seq,
            head=acct.head,
            ts_ms=acct.ts_ms,
            member=economy.is_member(public, acct),
            minted=acct.minted,
            burned=acct.burned,
        )


# -- economies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EconomySummary(Record):
    """One item of ``economy_list`` (a listing: nothing here is verified)."""

    COMPONENT = "EconomySummary"

    id: bytes = member(ID)
    name: str = member(_TEXT)
    symbol: str = member(_TEXT)
    decimals: int = member(NAT)
    kind: str = member(Choice(*_ECONOMY_KINDS))
    quorum: int = member(NAT)
    validators: tuple[str, ...] = member(ListOf(DID))
    certificates: int = member(NAT, "certified entries this node holds")
    #: 0 from nodes that predate it
    forks: int = member(NAT, "chain slots this node holds fork evidence for", default=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Issuer(Record):
    account: str = member(DID)
    cap: int = member(AMOUNT)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImpactTerms(Record):
    """An impact economy's policy: which metric mints, at what rate."""

    metric: str = member(_TEXT)
    exponent: int = member(integer(-18, 18, type="integer"))
    units_per_credit: int = member(AMOUNT)
    device_kinds: tuple[str, ...] = member(ListOf(_TEXT))


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorWeight(Record):
    did: str = member(DID)
    weight: int = member(NAT)


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochView(Record):
    """One epoch after the genesis's (``docs/governance.md``, Epochs): its
    committee and the enactment and proposal that created it."""

    epoch: int = member(NAT)
    validators: tuple[ValidatorWeight, ...] = member(ListOf(ValidatorWeight.codec()))
    quorum: int = member(NAT)
    enact: bytes = member(ID, "the gov.enact entry that created the epoch")
    proposal: bytes = member(ID, "the gov.propose entry it enacted")


@dataclass(frozen=True, slots=True, kw_only=True)
class SealsView(Record):
    """``gov_seals``: the committee's seals of a proposal that this node
    could gather, each a ``signed-seal`` (``docs/governance.md``, Seals)."""

    epoch: int = member(NAT, "the epoch the seals are of")
    seals: tuple[bytes, ...] = member(ListOf(HEX), "the signed seals' canonical bytes")
    weight: int = member(NAT, "the committee weight of their sealers")
    quorum: int = member(NAT, "the quorum of that epoch")


@dataclass(frozen=True, slots=True, kw_only=True)
class EconomyView(Record):
    """``economy_get``: the genesis and what it says, and the economy's size
    on the node (``accounts``, ``certificates``: 0 when a node omits them)."""

    COMPONENT = "Economy"

    id: bytes = member(ID)
    name: str = member(_TEXT)
    symbol: str = member(_TEXT)
    decimals: int = member(NAT)
    kind: str = member(Choice(*_ECONOMY_KINDS))
    membership: str = member(Choice(*_MEMBERSHIPS))
    stewards: tuple[str, ...] = member(ListOf(DID))
    default_limit: int | None = member(Nullable(SIGNED_AMOUNT))
    issuers: tuple[Issuer, ...] = member(ListOf(Issuer.codec()))
    impact: ImpactTerms | None = member(
        Nullable(ImpactTerms.codec()), "an impact economy's policy; null in other kinds"
    )
    validators: tuple[ValidatorWeight, ...] = member(ListOf(ValidatorWeight.codec()))
    quorum: int = member(NAT)
    ts_ms: int = member(NAT)
    nonce: bytes = member(HEX)
    genesis: SignedGenesis = member(Decoded(SignedGenesis, HEX.schema), "the signed genesis' bytes")
    accounts: int = member(NAT, "accounts with any state on this node", default=0)
    certificates: int = member(NAT, "certified entries this node holds", default=0)
    #: the default from nodes that predate compute channels
    max_channel_ms: int = member(
        integer(1),
        "the longest a channel.open may lock its escrow, in ms (policy max_channel_ms)",
        default=DEFAULT_MAX_CHANNEL_MS,
    )
    epoch: int = member(
        NAT, "the epoch in force on this node; policy and validators are its", default=0
    )
    history: tuple[EpochView, ...] = member(
        ListOf(EpochView.codec()), "every epoch after the genesis's, in order", default=()
    )

    @classmethod
    def of(
        cls,
        signed: SignedGenesis,
        accounts: int = 0,
        certificates: int = 0,
        economy: Economy | None = None,
    ) -> EconomyView:
        """What the signed genesis says — with the policy and committee of
        ``economy``'s epoch in force when given —, and the node's counts."""
        g = signed.genesis
        now = None if economy is None else economy.current
        policy = g.policy if now is None else now.policy
        committee = g.validators if now is None else now.validators
        history = () if economy is None else economy.epochs[1:]
        return EconomyView(
            id=g.id,
            name=g.name,
            symbol=g.symbol,
            decimals=g.decimals,
            kind=g.kind,
            membership=policy.membership,
            stewards=tuple(did_out(k) for k in policy.stewards),
            default_limit=(
                policy.default_limit if isinstance(policy, MutualCreditPolicy) else None
            ),
            issuers=(
                tuple(Issuer(account=did_out(k), cap=c) for k, c in policy.issuers)
                if isinstance(policy, IssuedPolicy)
                else ()
            ),
            impact=(
                ImpactTerms(
                    metric=policy.metric,
                    exponent=policy.exponent,
                    units_per_credit=policy.units_per_credit,
                    device_kinds=tuple(policy.device_kinds),
                )
                if isinstance(policy, ImpactPolicy)
                else None
            ),
            validators=tuple(
                ValidatorWeight(did=did_out(v.key), weight=v.weight) for v in committee
            ),
            quorum=g.quorum if now is None else now.quorum,
            ts_ms=g.ts_ms,
            nonce=g.nonce,
            genesis=signed,
            accounts=accounts,
            certificates=certificates,
            max_channel_ms=max_channel_ms(policy),
            epoch=0 if now is None else now.number,
            history=tuple(
                EpochView(
                    epoch=r.number,
                    validators=tuple(
                        ValidatorWeight(did=did_out(v.key), weight=v.weight) for v in r.validators
                    ),
                    quorum=r.quorum,
                    enact=r.enact,
                    proposal=r.proposal,
                )
                for r in history
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GenesisSignature(Record):
    """``economy_signGenesis``: a validator's signature of the genesis id."""

    validator: str = member(DID)
    signature: bytes = member(SIGNATURE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Created(Record):
    """``economy_create``: the economy's id."""

    id: bytes = member(ID)


@dataclass(frozen=True, slots=True, kw_only=True)
class Followed(Record):
    """``economy_follow``: ``known`` when the node already had the genesis."""

    id: bytes = member(ID)
    known: bool = member(BOOL, "whether this node already holds its genesis")


# -- forks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fork(Record):
    """A fork: two certificates for one chain slot. ``evidence`` proves all
    the rest offline (``protocol/forks.py``): a client checks it against the
    genesis and rebuilds the rest from it (:meth:`of`)."""

    COMPONENT = "Fork"

    economy: bytes = member(ID)
    author: str = member(DID, "the author whose chain forked")
    seq: int = member(integer(1), "the slot with two certificates")
    entries: tuple[EntryView, ...] = member(
        ListOf(EntryView.codec(), min_items=2, max_items=2),
        "the two certified entries, in the evidence's order",
    )
    guilty: tuple[str, ...] = member(ListOf(DID), "the validators that signed both certificates")
    evidence: ForkEvidence = member(
        Decoded(ForkEvidence, HEX.schema),
        'the evidence\'s bytes, ["fork", 1, cert, cert]: proves the rest',
    )

    @classmethod
    def of(cls, economy: Economy, evidence: ForkEvidence) -> Fork:
        """The fork ``evidence`` shows (the guilty: as the economy's
        validators, those whose signatures are in both certificates)."""
        return Fork(
            economy=evidence.economy,
            author=did_out(evidence.author),
            seq=evidence.seq,
            entries=tuple(
                EntryView.of(c.entry, c.entry_id) for c in (evidence.first, evidence.second)
            ),
            guilty=tuple(did_out(k) for k in evidence.guilty(economy)),
            evidence=evidence,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ForksPage(Record):
    """``economy_forks``: a page of forks in (author, seq) order."""

    forks: tuple[Fork, ...] = member(ListOf(Fork.codec()))
    next_cursor: str | None = member(Nullable(text(128)), "null on the last page")


# -- the node -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeInfo(Record):
    """What a node does for compute (``node_info``): whether it provides jobs
    and which runtimes, how it meters them and why (``cgroup`` or ``shim``:
    docs/compute-runner.md), and its load."""

    enabled: bool = member(BOOL, "it runs jobs for others")
    runtimes: tuple[str, ...] = member(ListOf(_TEXT))
    metering: str | None = member(Nullable(_TEXT), "the metering tier; null: none")
    metering_why: str | None = member(Nullable(_LONG_TEXT), "why that tier")
    running: int = member(NAT, "jobs running here")
    relayed: int = member(NAT, "jobs this node relays for its wallets")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo(Record):
    """``node_info``: ``validator`` when the node votes where its key is a
    validator; ``economies`` it follows; ``pending`` submissions awaiting
    certification; ``sync_lag`` certificates peers hold that it lacks.
    Where it listens, as bound: ``addresses`` (libp2p), ``rpc`` (HTTP URLs),
    ``rpc_unix``, ``metrics`` and ``ingest`` (None when off; also from a
    node too old to report them)."""

    COMPONENT = "NodeInfo"

    did: str = member(DID)
    peer_id: str = member(_TEXT)
    version: str = member(_TEXT)
    addresses: tuple[str, ...] = member(ListOf(_ADDRESS), "libp2p listen multiaddrs")
    rpc: tuple[str, ...] = member(
        ListOf(_ADDRESS),
        "the RPC's HTTP URLs as bound: rpc.host:rpc.port, then rpc.extra_bind",
        default=(),
    )
    rpc_unix: str | None = member(
        Nullable(_ADDRESS),
        "the RPC's unix socket (absolute path); null without one",
        default=None,
    )
    metrics: str | None = member(
        Nullable(_ADDRESS),
        "the Prometheus endpoint (http://HOST:PORT/metrics); null when off",
        default=None,
    )
    ingest: str | None = member(
        Nullable(_ADDRESS),
        "the sensor ingest's base URL (POST /v1/readings); null when off",
        default=None,
    )
    validator: bool = member(BOOL, "votes where its key is a validator")
    economies: tuple[bytes, ...] = member(ListOf(ID), "ids of the economies this node follows")
    pending: int = member(NAT, "submissions awaiting certification")
    sync_lag: int = member(NAT, "certificates peers hold that this node lacks")
    compute: ComputeInfo | None = member(
        Nullable(ComputeInfo.codec()), "compute (null from a node without it)", default=None
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer(Record):
    """One item of ``node_peers``."""

    peer_id: str = member(_TEXT)


# -- sensors (docs/sensors.md, "Node interfaces") --------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReading(Record):
    """One item of ``sensor_getReadings``, as relayed: nothing here is
    verified. ``attestation`` and ``proof`` are None for a reading not
    attested yet."""

    data: bytes = member(
        hex_bytes(max_size=MAX_SIGNED_READING_BYTES), "the signed-reading bytes", json="reading"
    )
    attestation: bytes | None = member(Nullable(ID), default=None)
    proof: bytes | None = member(Nullable(HEX), "the MerkleProof bytes", default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadingsPage(Record):
    """``sensor_getReadings``: readings by counter, and the counter to ask
    from next (None: no more)."""

    readings: tuple[StoredReading, ...] = member(ListOf(StoredReading.codec()))
    next: int | None = member(
        Nullable(COUNTER),
        "pass as first for the next page; null on the last page",
        default=None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Attestation(Record):
    """``sensor_getAttestation``: a certified ``sensor.attest``."""

    certificate: Certificate = member(_CERTIFICATE)
    view: EntryView = member(EntryView.codec())

    @classmethod
    def of(cls, cert: Certificate) -> Attestation:
        return Attestation(certificate=cert, view=EntryView.of(cert.entry, cert.entry_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimableAttestation(Record):
    """One certified attestation of a device not claimed yet, as the node lists it."""

    id: bytes = member(ID)
    first: int = member(COUNTER)
    last: int = member(COUNTER)
    count: int = member(integer(1))
    total: int = member(INT64, "the economy metric's sum in the row")


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimable(Record):
    """``sensor_claimable``: the owner's claim cursor (the last counter
    claimed, -1 for none), the carried remainder, and the attestations
    after the cursor, in order. A listing, unverified."""

    cursor: int = member(
        integer(-1, (1 << 64) - 1, type="integer"), "the last counter claimed; -1: none"
    )
    carry: int = member(INT64, "units carried to the next claim")
    attestations: tuple[ClaimableAttestation, ...] = member(ListOf(ClaimableAttestation.codec()))

    @classmethod
    def of(cls, c: ProtocolClaimable) -> Claimable:
        return Claimable(
            cursor=c.cursor.last,
            carry=c.cursor.carry,
            attestations=tuple(
                ClaimableAttestation(
                    id=r.attestation, first=r.first, last=r.last, count=r.count, total=r.total
                )
                for r in c.rows
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedDevice(Record):
    """One item of ``sensor_devices``: a device the node hosts."""

    device: bytes = member(ID)
    owner: str = member(DID)
    kind: str = member(_TEXT, "the device_kind")
    last_accepted: int | None = member(
        Nullable(COUNTER), "the last counter ingest accepted; null: none yet", default=None
    )
    last_attested: int | None = member(
        Nullable(COUNTER), "the last counter certified in an attestation; null: none", default=None
    )
    readings: int = member(NAT, "readings this node stores")


# -- the sensor ingest (docs/sensors.md, "Ingest") ---------------------------------------------

ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadingResult(Record):
    """A host's answer about one reading (``POST /v1/readings``): ``accepted``
    with its id, or ``refused`` with a reason code (``docs/sensors.md``,
    "Ingest reasons"). In msgpack the same map, the id as bin."""

    id: bytes | None = member(ID, omit=True)
    status: str = member(Choice(ACCEPTED, REFUSED))
    reason: str | None = member(_TEXT, omit=True)
    detail: str | None = member(_LONG_TEXT, omit=True)

    @classmethod
    def accept(cls, reading_id: bytes) -> ReadingResult:
        return ReadingResult(id=reading_id, status=ACCEPTED)

    @classmethod
    def refuse(cls, reason: str, detail: str = "") -> ReadingResult:
        return ReadingResult(status=REFUSED, reason=reason, detail=detail)

    @property
    def accepted(self) -> bool:
        return self.status == ACCEPTED

    def to_msgpack(self) -> dict[str, Json | bytes]:
        out: dict[str, Json | bytes] = {**self.to_json()}
        if self.id is not None:
            out["id"] = self.id
        return out

    @classmethod
    def from_msgpack(cls, value: object, field: str = "") -> ReadingResult:
        if type(value) is dict and type(value.get("id")) is bytes:
            value = {**value, "id": "0x" + value["id"].hex()}
        return cls.from_json(value, field)


# -- compute (docs/compute.md) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRuntime(Record):
    """One runtime of an offer: what a job may use, and the prices (minor
    units of the offer's economy; ``protocol/pricing.py`` has the formula)."""

    name: str = member(text(MAX_RUNTIME_NAME_BYTES))
    max_cpu_ms: int = member(integer(1))
    max_wall_ms: int = member(integer(1))
    reserved_mib: int = member(integer(1))
    max_input_bytes: int = member(NAT)
    max_output_bytes: int = member(NAT)
    fee: int = member(UNITS, "charged once, at the start")
    per_cpu_ms: int = member(UNITS)
    per_mib_s: int = member(UNITS, "per reserved MiB and second of running time")
    per_wall_s: int = member(UNITS, "per second of running time")

    @classmethod
    def of(cls, rt: Runtime) -> OfferRuntime:
        lim, p = rt.limits, rt.prices
        return OfferRuntime(
            name=rt.name,
            max_cpu_ms=lim.max_cpu_ms,
            max_wall_ms=lim.max_wall_ms,
            reserved_mib=lim.reserved_mib,
            max_input_bytes=lim.max_input_bytes,
            max_output_bytes=lim.max_output_bytes,
            fee=p.fee,
            per_cpu_ms=p.per_cpu_ms,
            per_mib_s=p.per_mib_s,
            per_wall_s=p.per_wall_s,
        )

    def limits(self) -> Limits:
        return Limits(
            self.max_cpu_ms,
            self.max_wall_ms,
            self.reserved_mib,
            self.max_input_bytes,
            self.max_output_bytes,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferView(Record):
    """A provider's signed offer as the node holds it (``compute_offers``):
    its fields, and ``signed``, the signed offer's bytes — the one thing a
    wallet trusts, after verifying its signature."""

    COMPONENT = "Offer"

    id: bytes = member(ID)
    economy: bytes = member(ID)
    provider: str = member(DID)
    seq: int = member(integer(1))
    issued_ms: int = member(NAT)
    expires_ms: int = member(NAT)
    peer: str = member(_TEXT, "the provider node's libp2p peer id")
    addrs: tuple[str, ...] = member(ListOf(_ADDRESS))
    runtimes: tuple[OfferRuntime, ...] = member(ListOf(OfferRuntime.codec()))
    credit_window: int = member(UNITS, "the most unpaid value the provider carries")
    grace_ms: int = member(NAT, "how long a frozen job waits for payment")
    signed: SignedOffer = member(
        Decoded(SignedOffer, HEX.schema, MAX_SIGNED_OFFER_BYTES), "the signed offer's bytes"
    )

    @classmethod
    def of(cls, signed: SignedOffer) -> OfferView:
        o = signed.offer
        return OfferView(
            id=signed.id,
            economy=o.economy,
            provider=did_out(o.provider),
            seq=o.seq,
            issued_ms=o.issued_ms,
            expires_ms=o.expires_ms,
            peer=o.peer,
            addrs=o.addrs,
            runtimes=tuple(OfferRuntime.of(rt) for rt in o.runtimes),
            credit_window=o.credit_window,
            grace_ms=o.grace_ms,
            signed=signed,
        )


_SETTLEMENT_KINDS = (CLOSE, REFUND)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelView(Record):
    """A payment channel as the node's ledger holds it (``channel_get``,
    ``channel_list``): the open, what it still holds, and how it ended."""

    COMPONENT = "Channel"

    id: bytes = member(ID, "the channel.open entry's id")
    economy: bytes = member(ID)
    consumer: str = member(DID)
    provider: str = member(DID)
    amount: int = member(AMOUNT, "what the open locked")
    expiry_ms: int = member(NAT)
    offer: bytes | None = member(Nullable(ID), "the offer it was opened for; null: none")
    escrow: int = member(UNITS, "what it still holds: the amount until settled, then 0")
    refund_after_ms: int = member(
        NAT, "a refund without the provider's release is valid once the clock is past this"
    )
    settled_by: bytes | None = member(Nullable(ID), "the certified close or refund; null: open")
    settlement: str | None = member(Nullable(Choice(*_SETTLEMENT_KINDS)), default=None)
    to_provider: int | None = member(Nullable(UNITS), default=None)
    to_consumer: int | None = member(Nullable(UNITS), default=None)

    @classmethod
    def of(cls, economy: bytes, c: ChannelState) -> ChannelView:
        s = c.settlement
        return ChannelView(
            id=c.id,
            economy=economy,
            consumer=did_out(c.consumer),
            provider=did_out(c.provider),
            amount=c.amount,
            expiry_ms=c.expiry_ms,
            offer=c.offer or None,
            escrow=c.escrow,
            refund_after_ms=c.refund_after_ms,
            settled_by=c.settled_by,
            settlement=None if s is None else s.kind,
            to_provider=None if s is None else s.to_provider,
            to_consumer=None if s is None else s.to_consumer,
        )

    def state(self) -> ChannelState:
        """The protocol's view of the channel this describes (unverified: as
        the node said)."""
        settled = None
        if self.settled_by is not None and self.settlement is not None:
            settled = Settlement(
                self.settled_by, self.settlement, self.to_provider or 0, self.to_consumer or 0
            )
        return ChannelState(
            self.id,
            did_decode(self.consumer),
            did_decode(self.provider),
            self.amount,
            self.expiry_ms,
            self.offer or NO_OFFER,
            settled,
        )


_ANSWER_KINDS = {UsageFrame.tag: "usage", ResultFrame.tag: "result", ErrorFrame.tag: "error"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ComputeAnswer(Record):
    """A provider's answer about a job, relayed by the node: ``frame``, its
    bytes as the provider sent them (``/mycelia/compute/1``'s USAGE, RESULT or
    ERROR: a wallet decodes and checks them), and what they say, for people
    (the same as the frame, or the frame is right)."""

    COMPONENT = "ComputeAnswer"

    job: bytes = member(ID)
    kind: str = member(Choice(*_ANSWER_KINDS.values()))
    frame: bytes = member(hex_bytes(max_size=MAX_FRAME_BYTES), "the answer frame's bytes")
    seq: int | None = member(integer(1), "usage, result: the report's seq", omit=True)
    price: int | None = member(UNITS, "usage, result: the price so far, past base", omit=True)
    cpu_ms: int | None = member(NAT, omit=True)
    wall_ms: int | None = member(NAT, "running time", omit=True)
    mib_ms: int | None = member(NAT, omit=True)
    exit_status: int | None = member(
        integer(-64, 255, type="integer"), "result: the exit code, or -signal", omit=True
    )
    outcome: str | None = member(Choice(*OUTCOMES), "result", omit=True)
    output: bytes | None = member(hex_bytes(max_size=MAX_OUTPUT_BYTES), "result", omit=True)
    reason: str | None = member(_TEXT, "error: the reason code", omit=True)
    detail: str | None = member(_LONG_TEXT, "error", omit=True)

    @classmethod
    def of(cls, job: bytes, frame: bytes) -> ComputeAnswer:
        """The view of an answer frame (``Refused`` if it is none)."""
        f = decode_answer(frame)
        if isinstance(f, ErrorFrame):
            return ComputeAnswer(job=job, kind="error", frame=frame, reason=f.code, detail=f.detail)
        r = f.usage.report
        u = r.usage
        base = ComputeAnswer(
            job=job,
            kind=_ANSWER_KINDS[f.tag],
            frame=frame,
            seq=r.seq,
            price=r.price,
            cpu_ms=u.cpu_ms,
            wall_ms=u.wall_ms,
            mib_ms=u.mib_ms,
        )
        if isinstance(f, ResultFrame):
            return dataclasses.replace(
                base, exit_status=f.exit_status, outcome=f.outcome, output=f.output
            )
        return base

    def answer(self) -> Answer:
        """The frame, decoded (``Refused`` if it is no answer)."""
        return decode_answer(self.frame)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(Record):
    """``compute_job_start``: the job the node built and sent (its canonical
    bytes: a wallet checks they are what it asked for), and the provider's
    answer to it (USAGE seq 1 when it started, else an ERROR)."""

    id: bytes = member(ID, "the job id: BLAKE2b-256 of the job's domain and bytes")
    job: bytes = member(hex_bytes(max_size=MAX_FRAME_BYTES), "the job's canonical bytes")
    answer: ComputeAnswer = member(ComputeAnswer.codec())


# -- error data -------------------------------------------------------------------------------


def need_json(need: Need) -> dict[str, Json]:
    """What a refusal says it needs (``data.needs`` of a -32001 error): a
    chain of the author's up to an entry, an admission, a certificate."""
    if isinstance(need, NeedChain):
        return {
            "type": "chain",
            "author": did_out(need.author),
            "after_seq": need.after_seq,
            "through": hex_out(need.through),
        }
    if isinstance(need, NeedAdmission):
        return {"type": "admission", "account": did_out(need.account)}
    assert isinstance(need, NeedCertificate)
    return {"type": "certificate", "id": hex_out(need.id)}
