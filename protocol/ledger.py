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
2. a fork: an entry at or past a slot of its author known to hold two
   certificates → ``forked`` (``forks.py``; the caller passes the lowest
   forked seq it holds evidence for);
3. chain position against the author's applied head: ``seq`` already used →
   ``seq_reused``; beyond the next → ``missing`` with a :class:`NeedChain`
   (the checker is behind; the submitter attaches the certificates between);
   next but ``prev`` is not the head → ``prev_mismatch``;
4. timestamps: earlier than the author's previous entry → ``ts_regression``;
   more than ``max_skew_ms`` ahead of ``now_ms`` (when given) → ``clock_skew``;
5. the kind's own rule (``kinds.py``). A rule that reads a clock (a channel's
   expiry, ``channel_kinds.py``) gets ``now_ms``; a check called without one
   (a wallet's or a test's) lets the entry's own ``ts_ms`` stand in for it.
   Validators always pass their clock. ``apply`` has no clock at all.

It returns a :class:`Verdict`; it never changes state. The validator's lock
(``locks.py``) is a separate, later step so the rule stays pure.

``apply(economy, view, certificate)`` — what every node runs for a certified
entry: verify the certificate, require that it is the author's next entry,
and return the :class:`Changes` (accounts and records). Kind effects never refuse (the entry is
final); only chain position can stop an apply: a gap (``seq_gap`` — buffer
it), or an entry at an already-applied seq or with a ``prev`` that is not
the head (``conflict`` — two certified entries for one slot, impossible
unless more than a third of the weight is faulty).

Forks: :class:`Ledger` is also where a fork is *detected*, because every
path a certificate reaches a node by (gossip, sync, the submitter's own
certificates, what a submitter attaches to a vote request, evidence served
by a peer) ends in :meth:`Ledger.apply`. A second certificate for a slot
that holds one — applied, or waiting in the gap buffer — is refused with
``conflict`` as before, and the pair is recorded as
:class:`~mycelia.protocol.forks.ForkEvidence` in the state (``record_fork``,
in the same transaction as everything else) and listed in
:attr:`Ledger.forks`. From then on the rule of ``forks.py`` holds: nothing
of that author at or past the forked seq is applied (``forked``); what was
applied stays, what waited in the gap buffer is dropped. A certificate that
does not link to the head (its ``prev`` names an entry this node does not
hold at that seq) is a fork the node cannot prove yet: its ``prev`` is
listed in :attr:`Ledger.suspects`, for the node to fetch (that certificate
then conflicts with the one held, and is evidence).

Epochs: a certificate is verified against the committee of its own epoch
and applied under that epoch's policy (``economy.at``). When a certified
``gov.enact`` (or the proposal it enacted, whichever comes last) completes
an epoch, :class:`Ledger` advances its :attr:`Ledger.economy` to it
(``epochs.follow``); a certificate of an epoch not reached yet is refused
``wrong_epoch`` and is applied once it is.

:class:`Ledger` is an in-memory economy built from those two functions plus a
bounded gap buffer, as wallets, tests and benchmarks use it; the node uses
the same functions over its LMDB store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from mycelia.protocol.certificates import Certificate
from mycelia.protocol.economy import Economy
from mycelia.protocol.entries import Entry, SignedEntry
from mycelia.protocol.epochs import follow
from mycelia.protocol.forks import ForkEvidence, forked, refuse_forked
from mycelia.protocol.kinds import KINDS, Context
from mycelia.protocol.reasons import OK, NeedChain, Reason, Refused, Verdict
from mycelia.protocol.state import ZERO_ID, Account, Changes, MemoryState, StateView

__all__ = [
    "MAX_SKEW_MS",
    "ChainHead",
    "ChainState",
    "GapBuffer",
    "Ledger",
    "Position",
    "apply",
    "check",
    "entry_for",
    "next_entry",
    "transition",
]

#: Default tolerance for an entry's timestamp ahead of the checker's clock.
MAX_SKEW_MS = 120_000
#: Kinds after whose apply a :class:`Ledger` looks for a new epoch.
EPOCH_KINDS = frozenset({"gov.enact", "gov.propose"})


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


def entry_for(
    economy: bytes,
    author: bytes,
    head: ChainHead,
    body: Any,
    now_ms: int,
    *,
    seq: int | None = None,
    prev: bytes | None = None,
    ts_ms: int | None = None,
    id_at: Callable[[int], bytes | None],
) -> Entry:
    """An entry of ``author`` with ``seq``/``prev``/``ts_ms`` given or
    defaulted (``entry_prepare``): without overrides :func:`next_entry`;
    ``seq`` defaults to the next slot, ``prev`` to the id at ``seq - 1``
    (``id_at(seq)`` looks up an applied entry's id; ``missing`` if unknown),
    ``ts_ms`` to ``now_ms``, never before the head's when ``seq`` is next."""
    if seq is None and prev is None and ts_ms is None:
        return next_entry(economy, author, head, body, now_ms)
    if seq is None:
        seq = head.seq + 1
    if prev is None:
        if seq == head.seq + 1:
            prev = head.head
        elif seq == 1:
            prev = ZERO_ID
        else:
            found = id_at(seq - 1)
            if found is None:
                raise Refused(
                    Reason.MISSING, f"this node does not hold the author's entry {seq - 1}"
                )
            prev = found
    if ts_ms is None:
        ts_ms = max(now_ms, head.ts_ms) if seq == head.seq + 1 else now_ms
    return Entry(economy, author, seq, prev, ts_ms, body)


def check(
    economy: Economy,
    view: StateView,
    signed: SignedEntry,
    *,
    now_ms: int | None = None,
    max_skew_ms: int = MAX_SKEW_MS,
    fork_seq: int | None = None,
) -> Verdict:
    """May a validator vote for ``signed`` given ``view``? Pure.
    ``fork_seq``: the lowest seq of the author's chain the caller holds fork
    evidence for (None: none) — a vote there or past it is refused, since
    no node would apply what it certifies."""
    try:
        _check(economy, view, signed, now_ms, max_skew_ms, fork_seq)
    except Refused as refused:
        return refused.verdict
    return OK


def _check(
    economy: Economy,
    view: StateView,
    signed: SignedEntry,
    now_ms: int | None,
    max_skew_ms: int,
    fork_seq: int | None,
) -> None:
    entry = signed.entry
    if entry.economy != economy.id:
        raise Refused(Reason.WRONG_ECONOMY, "entry is for another economy")
    entry_id = signed.verify()  # bad_key, then bad_signature
    if fork_seq is not None and forked(fork_seq, entry.seq):
        raise refuse_forked(fork_seq, entry.seq)
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
    clock = entry.ts_ms if now_ms is None else now_ms
    KINDS[entry.kind].check(Context(economy, view, entry, entry_id, now_ms=clock))


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
    """Verify ``cert`` for ``economy`` and return what it changes, under
    the policy of the certificate's epoch (``economy.at``)."""
    cert.verify(economy)
    return transition(economy.at(cert.epoch), view, cert.entry, cert.entry_id)


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

    def held(self, author: bytes, seq: int) -> Certificate | None:
        """The certificate waiting at ``(author, seq)``, left in place."""
        slot = self._by_author.get(author)
        return slot.get(seq) if slot else None

    def discard(self, author: bytes, from_seq: int) -> int:
        """Drop every certificate of ``author`` at ``from_seq`` or later (a
        fork there: none of them will ever be applied); returns how many."""
        slot = self._by_author.get(author)
        if not slot:
            return 0
        gone = [s for s in slot if s >= from_seq]
        for s in gone:
            del slot[s]
        self._count -= len(gone)
        if not slot:
            del self._by_author[author]
        return len(gone)

    def waiting(self) -> list[tuple[bytes, int]]:
        """``(author, lowest buffered seq)`` for each author with a gap: what
        sync should fetch."""
        return [(a, min(slot)) for a, slot in self._by_author.items()]


class ChainState(StateView, Protocol):
    """What :class:`Ledger` needs of its storage: accounts and records, plus
    the chain index of applied entries, their certificates and the fork
    evidence held. ``MemoryState`` is one; the node's LMDB transaction view
    is another. ``update`` stores every account and record in ``changes``
    (records are written, never deleted)."""

    def update(self, changes: Changes) -> None: ...

    def chain_id(self, author: bytes, seq: int) -> bytes | None: ...

    def record(self, cert: Certificate) -> None: ...

    def certificate(self, entry_id: bytes) -> Certificate | None:
        """An applied certificate by entry id (the held side of a fork)."""
        ...

    def fork_seq(self, author: bytes) -> int | None:
        """The lowest seq of ``author``'s chain with fork evidence, or None."""
        ...

    def record_fork(self, evidence: ForkEvidence) -> bool:
        """Keep ``evidence`` (verified); False, keeping the first, if its
        slot already has evidence."""
        ...


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
        self.state: ChainState = state if state is not None else MemoryState()
        #: The economy in force: advances as enactments are applied.
        self.economy = follow(economy, self.state)
        self.buffer = buffer if buffer is not None else GapBuffer(max_pending)
        #: Fork evidence this ledger recorded (a slot's first evidence only),
        #: in order: what the node reports.
        self.forks: list[ForkEvidence] = []
        #: Ids of certified entries a certificate built on (its ``prev``) that
        #: differ from the ones applied here: fetch them to prove the fork.
        self.suspects: list[bytes] = []

    def account(self, key: bytes) -> Account:
        return self.state.account(key)

    @property
    def chain(self) -> dict[tuple[bytes, int], bytes]:
        """``(author, seq) -> entry id`` of every applied entry (in-memory state only)."""
        state = self.state
        if not isinstance(state, MemoryState):
            raise AttributeError(f"{type(state).__name__} keeps no in-memory chain index")
        return state.chain

    @property
    def pending_count(self) -> int:
        return len(self.buffer)

    @property
    def conflicts(self) -> list[tuple[Certificate, Refused]]:
        return self.buffer.conflicts

    def check(
        self, signed: SignedEntry, *, now_ms: int | None = None, max_skew_ms: int = MAX_SKEW_MS
    ) -> Verdict:
        return check(
            self.economy,
            self.state,
            signed,
            now_ms=now_ms,
            max_skew_ms=max_skew_ms,
            fork_seq=self.state.fork_seq(signed.entry.author),
        )

    def apply(self, cert: Certificate, *, verified: bool = False) -> list[bytes]:
        """Apply ``cert`` and any buffered successors it unblocks; return the
        ids applied, in order. A certificate ahead of its chain is buffered
        (returns ``[]``); one already applied is a no-op. A buffered
        successor that turns out to conflict is dropped and recorded in
        :attr:`conflicts` rather than raised, since ``cert`` was applied. Raises
        :class:`Refused` for an invalid certificate (``buffer_full`` when the
        buffer is at its bound, ``conflict`` for a second certified entry in
        one slot — recorded as fork evidence —, ``forked`` at or past a
        known fork of the author); the ledger's state, apart from the
        evidence and the gap buffer it empties past a fork, is then
        unchanged."""
        if not verified:
            cert.verify(self.economy)
        entry = cert.entry
        author = entry.author
        fork_seq = self.state.fork_seq(author)
        if fork_seq is not None and forked(fork_seq, entry.seq):
            if self.state.chain_id(author, entry.seq) == cert.entry_id:
                return []  # applied before the fork was known: it stays
            raise refuse_forked(fork_seq, entry.seq)
        head = self.state.account(author)
        if entry.seq <= head.seq:
            held = self.state.chain_id(author, entry.seq)
            if held == cert.entry_id:
                return []
            self._fork(None if held is None else self.state.certificate(held), cert)
            raise Refused(Reason.CONFLICT, f"seq {entry.seq} already holds another entry")
        if entry.seq > head.seq + 1:
            try:
                self.buffer.add(cert)
            except Refused as exc:
                if exc.reason is Reason.CONFLICT:
                    self._fork(self.buffer.held(author, entry.seq), cert)
                raise
            return []
        if entry.prev != head.head:
            self._suspect(entry)
        applied = [self._apply_next(cert)]
        while not forked(fork_seq, seq := entry.seq + len(applied)):
            nxt = self.buffer.take(author, seq)
            if nxt is None:
                break
            try:
                applied.append(self._apply_next(nxt))
            except Refused as exc:
                # A buffered certificate whose prev is not the entry that
                # filled the gap: a fork by a faulty quorum. ``cert`` itself
                # was applied, so report the fork on the side instead of
                # raising (which would hide what was applied), and stop.
                self.buffer.conflicts.append((nxt, exc))
                self._suspect(nxt.entry)
                break
        return applied

    def _fork(self, held: Certificate | None, cert: Certificate) -> None:
        """``cert`` (verified) conflicts with ``held`` in its slot: keep the
        evidence (the first for the slot), and drop what waits past it."""
        if held is None:
            return
        evidence = ForkEvidence.of(held, cert)
        if self.state.record_fork(evidence):
            self.forks.append(evidence)
        self.buffer.discard(evidence.author, evidence.seq)

    def _suspect(self, entry: Entry) -> None:
        """``entry`` is certified but builds on another entry than the one
        applied at ``seq - 1``: that one (``prev``) is the other branch."""
        if entry.seq > 1 and entry.prev not in self.suspects:
            self.suspects.append(entry.prev)

    def _apply_next(self, cert: Certificate) -> bytes:
        economy = self.economy.at(cert.epoch)
        changes = transition(economy, self.state, cert.entry, cert.entry_id)
        self.state.update(changes)
        self.state.record(cert)
        if cert.entry.kind in EPOCH_KINDS:
            # an enactment (or the proposal it waited for) may start epochs
            self.economy = follow(self.economy, self.state)
        return cert.entry_id
