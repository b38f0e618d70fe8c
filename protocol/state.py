"""Ledger state: accounts, plus keyed records, in one economy.

Why this exists: the rules in ``kinds.py`` and ``ledger.py`` read and write
state, but where it lives differs — a dict in tests and wallets, an LMDB
transaction in the node. So the rules see only the :class:`StateView`
protocol (``account(key) -> Account``, ``get_record(key) -> bytes | None``)
and *return* what they change as :class:`Changes`; the caller stores them.
:class:`MemoryState` is the in-memory view.

Records are what does not fit an account (sensors: device registrations,
attestations, cursors): opaque keys, values in canonical msgpack, so a store
keeps them without knowing what they mean. Their keys say who may change
them (DESIGN §4, the commutativity rule):

* ``fact_key(name, id)`` — a **fact**: written once by one author's chain
  and never changed after (a device's registration, a certified
  attestation). Other authors' rules may read facts: once true, true
  forever, so the order certificates are applied in cannot change what a
  rule sees, only whether it sees it yet — and a validator that does not
  see it yet answers ``missing`` with what it needs.
* ``own_key(author, name, id)`` — **own state** of ``author``: read and
  written only by ``author``'s own chain, which every node applies in seq
  order (a host's last attested counter per device, an owner's claim cursor
  per device). No other chain reads it.

* ``counter_key(name)`` — a **counter**: a grow-only count that any
  author's chain may add to (the number of admitted members, which a
  governance proposal's electorate is checked against, ``electorate.py``).
  Additions commute, so every order of certificates gives the same count;
  a rule reads one only as a lower bound of the truth (a stale view has
  counted less), never to decide what an ``effects`` writes.

``kinds.Context`` offers only those ways to write (and adds to a counter
only), so a rule cannot write another author's own state by accident.

Every field of :class:`Account` is combined in a way that does not depend on
the order certificates from different authors are applied (DESIGN §4, the
commutativity rule):

* ``seq``, ``head``, ``ts_ms``, ``minted``, ``burned``: written only by the
  account's own chain, which is applied in seq order.
* ``balance``: debited only by the own chain, credited by anyone; additions
  commute.
* ``admitted``: the smallest id among the ``member.admit`` entries for the
  account (monotonic: once admitted, admitted forever; the minimum makes the
  recorded id independent of order).
* ``limit_set``: a last-writer-wins register ``(ts_ms, entry_id, limit)``
  ordered by ``(ts_ms, entry_id)``, so two stewards setting a limit
  concurrently give the same result on every node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "ZERO_ID",
    "Account",
    "Changes",
    "MemoryState",
    "Snapshot",
    "StateView",
    "counter_key",
    "decode_count",
    "encode_count",
    "fact_key",
    "own_key",
]

#: ``prev`` of an author's first entry, and ``head`` of an empty chain.
ZERO_ID = bytes(ID_SIZE)


@dataclass(frozen=True, slots=True)
class Account:
    seq: int = 0
    head: bytes = ZERO_ID
    ts_ms: int = 0
    balance: int = 0
    admitted: bytes = b""
    limit_set: tuple[int, bytes, int] | None = None
    minted: int = 0
    burned: int = 0

    def limit(self, default: int) -> int:
        """The credit limit in force: a balance may go down to ``-limit``."""
        return default if self.limit_set is None else self.limit_set[2]

    def to_wire(self) -> list[Any]:
        ls = [] if self.limit_set is None else list(self.limit_set)
        return [
            "account",
            1,
            self.seq,
            self.head,
            self.ts_ms,
            self.balance,
            self.admitted,
            ls,
            self.minted,
            self.burned,
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Account:
        f = schema.array(codec.decode(data, max_size=512), "account", 1, 10, "account")
        ls = schema.list_(f[7], "limit_set", max_len=3)
        limit_set = None
        if ls:
            if len(ls) != 3:
                raise Refused(Reason.MALFORMED, "limit_set: expected 3 fields")
            limit_set = (
                schema.int_(ls[0], "limit ts"),
                schema.bytes_(ls[1], "limit id", ID_SIZE),
                schema.int_(ls[2], "limit"),
            )
        return cls(
            seq=schema.int_(f[2], "seq", 0),
            head=schema.bytes_(f[3], "head", ID_SIZE),
            ts_ms=schema.int_(f[4], "ts_ms"),
            balance=schema.int_(f[5], "balance"),
            admitted=schema.bytes_(f[6], "admitted", max_size=ID_SIZE),
            limit_set=limit_set,
            minted=schema.int_(f[8], "minted", 0),
            burned=schema.int_(f[9], "burned", 0),
        )


EMPTY = Account()


def fact_key(name: str, id_: bytes) -> bytes:
    """The record key of a fact (see the module docstring), e.g.
    ``fact_key("device", device_id)``."""
    return b"fact/" + name.encode() + b"/" + id_


def own_key(author: bytes, name: str, id_: bytes) -> bytes:
    """The record key of ``author``'s own state ``name`` for ``id_``."""
    return b"own/" + author + b"/" + name.encode() + b"/" + id_


def counter_key(name: str) -> bytes:
    """The record key of the counter ``name`` (see the module docstring)."""
    return b"count/" + name.encode()


def encode_count(value: int) -> bytes:
    return codec.encode_trusted(value)


def decode_count(raw: bytes) -> int:
    return schema.int_(codec.decode(raw, max_size=16), "count", 0, schema.UINT64_MAX)


@dataclass(slots=True)
class Changes:
    """What one applied entry changes: accounts by key and records by key
    (values canonical msgpack). Built by the rules, stored by the caller."""

    accounts: dict[bytes, Account] = field(default_factory=dict)
    records: dict[bytes, bytes] = field(default_factory=dict)


class StateView(Protocol):
    """Read access to one economy's state. Unknown accounts are empty,
    unknown records ``None``."""

    def account(self, key: bytes) -> Account: ...

    def get_record(self, key: bytes) -> bytes | None: ...


class Snapshot(NamedTuple):
    """A copy of a :class:`MemoryState`'s state, for comparison."""

    accounts: dict[bytes, Account]
    records: dict[bytes, bytes]


class MemoryState:
    """A dict-backed state (a ``ledger.ChainState``): accounts, records, the
    chain index of applied entries with their certificates, and fork
    evidence."""

    __slots__ = ("accounts", "certs", "chain", "forks", "records")

    def __init__(self) -> None:
        self.accounts: dict[bytes, Account] = {}
        self.records: dict[bytes, bytes] = {}
        #: (author, seq) -> entry id of every applied entry.
        self.chain: dict[tuple[bytes, int], bytes] = {}
        #: entry id -> the applied certificate.
        self.certs: dict[bytes, Any] = {}
        #: (author, seq) -> the fork evidence kept for that slot.
        self.forks: dict[tuple[bytes, int], Any] = {}

    def chain_id(self, author: bytes, seq: int) -> bytes | None:
        return self.chain.get((author, seq))

    def record(self, cert: Any) -> None:
        self.chain[(cert.entry.author, cert.entry.seq)] = cert.entry_id
        self.certs[cert.entry_id] = cert

    def certificate(self, entry_id: bytes) -> Any:
        return self.certs.get(entry_id)

    def fork_seq(self, author: bytes) -> int | None:
        return min((seq for a, seq in self.forks if a == author), default=None)

    def record_fork(self, evidence: Any) -> bool:
        slot = (evidence.author, evidence.seq)
        if slot in self.forks:
            return False
        self.forks[slot] = evidence
        return True

    def account(self, key: bytes) -> Account:
        return self.accounts.get(key, EMPTY)

    def get_record(self, key: bytes) -> bytes | None:
        return self.records.get(key)

    def update(self, changes: Changes) -> None:
        self.accounts.update(changes.accounts)
        self.records.update(changes.records)

    def snapshot(self) -> Snapshot:
        """A copy for comparison (accounts and record values are immutable)."""
        return Snapshot(dict(self.accounts), dict(self.records))
