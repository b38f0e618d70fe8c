"""Account state: what the ledger knows about one account in one economy.

Why this exists: the rules in ``kinds.py`` and ``ledger.py`` read and write
account records, but where they live differs — a dict in tests and wallets,
an LMDB transaction in the node. So the rules see only the
:class:`StateView` protocol (``account(key) -> Account``) and *return* the
accounts they change; the caller stores them. :class:`MemoryState` is the
in-memory view.

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

from dataclasses import dataclass
from typing import Any, Protocol

from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["ZERO_ID", "Account", "MemoryState", "StateView"]

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


class StateView(Protocol):
    """Read access to one economy's accounts. Unknown accounts are empty."""

    def account(self, key: bytes) -> Account: ...


class MemoryState:
    """A dict-backed state (a ``ledger.ChainState``): accounts and the chain
    index of applied entries."""

    __slots__ = ("accounts", "chain")

    def __init__(self) -> None:
        self.accounts: dict[bytes, Account] = {}
        #: (author, seq) -> entry id of every applied entry.
        self.chain: dict[tuple[bytes, int], bytes] = {}

    def chain_id(self, author: bytes, seq: int) -> bytes | None:
        return self.chain.get((author, seq))

    def record(self, cert: Any) -> None:
        self.chain[(cert.entry.author, cert.entry.seq)] = cert.entry_id

    def account(self, key: bytes) -> Account:
        return self.accounts.get(key, EMPTY)

    def update(self, changes: dict[bytes, Account]) -> None:
        self.accounts.update(changes)

    def snapshot(self) -> dict[bytes, Account]:
        """A copy for comparison (accounts are immutable values)."""
        return dict(self.accounts)
