"""``mycelia devnet``: a whole network on this machine, in one command.

Why this exists: a newcomer (``make run``) and a wallet developer both need a
working network to talk to before they understand how to build one. ``up``
gives them N ``mycelia node run`` processes on loopback, one demo
mutual-credit economy validated by all of them, and a few funded wallets;
``down`` stops a devnet left running in the background.

How it works:

* Layout of ``--dir`` (default ``./.devnet``): ``node0 … nodeN-1`` (each a
  data dir made as ``mycelia init`` makes one, with its ``node.log``),
  ``wallets/`` (the demo wallets' keys, 0600), ``economy.genesis`` and
  ``devnet.json`` (pids, economy id, wallets: what ``down`` and a second
  terminal need). An existing layout is reused, with its state.
* The economy: on the first ``up``, a genesis naming every node as a
  validator (weight 1, quorum > 2/3), membership ``approved`` with the
  ``steward`` wallet as steward, is signed by every node key (the devnet
  holds them all) and imported into every store before the nodes start —
  the same path as ``mycelia node import-economy``. Wallet-facing steps then
  go through the RPC only, as a wallet would: the steward admits ``alice``,
  ``bob`` and ``carol`` and pays each of them 100 units.
* Processes: node ``i`` starts with the p2p addresses of nodes ``0 … i-1``
  as bootstrap peers, on ports chosen by the kernel (p2p, RPC, metrics),
  in its own session so that Ctrl-C reaches the devnet, which then stops
  each node with SIGTERM (a clean stop) and waits for it.
* Without ``--detach``, ``up`` shows a live table (per node: certificates,
  peers, pending, and the demo wallets' balances as that node sees them)
  until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mycelia.cli.main import CliError, _Group
from mycelia.node.config import CONFIG_FILE_NAME, default_toml
from mycelia.node.keyfile import read_key, write_key
from mycelia.node.store import Store
from mycelia.protocol import Genesis, SignedGenesis, SigningKey, Validator
from mycelia.protocol.economy import MEMBERSHIP_APPROVED, MUTUAL_CREDIT, MutualCreditPolicy

__all__ = ["devnet"]

STATE_FILE = "devnet.json"
GENESIS_FILE = "economy.genesis"
WALLETS = ("alice", "bob", "carol")
STEWARD = "steward"
#: Units are cents: 2 decimals, a default credit limit of 500.00.
DECIMALS = 2
DEFAULT_LIMIT = 500_00
FUNDING = 100_00
START_TIMEOUT_S = 60.0


class DevnetError(CliError):
    pass


@dataclass(frozen=True, slots=True)
class NodeProc:
    index: int
    datadir: Path
    pid: int
    p2p: str


def _node_dirs(root: Path, n: int) -> list[Path]:
    return [root / f"node{i}" for i in range(n)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_state(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(root / STATE_FILE)


# -- making the layout -------------------------------------------------------------------


def _init_node(datadir: Path) -> SigningKey:
    key_path = datadir / "node.key"
    if key_path.exists():
        return read_key(key_path)
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SigningKey.generate()
    write_key(key_path, key, None)
    config = datadir / CONFIG_FILE_NAME
    if not config.exists():
        config.write_text(default_toml(datadir=datadir.absolute(), passphrase_file=None))
    return key


def wallet_key(root: Path, name: str) -> SigningKey:
    path = root / "wallets" / f"{name}.key"
    if path.exists():
        return read_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SigningKey.generate()
    write_key(path, key, None)
    return key


def _make_economy(root: Path, keys: list[SigningKey], steward: SigningKey) -> SignedGenesis:
    path = root / GENESIS_FILE
    if path.exists():
        return SignedGenesis.decode(path.read_bytes())
    n = len(keys)
    genesis = Genesis(
        name="Devnet Hours",
        symbol="DEV",
        decimals=DECIMALS,
        kind=MUTUAL_CREDIT,
        policy=MutualCreditPolicy(MEMBERSHIP_APPROVED, (steward.public,), DEFAULT_LIMIT),
        validators=tuple(Validator(k.public, 1) for k in keys),
        quorum=2 * n // 3 + 1,
        ts_ms=int(time.time() * 1000),
        nonce=os.urandom(8),
    ).checked()
    signed = SignedGenesis.assemble(genesis, {k.public: genesis.sign(k) for k in keys})
    path.write_bytes(signed.encode())
    return signed


def _import(datadir: Path, signed: SignedGenesis) -> None:
    store = Store(datadir / "store")
    try:
        store.add_economy_sync(signed)
    finally:
        store.close()


# -- processes ---------------------------------------------------------------------------


def _start(datadir: Path, bootstrap: list[str]) -> subprocess.Popen[bytes]:
    sets = [
        "p2p.listen=/ip4/127.0.0.1/tcp/0",
        "rpc.port=0",
        "metrics.port=0",
        "sync.interval_s=5",
        "p2p.gossip_flush_ms=50",
    ]
    if bootstrap:
        sets.append("p2p.bootstrap=" + ",".join(bootstrap))
    argv = [sys.executable, "-m", "mycelia.cli", "--config", str(datadir / CONFIG_FILE_NAME)]
    for s in sets:
        argv += ["--set", s]
    log = open(datadir / "node.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [*argv, "node", "run"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop the nodes in order
        )
    finally:
        log.close()


def _wait_ready(datadir: Path, proc: subprocess.Popen[bytes], since: int) -> str:
    """The node's p2p address, once its RPC endpoint file exists."""
    deadline = time.monotonic() + START_TIMEOUT_S
    log_path = datadir / "node.log"
    address = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[since:][-2000:]
            raise DevnetError(f"node in {datadir} exited with {proc.returncode}:\n{tail}")
        text = log_path.read_text(errors="replace")[since:]
        m = re.search(r"p2p listening on (\S+?)(,|\s|$)", text)
        if m:
            address = m.group(1)
        if address and (datadir / "rpc.endpoint").exists() and "node " in text:
            return address
        time.sleep(0.1)
    raise DevnetError(f"node in {datadir} did not become ready in {START_TIMEOUT_S:.0f} s")


def stop_pids(pids: list[int], timeout: float = 30.0) -> list[int]:
    """SIGTERM each, wait; returns the pids that had to be killed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            # Reap our own children so they do not linger as zombies.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


# -- the demo economy's wallets ----------------------------------------------------------


def _fund(root: Path, economy: bytes, node0: Path, console: Console) -> None:
    """Admit the demo wallets and pay each of them, through the RPC only."""
    from mycelia.cli.client import Client, Endpoint

    steward = wallet_key(root, STEWARD)
    with Client(Endpoint.from_datadir(node0)) as client:
        for name in WALLETS:
            member = wallet_key(root, name)
            account = client.account_get(economy, member.did)
            if account.member and account.balance >= FUNDING:
                continue
            if not account.member:
                _settle(client, client.admit(steward, economy, member.did), f"admit {name}")
            _settle(
                client,
                client.transfer(steward, economy, member.did, FUNDING, "welcome"),
                f"fund {name}",
            )
            console.print(Text(f"  {name:<8} {member.did}  admitted, funded {FUNDING / 100:.2f}"))


def _settle(client: Any, entry_id: bytes, what: str) -> None:
    status = client.wait(entry_id, timeout=60)
    if not status.certified:
        raise DevnetError(f"{what}: {status.reason}: {status.detail}")


# -- up and down ---------------------------------------------------------------------------


def _status_table(root: Path, state: dict[str, Any]) -> Table:
    from mycelia.cli.client import Client, ClientError, Endpoint

    economy = bytes.fromhex(state["economy"][2:])
    table = Table(title=f"mycelia devnet in {root}  (Ctrl-C stops it)")
    table.add_column("node")
    table.add_column("peers", justify="right")
    table.add_column("certificates", justify="right")
    table.add_column("pending", justify="right")
    for name in WALLETS:
        table.add_column(name, justify="right")
    for node in state["nodes"]:
        row = [f"node{node['index']}"]
        try:
            with Client(Endpoint.from_datadir(Path(node["datadir"])), timeout=2) as client:
                info = client.node_info()
                certs = sum(e.certificates for e in client.economy_list() if e.id == economy)
                row += [str(len(client.node_peers())), str(certs), str(info.pending)]
                for name in WALLETS:
                    acct = client.account_get(economy, state["wallets"][name])
                    row.append(f"{acct.balance / 10**DECIMALS:.2f}")
        except ClientError as exc:
            row += [f"[red]{exc.reason}[/red]"] + [""] * (2 + len(WALLETS))
        table.add_row(*row)
    return table


def _how_to(root: Path, state: dict[str, Any], console: Console) -> None:
    exe = Path(sys.argv[0]).name if Path(sys.argv[0]).name == "mycelia" else "mycelia"
    node1 = state["nodes"][min(1, len(state["nodes"]) - 1)]["datadir"]
    console.print()
    console.print(Text("In another terminal (the wallets live in the devnet's wallets/):", "bold"))
    console.print(
        Text(
            f"  export MYCELIA_WALLET_DIR={root / 'wallets'} "
            f"MYCELIA_CONFIG={Path(node1) / CONFIG_FILE_NAME}\n"
            f"  {exe} status\n"
            f"  {exe} wallet balance alice --economy {state['economy']}\n"
            f"  {exe} wallet send alice --economy {state['economy']} "
            f"--to {state['wallets']['bob']} --amount 250\n"
            f"  {exe} wallet history bob --economy {state['economy']}"
        )
    )
    console.print()


def up(root: Path, n: int, detach: bool, console: Console) -> None:
    root = root.absolute()
    old = read_state(root)
    if old and any(_alive(p) for p in old.get("pids", [])):
        raise DevnetError(f"a devnet is already running in {root}; stop it with: devnet down")
    root.mkdir(parents=True, exist_ok=True)
    dirs = _node_dirs(root, n)
    keys = [_init_node(d) for d in dirs]
    steward = wallet_key(root, STEWARD)
    signed = _make_economy(root, keys, steward)
    if len(signed.genesis.validators) != n:
        raise DevnetError(
            f"{root} holds a devnet of {len(signed.genesis.validators)} nodes; "
            f"use --nodes {len(signed.genesis.validators)} or another --dir"
        )
    for d in dirs:
        _import(d, signed)
    economy = signed.genesis.id

    console.print(Text(f"starting {n} nodes in {root}", "bold"))
    procs: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    try:
        for i, d in enumerate(dirs):
            since = (d / "node.log").stat().st_size if (d / "node.log").exists() else 0
            proc = _start(d, addresses)
            procs.append(proc)
            addresses.append(_wait_ready(d, proc, since))
            console.print(Text(f"  node{i}  {keys[i].did}  {addresses[-1]}"))
        state = {
            "pids": [p.pid for p in procs],
            "economy": "0x" + economy.hex(),
            "nodes": [
                {"index": i, "datadir": str(d), "did": keys[i].did, "p2p": addresses[i]}
                for i, d in enumerate(dirs)
            ],
            "wallets": {name: wallet_key(root, name).did for name in (STEWARD, *WALLETS)},
        }
        _write_state(root, state)
        console.print(
            Text(f"economy {signed.genesis.name} ({signed.genesis.symbol}) 0x{economy.hex()}")
        )
        _fund(root, economy, dirs[0], console)
    except BaseException:
        stop_pids([p.pid for p in procs])
        (root / STATE_FILE).unlink(missing_ok=True)
        raise
    _how_to(root, state, console)
    if detach:
        console.print(Text(f"running in the background; stop with: devnet down --dir {root}"))
        return
    try:
        with Live(_status_table(root, state), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(1)
                live.update(_status_table(root, state))
    except KeyboardInterrupt:
        pass
    finally:
        console.print()
        console.print(Text("stopping the devnet ...", "bold"))
        killed = stop_pids(state["pids"])
        (root / STATE_FILE).unlink(missing_ok=True)
        console.print(Text("stopped" + (f" ({len(killed)} killed)" if killed else " cleanly")))


def down(root: Path, console: Console) -> None:
    root = root.absolute()
    state = read_state(root)
    if state is None:
        raise DevnetError(f"no devnet state in {root} ({STATE_FILE} not found)")
    pids = [p for p in state.get("pids", []) if _alive(p)]
    killed = stop_pids(pids)
    (root / STATE_FILE).unlink(missing_ok=True)
    console.print(
        Text(f"stopped {len(pids)} nodes" + (f" ({len(killed)} killed)" if killed else ""))
    )


@click.group(cls=_Group)
def devnet() -> None:
    """A local network of nodes for trying mycelia out."""


@devnet.command("up")
@click.option("--nodes", "n", type=click.IntRange(1, 16), default=4, show_default=True)
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devnet"),
    show_default=True,
    help="Where the nodes, wallets and state live (reused if it exists).",
)
@click.option("--detach", is_flag=True, help="Leave the nodes running and return.")
def devnet_up(n: int, root: Path, detach: bool) -> None:
    """Start N nodes on loopback with a demo economy and funded wallets."""
    up(root, n, detach, Console(soft_wrap=True))


@devnet.command("down")
@click.option(
    "--dir",
    "root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".devnet"),
    show_default=True,
)
def devnet_down(root: Path) -> None:
    """Stop a devnet left running in the background."""
    down(root, Console(soft_wrap=True))
