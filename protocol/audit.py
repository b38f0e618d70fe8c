"""Auditing attested readings offline: does a reading, or a whole batch,
belong to a certified ``sensor.attest``?

Why this exists: anyone — the device's owner, a buyer of impact credits,
another node — can fetch a batch's readings with their Merkle proofs and
check them without trusting the host (DESIGN §5). The checks are the
host's own (``readings.py``'s bounds) and a whole batch is rebuilt with the
host's own builder (``attestations.py``), so a host and an auditor agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mycelia.protocol.attestations import build_attestation
from mycelia.protocol.merkle import MerkleProof, MerkleTree, check_proof
from mycelia.protocol.readings import SignedReading, _check_declared
from mycelia.protocol.reasons import NeedCertificate, Reason, Refused, Verdict
from mycelia.protocol.sensor_bodies import DeviceRecord, SensorAttest

if TYPE_CHECKING:
    from mycelia.protocol.certificates import Certificate
    from mycelia.protocol.economy import Economy

__all__ = ["AttestationAudit"]

_M = Reason.MALFORMED


# -- audit ------------------------------------------------------------------------------


class AttestationAudit:
    """Checks readings against one certified ``sensor.attest``, offline.

    Construct with the economy, the attestation's certificate and the
    registrations of its devices (``device.register`` certificates, or
    :class:`DeviceRecord` values a node already holds as certified state).
    Every certificate is verified against the economy here (``Refused``
    with the certificate's reason otherwise). A registration that is not
    the one the attestation names for its device is ignored.

    :meth:`check` then takes one leaf (signed-reading bytes) and its proof
    and raises, in this order: ``non_canonical`` / ``too_large`` /
    ``malformed`` (the leaf's bytes); ``wrong_economy`` (signed for another
    economy); ``not_attested`` (its device has no row); ``missing`` with a
    :class:`NeedCertificate` (the device's registration was not given);
    ``bad_signature`` / ``high_s`` (not the registered key's signature);
    ``counter_out_of_range`` / ``clock_skew`` / ``unknown_metric`` /
    ``out_of_range`` (outside the bounds or not a reading its registration
    allows: the host's rules, the same function); ``not_attested``
    (counter outside the row's range, or metric or value outside its
    aggregates); ``bad_proof`` (the proof names another batch size, or
    does not lead to the attested root)."""

    __slots__ = ("attestation", "body", "devices", "economy", "rows")

    def __init__(
        self,
        economy: Economy,
        attestation: Certificate,
        registrations: Iterable[Certificate | DeviceRecord] = (),
    ) -> None:
        attestation.verify(economy)
        if attestation.entry.kind != SensorAttest.kind:
            raise Refused(_M, f"expected a sensor.attest certificate, got {attestation.entry.kind}")
        self.economy = economy
        self.attestation = attestation
        self.body: SensorAttest = attestation.entry.body
        self.rows = {row.device: row for row in self.body.devices}
        self.devices: dict[bytes, DeviceRecord] = {}
        for reg in registrations:
            if isinstance(reg, DeviceRecord):
                record = reg
            else:
                reg.verify(economy)
                record = DeviceRecord.from_certificate(reg)
            row = self.rows.get(record.device)
            if row is not None and row.registration == record.registration:
                self.devices[record.device] = record

    def check(self, leaf: bytes, proof: MerkleProof) -> SignedReading:
        """Raise unless ``leaf`` is a reading this attestation vouches for
        (see the class docstring); return it decoded."""
        signed = SignedReading.decode(leaf)
        r = signed.reading
        if r.economy != self.economy.id:
            raise Refused(Reason.WRONG_ECONOMY, "the reading is signed for another economy")
        row = self.rows.get(r.device)
        if row is None:
            raise Refused(Reason.NOT_ATTESTED, "the attestation has no row for this device")
        record = self.devices.get(r.device)
        if record is None:
            raise Refused(
                Reason.MISSING,
                "the device's registration certificate was not given",
                (NeedCertificate(row.registration),),
            )
        signed.verify(record.body.key_type, record.body.public_key)
        _check_declared(r, record.body)
        if not row.first <= r.counter <= row.last:
            raise Refused(
                Reason.NOT_ATTESTED,
                f"counter {r.counter} outside the attested {row.first}..{row.last}",
            )
        agg = row.aggregate(r.metric)
        if agg is None or not agg.min <= r.value <= agg.max:
            raise Refused(
                Reason.NOT_ATTESTED, f"{r.metric} value {r.value} is outside the row's aggregates"
            )
        if proof.count != self.body.count:
            raise Refused(
                Reason.BAD_PROOF, f"proof is for {proof.count} leaves, batch has {self.body.count}"
            )
        check_proof(self.body.root, leaf, proof)
        return signed

    def verdict(self, leaf: bytes, proof: MerkleProof) -> Verdict:
        """:meth:`check` as a value (for an audit answering many readings)."""
        try:
            self.check(leaf, proof)
        except Refused as exc:
            return exc.verdict
        return Verdict()

    def check_batch(self, leaves: Sequence[bytes]) -> list[SignedReading]:
        """Check a whole batch (every leaf, in batch order): each reading as
        :meth:`check`, and that the batch rebuilds exactly this attestation
        (order, counts, ranges, aggregates, root) — ``not_attested`` if not."""
        if len(leaves) != self.body.count:
            raise Refused(
                Reason.NOT_ATTESTED, f"{len(leaves)} readings, attestation has {self.body.count}"
            )
        tree = MerkleTree(leaves)
        if tree.root != self.body.root:
            raise Refused(Reason.BAD_PROOF, "the batch does not hash to the attested root")
        readings = [self.check(leaf, tree.proof(i)) for i, leaf in enumerate(leaves)]
        registrations = {d: row.registration for d, row in self.rows.items()}
        rebuilt, _tree, ordered = build_attestation(readings, registrations)
        if ordered != readings or rebuilt != self.body:
            raise Refused(Reason.NOT_ATTESTED, "the batch does not rebuild its attestation")
        return readings
