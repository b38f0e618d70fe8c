"""Ledger entries: the signed unit of every author's chain.

Wire form (canonical, DESIGN §3–§4)::

    entry        = ["entry", 1, economy, author, seq, prev, ts_ms, kind, body]
    signed-entry = ["signed-entry", 1, entry, signature]

* ``economy``: the 32-byte economy (genesis) id — an entry signed for one
  economy never verifies in another.
* ``author``: the 32-byte Ed25519 key that signs the entry.
* ``seq``: 1, 2, 3 … per (economy, author); ``prev``: the id of the
  author's entry at ``seq - 1`` (32 zero bytes for ``seq == 1``).
* ``ts_ms``: the author's clock, milliseconds since the Unix epoch;
  non-decreasing along a chain.
* ``kind`` and ``body``: see ``kinds.py``.

``id = BLAKE2b-256("mycelia/entry/1\\0" + canonical entry bytes)``; the author
signs ``"mycelia/sig/entry/1\\0" + id``. An entry encodes to at most
:data:`MAX_ENTRY_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ENTRY, ID_SIZE
from mycelia.protocol.kinds import KINDS
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.state import ZERO_ID

__all__ = ["MAX_ENTRY_BYTES", "MAX_SEQ", "Entry", "SignedEntry"]

MAX_ENTRY_BYTES = 2048
MAX_SIGNED_ENTRY_BYTES = MAX_ENTRY_BYTES + 128
MAX_SEQ = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Entry:
    economy: bytes
    author: bytes
    seq: int
    prev: bytes
    ts_ms: int
    body: Any  # one of the body types in kinds.py; its class names the kind

    def __post_init__(self) -> None:
        # Checked on construction so entries built in code (wallets, tests)
        # obey the same schema as decoded ones.
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.author, "author", keys.PUBLIC_KEY_SIZE)
        schema.int_(self.seq, "seq", 1, MAX_SEQ)
        schema.bytes_(self.prev, "prev", ID_SIZE)
        if self.seq == 1 and self.prev != ZERO_ID:
            raise Refused(Reason.PREV_MISMATCH, "the first entry's prev is 32 zero bytes")
        schema.int_(self.ts_ms, "ts_ms", 0, schema.INT64_MAX)
        kind = getattr(self.body, "kind", None)
        if not isinstance(kind, str) or kind not in KINDS:
            raise Refused(Reason.UNKNOWN_KIND, f"unknown entry kind in {type(self.body).__name__}")

    @property
    def kind(self) -> str:
        kind: str = self.body.kind  # every body type's ClassVar, checked on construction
        return kind

    def to_wire(self) -> list[Any]:
        return [
            "entry",
            1,
            self.economy,
            self.author,
            self.seq,
            self.prev,
            self.ts_ms,
            self.body.kind,
            self.body.to_wire(),
        ]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @property
    def id(self) -> bytes:
        return ENTRY.id(self.encode())

    def sign(self, key: keys.SigningKey) -> SignedEntry:
        if key.public != self.author:
            raise ValueError("an entry is signed by its author")
        return SignedEntry(self, keys.sign(key, ENTRY, self.id))

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        return cls.from_wire(codec.decode(data, max_size=MAX_ENTRY_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Entry:
        f = schema.array(value, "entry", 1, 9, "entry")
        kind = schema.str_(f[7], "kind", max_bytes=32)
        rule = KINDS.get(kind)
        if rule is None:
            raise Refused(Reason.UNKNOWN_KIND, f"unknown entry kind {kind!r}")
        return cls(f[2], f[3], f[4], f[5], f[6], rule.parse(f[8]))


@dataclass(frozen=True, slots=True)
class SignedEntry:
    entry: Entry
    signature: bytes

    def __post_init__(self) -> None:
        schema.bytes_(self.signature, "signature", keys.SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return self.entry.id

    def to_wire(self) -> list[Any]:
        return ["signed-entry", 1, self.entry.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    def verify(self) -> bytes:
        """Return the entry id if the author's signature verifies, else
        raise ``Refused``: ``bad_key`` for an author key that is not a valid
        Ed25519 key (the same reason ``ledger.check`` gives, so a submission
        is refused alike at the node and at the validators), else
        ``bad_signature``."""
        id_ = self.entry.id
        keys.check_signature(self.entry.author, ENTRY, id_, self.signature, "author")
        return id_

    @classmethod
    def decode(cls, data: bytes) -> SignedEntry:
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_ENTRY_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> SignedEntry:
        f = schema.array(value, "signed-entry", 1, 4, "signed entry")
        return cls(Entry.from_wire(f[2]), f[3])
