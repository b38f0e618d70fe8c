"""Several nodes in one trio process over loopback libp2p.

Why this exists: most node behaviour (certification, gossip, sync, forks,
the RPC) is only visible with several nodes, and starting processes for
each test would be slow and would hide tracebacks; the devnet benchmark's
wallets also need to track their own chains as a wallet does.

:class:`Cluster` starts ``n`` validator nodes (their node keys are the
economy's validator keys) plus any followers, connects them, creates a
mutual-credit economy signed by all validators, and gives wallets a way to
submit transfers as a wallet would: each author (:class:`Wallet`) tracks
its own chain head. :data:`FAST` are the settings of test nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from mycelia.node.daemon import Node, NodeSettings
from mycelia.protocol import Entry, SignedEntry, SigningKey, Transfer
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import T0, genesis, key, sign_genesis, validator_keys

FAST = NodeSettings(
    gossip_flush_ms=10,
    request_timeout_s=5.0,
    sync_interval_s=1.0,
    # Refusals that depend on state (a genuinely short balance, say) settle
    # as "refused, not final" after this, not after the production minute.
    retry_deadline_s=5.0,
    fsync=False,  # tests: durability is tested in test_store with fsync on
)


@dataclass
class Wallet:
    """An author tracking its own chain, as a wallet does."""

    key: SigningKey
    seq: int = 0
    head: bytes = ZERO_ID
    clock: int = T0

    def transfer(self, economy: bytes, to: bytes, amount: int) -> SignedEntry:
        self.clock += 1
        entry = Entry(
            economy, self.key.public, self.seq + 1, self.head, self.clock, Transfer(to, amount, "")
        )
        return entry.sign(self.key)

    def certified(self, signed: SignedEntry) -> None:
        self.seq, self.head = signed.entry.seq, signed.id


@dataclass
class Cluster:
    root: Path
    nursery: trio.Nursery
    settings: NodeSettings = FAST
    validators: list[Node] = field(default_factory=list)
    followers: list[Node] = field(default_factory=list)
    economy_id: bytes = b""
    scopes: dict[Node, trio.CancelScope] = field(default_factory=dict)
    names: dict[Node, str] = field(default_factory=dict)
    finished: dict[Node, trio.Event] = field(default_factory=dict)
    own_settings: dict[str, NodeSettings] = field(default_factory=dict)

    @property
    def nodes(self) -> list[Node]:
        return self.validators + self.followers

    async def start_node(
        self,
        k: SigningKey,
        name: str,
        *,
        bootstrap: Iterable[str] = (),
        follow: Iterable[bytes] = (),
        settings: NodeSettings | None = None,
    ) -> Node:
        """Start a node; ``settings`` (default the cluster's) are kept for its
        restarts."""
        if settings is not None:
            self.own_settings[name] = settings
        base = self.own_settings.get(name, self.settings)
        settings = replace(base, bootstrap=tuple(bootstrap), follow=frozenset(follow))
        node = Node(k, self.root / name, settings)
        await self.nursery.start(self._run, node)
        self.names[node] = name
        return node

    async def _run(self, node: Node, *, task_status: trio.TaskStatus[Node]) -> None:
        self.finished[node] = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self.scopes[node] = scope
                await node.run(task_status=task_status)
        finally:
            self.finished[node].set()

    async def stop(self, node: Node) -> None:
        """Stop one node (as a crash of the process would, minus the crash:
        its store is closed cleanly) and wait until its peers see it gone."""
        self.scopes.pop(node).cancel()
        with trio.fail_after(10):
            await self.finished[node].wait()  # its store is closed
            while any(node.p2p.peer_id in n.p2p.peers() for n in self.nodes if n is not node):
                await trio.sleep(0.05)

    async def restart(self, node: Node) -> Node:
        """A new Node on the stopped node's key and data, bootstrapping to
        every running node (as an operator lists the validators); replaces
        it in the lists. Nodes have no peer exchange: a restarted node on a
        new port is reachable only by the peers it dials."""
        others = [n for n in self.nodes if n is not node and n in self.scopes]
        fresh = await self.start_node(
            node.key, self.names[node], bootstrap=[o.addresses[0] for o in others]
        )
        for group in (self.validators, self.followers):
            if node in group:
                group[group.index(node)] = fresh
        return fresh

    async def connect_all(self) -> None:
        nodes = self.nodes
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                await a.p2p.connect(b.addresses[0])


@asynccontextmanager
async def cluster(
    root: Path, n_validators: int = 4, n_followers: int = 1
) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(root, nursery)
        vkeys = validator_keys(n_validators)
        for i, k in enumerate(vkeys):
            c.validators.append(await c.start_node(k, f"validator{i}"))
        for i in range(n_followers):
            c.followers.append(await c.start_node(key(i, "follower"), f"follower{i}"))
        await c.connect_all()
        signed = sign_genesis(genesis(validators=vkeys, default_limit=1_000), vkeys)
        for node in c.nodes:
            await node.add_economy(signed)
        c.economy_id = signed.genesis.id
        try:
            yield c
        finally:
            nursery.cancel_scope.cancel()


#: How long :func:`converge` waits before it fails.
CONVERGE_S = 30.0


async def converge(nodes: list[Node], economy_id: bytes) -> None:
    """Wait until every node holds the same accounts and chains (at most
    :data:`CONVERGE_S`)."""
    with trio.fail_after(CONVERGE_S):
        while True:
            states = [n.store.accounts(economy_id) for n in nodes]
            chains = [n.store.chain_ids(economy_id) for n in nodes]
            if all(s == states[0] for s in states) and all(c == chains[0] for c in chains):
                return
            await trio.sleep(0.1)
