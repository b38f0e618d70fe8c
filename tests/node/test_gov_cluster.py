"""Governance on running nodes (issue 12, the node step), in one trio
process over loopback libp2p (``mycelia.testing.cluster``):

* a ``policy.set`` raising the default credit limit passes ``majority``
  with the validators' seals (served by ``seal-req``), and every node
  applies the new policy in epoch 1: a transfer past the old limit is
  certified there, by validators that seeded their locks from snapshots;
* a ``committee.set`` replacing one of four validators by a fifth node:
  transfers submitted across the boundary are each certified once, the
  removed validator's votes stop counting (it answers ``not_validator``
  and no epoch-1 certificate carries it), a fresh follower that syncs
  afterwards holds everything and verifies the committee chain and every
  certificate from the genesis alone; then the removed validator and one
  more old one stop, and the new committee keeps certifying.

The proposals are backdated by the economy's ``min_voting_ms`` (entries
may be stamped in the past, never in the future), so they close a few
seconds after they are submitted. Waits are bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import trio

from mycelia.api.types import EconomyView
from mycelia.node import wire
from mycelia.node.daemon import Node
from mycelia.node.submitter import CERTIFIED
from mycelia.node.validator import StoreView
from mycelia.protocol import (
    Certificate,
    Economy,
    Entry,
    Reason,
    SignedEntry,
    SigningKey,
    Transfer,
)
from mycelia.protocol.economy import DAY_MS, Validator
from mycelia.protocol.gov_bodies import (
    CONSENT,
    MAJORITY,
    CommitteeSet,
    GovEnact,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    Tally,
)
from mycelia.protocol.governance import enactment
from mycelia.protocol.quorum import bitmap_indices
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.cluster import Cluster, cluster, converge
from mycelia.testing.economies import genesis, key, sign_genesis, validator_keys
from mycelia.testing.governance import new_validators

MIN_VOTING_MS = 3 * DAY_MS  # the default setting of epoch 0
OPEN_S = 3  # how long a proposal stays open after it is submitted


@dataclass
class Author:
    """An author tracking its own chain, as a wallet does."""

    key: SigningKey
    seq: int = 0
    head: bytes = ZERO_ID
    last_ts: int = 0

    def sign(self, economy: bytes, body: object, ts_ms: int | None = None) -> SignedEntry:
        ts = max(self.last_ts, int(time.time() * 1000) if ts_ms is None else ts_ms)
        entry = Entry(economy, self.key.public, self.seq + 1, self.head, ts, body)
        return entry.sign(self.key)

    async def commit(self, node: Node, economy: bytes, body: object, **kw: int) -> Certificate:
        signed = self.sign(economy, body, **kw)
        status = await node.submitter.wait(await node.submit(signed))
        assert status.state == CERTIFIED, status
        assert status.certificate is not None
        self.seq, self.head, self.last_ts = signed.entry.seq, signed.id, signed.entry.ts_ms
        return status.certificate


async def governed(c: Cluster, steward: SigningKey, *, default_limit: int = 1_000) -> bytes:
    """A second economy of the cluster's validators, with a steward (in
    an open economy the stewards and issuers govern)."""
    vkeys = validator_keys(len(c.validators))
    g = genesis(
        validators=vkeys, stewards=[steward], default_limit=default_limit, nonce=b"governed"
    )
    signed = sign_genesis(g, vkeys)
    for node in c.nodes:
        await node.add_economy(signed)
    return signed.genesis.id


async def propose(
    node: Node, author: Author, economy: bytes, action: str, payload: object, method: Method
) -> Certificate:
    now = int(time.time() * 1000)
    close = now + OPEN_S * 1000
    body = GovPropose(action, payload, method, close)  # type: ignore[arg-type]
    return await author.commit(node, economy, body, ts_ms=close - MIN_VOTING_MS)


async def until_closed(proposal: Certificate) -> None:
    body = proposal.entry.body
    assert isinstance(body, GovPropose)
    with trio.fail_after(OPEN_S + 10):
        while time.time() * 1000 < body.close_ms + 50:
            await trio.sleep(0.1)


async def at_epoch(nodes: list[Node], economy: bytes, epoch: int) -> None:
    """Until every node's economy in force reached ``epoch``, and every
    validator of it seeded its locks."""
    with trio.fail_after(30):
        while True:
            if all(_at(n, economy, epoch) for n in nodes):
                return
            await trio.sleep(0.1)


def _at(node: Node, economy: bytes, epoch: int) -> bool:
    e = node.applier.economies.get(economy)
    if e is None or e.epoch < epoch:
        return False
    return node.key.public not in e.index or node.validator.handover.ready(e)


async def test_a_policy_set_passes_majority_and_every_node_applies_it_in_epoch_1(
    tmp_path: Path,
) -> None:
    steward = Author(key(1, "steward"))
    alice, bob = Author(key(2, "alice")), Author(key(3, "bob"))
    async with cluster(tmp_path, 4, 1) as c:
        economy = await governed(c, steward.key)
        entry = c.validators[0]
        with trio.fail_after(60):
            # Past the limit of epoch 0: refused by every validator.
            over = alice.sign(economy, Transfer(bob.key.public, 1_500, "over"))
            [answer] = await entry.validator.vote(economy, [_item(over)])
            assert answer.reason is Reason.INSUFFICIENT_BALANCE

            raise_limit = PolicySet((("default_limit", 2_000),))
            p = await propose(
                entry, steward, economy, "policy.set", raise_limit, Method(MAJORITY, 1)
            )
            await steward.commit(entry, economy, GovVote(p.entry_id, "yes", 0))
            await until_closed(p)
            await converge(c.nodes, economy)
            e0 = entry.applier.economies[economy]
            # gov_seals: this node's own seal and three by seal-req over p2p
            seals = await entry.gather_seals(e0, p.entry_id)
            assert [s.validator for s in seals] == list(e0.validators)
            assert all(len(s.ballots) == 1 for s in seals)  # the one vote, in every seal
            # Sealing again in the same epoch gives the same seal.
            again = await entry.validator.handover.seal(economy, p.entry_id)
            assert again == seals[0]
            body = enactment(e0, StoreView(entry.store, economy), p.entry_id, seals=seals[:3])
            assert body.tally == Tally(1, 0, 0)
            await steward.commit(entry, economy, body)
            await at_epoch(c.nodes, economy, 1)
            for n in c.nodes:
                assert n.applier.economies[economy].default_limit == 2_000
                assert n.applier.economies[economy].at(0).default_limit == 1_000
            # economy_get shows the epoch in force, its policy and the history
            signed = entry.store.economy(economy)
            assert signed is not None
            view = EconomyView.of(signed, 0, 0, entry.applier.economies[economy])
            assert (view.epoch, view.default_limit) == (1, 2_000)
            assert [(h.epoch, h.proposal) for h in view.history] == [(1, p.entry_id)]
            assert EconomyView.of(signed).default_limit == 1_000
            # The same transfer is certified now, in epoch 1, by validators
            # that seeded their locks from the snapshots of epoch 0.
            cert = await alice.commit(
                c.validators[1], economy, Transfer(bob.key.public, 1_500, "in epoch 1")
            )
            assert cert.epoch == 1
            await converge(c.nodes, economy)
            for n in c.nodes:
                assert n.store.account(economy, alice.key.public).balance == -1_500
                assert n.store.snapshot_part(economy, 0, 0) is not None or (n not in c.validators)


def _item(signed: SignedEntry) -> wire.VoteItem:
    return wire.VoteItem(signed)


async def test_a_committee_set_replaces_a_validator_and_the_new_committee_certifies(
    tmp_path: Path,
) -> None:
    steward = Author(key(1, "steward"))
    wallets = [Author(key(i, "wallet")) for i in range(4)]
    [fifth_key] = new_validators(1)
    async with cluster(tmp_path, 4, 0) as c:
        economy = await governed(c, steward.key)
        fifth = await c.start_node(fifth_key, "fifth", follow=[economy])
        for v in c.validators:
            await fifth.p2p.connect(v.addresses[0])
        entry = c.validators[0]
        old3 = c.validators[3]
        new_committee = [*validator_keys(3), fifth_key]
        payload = CommitteeSet(tuple(Validator(k.public, 1) for k in new_committee), 3)
        certified: list[Certificate] = []

        async def pay(i: int, n: int, via: Node) -> None:
            w = wallets[i]
            to = wallets[(i + 1) % len(wallets)].key.public
            for k in range(n):
                certified.append(await w.commit(via, economy, Transfer(to, 1 + k, f"{i}/{k}")))

        with trio.fail_after(90):
            p = await propose(entry, steward, economy, "committee.set", payload, Method(CONSENT))
            await until_closed(p)
            await converge([*c.validators, fifth], economy)
            # Transfers in flight across the boundary, through every node.
            async with trio.open_nursery() as nursery:
                for i in range(len(wallets)):
                    nursery.start_soon(pay, i, 5, c.validators[i])
                await trio.sleep(0.2)
                await steward.commit(entry, economy, GovEnact(p.entry_id, 1, Tally()))
            nodes = [*c.validators, fifth]
            await at_epoch(nodes, economy, 1)
            now = entry.applier.economies[economy]
            assert now.validators == tuple(k.public for k in new_committee)
            # The removed validator answers not_validator in epoch 1.
            w = wallets[0]
            probe = w.sign(economy, Transfer(wallets[1].key.public, 1, "probe"))
            [answer] = await old3.validator.vote(economy, [_item(probe)])
            assert answer.reason is Reason.NOT_VALIDATOR
            await pay(0, 2, fifth)
            await converge(nodes, economy)
            # Every transfer certified once: one entry per (author, seq),
            # the same on every node, each in its wallet's chain.
            chains = entry.store.chain_ids(economy)
            for cert in certified:
                e = cert.entry
                assert chains[(e.author, e.seq)] == cert.entry_id
            assert len({c_.entry_id for c_ in certified}) == len(certified) == 22
            epoch1 = [c_ for c_ in certified if c_.epoch == 1]
            assert epoch1, "no transfer was certified in epoch 1"
            for cert in epoch1:
                signers = {now.validators[i] for i in _signers(now, cert)}
                assert old3.key.public not in signers
            assert any(
                fifth_key.public in {now.validators[i] for i in _signers(now, c_)} for c_ in epoch1
            )

            # A fresh follower syncs afterwards: same chains; the committee
            # chain and every certificate verify from the genesis alone.
            late = await c.start_node(
                key(9, "late"), "late", bootstrap=[entry.addresses[0]], follow=[economy]
            )
            await converge([*nodes, late], economy)
            signed = late.store.economy(economy)
            assert signed is not None
            reached = await late.sync.committee_chain(entry.p2p.peer_id, economy)
            assert reached.epoch == 1
            assert reached.validators == now.validators
            for entry_id in late.store.chain_ids(economy).values():
                cert_ = late.store.certificate(entry_id)
                assert cert_ is not None
                cert_.verify(reached)
            assert Economy.from_signed(signed).epoch == 0

            # Two old validators stop (the removed one and one more): the
            # new committee (3 of 4 running) keeps certifying.
            await c.stop(old3)
            await c.stop(c.validators[0])
            more = await wallets[2].commit(
                c.validators[1], economy, Transfer(wallets[3].key.public, 3, "after")
            )
            assert more.epoch == 1


def _signers(economy: Economy, cert: Certificate) -> list[int]:
    return list(bitmap_indices(cert.bitmap, len(economy.committee(cert.epoch).keys)))
