"""Compute payment channels through real nodes (four validators and a
follower in one trio process): the node needs nothing of its own for the
channel kinds — its store keeps the channel records, its submitter attaches
the open a validator asks for, and every node ends in the same state."""

from __future__ import annotations

import time
from pathlib import Path

import trio

from mycelia.node.daemon import Node
from mycelia.node.submitter import CERTIFIED, REFUSED
from mycelia.protocol import (
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    Entry,
    Reason,
    Release,
    SignedEntry,
    SigningKey,
    Voucher,
    channel_state,
)
from mycelia.protocol.channels import ChannelState
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.cluster import cluster, converge
from mycelia.testing.economies import key

CONSUMER, PROVIDER = key(1, "consumer"), key(2, "provider")
HOUR = 3_600_000


def _now_ms() -> int:
    # The validators check a channel's expiry against their wall clocks.
    return int(time.time() * 1000)


def _entry(economy: bytes, author: SigningKey, seq: int, prev: bytes, body: object) -> SignedEntry:
    return Entry(economy, author.public, seq, prev, _now_ms(), body).sign(author)


def _channel(node: Node, economy: bytes, channel: bytes) -> ChannelState | None:
    return channel_state(lambda k: node.store.record(economy, k), channel)


async def _certified(node: Node, signed: SignedEntry) -> None:
    status = await node.submitter.wait(await node.submit(signed))
    assert status.state == CERTIFIED, status


async def test_a_channel_opens_closes_and_every_node_agrees(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        eid = c.economy_id
        v0, v3 = c.validators[0], c.validators[3]
        opening = _entry(
            eid, CONSUMER, 1, ZERO_ID, ChannelOpen(PROVIDER.public, 400, _now_ms() + HOUR)
        )
        with trio.fail_after(60):
            await _certified(v0, opening)
            channel = opening.id
            state = _channel(v0, eid, channel)
            assert state is not None
            assert state.escrow == 400
            # The provider closes through another node straight away: a
            # validator that has not applied the open yet answers missing,
            # and the submitter attaches the open's certificate.
            voucher = Voucher(eid, channel, 150).sign(CONSUMER)
            close = _entry(eid, PROVIDER, 1, ZERO_ID, ChannelClose.of(state, voucher))
            await _certified(v3, close)
            # The consumer's refund now loses: settled (or the channel locked).
            release = Release(eid, channel, 0).sign(PROVIDER)
            refund = _entry(eid, CONSUMER, 2, opening.id, ChannelRefund.of(state, release))
            status = await v0.submitter.wait(await v0.submit(refund))
            assert status.state == REFUSED
            assert status.reason in (Reason.CHANNEL_SETTLED, Reason.RESOURCE_LOCKED)
            assert status.final
        await converge(c.nodes, eid)
        for node in c.nodes:
            assert node.store.account(eid, PROVIDER.public).balance == 150
            assert node.store.account(eid, CONSUMER.public).balance == -150
            settled = _channel(node, eid, channel)
            assert settled is not None
            assert settled.settled_by == close.id
            assert settled.escrow == 0
