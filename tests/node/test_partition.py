"""A validator cut off from the network, then back: it holds every chain
head within seconds of the heal (p2p.py, bug 22; item 6 of issue 9).

The cut is a TCP proxy that stops forwarding without closing anything
(:class:`tests.node.blackhole.Blackhole`), as a real cut does: the
connections stay "established" and, as TCP's retransmission backoff would
keep them after a long cut, stay silent after the heal. The isolated
validator is reachable only through the proxy (it announces the proxy's
address) and dials nobody, so every byte it exchanges crosses the cut.

What makes it catch up: pings find the dead connections during the cut and
close them; the others redial it (it is their bootstrap peer) once the
network is back; the new connections fire ``on_connect`` and sync fetches
what was certified meanwhile. Periodic sync is set to ten minutes here, so
only the sync on reconnect can have done it.

The cut lasts ``MYCELIA_PARTITION_S`` seconds, 15 by default to keep the
suite short (the ping timeout is 1.5 s here, so 15 s covers detection,
failed redials into the cut and their backoff); the 60 s cut of the issue
is the same test with ``MYCELIA_PARTITION_S=60``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import trio

from mycelia.node.daemon import Node
from mycelia.node.submitter import CERTIFIED
from mycelia.protocol import SigningKey
from mycelia.testing.cluster import FAST, Cluster, Wallet, converge
from mycelia.testing.economies import genesis, key, sign_genesis, validator_keys
from tests.node.blackhole import Blackhole

ISOLATION_S = float(os.environ.get("MYCELIA_PARTITION_S", "15"))

SETTINGS = replace(
    FAST,
    request_timeout_s=3.0,  # also bounds a dial into the cut
    sync_interval_s=600.0,  # no periodic round during the test: only reconnects sync
    ping_interval_s=0.5,
    ping_timeout_s=1.5,
    redial_max_backoff_s=1.0,
)

log = logging.getLogger(__name__)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start(c: Cluster, k: SigningKey, name: str, **settings: object) -> Node:
    node = Node(k, c.root / name, replace(SETTINGS, **settings))  # type: ignore[arg-type]
    await c.nursery.start(c._run, node)
    c.names[node] = name
    return node


async def test_an_isolated_validator_holds_every_head_soon_after_the_heal(
    tmp_path: Path,
) -> None:
    vkeys = validator_keys(4)
    with trio.fail_after(ISOLATION_S + 120):
        async with trio.open_nursery() as nursery:
            c = Cluster(tmp_path, nursery, settings=SETTINGS)
            port = free_port()
            proxy = Blackhole(port)
            await nursery.start(proxy.run)
            behind = f"/ip4/127.0.0.1/tcp/{proxy.port}"
            isolated = await start(
                c,
                vkeys[3],
                "isolated",
                listen=(f"/ip4/127.0.0.1/tcp/{port}",),
                announce=(behind,),
            )
            assert isolated.addresses == [f"{behind}/p2p/{isolated.p2p.peer_id}"]
            others = [
                await start(c, k, f"validator{i}", bootstrap=tuple(isolated.addresses))
                for i, k in enumerate(vkeys[:3])
            ]
            c.validators = [*others, isolated]
            for i, a in enumerate(others):
                for b in others[i + 1 :]:
                    await a.p2p.connect(b.addresses[0])
            while len(isolated.p2p.peers()) < 3:
                await trio.sleep(0.05)
            signed = sign_genesis(genesis(validators=vkeys, default_limit=1_000), vkeys)
            for node in c.validators:
                await node.add_economy(signed)
            economy = signed.genesis.id

            wallets = [Wallet(key(1, "wallet")), Wallet(key(2, "wallet"))]
            payee = key(3, "wallet").public

            async def certify(wallet: Wallet) -> None:
                entry = wallet.transfer(economy, payee, 1)
                status = await others[0].submitter.wait(await others[0].submit(entry))
                assert status.state == CERTIFIED
                wallet.certified(entry)

            for wallet in wallets:
                await certify(wallet)
            await converge(c.validators, economy)

            proxy.cut()
            cut_at = trio.current_time()
            certified = 0
            while trio.current_time() - cut_at < ISOLATION_S:
                await certify(wallets[certified % 2])  # three validators of four suffice
                certified += 1
                await trio.sleep(0.2)
            # The cut was real: the isolated validator missed all of that, and
            # its dead connections were found and closed.
            assert isolated.store.heads(economy) != others[0].store.heads(economy)
            assert isolated.p2p.peers() == []

            proxy.heal()
            healed_at = trio.current_time()
            with trio.fail_after(30):  # "within a few seconds": a generous bound
                while any(isolated.store.heads(economy) != o.store.heads(economy) for o in others):
                    await trio.sleep(0.05)
            caught_up_s = trio.current_time() - healed_at
            log.info(
                "%.0f s cut, %d certified meanwhile: every head on the isolated validator "
                "%.1f s after the heal",
                ISOLATION_S,
                certified,
                caught_up_s,
            )
            assert certified >= 5
            await converge(c.validators, economy)
            nursery.cancel_scope.cancel()
