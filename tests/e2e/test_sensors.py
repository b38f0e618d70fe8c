"""End to end, sensors: a devnet of ``mycelia node run`` processes
(``devnet up --detach``: node0 hosts devices and attests every 5 s), driven
through the CLI as a device maker, an owner and an auditor would.

One scenario, in order: device keys of both types (``sensor keygen``),
registered by their owner through node1 with node0 as host (``sensor
register``); one device pushes readings to node0's ingest port over HTTP
(``sensor push``), another is simulated (``sensor simulate``); node0
attests them and the attestation is certified; the owner's claim (``sensor
claim``, through node1) is certified and credits floor(total / 1000),
carrying the rest; node2, which hosts nothing, audits every claimed reading
back to its device signature (``sensor audit``: it asks node0 over
``/mycelia/audit/1``). Meanwhile the devnet's own simulator keeps its two
demo devices reporting and claims for ``alice``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from mycelia.cli.devnet import STATE_FILE, _alive
from mycelia.client import Client, Endpoint
from mycelia.protocol import SignedReading
from tests.e2e.cli import run

#: How long :func:`until` polls.
UNTIL_S = 40


async def until(what: str, check: Any) -> Any:
    """Poll ``check()`` in a thread until it returns something truthy."""
    try:
        with trio.fail_after(UNTIL_S):
            while True:
                value = await trio.to_thread.run_sync(check)
                if value:
                    return value
                await trio.sleep(0.5)
    except trio.TooSlowError:
        raise AssertionError(f"{what}: not within {UNTIL_S:g} s") from None


async def test_readings_become_certified_credits_and_audit_back_to_the_device(
    tmp_path: Path,
) -> None:
    root = tmp_path / "devnet"
    base = {
        "MYCELIA_WALLET_DIR": str(tmp_path / "wallets"),
        "MYCELIA_DEVICE_DIR": str(tmp_path / "devices"),
    }
    await trio.to_thread.run_sync(
        lambda: run(base, "devnet", "up", "--nodes", "3", "--dir", root, "--detach")
    )
    state = json.loads((root / STATE_FILE).read_text())
    nodes = [Path(n["datadir"]) for n in state["nodes"]]
    impact = state["impact"]
    economy_hex, ingest = impact["economy"], impact["ingest"]
    economy = bytes.fromhex(economy_hex[2:])
    try:

        def cli(node: int, *args: str | Path) -> str:
            env = {**base, "MYCELIA_CONFIG": str(nodes[node] / "mycelia.toml")}
            return run(env, *args).stdout

        async def acli(node: int, *args: str | Path) -> str:
            return await trio.to_thread.run_sync(lambda: cli(node, *args))

        def on(node: int) -> Client:
            return Client(Endpoint.from_datadir(nodes[node]))

        await acli(1, "wallet", "new", "owner")
        owner = json.loads(await acli(1, "wallet", "show", "owner", "--json"))["did"]
        meter = json.loads(await acli(1, "sensor", "keygen", "meter", "--type", "p256", "--json"))
        sim = json.loads(await acli(1, "sensor", "keygen", "sim", "--json"))
        for name in ("meter", "sim"):
            out = await acli(
                1,
                "sensor",
                "register",
                name,
                "--economy",
                economy_hex,
                "--owner",
                "owner",
                "--host",
                nodes[0],
                "--metric",
                "energy_wh:Wh:0:0:100000",
            )
            assert "certified: device" in out

        # The devices report to their host over HTTP: one by hand, one simulated.
        for value in (700, 800, 650):
            out = await acli(
                1,
                "sensor",
                "push",
                "meter",
                "--economy",
                economy_hex,
                "--to",
                ingest,
                "--metric",
                "energy_wh",
                "--value",
                str(value),
            )
            assert out.startswith("accepted 0x")
        tally = json.loads(
            await acli(
                1,
                "sensor",
                "simulate",
                "--economy",
                economy_hex,
                "--to",
                ingest,
                "sim",
                "--count",
                "5",
                "--rate",
                "20",
                "--speed",
                "72000",
                "--start-hour",
                "9",
                "--json",
            )
        )
        assert tally == {"sent": 5, "accepted": 5, "refused": {}}

        # node0 attests; the certified attestations show up as claimable on node1.
        device = bytes.fromhex(meter["device"][2:])

        def attested(dev: bytes, last: int) -> Any:
            with on(1) as c:
                listed = c.sensor_claimable(economy, dev).attestations
            return listed if listed and listed[-1].last >= last else None

        await until("meter attested", lambda: attested(device, 3))
        # The host's `mycelia status` lists the devices it hosts.
        hosted = json.loads(await acli(0, "status", "--json"))["sensors"][economy_hex]
        mine = {d["device"]: d for d in hosted if d["owner"] == owner}
        assert set(mine) == {meter["device"], sim["device"]}
        assert mine[meter["device"]]["last_accepted"] == 3

        # The owner claims through node1: 2150 Wh make 2 credits, 150 carried.
        plan = json.loads(
            await acli(
                1,
                "sensor",
                "claim",
                "meter",
                "--economy",
                economy_hex,
                "--owner",
                "owner",
                "--json",
            )
        )
        assert plan["status"] == "certified"
        assert (plan["first_counter"], plan["last_counter"]) == (1, 3)
        assert (plan["total"], plan["minted"], plan["carry"]) == ("2150", "2", "150")
        with on(1) as c:
            after = c.sensor_claimable(economy, device)
        assert (after.cursor, after.carry, after.attestations) == (3, 150, ())

        # The simulated device's claim: its total is what its certified readings sum to.
        sim_device = bytes.fromhex(sim["device"][2:])
        await until("sim attested", lambda: attested(sim_device, 5))
        report = json.loads(
            await acli(2, "sensor", "audit", "sim", "--economy", economy_hex, "--json")
        )
        assert report["ok"]
        assert report["verified"] == 5
        with on(2) as c:
            page = c.sensor_get_readings(economy, sim_device)
        total = sum(SignedReading.decode(r.data).reading.value for r in page.readings)
        plan = json.loads(
            await acli(
                1, "sensor", "claim", "sim", "--economy", economy_hex, "--owner", "owner", "--json"
            )
        )
        assert (plan["total"], plan["minted"]) == (str(total), str(total // 1000))
        credits = 2 + total // 1000

        # Every node agrees on the owner's credits.
        def balances() -> bool:
            values = []
            for i in range(len(nodes)):
                with on(i) as c:
                    values.append(c.account_get(economy, owner).balance)
            return values == [credits] * len(nodes)

        await until("balances", balances)

        # node2 hosts nothing: it asks node0 and verifies every claimed reading.
        text = await acli(2, "sensor", "audit", "meter", "--economy", economy_hex)
        assert "3 returned: 3 verified" in text
        assert "verified: 3 readings back to their device's signature" in text
        report = json.loads(
            await acli(
                2,
                "sensor",
                "audit",
                meter["device"],
                "--economy",
                economy_hex,
                "--first",
                "1",
                "--last",
                "3",
                "--json",
            )
        )
        assert report["ok"]
        assert [(r["counter"], r["status"]) for r in report["readings"]] == [
            (1, "verified"),
            (2, "verified"),
            (3, "verified"),
        ]
        assert all(a["host"] == state["nodes"][0]["did"] for a in report["attestations"])

        # The devnet's own demo: two devices (Ed25519, P-256) reporting to node0,
        # and its simulator claiming for alice.
        with on(0) as c:
            hosted = {d.device.hex(): d for d in c.sensor_devices(economy)}
        for device_hex in impact["devices"].values():
            assert hosted[device_hex[2:]].readings > 0

        def demo_claimed() -> bool:
            with on(0) as c:
                return all(
                    c.sensor_claimable(economy, bytes.fromhex(d[2:])).cursor >= 0
                    for d in impact["devices"].values()
                )

        await until("the devnet's claims", demo_claimed)
    finally:
        await trio.to_thread.run_sync(lambda: run(base, "devnet", "down", "--dir", root))
    assert not any(_alive(p) for p in state["pids"])
    assert "Traceback" not in (root / "simulator.log").read_text()
    for d in nodes:
        assert "Traceback" not in (d / "node.log").read_text()
