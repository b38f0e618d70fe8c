"""Certificate gossip: one topic per followed economy, batches both ways.

Out: :meth:`Gossip.publish` queues a certificate; a flusher sends a topic's
queue as ONE message when it reaches ``max_batch_bytes`` or ``flush_ms``
after its first certificate (py-libp2p spends milliseconds per message
whatever its size, and drops when its 32-message queue is full — see
notes/py-libp2p.md — so batching is what makes throughput).

In: the topic validator runs before py-libp2p forwards anything. It decodes
the batch strictly, requires every certificate to be for the topic's
economy, and verifies every signature in worker threads; if any
certificate fails, the whole message is dropped — not applied, not
forwarded — and counted by reason. A valid batch is remembered (by the
hash of its bytes) for the receiver, which hands its certificates to the
one writer without verifying again.

One verification per message: py-libp2p runs the validator once per copy
that arrives while an earlier copy is still being validated (quirk 1 in
``p2p.py``), and in a full mesh every peer forwards every message, so
without care each batch was verified once per neighbour. Concurrent calls
for the same bytes wait for the first one's verdict instead; a certificate
byte for byte identical to one stored (a copy arriving after we applied it)
was verified before and skips the signature checks. Only identical bytes:
the validators' and the author's signatures are not part of the entry id,
so a known id beside a flipped signature byte is a forgery to drop (and a
different valid signer subset for a stored entry is verified, then
accepted).

Drop reasons (the ``reason`` label of ``mycelia_gossip_dropped_total``): the
protocol reason of the first failure (``bad_signature``,
``quorum_not_reached``, ``non_canonical``, ``wrong_economy``, …) or
``unknown_economy``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from hashlib import blake2b
from typing import TYPE_CHECKING, Protocol

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier, verify_many
from mycelia.node.config import DEFAULTS
from mycelia.protocol import Certificate, Refused

if TYPE_CHECKING:
    from mycelia.node.p2p import Receiver, Validator

__all__ = ["Gossip", "PubSub"]

log = logging.getLogger("mycelia.gossip")
_CACHE = 256


class PubSub(Protocol):
    """What gossip needs of the p2p host (:class:`~mycelia.node.p2p.P2P`)."""

    @property
    def peer_id(self) -> str: ...

    async def subscribe(
        self, topic: str, receiver: Receiver, validator: Validator | None = None, /
    ) -> None: ...

    async def publish(self, topic: str, data: bytes, /) -> None: ...


class Gossip:
    def __init__(
        self,
        p2p: PubSub,
        applier: Applier,
        *,
        flush_ms: int = DEFAULTS.p2p.gossip_flush_ms,
        max_batch_bytes: int = DEFAULTS.p2p.gossip_max_batch_bytes,
    ) -> None:
        self.p2p = p2p
        self.applier = applier
        self._flush_s = flush_ms / 1000
        self._max_bytes = max_batch_bytes
        self._outbox: dict[bytes, list[bytes]] = {}
        self._outbox_size: dict[bytes, int] = {}
        self._kick = trio.Event()
        self._verified: OrderedDict[bytes, list[Certificate]] = OrderedDict()
        #: validations in progress: key -> (done, verdict holder)
        self._validating: dict[bytes, tuple[trio.Event, list[bool]]] = {}
        self._topics: dict[str, bytes] = {}
        #: counters the daemon exports as metrics
        self.received = 0
        #: certificates whose signatures the topic validator checked
        self.verified = 0
        self.sent = 0
        self.dropped: dict[str, int] = {}
        # The receiver must return at once (py-libp2p's per-topic channel
        # holds 32 messages); the applying happens in run().
        self._inbox_send, self._inbox = trio.open_memory_channel[
            tuple[bytes, list[Certificate], bool]
        ](256)

    async def follow(self, economy_id: bytes) -> None:
        topic = wire.certs_topic(economy_id)
        if topic in self._topics:
            return
        self._topics[topic] = economy_id

        async def validate(peer: str, data: bytes) -> bool:
            return await self._validate(topic, peer, data)

        async def receive(peer: str, data: bytes) -> None:
            await self._receive(topic, peer, data)

        await self.p2p.subscribe(topic, receive, validate)

    # -- out ---------------------------------------------------------------------

    def publish(self, economy_id: bytes, cert: Certificate) -> None:
        blob = cert.encode()
        self._outbox.setdefault(economy_id, []).append(blob)
        self._outbox_size[economy_id] = self._outbox_size.get(economy_id, 0) + len(blob)
        self._kick.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._apply_inbox)
                await self._flusher(task_status)
        finally:
            if self.sent or self.received:
                log.info(
                    "gossip: %d messages out, %d in, %d certificates verified, dropped %s",
                    self.sent,
                    self.received,
                    self.verified,
                    self.dropped or "none",
                )

    async def _apply_inbox(self) -> None:
        async for economy_id, certs, verified in self._inbox:
            await self.applier.apply(economy_id, certs, verified=verified)

    async def _flusher(self, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            while True:
                await self._kick.wait()
                # Wait for more to join the batch, unless it is already full.
                if max(self._outbox_size.values(), default=0) < self._max_bytes:
                    await trio.sleep(self._flush_s)
                self._kick = trio.Event()
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.flush()  # what we hold goes out before we stop

    async def flush(self) -> None:
        outbox, self._outbox, self._outbox_size = self._outbox, {}, {}
        for economy_id, blobs in outbox.items():
            topic = wire.certs_topic(economy_id)
            batch: list[bytes] = []
            size = 0
            for blob in blobs:
                if batch and (size + len(blob) > self._max_bytes or len(batch) >= wire.MAX_BATCH):
                    await self._send(topic, batch)
                    batch, size = [], 0
                batch.append(blob)
                size += len(blob)
            if batch:
                await self._send(topic, batch)

    async def _send(self, topic: str, blobs: list[bytes]) -> None:
        try:
            await self.p2p.publish(topic, wire.encode_certs(blobs))
        except Exception as exc:  # no peers yet, shutting down: sync repairs
            log.info("publishing %d certificates failed: %s", len(blobs), exc)
            return
        self.sent += 1

    # -- in ------------------------------------------------------------------------

    def _drop(self, reason: str) -> bool:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return False

    async def _validate(self, topic: str, forwarder: str, data: bytes) -> bool:
        if forwarder == self.p2p.peer_id:
            return True  # our own publish: built from certificates we hold
        key = blake2b(data, digest_size=16).digest()
        if key in self._verified:
            return True
        pending = self._validating.get(key)
        if pending is not None:  # another copy is being checked: share its verdict
            done, verdict = pending
            await done.wait()
            return verdict[0]
        done, verdict = trio.Event(), [False]
        self._validating[key] = (done, verdict)
        try:
            verdict[0] = await self._check(topic, forwarder, key, data)
        finally:
            del self._validating[key]
            done.set()
        return verdict[0]

    async def _check(self, topic: str, forwarder: str, key: bytes, data: bytes) -> bool:
        economy_id = self._topics.get(topic)
        economy = self.applier.economies.get(economy_id) if economy_id else None
        if economy is None:
            return self._drop("unknown_economy")
        try:
            certs = wire.decode_certs(data)
        except Refused as exc:
            return self._drop(exc.reason.value)
        for cert in certs:
            if cert.entry.economy != economy.id:
                return self._drop("wrong_economy")
        # What is stored byte for byte was verified when it was stored.
        fresh = self.applier.store.not_stored_as_is(certs)
        _, bad = await verify_many(economy, fresh)
        self.verified += len(fresh)
        if bad:
            cert, refused = bad[0]
            log.warning(
                "dropping gossip from %s: certificate %s: %s",
                forwarder,
                cert.entry_id.hex(),
                refused,
            )
            return self._drop(refused.reason.value)
        self._verified[key] = certs
        if len(self._verified) > _CACHE:
            self._verified.popitem(last=False)
        return True

    async def _receive(self, topic: str, origin: str, data: bytes) -> None:
        economy_id = self._topics.get(topic)
        if economy_id is None:
            return
        certs = self._verified.pop(blake2b(data, digest_size=16).digest(), None)
        verified = certs is not None
        if certs is None:  # evicted from the cache: verify again
            try:
                certs = wire.decode_certs(data)
            except Refused:
                return
        self.received += 1
        try:
            self._inbox_send.send_nowait((economy_id, certs, verified))
        except trio.WouldBlock:  # the writer is behind: sync will fetch these
            self._drop("backlog")
