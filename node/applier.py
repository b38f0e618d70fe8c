"""The one writer: every certificate the node accepts goes through here.

Why this exists: gossip, sync, the submitter and the validator (attached
predecessors) all produce certificates. LMDB has one writer, and one write
transaction per certificate would cost one fsync each. So producers hand
certificates to :meth:`Applier.apply`, and a single task drains whatever has
queued up into one transaction per economy (``Store.apply_sync``, run in a
worker thread). Under load, batches grow by themselves; idle, a lone
certificate is written at once.

Verification happens before the queue, in worker threads
(:func:`verify_many` splits a batch across the cores; libsodium releases the
GIL), so the writer only runs the protocol's ``transition``. A handful of
signatures is checked on the event loop instead (:func:`signature_work`): a
hop to a worker thread and back costs more than a few verifications
(measured with ``py-spy --gil`` in ``bench/devnet.py``: ``start_thread_soon``
was the gateway's largest single cost when each submission hopped alone).

After each transaction the writer calls the listeners with the ids it
applied, on the trio thread, so services can report status or publish;
result listeners (:meth:`Applier.on_result`) get the whole
:class:`~mycelia.node.store.ApplyResult` — fork evidence the ledger
recorded in it, suspected forks — which is how ``forks.py`` hears of every
fork, whichever path brought the certificate. A certificate that arrives
ahead of its chain is *parked*: durable in the store, not applied yet
(``store.py``); the gap buffers are reloaded from the store at start, so
nothing parked is lost by a restart.

Epochs: :attr:`Applier.economies` holds each economy *in force* — every
epoch its applied enactments reached (``store.economy_in_force`` at start,
each batch's ``ApplyResult.economy`` after), so whoever verifies against
it (gossip, sync, the submitter, the validator) checks a certificate of
any epoch against that epoch's committee. A certificate of an epoch the
node has not reached is refused ``wrong_epoch``; one that arrived in the
same call as the enactment that reaches its epoch is verified again once
that batch is applied (:meth:`Applier.apply`), so sync and gossip batches
that straddle a boundary apply whole.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio

from mycelia.node.store import ApplyResult, Store
from mycelia.protocol import Certificate, Economy, Reason, Refused, SignedGenesis
from mycelia.protocol.ledger import GapBuffer

__all__ = ["Applier", "ready_group", "signature_work", "verify_many"]

log = logging.getLogger("mycelia.applier")
_CORES = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
#: Below this many certificates a batch is verified in one thread.
_SPLIT_AT = 16
#: Up to this many signatures (~60 µs each) are checked on the event loop.
INLINE_SIGNATURES = 4

T = TypeVar("T")


def ready_group(
    first: T,
    receiver: trio.MemoryReceiveChannel[T],
    weight: Callable[[T], int] = lambda _: 1,
    limit: int | None = None,
) -> list[T]:
    """Group commit: ``first`` plus whatever is already queued behind it (up
    to ``limit`` by ``weight``), without waiting — the group one write
    transaction (one fsync) serves. Idle, a lone item commits at once;
    under load, groups grow by themselves."""
    group = [first]
    total = weight(first)
    while limit is None or total < limit:
        try:
            item = receiver.receive_nowait()
        except trio.WouldBlock:
            break
        group.append(item)
        total += weight(item)
    return group


async def signature_work(fn: Callable[[], T], signatures: int) -> T:
    """Run ``fn``, which checks about ``signatures`` signatures: inline when
    that is cheaper than a thread hop, else in a worker thread."""
    if signatures <= INLINE_SIGNATURES:
        return fn()
    return await trio.to_thread.run_sync(fn)


def _verify_chunk(
    economy: Economy, certs: list[Certificate]
) -> tuple[list[Certificate], list[tuple[Certificate, Refused]]]:
    ok, bad = [], []
    for cert in certs:
        try:
            cert.verify(economy)
        except Refused as exc:
            bad.append((cert, exc))
        else:
            ok.append(cert)
    return ok, bad


async def verify_many(
    economy: Economy, certs: list[Certificate]
) -> tuple[list[Certificate], list[tuple[Certificate, Refused]]]:
    """Verify certificates off the event loop, across cores; returns (valid,
    refused-with-reason) preserving order within each."""
    if not certs:
        return [], []
    n = min(_CORES, max(1, len(certs) // _SPLIT_AT))
    if n == 1:
        return await signature_work(partial(_verify_chunk, economy, certs), 4 * len(certs))
    size = -(-len(certs) // n)
    chunks = [certs[i : i + size] for i in range(0, len(certs), size)]
    results: list[tuple[list[Certificate], list[tuple[Certificate, Refused]]]] = [
        ([], []) for _ in chunks
    ]

    async def one(i: int) -> None:
        results[i] = await trio.to_thread.run_sync(_verify_chunk, economy, chunks[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(chunks)):
            nursery.start_soon(one, i)
    ok = [c for r in results for c in r[0]]
    bad = [b for r in results for b in r[1]]
    return ok, bad


@dataclass
class _Request:
    economy: bytes
    certs: list[Certificate]
    done: trio.Event = field(default_factory=trio.Event)
    result: ApplyResult | None = None
    error: BaseException | None = None


#: ``fn(economy_id, certificates applied, in order)``: the objects themselves,
#: so a listener never reads back from the store what was just written.
Listener = Callable[[bytes, tuple[Certificate, ...]], None]
ResultListener = Callable[[bytes, ApplyResult], None]


class Applier:
    def __init__(self, store: Store, *, max_batch: int = 4096) -> None:
        self.store = store
        self.economies: dict[bytes, Economy] = {}
        self.buffers: dict[bytes, GapBuffer] = {}
        self._listeners: list[Listener] = []
        self._result_listeners: list[ResultListener] = []
        self._send, self._recv = trio.open_memory_channel[_Request](1024)
        self._max_batch = max_batch
        self.applied_total = 0
        for signed in store.economies():
            self._register(Economy.from_signed(signed))

    def _register(self, economy: Economy) -> None:
        if economy.id not in self.economies:  # add_economy is idempotent
            self.economies[economy.id] = self.store.economy_in_force(economy)
        if economy.id not in self.buffers:
            # The gap buffer caches the store's parked certificates, which
            # were verified before they were parked.
            buffer = GapBuffer()
            buffer.restore(self.store.parked(economy.id))
            self.buffers[economy.id] = buffer

    def on_applied(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def on_result(self, fn: ResultListener) -> None:
        """Call ``fn(economy_id, result)`` after every committed transaction."""
        self._result_listeners.append(fn)

    async def add_economy(self, signed: SignedGenesis) -> Economy:
        """Verify and store a signed genesis; idempotent."""
        economy = await trio.to_thread.run_sync(self.store.add_economy_sync, signed)
        self._register(economy)
        return economy

    async def apply(
        self, economy_id: bytes, certs: list[Certificate], *, verified: bool = False
    ) -> ApplyResult:
        """Verify (unless ``verified``) and apply; returns once committed.
        Invalid certificates are returned in ``refused`` and never stored."""
        economy = self.economies.get(economy_id)
        if economy is None:
            raise KeyError(f"unknown economy {economy_id.hex()}")
        bad: list[tuple[Certificate, Refused]] = []
        # Gossip duplicates and sync overlaps: what is stored needs neither
        # verification nor a write (a read is microseconds, a verify ~200).
        unknown = self.store.unknown([c.entry_id for c in certs])
        certs = [c for c in certs if c.entry_id in unknown]
        if not verified:
            certs, bad = await verify_many(economy, certs)
        if not certs:
            return ApplyResult((), tuple(bad))
        req = _Request(economy_id, certs)
        await self._send.send(req)
        await req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        result = req.result
        later = [c for c, exc in bad if exc.reason is Reason.WRONG_EPOCH]
        if later and self.economies[economy_id].epoch > economy.epoch:
            # This batch reached a later epoch: what waited for it verifies
            # now (each round needs a new epoch, so this ends).
            bad = [(c, exc) for c, exc in bad if exc.reason is not Reason.WRONG_EPOCH]
            again = await self.apply(economy_id, later)
            result = dataclasses.replace(
                result,
                applied=result.applied + again.applied,
                refused=result.refused + again.refused,
                parked=result.parked + again.parked,
                forks=result.forks + again.forks,
                suspects=result.suspects + again.suspects,
                economy=again.economy or result.economy,
            )
        return dataclasses.replace(result, refused=result.refused + tuple(bad))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for first in self._recv:
            await self._write(
                ready_group(first, self._recv, lambda r: len(r.certs), self._max_batch)
            )

    async def _write(self, batch: list[_Request]) -> None:
        by_economy: dict[bytes, list[_Request]] = {}
        for req in batch:
            by_economy.setdefault(req.economy, []).append(req)
        for economy_id, reqs in by_economy.items():
            certs = [c for r in reqs for c in r.certs]
            buffer = self.buffers[economy_id]
            # What this batch may unblock from the gap buffer, for listeners.
            known = {c.entry_id: c for c in buffer.snapshot()} if len(buffer) else {}
            known.update((c.entry_id, c) for c in certs)
            try:
                # Shielded: a transaction in a worker thread cannot be
                # abandoned halfway, and its callers must hear how it ended.
                with trio.CancelScope(shield=True):
                    result = await trio.to_thread.run_sync(
                        self.store.apply_sync,
                        self.economies[economy_id],
                        buffer,
                        certs,
                    )
            except Exception as exc:  # store full, I/O error: tell every caller
                log.error("applying %d certificates failed: %s", len(certs), exc)
                for r in reqs:
                    r.error = exc
                    r.done.set()
                continue
            self.applied_total += len(result.applied)
            after = result.economy
            if after is not None and after.epoch > self.economies[economy_id].epoch:
                log.info("economy %s is at epoch %d", economy_id.hex()[:12], after.epoch)
                self.economies[economy_id] = after
            for r in reqs:
                r.result = result
                r.done.set()
            if result.applied:
                applied = tuple(known[i] for i in result.applied)
                for fn in self._listeners:
                    fn(economy_id, applied)
            for on_result in self._result_listeners:
                on_result(economy_id, result)
