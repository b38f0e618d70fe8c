"""What the network may throw at a node, over real loopback libp2p: forged
gossip, bad frames, validators down, a node cut off, a double spend across a
validator's restart."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from mycelia.node import p2p as p2p_mod
from mycelia.node import wire
from mycelia.node.submitter import CERTIFIED, PENDING, REFUSED
from mycelia.protocol import Certificate, Transfer, Vote
from mycelia.protocol.locks import resources
from mycelia.protocol.quorum import make_bitmap
from mycelia.testing.cluster import Wallet, cluster, converge
from mycelia.testing.economies import World, genesis, key, validator_keys

A, B = key(1, "wallet"), key(2, "wallet")


def world() -> World:
    """The cluster's economy, with the validators' keys, for building
    certificates outside the nodes."""
    vk = validator_keys(4)
    return World(genesis(validators=vk, default_limit=1_000), vk)


async def outsider(c, target) -> p2p_mod.P2P:  # type: ignore[no-untyped-def]
    """A bare libp2p peer (no mycelia node behind it) connected to ``target``
    only: it can publish and send whatever it likes."""
    peer = p2p_mod.P2P(os.urandom(32))
    await c.nursery.start(peer.run)
    await peer.connect(target.addresses[0])
    return peer


async def certify(node, wallet: Wallet, economy: bytes, to: bytes, amount: int = 5):  # type: ignore[no-untyped-def]
    signed = wallet.transfer(economy, to, amount)
    status = await node.submitter.wait(await node.submit(signed))
    if status.state == CERTIFIED:
        wallet.certified(signed)
    return status


async def test_forged_gossip_is_not_applied_and_not_forwarded(tmp_path: Path) -> None:
    w = world()
    async with cluster(tmp_path, n_followers=1) as c:
        assert c.economy_id == w.id
        entry_node = c.validators[0]
        attacker = await outsider(c, entry_node)
        topic = wire.certs_topic(w.id)
        got: list[bytes] = []

        async def inbox(peer: str, data: bytes) -> None:
            got.append(data)

        await attacker.subscribe(topic, inbox)  # no validator: it forwards anything
        with trio.fail_after(10):
            while entry_node.p2p.peer_id not in attacker.topic_peers(topic):
                await trio.sleep(0.05)
        await trio.sleep(1.5)  # a heartbeat or so for the mesh

        strangers = [key(i, "stranger") for i in range(3)]
        bitmap = make_bitmap(range(3), 4)
        received_before = [n.gossip.received for n in c.nodes]
        forged_ids = []
        # Until the mesh has formed a publish may reach nobody, and identical
        # bytes are never re-sent (content-addressed ids): publish a fresh
        # forgery each second until the entry node has dropped one.
        with trio.fail_after(20):
            for amount in range(1, 100):
                signed = w.entry(A, Transfer(B.public, amount), seq=1, prev=bytes(32))
                sigs = [Vote.make(s, w.id, 0, signed.id).signature for s in strangers]
                forged = Certificate(signed.entry, signed.signature, 0, bitmap, tuple(sigs))
                forged_ids.append(forged.entry_id)
                await attacker.publish(topic, wire.encode_certs([forged.encode()]))
                with trio.move_on_after(1):
                    while entry_node.gossip.dropped.get("bad_signature", 0) < 1:
                        await trio.sleep(0.05)
                if entry_node.gossip.dropped.get("bad_signature", 0):
                    break
        # A genuine batch from the same peer afterwards arrives everywhere,
        # so the silence about the forged one is not a dead mesh.
        genuine = w.certify(w.entry(B, Transfer(A.public, 3)))
        await attacker.publish(topic, wire.encode_certs([genuine.encode()]))
        with trio.fail_after(15):
            while not all(n.store.certificate_bytes(genuine.entry_id) for n in c.nodes):
                await trio.sleep(0.05)
        for n, before in zip(c.nodes, received_before, strict=True):
            assert all(n.store.certificate_bytes(i) is None for i in forged_ids)
            assert n.store.account(w.id, A.public).seq == 0
            if n is not entry_node:
                # they got the genuine batch (forwarded by the entry node) but
                # never the forged one: nothing was dropped for a bad signature
                assert n.gossip.dropped.get("bad_signature", 0) == 0
            assert n.gossip.received >= before


async def test_bad_frames_are_refused_and_the_node_keeps_serving(tmp_path: Path) -> None:
    async with cluster(tmp_path, n_validators=4, n_followers=0) as c:
        target = c.validators[0]
        probe = await outsider(c, target)
        attempts = [
            b"\xff" * 11,  # an over-long varint
            p2p_mod.frame(b"x" * 10)[:5],  # truncated
            b"\x80\x80\x80\x80\x04",  # a length of 1 GiB, never sent
            p2p_mod.frame(b"\xc1 not msgpack"),  # a frame of junk
        ]
        for proto in (wire.VOTE_PROTOCOL, wire.SYNC_PROTOCOL):
            for data in attempts:
                try:
                    answer = await probe.send_raw(target.p2p.peer_id, proto, data, timeout_s=5)
                except p2p_mod.P2PError:
                    continue
                if answer:  # a framed error answer for the junk frame
                    body = answer[1:]
                    assert wire.codec.decode(body)[0] == "error"
        heads = await probe.request(
            target.p2p.peer_id,
            wire.SYNC_PROTOCOL,
            wire.encode_sync_request("heads", c.economy_id),
        )
        assert wire.decode_heads(heads) == {}
        wallet = Wallet(A)
        status = await certify(target, wallet, c.economy_id, B.public)
        assert status.state == CERTIFIED


async def test_one_validator_down_certifies_two_down_waits(tmp_path: Path) -> None:
    async with cluster(tmp_path, n_validators=4, n_followers=0) as c:
        v0, v1, v2, v3 = c.validators
        wallet = Wallet(A)
        await c.stop(v3)
        with trio.fail_after(20):
            assert (await certify(v0, wallet, c.economy_id, B.public)).state == CERTIFIED
        await c.stop(v2)
        signed = wallet.transfer(c.economy_id, B.public, 5)
        entry_id = await v0.submit(signed)
        await trio.sleep(3)
        status = v0.submitter.status(entry_id)
        assert status.state == PENDING
        assert status.waiting_on >= 1  # it says it is waiting for validators
        v2 = await c.restart(v2)
        with trio.fail_after(30):
            status = await v0.submitter.wait(entry_id)
        assert status.state == CERTIFIED
        await converge([v0, v1, v2], c.economy_id)


async def test_a_node_cut_off_reconnects_and_converges(tmp_path: Path) -> None:
    async with cluster(tmp_path, n_validators=4, n_followers=1) as c:
        follower = c.followers[0]
        wallet = Wallet(A)
        with trio.fail_after(20):
            await certify(c.validators[0], wallet, c.economy_id, B.public)
        await converge(c.nodes, c.economy_id)
        for peer in list(follower.p2p.peers()):
            await follower.p2p.disconnect(peer)
        with trio.fail_after(10):
            while follower.p2p.peers():
                await trio.sleep(0.05)
        with trio.fail_after(30):
            for _ in range(10):
                status = await certify(c.validators[1], wallet, c.economy_id, B.public)
                assert status.state == CERTIFIED
        assert follower.store.account(c.economy_id, A.public).seq == 1
        await follower.p2p.connect(c.validators[2].addresses[0])
        await converge(c.nodes, c.economy_id)
        assert follower.store.account(c.economy_id, A.public).seq == 11


async def test_a_double_spend_across_a_validator_restart_gets_one_certificate(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, n_validators=4, n_followers=0) as c:
        v0, v1, v2, v3 = c.validators
        spender = Wallet(A)
        one = spender.transfer(c.economy_id, B.public, 5)
        spender.clock += 1
        two = Wallet(A, clock=spender.clock).transfer(c.economy_id, key(3, "wallet").public, 5)
        assert one.entry.seq == two.entry.seq
        assert one.id != two.id
        # v3 votes for `one`, then restarts; its lock must survive.
        [result] = await v3.validator.vote(c.economy_id, [wire.VoteItem(one)])
        assert result.vote is not None
        await c.stop(v3)
        v3 = await c.restart(v3)
        assert v3.store.lock(resources(one.entry)[0]) == one.id
        statuses: dict[bytes, str] = {}

        async def submit(node, signed) -> None:  # type: ignore[no-untyped-def]
            st = await node.submitter.wait(await node.submit(signed))
            statuses[signed.id] = st.state

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(submit, v1, two)
                nursery.start_soon(submit, v2, one)
        assert sorted(statuses.values()).count(CERTIFIED) <= 1
        assert all(s in (CERTIFIED, REFUSED) for s in statuses.values())
        [restarted_answer] = await v3.validator.vote(c.economy_id, [wire.VoteItem(two)])
        assert restarted_answer.vote is None  # never a vote for the other entry
        await converge(c.validators, c.economy_id)
        chains = v0.store.chain_ids(c.economy_id)
        assert len([k for k in chains if k[0] == A.public]) <= 1
