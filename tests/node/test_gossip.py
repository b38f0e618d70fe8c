"""The gossip topic validator, without the network: one verification per
message however many copies arrive at once, and stored certificates are
not verified again."""

from __future__ import annotations

from pathlib import Path

import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.gossip import Gossip
from mycelia.node.store import Store
from mycelia.protocol import Transfer
from mycelia.testing.economies import World, key, sign_genesis

A, B = key(1, "wallet"), key(2, "wallet")


class _Peer:
    peer_id = "us"


async def _gossip(tmp_path: Path, w: World) -> Gossip:
    store = Store(tmp_path / "store")
    applier = Applier(store)
    await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
    gossip = Gossip(_Peer(), applier)
    gossip._topics[wire.certs_topic(w.id)] = w.id
    return gossip


async def _validate_copies(gossip: Gossip, topic: str, data: bytes, copies: int) -> list[bool]:
    verdicts: list[bool] = []

    async def one(i: int) -> None:
        verdicts.append(await gossip._validate(topic, f"peer{i}", data))

    async with trio.open_nursery() as nursery:
        for i in range(copies):
            nursery.start_soon(one, i)
    return verdicts


async def test_concurrent_copies_of_a_batch_are_verified_once(tmp_path: Path) -> None:
    w = World()
    gossip = await _gossip(tmp_path, w)
    certs = [w.transfer(A, B, 1), w.transfer(B, A, 2), w.transfer(A, B, 3)]
    data = wire.encode_certs([c.encode() for c in certs])
    topic = wire.certs_topic(w.id)
    assert await _validate_copies(gossip, topic, data, 5) == [True] * 5
    assert gossip.verified == len(certs)
    # A later copy (libp2p's seen cache raced) is answered from the cache.
    assert await gossip._validate(topic, "late", data)
    assert gossip.verified == len(certs)


async def test_concurrent_copies_of_a_forgery_are_all_dropped(tmp_path: Path) -> None:
    w = World()
    gossip = await _gossip(tmp_path, w)
    genuine = [w.transfer(A, B, 1), w.transfer(B, A, 2)]
    forged = w.certify(w.entry(A, Transfer(B.public, 1))).encode()
    forged = forged[:-1] + bytes([forged[-1] ^ 1])  # a vote signature flipped
    data = wire.encode_certs([c.encode() for c in genuine] + [forged])
    topic = wire.certs_topic(w.id)
    assert await _validate_copies(gossip, topic, data, 4) == [False] * 4
    assert gossip.dropped == {"bad_signature": 1}
    assert gossip.verified == 3


async def test_stored_certificates_are_not_verified_again(tmp_path: Path) -> None:
    w = World()
    gossip = await _gossip(tmp_path, w)
    first, second = w.transfer(A, B, 1), w.transfer(B, A, 2)
    applier = gossip.applier
    applier.store.apply_sync(applier.economies[w.id], applier.buffers[w.id], [first])
    data = wire.encode_certs([first.encode(), second.encode()])
    assert await gossip._validate(wire.certs_topic(w.id), "peer", data)
    assert gossip.verified == 1


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1 :]


async def test_a_forged_signature_on_a_stored_entry_is_dropped(tmp_path: Path) -> None:
    """The signatures are not part of the entry id: a known id beside a
    flipped validator or author signature byte must be verified (and
    dropped), alone or mixed with genuine certificates."""
    w = World()
    gossip = await _gossip(tmp_path, w)
    first, second = w.transfer(A, B, 1), w.transfer(B, A, 2)
    applier = gossip.applier
    applier.store.apply_sync(applier.economies[w.id], applier.buffers[w.id], [first, second])
    topic = wire.certs_topic(w.id)
    blob = first.encode()
    vote_sig = _flip(blob, len(blob) - 1)  # the last validator signature
    author_sig = _flip(blob, blob.index(first.author_signature))
    for forged in (vote_sig, author_sig):
        assert forged != blob
        for batch in ([forged], [second.encode(), forged]):
            assert not await gossip._validate(topic, "peer", wire.encode_certs(batch))
    assert gossip.dropped == {"bad_signature": 4}
    # What is stored is unchanged.
    assert applier.store.certificate_bytes(first.entry_id) == blob


async def test_another_valid_signer_subset_of_a_stored_entry_is_accepted(tmp_path: Path) -> None:
    w = World()
    gossip = await _gossip(tmp_path, w)
    signed = w.entry(A, Transfer(B.public, 1))
    ours = w.certify(signed, signers=[0, 1, 2])
    theirs = w.certify(signed, signers=[1, 2, 3])
    applier = gossip.applier
    applier.store.apply_sync(applier.economies[w.id], applier.buffers[w.id], [ours])
    assert theirs.encode() != ours.encode()
    data = wire.encode_certs([theirs.encode()])
    assert await gossip._validate(wire.certs_topic(w.id), "peer", data)
    assert gossip.verified == 1
    assert gossip.dropped == {}
