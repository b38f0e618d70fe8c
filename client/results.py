"""The client's result values. What a node answers is parsed with the API
types (``mycelia.api.types``, re-exported here); what the client verified
or computed itself is here: an economy whose genesis was checked
(:class:`EconomyInfo`), a history of verified certificates
(:class:`HistoryPage`), a claim built from certified attestations
(:class:`ClaimPlan`), an audit (:class:`AuditReport`), a job bought and
paid for (:class:`JobOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass

from mycelia.api.codecs import Json
from mycelia.api.encoding import hex_out
from mycelia.api.types import (
    FINAL,
    AccountInfo,
    CertifiedEntry,
    ChannelView,
    Claimable,
    ClaimableAttestation,
    ComputeAnswer,
    EconomySummary,
    EconomyView,
    EntryStatus,
    Followed,
    GenesisSignature,
    HostedDevice,
    JobStarted,
    NodeInfo,
    OfferView,
    Prepared,
    ReadingsPage,
    StoredReading,
)
from mycelia.api.types import Fork as ForkInfo
from mycelia.protocol import Certificate, Economy, ImpactClaim, SignedGenesis
from mycelia.protocol.compute import Failed, Stop
from mycelia.protocol.compute_frames import Job, ResultFrame
from mycelia.protocol.offers import Offer
from mycelia.protocol.usage import UsageReport

__all__ = [
    "FAILED",
    "FINAL",
    "UNATTESTED",
    "VERIFIED",
    "AccountInfo",
    "AttestationCheck",
    "AuditReport",
    "ChannelView",
    "ClaimPlan",
    "Claimable",
    "ClaimableAttestation",
    "ComputeAnswer",
    "EconomyInfo",
    "EconomySummary",
    "EntryStatus",
    "Followed",
    "ForkInfo",
    "GenesisSignature",
    "HistoryPage",
    "HostedDevice",
    "JobOutcome",
    "JobStarted",
    "NodeInfo",
    "OfferView",
    "Prepared",
    "ReadingCheck",
    "ReadingsPage",
    "StoredReading",
]


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
        return EconomyView.of(self.signed, self.accounts, self.certificates).to_json()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """``account_history``: verified certificates, newest first."""

    entries: tuple[Certificate, ...]
    next_cursor: str | None

    def to_json(self) -> dict[str, Json]:
        return {
            "entries": [CertifiedEntry.of_certificate(c).to_json() for c in self.entries],
            "next_cursor": self.next_cursor,
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
        checks: tuple[AttestationCheck | ReadingCheck, ...] = (*self.attestations, *self.readings)
        return [c for c in checks if c.status == FAILED]

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


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A compute job as its consumer saw it to the end (``run_job``,
    ``buy_compute``): the job and the offer, the RESULT if it came (its
    final usage report checked by the consumer's rule), the newest report
    accepted, what the consumer signed (``paid``: the channel's newest
    voucher amount, ``base`` included) — and why it stopped paying
    (``stop``: the provider's report broke the rule) or why the provider
    refused (``failed``)."""

    job: Job
    offer: Offer
    result: ResultFrame | None
    report: UsageReport | None
    paid: int
    stop: Stop | None = None
    failed: Failed | None = None

    @property
    def channel(self) -> bytes:
        return self.job.channel

    @property
    def ok(self) -> bool:
        """The job ended with a RESULT that the consumer accepted and paid."""
        return self.result is not None and self.stop is None and self.failed is None

    @property
    def output(self) -> bytes:
        return b"" if self.result is None else self.result.output

    @property
    def price(self) -> int:
        """The job's price by its newest accepted report (past ``base``)."""
        return 0 if self.report is None else self.report.price
