"""The sensor entry bodies — ``device.register``, ``sensor.attest`` and
``impact.claim`` — and a registered device as the ledger keeps it.

Why this exists: these are the bodies every node decodes and the impact
kinds rule on (the rules are in ``impact.py``), built by owners and hosts,
so their shape — every field's bounds, the canonical order of rows and
aggregates, the size an entry can carry — is checked on construction, in
one place. The readings an attestation covers are ``readings.py``; building
an attestation from them is ``attestations.py``.

Entry bodies
------------

``device.register`` (author: the owner)::

    [key_type, public_key, device_kind, host, metrics, pop]
    metrics = [[name, unit, exponent, min, max], ...]    # 1-16, distinct names
    pop     = device signature over DEVICE.message(DEVICE.id(statement))
    statement = ["device", 1, economy, owner, key_type, public_key,
                 device_kind, host, metrics]

``sensor.attest`` (author: the host)::

    [root, count, devices]
    devices    = [[device, registration, first, last, count, aggregates], ...]
                 # 1-16, strictly increasing by device id
    aggregates = [[metric, sum, min, max], ...]   # 1-16, strictly increasing by
                                                  # the metric's UTF-8 bytes

``registration`` is the entry id of the device's ``device.register``: a
validator that has not applied it answers ``missing`` with that id, and an
auditor knows which key signed. A body is at most
:data:`MAX_ATTEST_BODY_BYTES` (1906) bytes, so its entry fits
``entries.MAX_ENTRY_BYTES``; :func:`build_attestations` splits a host's
batch by device into bodies that fit. The batch is the attested readings ordered
by ``(device, counter)``; ``root`` is :mod:`merkle`'s root over their
signed-reading bytes, ``count`` their number (the sum of the rows' counts).
Aggregates are over ``value`` as signed (in the declared exponent).

``impact.claim`` (author: the owner)::

    [device, first_counter, last_counter, attestations, total]

Rules for all three are in ``impact.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.devices import (
    _PUBLIC_KEY_SIZE,
    SIGNATURE_SIZE,
    DeviceKey,
    device_id,
    verify_device_signature,
)
from mycelia.protocol.domains import DEVICE, ID_SIZE
from mycelia.protocol.merkle import MAX_LEAVES
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.state import fact_key

if TYPE_CHECKING:
    from mycelia.protocol.certificates import Certificate

__all__ = [
    "MAX_ATTESTED_DEVICES",
    "MAX_ATTEST_BODY_BYTES",
    "MAX_CLAIM_ATTESTATIONS",
    "MAX_DEVICE_KIND_BYTES",
    "MAX_EXPONENT",
    "MAX_METRICS",
    "MAX_METRIC_BYTES",
    "MAX_UNIT_BYTES",
    "MIN_EXPONENT",
    "Aggregate",
    "AttestedDevice",
    "DeviceRecord",
    "DeviceRegister",
    "ImpactClaim",
    "Metric",
    "SensorAttest",
]

MAX_METRIC_BYTES = 32
MAX_UNIT_BYTES = 16
MAX_DEVICE_KIND_BYTES = 32
MIN_EXPONENT = -18
MAX_EXPONENT = 18
#: Metrics per device (declared at registration) and aggregates per row.
MAX_METRICS = 16
#: Device rows per attestation. An entry is at most ``entries.MAX_ENTRY_BYTES``
#: (2048): a row of one aggregate takes 110-160 bytes, so a host with many
#: devices (or metrics) splits a batch into several attestations
#: (:func:`build_attestations` does).
MAX_ATTESTED_DEVICES = 16
#: The largest ``sensor.attest`` body that still fits an entry: an entry's
#: fields besides the body take at most 142 bytes (checked by a test
#: against ``entries.MAX_ENTRY_BYTES``).
MAX_ATTEST_BODY_BYTES = 2048 - 142
#: Attestations one claim may name.
MAX_CLAIM_ATTESTATIONS = 16

_B = Reason.MALFORMED_BODY
_M = Reason.MALFORMED


# -- declared metrics and the registration body -------------------------------------


def _metric_name(value: Any, name: str, reason: Reason) -> str:
    return schema.str_(value, name, min_bytes=1, max_bytes=MAX_METRIC_BYTES, reason=reason)


def _exponent(value: Any, name: str, reason: Reason) -> int:
    return schema.int_(value, name, MIN_EXPONENT, MAX_EXPONENT, reason=reason)


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric a device declares: ``value × 10^exponent`` in ``unit``, each
    value within ``[min, max]``. Wire: ``[name, unit, exponent, min, max]``."""

    name: str
    unit: str
    exponent: int
    min: int
    max: int

    def __post_init__(self) -> None:
        _metric_name(self.name, "metric name", _B)
        schema.str_(self.unit, "metric unit", max_bytes=MAX_UNIT_BYTES, reason=_B)
        _exponent(self.exponent, "metric exponent", _B)
        schema.int_(self.min, "metric min", reason=_B)
        schema.int_(self.max, "metric max", reason=_B)
        if self.min > self.max:
            raise Refused(_B, f"metric {self.name}: min {self.min} > max {self.max}")

    def to_wire(self) -> list[Any]:
        return [self.name, self.unit, self.exponent, self.min, self.max]

    @classmethod
    def from_wire(cls, value: Any) -> Metric:
        return cls(*schema.list_(value, "metric", min_len=5, max_len=5, reason=_B))


def _metrics(value: Any) -> tuple[Metric, ...]:
    if type(value) is not tuple or not 1 <= len(value) <= MAX_METRICS:
        raise Refused(_B, f"metrics: a tuple of 1-{MAX_METRICS} Metric")
    for m in value:
        if type(m) is not Metric:
            raise Refused(_B, "metrics: expected Metric values")
    if len({m.name for m in value}) != len(value):
        raise Refused(_B, "metrics: duplicate metric name")
    return value


@dataclass(frozen=True, slots=True)
class DeviceRegister:
    """The ``device.register`` body; see the module docstring. Build it with
    :meth:`make`, which signs the proof of possession with the device key."""

    kind: ClassVar[str] = "device.register"
    key_type: str
    public_key: bytes
    device_kind: str
    host: bytes
    metrics: tuple[Metric, ...]
    pop: bytes

    def __post_init__(self) -> None:
        if type(self.key_type) is not str or self.key_type not in _PUBLIC_KEY_SIZE:
            raise Refused(_B, f"key_type {self.key_type!r} is not ed25519 or p256")
        schema.bytes_(self.public_key, "public_key", _PUBLIC_KEY_SIZE[self.key_type], reason=_B)
        schema.str_(
            self.device_kind, "device_kind", min_bytes=1, max_bytes=MAX_DEVICE_KIND_BYTES, reason=_B
        )
        schema.bytes_(self.host, "host", keys.PUBLIC_KEY_SIZE, reason=_B)
        _metrics(self.metrics)
        schema.bytes_(self.pop, "pop", SIGNATURE_SIZE, reason=_B)

    @property
    def device(self) -> bytes:
        return device_id(self.key_type, self.public_key)

    def metric(self, name: str) -> Metric | None:
        for m in self.metrics:
            if m.name == name:
                return m
        return None

    @staticmethod
    def statement_id(
        economy: bytes,
        owner: bytes,
        key_type: str,
        public_key: bytes,
        device_kind: str,
        host: bytes,
        metrics: Sequence[Metric],
    ) -> bytes:
        """The id the device key signs as proof of possession: it binds the
        key to this economy, owner, host, kind and metrics."""
        statement = [
            "device",
            1,
            economy,
            owner,
            key_type,
            public_key,
            device_kind,
            host,
            [m.to_wire() for m in metrics],
        ]
        return DEVICE.id(codec.encode(statement))

    def pop_id(self, economy: bytes, owner: bytes) -> bytes:
        return self.statement_id(
            economy,
            owner,
            self.key_type,
            self.public_key,
            self.device_kind,
            self.host,
            self.metrics,
        )

    def verify_pop(self, economy: bytes, owner: bytes) -> None:
        """Raise ``bad_signature`` / ``high_s`` / ``bad_key`` unless ``pop``
        is the device key's signature over this registration."""
        verify_device_signature(
            self.key_type, self.public_key, DEVICE, self.pop_id(economy, owner), self.pop
        )

    @classmethod
    def make(
        cls,
        device_key: DeviceKey,
        economy: bytes,
        owner: bytes,
        device_kind: str,
        host: bytes,
        metrics: Iterable[Metric],
    ) -> DeviceRegister:
        """The body for registering ``device_key``, its pop signed."""
        ms = tuple(metrics)
        sid = cls.statement_id(
            economy, owner, device_key.key_type, device_key.public, device_kind, host, ms
        )
        pop = device_key.sign(DEVICE, sid)
        return cls(device_key.key_type, device_key.public, device_kind, host, ms, pop)

    def to_wire(self) -> list[Any]:
        return [
            self.key_type,
            self.public_key,
            self.device_kind,
            self.host,
            [m.to_wire() for m in self.metrics],
            self.pop,
        ]

    @classmethod
    def from_wire(cls, value: Any) -> DeviceRegister:
        f = schema.list_(value, "device.register body", min_len=6, max_len=6, reason=_B)
        raw = schema.list_(f[4], "metrics", min_len=1, max_len=MAX_METRICS, reason=_B)
        return cls(f[0], f[1], f[2], f[3], tuple(Metric.from_wire(m) for m in raw), f[5])


# -- the attestation body ------------------------------------------------------------


def _metric_order(name: str) -> bytes:
    # Sorted by UTF-8 bytes, which is also code point order: every language
    # sorts the same way.
    return name.encode()


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Sum, min and max of one metric's values in a device's attested range.
    Wire: ``[metric, sum, min, max]``; ``sum`` within signed 64 bits."""

    metric: str
    sum: int
    min: int
    max: int

    def __post_init__(self) -> None:
        _metric_name(self.metric, "aggregate metric", _B)
        schema.int_(self.sum, "aggregate sum", reason=_B)
        schema.int_(self.min, "aggregate min", reason=_B)
        schema.int_(self.max, "aggregate max", reason=_B)
        if self.min > self.max:
            raise Refused(_B, f"aggregate {self.metric}: min {self.min} > max {self.max}")

    def to_wire(self) -> list[Any]:
        return [self.metric, self.sum, self.min, self.max]

    @classmethod
    def from_wire(cls, value: Any) -> Aggregate:
        return cls(*schema.list_(value, "aggregate", min_len=4, max_len=4, reason=_B))


@dataclass(frozen=True, slots=True)
class AttestedDevice:
    """One device's part of an attested batch: ``count`` readings with
    counters in ``[first, last]``, under its registration ``registration``.
    Wire: ``[device, registration, first, last, count, aggregates]``."""

    device: bytes
    registration: bytes
    first: int
    last: int
    count: int
    aggregates: tuple[Aggregate, ...]

    def __post_init__(self) -> None:
        schema.bytes_(self.device, "device", ID_SIZE, reason=_B)
        schema.bytes_(self.registration, "registration", ID_SIZE, reason=_B)
        schema.int_(self.first, "first", 0, schema.UINT64_MAX, reason=_B)
        schema.int_(self.last, "last", self.first, schema.UINT64_MAX, reason=_B)
        schema.int_(self.count, "count", 1, min(MAX_LEAVES, self.last - self.first + 1), reason=_B)
        aggs = self.aggregates
        if type(aggs) is not tuple or not 1 <= len(aggs) <= min(MAX_METRICS, self.count):
            raise Refused(_B, f"aggregates: a tuple of 1-{MAX_METRICS}, at most one per reading")
        for a in aggs:
            if type(a) is not Aggregate:
                raise Refused(_B, "aggregates: expected Aggregate values")
        order = [_metric_order(a.metric) for a in aggs]
        if any(x >= y for x, y in pairwise(order)):
            raise Refused(_B, "aggregates: not strictly increasing by metric")

    def aggregate(self, metric: str) -> Aggregate | None:
        for a in self.aggregates:
            if a.metric == metric:
                return a
        return None

    def to_wire(self) -> list[Any]:
        return [
            self.device,
            self.registration,
            self.first,
            self.last,
            self.count,
            [a.to_wire() for a in self.aggregates],
        ]

    @classmethod
    def from_wire(cls, value: Any) -> AttestedDevice:
        f = schema.list_(value, "attested device", min_len=6, max_len=6, reason=_B)
        raw = schema.list_(f[5], "aggregates", min_len=1, max_len=MAX_METRICS, reason=_B)
        return cls(f[0], f[1], f[2], f[3], f[4], tuple(Aggregate.from_wire(a) for a in raw))


@dataclass(frozen=True, slots=True)
class SensorAttest:
    """The ``sensor.attest`` body: a batch's Merkle ``root``, its ``count``
    of readings, and per device (strictly increasing ids) what it holds."""

    kind: ClassVar[str] = "sensor.attest"
    root: bytes
    count: int
    devices: tuple[AttestedDevice, ...]

    def __post_init__(self) -> None:
        schema.bytes_(self.root, "root", ID_SIZE, reason=_B)
        schema.int_(self.count, "count", 1, MAX_LEAVES, reason=_B)
        devs = self.devices
        if type(devs) is not tuple or not 1 <= len(devs) <= MAX_ATTESTED_DEVICES:
            raise Refused(_B, f"devices: a tuple of 1-{MAX_ATTESTED_DEVICES}")
        for d in devs:
            if type(d) is not AttestedDevice:
                raise Refused(_B, "devices: expected AttestedDevice values")
        if any(a.device >= b.device for a, b in pairwise(devs)):
            raise Refused(_B, "devices: not strictly increasing by device id")
        if sum(d.count for d in devs) != self.count:
            raise Refused(_B, f"count {self.count} is not the sum of the devices' counts")
        if len(codec.encode_trusted(self.to_wire())) > MAX_ATTEST_BODY_BYTES:
            # It could not travel as an entry; build_attestations splits batches.
            raise Refused(Reason.TOO_LARGE, f"body over {MAX_ATTEST_BODY_BYTES} bytes; split it")

    def row(self, device: bytes) -> AttestedDevice | None:
        for d in self.devices:
            if d.device == device:
                return d
        return None

    def to_wire(self) -> list[Any]:
        return [self.root, self.count, [d.to_wire() for d in self.devices]]

    @classmethod
    def from_wire(cls, value: Any) -> SensorAttest:
        f = schema.list_(value, "sensor.attest body", min_len=3, max_len=3, reason=_B)
        raw = schema.list_(f[2], "devices", min_len=1, max_len=MAX_ATTESTED_DEVICES, reason=_B)
        return cls(f[0], f[1], tuple(AttestedDevice.from_wire(d) for d in raw))


# -- the claim body -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImpactClaim:
    """The ``impact.claim`` body: credits for ``device``'s readings with
    counters ``first_counter … last_counter``, as attested by the
    ``attestations`` (entry ids, in order), whose economy-metric sums add up
    to ``total``."""

    kind: ClassVar[str] = "impact.claim"
    device: bytes
    first_counter: int
    last_counter: int
    attestations: tuple[bytes, ...]
    total: int

    def __post_init__(self) -> None:
        schema.bytes_(self.device, "device", ID_SIZE, reason=_B)
        schema.int_(self.first_counter, "first_counter", 0, schema.UINT64_MAX, reason=_B)
        schema.int_(
            self.last_counter, "last_counter", self.first_counter, schema.UINT64_MAX, reason=_B
        )
        atts = self.attestations
        if type(atts) is not tuple or not 1 <= len(atts) <= MAX_CLAIM_ATTESTATIONS:
            raise Refused(_B, f"attestations: a tuple of 1-{MAX_CLAIM_ATTESTATIONS} ids")
        for a in atts:
            schema.bytes_(a, "attestation id", ID_SIZE, reason=_B)
        if len(set(atts)) != len(atts):
            raise Refused(_B, "attestations: an id is named twice")
        schema.int_(self.total, "total", reason=_B)

    def to_wire(self) -> list[Any]:
        return [
            self.device,
            self.first_counter,
            self.last_counter,
            list(self.attestations),
            self.total,
        ]

    @classmethod
    def from_wire(cls, value: Any) -> ImpactClaim:
        f = schema.list_(value, "impact.claim body", min_len=5, max_len=5, reason=_B)
        raw = schema.list_(
            f[3], "attestations", min_len=1, max_len=MAX_CLAIM_ATTESTATIONS, reason=_B
        )
        return cls(f[0], f[1], f[2], tuple(raw), f[4])


# -- the registered device (a ledger record) ----------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A certified registration as the ledger keeps it (record
    :meth:`key`): a monotonic fact — once registered, registered forever
    with this owner, host, key and metrics. ``registration`` is the
    ``device.register`` entry id."""

    registration: bytes
    owner: bytes
    body: DeviceRegister

    @property
    def device(self) -> bytes:
        return self.body.device

    @property
    def host(self) -> bytes:
        return self.body.host

    @staticmethod
    def key(device: bytes) -> bytes:
        """The state record key of ``device``'s registration."""
        return fact_key("device", device)

    def to_wire(self) -> list[Any]:
        return ["device-record", 1, self.registration, self.owner, self.body.to_wire()]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> DeviceRecord:
        f = schema.array(codec.decode(data, max_size=4096), "device-record", 1, 5, "device record")
        return cls(
            schema.bytes_(f[2], "registration", ID_SIZE),
            schema.bytes_(f[3], "owner", keys.PUBLIC_KEY_SIZE),
            DeviceRegister.from_wire(f[4]),
        )

    @classmethod
    def from_certificate(cls, cert: Certificate) -> DeviceRecord:
        """The record of a ``device.register`` certificate (not verified here)."""
        if cert.entry.kind != DeviceRegister.kind:
            raise Refused(_M, f"expected a device.register certificate, got {cert.entry.kind}")
        return cls(cert.entry_id, cert.entry.author, cert.entry.body)
