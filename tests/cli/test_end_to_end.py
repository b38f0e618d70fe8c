"""The CLI against a real node: one node (the only validator of its economy)
runs in this trio process with its RPC served as ``mycelia node run`` serves
it; the CLI finds it through the files the node writes into its datadir and
runs in a worker thread, since it blocks on HTTP while trio serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from mycelia.api.encoding import hex_in, hex_out
from mycelia.client import AsyncClient, Client, Endpoint
from mycelia.node.config import RpcConfig
from mycelia.node.daemon import Node
from mycelia.node.rpc import serve_rpc
from mycelia.protocol import Certificate
from mycelia.testing.cluster import FAST
from mycelia.testing.economies import genesis, key, sign_genesis
from tests.cli.conftest import new_wallet, one_line_error, run

SOLO = key(0, "solo")
BOB = key(2)


async def cli(*args: str) -> object:
    return await trio.to_thread.run_sync(lambda: run(*args))


async def test_wallet_send_against_a_real_node(home: Path) -> None:
    signed = sign_genesis(genesis(validators=[SOLO]), [SOLO])
    eid = hex_out(signed.genesis.id)
    alice = new_wallet(home, "alice")
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, home / "node", FAST)  # the datadir the config names
        await nursery.start(node.run)
        await node.add_economy(signed)
        await nursery.start(serve_rpc, node, RpcConfig(port=0))
        assert (home / "node" / "rpc.sock").exists()

        send = f"wallet send alice --economy {eid} --to {BOB.did} --amount"
        result = await cli(*send.split(), "250", "--memo", "hi")
        assert result.exit_code == 0, (result.stdout, result.stderr)
        entry_id = hex_in(result.stdout.splitlines()[0], "id", size=32)
        assert "certified: sent 2.50 TVH (250)" in result.stdout
        assert node.store.account(signed.genesis.id, alice.public).balance == -250

        result = await cli("wallet", "balance", "alice", "--economy", eid, "--json")
        doc = json.loads(result.stdout)
        assert (doc["balance"], doc["seq"], doc["head"]) == ("-250", 1, hex_out(entry_id))

        result = await cli("wallet", "history", "alice", "--economy", eid, "--json")
        (item,) = json.loads(result.stdout)["entries"]
        assert item["id"] == hex_out(entry_id)
        assert item["body"]["memo"] == "hi"

        # The second entry builds on the first (seq 2, prev = its id).
        result = await cli(*send.split(), "5")
        assert result.exit_code == 0, result.stderr
        assert node.store.account(signed.genesis.id, alice.public).seq == 2

        line = one_line_error(await cli(*send.split(), "2000"), "insufficient_balance")
        assert "limit" in line

        status = json.loads((await cli("status", "--json")).stdout)
        assert status["node"]["did"] == SOLO.did
        assert status["node"]["validator"] is True
        assert [e["id"] for e in status["economies"]] == [eid]
        assert status["economies"][0]["certificates"] == 2
        nursery.cancel_scope.cancel()


async def test_async_client_against_a_real_node(tmp_path: Path) -> None:
    signed = sign_genesis(genesis(validators=[SOLO]), [SOLO])
    eid = signed.genesis.id
    alice = key(1)
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "node", FAST)
        await nursery.start(node.run)
        await node.add_economy(signed)
        await nursery.start(serve_rpc, node, RpcConfig(port=0))
        endpoint = Endpoint.from_datadir(tmp_path / "node")
        assert endpoint.unix is not None  # HTTP and the WebSocket over the unix socket
        async with AsyncClient(endpoint) as client:
            async with client.subscribe("account", economy=hex_out(eid), account=BOB.did) as sub:
                entry_id = await client.transfer(alice, eid, BOB.did, 30, "async")
                status = await client.wait(entry_id, timeout=30)
                assert status.certified
                assert status.certificate is not None
                with trio.fail_after(30):
                    cert = await sub.__anext__()
                assert cert.entry_id == entry_id
                assert cert.entry.body.memo == "async"
            acct = await client.account_get(eid, BOB.did)
            assert acct.balance == 30
        nursery.cancel_scope.cancel()


async def test_a_wallet_send_costs_three_calls_and_one_verification(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wallet send`` on a chain with a head: economy_get, account_get (which
    carries the head's ts_ms) and entry_submit before it waits, and the only
    certificate the wallet verifies is the one it waited for (it used to
    fetch and verify the head's certificate to learn its timestamp)."""
    signed = sign_genesis(genesis(validators=[SOLO]), [SOLO])
    eid = hex_out(signed.genesis.id)
    new_wallet(home, "alice")
    calls: list[str] = []
    verified: list[bytes] = []
    real_call, real_verify = Client.call, Client._verify

    def call(self: Client, method: str, **params: object) -> object:
        calls.append(method)
        return real_call(self, method, **params)

    def verify(economy: object, cert: Certificate, what: str, view: object = None) -> object:
        verified.append(cert.entry_id)
        return real_verify(economy, cert, what, view)  # type: ignore[arg-type]

    monkeypatch.setattr(Client, "call", call)
    monkeypatch.setattr(Client, "_verify", staticmethod(verify))
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, home / "node", FAST)
        await nursery.start(node.run)
        await node.add_economy(signed)
        await nursery.start(serve_rpc, node, RpcConfig(port=0))
        send = f"wallet send alice --economy {eid} --to {BOB.did} --amount"
        assert (await cli(*send.split(), "5")).exit_code == 0  # a head to build on
        calls.clear()
        verified.clear()
        result = await cli(*send.split(), "7")
        assert result.exit_code == 0, result.stderr
        entry_id = hex_in(result.stdout.splitlines()[0], "id", size=32)
        first_wait = calls.index("entry_get")
        assert calls[:first_wait] == ["economy_get", "account_get", "entry_submit"]
        assert set(calls[first_wait:]) == {"entry_get"}
        assert verified == [entry_id]
        nursery.cancel_scope.cancel()
