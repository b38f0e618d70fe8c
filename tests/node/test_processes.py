"""Separate ``mycelia node run`` processes, set up only with the CLI
(``init``, ``node import-economy``), validating together with one in-process
node: entries get certified, every process holds the state, metrics are
served, and SIGTERM stops each process with exit code 0 and no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from mycelia.client.keyfile import read_key
from mycelia.node.daemon import Node
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED
from mycelia.protocol import SigningKey
from mycelia.testing.cluster import FAST, Wallet
from mycelia.testing.economies import genesis, key, sign_genesis
from mycelia.testing.processes import Proc, mycelia

ROOT = Path(__file__).resolve().parents[2]


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_node_run_processes_certify_serve_metrics_and_stop_cleanly(tmp_path: Path) -> None:
    dirs = [tmp_path / f"node{i}" for i in range(3)]
    for d in dirs:
        result = mycelia("init", "--datadir", str(d))
        assert result.returncode == 0, result.stderr
    keys: list[SigningKey] = [read_key(d / "node.key") for d in dirs]
    local_key = key(0, "in-process validator")
    vkeys = [*keys, local_key]
    signed = sign_genesis(genesis(validators=vkeys, default_limit=1_000), vkeys)
    genesis_file = tmp_path / "economy.genesis"
    genesis_file.write_bytes(signed.encode())
    for d in dirs:
        result = mycelia(
            "--config", str(d / "mycelia.toml"), "node", "import-economy", str(genesis_file)
        )
        assert result.returncode == 0, result.stderr
        assert signed.genesis.id.hex() in result.stdout

    procs: list[Proc] = []
    try:
        for d in dirs:
            procs.append(await trio.to_thread.run_sync(Proc, d, [p.address for p in procs]))
        async with trio.open_nursery() as nursery:
            node = Node(local_key, tmp_path / "local", FAST)
            await nursery.start(node.run)
            await node.add_economy(signed)
            for p in procs:
                await node.p2p.connect(p.address)
            economy = signed.genesis.id
            wallets = [Wallet(key(i, "wallet")) for i in range(4)]
            with trio.fail_after(60):
                for i in range(20):
                    w, to = wallets[i % 4], wallets[(i + 1) % 4]
                    entry = w.transfer(economy, to.key.public, 3)
                    status = await node.submitter.wait(await node.submit(entry))
                    assert status.state == CERTIFIED, status
                    w.certified(entry)
            expected = node.store.accounts(economy)
            with trio.fail_after(30):
                for d in dirs:
                    while True:
                        store = Store(d / "store")
                        try:
                            if store.accounts(economy) == expected:
                                break
                        finally:
                            store.close()
                        await trio.sleep(0.2)
            with trio.fail_after(10):  # counters are exported once a second
                while True:
                    text = (await http_get(procs[0].metrics_port, "/metrics")).decode()
                    m = re.search(r"^mycelia_certificates_applied_total (\S+)$", text, re.M)
                    assert m is not None
                    if float(m.group(1)) >= 20:
                        break
                    await trio.sleep(0.2)
            assert re.search(r"^mycelia_peers [1-9]", text, re.M)
            nursery.cancel_scope.cancel()
    finally:
        outcomes = [p.stop() for p in procs]
    for code, log in outcomes:
        assert code == 0, log
        assert "Traceback" not in log, log
        assert "received SIGTERM: stopping" in log
