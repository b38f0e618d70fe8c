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
  each node with SIGTERM (a clean stop) and waits for it. They are started
  by the launcher the tests use (``mycelia.testing.processes.Proc``,
  logging to the node's ``node.log``, detached), which returns once a node
  has logged its addresses.
* Sensors (``docs/sensors.md``): a second genesis, the impact economy
  *Solar Impact* (SUN: 1 credit per 1000 Wh of ``energy_wh``, device kind
  ``solar-meter``, open membership), is made and imported the same way
  (``impact.genesis``). node0 also runs the sensor ingest (``[sensors]`` on
  loopback, on the port the kernel chose — read from its log into
  ``devnet.json`` — attesting every :data:`ATTEST_INTERVAL_S` s), and
  two device keys in ``devices/`` — one Ed25519, one P-256, as a secure
  element holds — are registered through the RPC, owned by ``alice`` and
  hosted by node0. A background ``mycelia sensor simulate`` process (its
  log: ``simulator.log``) plays them as solar meters on a sped-up daylight
  curve and, as ``alice``, claims each certified attestation: the devnet
  owns it like a node (its pid is in ``devnet.json``; Ctrl-C and ``down``
  stop it).
* Compute (``docs/compute.md``): a third genesis, the issued economy
  *Compute Credits* (CPU, 3 decimals, open membership, the ``issuer``
  wallet its issuer), is made and imported the same way
  (``compute.genesis``); the issuer mints :data:`CREDITS` to ``alice``
  through the RPC. node2 (the last node of a smaller devnet) is a compute
  provider: its ``[compute]`` (as ``--set`` options) offers two runtimes,
  ``primes`` (CPU-bound: how many primes are below N, N on stdin) and
  ``words`` (word frequencies of stdin), both ``cli/demo_jobs.py`` run by
  its path with an interpreter the job user may execute (``nobody`` when
  the devnet runs as root, else the devnet's own user; probed before the
  node starts), at integer prices (:data:`RUNTIME_PRICES`). Any node relays
  a wallet's job: ``mycelia compute run --economy <CPU> --runtime primes
  --input FILE --max-spend N --wallet alice``.
* Without ``--detach``, ``up`` shows a live table (per node: certificates,
  peers, pending, and the demo wallets' balances as that node sees them;
  per device: readings accepted, attested, claimed, and alice's credits;
  the provider's jobs, metered CPU seconds and credits paid to it)
  until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mycelia.cli.main import CliError, _Group
from mycelia.client.keyfile import read_key, write_key
from mycelia.node.config import CONFIG_FILE_NAME, default_toml
from mycelia.node.store import Store
from mycelia.protocol import Genesis, SignedGenesis, SigningKey
from mycelia.protocol.economy import ISSUED, MEMBERSHIP_APPROVED, MEMBERSHIP_OPEN, MUTUAL_CREDIT
from mycelia.protocol.sensors import ED25519, P256
from mycelia.testing.economies import genesis, impact_genesis, sign_genesis
from mycelia.testing.processes import Proc, ProcError

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
IMPACT_GENESIS_FILE = "impact.genesis"
#: The impact economy: 1000 Wh of energy_wh make one credit (decimals 0).
UNITS_PER_CREDIT = 1_000
#: The demo devices (name, key type), owned by OWNER and hosted by node0.
DEVICES = (("sun-ed25519", ED25519), ("sun-p256", P256))
OWNER = "alice"
#: Short, so that credits show up within seconds.
ATTEST_INTERVAL_S = 5
#: The simulator: a reading per device per second, the sun 600x faster
#: (a day in 144 s) from 07:00, a claim every 10 s.
SIM_RATE = 1
SIM_SPEED = 600
SIM_START_HOUR = 7
CLAIM_EVERY_S = 10
COMPUTE_GENESIS_FILE = "compute.genesis"
#: The compute economy: issued credits, 3 decimals, minted to BUYER.
ISSUER = "issuer"
BUYER = "alice"
COMPUTE_DECIMALS = 3
CREDITS = 1_000_000  # 1000.000 CPU
ISSUER_CAP = 1_000_000_000
#: Each runtime's limits and prices (minor units: thousandths of a CPU).
RUNTIME_PRICES: dict[str, dict[str, int | float]] = {
    "primes": {"fee": 10, "per_cpu_ms": 1, "per_wall_s": 5, "per_mib_s": 0,
               "max_cpu_s": 30.0, "max_wall_s": 60.0, "memory_mib": 256},
    "words": {"fee": 5, "per_cpu_ms": 1, "per_wall_s": 2, "per_mib_s": 0,
              "max_cpu_s": 10.0, "max_wall_s": 30.0, "memory_mib": 128},
}  # fmt: skip
#: The provider's terms: offers gossiped often (a newcomer's node hears of
#: them within seconds), channels closed soon after a job's final voucher.
COMPUTE_TERMS = (
    "compute.enabled=true",
    "compute.offer_interval_s=5",
    "compute.final_voucher_s=2",
)
DEMO_JOBS = Path(__file__).with_name("demo_jobs.py")


class DevnetError(CliError):
    pass


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


def _make_economy(
    path: Path, keys: list[SigningKey], make: Callable[[int, bytes], Genesis]
) -> SignedGenesis:
    """The devnet economy stored at ``path``, or a new one — ``make(ts_ms,
    nonce)``: a genesis validated by every node (weight 1, quorum > 2/3) —
    signed by every node key."""
    if path.exists():
        return SignedGenesis.decode(path.read_bytes())
    g = make(int(time.time() * 1000), os.urandom(8)).checked()
    signed = sign_genesis(g, keys)
    path.write_bytes(signed.encode())
    return signed


def _import(datadir: Path, signed: SignedGenesis) -> None:
    store = Store(datadir / "store")
    try:
        store.add_economy_sync(signed)
    finally:
        store.close()


# -- processes ---------------------------------------------------------------------------


#: node0's ingest: on loopback, on a port the kernel chooses (the node logs
#: it), attesting often.
SENSOR_SETS = (
    "sensors.enabled=true",
    "sensors.host=127.0.0.1",
    "sensors.port=0",
    f"sensors.attest_interval_s={ATTEST_INTERVAL_S}",
)


#: The devnet's timings: a sync round every 5 s, gossip flushed every 50 ms.
TUNING = ("sync.interval_s=5", "p2p.gossip_flush_ms=50")


def job_user() -> str:
    """Who runs the jobs: ``nobody`` under root, else this user."""
    if os.geteuid() == 0:
        return "nobody"
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def job_python() -> str | None:
    """An interpreter the job user can run the demo jobs with (None: none)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        argv = [candidate, "-I", "-S", str(DEMO_JOBS), "primes"]
        try:
            probe = subprocess.run(
                argv,
                input=b"10",
                user=job_user() if os.geteuid() == 0 else None,
                extra_groups=[] if os.geteuid() == 0 else None,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.startswith(b"4 primes"):
            return candidate
    return None


def compute_sets(python: str) -> tuple[str, ...]:
    """node2's ``[compute]``, as ``--set`` options (an inline TOML table of
    the runtimes)."""
    tables = []
    for name, terms in RUNTIME_PRICES.items():
        command = json.dumps([python, "-I", "-S", str(DEMO_JOBS), name])
        items = ", ".join(f"{k} = {v}" for k, v in terms.items())
        tables.append(f"{name} = {{ command = {command}, {items} }}")
    return (
        *COMPUTE_TERMS,
        f"compute.user={job_user()}",
        "compute.runtimes={ " + ", ".join(tables) + " }",
    )


def _start(
    datadir: Path, bootstrap: list[str], *, sensors: bool, sets: tuple[str, ...] = ()
) -> Proc:
    """``mycelia node run`` for ``datadir``, dialling ``bootstrap``, logging
    to its ``node.log``, in its own session (Ctrl-C goes to us; we stop the
    nodes in order); returns once it serves (with ``sensors``, its ingest too)."""
    try:
        return Proc(
            datadir,
            bootstrap,
            (*(SENSOR_SETS if sensors else ()), *sets),
            tuning=TUNING,
            log_file=datadir / "node.log",
            detach=True,
            ingest=sensors,
            timeout=START_TIMEOUT_S,
        )
    except ProcError as exc:
        raise DevnetError(str(exc)) from None


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
    from mycelia.client import Client, Endpoint

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


def _mint_credits(root: Path, economy: bytes, node0: Path, console: Console) -> None:
    """The issuer mints CREDITS to BUYER, through the RPC (once)."""
    from mycelia.client import Client, Endpoint

    issuer = wallet_key(root, ISSUER)
    buyer = wallet_key(root, BUYER)
    with Client(Endpoint.from_datadir(node0)) as client:
        if client.account_get(economy, issuer.did).minted >= CREDITS:
            return
        _settle(client, client.mint(issuer, economy, buyer.did, CREDITS), f"mint to {BUYER}")
    amount = CREDITS / 10**COMPUTE_DECIMALS
    console.print(Text(f"  {BUYER:<8} {buyer.did}  minted {amount:.3f} CPU"))


def _register_devices(
    root: Path, economy: bytes, node0: Path, host: str, console: Console
) -> dict[str, str]:
    """Make the demo device keys and register them, hosted by node0 and
    owned by OWNER, through the RPC as ``mycelia sensor register`` does;
    their ids by name."""
    from mycelia.cli.sensor import MODELS, create_device, load_device
    from mycelia.client import Client, Endpoint

    folder = root / "devices"
    owner = wallet_key(root, OWNER)
    solar = MODELS["solar"]
    out = {}
    with Client(Endpoint.from_datadir(node0)) as client:
        hosted = {d.device for d in client.sensor_devices(economy)}
        for name, key_type in DEVICES:
            if (folder / f"{name}.device").exists():
                key = load_device(name, folder)
            else:
                key, _ = create_device(name, key_type, folder)
            out[name] = "0x" + key.device.hex()
            if key.device in hosted:
                continue
            entry_id = client.register_device(
                owner, economy, key, solar.device_kind, host, [solar.metric]
            )
            _settle(client, entry_id, f"register {name}")
            console.print(Text(f"  {name:<12} {out[name]}  {key_type}, registered, owner {OWNER}"))
    return out


def _start_simulator(
    root: Path, economy: bytes, node0: Path, ingest: str
) -> subprocess.Popen[bytes]:
    """``mycelia sensor simulate`` for the demo devices, claiming as OWNER."""
    argv = [
        sys.executable,
        "-m",
        "mycelia.cli",
        "--config",
        str(node0 / CONFIG_FILE_NAME),
        "sensor",
        "simulate",
        "--economy",
        "0x" + economy.hex(),
        "--to",
        ingest,
        *(name for name, _ in DEVICES),
        "--rate",
        str(SIM_RATE),
        "--speed",
        str(SIM_SPEED),
        "--start-hour",
        str(SIM_START_HOUR),
        "--claim",
        OWNER,
        "--claim-every",
        str(CLAIM_EVERY_S),
    ]
    env = {
        **os.environ,
        "MYCELIA_WALLET_DIR": str(root / "wallets"),
        "MYCELIA_DEVICE_DIR": str(root / "devices"),
    }
    log = open(root / "simulator.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()


def _settle(client: Any, entry_id: bytes, what: str) -> None:
    status = client.wait(entry_id, timeout=60)
    if not status.certified:
        raise DevnetError(f"{what}: {status.reason}: {status.detail}")


# -- up and down ---------------------------------------------------------------------------


def _status_table(root: Path, state: dict[str, Any]) -> Table | Group:
    from mycelia.client import Client, ClientError, Endpoint

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
    parts: list[Table] = [table]
    impact = state.get("impact")
    if impact is not None:
        parts.append(_impact_table(state, impact))
    comp = state.get("compute")
    if comp is not None:
        parts.append(_compute_table(state, comp))
    return parts[0] if len(parts) == 1 else Group(*parts)


def _metric(url: str, name: str) -> float:
    """The sum of a metric's samples at a Prometheus endpoint."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=2).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def _compute_table(state: dict[str, Any], comp: dict[str, Any]) -> Table:
    """The provider as it sees itself: jobs, metered CPU, credits paid."""
    from mycelia.client import Client, ClientError, Endpoint

    economy = bytes.fromhex(comp["economy"][2:])
    provider = state["nodes"][comp["provider"]]
    runtimes = ", ".join(comp["runtimes"]) or "no runtime"
    table = Table(title=f"Compute Credits: node{comp['provider']} provides {runtimes}")
    for name in ("jobs running", "jobs ended", "metered cpu-s", "paid to the provider", BUYER):
        table.add_column(name, justify="right")
    try:
        with Client(Endpoint.from_datadir(Path(provider["datadir"])), timeout=2) as c:
            info = c.node_info()
            running = 0 if info.compute is None else info.compute.running
            url = info.metrics
            ended = cpu = 0.0
            if url is not None:
                ended = _metric(url, "mycelia_compute_jobs_total")
                cpu = _metric(url, "mycelia_compute_cpu_seconds_total")
            paid = c.account_get(economy, provider["did"]).balance
            mine = c.account_get(economy, state["wallets"][BUYER]).balance
        d = COMPUTE_DECIMALS
        table.add_row(
            str(running),
            f"{ended:.0f}",
            f"{cpu:.3f}",
            f"{paid / 10**d:.3f} CPU",
            f"{mine / 10**d:.3f} CPU",
        )
    except (ClientError, OSError, ValueError) as exc:
        table.caption = f"[red]node{comp['provider']}: {getattr(exc, 'reason', exc)}[/red]"
    return table


def _impact_table(state: dict[str, Any], impact: dict[str, Any]) -> Table:
    """The impact economy as node0 (the devices' host) sees it."""
    from mycelia.client import Client, ClientError, Endpoint

    economy = bytes.fromhex(impact["economy"][2:])
    table = Table(title=f"Solar Impact: devices hosted by node0, owned by {OWNER}")
    for name in (
        "device",
        "readings accepted",
        "attested through",
        "claimed through",
        "attestations to claim",
    ):
        table.add_column(name, justify="left" if name == "device" else "right")
    try:
        with Client(Endpoint.from_datadir(Path(state["nodes"][0]["datadir"])), timeout=2) as c:
            hosted = {d.device: d for d in c.sensor_devices(economy)}
            for name, device_hex in impact["devices"].items():
                device = bytes.fromhex(device_hex[2:])
                d = hosted.get(device)
                claimable = c.sensor_claimable(economy, device)
                table.add_row(
                    name,
                    "-" if d is None else str(d.readings),
                    "-" if d is None or d.last_attested is None else str(d.last_attested),
                    "-" if claimable.cursor < 0 else str(claimable.cursor),
                    str(len(claimable.attestations)),
                )
            credits = c.account_get(economy, state["wallets"][OWNER]).balance
        table.caption = f"{OWNER}'s credits: {credits} SUN (1 SUN = {UNITS_PER_CREDIT} Wh)"
    except ClientError as exc:
        table.caption = f"[red]node0: {exc.reason}[/red]"
    return table


def command_as_typed() -> str:
    """How to run this very ``mycelia`` when pasted into another terminal:
    the bare name only if that is what ``PATH`` finds (``make run`` starts it
    from ``.venv/bin``, which is not on a new terminal's ``PATH``)."""
    here = Path(sys.executable).parent / "mycelia"
    if not here.exists():
        return f"{sys.executable} -m mycelia.cli"
    found = shutil.which("mycelia")
    if found is not None and Path(found).resolve() == here.resolve():
        return "mycelia"
    return str(here)


def _how_to(root: Path, state: dict[str, Any], console: Console) -> None:
    exe = command_as_typed()
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
    impact = state.get("impact")
    if impact is not None:
        console.print(Text("Sensors (the device keys live in the devnet's devices/):", "bold"))
        console.print(
            Text(
                f"  export MYCELIA_DEVICE_DIR={root / 'devices'}\n"
                f"  {exe} sensor audit sun-p256 --economy {impact['economy']}\n"
                f"  {exe} wallet balance {OWNER} --economy {impact['economy']}\n"
                f"  {exe} sensor keygen my-meter --type p256\n"
                f"  {exe} sensor register my-meter --economy {impact['economy']} --owner bob "
                f"--host {state['nodes'][0]['datadir']} --metric energy_wh:Wh:0:0:100000\n"
                f"  {exe} sensor push my-meter --economy {impact['economy']} "
                f"--to {impact['ingest']} --metric energy_wh --value 1500\n"
                f"  {exe} sensor claim my-meter --economy {impact['economy']} --owner bob"
            )
        )
    comp = state.get("compute")
    if comp is not None:
        console.print(
            Text(f"Compute (node{comp['provider']} runs the jobs, any node relays):", "bold")
        )
        console.print(
            Text(
                f"  {exe} compute offers --economy {comp['economy']}\n"
                f"  echo 5000000 > n.txt\n"
                f"  {exe} compute run --economy {comp['economy']} --runtime primes "
                f"--input n.txt --max-spend 50000 --wallet {BUYER}\n"
                f"  {exe} compute run --economy {comp['economy']} --runtime words "
                f"--input README.md --max-spend 20000 --wallet {BUYER}\n"
                f"  {exe} compute channels {BUYER} --economy {comp['economy']}"
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
    signed = _make_economy(
        root / GENESIS_FILE,
        keys,
        lambda ts_ms, nonce: genesis(
            kind=MUTUAL_CREDIT,
            membership=MEMBERSHIP_APPROVED,
            validators=keys,
            stewards=[steward],
            default_limit=DEFAULT_LIMIT,
            name="Devnet Hours",
            symbol="DEV",
            decimals=DECIMALS,
            ts_ms=ts_ms,
            nonce=nonce,
        ),
    )
    if len(signed.genesis.validators) != n:
        raise DevnetError(
            f"{root} holds a devnet of {len(signed.genesis.validators)} nodes; "
            f"use --nodes {len(signed.genesis.validators)} or another --dir"
        )
    impact_signed = _make_economy(
        root / IMPACT_GENESIS_FILE,
        keys,
        lambda ts_ms, nonce: impact_genesis(
            validators=keys,
            membership=MEMBERSHIP_OPEN,
            metric="energy_wh",
            exponent=0,
            units_per_credit=UNITS_PER_CREDIT,
            device_kinds=("solar-meter",),
            name="Solar Impact",
            symbol="SUN",
            decimals=0,
            ts_ms=ts_ms,
            nonce=nonce,
        ),
    )
    issuer = wallet_key(root, ISSUER)
    compute_signed = _make_economy(
        root / COMPUTE_GENESIS_FILE,
        keys,
        lambda ts_ms, nonce: genesis(
            kind=ISSUED,
            membership=MEMBERSHIP_OPEN,
            validators=keys,
            issuers=[(issuer, ISSUER_CAP)],
            name="Compute Credits",
            symbol="CPU",
            decimals=COMPUTE_DECIMALS,
            ts_ms=ts_ms,
            nonce=nonce,
        ),
    )
    for d in dirs:
        _import(d, signed)
        _import(d, impact_signed)
        _import(d, compute_signed)
    provider = min(2, n - 1)
    python = job_python()
    if python is None:
        console.print(
            Text(f"warning: {job_user()} cannot run {DEMO_JOBS}: node{provider} runs no jobs")
        )
    economy = signed.genesis.id
    impact = impact_signed.genesis.id
    ingest = ""

    console.print(Text(f"starting {n} nodes in {root}", "bold"))
    nodes: list[Proc] = []
    simulator: subprocess.Popen[bytes] | None = None
    addresses: list[str] = []
    try:
        for i, d in enumerate(dirs):
            extra = compute_sets(python) if i == provider and python is not None else ()
            node = _start(d, addresses, sensors=i == 0, sets=extra)
            nodes.append(node)
            addresses.append(node.address)
            ingest = node.ingest or ingest
            console.print(Text(f"  node{i}  {keys[i].did}  {addresses[-1]}"))
        state = {
            "pids": [p.pid for p in nodes],
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
        console.print(
            Text(f"economy {impact_signed.genesis.name} (SUN) 0x{impact.hex()}; ingest {ingest}")
        )
        devices = _register_devices(root, impact, dirs[0], keys[0].did, console)
        simulator = _start_simulator(root, impact, dirs[0], ingest)
        # The simulator is stopped first, before the nodes it talks to.
        state["pids"] = [simulator.pid, *(p.pid for p in nodes)]
        state["impact"] = {
            "economy": "0x" + impact.hex(),
            "ingest": ingest,
            "owner": OWNER,
            "devices": devices,
            "simulator": simulator.pid,
        }
        compute_id = compute_signed.genesis.id
        console.print(Text(f"economy {compute_signed.genesis.name} (CPU) 0x{compute_id.hex()}"))
        _mint_credits(root, compute_id, dirs[0], console)
        state["wallets"][ISSUER] = issuer.did
        state["compute"] = {
            "economy": "0x" + compute_id.hex(),
            "provider": provider,
            "runtimes": sorted(RUNTIME_PRICES) if python is not None else [],
        }
        _write_state(root, state)
    except BaseException:
        started = [p.pid for p in nodes]
        stop_pids(started if simulator is None else [simulator.pid, *started])
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
        Text(f"stopped {len(pids)} processes" + (f" ({len(killed)} killed)" if killed else ""))
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
