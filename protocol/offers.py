"""Compute offers: what a provider sells, at what price, and where to dial it.

Why this exists: a consumer picks a provider from offers gossiped in its
economy and later pays against one, so an offer is a signed, bounded value
whose bytes are fixed here (and in ``tests/vectors/compute.json``); the
job check, the pricing and the offer book read it, none re-parses it.

Wire form (canonical, DESIGN §3; ``docs/compute-protocol.md`` byte by byte)::

    offer   = ["offer", 1, economy, provider, seq, issued_ms, expires_ms,
               peer, [addr, ...], [runtime, ...], credit_window, grace_ms]
    runtime = [name, limits, prices]
    limits  = [max_cpu_ms, max_wall_ms, reserved_mib, max_input_bytes,
               max_output_bytes]
    prices  = [fee, per_cpu_ms, per_mib_s, per_wall_s]          (pricing.py)
    signed-offer = ["signed-offer", 1, offer, signature]

    offer_id = BLAKE2b-256("mycelia/offer/1\\0" || offer)
    the provider signs "mycelia/sig/offer/1\\0" || offer_id

Fields and their bounds (a value outside is ``malformed``, a price or
amount outside 0 … 2**63-1 ``amount_out_of_range``):

* ``economy`` (32 bytes): the economy whose minor units the prices are in
  and whose channels pay.
* ``provider`` (32 bytes): the provider's account key, which signs the offer
  and its usage reports and is paid by the channel (a valid Ed25519 key,
  checked when the signature is: ``bad_key``).
* ``seq`` (1 … 2**32-1): the provider's number for this offer. A provider
  may keep several offers (one per kind of machine); a newer offer with the
  same ``seq`` replaces the older one (``offer_book.py``).
* ``issued_ms`` < ``expires_ms``, at most :data:`MAX_OFFER_TTL_MS` apart
  (ms since the Unix epoch): an offer is valid until ``expires_ms``
  (exclusive) and is republished with a newer ``issued_ms`` to extend it.
* ``peer``: the provider node's libp2p peer id (base58btc, 1 … 128 bytes);
  ``addrs``: up to :data:`MAX_ADDRS` distinct multiaddrs to dial it (each
  1 … 256 printable ASCII bytes, starting with ``/``; may be empty when the
  peer is reachable through discovery).
* ``runtimes``: 1 … :data:`MAX_RUNTIMES` runtimes in strictly ascending
  name order (unique). A name is 1 … 32 bytes of ``[a-z0-9._-]``, starting
  with a letter or digit: the key of a runtime the provider configured
  (a command it chose, never the consumer's). Each has its limits and its
  prices; the price of a job at every limit must be a ledger amount.
* ``credit_window`` (0 … 2**63-1 minor units): the most unpaid value the
  provider carries before it freezes a job (``compute.py``).
* ``grace_ms`` (0 … :data:`MAX_GRACE_MS`): how long a frozen job waits for a
  voucher before the provider kills it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import COMPUTE_OFFER, ID_SIZE
from mycelia.protocol.pricing import Prices, Usage, check_amount, price_cap
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "MAX_ADDRS",
    "MAX_ADDR_BYTES",
    "MAX_CPU_MS",
    "MAX_GRACE_MS",
    "MAX_INPUT_BYTES",
    "MAX_OFFER_BYTES",
    "MAX_OFFER_SEQ",
    "MAX_OFFER_TTL_MS",
    "MAX_OUTPUT_BYTES",
    "MAX_PEER_BYTES",
    "MAX_RESERVED_MIB",
    "MAX_RUNTIMES",
    "MAX_RUNTIME_NAME_BYTES",
    "MAX_SIGNED_OFFER_BYTES",
    "MAX_WALL_MS",
    "Limits",
    "Offer",
    "Runtime",
    "SignedOffer",
    "check_runtime_name",
]

#: Longest wall time a runtime may allow one job: a week.
MAX_WALL_MS = 7 * 24 * 3600 * 1000
#: CPU time may run ahead of wall time on many cores; 256 cores' worth.
MAX_CPU_MS = 256 * MAX_WALL_MS
#: Largest reservation: 1 TiB.
MAX_RESERVED_MIB = 1 << 20
#: Largest input a runtime may accept (passed by hash beyond the inline bound
#: of ``compute_frames.MAX_INLINE_INPUT_BYTES``): 1 TiB.
MAX_INPUT_BYTES = 1 << 40
#: Largest output: it travels inline in the RESULT frame.
MAX_OUTPUT_BYTES = 1 << 20
#: Offers last at most a day; providers republish.
MAX_OFFER_TTL_MS = 24 * 3600 * 1000
#: Longest grace a frozen job gets before it is killed.
MAX_GRACE_MS = 300_000
MAX_OFFER_SEQ = (1 << 32) - 1
MAX_RUNTIMES = 16
MAX_RUNTIME_NAME_BYTES = 32
MAX_ADDRS = 8
MAX_ADDR_BYTES = 256
MAX_PEER_BYTES = 128
#: Bounds on a canonical offer and signed offer: every field, list and string
#: at its widest encoding (a test builds that wire value; not every such
#: offer is valid, as the price at the limits must stay an amount).
MAX_OFFER_BYTES = 4015
MAX_SIGNED_OFFER_BYTES = 4096

_M = Reason.MALFORMED
_LIMIT_NAMES = ("max_cpu_ms", "max_wall_ms", "reserved_mib", "max_input_bytes", "max_output_bytes")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)
_PEER = re.compile(r"[1-9A-HJ-NP-Za-km-z]+", re.ASCII)  # the base58btc alphabet
_ADDR = re.compile(r"/[\x21-\x7e]*", re.ASCII)


def check_runtime_name(value: Any) -> str:
    """``value`` as a runtime name, else ``malformed``."""
    name = schema.str_(value, "runtime name", min_bytes=1, max_bytes=MAX_RUNTIME_NAME_BYTES)
    if not _NAME.fullmatch(name):
        raise Refused(_M, f"runtime name {name!r}: expected [a-z0-9][a-z0-9._-]*")
    return name


@dataclass(frozen=True, slots=True)
class Limits:
    """What one job may use. In an offer, the runtime's limits; in a JOB, the
    consumer's own, each at most the runtime's. Wire:
    ``[max_cpu_ms, max_wall_ms, reserved_mib, max_input_bytes, max_output_bytes]``."""

    max_cpu_ms: int
    max_wall_ms: int
    reserved_mib: int
    max_input_bytes: int
    max_output_bytes: int

    def __post_init__(self) -> None:
        schema.int_(self.max_cpu_ms, "max_cpu_ms", 1, MAX_CPU_MS)
        schema.int_(self.max_wall_ms, "max_wall_ms", 1, MAX_WALL_MS)
        schema.int_(self.reserved_mib, "reserved_mib", 1, MAX_RESERVED_MIB)
        schema.int_(self.max_input_bytes, "max_input_bytes", 0, MAX_INPUT_BYTES)
        schema.int_(self.max_output_bytes, "max_output_bytes", 0, MAX_OUTPUT_BYTES)

    @property
    def ceiling(self) -> Usage:
        """The largest usage these limits admit."""
        return Usage(self.max_cpu_ms, self.max_wall_ms, self.reserved_mib * self.max_wall_ms)

    def within(self, other: Limits) -> str | None:
        """None if every limit is at most ``other``'s, else the first one
        that is not (its name)."""
        for name in _LIMIT_NAMES:
            if getattr(self, name) > getattr(other, name):
                return name
        return None

    def excess(self, usage: Usage) -> str | None:
        """None if ``usage`` is within these limits, else what is over:
        ``cpu_ms`` over ``max_cpu_ms``, ``wall_ms`` over ``max_wall_ms``, or
        ``mib_ms`` over ``reserved_mib × wall_ms`` (memory reserved beyond
        the reservation over the running time)."""
        if usage.cpu_ms > self.max_cpu_ms:
            return f"cpu_ms {usage.cpu_ms} > max_cpu_ms {self.max_cpu_ms}"
        if usage.wall_ms > self.max_wall_ms:
            return f"wall_ms {usage.wall_ms} > max_wall_ms {self.max_wall_ms}"
        if usage.mib_ms > self.reserved_mib * usage.wall_ms:
            return f"mib_ms {usage.mib_ms} > reserved_mib {self.reserved_mib} x wall_ms"
        return None

    def to_wire(self) -> list[Any]:
        return [
            self.max_cpu_ms,
            self.max_wall_ms,
            self.reserved_mib,
            self.max_input_bytes,
            self.max_output_bytes,
        ]

    @classmethod
    def from_wire(cls, value: Any) -> Limits:
        f = schema.list_(value, "limits", min_len=5, max_len=5)
        return cls(f[0], f[1], f[2], f[3], f[4])


@dataclass(frozen=True, slots=True)
class Runtime:
    """One runtime a provider offers: its name, limits and prices. Wire:
    ``[name, limits, prices]``."""

    name: str
    limits: Limits
    prices: Prices

    def __post_init__(self) -> None:
        check_runtime_name(self.name)
        if type(self.limits) is not Limits or type(self.prices) is not Prices:
            raise Refused(_M, "runtime: expected Limits and Prices")
        check_amount(price_cap(self.prices, self.limits), f"runtime {self.name}: price at limits")

    def to_wire(self) -> list[Any]:
        return [self.name, self.limits.to_wire(), self.prices.to_wire()]

    @classmethod
    def from_wire(cls, value: Any) -> Runtime:
        f = schema.list_(value, "runtime", min_len=3, max_len=3)
        return cls(check_runtime_name(f[0]), Limits.from_wire(f[1]), Prices.from_wire(f[2]))


@dataclass(frozen=True, slots=True)
class Offer:
    """A provider's offer (see the module docstring). Validated when built."""

    economy: bytes
    provider: bytes
    seq: int
    issued_ms: int
    expires_ms: int
    peer: str
    addrs: tuple[str, ...]
    runtimes: tuple[Runtime, ...]
    credit_window: int
    grace_ms: int

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.provider, "provider", keys.PUBLIC_KEY_SIZE)
        schema.int_(self.seq, "seq", 1, MAX_OFFER_SEQ)
        schema.int_(self.issued_ms, "issued_ms", 0, schema.INT64_MAX)
        schema.int_(self.expires_ms, "expires_ms", 0, schema.INT64_MAX)
        if not 0 < self.expires_ms - self.issued_ms <= MAX_OFFER_TTL_MS:
            raise Refused(
                _M, f"expires_ms must be after issued_ms by at most {MAX_OFFER_TTL_MS} ms"
            )
        peer = schema.str_(self.peer, "peer", min_bytes=1, max_bytes=MAX_PEER_BYTES)
        if not _PEER.fullmatch(peer):
            raise Refused(_M, "peer: expected a base58btc libp2p peer id")
        if type(self.addrs) is not tuple or len(self.addrs) > MAX_ADDRS:
            raise Refused(_M, f"addrs: a tuple of at most {MAX_ADDRS}")
        for addr in self.addrs:
            schema.str_(addr, "addr", min_bytes=1, max_bytes=MAX_ADDR_BYTES)
            if not _ADDR.fullmatch(addr):
                raise Refused(_M, f"addr {addr!r}: expected a multiaddr (printable ASCII, '/...')")
        if len(set(self.addrs)) != len(self.addrs):
            raise Refused(_M, "addrs: listed twice")
        if type(self.runtimes) is not tuple or not 1 <= len(self.runtimes) <= MAX_RUNTIMES:
            raise Refused(_M, f"runtimes: a tuple of 1 to {MAX_RUNTIMES}")
        for r in self.runtimes:
            if type(r) is not Runtime:
                raise Refused(_M, "runtimes: expected Runtime values")
        names = [r.name for r in self.runtimes]
        if any(a >= b for a, b in pairwise(names)):
            raise Refused(_M, "runtimes: names must be unique and in ascending order")
        check_amount(self.credit_window, "credit_window")
        schema.int_(self.grace_ms, "grace_ms", 0, MAX_GRACE_MS)

    def runtime(self, name: str) -> Runtime:
        """The runtime called ``name``, else ``unknown_runtime``."""
        for r in self.runtimes:
            if r.name == name:
                return r
        raise Refused(Reason.UNKNOWN_RUNTIME, f"the offer has no runtime {name!r}")

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms

    def to_wire(self) -> list[Any]:
        return [
            "offer",
            1,
            self.economy,
            self.provider,
            self.seq,
            self.issued_ms,
            self.expires_ms,
            self.peer,
            list(self.addrs),
            [r.to_wire() for r in self.runtimes],
            self.credit_window,
            self.grace_ms,
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return COMPUTE_OFFER.id(self.encode())

    def sign(self, key: keys.SigningKey) -> SignedOffer:
        if key.public != self.provider:
            raise ValueError("an offer is signed by its provider")
        return SignedOffer(self, keys.sign(key, COMPUTE_OFFER, self.id))

    @classmethod
    def decode(cls, data: bytes) -> Offer:
        return cls.from_wire(codec.decode(data, max_size=MAX_OFFER_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Offer:
        f = schema.array(value, "offer", 1, 12, "offer")
        addrs = schema.list_(f[8], "addrs", max_len=MAX_ADDRS)
        runtimes = schema.list_(f[9], "runtimes", min_len=1, max_len=MAX_RUNTIMES)
        return cls(
            f[2],
            f[3],
            f[4],
            f[5],
            f[6],
            f[7],
            tuple(addrs),
            tuple(Runtime.from_wire(r) for r in runtimes),
            f[10],
            f[11],
        )


@dataclass(frozen=True, slots=True)
class SignedOffer:
    """An offer and its provider's signature: what is gossiped and what the
    wallet RPC lists (``compute_offers``)."""

    offer: Offer
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.offer) is not Offer:
            raise Refused(_M, "signed offer: expected an Offer")
        schema.bytes_(self.signature, "signature", keys.SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return self.offer.id

    def to_wire(self) -> list[Any]:
        return ["signed-offer", 1, self.offer.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self) -> bytes:
        """The offer id if the provider's signature verifies; else
        ``bad_key`` (the provider is not a valid Ed25519 key) or
        ``bad_signature``."""
        id_ = self.offer.id
        keys.check_signature(self.offer.provider, COMPUTE_OFFER, id_, self.signature, "provider")
        return id_

    @classmethod
    def decode(cls, data: bytes) -> SignedOffer:
        """Strict decode: at most :data:`MAX_SIGNED_OFFER_BYTES`
        (``too_large``), canonical (``non_canonical``: a float, a map, a nil
        anywhere), exact shape and bounds (``malformed``,
        ``amount_out_of_range``). Not verified: :meth:`verify`."""
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_OFFER_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> SignedOffer:
        f = schema.array(value, "signed-offer", 1, 4, "signed offer")
        return cls(Offer.from_wire(f[2]), f[3])
