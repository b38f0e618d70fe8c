"""Offer gossip: the batch of signed offers on an economy's topic, and the
book of current offers a node keeps from it.

Why this exists: consumers find providers by the offers gossiped in their
economy, and every node must keep the same offers from the same messages
(the newest per provider and offer number, nothing expired) within a bound
no flood of offers can break. The batch's bytes and the book's rule are
here; the node's gossip service subscribes, validates and feeds the book.

Topic and message::

    topic   = "/mycelia/offers/1/<economy id, 64 lowercase hex>"
    message = ["offers", 1, [signed_offer, ...]]

A message type of its own (tag ``offers``, not the certificate batches'
``certs``) on a topic of its own. Each ``signed_offer`` is the canonical
bytes of an ``offers.SignedOffer`` (msgpack bin), at most
:data:`MAX_BATCH_OFFERS` of them, the whole message at most
:data:`MAX_BATCH_BYTES`. Decoding checks each offer's bytes strictly, not
its signature (:meth:`OfferBook.add` does, after its cheaper checks).

The book (:class:`OfferBook`) holds at most one offer per slot (provider,
seq): the newest, by ``issued_ms`` and then by offer id (so two nodes that
saw the same offers in any order hold the same one); only a strictly newer
offer replaces it, so a provider can always update an offer, or withdraw it
by republishing it with a near expiry. It refuses an offer for another
economy (``wrong_economy``), expired at ``now_ms`` (``offer_expired``),
issued more than ``max_skew_ms`` ahead of ``now_ms`` (``clock_skew``),
badly signed (``bad_key``, ``bad_signature``), and a new slot when it is
full (``buffer_full``): at most ``max_offers`` slots in all and
``max_per_provider`` unexpired offers per provider. A refusal changes
nothing.

Expiry, given the clock passed in: an expired offer is out of view at once
(:meth:`OfferBook.get`, :meth:`OfferBook.offers`), but its slot remembers
it until ``issued_ms + offers.MAX_OFFER_TTL_MS``, when every older version
of it has expired too — else a withdrawn offer's older version, gossiped
again, would come back. Those remembered slots go first when the book is
full (:meth:`OfferBook.prune` drops the rest on time), so memory stays
within ``max_offers`` slots whatever arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

from mycelia.protocol import codec, schema
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.offers import MAX_OFFER_TTL_MS, MAX_SIGNED_OFFER_BYTES, SignedOffer
from mycelia.protocol.reasons import Reason, Refused

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OFFERS",
    "MAX_OFFER_SKEW_MS",
    "OfferBook",
    "decode_offer_batch",
    "encode_offer_batch",
    "offers_topic",
]

MAX_BATCH_OFFERS = 256
#: A gossip message stays well below a megabyte (``notes/py-libp2p.md``:
#: per-message cost is flat, so batches are large but bounded).
MAX_BATCH_BYTES = 256 * 1024
#: How far ahead of the book's clock an offer's ``issued_ms`` may be.
MAX_OFFER_SKEW_MS = 120_000
DEFAULT_MAX_OFFERS = 4096
DEFAULT_MAX_PER_PROVIDER = 16


def offers_topic(economy: bytes) -> str:
    """The gossip topic of an economy's offers."""
    schema.bytes_(economy, "economy", ID_SIZE)
    return f"/mycelia/offers/1/{economy.hex()}"


def encode_offer_batch(offers: list[SignedOffer]) -> bytes:
    """A gossip message of offers; ``ValueError`` past the count or size
    bound (the publisher splits its batches)."""
    if len(offers) > MAX_BATCH_OFFERS:
        raise ValueError(f"more than {MAX_BATCH_OFFERS} offers in one batch")
    data = codec.encode_trusted(["offers", 1, [o.encode() for o in offers]])
    if len(data) > MAX_BATCH_BYTES:
        raise ValueError(f"an offer batch of {len(data)} bytes > {MAX_BATCH_BYTES}")
    return data


def decode_offer_batch(data: bytes) -> list[SignedOffer]:
    """Strict decode of a gossip message: ``too_large`` (size, count, an
    offer's bytes), ``non_canonical``, ``malformed`` and each offer's own
    reasons. Signatures are not checked here."""
    f = schema.array(codec.decode(data, max_size=MAX_BATCH_BYTES), "offers", 1, 3, "offer batch")
    if type(f[2]) is list and len(f[2]) > MAX_BATCH_OFFERS:
        raise Refused(Reason.TOO_LARGE, f"more than {MAX_BATCH_OFFERS} offers in one batch")
    raw = schema.list_(f[2], "offers", max_len=MAX_BATCH_OFFERS)
    out = []
    for item in raw:
        blob = schema.bytes_(item, "offer", max_size=MAX_BATCH_BYTES)
        if len(blob) > MAX_SIGNED_OFFER_BYTES:
            raise Refused(Reason.TOO_LARGE, f"an offer of {len(blob)} bytes")
        out.append(SignedOffer.decode(blob))
    return out


@dataclass(frozen=True, slots=True)
class _Held:
    offer: SignedOffer
    id: bytes

    @property
    def rank(self) -> tuple[int, bytes]:
        return (self.offer.offer.issued_ms, self.id)

    def expired(self, now_ms: int) -> bool:
        return self.offer.offer.expired(now_ms)

    def forgettable(self, now_ms: int) -> bool:
        """Expired, and so is every older version of the slot (issued no
        later, valid at most ``MAX_OFFER_TTL_MS``)."""
        return now_ms >= self.offer.offer.issued_ms + MAX_OFFER_TTL_MS


class OfferBook:
    """The current offers of one economy (see the module docstring)."""

    __slots__ = ("_by_id", "_slots", "economy", "max_offers", "max_per_provider", "max_skew_ms")

    def __init__(
        self,
        economy: bytes,
        *,
        max_offers: int = DEFAULT_MAX_OFFERS,
        max_per_provider: int = DEFAULT_MAX_PER_PROVIDER,
        max_skew_ms: int = MAX_OFFER_SKEW_MS,
    ) -> None:
        self.economy = schema.bytes_(economy, "economy", ID_SIZE)
        if max_offers < 1 or max_per_provider < 1 or max_skew_ms < 0:
            raise ValueError("the book's bounds are positive")
        self.max_offers = max_offers
        self.max_per_provider = max_per_provider
        self.max_skew_ms = max_skew_ms
        self._slots: dict[tuple[bytes, int], _Held] = {}
        self._by_id: dict[bytes, tuple[bytes, int]] = {}

    def __len__(self) -> int:
        """The slots held: unexpired offers and the remembered expired ones."""
        return len(self._slots)

    def add(self, signed: SignedOffer, now_ms: int) -> bool:
        """Keep ``signed`` if it is newer than what its slot holds; True if
        the book changed, False if it already holds this offer or a newer
        one. Refuses as the module docstring says."""
        o = signed.offer
        if o.economy != self.economy:
            raise Refused(Reason.WRONG_ECONOMY, "the offer is for another economy")
        if o.expired(now_ms):
            raise Refused(Reason.OFFER_EXPIRED, f"the offer expired at {o.expires_ms}")
        if o.issued_ms > now_ms + self.max_skew_ms:
            raise Refused(
                Reason.CLOCK_SKEW,
                f"issued at {o.issued_ms}, more than {self.max_skew_ms} ms after {now_ms}",
            )
        slot = (o.provider, o.seq)
        held = self._slots.get(slot)
        candidate = _Held(signed, o.id)
        if held is not None and held.rank >= candidate.rank:
            return False
        signed.verify()
        self._make_room(o.provider, now_ms, held)
        if held is not None:
            del self._by_id[held.id]
        self._slots[slot] = candidate
        self._by_id[candidate.id] = slot
        return True

    def _make_room(self, provider: bytes, now_ms: int, replacing: _Held | None) -> None:
        """Refuse (``buffer_full``) an offer that would give its provider
        more than ``max_per_provider`` unexpired offers (a new slot, or one
        that held an expired offer), or a new slot when the book is full even
        after forgetting its expired offers."""
        if replacing is None or replacing.expired(now_ms):
            live = sum(
                1 for (p, _), h in self._slots.items() if p == provider and not h.expired(now_ms)
            )
            if live >= self.max_per_provider:
                raise Refused(
                    Reason.BUFFER_FULL,
                    f"the book holds {self.max_per_provider} of this provider's offers",
                )
        if replacing is not None:
            return
        self.prune(now_ms)
        if len(self._slots) >= self.max_offers:
            self._forget([s for s, h in self._slots.items() if h.expired(now_ms)])
        if len(self._slots) >= self.max_offers:
            raise Refused(Reason.BUFFER_FULL, f"the book holds {self.max_offers} offers")

    def prune(self, now_ms: int) -> int:
        """Forget the expired offers no older version of which can still be
        valid at ``now_ms``; how many were forgotten."""
        gone = [s for s, h in self._slots.items() if h.forgettable(now_ms)]
        self._forget(gone)
        return len(gone)

    def _forget(self, slots: list[tuple[bytes, int]]) -> None:
        for slot in slots:
            del self._by_id[self._slots.pop(slot).id]

    def get(self, offer_id: bytes, now_ms: int) -> SignedOffer | None:
        """The offer with this id, if the book holds it and it is unexpired."""
        slot = self._by_id.get(offer_id)
        if slot is None:
            return None
        held = self._slots[slot]
        return None if held.expired(now_ms) else held.offer

    def offers(self, now_ms: int) -> list[SignedOffer]:
        """The unexpired offers, by provider then seq."""
        held = (self._slots[s] for s in sorted(self._slots))
        return [h.offer for h in held if not h.expired(now_ms)]

    def snapshot(self) -> list[bytes]:
        """Every slot's offer bytes, in slot order (to compare two books)."""
        return [self._slots[s].offer.encode() for s in sorted(self._slots)]
