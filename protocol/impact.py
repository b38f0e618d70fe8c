"""The sensor entry kinds: ``device.register``, ``sensor.attest``, ``impact.claim``.

Why this exists: an ``impact`` economy's money comes from measurements
(DESIGN §5). A device's owner registers it; its host node attests batches of
its signed readings; the owner claims credits for attested counter ranges.
Each step is an entry in its author's own chain, and these are their rules
(the bodies are in ``sensor_bodies.py``, the device side in ``devices.py``
and ``readings.py``; the wire contract in ``docs/sensors.md``). All three
are refused (``not_allowed``) outside an ``impact`` economy.

Theory of operation
-------------------

The commutativity rule (DESIGN §4) decides where each piece of state lives
(``state.py`` has the two kinds of record):

* **device fact** ``fact/device/<device>`` — :class:`DeviceRecord`, written
  by the owner's ``device.register``; never changes after. The host's
  attestations read it (is the device registered, am I its host, which
  metrics does it declare); the owner's claims read it (am I the owner).
* **attestation fact** ``fact/attestation/<entry id>`` —
  :class:`AttestationRecord`, written by the host's ``sensor.attest``;
  never changes after. Claims read it.
* **host's own state** ``own/<host>/attested/<device>`` — the last counter
  the host attested for the device. Only the host's chain reads and writes
  it, so successive attestations of a device strictly increase
  (``overlap`` otherwise).
* **owner's own state** ``own/<owner>/claimed/<device>`` —
  :class:`ClaimCursor`: the last counter claimed and the carried
  remainder. Only the owner's chain reads and writes it, so claims of a
  device never overlap, with no lock across authors.

``check`` reads other authors' facts only; a validator that lacks one
answers ``missing`` with a :class:`NeedCertificate` for the registration
(its id is in the attestation's row) or the attestation (its id is in the
claim), and the submitter attaches it. ``effects`` read nothing of other
authors (only the body and the author's own state), so applying
certificates in any interleaving across authors gives the same state.

Contiguity of claims is over the device's *attestations*, not raw counter
arithmetic (a device may skip counters: a lost reading must not block
claims forever): every attestation records, per device, the last counter
the host attested before it (``previous``, -1 for the device's first). A
claim's first attestation must directly follow the previous claim
(``previous == cursor.last``; the device's first attestation for a first
claim) and each further one the one before it. ``first_counter`` and
``last_counter`` must be the first row's ``first`` and the last row's
``last``.

Minting: with ``acc = carry + total``, the claim mints ``acc //
units_per_credit`` credits to the owner when ``acc > 0`` (else none) and
carries ``acc - minted × units_per_credit`` to the device's next claim; so
``minted × units_per_credit + carry`` is always the sum of claimed totals,
and a negative total (a metric that can run backwards) is a debt on future
claims, never a debit. The owner's ``Account.minted`` counts what its claims
minted, so an impact economy keeps the issued economies' invariant:
balances sum to minted − burned.

========================  ==============================================================
kind                      refusals (besides ``not_allowed`` and ``malformed_body``)
========================  ==============================================================
``device.register``       ``not_member`` (owner), ``not_allowed`` (device kind not
                          eligible, or the economy's metric with another exponent),
                          ``bad_key`` (host or device key), ``already_registered``,
                          ``bad_signature`` / ``high_s`` (proof of possession);
                          resource: the device id (a second registration loses the lock)
``sensor.attest``         ``missing`` (a registration not applied here),
                          ``unknown_device`` (the row names another registration),
                          ``not_host``, ``unknown_metric`` / ``out_of_range`` (an
                          aggregate the registration does not allow), ``overlap``
``impact.claim``          ``not_member``, ``unknown_device``, ``not_owner``,
                          ``missing`` (an attestation not applied here),
                          ``not_attested`` (no row for the device, or first/last not
                          the rows' ends), ``overlap`` (already claimed),
                          ``not_contiguous`` (an attestation skipped),
                          ``total_mismatch``, ``amount_out_of_range`` (carry + total
                          past 64 bits), ``balance_overflow``
========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.context import Context, Kind, replace_account
from mycelia.protocol.devices import check_device_key
from mycelia.protocol.economy import IMPACT, Economy
from mycelia.protocol.reasons import NeedCertificate, Reason, Refused
from mycelia.protocol.sensor_bodies import DeviceRecord, DeviceRegister, ImpactClaim, SensorAttest
from mycelia.protocol.state import StateView, fact_key, own_key

__all__ = [
    "AttestationRecord",
    "ClaimCursor",
    "Claimable",
    "ClaimableRow",
    "DeviceRegisterRule",
    "ImpactClaimRule",
    "SensorAttestRule",
    "claimable",
    "credits_for",
]

#: Record names (see the module docstring).
DEVICE_FACT = "device"
ATTESTATION_FACT = "attestation"
ATTESTED_OWN = "attested"
CLAIMED_OWN = "claimed"
#: ``previous`` / ``last`` before anything was attested or claimed.
NONE = -1


@dataclass(frozen=True, slots=True)
class AttestationRecord:
    """A certified ``sensor.attest`` as claims read it (record :meth:`key`):
    its author (the host), its body, and per device row the last counter the
    host had attested for that device before (``-1``: none)."""

    host: bytes
    body: SensorAttest
    previous: tuple[int, ...]

    @staticmethod
    def key(entry_id: bytes) -> bytes:
        """The record key of the attestation with this entry id."""
        return fact_key(ATTESTATION_FACT, entry_id)

    def to_wire(self) -> list[Any]:
        return ["attestation-record", 1, self.host, self.body.to_wire(), list(self.previous)]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> AttestationRecord:
        value = codec.decode(data, max_size=8192)
        f = schema.array(value, "attestation-record", 1, 5, "attestation record")
        body = SensorAttest.from_wire(f[3])
        prev = schema.list_(f[4], "previous", min_len=len(body.devices), max_len=len(body.devices))
        return cls(
            schema.bytes_(f[2], "host", keys.PUBLIC_KEY_SIZE),
            body,
            tuple(schema.int_(p, "previous", NONE, schema.UINT64_MAX) for p in prev),
        )


@dataclass(frozen=True, slots=True)
class ClaimCursor:
    """An owner's claims of one device so far: the last counter claimed
    (``-1``: none) and the carried remainder (see the module docstring)."""

    last: int = NONE
    carry: int = 0

    @staticmethod
    def key(owner: bytes, device: bytes) -> bytes:
        """The record key of ``owner``'s claim cursor for ``device``."""
        return own_key(owner, CLAIMED_OWN, device)

    def to_wire(self) -> list[Any]:
        return ["claimed", 1, self.last, self.carry]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> ClaimCursor:
        f = schema.array(codec.decode(data, max_size=64), "claimed", 1, 4, "claim cursor")
        return cls(schema.int_(f[2], "last", NONE, schema.UINT64_MAX), schema.int_(f[3], "carry"))


def _encode_last(last: int) -> bytes:
    return codec.encode_trusted(["attested", 1, last])


def _decode_last(data: bytes) -> int:
    f = schema.array(codec.decode(data, max_size=32), "attested", 1, 3, "attested counter")
    return schema.int_(f[2], "last", 0, schema.UINT64_MAX)


def credits_for(carry: int, total: int, units_per_credit: int) -> tuple[int, int]:
    """``(minted, new carry)`` for a claim of ``total`` units after
    ``carry``: whole credits of the positive sum, the rest carried."""
    acc = carry + total
    minted = acc // units_per_credit if acc > 0 else 0
    return minted, acc - minted * units_per_credit


@dataclass(frozen=True, slots=True)
class ClaimableRow:
    """One certified attestation of a device not yet claimed: its counter
    range and reading count, and the total of the economy's metric in it."""

    attestation: bytes
    first: int
    last: int
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class Claimable:
    """What a device's owner may claim next: its claim cursor (the last
    counter claimed and the carried remainder) and the attestations after it."""

    cursor: ClaimCursor
    rows: tuple[ClaimableRow, ...]


def claimable(
    economy: Economy, view: StateView, device: bytes, attestations: Iterable[bytes]
) -> Claimable:
    """The attestations among ``attestations`` (candidate ids, in counter
    order — e.g. a node's index of the device's attestations) that the
    device's owner has not claimed yet, as ``impact.claim`` will see them.
    ``not_allowed`` outside impact economies, ``unknown_device`` if the
    device is not registered."""
    metric = economy.impact.metric
    raw = view.get_record(fact_key(DEVICE_FACT, device))
    if raw is None:
        raise Refused(Reason.UNKNOWN_DEVICE, f"device {device.hex()} is not registered")
    owner = DeviceRecord.decode(raw).owner
    data = view.get_record(ClaimCursor.key(owner, device))
    cursor = ClaimCursor() if data is None else ClaimCursor.decode(data)
    rows = []
    for att in attestations:
        fact = view.get_record(AttestationRecord.key(att))
        row = None if fact is None else AttestationRecord.decode(fact).body.row(device)
        if row is None or row.first <= cursor.last:
            continue
        agg = row.aggregate(metric)
        rows.append(
            ClaimableRow(att, row.first, row.last, row.count, 0 if agg is None else agg.sum)
        )
    return Claimable(cursor, tuple(rows))


def _device(ctx: Context, device: bytes) -> DeviceRecord | None:
    raw = ctx.fact(DEVICE_FACT, device)
    return None if raw is None else DeviceRecord.decode(raw)


def _did(key: bytes) -> str:
    return keys.did_encode(key)


# -- device.register -----------------------------------------------------------------


class DeviceRegisterRule(Kind):
    name = DeviceRegister.kind

    @staticmethod
    def parse(raw: Any) -> DeviceRegister:
        return DeviceRegister.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        ctx.require_kind(IMPACT, "device.register")
        policy = ctx.economy.impact
        e, b = ctx.entry, ctx.entry.body
        ctx.require_member(e.author, "owner")
        if b.device_kind not in policy.device_kinds:
            raise Refused(
                Reason.NOT_ALLOWED,
                f"device kind {b.device_kind!r} is not eligible here "
                f"({', '.join(policy.device_kinds)})",
            )
        declared = b.metric(policy.metric)
        if declared is not None and declared.exponent != policy.exponent:
            raise Refused(
                Reason.NOT_ALLOWED,
                f"metric {policy.metric!r} counts in exponent {policy.exponent} here, "
                f"not {declared.exponent}",
            )
        keys.check_public_key(b.host, "host")
        check_device_key(b.key_type, b.public_key)
        if ctx.fact(DEVICE_FACT, b.device) is not None:
            raise Refused(Reason.ALREADY_REGISTERED, f"device {b.device.hex()} is registered")
        b.verify_pop(e.economy, e.author)

    @staticmethod
    def effects(ctx: Context) -> None:
        b = ctx.entry.body
        held = _device(ctx, b.device)
        # Only a faulty quorum can certify two registrations of one device
        # (they share the device lock); keep the smaller entry id so every
        # node agrees whatever the order.
        if held is None or ctx.entry_id < held.registration:
            record = DeviceRecord(ctx.entry_id, ctx.entry.author, b)
            ctx.put_fact(DEVICE_FACT, b.device, record.encode())

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        return (("device", entry.body.device),)


# -- sensor.attest -------------------------------------------------------------------


class SensorAttestRule(Kind):
    name = SensorAttest.kind

    @staticmethod
    def parse(raw: Any) -> SensorAttest:
        return SensorAttest.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        ctx.require_kind(IMPACT, "sensor.attest")
        host = ctx.entry.author
        needs = []
        for row in ctx.entry.body.devices:
            record = _device(ctx, row.device)
            if record is None:
                needs.append(NeedCertificate(row.registration))
                continue
            if record.registration != row.registration:
                raise Refused(
                    Reason.UNKNOWN_DEVICE,
                    f"device {row.device.hex()} is registered by {record.registration.hex()}, "
                    f"not {row.registration.hex()}",
                )
            if record.host != host:
                raise Refused(
                    Reason.NOT_HOST,
                    f"device {row.device.hex()} is hosted by {_did(record.host)}, not the author",
                )
            for agg in row.aggregates:
                declared = record.body.metric(agg.metric)
                if declared is None:
                    raise Refused(
                        Reason.UNKNOWN_METRIC,
                        f"device {row.device.hex()} did not declare {agg.metric!r}",
                    )
                if agg.min < declared.min or agg.max > declared.max:
                    raise Refused(
                        Reason.OUT_OF_RANGE,
                        f"{agg.metric} values {agg.min}..{agg.max} outside the declared "
                        f"{declared.min}..{declared.max}",
                    )
            raw = ctx.own(ATTESTED_OWN, row.device)
            if raw is not None and row.first <= (last := _decode_last(raw)):
                raise Refused(
                    Reason.OVERLAP,
                    f"device {row.device.hex()}: counters from {row.first} overlap the "
                    f"attested ones up to {last}",
                )
        if needs:
            raise Refused(
                Reason.MISSING,
                f"{len(needs)} device registration(s) not applied here",
                tuple(needs),
            )

    @staticmethod
    def effects(ctx: Context) -> None:
        body = ctx.entry.body
        previous = []
        for row in body.devices:
            raw = ctx.own(ATTESTED_OWN, row.device)
            previous.append(NONE if raw is None else _decode_last(raw))
            ctx.put_own(ATTESTED_OWN, row.device, _encode_last(row.last))
        record = AttestationRecord(ctx.entry.author, body, tuple(previous))
        ctx.put_fact(ATTESTATION_FACT, ctx.entry_id, record.encode())


# -- impact.claim --------------------------------------------------------------------


class ImpactClaimRule(Kind):
    name = ImpactClaim.kind

    @staticmethod
    def parse(raw: Any) -> ImpactClaim:
        return ImpactClaim.from_wire(raw)

    @staticmethod
    def check(ctx: Context) -> None:
        ctx.require_kind(IMPACT, "impact.claim")
        policy = ctx.economy.impact
        e, b = ctx.entry, ctx.entry.body
        ctx.require_member(e.author, "owner")
        # The owner's registration is in its own chain, which a validator
        # has applied up to this entry: absent means not the author's.
        record = _device(ctx, b.device)
        if record is None:
            raise Refused(Reason.UNKNOWN_DEVICE, f"device {b.device.hex()} is not registered")
        if record.owner != e.author:
            raise Refused(
                Reason.NOT_OWNER, f"device {b.device.hex()} is owned by {_did(record.owner)}"
            )
        held: list[AttestationRecord] = []
        needs = []
        for att in b.attestations:
            raw = ctx.fact(ATTESTATION_FACT, att)
            if raw is None:
                needs.append(NeedCertificate(att))
            else:
                held.append(AttestationRecord.decode(raw))
        if needs:
            raise Refused(
                Reason.MISSING, f"{len(needs)} attestation(s) not applied here", tuple(needs)
            )
        rows = []
        for att, rec in zip(b.attestations, held, strict=True):
            for row, prev in zip(rec.body.devices, rec.previous, strict=True):
                if row.device == b.device:
                    rows.append((row, prev))
                    break
            else:
                raise Refused(
                    Reason.NOT_ATTESTED, f"attestation {att.hex()} has no row for the device"
                )
        raw = ctx.own(CLAIMED_OWN, b.device)
        cursor = ClaimCursor() if raw is None else ClaimCursor.decode(raw)
        first_row, first_prev = rows[0]
        if first_row.first <= cursor.last:
            raise Refused(
                Reason.OVERLAP,
                f"counters {first_row.first}..{cursor.last} of the device are already claimed",
            )
        if first_prev != cursor.last:
            raise Refused(
                Reason.NOT_CONTIGUOUS,
                f"an attestation of the device (after {cursor.last}, through {first_prev}) "
                "is skipped",
            )
        for (before, _), (_after, prev) in pairwise(rows):
            if prev != before.last:
                raise Refused(
                    Reason.NOT_CONTIGUOUS,
                    f"attestations are not consecutive: {before.last} is followed by one "
                    f"after {prev}",
                )
        if b.first_counter != first_row.first or b.last_counter != rows[-1][0].last:
            raise Refused(
                Reason.NOT_ATTESTED,
                f"claimed {b.first_counter}..{b.last_counter}, the attestations cover "
                f"{first_row.first}..{rows[-1][0].last}",
            )
        total = 0
        for row, _ in rows:
            agg = row.aggregate(policy.metric)
            if agg is not None:
                total += agg.sum
        if total != b.total:
            raise Refused(
                Reason.TOTAL_MISMATCH,
                f"total {b.total} but the attestations' {policy.metric} sums give {total}",
            )
        if not schema.INT64_MIN <= cursor.carry + total <= schema.INT64_MAX:
            raise Refused(Reason.AMOUNT_OUT_OF_RANGE, "carry + total leaves 64 bits")
        minted, _ = credits_for(cursor.carry, total, policy.units_per_credit)
        ctx.require_credit(e.author, minted)
        if ctx.get(e.author).minted + minted > schema.INT64_MAX:
            raise Refused(Reason.BALANCE_OVERFLOW, "minted total would pass 2**63 - 1")

    @staticmethod
    def effects(ctx: Context) -> None:
        e, b = ctx.entry, ctx.entry.body
        raw = ctx.own(CLAIMED_OWN, b.device)
        cursor = ClaimCursor() if raw is None else ClaimCursor.decode(raw)
        minted, carry = credits_for(cursor.carry, b.total, ctx.economy.impact.units_per_credit)
        ctx.put_own(CLAIMED_OWN, b.device, ClaimCursor(b.last_counter, carry).encode())
        if minted:
            acct = ctx.get(e.author)
            ctx.put(
                e.author,
                replace_account(acct, balance=acct.balance + minted, minted=acct.minted + minted),
            )
