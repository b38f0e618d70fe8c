"""Sensor devices, their readings, attested batches and their audit — the
sensor API in one import.

Why this exists: an impact economy mints credits for what sensors measured
(DESIGN §5). A device signs each reading with its own key; its host node
checks and stores readings and attests batches of them in its chain
(``sensor.attest``: a Merkle root plus per-device counter ranges and
aggregates); the device's owner claims credits for attested ranges
(``impact.claim``). What a device, a host and an auditor handle lives in
one module per concern, and no ledger rule among them (those are in
``impact.py``); this module re-exports them all, so
``from mycelia.protocol.sensors import ...`` is the one import any of them
needs:

=================  ==========================================================
``devices``        device keys (Ed25519, P-256 low-S), device ids, the strict
                   check of device signatures
``sensor_bodies``  the ``device.register``, ``sensor.attest`` and
                   ``impact.claim`` bodies; the registered device as the
                   ledger keeps it
``readings``       readings and signed readings, their bounds, and the check
                   a host runs on each (``check_reading``)
``attestations``   building a batch's ``sensor.attest`` bodies and its
                   Merkle tree
``audit``          checking readings against a certified attestation, offline
=================  ==========================================================

``docs/sensors.md`` is the contract; the docstrings of ``devices`` (keys,
device ids), ``readings`` (the reading bytes, byte by byte, and their
bounds) and ``sensor_bodies`` (the entry bodies) are its exact byte layout.
"""

from __future__ import annotations

from mycelia.protocol.attestations import build_attestation, build_attestations
from mycelia.protocol.audit import AttestationAudit
from mycelia.protocol.devices import (
    ED25519,
    KEY_TYPES,
    P256,
    P256_N,
    SIGNATURE_SIZE,
    DeviceKey,
    Ed25519DeviceKey,
    P256DeviceKey,
    check_device_key,
    device_id,
    verify_device_signature,
)
from mycelia.protocol.readings import (
    MAX_COUNTER,
    MAX_READING_BYTES,
    MAX_READING_SKEW_MS,
    MAX_SIGNED_READING_BYTES,
    MIN_READING_TS_MS,
    READING_REASONS,
    Reading,
    SignedReading,
    check_reading,
)
from mycelia.protocol.sensor_bodies import (
    MAX_ATTEST_BODY_BYTES,
    MAX_ATTESTED_DEVICES,
    MAX_CLAIM_ATTESTATIONS,
    MAX_DEVICE_KIND_BYTES,
    MAX_EXPONENT,
    MAX_METRIC_BYTES,
    MAX_METRICS,
    MAX_UNIT_BYTES,
    MIN_EXPONENT,
    Aggregate,
    AttestedDevice,
    DeviceRecord,
    DeviceRegister,
    ImpactClaim,
    Metric,
    SensorAttest,
)

__all__ = [
    "ED25519",
    "KEY_TYPES",
    "MAX_ATTESTED_DEVICES",
    "MAX_ATTEST_BODY_BYTES",
    "MAX_CLAIM_ATTESTATIONS",
    "MAX_COUNTER",
    "MAX_DEVICE_KIND_BYTES",
    "MAX_EXPONENT",
    "MAX_METRICS",
    "MAX_METRIC_BYTES",
    "MAX_READING_BYTES",
    "MAX_READING_SKEW_MS",
    "MAX_SIGNED_READING_BYTES",
    "MAX_UNIT_BYTES",
    "MIN_EXPONENT",
    "MIN_READING_TS_MS",
    "P256",
    "P256_N",
    "READING_REASONS",
    "SIGNATURE_SIZE",
    "Aggregate",
    "AttestationAudit",
    "AttestedDevice",
    "DeviceKey",
    "DeviceRecord",
    "DeviceRegister",
    "Ed25519DeviceKey",
    "ImpactClaim",
    "Metric",
    "P256DeviceKey",
    "Reading",
    "SensorAttest",
    "SignedReading",
    "build_attestation",
    "build_attestations",
    "check_device_key",
    "check_reading",
    "device_id",
    "verify_device_signature",
]
