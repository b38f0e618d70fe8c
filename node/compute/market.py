"""The compute market a node sees: the offers it signs as a provider, and the
offers of others it keeps from gossip.

Why this exists: consumers find providers through offers gossiped on each
economy's offer topic (``protocol/offer_book.py``), and a provider must
keep offering while it runs — an offer lasts ``compute.offer_ttl_s`` at
most — and must recognise a JOB made against any offer it signed and that
has not expired yet (it republishes, so several are current at once). The
rules of both (what an offer holds, which one a book keeps) are
``protocol/``'s; this module builds offers from the ``[compute]`` config,
signs, gossips and keeps them, and feeds the books.

* **Own offers.** For every followed economy, one offer (``seq`` 1): the
  node key is the provider (it signs the offer, its usage reports and the
  closes that pay it), the node's peer id and addresses, each configured
  runtime with its limits (what a consumer may ask, bounded by the
  protocol: inline input up to ``compute_frames.MAX_INLINE_INPUT_BYTES``,
  output up to ``offers.MAX_OUTPUT_BYTES``) and its integer prices, the
  credit window and the grace. Signed anew (a newer ``issued_ms``, valid
  ``offer_ttl_s``) and gossiped every ``offer_interval_s``; the signed
  offers not expired are kept by id (:meth:`Market.own`).
* **Others' offers.** Every node subscribes to the offer topic of every
  economy it follows, provider or not (its wallets buy through it). The
  topic validator decodes the batch strictly, checks each offer is the
  topic's economy's and verifies every signature in a worker thread — a
  function of the bytes alone, as py-libp2p caches verdicts — and the
  receiver adds each offer to the economy's :class:`OfferBook` at the
  node's clock (expiry, skew and the book's bounds are the book's). The
  node's own offers go into its books too, so its wallets see them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import trio

from mycelia.node.config import ComputeConfig, ConfigError, RuntimeConfig
from mycelia.node.p2p import P2P, P2PError
from mycelia.protocol import SigningKey
from mycelia.protocol.compute_frames import MAX_INLINE_INPUT_BYTES
from mycelia.protocol.offer_book import (
    MAX_BATCH_OFFERS,
    OfferBook,
    decode_offer_batch,
    encode_offer_batch,
    offers_topic,
)
from mycelia.protocol.offers import (
    MAX_ADDRS,
    MAX_OUTPUT_BYTES,
    MAX_RUNTIMES,
    Limits,
    Offer,
    Runtime,
    SignedOffer,
)
from mycelia.protocol.pricing import Prices
from mycelia.protocol.reasons import Refused

__all__ = ["MAX_SEEN", "OFFER_SEQ", "Market", "runtime_of"]

log = logging.getLogger("mycelia.compute")

#: A provider node signs one offer per economy.
OFFER_SEQ = 1
#: Offers remembered by id after a newer version replaced them in a book.
MAX_SEEN = 4096


def runtime_of(rt: RuntimeConfig) -> Runtime:
    """A configured runtime as an offer lists it: its limits as a consumer
    may ask them (within the protocol's bounds) and its prices;
    ``ConfigError`` naming the runtime if the protocol refuses it (a price
    whose job at the limits passes 2^63 - 1, say)."""
    try:
        return Runtime(
            rt.name,
            Limits(
                max_cpu_ms=rt.max_cpu_ms,
                max_wall_ms=rt.max_wall_ms,
                reserved_mib=rt.memory_mib,
                max_input_bytes=min(rt.max_input_bytes, MAX_INLINE_INPUT_BYTES),
                max_output_bytes=min(rt.max_output_bytes, MAX_OUTPUT_BYTES),
            ),
            Prices(rt.fee, rt.per_cpu_ms, rt.per_mib_s, rt.per_wall_s),
        )
    except Refused as exc:
        raise ConfigError(
            f"compute.runtimes.{rt.name}: cannot be offered: {exc.reason.value}: {exc.detail}",
            key=f"compute.runtimes.{rt.name}",
        ) from None


class Market:
    """Own offers and the books of others' (see the module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        p2p: P2P,
        config: ComputeConfig,
        *,
        addresses: Callable[[], Sequence[str]],
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.key = key
        self.p2p = p2p
        self.config = config
        self._addresses = addresses
        self._wall_ms = wall_ms
        self.books: dict[bytes, OfferBook] = {}
        self._own: dict[bytes, SignedOffer] = {}
        # Offers a book replaced by a newer version of the same slot stay
        # good until they expire: a wallet may have picked one a moment ago.
        self._seen: OrderedDict[bytes, SignedOffer] = OrderedDict()
        self._runtimes = self._offered_runtimes()
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        #: plain counters (metrics)
        self.published = 0
        self.received = 0
        self.refused = 0

    def _offered_runtimes(self) -> tuple[Runtime, ...]:
        if not self.config.enabled:
            return ()
        runtimes = sorted(self.config.runtimes, key=lambda rt: rt.name.encode())
        if len(runtimes) > MAX_RUNTIMES:
            raise ConfigError(
                f"compute.runtimes: an offer lists at most {MAX_RUNTIMES} runtimes, "
                f"{len(runtimes)} are configured",
                key="compute.runtimes",
            )
        return tuple(runtime_of(rt) for rt in runtimes)

    @property
    def providing(self) -> bool:
        """Whether this node offers compute (enabled, with runtimes)."""
        return bool(self._runtimes)

    # -- own offers ----------------------------------------------------------------------

    def own(self) -> dict[bytes, Offer]:
        """This node's unexpired offers, by id (a JOB may name any of them)."""
        now = self._wall_ms()
        for offer_id in [i for i, o in self._own.items() if o.offer.expired(now)]:
            del self._own[offer_id]
        return {i: o.offer for i, o in self._own.items()}

    def sign_offer(self, economy: bytes) -> SignedOffer:
        """A fresh offer of this node's runtimes in ``economy``, kept as its own."""
        now = self._wall_ms()
        ttl_ms = round(self.config.offer_ttl_s * 1000)
        addrs = tuple(dict.fromkeys(a for a in self._addresses() if len(a) <= 256))[:MAX_ADDRS]
        offer = Offer(
            economy=economy,
            provider=self.key.public,
            seq=OFFER_SEQ,
            issued_ms=now,
            expires_ms=now + ttl_ms,
            peer=self.p2p.peer_id,
            addrs=addrs,
            runtimes=self._runtimes,
            credit_window=self.config.credit_window,
            grace_ms=round(self.config.grace_s * 1000),
        )
        signed = offer.sign(self.key)
        self._own[signed.id] = signed
        if self._book(economy).add(signed, now):
            self._remember(signed)
        return signed

    async def publish(self) -> int:
        """Sign and gossip this node's offer in every economy it follows;
        how many were published."""
        count = 0
        for economy in list(self.books):
            if not self.providing:
                break
            signed = self.sign_offer(economy)
            try:
                await self.p2p.publish(offers_topic(economy), encode_offer_batch([signed]))
                count += 1
            except P2PError as exc:
                log.warning("could not gossip the compute offer in %s: %s", economy.hex(), exc)
        self.published += count
        return count

    # -- others' offers --------------------------------------------------------------------

    def _book(self, economy: bytes) -> OfferBook:
        book = self.books.get(economy)
        if book is None:
            book = self.books[economy] = OfferBook(economy)
        return book

    async def follow(self, economy: bytes) -> None:
        """Keep the offers of ``economy`` (and offer in it, as a provider)."""
        if economy in self.books:
            return
        self._book(economy)
        topic = offers_topic(economy)

        async def validate(peer: str, data: bytes) -> bool:
            return await trio.to_thread.run_sync(_valid_batch, economy, data)

        async def receive(peer: str, data: bytes) -> None:
            self._receive(economy, data)

        await self.p2p.subscribe(topic, receive, validate)
        self._wake.set()  # offer there at once

    def _receive(self, economy: bytes, data: bytes) -> None:
        book = self._book(economy)
        now = self._wall_ms()
        for signed in decode_offer_batch(data):
            try:
                if book.add(signed, now):
                    self.received += 1
                    self._remember(signed)
            except Refused as exc:
                self.refused += 1
                log.debug("offer %s refused: %s", signed.id.hex()[:16], exc)

    def _remember(self, signed: SignedOffer) -> None:
        self._seen[signed.id] = signed
        while len(self._seen) > MAX_SEEN:
            self._seen.popitem(last=False)

    def offers(self, economy: bytes) -> list[SignedOffer]:
        """The unexpired offers of ``economy`` this node holds (its own too)."""
        book = self.books.get(economy)
        return [] if book is None else book.offers(self._wall_ms())

    def offer(self, offer_id: bytes) -> SignedOffer | None:
        """The unexpired offer with this id, in any economy followed — also
        one its provider has since replaced with a newer one (the last
        :data:`MAX_SEEN` offers the books took are remembered)."""
        now = self._wall_ms()
        for book in self.books.values():
            found = book.get(offer_id, now)
            if found is not None:
                return found
        seen = self._seen.get(offer_id)
        if seen is None or seen.offer.expired(now):
            return None
        return seen

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Republish every ``offer_interval_s`` (and at once when an economy
        is followed); prune the books."""
        task_status.started()
        while True:
            if self.providing:
                await self.publish()
            now = self._wall_ms()
            for book in self.books.values():
                book.prune(now)
            with trio.move_on_after(self.config.offer_interval_s):
                await self._wake.wait()
            self._wake = trio.Event()


def _valid_batch(economy: bytes, data: bytes) -> bool:
    """The topic validator: a function of the bytes alone (py-libp2p caches
    verdicts) — a strict decode, every offer the topic's economy's, every
    signature valid."""
    try:
        offers = decode_offer_batch(data)
        if not offers or len(offers) > MAX_BATCH_OFFERS:
            return False
        for signed in offers:
            if signed.offer.economy != economy:
                return False
            signed.verify()
    except Refused:
        return False
    return True
