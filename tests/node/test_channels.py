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


def _snapshot(node: Node, economy: bytes) -> tuple[object, ...]:
    s = node.store
    return (s.accounts(economy), s.chain_ids(economy), s.records(economy, b"fact/channel"))


async def test_close_and_refund_raced_from_two_nodes_one_is_certified(tmp_path: Path) -> None:
    """The provider closes through one node while the consumer refunds (with
    the provider's release) through another, at once: they lock the same
    resource, so at most one is certified, and every node agrees. Usually
    one wins; when the validators' locks split two against two, neither can
    reach the quorum of three, both are refused ``resource_locked`` and the
    escrow stays locked (``docs/compute.md``, "Trust model": a race gives
    no liveness, which is why a provider closes well before expiry)."""
    async with cluster(tmp_path) as c:
        eid = c.economy_id
        v0, v1, v3 = c.validators[0], c.validators[1], c.validators[3]
        opening = _entry(
            eid, CONSUMER, 1, ZERO_ID, ChannelOpen(PROVIDER.public, 300, _now_ms() + HOUR)
        )
        with trio.fail_after(60):
            await _certified(v0, opening)
            await converge(c.nodes, eid)  # both racers start from the open
            state = _channel(v0, eid, opening.id)
            assert state is not None
            close = _entry(
                eid,
                PROVIDER,
                1,
                ZERO_ID,
                ChannelClose.of(state, Voucher(eid, opening.id, 120).sign(CONSUMER)),
            )
            refund = _entry(
                eid,
                CONSUMER,
                2,
                opening.id,
                ChannelRefund.of(state, Release(eid, opening.id, 10).sign(PROVIDER)),
            )
            statuses = {}

            async def submit(node: Node, signed: SignedEntry) -> None:
                statuses[signed.id] = await node.submitter.wait(await node.submit(signed))

            async with trio.open_nursery() as race:
                race.start_soon(submit, v1, close)
                race.start_soon(submit, v3, refund)
        certified = [e for e in (close, refund) if statuses[e.id].state == CERTIFIED]
        assert len(certified) <= 1, statuses  # never both
        for entry in (close, refund):
            if entry not in certified:
                status = statuses[entry.id]
                assert status.state == REFUSED, status
                assert status.reason in (Reason.CHANNEL_SETTLED, Reason.RESOURCE_LOCKED)
                assert status.final
        await converge(c.nodes, eid)
        if certified:
            (winner,) = certified
            to_provider = 120 if winner is close else 10
        else:  # a split: nothing moved
            winner, to_provider = None, 0
        for node in c.nodes:
            settled = _channel(node, eid, opening.id)
            assert settled is not None
            assert settled.settled_by == (None if winner is None else winner.id)
            assert settled.escrow == (300 if winner is None else 0)
            for entry in (close, refund):
                assert (node.store.certificate(entry.id) is not None) == (entry is winner)
            assert node.store.account(eid, PROVIDER.public).balance == to_provider
            consumer = node.store.account(eid, CONSUMER.public).balance
            assert consumer == (-300 if winner is None else -to_provider)


async def test_a_refund_too_early_and_bad_closes_are_refused_and_change_nothing(
    tmp_path: Path,
) -> None:
    """Through a node's submit path: a refund without a release before expiry
    (channel_not_expired, not final), a close with a voucher the consumer
    did not sign (voucher_bad_sig) and one for more than the escrow
    (voucher_over_escrow) are refused, and no node's state moves."""
    async with cluster(tmp_path) as c:
        eid = c.economy_id
        v0, v2 = c.validators[0], c.validators[2]
        opening = _entry(
            eid, CONSUMER, 1, ZERO_ID, ChannelOpen(PROVIDER.public, 300, _now_ms() + HOUR)
        )
        with trio.fail_after(60):
            await _certified(v0, opening)
            await converge(c.nodes, eid)
            state = _channel(v0, eid, opening.id)
            assert state is not None
            before = [_snapshot(n, eid) for n in c.nodes]
            early = _entry(eid, CONSUMER, 2, opening.id, ChannelRefund.of(state))
            status = await v2.submitter.wait(await v2.submit(early))
            assert (status.state, status.reason, status.final) == (
                REFUSED,
                Reason.CHANNEL_NOT_EXPIRED,
                False,
            )
            stranger = SigningKey(bytes(range(32)))
            forged = ChannelClose.of(state, Voucher(eid, opening.id, 100).sign(stranger))
            over = ChannelClose.of(state, Voucher(eid, opening.id, 301).sign(CONSUMER))
            cases = [(forged, Reason.VOUCHER_BAD_SIG), (over, Reason.VOUCHER_OVER_ESCROW)]
            for body, reason in cases:
                bad = _entry(eid, PROVIDER, 1, ZERO_ID, body)
                status = await v2.submitter.wait(await v2.submit(bad))
                assert (status.state, status.reason, status.final) == (REFUSED, reason, True)
                assert v2.store.certificate(bad.id) is None
        assert [_snapshot(n, eid) for n in c.nodes] == before
        state_after = _channel(v0, eid, opening.id)
        assert state_after is not None
        assert state_after.settlement is None
        assert state_after.escrow == 300
