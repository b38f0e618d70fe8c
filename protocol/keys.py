"""Ed25519 keys, strict verification and ``did:key`` identities.

Why this exists: accounts, validators and nodes are all Ed25519 public keys,
and every node must accept exactly the same signatures. libsodium (through
PyNaCl) is the rule: it rejects non-canonical ``S``, small-order ``R`` and
small-order or non-canonical public keys, where OpenSSL's Ed25519 accepts some
of those. So this module is the only place that signs or verifies, and it
always goes through libsodium.

How it works:

* :class:`SigningKey` wraps a 32-byte seed. Its ``repr`` never shows the
  seed, so a key cannot end up in a log by accident.
* :func:`sign` / :func:`verify` take a :class:`~mycelia.protocol.domains.Domain`
  and a 32-byte id: the signed message is always the domain's signature
  prefix plus the id (see ``domains.py``).
* :func:`check_signature` is what every rule that refuses calls: it checks
  the key first (:func:`check_public_key`, ``bad_key``), then the signature
  (``bad_signature``). A small-order key verifies nothing and a mixed-order
  one verifies some messages, so without the key check first the same bad
  key would be ``bad_signature`` on one path, accepted on another and
  ``bad_key`` in ``ledger.check``: one cause, one reason, everywhere.
* :func:`check_public_key` is applied wherever a key *first enters* the
  ledger (genesis validators, stewards and issuers, an author's first entry,
  a recipient, an admitted member): the 32 bytes must be a canonical encoding
  of a point of prime order ``L`` (libsodium's
  ``crypto_core_ed25519_is_valid_point``), which excludes the small-order and
  mixed-order points an honest key generator never produces. Results are
  cached, since the check costs about as much as a verification.
* ``did:key`` is multibase base58btc (``z``) of the multicodec prefix
  ``0xed 0x01`` followed by the 32 key bytes; anything else is refused with
  ``bad_key``.
"""

from __future__ import annotations

import functools
import os

from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_sign,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError

from mycelia.protocol.domains import ID_SIZE, Domain
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "SigningKey",
    "check_public_key",
    "check_signature",
    "did_decode",
    "did_encode",
    "sign",
    "verify",
]

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
_MULTICODEC_ED25519_PUB = b"\xed\x01"
_DID_PREFIX = "did:key:z"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


class SigningKey:
    """An Ed25519 private key (seed). Never printed, never compared by value."""

    __slots__ = ("_secret", "public")

    def __init__(self, seed: bytes) -> None:
        if type(seed) is not bytes or len(seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        public, secret = crypto_sign_seed_keypair(seed)
        self.public: bytes = public
        self._secret: bytes = secret

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(SEED_SIZE))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed, for writing a key file. Handle with care."""
        return self._secret[:SEED_SIZE]

    @property
    def did(self) -> str:
        return did_encode(self.public)

    def __repr__(self) -> str:
        return f"SigningKey(public={self.did})"


def sign(key: SigningKey, domain: Domain, id_: bytes) -> bytes:
    """Sign ``id_`` in ``domain``; returns the 64-byte detached signature."""
    return crypto_sign(domain.message(id_), key._secret)[:SIGNATURE_SIZE]


def verify(public: bytes, domain: Domain, id_: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid libsodium-strict Ed25519 signature by
    ``public`` over ``id_`` in ``domain``. Never raises for bad input."""
    if (
        type(public) is not bytes
        or len(public) != PUBLIC_KEY_SIZE
        or type(signature) is not bytes
        or len(signature) != SIGNATURE_SIZE
        or type(id_) is not bytes
        or len(id_) != ID_SIZE
    ):
        return False
    # libsodium's crypto_sign_open is the strict check; cffi releases the GIL
    # for the call, so worker threads verify in parallel.
    try:
        crypto_sign_open(signature + domain.sig_prefix + id_, public)
    except BadSignatureError:
        return False
    return True


@functools.lru_cache(maxsize=65536)
def _valid_point(public: bytes) -> bool:
    return bool(crypto_core_ed25519_is_valid_point(public))


def check_public_key(public: object, what: str = "key") -> bytes:
    """Return ``public`` if it is a valid Ed25519 public key, else raise
    ``Refused(bad_key)`` naming ``what``."""
    if type(public) is not bytes or len(public) != PUBLIC_KEY_SIZE:
        raise Refused(Reason.BAD_KEY, f"{what}: an Ed25519 public key is 32 bytes")
    if not _valid_point(public):
        raise Refused(Reason.BAD_KEY, f"{what}: not a prime-order Ed25519 point")
    return public


def check_signature(
    public: object, domain: Domain, id_: bytes, signature: bytes, what: str = "key"
) -> None:
    """Raise unless ``signature`` is ``public``'s over ``id_`` in ``domain``:
    ``Refused(bad_key)`` if ``public`` is not a valid Ed25519 key (checked
    first, so an invalid key is named as such whatever the signature),
    ``Refused(bad_signature)`` if the signature does not verify. ``what``
    names the signer in the detail (``author``, ``validator``, ...)."""
    if not verify(check_public_key(public, what), domain, id_, signature):
        raise Refused(Reason.BAD_SIGNATURE, f"the {what}'s signature does not verify")


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        i = _B58_INDEX.get(c)
        if i is None:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + i
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * pad + body


def did_encode(public: bytes) -> str:
    """``did:key:z6Mk...`` for an Ed25519 public key."""
    if type(public) is not bytes or len(public) != PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return _DID_PREFIX + _b58encode(_MULTICODEC_ED25519_PUB + public)


def did_decode(did: object, *, check: bool = True) -> bytes:
    """The public key of an Ed25519 ``did:key``; ``Refused(bad_key)`` for
    anything else (another method or multicodec, bad base58, wrong length, or
    — with ``check`` — an invalid point)."""
    if type(did) is not str or not did.startswith(_DID_PREFIX) or len(did) > 64:
        raise Refused(Reason.BAD_KEY, "not an Ed25519 did:key (expected did:key:z6Mk...)")
    try:
        raw = _b58decode(did[len(_DID_PREFIX) :])
    except ValueError as exc:
        raise Refused(Reason.BAD_KEY, f"did:key: {exc}") from None
    if raw[:2] != _MULTICODEC_ED25519_PUB:
        raise Refused(Reason.BAD_KEY, "did:key is not an Ed25519 key (multicodec 0xed01)")
    public = raw[2:]
    if len(public) != PUBLIC_KEY_SIZE:
        raise Refused(Reason.BAD_KEY, "did:key: an Ed25519 public key is 32 bytes")
    if did_encode(public) != did:
        raise Refused(Reason.BAD_KEY, "did:key is not in canonical base58btc form")
    return check_public_key(public, "did:key") if check else public
