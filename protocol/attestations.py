"""Building a host's attestation of a batch of readings: the
``sensor.attest`` bodies (split so each fits an entry) and the Merkle tree
that proves each reading in them.

Why this exists: the host builds its attestations with it, and an auditor
rebuilds a whole batch's attestation with the very same function
(``audit.py``), so "the body these readings attest" has one definition.
The body's layout is in ``sensor_bodies.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby

from mycelia.protocol import codec, schema
from mycelia.protocol.merkle import MerkleTree
from mycelia.protocol.readings import SignedReading
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.sensor_bodies import (
    MAX_ATTEST_BODY_BYTES,
    MAX_ATTESTED_DEVICES,
    MAX_METRICS,
    Aggregate,
    AttestedDevice,
    SensorAttest,
    _metric_order,
)

__all__ = ["build_attestation", "build_attestations"]

#: A body's bytes besides its rows, at most: array header, root, count and
#: the rows' array16 header.
_ATTEST_BODY_OVERHEAD = 1 + 34 + 5 + 3


# -- building a batch's attestation ---------------------------------------------------


def _row(
    device: bytes, readings: Sequence[SignedReading], registrations: Mapping[bytes, bytes]
) -> AttestedDevice:
    """One device's row over its readings (sorted by counter)."""
    if device not in registrations:
        raise ValueError(f"no registration for device {device.hex()}")
    sums: dict[str, list[int]] = {}
    for k, signed in enumerate(readings):
        r = signed.reading
        if k and r.counter == readings[k - 1].reading.counter:
            raise Refused(Reason.REPLAYED_COUNTER, f"counter {r.counter} twice in the batch")
        agg = sums.get(r.metric)
        if agg is None:
            sums[r.metric] = [r.value, r.value, r.value]
        else:
            agg[0] += r.value
            agg[1] = min(agg[1], r.value)
            agg[2] = max(agg[2], r.value)
    if len(sums) > MAX_METRICS:
        raise Refused(Reason.TOO_LARGE, f"more than {MAX_METRICS} metrics for one device")
    for metric, (total, _lo, _hi) in sums.items():
        if not schema.INT64_MIN <= total <= schema.INT64_MAX:
            raise Refused(Reason.TOO_LARGE, f"{metric} sum leaves 64 bits; attest more often")
    return AttestedDevice(
        device,
        registrations[device],
        readings[0].reading.counter,
        readings[-1].reading.counter,
        len(readings),
        tuple(Aggregate(m, *sums[m]) for m in sorted(sums, key=_metric_order)),
    )


def _by_device(readings: Iterable[SignedReading]) -> list[tuple[bytes, list[SignedReading]]]:
    ordered = sorted(readings, key=lambda s: (s.reading.device, s.reading.counter))
    return [(d, list(rs)) for d, rs in groupby(ordered, key=lambda s: s.reading.device)]


def _attestation(
    rows: Sequence[AttestedDevice], readings: Sequence[SignedReading]
) -> tuple[SensorAttest, MerkleTree, list[SignedReading]]:
    tree = MerkleTree(s.encode() for s in readings)
    return SensorAttest(tree.root, tree.count, tuple(rows)), tree, list(readings)


def build_attestations(
    readings: Iterable[SignedReading], registrations: Mapping[bytes, bytes]
) -> list[tuple[SensorAttest, MerkleTree, list[SignedReading]]]:
    """The ``sensor.attest`` bodies for a host's batch of (already checked)
    readings, split by device so that each fits one entry (at most
    :data:`MAX_ATTESTED_DEVICES` rows and :data:`MAX_ATTEST_BODY_BYTES`);
    each with its tree (for proofs) and its readings in batch order — proof
    ``i`` is for ``ordered[i]``. ``registrations`` maps each device id to its
    registration entry id. Raises ``ValueError`` for an empty batch or a
    device without a registration, ``replayed_counter`` for two readings of
    one device with one counter, ``too_large`` for a sum past 64 bits."""
    groups = _by_device(readings)
    if not groups:
        raise ValueError("an empty batch has no attestation")
    out = []
    rows: list[AttestedDevice] = []
    batch: list[SignedReading] = []
    size = _ATTEST_BODY_OVERHEAD
    for device, rs in groups:
        row = _row(device, rs, registrations)
        row_size = len(codec.encode_trusted(row.to_wire()))
        if rows and (len(rows) == MAX_ATTESTED_DEVICES or size + row_size > MAX_ATTEST_BODY_BYTES):
            out.append(_attestation(rows, batch))
            rows, batch, size = [], [], _ATTEST_BODY_OVERHEAD
        rows.append(row)
        batch.extend(rs)
        size += row_size
    out.append(_attestation(rows, batch))
    return out


def build_attestation(
    readings: Iterable[SignedReading], registrations: Mapping[bytes, bytes]
) -> tuple[SensorAttest, MerkleTree, list[SignedReading]]:
    """:func:`build_attestations` for a batch that fits one attestation;
    ``too_large`` if it does not (use :func:`build_attestations`)."""
    parts = build_attestations(readings, registrations)
    if len(parts) > 1:
        raise Refused(
            Reason.TOO_LARGE, f"the batch needs {len(parts)} attestations (build_attestations)"
        )
    return parts[0]
