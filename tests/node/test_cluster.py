"""Several nodes in one trio process over loopback libp2p: transfers get
certified, every node converges, a late follower catches up."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from mycelia.node.submitter import CERTIFIED
from mycelia.testing.cluster import Wallet, cluster, converge
from mycelia.testing.economies import key

ACCOUNTS = 20
TRANSFERS = 200


async def run_transfers(c, wallets: list[Wallet], total: int, rnd: random.Random) -> None:  # type: ignore[no-untyped-def]
    """Each wallet sends its share in sequence (a chain), wallets in parallel,
    each through a random node."""
    per = total // len(wallets)

    async def author(w: Wallet) -> None:
        for _ in range(per):
            to = rnd.choice([x for x in wallets if x is not w]).key.public
            signed = w.transfer(c.economy_id, to, rnd.randint(1, 20))
            node = rnd.choice(c.nodes)
            entry_id = await node.submit(signed)
            status = await node.submitter.wait(entry_id)
            assert status.state == CERTIFIED, status
            w.certified(signed)

    async with trio.open_nursery() as nursery:
        for w in wallets:
            nursery.start_soon(author, w)


async def test_four_validators_and_a_follower_certify_and_converge(tmp_path: Path) -> None:
    rnd = random.Random(3)
    wallets = [Wallet(key(i, "wallet")) for i in range(ACCOUNTS)]
    async with cluster(tmp_path) as c:
        with trio.fail_after(120):
            await run_transfers(c, wallets, TRANSFERS, rnd)
        await converge(c.nodes, c.economy_id)
        accounts = c.nodes[0].store.accounts(c.economy_id)
        assert sum(a.seq for a in accounts.values()) == TRANSFERS
        assert sum(a.balance for a in accounts.values()) == 0
        for w in wallets:
            assert accounts[w.key.public].seq == w.seq == TRANSFERS // ACCOUNTS
        # Each certificate travels in one gossip message, which reaches a
        # node once per neighbour: its signatures are checked once at most.
        for node in c.nodes:
            assert 0 < node.gossip.verified <= TRANSFERS, node.gossip.verified

        # A follower that starts now, knowing one bootstrap address and the
        # economy id only, catches up to the same state.
        late = await c.start_node(
            key(9, "late"), "late", bootstrap=[c.validators[0].addresses[0]], follow=[c.economy_id]
        )
        await converge([*c.nodes, late], c.economy_id)
        assert late.store.accounts(c.economy_id) == accounts
