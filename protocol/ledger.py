"""The ledger state machine: ``check`` before a vote, ``apply`` after a
certificate.

Theory of operation
-------------------

Each economy's state is a set of accounts plus keyed records
(``state.py``). Every author has a chain of entries ``seq = 1, 2, …`` linked
by ``prev``. Two functions decide everything:

``check(economy, view, signed_entry, now_ms)`` — what a validator runs before
voting. In order, refusing with the first reason that applies:

1. the entry is for this economy (``wrong_economy``), the author key is a
   valid Ed25519 point (``bad_key``), the author's signature verifies
   (``bad_signature``);
2. chain position against the author's applied head: ``seq`` already used →
   ``seq_reused``; beyond the next → ``missing`` with a :class:`NeedChain`
   (the checker is behind; the submitter attaches the certificates between);
   next but ``prev`` is not the head → ``prev_mismatch``;
3. timestamps: earlier than the author's previous entry → ``ts_regression``;
   more than ``max_skew_ms`` ahead of ``now_ms`` (when given) → ``clock_skew``;
4. the kind's own rule (``kinds.py``).

It returns a :class:`Verdict`; it never changes state. The validator's lock
(``locks.py``) is a separate, later step so the rule stays pure.

``apply(economy, view, certificate)`` — what every node runs for a certified
entry: verify the certificate, require that it is the author's next entry,
and return the :class:`Changes` (accounts and records). Kind effects never refuse (the entry is
final); only chain position can stop an apply: a gap (``seq_gap`` — buffer
it), or an entry at an already-applied seq or with a ``prev`` that is not
the head (``conflict`` — two certified entries for one slot, impossible
unless more than a third of the weight is faulty).

:class:`Ledger` is an in-memory economy built from those two functions plus a
bounded gap buffer, as wallets, tests and benchmarks use it; the node uses
the same functions over its LMDB store.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from mycelia.protocol.certificates import Certificate
from mycelia.protocol.economy import Economy
from mycelia.protocol.entries import Entry, SignedEntry
from mycelia.protocol.kinds import KINDS, Context
from mycelia.protocol.reasons import OK, NeedChain, Reason, Refused, Verdict
from mycelia.protocol.state import Account, Changes, MemoryState, StateView

__all__ = [
    "MAX_SKEW_MS",
    "ChainHead",
    "ChainState",
    "GapBuffer",
    "Ledger",
    "Position",
    "apply",
    "check",
    "next_entry",
    "transition",
]

#: Default tolerance for an entry's timestamp ahead of the checker's clock.
MAX_SKEW_MS = 120_000


class ChainHead(Protocol):
    """An author's applied chain head: an :class:`Account`, or a wallet's
    view of one (the RPC's ``account_get``)."""

    @property
    def seq(self) -> int: ...

    @property
    def head(self) -> bytes: ...

    @property
    def ts_ms(self) -> int: ...


class Position(NamedTuple):
    """A chain head held outside the state: e.g. an author signing several
    entries in a row before any is certified (``Position.after``)."""

    seq: int
    head: bytes
    ts_ms: int

    @classmethod
    def after(cls, signed: SignedEntry) -> Position:
        return cls(signed.entry.seq, signed.id, signed.entry.ts_ms)


def next_entry(economy: bytes, author: bytes, head: ChainHead, body: Any, now_ms: int) -> Entry:
    """The author's next entry after ``head``, as ``check`` will want it:
    ``seq + 1``, ``prev`` the head's id, and ``ts_ms`` = ``now_ms`` but never
    before the head's (a clock behind the chain would be ``ts_regression``).
    The one place wallets, the RPC's ``entry_prepare`` and the node's own
    entries (attestations) take it from."""
    return Entry(economy, author, head.seq + 1, head.head, max(now_ms, head.ts_ms), body)


def check(
    economy: Economy,
    view: StateView,
    signed: SignedEntry,
    *,
    now_ms: int | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
) -> Verdict:
    """May a validator vote for ``signed`` given ``view``? Pure."""
    try:
        _check(economy, view, signed, now_ms, max_skew_ms)
    except Refused as refused:
        return refused.verdict
    return OK


def _check(
    economy: Economy, view: StateView, signed: SignedEntry, now_ms: int | None, max_skew_ms: int
) -> None:
    entry = signed.entry
    if entry.economy != economy.id:
        raise Refused(Reason.WRONG_ECONOMY, "entry is for another economy")
    entry_id = signed.verify()  # bad_key, then bad_signature
    author = view.account(entry.author)
    if entry.seq <= author.seq:
        raise Refused(Reason.SEQ_REUSED, f"seq {entry.seq} already used (head is {author.seq})")
    if entry.seq > author.seq + 1:
        raise Refused(
            Reason.MISSING,
            f"have the author's chain to seq {author.seq}, entry is at {entry.seq}",
            (NeedChain(entry.author, author.seq, entry.prev),),
        )
    if entry.prev != author.head:
        raise Refused(Reason.PREV_MISMATCH, "prev is not the id of the author's previous entry")
    if entry.ts_ms < author.ts_ms:
        raise Refused(Reason.TS_REGRESSION, f"ts {entry.ts_ms} < previous {author.ts_ms}")
    if now_ms is not None and entry.ts_ms > now_ms + max_skew_ms:
        raise Refused(
            Reason.CLOCK_SKEW,
            f"ts {entry.ts_ms} is ahead of {now_ms} by more than {max_skew_ms} ms",
        )
    KINDS[entry.kind].check(Context(economy, view, entry, entry_id))


def transition(economy: Economy, view: StateView, entry: Entry, entry_id: bytes) -> Changes:
    """What changes (accounts and records) when the certified ``entry`` is applied.
    ``entry`` must be its author's next entry: raises ``seq_gap`` if it is
    ahead, ``conflict`` if its slot is taken or its ``prev`` is not the head.
    Does not verify the certificate (see :func:`apply`)."""
    author = view.account(entry.author)
    if entry.seq > author.seq + 1:
        raise Refused(Reason.SEQ_GAP, f"author is at seq {author.seq}, entry at {entry.seq}")
    if entry.seq <= author.seq or entry.prev != author.head:
        raise Refused(Reason.CONFLICT, f"a different entry holds or precedes seq {entry.seq}")
    ctx = Context(economy, view, entry, entry_id)
    ctx.put(
        entry.author,
        Account(
            seq=entry.seq,
            head=entry_id,
            ts_ms=entry.ts_ms,
            balance=author.balance,
            admitted=author.admitted,
            limit_set=author.limit_set,
            minted=author.minted,
            burned=author.burned,
        ),
    )
    KINDS[entry.kind].effects(ctx)
    return ctx.changes


def apply(economy: Economy, view: StateView, cert: Certificate) -> Changes:
    """Verify ``cert`` for ``economy`` and return what it changes."""
    cert.verify(economy)
    return transition(economy, view, cert.entry, cert.entry_id)


class GapBuffer:
    """Verified certificates waiting for a gap in their author's chain,
    bounded in count. Outlives any one :class:`Ledger` over a transaction, so
    a node keeps one per economy across write batches."""

    def __init__(self, max_pending: int = 4096) -> None:
        self.max_pending = max_pending
        self._by_author: dict[bytes, dict[int, Certificate]] = {}
        self._count = 0
        #: Buffered certificates found to conflict when their gap filled
        #: (evidence of a fork; see ``Ledger.apply``), with the refusal.
        self.conflicts: list[tuple[Certificate, Refused]] = []

    def __len__(self) -> int:
        return self._count

    def add(self, cert: Certificate) -> None:
        """Hold ``cert``; ``conflict`` if another certificate holds its slot,
        ``buffer_full`` at the bound. A repeat is a no-op."""
        author, seq = cert.entry.author, cert.entry.seq
        slot = self._by_author.get(author)
        held = slot.get(seq) if slot else None
        if held is not None:
            if held.entry_id != cert.entry_id:
                raise Refused(Reason.CONFLICT, f"two certified entries at seq {seq}")
            return
        if self._count >= self.max_pending:
            raise Refused(Reason.BUFFER_FULL, f"{self._count} certificates pending")
        self._by_author.setdefault(author, {})[seq] = cert
        self._count += 1

    def take(self, author: bytes, seq: int) -> Certificate | None:
        """Remove and return the certificate waiting at ``(author, seq)``."""
        slot = self._by_author.get(author)
        if not slot:
            return None
        cert = slot.pop(seq, None)
        if cert is not None:
            self._count -= 1
        if not slot:
            del self._by_author[author]
        return cert

    def snapshot(self) -> list[Certificate]:
        """Everything held, for :meth:`restore` (a storage transaction that
        aborts must put back what it took)."""
        return [c for slot in self._by_author.values() for c in slot.values()]

    def restore(self, certs: list[Certificate]) -> None:
        """Reset to exactly ``certs`` (from :meth:`snapshot`)."""
        self._by_author = {}
        self._count = 0
        for cert in certs:
            self._by_author.setdefault(cert.entry.author, {})[cert.entry.seq] = cert
            self._count += 1

    def waiting(self) -> list[tuple[bytes, int]]:
        """``(author, lowest buffered seq)`` for each author with a gap: what
        sync should fetch."""
        return [(a, min(slot)) for a, slot in self._by_author.items()]


class ChainState(StateView, Protocol):
    """What :class:`Ledger` needs of its storage: accounts and records, plus
    the chain index of applied entries. ``MemoryState`` is one; the node's
    LMDB transaction view is another. ``update`` stores every account and
    record in ``changes`` (records are written, never deleted)."""

    def update(self, changes: Changes) -> None: ...

    def chain_id(self, author: bytes, seq: int) -> bytes | None: ...

    def record(self, cert: Certificate) -> None: ...


class Ledger:
    """One economy's applier: :func:`check` and :func:`transition` over a
    :class:`ChainState` (in memory by default), with a :class:`GapBuffer`
    for certificates that arrive ahead of their chain."""

    def __init__(
        self,
        economy: Economy,
        state: ChainState | None = None,
        buffer: GapBuffer | None = None,
        *,
        max_pending: int = 4096,
    ) -> None:
        self.economy = economy
        self.state: ChainState = state if state is not None else MemoryState()
        self.buffer = buffer if buffer is not None else GapBuffer(max_pending)

    def account(self, key: bytes) -> Account:
        return self.state.account(key)

    @property
    def chain(self) -> dict[tuple[bytes, int], bytes]:
        """``(author, seq) -> entry id`` of every applied entry (in-memory state only)."""
        return self.state.chain  # type: ignore[attr-defined, no-any-return]

    @property
    def pending_count(self) -> int:
        return len(self.buffer)

    @property
    def conflicts(self) -> list[tuple[Certificate, Refused]]:
        return self.buffer.conflicts

    def check(
        self, signed: SignedEntry, *, now_ms: int | None = None, max_skew_ms: int = MAX_SKEW_MS
    ) -> Verdict:
        return check(self.economy, self.state, signed, now_ms=now_ms, max_skew_ms=max_skew_ms)

    def apply(self, cert: Certificate, *, verified: bool = False) -> list[bytes]:
        """Apply ``cert`` and any buffered successors it unblocks; return the
        ids applied, in order. A certificate ahead of its chain is buffered
        (returns ``[]``); one already applied is a no-op. A buffered
        successor that turns out to conflict is dropped and recorded in
        :attr:`conflicts` rather than raised, since ``cert`` was applied. Raises
        :class:`Refused` for an invalid certificate (``buffer_full`` when the
        buffer is at its bound, ``conflict`` for a second certified entry in
        one slot); state is then unchanged."""
        if not verified:
            cert.verify(self.economy)
        entry = cert.entry
        author = entry.author
        head = self.state.account(author).seq
        if entry.seq <= head:
            if self.state.chain_id(author, entry.seq) == cert.entry_id:
                return []
            raise Refused(Reason.CONFLICT, f"seq {entry.seq} already holds another entry")
        if entry.seq > head + 1:
            self.buffer.add(cert)
            return []
        applied = [self._apply_next(cert)]
        while (nxt := self.buffer.take(author, entry.seq + len(applied))) is not None:
            try:
                applied.append(self._apply_next(nxt))
            except Refused as exc:
                # A buffered certificate whose prev is not the entry that
                # filled the gap: a fork by a faulty quorum. ``cert`` itself
                # was applied, so report the fork on the side instead of
                # raising (which would hide what was applied), and stop.
                self.buffer.conflicts.append((nxt, exc))
                break
        return applied

    def _apply_next(self, cert: Certificate) -> bytes:
        changes = transition(self.economy, self.state, cert.entry, cert.entry_id)
        self.state.update(changes)
        self.state.record(cert)
        return cert.entry_id
