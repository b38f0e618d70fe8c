"""Offers (``protocol/offers.py``): bytes, id and signature; every bound
refused with its reason; floats, maps and nil refused in decoded input;
the gossip batch and the offer book (``protocol/offer_book.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
from hashlib import blake2b
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import codec, keys
from mycelia.protocol.domains import COMPUTE_OFFER
from mycelia.protocol.offer_book import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OFFERS,
    OfferBook,
    decode_offer_batch,
    encode_offer_batch,
    offers_topic,
)
from mycelia.protocol.offers import (
    MAX_ADDRS,
    MAX_CPU_MS,
    MAX_GRACE_MS,
    MAX_INPUT_BYTES,
    MAX_OFFER_BYTES,
    MAX_OFFER_SEQ,
    MAX_OFFER_TTL_MS,
    MAX_OUTPUT_BYTES,
    MAX_RESERVED_MIB,
    MAX_RUNTIMES,
    MAX_SIGNED_OFFER_BYTES,
    MAX_WALL_MS,
    Limits,
    Offer,
    Runtime,
    SignedOffer,
)
from mycelia.protocol.pricing import Prices
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.schema import INT64_MAX
from mycelia.testing.economies import T0, key
from tests.protocol.compute_world import ECONOMY, LIMITS, PRICES, PROVIDER, offer, signed_offer

I = INT64_MAX  # noqa: E741


def refused(reason: Reason, action: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as info:
        action(*args, **kw)
    assert info.value.reason is reason, info.value
    return info.value


def test_offer_bytes_id_and_signature() -> None:
    o = offer()
    data = o.encode()
    assert codec.decode(data)[:2] == ["offer", 1]
    assert Offer.decode(data) == o
    assert o.id == blake2b(b"mycelia/offer/1\0" + data, digest_size=32).digest()
    signed = o.sign(PROVIDER)
    assert keys.verify(PROVIDER.public, COMPUTE_OFFER, o.id, signed.signature)
    assert SignedOffer.decode(signed.encode()) == signed
    assert signed.verify() == o.id


def test_a_forged_or_foreign_signature_is_refused() -> None:
    o = offer()
    other = key(9, "provider")
    forged = SignedOffer(o, keys.sign(other, COMPUTE_OFFER, o.id))
    refused(Reason.BAD_SIGNATURE, forged.verify)
    bad_key = dataclasses.replace(o, provider=bytes([1]) + bytes(31))  # small order
    refused(Reason.BAD_KEY, SignedOffer(bad_key, bytes(64)).verify)
    with pytest.raises(ValueError, match="provider"):
        o.sign(other)


def _widest_wire() -> list[Any]:
    lim = [MAX_CPU_MS, MAX_WALL_MS, MAX_RESERVED_MIB, MAX_INPUT_BYTES, MAX_OUTPUT_BYTES]
    rts = [["a" * 32, lim, [I, I, I, I]]] * MAX_RUNTIMES
    addrs = ["/" + "x" * 255] * MAX_ADDRS
    ids = [b"\xff" * 32, b"\xff" * 32]
    return ["offer", 1, *ids, MAX_OFFER_SEQ, I, I, "z" * 128, addrs, rts, I, MAX_GRACE_MS]


def test_size_bounds_are_the_widest_encoding() -> None:
    wide = _widest_wire()
    assert len(codec.encode(wide)) == MAX_OFFER_BYTES
    assert len(codec.encode(["signed-offer", 1, wide, bytes(64)])) == MAX_SIGNED_OFFER_BYTES
    refused(Reason.TOO_LARGE, SignedOffer.decode, b"\x00" * (MAX_SIGNED_OFFER_BYTES + 1))


def test_the_widest_valid_offer_fits() -> None:
    lim = Limits(MAX_CPU_MS, MAX_WALL_MS, MAX_RESERVED_MIB, MAX_INPUT_BYTES, MAX_OUTPUT_BYTES)
    rts = tuple(
        Runtime(chr(ord("a") + i) * 32, lim, Prices(1 << 32, 1 << 16, 1 << 16, 1 << 16))
        for i in range(MAX_RUNTIMES)
    )
    o = offer(
        seq=MAX_OFFER_SEQ,
        issued_ms=I - MAX_OFFER_TTL_MS,
        expires_ms=I,
        peer="z" * 128,
        addrs=tuple(f"/{i}" + "x" * 254 for i in range(MAX_ADDRS)),
        runtimes=rts,
        credit_window=I,
        grace_ms=MAX_GRACE_MS,
    )
    signed = o.sign(PROVIDER)
    assert len(o.encode()) <= MAX_OFFER_BYTES
    assert SignedOffer.decode(signed.encode()) == signed


RT = LIMITS, PRICES


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"economy": b"\x00" * 31}, Reason.MALFORMED),
        ({"provider": b"\x00" * 33}, Reason.MALFORMED),
        ({"seq": 0}, Reason.MALFORMED),
        ({"seq": MAX_OFFER_SEQ + 1}, Reason.MALFORMED),
        ({"seq": True}, Reason.MALFORMED),
        ({"expires_ms": T0}, Reason.MALFORMED),  # not after issued_ms
        ({"expires_ms": T0 + MAX_OFFER_TTL_MS + 1}, Reason.MALFORMED),
        ({"issued_ms": -1}, Reason.MALFORMED),
        ({"peer": ""}, Reason.MALFORMED),
        ({"peer": "12D3KooW0OIl"}, Reason.MALFORMED),  # 0, O, I, l are not base58
        ({"peer": "z" * 129}, Reason.MALFORMED),
        ({"addrs": ["/ip4/1.2.3.4"]}, Reason.MALFORMED),  # a list, not a tuple
        ({"addrs": ("ip4/1.2.3.4",)}, Reason.MALFORMED),
        ({"addrs": ("/ip4/1.2.3.4 /tcp/1",)}, Reason.MALFORMED),
        ({"addrs": ("/a", "/a")}, Reason.MALFORMED),
        ({"addrs": tuple(f"/{i}" for i in range(MAX_ADDRS + 1))}, Reason.MALFORMED),
        ({"addrs": ("/" + "x" * 256,)}, Reason.MALFORMED),
        ({"runtimes": ()}, Reason.MALFORMED),
        ({"runtimes": (Runtime("b", *RT), Runtime("a", *RT))}, Reason.MALFORMED),
        ({"runtimes": (Runtime("a", *RT),) * 2}, Reason.MALFORMED),
        (
            {"runtimes": tuple(Runtime(f"r{i:02}", *RT) for i in range(MAX_RUNTIMES + 1))},
            Reason.MALFORMED,
        ),
        ({"credit_window": -1}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"credit_window": I + 1}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"grace_ms": MAX_GRACE_MS + 1}, Reason.MALFORMED),
        ({"grace_ms": -1}, Reason.MALFORMED),
    ],
)
def test_offer_fields_are_bounded(changes: dict[str, Any], reason: Reason) -> None:
    refused(reason, offer, **changes)


@pytest.mark.parametrize("name", ["", "A", "-x", ".x", "x y", "é", "a" * 33, "python/3", "x\n"])
def test_runtime_names(name: str) -> None:
    refused(Reason.MALFORMED, Runtime, name, LIMITS, PRICES)


def test_nested_values_must_have_their_types() -> None:
    refused(Reason.MALFORMED, Runtime, "a", LIMITS.to_wire(), PRICES)  # type: ignore[arg-type]
    refused(Reason.MALFORMED, Runtime, "a", LIMITS, PRICES.to_wire())  # type: ignore[arg-type]
    refused(Reason.MALFORMED, offer, runtimes=(("a", LIMITS, PRICES),))
    refused(Reason.MALFORMED, SignedOffer, offer().to_wire(), bytes(64))  # type: ignore[arg-type]
    refused(Reason.MALFORMED, SignedOffer, offer(), bytes(63))


def test_good_runtime_names() -> None:
    for name in ["a", "0", "python3.12", "wasm-small_v2", "a" * 32]:
        assert Runtime(name, LIMITS, PRICES).name == name


@pytest.mark.parametrize(
    ("field", "lo", "hi"),
    [
        ("max_cpu_ms", 1, MAX_CPU_MS),
        ("max_wall_ms", 1, MAX_WALL_MS),
        ("reserved_mib", 1, MAX_RESERVED_MIB),
        ("max_input_bytes", 0, MAX_INPUT_BYTES),
        ("max_output_bytes", 0, MAX_OUTPUT_BYTES),
    ],
)
def test_limits_are_bounded(field: str, lo: int, hi: int) -> None:
    assert getattr(dataclasses.replace(LIMITS, **{field: lo}), field) == lo
    assert getattr(dataclasses.replace(LIMITS, **{field: hi}), field) == hi
    for bad in (lo - 1, hi + 1, True):
        refused(Reason.MALFORMED, dataclasses.replace, LIMITS, **{field: bad})


def _raw(value: Any) -> bytes:
    """msgpack without the codec's checks: to build what a hostile peer sends."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    "swap",
    [
        lambda w: w.__setitem__(10, 10_000.0),  # a float credit window
        lambda w: w[9][0][2].__setitem__(1, 2.5),  # a float price
        lambda w: w.__setitem__(11, None),  # nil
        lambda w: w.__setitem__(4, True),  # bool
        lambda w: w.__setitem__(8, {"a": 1}),  # a map
    ],
)
def test_floats_maps_nil_and_bool_are_refused_in_decoded_offers(swap: Any) -> None:
    wire = offer().to_wire()
    swap(wire)
    refused(Reason.NON_CANONICAL, Offer.decode, _raw(wire))
    signed = ["signed-offer", 1, wire, bytes(64)]
    refused(Reason.NON_CANONICAL, SignedOffer.decode, _raw(signed))


def test_decoded_offers_are_checked_like_built_ones() -> None:
    wire = offer().to_wire()
    wire[9][0][2][0] = -1  # a negative fee
    refused(Reason.AMOUNT_OUT_OF_RANGE, Offer.decode, codec.encode(wire))
    wire = offer().to_wire()
    wire[9][0][1] = wire[9][0][1][:4]  # limits short a field
    refused(Reason.MALFORMED, Offer.decode, codec.encode(wire))
    refused(Reason.MALFORMED, Offer.decode, codec.encode(offer().to_wire()[:11]))
    refused(Reason.MALFORMED, Offer.decode, codec.encode(["offer", 2, *offer().to_wire()[2:]]))
    data = offer().encode()
    assert data.endswith(b"\xcd\x13\x88")  # grace_ms 5000, shortest as a uint16
    refused(Reason.NON_CANONICAL, Offer.decode, data[:-3] + b"\xce\x00\x00\x13\x88")


valid_offers = st.builds(
    lambda seq, ttl, window, grace, n, addrs: offer(
        seq=seq,
        expires_ms=T0 + ttl,
        credit_window=window,
        grace_ms=grace,
        runtimes=tuple(Runtime(f"rt{i:02}", LIMITS, PRICES) for i in range(n)),
        addrs=tuple(f"/dns/{a}" for a in sorted(set(addrs))),
    ),
    st.integers(1, MAX_OFFER_SEQ),
    st.integers(1, MAX_OFFER_TTL_MS),
    st.integers(0, I),
    st.integers(0, MAX_GRACE_MS),
    st.integers(1, MAX_RUNTIMES),
    st.lists(st.text("abc", min_size=1, max_size=8), max_size=MAX_ADDRS),
)


@given(valid_offers)
def test_offers_round_trip(o: Offer) -> None:
    assert Offer.decode(o.encode()) == o
    assert Offer.decode(o.encode()).id == o.id


# -- the gossip batch ---------------------------------------------------------------


def test_batch_round_trip_and_topic() -> None:
    offers = [signed_offer(seq=s) for s in (1, 2, 3)]
    data = encode_offer_batch(offers)
    assert codec.decode(data)[:2] == ["offers", 1]
    assert decode_offer_batch(data) == offers
    assert decode_offer_batch(encode_offer_batch([])) == []
    assert offers_topic(ECONOMY) == "/mycelia/offers/1/" + ECONOMY.hex()


def test_batch_bounds() -> None:
    one = signed_offer().encode()
    refused(Reason.TOO_LARGE, decode_offer_batch, codec.encode(["offers", 1, [one] * 257]))
    assert len(decode_offer_batch(codec.encode(["offers", 1, [one] * MAX_BATCH_OFFERS]))) == 256
    with pytest.raises(ValueError, match="offers in one batch"):
        encode_offer_batch([signed_offer()] * (MAX_BATCH_OFFERS + 1))
    refused(Reason.TOO_LARGE, decode_offer_batch, b"\x93" + b"\x00" * MAX_BATCH_BYTES)
    big = codec.encode(["offers", 1, [b"\x00" * (MAX_SIGNED_OFFER_BYTES + 1)]])
    refused(Reason.TOO_LARGE, decode_offer_batch, big)


def test_a_batch_past_the_size_bound_is_not_built() -> None:
    lim = LIMITS
    wide = offer(
        runtimes=tuple(Runtime(f"runtime-{i:02}-" + "x" * 21, lim, PRICES) for i in range(16)),
        addrs=tuple(f"/dns/{i}/" + "y" * 240 for i in range(MAX_ADDRS)),
    ).sign(PROVIDER)
    assert len(wide.encode()) > 3_000
    count = MAX_BATCH_BYTES // len(wide.encode()) + 1
    assert count <= MAX_BATCH_OFFERS
    with pytest.raises(ValueError, match="bytes"):
        encode_offer_batch([wide] * count)
    assert decode_offer_batch(encode_offer_batch([wide] * (count - 1))) == [wide] * (count - 1)


def test_batch_refusals() -> None:
    one = signed_offer().encode()
    refused(Reason.MALFORMED, decode_offer_batch, codec.encode(["certs", 1, [one]]))
    refused(Reason.MALFORMED, decode_offer_batch, codec.encode(["offers", 1, one]))
    refused(Reason.MALFORMED, decode_offer_batch, codec.encode(["offers", 1, [[1]]]))
    refused(Reason.NON_CANONICAL, decode_offer_batch, _raw(["offers", 1, [one, 1.5]]))
    refused(Reason.NON_CANONICAL, decode_offer_batch, codec.encode(["offers", 1, [one]]) + b"\0")
    refused(Reason.MALFORMED, decode_offer_batch, codec.encode(["offers", 1, [b"\x90"]]))


# -- the offer book -----------------------------------------------------------------


NOW = T0 + 1000


def test_the_book_keeps_the_newest_per_slot() -> None:
    book = OfferBook(ECONOMY)
    old, new = signed_offer(issued_ms=T0), signed_offer(issued_ms=T0 + 10)
    assert book.add(old, NOW)
    assert book.add(new, NOW)
    assert not book.add(old, NOW)  # older: kept out
    assert not book.add(new, NOW)  # the same: nothing changes
    assert book.offers(NOW) == [new]
    assert book.get(new.id, NOW) == new
    assert book.get(old.id, NOW) is None
    other = signed_offer(seq=2)
    assert book.add(other, NOW)
    assert book.offers(NOW) == [new, other]


@given(st.permutations(list(range(6))))
def test_the_book_is_the_same_whatever_the_arrival_order(order: list[int]) -> None:
    # Two slots, three versions each; two versions of slot 1 share issued_ms
    # (the larger id wins).
    pool = [
        signed_offer(seq=1, issued_ms=T0),
        signed_offer(seq=1, issued_ms=T0 + 5, credit_window=1),
        signed_offer(seq=1, issued_ms=T0 + 5, credit_window=2),
        signed_offer(seq=2, issued_ms=T0),
        signed_offer(seq=2, issued_ms=T0 + 1),
        signed_offer(seq=2, issued_ms=T0 + 2),
    ]
    book = OfferBook(ECONOMY)
    for i in order:
        book.add(pool[i], NOW)
    tie = max(pool[1:3], key=lambda s: s.id)
    assert book.offers(NOW) == [tie, pool[5]]


def test_the_book_refuses_and_a_refusal_changes_nothing() -> None:
    book = OfferBook(ECONOMY, max_offers=3, max_per_provider=2)
    assert book.add(signed_offer(seq=1), NOW)
    before = book.snapshot()
    o = offer(seq=5)
    cases = [
        (Reason.WRONG_ECONOMY, signed_offer(seq=5, economy=bytes(32))),
        (Reason.OFFER_EXPIRED, signed_offer(seq=5, expires_ms=NOW)),
        (Reason.CLOCK_SKEW, signed_offer(seq=5, issued_ms=NOW + 120_001, expires_ms=NOW + 10**6)),
        (Reason.BAD_SIGNATURE, SignedOffer(o, keys.sign(key(7), COMPUTE_OFFER, o.id))),
    ]
    for reason, s in cases:
        refused(reason, book.add, s, NOW)
        assert book.snapshot() == before
    assert book.add(signed_offer(seq=2), NOW)
    before = book.snapshot()
    refused(Reason.BUFFER_FULL, book.add, signed_offer(seq=3), NOW)  # per provider
    assert book.snapshot() == before
    other = key(8, "provider")
    assert book.add(offer(provider=other.public).sign(other), NOW)
    third = key(9, "provider")
    refused(Reason.BUFFER_FULL, book.add, offer(provider=third.public).sign(third), NOW)  # total
    assert len(book) == 3
    # A newer version of a held slot always gets in, full or not.
    assert book.add(signed_offer(seq=2, issued_ms=T0 + 1), NOW)


def test_issued_within_the_skew_is_accepted() -> None:
    book = OfferBook(ECONOMY)
    assert book.add(signed_offer(issued_ms=NOW + 120_000, expires_ms=NOW + 10**6), NOW)


def test_expired_offers_leave_the_view_at_once_and_memory_after_the_ttl() -> None:
    book = OfferBook(ECONOMY)
    s = signed_offer(expires_ms=T0 + 60_000)
    assert book.add(s, NOW)
    later = T0 + 60_000
    assert book.offers(later) == []
    assert book.get(s.id, later) is None
    assert book.prune(later) == 0
    assert len(book) == 1  # remembered
    assert book.prune(T0 + MAX_OFFER_TTL_MS) == 1
    assert len(book) == 0


def test_a_withdrawn_offer_does_not_come_back() -> None:
    book = OfferBook(ECONOMY)
    original = signed_offer(issued_ms=T0, expires_ms=T0 + 3_600_000)
    withdrawal = signed_offer(issued_ms=T0 + 10, expires_ms=T0 + 20)
    assert book.add(original, NOW - 990)
    assert book.add(withdrawal, T0 + 10)
    book.prune(NOW)
    assert not book.add(original, NOW)  # gossiped again: still older than the withdrawal
    assert book.offers(NOW) == []


def test_reviving_an_expired_slot_counts_against_the_provider() -> None:
    book = OfferBook(ECONOMY, max_per_provider=2)
    assert book.add(signed_offer(seq=1, expires_ms=T0 + 2000), NOW)
    assert book.add(signed_offer(seq=2), NOW)
    later = T0 + 2000  # slot 1 expired, remembered
    assert book.add(signed_offer(seq=3), later)
    revived = signed_offer(seq=1, issued_ms=T0 + 1500, expires_ms=T0 + 100_000)
    refused(Reason.BUFFER_FULL, book.add, revived, later)  # would be a third live offer
    assert book.add(signed_offer(seq=2, issued_ms=T0 + 1), later)  # a live slot: replaced


def test_a_full_book_forgets_expired_offers_first() -> None:
    book = OfferBook(ECONOMY, max_offers=2)
    assert book.add(signed_offer(seq=1, expires_ms=T0 + 2000), NOW)
    assert book.add(signed_offer(seq=2), NOW)
    assert book.add(signed_offer(seq=3), T0 + 2000)  # slot 1 expired: its memory goes
    assert [s.offer.seq for s in book.offers(T0 + 2000)] == [2, 3]
    assert len(book) == 2


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(1, 6), st.integers(0, 50), st.integers(1, 200)),
        max_size=40,
    )
)
def test_the_book_never_grows_past_its_bounds(adds: list[tuple[int, int, int, int]]) -> None:
    providers = [key(i, "provider") for i in range(5)]
    book = OfferBook(ECONOMY, max_offers=8, max_per_provider=3)
    clock = T0
    for who, seq, issued, ttl in adds:
        clock += 7
        k = providers[who]
        s = offer(provider=k.public, seq=seq, issued_ms=T0 + issued, expires_ms=T0 + issued + ttl)
        try:
            book.add(s.sign(k), clock)
        except Refused as exc:
            assert exc.reason in {Reason.OFFER_EXPIRED, Reason.BUFFER_FULL}
        assert len(book) <= 8
        live = book.offers(clock)
        assert all(not o.offer.expired(clock) for o in live)
        for k in providers:
            assert sum(1 for o in live if o.offer.provider == k.public) <= 3
        slots = [(o.offer.provider, o.offer.seq) for o in live]
        assert len(slots) == len(set(slots))


def test_book_bounds_are_positive() -> None:
    for kw in ({"max_offers": 0}, {"max_per_provider": 0}, {"max_skew_ms": -1}):
        with pytest.raises(ValueError, match="positive"):
            OfferBook(ECONOMY, **kw)  # type: ignore[arg-type]


def test_pairs_of_versions_compare_by_issue_time_then_id() -> None:
    a, b = signed_offer(issued_ms=T0, credit_window=1), signed_offer(issued_ms=T0, credit_window=2)
    for first, second in itertools.permutations([a, b]):
        book = OfferBook(ECONOMY)
        book.add(first, NOW)
        book.add(second, NOW)
        assert book.offers(NOW) == [max(a, b, key=lambda s: s.id)]
