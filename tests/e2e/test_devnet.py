"""End to end: a devnet of four ``mycelia node run`` processes, driven only
through the RPC and the CLI built on it, as a wallet and a steward would.

One scenario, in order: ``devnet up --detach``; wallets made with ``wallet
new``; a second economy created by a steward with ``economy create`` (each
named validator node signs the genesis over its RPC); members admitted with
``economy admit``; a transfer sent with ``wallet send`` through one node
arrives as a verified notification on another node's ``account``
subscription; ``account_history`` pages through a member's entries; every
node ends with the same balances; ``devnet down`` stops every process.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from mycelia.cli.devnet import STATE_FILE, _alive
from mycelia.client import AsyncClient, Client, Endpoint
from mycelia.protocol import Transfer, did_decode
from tests.e2e.cli import run


async def balances(datadir: Path, economy: bytes, dids: list[str]) -> list[int]:
    def read() -> list[int]:
        with Client(Endpoint.from_datadir(datadir)) as c:
            return [c.account_get(economy, d).balance for d in dids]

    return await trio.to_thread.run_sync(read)


async def test_a_wallet_and_a_steward_drive_a_devnet_through_the_rpc(tmp_path: Path) -> None:
    root = tmp_path / "devnet"
    base = {"MYCELIA_WALLET_DIR": str(tmp_path / "wallets")}
    await trio.to_thread.run_sync(
        lambda: run(base, "devnet", "up", "--nodes", "4", "--dir", root, "--detach")
    )
    state = json.loads((root / STATE_FILE).read_text())
    nodes = [Path(n["datadir"]) for n in state["nodes"]]
    try:
        env = {**base, "MYCELIA_CONFIG": str(nodes[1] / "mycelia.toml")}

        def cli(*args: str | Path) -> str:
            return run(env, *args).stdout

        def did_of(name: str) -> str:
            return json.loads(cli("wallet", "show", name, "--json"))["did"]

        for name in ("steward", "ann", "ben"):
            await trio.to_thread.run_sync(cli, "wallet", "new", name)
        ann, ben = did_of("ann"), did_of("ben")

        validators = [a for d in nodes for a in ("--validator", d)]
        out = await trio.to_thread.run_sync(
            lambda: cli(
                "economy",
                "create",
                "--name",
                "Garden Hours",
                "--symbol",
                "GH",
                "--decimals",
                "0",
                "--membership",
                "approved",
                "--steward",
                "steward",
                "--default-limit",
                "1000",
                *validators,
            )
        )
        economy_hex = out.strip().splitlines()[-1]
        economy = bytes.fromhex(economy_hex.removeprefix("0x"))
        for d in nodes:  # every validator node stored it
            with Client(Endpoint.from_datadir(d)) as c:
                assert c.economy_get(economy).name == "Garden Hours"

        for member in (ann, ben):
            await trio.to_thread.run_sync(
                lambda m=member: cli(
                    "economy",
                    "admit",
                    "--economy",
                    economy_hex,
                    "--steward",
                    "steward",
                    "--member",
                    m,
                )
            )

        # A subscription on node 3 sees a transfer submitted through node 1.
        watcher = AsyncClient(Endpoint.from_datadir(nodes[3]))
        got = []
        async with watcher.subscribe("account", economy=economy_hex, account=ben) as sub:
            await trio.to_thread.run_sync(
                lambda: cli(
                    "wallet",
                    "send",
                    "ann",
                    "--economy",
                    economy_hex,
                    "--to",
                    ben,
                    "--amount",
                    "7",
                    "--memo",
                    "seeds",
                )
            )
            with trio.fail_after(30):
                async for cert in sub:
                    got.append(cert)
                    if isinstance(cert.entry.body, Transfer):
                        break
        await watcher.aclose()
        transfer = got[-1]
        assert transfer.entry.author == did_decode(ann)
        assert transfer.entry.body == Transfer(did_decode(ben), 7, "seeds")

        # More entries, then history in pages of 2 from node 2: newest first,
        # no overlap, every certificate verified by the client.
        for amount in (1, 2, 3, 4):
            await trio.to_thread.run_sync(
                lambda a=amount: cli(
                    "wallet",
                    "send",
                    "ann",
                    "--economy",
                    economy_hex,
                    "--to",
                    ben,
                    "--amount",
                    str(a),
                )
            )
        with Client(Endpoint.from_datadir(nodes[2])) as c:
            with trio.fail_after(30):
                while c.account_get(economy, ann).seq < 5:
                    await trio.sleep(0.2)
            seen, cursor = [], None
            while True:
                page = c.account_history(economy, ann, cursor=cursor, limit=2)
                assert len(page.entries) <= 2
                seen.extend(page.entries)
                cursor = page.next_cursor
                if cursor is None:
                    break
        ids = [e.entry_id for e in seen]
        assert len(ids) == len(set(ids)) == 6  # admission + 5 transfers
        amounts = [e.entry.body.amount for e in seen if isinstance(e.entry.body, Transfer)]
        assert amounts == [4, 3, 2, 1, 7]

        # Every node converges to the same balances.
        want = [-17, 17]
        with trio.fail_after(30):
            for d in nodes:
                while await balances(d, economy, [ann, ben]) != want:
                    await trio.sleep(0.2)
    finally:
        await trio.to_thread.run_sync(lambda: run(base, "devnet", "down", "--dir", root))
    assert not any(_alive(p) for p in state["pids"])
    for d in nodes:
        assert not (d / ".cookie").exists()
        assert "Traceback" not in (d / "node.log").read_text()
