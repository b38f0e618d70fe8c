"""The client's result values: what each method returns, parsed and (where it
says so) verified."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.api.encoding import (
    ParamError,
    amount_in,
    did_in,
    hex_in,
    hex_out,
    int64_in,
    int_in,
    str_in,
)
from mycelia.client.errors import Json, _parsing
from mycelia.node.views import certificate_view, economy_view, entry_view
from mycelia.protocol import (
    Certificate,
    Economy,
    Entry,
    ForkEvidence,
    ImpactClaim,
    SignedGenesis,
    did_encode,
)
from mycelia.protocol.sensors import MAX_SIGNED_READING_BYTES

FINAL = frozenset({"certified", "refused"})
# -- values ------------------------------------------------------------------------------


def _int(value: Any, what: str) -> int:
    return int_in(value, what)


def _id(value: Any, what: str) -> bytes:
    return hex_in(value, what, size=32)


def _did(value: Any, what: str) -> str:
    did_in(value, what)
    return str(value)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """``node_info``: ``validator`` when the node votes where its key is a
    validator; ``economies`` it follows; ``pending`` submissions awaiting
    certification; ``sync_lag`` certificates peers hold that it lacks.
    Where it listens, as bound: ``addresses`` (libp2p), ``rpc`` (HTTP URLs),
    ``rpc_unix``, ``metrics`` and ``ingest`` (None when off; also from a
    node too old to report them)."""

    did: str
    peer_id: str
    version: str
    addresses: tuple[str, ...]
    validator: bool
    economies: tuple[bytes, ...]
    pending: int
    sync_lag: int
    rpc: tuple[str, ...] = ()
    rpc_unix: str | None = None
    metrics: str | None = None
    ingest: str | None = None

    @classmethod
    def from_json(cls, v: Any) -> NodeInfo:
        with _parsing("node_info"):
            if type(v["validator"]) is not bool:
                raise ParamError("validator", "expected a boolean")

            def address(name: str) -> str | None:
                raw = v.get(name)
                return None if raw is None else str_in(raw, name, max_bytes=1024)

            return cls(
                did=_did(v["did"], "did"),
                peer_id=str_in(v["peer_id"], "peer_id"),
                version=str_in(v["version"], "version"),
                addresses=tuple(str_in(a, "addresses", max_bytes=1024) for a in v["addresses"]),
                validator=v["validator"],
                economies=tuple(_id(e, "economies") for e in v["economies"]),
                pending=_int(v["pending"], "pending"),
                sync_lag=_int(v["sync_lag"], "sync_lag"),
                rpc=tuple(str_in(a, "rpc", max_bytes=1024) for a in v.get("rpc", ())),
                rpc_unix=address("rpc_unix"),
                metrics=address("metrics"),
                ingest=address("ingest"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "did": self.did,
            "peer_id": self.peer_id,
            "version": self.version,
            "addresses": list(self.addresses),
            "rpc": list(self.rpc),
            "rpc_unix": self.rpc_unix,
            "metrics": self.metrics,
            "ingest": self.ingest,
            "validator": self.validator,
            "economies": [hex_out(e) for e in self.economies],
            "pending": self.pending,
            "sync_lag": self.sync_lag,
        }


@dataclass(frozen=True, slots=True)
class EconomySummary:
    """One item of ``economy_list`` (unverified: a listing, not a genesis)."""

    id: bytes
    name: str
    symbol: str
    decimals: int
    kind: str
    quorum: int
    validators: tuple[str, ...]
    certificates: int
    #: chain slots the node holds fork evidence for (0 from nodes that predate it)
    forks: int = 0

    @classmethod
    def from_json(cls, v: Any) -> EconomySummary:
        with _parsing("economy_list"):
            return cls(
                id=_id(v["id"], "id"),
                name=str_in(v["name"], "name"),
                symbol=str_in(v["symbol"], "symbol"),
                decimals=_int(v["decimals"], "decimals"),
                kind=str_in(v["kind"], "kind"),
                quorum=_int(v["quorum"], "quorum"),
                validators=tuple(_did(d, "validators") for d in v["validators"]),
                certificates=_int(v["certificates"], "certificates"),
                forks=_int(v.get("forks", 0), "forks"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "id": hex_out(self.id),
            "name": self.name,
            "symbol": self.symbol,
            "decimals": self.decimals,
            "kind": self.kind,
            "quorum": self.quorum,
            "validators": list(self.validators),
            "certificates": self.certificates,
            "forks": self.forks,
        }


@dataclass(frozen=True, slots=True)
class ForkInfo:
    """One fork, verified: ``evidence`` holds two valid certificates for the
    author's ``seq`` in this economy; ``guilty`` (did:key) signed both."""

    economy: bytes
    evidence: ForkEvidence
    guilty: tuple[str, ...]

    @property
    def author(self) -> str:
        return did_encode(self.evidence.author)

    @property
    def seq(self) -> int:
        return self.evidence.seq

    def to_json(self) -> dict[str, Json]:
        a, b = self.evidence.first, self.evidence.second
        return {
            "economy": hex_out(self.economy),
            "author": self.author,
            "seq": self.seq,
            "entries": [entry_view(a.entry, a.entry_id), entry_view(b.entry, b.entry_id)],
            "guilty": list(self.guilty),
            "evidence": hex_out(self.evidence.encode()),
        }


@dataclass(frozen=True, slots=True)
class EconomyInfo:
    """``economy_get``, verified: ``signed`` is the genesis whose id is the
    economy asked for, signed by a quorum of its validators."""

    signed: SignedGenesis
    economy: Economy
    accounts: int
    certificates: int

    @property
    def id(self) -> bytes:
        return self.economy.id

    @property
    def name(self) -> str:
        return self.signed.genesis.name

    @property
    def symbol(self) -> str:
        return self.signed.genesis.symbol

    @property
    def decimals(self) -> int:
        return self.signed.genesis.decimals

    def to_json(self) -> dict[str, Json]:
        """The contract's view, rebuilt from the verified genesis."""
        return {
            **economy_view(self.signed),
            "accounts": self.accounts,
            "certificates": self.certificates,
        }


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """``account_get``; amounts in minor units."""

    account: str
    balance: int
    limit: int | None
    seq: int
    head: bytes
    member: bool
    minted: int
    burned: int
    #: the head entry's timestamp: the next entry may not be earlier
    ts_ms: int = 0

    @classmethod
    def from_json(cls, v: Any) -> AccountInfo:
        with _parsing("account_get"):
            if type(v["member"]) is not bool:
                raise ParamError("member", "expected a boolean")
            return cls(
                account=_did(v["account"], "account"),
                balance=amount_in(v["balance"], "balance", negative=True),
                limit=None if v["limit"] is None else amount_in(v["limit"], "limit", negative=True),
                seq=_int(v["seq"], "seq"),
                head=_id(v["head"], "head"),
                member=v["member"],
                minted=amount_in(v["minted"], "minted", negative=True),
                burned=amount_in(v["burned"], "burned", negative=True),
                ts_ms=_int(v["ts_ms"], "ts_ms"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "account": self.account,
            "balance": str(self.balance),
            "limit": None if self.limit is None else str(self.limit),
            "seq": self.seq,
            "head": hex_out(self.head),
            "member": self.member,
            "minted": str(self.minted),
            "burned": str(self.burned),
            "ts_ms": self.ts_ms,
        }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """``account_history``: verified certificates, newest first."""

    entries: tuple[Certificate, ...]
    next_cursor: str | None

    def to_json(self) -> dict[str, Json]:
        return {
            "entries": [certificate_view(c) for c in self.entries],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class EntryStatus:
    """``entry_get`` (or an ``entry`` notification). ``certificate`` is
    verified against the economy's genesis; ``entry`` is checked to have the
    id asked for."""

    id: bytes
    status: str
    reason: str | None = None
    detail: str | None = None
    waiting_on: Json = None
    entry: Entry | None = None
    certificate: Certificate | None = None
    #: refused only: the refusal depended on the validators' state and the
    #: node gave up at its deadline; the entry may still be certified
    retryable: bool | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def certified(self) -> bool:
        return self.status == "certified"

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {"id": hex_out(self.id), "status": self.status}
        for name in ("reason", "detail", "waiting_on", "retryable"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.certificate is not None:
            out["certificate"] = hex_out(self.certificate.encode())
        if self.entry is not None:
            out["view"] = entry_view(self.entry, self.id)
        return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """``entry_prepare``: an unsigned entry, checked to hash to its id, and
    the message to sign (checked to be the entry domain's message for it)."""

    id: bytes
    entry: Entry
    signing_message: bytes


@dataclass(frozen=True, slots=True)
class GenesisSignature:
    """``economy_signGenesis``: a validator's signature, checked."""

    validator: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Followed:
    """``economy_follow``: ``known`` when the node already had the genesis."""

    id: bytes
    known: bool


# -- sensors: results ---------------------------------------------------------------------


def _counter(value: Any, what: str, *, none: bool = False, low: int = 0) -> Any:
    """A device counter (uint64); ``None`` allowed where the contract says null."""
    if value is None and none:
        return None
    return int_in(value, what, low=low, high=(1 << 64) - 1)


def _opt_hex(value: Any, what: str, size: int | None = None) -> bytes | None:
    return None if value is None else hex_in(value, what, size=size)


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One item of ``sensor_getReadings``, as relayed: nothing here is
    verified (:meth:`Client.audit` verifies). ``attestation`` and ``proof``
    are None for a reading not attested yet."""

    data: bytes
    attestation: bytes | None
    proof: bytes | None

    def to_json(self) -> dict[str, Json]:
        return {
            "reading": hex_out(self.data),
            "attestation": None if self.attestation is None else hex_out(self.attestation),
            "proof": None if self.proof is None else hex_out(self.proof),
        }


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    """``sensor_getReadings``: readings by counter, and the counter to ask
    from next (None: no more)."""

    readings: tuple[StoredReading, ...]
    next: int | None

    @classmethod
    def from_json(cls, v: Any) -> ReadingsPage:
        with _parsing("sensor_getReadings"):
            items = v["readings"]
            if not isinstance(items, list):
                raise ParamError("readings", "expected an array")
            readings = tuple(
                StoredReading(
                    hex_in(r["reading"], "reading", max_size=MAX_SIGNED_READING_BYTES),
                    _opt_hex(r.get("attestation"), "attestation", 32),
                    _opt_hex(r.get("proof"), "proof"),
                )
                for r in items
            )
            return cls(readings, _counter(v.get("next"), "next", none=True))


@dataclass(frozen=True, slots=True)
class ClaimableAttestation:
    """One certified attestation of a device not claimed yet, as the node lists it."""

    id: bytes
    first: int
    last: int
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class Claimable:
    """``sensor_claimable``: the owner's claim cursor (the last counter
    claimed, -1 for none), the carried remainder, and the attestations
    after the cursor, in order. A listing, unverified."""

    cursor: int
    carry: int
    attestations: tuple[ClaimableAttestation, ...]

    @classmethod
    def from_json(cls, v: Any) -> Claimable:
        with _parsing("sensor_claimable"):
            items = v["attestations"]
            if not isinstance(items, list):
                raise ParamError("attestations", "expected an array")
            return cls(
                cursor=_counter(v["cursor"], "cursor", low=-1),
                carry=int64_in(v["carry"], "carry"),
                attestations=tuple(
                    ClaimableAttestation(
                        _id(a["id"], "id"),
                        _counter(a["first"], "first"),
                        _counter(a["last"], "last"),
                        _int(a["count"], "count"),
                        int64_in(a["total"], "total"),
                    )
                    for a in items
                ),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "cursor": self.cursor,
            "carry": str(self.carry),
            "attestations": [
                {
                    "id": hex_out(a.id),
                    "first": a.first,
                    "last": a.last,
                    "count": a.count,
                    "total": str(a.total),
                }
                for a in self.attestations
            ],
        }


@dataclass(frozen=True, slots=True)
class HostedDevice:
    """One item of ``sensor_devices``: a device the node hosts."""

    device: bytes
    owner: str
    kind: str
    last_accepted: int | None
    last_attested: int | None
    readings: int

    @classmethod
    def from_json(cls, v: Any) -> HostedDevice:
        with _parsing("sensor_devices"):
            return cls(
                device=_id(v["device"], "device"),
                owner=_did(v["owner"], "owner"),
                kind=str_in(v["kind"], "kind"),
                last_accepted=_counter(v.get("last_accepted"), "last_accepted", none=True),
                last_attested=_counter(v.get("last_attested"), "last_attested", none=True),
                readings=_int(v["readings"], "readings"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "device": hex_out(self.device),
            "owner": self.owner,
            "kind": self.kind,
            "last_accepted": self.last_accepted,
            "last_attested": self.last_attested,
            "readings": self.readings,
        }


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """An ``impact.claim`` built from certified attestations (each verified
    against the genesis; ``body`` takes its range and total from their rows,
    not from the node's listing) and what it will mint: ``minted`` credits
    and ``carry`` to the next claim, from the cursor's ``carry_before``."""

    body: ImpactClaim
    attestations: tuple[Certificate, ...]
    cursor: int
    carry_before: int
    minted: int
    carry: int

    def to_json(self) -> dict[str, Json]:
        b = self.body
        return {
            "device": hex_out(b.device),
            "first_counter": b.first_counter,
            "last_counter": b.last_counter,
            "attestations": [hex_out(a) for a in b.attestations],
            "total": str(b.total),
            "carry_before": str(self.carry_before),
            "minted": str(self.minted),
            "carry": str(self.carry),
        }


#: Statuses of an audited reading.
VERIFIED = "verified"
UNATTESTED = "unattested"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReadingCheck:
    """What the audit found for one relayed reading: ``verified`` (signed by
    the registered key, within its certified attestation's row, its proof
    leads to the certified root), ``unattested`` (no attestation yet: nothing
    to verify it against) or ``failed`` with a ``reason`` code."""

    counter: int | None
    id: bytes | None
    attestation: bytes | None
    status: str
    reason: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {
            "counter": self.counter,
            "id": None if self.id is None else hex_out(self.id),
            "attestation": None if self.attestation is None else hex_out(self.attestation),
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AttestationCheck:
    """One attestation the audited readings name: its certificate and the
    device's registration certificate verified against the genesis, and how
    many of its row's readings the host returned (``seen`` of ``count``)."""

    id: bytes
    status: str
    reason: str | None = None
    detail: str | None = None
    host: str | None = None
    registration: bytes | None = None
    first: int | None = None
    last: int | None = None
    count: int | None = None
    seen: int = 0

    def to_json(self) -> dict[str, Json]:
        return {
            "id": hex_out(self.id),
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "host": self.host,
            "registration": None if self.registration is None else hex_out(self.registration),
            "first": self.first,
            "last": self.last,
            "count": self.count,
            "seen": self.seen,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    """:meth:`Client.audit`: every reading of ``device`` in ``first…last``
    the node relayed, each checked end to end. ``ok`` when nothing failed
    (readings not attested yet are listed, not failures)."""

    economy: bytes
    device: bytes
    first: int | None
    last: int | None
    attestations: tuple[AttestationCheck, ...]
    readings: tuple[ReadingCheck, ...]

    @property
    def failures(self) -> list[AttestationCheck | ReadingCheck]:
        return [c for c in (*self.attestations, *self.readings) if c.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.readings)

    def to_json(self) -> dict[str, Json]:
        return {
            "economy": hex_out(self.economy),
            "device": hex_out(self.device),
            "first": self.first,
            "last": self.last,
            "ok": self.ok,
            "verified": self.count(VERIFIED),
            "unattested": self.count(UNATTESTED),
            "failed": self.count(FAILED),
            "attestations": [a.to_json() for a in self.attestations],
            "readings": [r.to_json() for r in self.readings],
        }
