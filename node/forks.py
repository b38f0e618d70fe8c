"""Forks on this node: the one place fork evidence is reported from, and how
it reaches every peer.

What is a fork and what the node does about it is the protocol's
(``protocol/forks.py``: what counts as evidence, who is guilty, nothing of
the author at or past the fork is applied). This module only reports,
spreads and collects.

Where detection happens: in the protocol's ``Ledger.apply``, because every
path a certificate reaches this node by ends there — gossip batches, sync
ranges, the submitter's own certificates, the certificates a submitter
attaches to a vote request (the validator applies them first), evidence a
peer serves (below) — all through :class:`~mycelia.node.applier.Applier`
into ``Store.apply_sync``. A second certificate for a slot that holds one,
applied or waiting in the gap buffer, is refused with ``conflict`` and the
pair is written to the store's ``forks`` table in the same transaction. The
applier hands every committed result to :class:`ForkMonitor`
(``Applier.on_result``), the one recorder of what the ledger found. For
each new piece of evidence it:

* logs an ERROR naming the economy, the author, the seq, both entries and
  the validators that signed both (``did:key``), so an operator sees who to
  stop trusting;
* counts it (:attr:`ForkMonitor.detected`, exported as
  ``mycelia_forks_detected_total``);
* tells its subscribers (the RPC's ``forks`` subscription);
* publishes the two certificates on the economy's gossip topic as an
  ordinary certificate batch. No new gossip message type: every receiver,
  whatever its version, verifies and applies them as any certificates, and
  its own ledger finds the same conflict (a node that holds one of them
  applies the other, which conflicts; a node that holds neither applies
  the first, and the second conflicts). A node that records nothing new
  publishes nothing, so each node publishes a fork once.

Gossip is best effort, so sync also carries evidence: every round asks each
peer for the slots it holds evidence for (``/mycelia/sync/1`` ``forks``)
and fetches the evidence of any slot it lacks (``fork``, bounded by
``MAX_EVIDENCE_BYTES``; ``wire.py``). Evidence from a peer goes through
:func:`add_evidence`: verified as a whole first — a pair with a forged
certificate, or two certificates that are no fork, is refused with its
reason and changes nothing, not even the half that verifies — then its two
certificates are applied like any others, so the same ledger code records
it.

Suspects: a certificate that builds on an entry this node does not hold at
that seq (its ``prev`` differs) proves the other branch exists without
proving the fork. The ledger lists that ``prev``; the monitor asks its
peers for it by id (sync ``by-id``), and applying it conflicts with the
entry held: evidence. Each id is asked once (bounded memory).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from mycelia.node.applier import Applier, signature_work
from mycelia.node.store import ApplyResult, Store
from mycelia.protocol import Certificate, ForkEvidence, Reason, Refused, did_encode

__all__ = ["ForkMonitor", "add_evidence"]

log = logging.getLogger("mycelia.forks")
#: Suspected ids remembered as asked for (each is asked of the peers once).
MAX_ASKED = 4096

Publish = Callable[[bytes, Certificate], None]
Fetch = Callable[[bytes, list[bytes]], Awaitable[int]]
ForkListener = Callable[[bytes, ForkEvidence], None]


async def add_evidence(applier: Applier, economy_id: bytes, evidence: ForkEvidence) -> ApplyResult:
    """Evidence a peer served: verify it whole (raises :class:`Refused` with
    the reason, nothing changed), then apply its two certificates — the
    ledger records the conflict they make here, as for any certificate."""
    economy = applier.economies.get(economy_id)
    if economy is None:
        raise Refused(Reason.WRONG_ECONOMY, "this node does not follow that economy")
    await signature_work(partial(evidence.verify, economy), 8)
    return await applier.apply(economy_id, [evidence.first, evidence.second], verified=True)


def describe(economy_id: bytes, evidence: ForkEvidence, guilty: tuple[bytes, ...]) -> str:
    """The one-line account of a fork the logs give."""
    a, b = evidence.entry_ids
    names = ", ".join(did_encode(k) for k in guilty) or "none"
    return (
        f"fork in economy {economy_id.hex()}: author {did_encode(evidence.author)} has two "
        f"certificates at seq {evidence.seq} (entries {a.hex()} and {b.hex()}); validators "
        f"that signed both: {names}"
    )


class ForkMonitor:
    """Reports every fork the ledger records here, spreads it, and chases
    suspected ones. Its applier callback runs on the trio thread inside the
    one writer, so it only logs, counts, queues and calls non-blocking
    callbacks."""

    def __init__(self, store: Store, applier: Applier, *, publish: Publish, fetch: Fetch) -> None:
        self.store = store
        self.applier = applier
        self._publish = publish
        self._fetch = fetch
        #: new evidence recorded since start (mycelia_forks_detected_total)
        self.detected = 0
        self._subscribers: list[ForkListener] = []
        self._asked: OrderedDict[bytes, None] = OrderedDict()
        self._suspects_in, self._suspects = trio.open_memory_channel[tuple[bytes, list[bytes]]](256)
        applier.on_result(self._on_result)

    def subscribe(self, fn: ForkListener) -> None:
        """Call ``fn(economy_id, evidence)`` for every new fork recorded."""
        self._subscribers.append(fn)

    def evidence(self, economy_id: bytes) -> list[ForkEvidence]:
        """The evidence held for the economy, in (author, seq) order."""
        return [ForkEvidence.decode(raw) for raw in self.store.forks(economy_id)]

    def count(self, economy_id: bytes) -> int:
        return len(self.store.fork_slots(economy_id))

    # -- from the applier ------------------------------------------------------------

    def _on_result(self, economy_id: bytes, result: ApplyResult) -> None:
        try:
            self._take(economy_id, result)
        except Exception:  # never into the writer; the evidence is stored already
            log.exception("reporting a fork failed")

    def _take(self, economy_id: bytes, result: ApplyResult) -> None:
        for evidence in result.forks:
            self._report(economy_id, evidence)
        wanted = [i for i in result.suspects if i not in self._asked]
        if not wanted:
            return
        for i in wanted:
            self._asked[i] = None
            if len(self._asked) > MAX_ASKED:
                self._asked.popitem(last=False)
        try:
            self._suspects_in.send_nowait((economy_id, wanted))
        except trio.WouldBlock:  # a flood of them: sync's rounds catch up
            log.info("too many suspected forks queued; %d ids not fetched", len(wanted))

    def _report(self, economy_id: bytes, evidence: ForkEvidence) -> None:
        economy = self.applier.economies[economy_id]
        self.detected += 1
        log.error("%s", describe(economy_id, evidence, evidence.guilty(economy)))
        self._publish(economy_id, evidence.first)
        self._publish(economy_id, evidence.second)
        for fn in self._subscribers:
            try:
                fn(economy_id, evidence)
            except Exception:  # never into the writer
                log.exception("fork notification failed")

    # -- the service ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Say what the store already holds, then fetch suspected branches."""
        for economy_id in self.applier.economies:
            held = self.count(economy_id)
            if held:
                log.error(
                    "economy %s: this node holds evidence of %d fork(s) "
                    "(mycelia status, economy_forks)",
                    economy_id.hex(),
                    held,
                )
        task_status.started()
        async for economy_id, ids in self._suspects:
            try:
                await self._fetch(economy_id, ids)
            except Exception as exc:  # no peers, all unreachable: sync rounds go on
                log.info("fetching %d suspected fork certificates failed: %s", len(ids), exc)
