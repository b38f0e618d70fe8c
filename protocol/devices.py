"""Sensor device keys: the two key types, device ids, and the strict check
of a device's signatures.

Why this exists: a device signs each reading and its own registration with
a key of its own (DESIGN §5) — Ed25519, or P-256 for the secure elements
small boards carry — and every host, validator and auditor must accept
exactly the same signatures, so the key rules are one module. What a device
signs is in ``readings.py`` and ``sensor_bodies.py``; ``docs/sensors.md`` is
the contract, and this docstring its byte layout for keys.

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
"""

from __future__ import annotations

import functools
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from mycelia.protocol import keys
from mycelia.protocol.domains import DEVICE_ID, ID_SIZE, Domain
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "ED25519",
    "KEY_TYPES",
    "P256",
    "P256_N",
    "SIGNATURE_SIZE",
    "DeviceKey",
    "Ed25519DeviceKey",
    "P256DeviceKey",
    "check_device_key",
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

_B = Reason.MALFORMED_BODY


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

    __slots__ = ("_key", "public")
    key_type = P256

    def __init__(self, secret: bytes) -> None:
        if type(secret) is not bytes or len(secret) != 32:
            raise ValueError("a P-256 secret is 32 bytes")
        d = int.from_bytes(secret, "big")
        if not 1 <= d < P256_N:
            raise ValueError("a P-256 secret is in [1, n-1]")
        self._key = ec.derive_private_key(d, ec.SECP256R1())
        self.public: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )

    @classmethod
    def generate(cls) -> P256DeviceKey:
        d = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        return cls(d.to_bytes(32, "big"))

    @property
    def device(self) -> bytes:
        return device_id(P256, self.public)

    def sign(self, domain: Domain, id_: bytes) -> bytes:
        r, s = _rfc6979_sign(self._key, domain.message(id_))
        # OpenSSL returns whichever S the nonce gives; a device signature
        # has one form, the low one (verify_device_signature refuses high S).
        return r.to_bytes(32, "big") + min(s, P256_N - s).to_bytes(32, "big")

    def __repr__(self) -> str:
        return f"P256DeviceKey(device={self.device.hex()[:16]})"


def _rfc6979_sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> tuple[int, int]:
    """``(r, s)`` of ECDSA P-256/SHA-256 over ``message`` with the RFC 6979
    nonce, computed by OpenSSL (``cryptography`` 43+ on OpenSSL 3.2+; its
    wheels bundle one). ``s`` is as signed, high or low."""
    # Built per call, not at import: on an OpenSSL without RFC 6979 only
    # signing with a P-256 device key fails (UnsupportedAlgorithm), never
    # verifying or anything else in the protocol.
    deterministic = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    r, s = decode_dss_signature(key.sign(message, deterministic))
    return r, s
