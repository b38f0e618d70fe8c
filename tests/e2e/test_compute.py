"""End to end, compute: a devnet of four ``mycelia node run`` processes
(``devnet up --detach``: node2 is the provider, running ``cli/demo_jobs.py``
as its ``primes`` runtime), a job bought with ``mycelia compute run`` as a
subprocess through node1's RPC, paying with the devnet's ``alice`` — the
very command ``devnet up`` prints for a newcomer to paste, run as pasted
(plus ``--json``) in a directory holding the ``n.txt`` it says to write.

The result is printed; the provider is paid exactly the metered price of
the job's final report, the consumer gets the rest of the escrow back (the
balances as the RPC shows them, on another node too); the channel is
settled by the provider's close; no job process is left behind.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import trio
from rich.console import Console

from mycelia.cli.devnet import CREDITS, STATE_FILE, _alive, _compute_table
from mycelia.client import Client, Endpoint
from mycelia.protocol.pricing import Prices, Usage, cost
from tests.e2e.cli import run
from tests.e2e.test_sensors import until


def primes_below(n: int) -> int:
    """Odd numbers only, independently of the demo job's sieve."""
    if n < 3:
        return 0
    odd = [True] * (n // 2)  # odd[i]: is 2i+1 prime
    odd[0] = False
    for i in range(1, int(n**0.5) // 2 + 1):
        if odd[i]:
            p = 2 * i + 1
            odd[p * p // 2 :: p] = [False] * len(range(p * p // 2, n // 2, p))
    return 1 + sum(odd)  # and 2


def pasted(printed: str, what: str) -> list[str]:
    """The printed line (of ``devnet up``'s help) that does ``what``, as argv."""
    (line,) = [ln for ln in printed.splitlines() if what in ln]
    return shlex.split(line)


def job_processes() -> list[int]:
    """Processes running the demo jobs on this machine."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"demo_jobs.py") for a in argv):
            out.append(int(entry.name))
    return out


async def test_a_job_bought_with_the_cli_pays_the_provider_its_metered_price(
    tmp_path: Path,
) -> None:
    root = tmp_path / "devnet"
    up = await trio.to_thread.run_sync(
        lambda: run({}, "devnet", "up", "--nodes", "4", "--dir", root, "--detach")
    )
    state = json.loads((root / STATE_FILE).read_text())
    nodes = [Path(n["datadir"]) for n in state["nodes"]]
    comp = state["compute"]
    economy = bytes.fromhex(comp["economy"][2:])
    provider = state["nodes"][comp["provider"]]["did"]
    alice = state["wallets"]["alice"]
    env = {
        "MYCELIA_WALLET_DIR": str(root / "wallets"),
        "MYCELIA_CONFIG": str(nodes[1] / "mycelia.toml"),
    }
    try:
        assert comp["runtimes"] == ["primes", "words"], "the job user cannot run the demo jobs"

        def offers() -> Any:
            out = json.loads(
                run(env, "compute", "offers", "--economy", comp["economy"], "--json").stdout
            )
            return [o for o in out if o["runtime"] == "primes"]

        (offer,) = await until("node2's offer reaches node1", offers)
        assert offer["provider"] == provider
        # What the newcomer is told: write N to n.txt, then run this.
        (_, number, _, _) = pasted(up.stdout, "> n.txt")
        n = int(number)
        (tmp_path / "n.txt").write_text(f"{n}\n")
        argv = pasted(up.stdout, "--runtime primes")
        assert argv[argv.index("--runtime") + 1] == "primes"
        max_spend = int(argv[argv.index("--max-spend") + 1])
        r = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [*argv, "--json"],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env={**os.environ, **env},
                timeout=300,
                check=False,
            )
        )
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["ok"] is True, out
        assert bytes.fromhex(out["output"][2:]).decode() == f"{primes_below(n)} primes below {n}\n"
        assert out["channel_state"] == "closed"
        paid = int(out["paid"])
        assert paid == int(out["price"]) == int(out["to_provider"]) > 0
        assert int(out["to_consumer"]) == max_spend - paid

        def check(node: Path) -> None:
            with Client(Endpoint.from_datadir(node)) as c:
                channel = c.channel_get(bytes.fromhex(out["channel"][2:]))
                assert (channel.settlement, channel.escrow) == ("channel.close", 0)
                assert (channel.to_provider, channel.to_consumer) == (paid, max_spend - paid)
                assert c.account_get(economy, provider).balance == paid
                assert c.account_get(economy, alice).balance == CREDITS - paid

        await trio.to_thread.run_sync(check, nodes[1])

        def same_on_node3() -> bool:
            try:
                check(nodes[3])
            except AssertionError:
                return False
            return True

        await until("node3 applies the close", same_on_node3)
        # The price is the offer's formula at the final report's counters (the
        # provider re-signs its offer every few seconds, at the same prices).
        prices = Prices(*(int(offer[k]) for k in ("fee", "per_cpu_ms", "per_mib_s", "per_wall_s")))
        assert paid == cost(prices, Usage(out["cpu_ms"], out["wall_ms"], out["mib_ms"]))
        assert job_processes() == []
        # The live table's compute section shows the job, its CPU and the pay.
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(await trio.to_thread.run_sync(_compute_table, state, comp))
        row = console.export_text().splitlines()[-2]
        cells = [c.strip() for c in row.strip("│ ").split("│")]
        assert cells[:2] == ["0", "1"]  # none running, one ended
        assert cells[3:] == [f"{paid / 1000:.3f} CPU", f"{(CREDITS - paid) / 1000:.3f} CPU"]
    finally:
        await trio.to_thread.run_sync(lambda: run({}, "devnet", "down", "--dir", root))
    assert not any(_alive(p) for p in state["pids"])
