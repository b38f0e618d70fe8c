"""Sensor devices, their readings, attested batches and their audit.

Why this exists: an impact economy mints credits for what sensors measured
(DESIGN §5). A device signs each reading with its own key; its host node
checks and stores readings and attests batches of them in its chain
(``sensor.attest``: a Merkle root plus per-device counter ranges and
aggregates); the device's owner claims credits for attested ranges
(``impact.claim``). This module holds what a device, a host and an auditor
handle — keys, device ids, readings, the three entry bodies, the device
registration as the ledger stores it, the ingest check and the audit of a
batch — and no ledger rule (those are in ``impact.py``). ``docs/sensors.md``
is the contract; this docstring is its exact byte layout.

Device keys
-----------

=========  ===========================  ============================================
key_type   public key                   signature (64 bytes)
=========  ===========================  ============================================
ed25519    32 bytes                     Ed25519 (libsodium-strict) over the message
p256       33 bytes, SEC1 compressed    ``r || s`` big-endian 32 + 32, ECDSA P-256
           (``0x02``/``0x03`` ‖ X)      with SHA-256 over the message; ``1 <= r < n``
                                        and **low S**: ``1 <= s <= n // 2``
=========  ===========================  ============================================

High-S P-256 signatures are refused with ``high_s`` (not ``bad_signature``),
so a firmware writer sees at once what to fix: use ``n - s`` when ``s > n/2``
(``n`` = the P-256 group order). An ATECC608 signs a 32-byte digest: give it
``SHA-256(message)``. :class:`P256DeviceKey` (tests, simulators) signs
deterministically (RFC 6979) and always low-S.

Device id (32 bytes, both key types)::

    device = BLAKE2b-256("mycelia/device-id/1\\0" || key_type || 0x00 || public_key)

with ``key_type`` the ASCII name (``ed25519`` / ``p256``).

Readings — the bytes a device builds
------------------------------------

A reading is the canonical msgpack array (DESIGN §3: shortest ints and
length headers, ``bin`` for bytes, ``str`` for text)::

    reading = ["reading", 1, economy, device, counter, ts_ms, metric, value, exponent]

byte by byte::

    99                      array of 9
    a7 72 65 61 64 69 6e 67 "reading"
    01                      version 1
    c4 20 <32 bytes>        economy id (bin 8)
    c4 20 <32 bytes>        device id (bin 8)
    <uint>                  counter, shortest form (a uint64 on the wire; accepted
                            0 … MAX_COUNTER = 2**53-1, see "Bounds" below):
                            00-7f | cc XX | cd XXXX | ce XXXXXXXX | cf XXXXXXXXXXXXXXXX
    <uint>                  ts_ms, the device clock (ms since the epoch; 0 … 2**63-1
                            on the wire, accepted from MIN_READING_TS_MS = 2020-01-01)
    <str>                   metric, 1-32 bytes UTF-8: a0|len (len <= 31) or d9 20 (32)
    <int>                   value, signed 64-bit, shortest form (e0-ff for -32…-1,
                            d0/d1/d2/d3 for wider negatives, as counter for >= 0)
    <int>                   exponent, -18 … 18 (one byte: 00-12 or ee-ff)

``value × 10^exponent`` is the quantity, in the metric's declared unit; the
exponent must be the one declared for the metric at registration. At most
:data:`MAX_READING_BYTES` (140) bytes. Then::

    reading_id = BLAKE2b-256("mycelia/reading/1\\0" || reading)
    message    = "mycelia/sig/reading/1\\0" || reading_id          (54 bytes)
    signature  = sign(device key, message)                          (64 bytes)

and the device sends the signed reading::

    signed-reading = ["signed-reading", 1, reading, signature]
    = 94 ae 73 69 67 6e 65 64 2d 72 65 61 64 69 6e 67 01 <reading> c4 40 <signature>

at most :data:`MAX_SIGNED_READING_BYTES` (223) bytes. The same bytes are the
Merkle leaves of an attested batch. ``counter`` must strictly increase per
device (the host refuses replays); the economy id inside means a reading
counts in one economy only.

Bounds (the rule :func:`check_reading` and :class:`AttestationAudit` share,
so a host and an auditor agree; the encoding is unchanged):

* ``counter <= MAX_COUNTER = 2**53 - 1``, else ``counter_out_of_range``.
  Counters only grow, so one accepted reading with a huge counter would
  leave its device nothing to send next, ever: ``2**64 - 1`` is what erased
  flash (all ``0xff``) or ``-1`` sent as unsigned reads as. ``2**53`` still
  lasts 285,000 years at 1,000 readings a second, holds a counter taken
  from the clock (``ts_ms`` until the year 287,000, microseconds until
  2255), and is exact in every JSON and JavaScript number. A device whose
  counter truly reaches it gets a new key (a new device id) and starts
  again at 0. A jump is otherwise free: gaps are allowed (lost readings,
  counters reserved in blocks before a reboot), so no step limit — it
  would strand a device that was offline long with a clock counter.
* ``ts_ms >= MIN_READING_TS_MS`` (2020-01-01T00:00:00Z), else
  ``clock_skew``: a real-time clock that lost power restarts at 0 (1970)
  or at its chip's epoch (2000), and such a reading says nothing about
  when it was measured. Ahead of the host's clock by more than its
  tolerance is ``clock_skew`` too (the ingest only: an auditor has no
  receive time).

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

import functools
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import DEVICE, DEVICE_ID, ID_SIZE, READING, Domain
from mycelia.protocol.merkle import MAX_LEAVES, MerkleProof, MerkleTree, check_proof
from mycelia.protocol.reasons import NeedCertificate, Reason, Refused, Verdict
from mycelia.protocol.state import fact_key

if TYPE_CHECKING:
    from mycelia.protocol.certificates import Certificate
    from mycelia.protocol.economy import Economy

__all__ = [
    "ED25519",
    "KEY_TYPES",
    "MAX_ATTESTED_DEVICES",
    "MAX_ATTEST_BODY_BYTES",
    "MAX_CLAIM_ATTESTATIONS",
    "MAX_COUNTER",
    "MAX_EXPONENT",
    "MAX_METRICS",
    "MAX_READING_BYTES",
    "MAX_READING_SKEW_MS",
    "MAX_SIGNED_READING_BYTES",
    "MIN_EXPONENT",
    "MIN_READING_TS_MS",
    "P256",
    "READING_REASONS",
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

ED25519 = "ed25519"
P256 = "p256"
KEY_TYPES = (ED25519, P256)
_PUBLIC_KEY_SIZE = {ED25519: keys.PUBLIC_KEY_SIZE, P256: 33}
SIGNATURE_SIZE = 64
#: The order of the P-256 group; low S means ``s <= n // 2``.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P256_HALF_N = P256_N // 2

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
#: A body's bytes besides its rows, at most: array header, root, count and
#: the rows' array16 header.
_ATTEST_BODY_OVERHEAD = 1 + 34 + 5 + 3
#: Attestations one claim may name.
MAX_CLAIM_ATTESTATIONS = 16
#: The longest canonical reading (every field at its widest) and signed reading.
MAX_READING_BYTES = 140
MAX_SIGNED_READING_BYTES = 223
#: Default tolerance for a reading's timestamp ahead of the host's clock.
MAX_READING_SKEW_MS = 120_000
#: The highest counter a reading may carry, and the earliest timestamp (see
#: "Bounds" in the module docstring for why these).
MAX_COUNTER = (1 << 53) - 1
MIN_READING_TS_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z

_B = Reason.MALFORMED_BODY
_M = Reason.MALFORMED


# -- device keys ----------------------------------------------------------------------


def device_id(key_type: str, public_key: bytes) -> bytes:
    """The 32-byte id naming the device with this key everywhere."""
    if key_type not in _PUBLIC_KEY_SIZE:
        raise ValueError(f"unknown key type {key_type!r}")
    return DEVICE_ID.id(key_type.encode() + b"\x00" + public_key)


@functools.lru_cache(maxsize=4096)
def _p256_public(public: bytes) -> ec.EllipticCurvePublicKey | None:
    # Decompressing costs a square root; keys repeat (one per device).
    if len(public) != 33 or public[0] not in (2, 3):
        return None
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    except ValueError:
        return None


def check_device_key(key_type: object, public_key: object, what: str = "device key") -> bytes:
    """Return ``public_key`` if it is a valid key of ``key_type``; else
    ``Refused``: ``malformed_body`` for an unknown key type, ``bad_key`` for a
    key of the wrong length or not a valid point (Ed25519: prime order, as
    ``keys.check_public_key``; P-256: a compressed point on the curve)."""
    if type(key_type) is not str or key_type not in _PUBLIC_KEY_SIZE:
        raise Refused(_B, f"{what}: unknown key type {key_type!r} (ed25519 or p256)")
    if key_type == ED25519:
        return keys.check_public_key(public_key, what)
    if type(public_key) is not bytes or len(public_key) != 33:
        raise Refused(Reason.BAD_KEY, f"{what}: a p256 key is 33 bytes, SEC1 compressed")
    if _p256_public(public_key) is None:
        raise Refused(Reason.BAD_KEY, f"{what}: not a compressed P-256 point")
    return public_key


def verify_device_signature(
    key_type: str, public_key: bytes, domain: Domain, id_: bytes, signature: bytes
) -> None:
    """Raise unless ``signature`` is the device key's signature over
    ``domain.message(id_)``. The key is checked first, with
    :func:`check_device_key` (``bad_key``; ``malformed_body`` for an unknown
    key type), so an invalid key is ``bad_key`` here as in the ledger's
    registration rule and ``ledger.check``; then the signature:
    ``bad_signature`` (wrong length, does not verify, ``r`` or ``s`` out of
    range) or ``high_s`` (a P-256 ``s`` above ``n/2``)."""
    check_device_key(key_type, public_key)
    if type(signature) is not bytes or len(signature) != SIGNATURE_SIZE:
        raise Refused(Reason.BAD_SIGNATURE, "a device signature is 64 bytes")
    if type(id_) is not bytes or len(id_) != ID_SIZE:
        raise Refused(Reason.BAD_SIGNATURE, "a device signs a 32-byte id")
    if key_type == ED25519:
        keys.check_signature(public_key, domain, id_, signature, "device")
        return
    pub = _p256_public(public_key)
    if pub is None:  # check_device_key refused it already
        raise Refused(Reason.BAD_KEY, "not a compressed P-256 point")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (1 <= r < P256_N and 1 <= s < P256_N):
        raise Refused(Reason.BAD_SIGNATURE, "P-256 signature: r or s out of range")
    if s > _P256_HALF_N:
        raise Refused(Reason.HIGH_S, "P-256 signature has high S; sign with s <= n/2 (use n - s)")
    try:
        pub.verify(encode_dss_signature(r, s), domain.message(id_), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(
            Reason.BAD_SIGNATURE, "the device's P-256 signature does not verify"
        ) from None


class DeviceKey(Protocol):
    """A device's private key, as firmware or a simulator holds it."""

    key_type: str
    public: bytes

    @property
    def device(self) -> bytes: ...

    def sign(self, domain: Domain, id_: bytes) -> bytes: ...


class Ed25519DeviceKey:
    """An Ed25519 device key from a 32-byte seed (``keys.SigningKey``)."""

    __slots__ = ("_key", "public")
    key_type = ED25519

    def __init__(self, seed: bytes) -> None:
        self._key = keys.SigningKey(seed)
        self.public: bytes = self._key.public

    @property
    def device(self) -> bytes:
        return device_id(ED25519, self.public)

    def sign(self, domain: Domain, id_: bytes) -> bytes:
        return keys.sign(self._key, domain, id_)

    def __repr__(self) -> str:
        return f"Ed25519DeviceKey(device={self.device.hex()[:16]})"


class P256DeviceKey:
    """A P-256 device key, for tests and simulators of secure elements.

    ``secret`` is the private scalar, 32 bytes big-endian in ``[1, n-1]``.
    Signatures are deterministic (RFC 6979 with SHA-256, so test vectors are
    reproducible) and always low-S."""

    __slots__ = ("_d", "public")
    key_type = P256

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != 32:
            raise ValueError("a P-256 secret is 32 bytes")
        d = int.from_bytes(secret, "big")
        if not 1 <= d < P256_N:
            raise ValueError("a P-256 secret is in [1, n-1]")
        self._d = d
        self.public: bytes = (
            ec.derive_private_key(d, ec.SECP256R1())
            .public_key()
            .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        )

    @classmethod
    def generate(cls) -> P256DeviceKey:
        d = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        return cls(d.to_bytes(32, "big"))

    @property
    def device(self) -> bytes:
        return device_id(P256, self.public)

    def sign(self, domain: Domain, id_: bytes) -> bytes:
        r, s = _rfc6979_sign(self._d, domain.message(id_))
        return r.to_bytes(32, "big") + min(s, P256_N - s).to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"P256DeviceKey(device={self.device.hex()[:16]})"


def _x_of_multiple(k: int) -> int:
    """The x coordinate of ``k·G`` (OpenSSL does the point arithmetic)."""
    point = (
        ec.derive_private_key(k, ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return int.from_bytes(point[1:33], "big")


def _rfc6979_sign(d: int, message: bytes) -> tuple[int, int]:
    """ECDSA P-256/SHA-256 with the RFC 6979 nonce (section 3.2; for this
    curve ``qlen == hlen == 256``, so bits2int is plain big-endian)."""
    digest = hashlib.sha256(message).digest()
    z = int.from_bytes(digest, "big")
    x = d.to_bytes(32, "big")
    h = (z % P256_N).to_bytes(32, "big")

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()

    v, k_ = b"\x01" * 32, b"\x00" * 32
    k_ = mac(k_, v + b"\x00" + x + h)
    v = mac(k_, v)
    k_ = mac(k_, v + b"\x01" + x + h)
    v = mac(k_, v)
    while True:
        v = mac(k_, v)
        k = int.from_bytes(v, "big")
        if 1 <= k < P256_N:
            r = _x_of_multiple(k) % P256_N
            if r:
                s = pow(k, -1, P256_N) * (z + r * d) % P256_N
                if s:
                    return r, s
        k_ = mac(k_, v + b"\x00")
        v = mac(k_, v)


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


# -- readings -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement, as the device signs it. Validates on construction
    (``malformed``); see the module docstring for the bytes."""

    economy: bytes
    device: bytes
    counter: int
    ts_ms: int
    metric: str
    value: int
    exponent: int

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.device, "device", ID_SIZE)
        schema.int_(self.counter, "counter", 0, schema.UINT64_MAX)
        schema.int_(self.ts_ms, "ts_ms", 0, schema.INT64_MAX)
        _metric_name(self.metric, "metric", _M)
        schema.int_(self.value, "value")
        _exponent(self.exponent, "exponent", _M)

    def to_wire(self) -> list[Any]:
        return [
            "reading",
            1,
            self.economy,
            self.device,
            self.counter,
            self.ts_ms,
            self.metric,
            self.value,
            self.exponent,
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return READING.id(self.encode())

    @property
    def message(self) -> bytes:
        """The exact bytes the device signs."""
        return READING.message(self.id)

    def sign(self, key: DeviceKey) -> SignedReading:
        if key.device != self.device:
            raise ValueError("a reading is signed by its own device's key")
        return SignedReading(self, key.sign(READING, self.id))

    @classmethod
    def decode(cls, data: bytes) -> Reading:
        return cls.from_wire(codec.decode(data, max_size=MAX_READING_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Reading:
        f = schema.array(value, "reading", 1, 9, "reading")
        return cls(f[2], f[3], f[4], f[5], f[6], f[7], f[8])


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading and its device's signature: what a device sends, what a
    host stores, and a Merkle leaf (its :meth:`encode` bytes)."""

    reading: Reading
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.reading) is not Reading:
            raise Refused(_M, "signed reading: expected a Reading")
        schema.bytes_(self.signature, "signature", SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return self.reading.id

    def to_wire(self) -> list[Any]:
        return ["signed-reading", 1, self.reading.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self, key_type: str, public_key: bytes) -> bytes:
        """Return the reading id if the signature is the device key's, else
        raise (``bad_signature``, ``high_s``, ``bad_key``)."""
        id_ = self.reading.id
        verify_device_signature(key_type, public_key, READING, id_, self.signature)
        return id_

    @classmethod
    def decode(cls, data: bytes) -> SignedReading:
        """Strict decode: at most :data:`MAX_SIGNED_READING_BYTES` bytes
        (``too_large``), canonical (``non_canonical``), exact shape
        (``malformed``)."""
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_READING_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> SignedReading:
        f = schema.array(value, "signed-reading", 1, 4, "signed reading")
        return cls(Reading.from_wire(f[2]), f[3])


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


# -- ingest: is this reading acceptable for this host? ------------------------------


def _check_declared(r: Reading, body: DeviceRegister) -> None:
    """The rules a reading obeys by itself and against its registration,
    shared by the host's :func:`check_reading` and the auditor's
    :meth:`AttestationAudit.check`: the bounds (``counter_out_of_range``,
    ``clock_skew`` before the floor), the declared metric and exponent
    (``unknown_metric``) and value (``out_of_range``)."""
    if r.counter > MAX_COUNTER:
        raise Refused(
            Reason.COUNTER_OUT_OF_RANGE,
            f"counter {r.counter} is above {MAX_COUNTER} (2**53 - 1), the highest a device uses",
        )
    if r.ts_ms < MIN_READING_TS_MS:
        raise Refused(
            Reason.CLOCK_SKEW,
            f"ts {r.ts_ms} is before {MIN_READING_TS_MS} (2020-01-01): the device clock is not set",
        )
    declared = body.metric(r.metric)
    if declared is None:
        raise Refused(Reason.UNKNOWN_METRIC, f"metric {r.metric!r} was not declared")
    if declared.exponent != r.exponent:
        raise Refused(
            Reason.UNKNOWN_METRIC,
            f"metric {r.metric!r} is declared with exponent {declared.exponent}, not {r.exponent}",
        )
    if not declared.min <= r.value <= declared.max:
        raise Refused(
            Reason.OUT_OF_RANGE,
            f"{r.metric} value {r.value} not in [{declared.min}, {declared.max}]",
        )


def check_reading(
    signed: SignedReading,
    device: DeviceRecord,
    *,
    economy: bytes,
    host: bytes,
    last_counter: int | None,
    now_ms: int | None,
    max_skew_ms: int = MAX_READING_SKEW_MS,
) -> bytes:
    """What a host runs on each reading before storing it (sans-IO: the node
    looks up ``device`` — unknown is its ``unknown_device`` — and its last
    accepted counter, and passes its clock). Returns the reading id.

    Refuses, cheapest first: ``wrong_economy``; ``unknown_device`` (the
    record is another device's); ``not_host`` (``host`` is not the device's
    host); ``counter_out_of_range`` (above :data:`MAX_COUNTER`);
    ``clock_skew`` (ts before :data:`MIN_READING_TS_MS`); ``unknown_metric``
    (metric not declared, or another exponent); ``out_of_range`` (value
    outside the declared bounds); ``replayed_counter`` (counter not above
    ``last_counter``); ``clock_skew`` (ts more than ``max_skew_ms`` ahead of
    ``now_ms``); ``bad_signature`` / ``high_s``. With the strict decoding's
    ``non_canonical`` / ``too_large`` / ``malformed`` these are
    :data:`READING_REASONS`."""
    r = signed.reading
    if r.economy != economy:
        raise Refused(Reason.WRONG_ECONOMY, "the reading is signed for another economy")
    if r.device != device.device:
        raise Refused(Reason.UNKNOWN_DEVICE, "the registration given is another device's")
    if device.host != host:
        raise Refused(Reason.NOT_HOST, "this node is not the device's registered host")
    _check_declared(r, device.body)
    if last_counter is not None and r.counter <= last_counter:
        raise Refused(Reason.REPLAYED_COUNTER, f"counter {r.counter} is not above {last_counter}")
    if now_ms is not None and r.ts_ms > now_ms + max_skew_ms:
        raise Refused(
            Reason.CLOCK_SKEW, f"ts {r.ts_ms} is ahead of {now_ms} by more than {max_skew_ms} ms"
        )
    return signed.verify(device.body.key_type, device.body.public_key)


#: Every reason :meth:`SignedReading.decode` and :func:`check_reading` can
#: give a reading (for a registration the ledger accepted, whose key is
#: valid): what a host's ingest answers per reading, besides its own
#: policy. ``docs/sensors.md`` lists them for device makers (a test keeps
#: the two equal).
READING_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.NON_CANONICAL,
        Reason.TOO_LARGE,
        Reason.MALFORMED,
        Reason.WRONG_ECONOMY,
        Reason.UNKNOWN_DEVICE,
        Reason.NOT_HOST,
        Reason.COUNTER_OUT_OF_RANGE,
        Reason.CLOCK_SKEW,
        Reason.UNKNOWN_METRIC,
        Reason.OUT_OF_RANGE,
        Reason.REPLAYED_COUNTER,
        Reason.BAD_SIGNATURE,
        Reason.HIGH_S,
    }
)


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
