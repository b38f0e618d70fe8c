"""Domain separation for every id and every signature.

Why this exists: a hash or a signature made for one purpose must never be
accepted for another (a vote replayed as a genesis signature, an entry id
confused with a reading id). So each signed structure has a :class:`Domain`,
and ids and signature messages are built only here (DESIGN §3):

    id      = BLAKE2b-256(b"mycelia/<what>/<version>\\0" + canonical_bytes)
    message = b"mycelia/sig/<what>/<version>\\0" + id

A signature is always over ``message``: 32 bytes plus a short prefix, so a
microcontroller signs a fixed small buffer whatever the structure's size.
Adding a domain is fine; changing one's prefix breaks every signature made
under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b

__all__ = [
    "COMPUTE_JOB",
    "COMPUTE_JOB_INPUT",
    "COMPUTE_OFFER",
    "COMPUTE_USAGE",
    "DEVICE",
    "DEVICE_ID",
    "ENTRY",
    "FORK",
    "GENESIS",
    "ID_SIZE",
    "LOCK_SNAPSHOT",
    "MERKLE",
    "READING",
    "RELEASE",
    "RESOURCE",
    "SEAL",
    "VOTE",
    "VOUCHER",
    "Domain",
]

ID_SIZE = 32


@dataclass(frozen=True, slots=True)
class Domain:
    what: str
    version: int
    id_prefix: bytes = field(init=False, repr=False)
    sig_prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_prefix", f"mycelia/{self.what}/{self.version}\0".encode())
        object.__setattr__(self, "sig_prefix", f"mycelia/sig/{self.what}/{self.version}\0".encode())

    def id(self, canonical: bytes) -> bytes:
        """The 32-byte id of ``canonical`` bytes in this domain."""
        return blake2b(self.id_prefix + canonical, digest_size=ID_SIZE).digest()

    def message(self, id_: bytes) -> bytes:
        """The bytes a signature over ``id_`` in this domain covers."""
        if len(id_) != ID_SIZE:
            raise ValueError("an id is 32 bytes")
        return self.sig_prefix + id_


#: A ledger entry ``[tag, v, economy, author, seq, prev, ts_ms, kind, body]``.
ENTRY = Domain("entry", 1)
#: A validator's vote over ``[tag, v, economy, epoch, entry_id]``.
VOTE = Domain("vote", 1)
#: An economy's genesis document; its id is the economy id.
GENESIS = Domain("genesis", 1)
#: A lock-table resource key (hashed so keys are fixed-size).
RESOURCE = Domain("resource", 1)
#: A sensor reading ``["reading", 1, economy, device, counter, ts_ms, metric,
#: value, exponent]``; the device signs its id (``readings.py``).
READING = Domain("reading", 1)
#: A device registration statement; the device key's proof of possession is a
#: signature over its id (``sensor_bodies.py``).
DEVICE = Domain("device", 1)
#: Device ids: the id of ``key_type || 0x00 || public_key`` (raw bytes, not
#: msgpack, so firmware needs no encoder to name itself).
DEVICE_ID = Domain("device-id", 1)
#: Merkle tree hashes over attested batches (``merkle.py``); the first byte
#: after the prefix separates leaves, nodes and the root.
MERKLE = Domain("merkle", 1)
#: Fork evidence ``["fork", 1, cert, cert]`` (``forks.py``): its id names a
#: pair of conflicting certificates.
FORK = Domain("fork", 1)

# -- compute payment channels (channels.py, docs/compute.md) ----------------------------
#: A consumer's voucher ``["voucher", 1, economy, channel, cumulative]``: the
#: consumer signs its id, promising ``cumulative`` to the channel's provider.
VOUCHER = Domain("voucher", 1)
#: A provider's release ``["release", 1, economy, channel, final]``: the
#: provider signs its id, letting the consumer refund at once, paying ``final``.
RELEASE = Domain("release", 1)

# -- compute: offers, jobs, usage reports (protocol/offers.py, usage.py,
# compute_frames.py; docs/compute-protocol.md) ------------------------------
#: A provider's offer ``["offer", 1, economy, provider, ...]``: its id names
#: the offer (a JOB names the offer it accepts), the provider signs the id.
COMPUTE_OFFER = Domain("offer", 1)
#: A provider's usage report ``["usage", 1, economy, provider, offer, job, ...]``.
COMPUTE_USAGE = Domain("usage", 1)
#: A job request ``["job", 1, economy, offer, channel, ...]``: not signed (the
#: channel pays), its id is what usage reports and results name.
COMPUTE_JOB = Domain("job", 1)
#: The content hash of a job input passed by hash (raw bytes, not msgpack).
COMPUTE_JOB_INPUT = Domain("job-input", 1)
# -- governance and epochs ------------------------------------------------------------
#: A validator's seal of a closed proposal ``["seal", 1, economy, epoch,
#: proposal, ballot ids]`` (``seals.py``): the ballots it voted for.
SEAL = Domain("seal", 1)
#: One part of a validator's lock snapshot at the end of an epoch
#: (``handover.py``): what new validators seed their locks from.
LOCK_SNAPSHOT = Domain("lock-snapshot", 1)
