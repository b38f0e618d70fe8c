"""The rule context: what a kind's rule sees of one entry and the state.

Why this exists: every entry kind (``kinds.py`` for the foundation kinds,
``impact.py`` for sensors) is a :class:`Kind` whose ``check`` and
``effects`` work on a :class:`Context`. It lives in its own module so the
kinds can be split across modules and still share one registry
(``kinds.KINDS``) without an import cycle.

Theory of operation: a :class:`Context` reads through its own
:class:`~mycelia.protocol.state.Changes` (an entry that touches one account
or record twice sees its own writes) to the :class:`StateView`, and writes
only into ``changes``; the caller stores them after ``effects`` returns.
Records are written only as the entry author's own state
(:meth:`Context.put_own`) or as a fact (:meth:`Context.put_fact`), the two
kinds of record ``state.py`` describes, so the commutativity rule (DESIGN
§4) is visible in every write.

Clocks: a rule that depends on time (a channel's expiry) reads
:meth:`Context.now`, which only a *check* context has — ``ledger.check``
passes the checker's clock (or, called without one, the entry's own
``ts_ms``). An *apply* context has none and :meth:`Context.now` raises, so
``effects`` can never depend on when a node happens to apply a certificate.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mycelia.protocol import keys, schema
from mycelia.protocol.economy import Economy
from mycelia.protocol.reasons import NeedAdmission, Reason, Refused
from mycelia.protocol.state import (
    Account,
    Changes,
    StateView,
    counter_key,
    decode_count,
    encode_count,
    fact_key,
    own_key,
)

__all__ = ["Context", "Kind", "replace_account"]


class Context:
    """One entry being checked or applied: reads through ``changes``,
    writes into it."""

    __slots__ = ("_now_ms", "changes", "economy", "entry", "entry_id", "view")

    def __init__(
        self,
        economy: Economy,
        view: StateView,
        entry: Any,
        entry_id: bytes,
        *,
        now_ms: int | None = None,
    ) -> None:
        self.economy = economy
        self.view = view
        self.entry = entry
        self.entry_id = entry_id
        self.changes = Changes()
        self._now_ms = now_ms

    def now(self) -> int:
        """The checker's clock (ms since the Unix epoch): check contexts
        only (see the module docstring)."""
        if self._now_ms is None:
            raise RuntimeError("a rule read the clock outside check: effects must not")
        return self._now_ms

    def get(self, key: bytes) -> Account:
        acct = self.changes.accounts.get(key)
        return acct if acct is not None else self.view.account(key)

    def put(self, key: bytes, acct: Account) -> None:
        self.changes.accounts[key] = acct

    # -- records ----------------------------------------------------------------

    def _record(self, key: bytes) -> bytes | None:
        value = self.changes.records.get(key)
        return value if value is not None else self.view.get_record(key)

    def get_record(self, key: bytes) -> bytes | None:
        """The record ``key`` as this entry sees it (its own writes first):
        lets readers of a ``StateView`` (``channels.channel_state``) read
        through a context too."""
        return self._record(key)

    def fact(self, name: str, id_: bytes) -> bytes | None:
        """The fact ``name``/``id_`` (any author's), or None if not (yet) known."""
        return self._record(fact_key(name, id_))

    def put_fact(self, name: str, id_: bytes, value: bytes) -> None:
        """Write a fact. Facts are written once; a rule that could meet one
        already there (only under a faulty quorum) merges order-independently."""
        self.changes.records[fact_key(name, id_)] = value

    def own(self, name: str, id_: bytes) -> bytes | None:
        """The entry author's own state ``name``/``id_``, or None."""
        return self._record(own_key(self.entry.author, name, id_))

    def put_own(self, name: str, id_: bytes, value: bytes) -> None:
        """Write the entry author's own state ``name``/``id_``."""
        self.changes.records[own_key(self.entry.author, name, id_)] = value

    # -- counters (governance: electorate.py) -------------------------------------

    def count(self, name: str) -> int:
        """The counter ``name`` (0 if never counted)."""
        raw = self._record(counter_key(name))
        return 0 if raw is None else decode_count(raw)

    def add_count(self, name: str, delta: int) -> None:
        """Add ``delta`` (>= 0) to the counter ``name``: a grow-only counter,
        written by any author's chain (``state.py``)."""
        if delta < 0:
            raise ValueError("counters only grow")
        self.changes.records[counter_key(name)] = encode_count(self.count(name) + delta)

    # -- shared rule pieces -----------------------------------------------------

    def require_member(self, key: bytes, who: str) -> None:
        if self.economy.is_member(key, self.get(key)):
            return
        raise Refused(
            Reason.NOT_MEMBER,
            f"{who} {keys.did_encode(key)} is not a member (or its admission is not known here)",
            (NeedAdmission(key),),
        )

    def require_debit(self, key: bytes, amount: int) -> None:
        acct = self.get(key)
        limit = self.economy.credit_limit(acct)
        if acct.balance - amount < -limit:
            raise Refused(
                Reason.INSUFFICIENT_BALANCE,
                f"balance {acct.balance} - {amount} is below the limit -{limit}",
            )

    def require_credit(self, key: bytes, amount: int) -> None:
        if self.get(key).balance + amount > schema.INT64_MAX:
            raise Refused(Reason.BALANCE_OVERFLOW, "credit would pass 2**63 - 1")

    def require_kind(self, kind: str, entry_kind: str) -> None:
        if self.economy.kind != kind:
            raise Refused(
                Reason.NOT_ALLOWED, f"{entry_kind} is not allowed in a {self.economy.kind} economy"
            )

    def add_balance(self, key: bytes, delta: int) -> None:
        acct = self.get(key)
        self.put(key, replace_account(acct, balance=acct.balance + delta))


def replace_account(acct: Account, **changes: Any) -> Account:
    """``acct`` with ``changes``. dataclasses.replace is slow (it re-runs
    ``__init__`` through ``fields()``); this is the hot path of apply."""
    values: dict[str, Any] = {
        "seq": acct.seq,
        "head": acct.head,
        "ts_ms": acct.ts_ms,
        "balance": acct.balance,
        "admitted": acct.admitted,
        "limit_set": acct.limit_set,
        "minted": acct.minted,
        "burned": acct.burned,
    }
    values.update(changes)
    return Account(**values)


class Kind:
    """Base of every kind rule; see ``kinds.py``'s docstring.

    Body types validate their fields on construction (``malformed_body``,
    ``amount_out_of_range``), so a body built in code by a wallet is held to
    the same schema as one decoded from the wire; ``parse`` only checks the
    array's length."""

    name: ClassVar[str]

    @staticmethod
    def parse(raw: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def check(ctx: Context) -> None:
        raise NotImplementedError

    @staticmethod
    def effects(ctx: Context) -> None:
        raise NotImplementedError

    @staticmethod
    def accounts(entry: Any) -> tuple[bytes, ...]:
        """Every account ``effects`` changes, the author first (besides the
        author's own chain position, which every entry changes). Kinds that
        credit or set another account override this."""
        return (entry.author,)

    @staticmethod
    def resources(entry: Any) -> tuple[tuple[Any, ...], ...]:
        """Exclusive resources beyond ``(author, seq)``, as tuples of
        canonical values (``locks.py`` turns them into keys)."""
        return ()
