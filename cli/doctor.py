"""``mycelia doctor``: what is wrong with this node's setup, and what to do.

Why this exists: an operator on a Raspberry Pi should not have to know that
a world-readable key, a store at the edge of its map, an unsynchronised
clock (clocks bound channel expiry and voting windows) or an RPC bound to
the LAN are problems. Each check reads, never writes (the store is opened
read-only beside a running node; the cgroup check creates nothing), and
gives a verdict:

* ``ok``   — nothing to do;
* ``warn`` — works, but should be looked at (advice says what to do);
* ``fail`` — the node will not start, or runs unsafely.

The exit code is the worst verdict: 0 ok, 1 warn, 2 fail. ``--json``
prints ``{"worst": verdict, "checks": [{"name", "verdict", "detail",
"advice"}]}``. The checks and their thresholds are listed in
docs/install.md ("mycelia doctor").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import click
import lmdb
from rich.text import Text

from mycelia.cli.backup import store_facts
from mycelia.cli.main import CliError, connect, json_option, load, rpc_options
from mycelia.cli.wallet import stdout
from mycelia.client import ClientError
from mycelia.client.keyfile import KeyFileError, key_info
from mycelia.node.config import Config
from mycelia.node.store import SCHEMA_VERSION
from mycelia.node.store.migrations import OLDEST_SCHEMA

__all__ = ["Check", "doctor"]

OK, WARN, FAIL = "ok", "warn", "fail"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
MIB = 1 << 20
#: Map headroom: warn at 75% of store.max_map_size_mb, fail at 90%.
MAP_WARN, MAP_FAIL = 0.75, 0.90
#: Free disk below which the node cannot commit for long.
DISK_FAIL_BYTES = 256 * MIB
#: How long a time-sync probe (timedatectl, chronyc) may take.
_PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome; ``advice`` is empty when there is nothing to do."""

    name: str
    verdict: str
    detail: str
    advice: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in _RANK:
            raise ValueError(f"not a verdict: {self.verdict!r}")


def check_key(config: Config) -> Check:
    path = config.node.key_file
    try:
        info = key_info(path)
    except KeyFileError as exc:
        text = str(exc)
        if "by others" in text:
            return Check("key", FAIL, text, f"chmod 600 {path}")
        return Check("key", FAIL, text, "create one with `mycelia init` or restore it")
    kind = "encrypted" if info.encrypted else "plain"
    return Check("key", OK, f"{path}: {info.did}, mode 0600, {kind}")


def check_store(config: Config) -> list[Check]:
    """The schema, and the map's headroom against store.max_map_size_mb."""
    store = config.node.datadir / "store"
    if not (store / "data.mdb").is_file():
        advice = "start the node: it creates one"
        return [Check("store_schema", WARN, f"no store at {store} yet", advice)]
    try:
        facts = store_facts(store)
    except (CliError, lmdb.Error) as exc:
        detail = exc.format_message() if isinstance(exc, CliError) else f"{store}: {exc}"
        return [Check("store_schema", FAIL, detail, "restore a backup (mycelia restore)")]
    checks = []
    if facts.schema is None:
        checks.append(Check("store_schema", FAIL, f"{store} has no schema version", ""))
    elif facts.schema > SCHEMA_VERSION:
        checks.append(
            Check(
                "store_schema",
                FAIL,
                f"schema {facts.schema} is newer than this mycelia reads ({SCHEMA_VERSION})",
                "run the mycelia version that wrote the store (upgrade this install)",
            )
        )
    elif facts.schema < OLDEST_SCHEMA:
        checks.append(
            Check(
                "store_schema",
                FAIL,
                f"schema {facts.schema} is older than this mycelia migrates ({OLDEST_SCHEMA})",
                "run an intermediate mycelia version once to migrate it",
            )
        )
    elif facts.schema < SCHEMA_VERSION:
        checks.append(
            Check(
                "store_schema",
                WARN,
                f"schema {facts.schema}; the node migrates it to {SCHEMA_VERSION} at start",
                "back it up first: mycelia backup DIR",
            )
        )
    else:
        checks.append(Check("store_schema", OK, f"schema {facts.schema}"))
    bound = config.store.max_map_size_mb * MIB
    ratio = facts.used_bytes / bound
    detail = (
        f"{facts.used_bytes // MIB} MiB used of store.max_map_size_mb "
        f"{config.store.max_map_size_mb} ({ratio:.0%})"
    )
    advice = "raise store.max_map_size_mb (and free disk for it)"
    if ratio >= MAP_FAIL:
        checks.append(Check("store_map", FAIL, detail, advice))
    elif ratio >= MAP_WARN:
        checks.append(Check("store_map", WARN, detail, advice))
    else:
        checks.append(Check("store_map", OK, detail))
    return checks


def check_disk(config: Config) -> Check:
    folder = config.node.datadir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    store = config.node.datadir / "store" / "data.mdb"
    size = store.stat().st_size if store.is_file() else 0
    growth = max(0, config.store.max_map_size_mb * MIB - size)
    detail = f"{usage.free // MIB} MiB free on {folder}"
    if usage.free < DISK_FAIL_BYTES:
        return Check("disk", FAIL, detail, "free disk space: the store cannot commit without it")
    if usage.free < growth:
        return Check(
            "disk",
            WARN,
            f"{detail}, less than the store may grow to ({growth // MIB} MiB more)",
            "free disk space or lower store.max_map_size_mb",
        )
    return Check("disk", OK, detail)


Runner = Callable[[list[str]], str | None]


def _run(argv: list[str]) -> str | None:
    """The output of a fixed local probe, or None if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_time_sync(run: Runner = _run) -> Check:
    """Whether the system clock is disciplined (timedatectl, then chronyc)."""
    advice = "install and enable a time service: apt-get install systemd-timesyncd (or chrony)"
    synced = run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    if synced is not None and synced.strip() in ("yes", "no"):
        if synced.strip() == "yes":
            return Check("time_sync", OK, "timedatectl: NTP synchronized")
        return Check("time_sync", WARN, "timedatectl: the clock is not NTP synchronized", advice)
    tracking = run(["chronyc", "-n", "tracking"])
    if tracking is not None:
        if "Leap status     : Normal" in tracking:
            return Check("time_sync", OK, "chrony: synchronized")
        return Check("time_sync", WARN, "chrony: not synchronized", "check `chronyc sources`")
    return Check(
        "time_sync",
        WARN,
        "unknown: neither timedatectl nor chronyc answered",
        advice + "; clocks bound channel expiry and voting windows",
    )


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_ports(ctx: click.Context, config: Config) -> list[Check]:
    """Where the running node listens, as it reports (node_info)."""
    try:
        with connect(ctx) as client:
            info = client.node_info()
    except ClientError as exc:
        return [
            Check(
                "ports",
                WARN,
                f"the node's RPC does not answer ({exc}); ports not checked",
                "start the node (systemctl start mycelia) or check `journalctl -u mycelia`",
            )
        ]
    checks = []
    extra = {f"http://{bind}" for bind in config.rpc.extra_bind}
    open_rpc = [url for url in info.rpc if not _loopback(url) and url not in extra]
    if open_rpc:
        checks.append(
            Check(
                "rpc_bind",
                FAIL if not config.rpc.auth else WARN,
                f"the RPC listens beyond loopback: {', '.join(open_rpc)}",
                "set rpc.host = 127.0.0.1 (use rpc.extra_bind with rpc.auth for a private network)",
            )
        )
    else:
        checks.append(Check("rpc_bind", OK, "RPC on " + ", ".join(info.rpc or ("unix only",))))
    if info.addresses:
        checks.append(Check("p2p_listen", OK, "p2p on " + ", ".join(info.addresses)))
    else:
        checks.append(
            Check("p2p_listen", FAIL, "the node listens on no p2p address", "check p2p.listen")
        )
    return checks


def check_cgroup(config: Config) -> Check:
    """Whether compute jobs get the cgroup metering tier, read without
    creating anything (the node itself probes at start)."""
    from mycelia.node.compute.cgroup import CgroupUnavailable, locate

    wanted = config.compute.enabled
    try:
        base, _ = locate() if config.compute.cgroup is None else (config.compute.cgroup, None)
        if not (base / "cgroup.procs").is_file():
            usable, why = False, f"{base} is not a cgroup v2 directory"
        else:
            usable = os.access(base, os.W_OK)
            why = f"{base} is {'delegated and writable' if usable else 'not writable by this user'}"
    except CgroupUnavailable as exc:
        usable, why = False, str(exc)
    if usable:
        return Check("compute_cgroup", OK, f"cgroup tier available: {why}")
    if not wanted:
        return Check("compute_cgroup", OK, f"compute off; cgroup tier not available: {why}")
    verdict = FAIL if config.compute.metering == "cgroup" else WARN
    return Check(
        "compute_cgroup",
        verdict,
        f"compute jobs fall back to the shim tier: {why}",
        "run the node under the unit with Delegate=yes (deploy/mycelia.service)",
    )


def _show(checks: list[Check], worst: str) -> None:
    out = stdout()
    style = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    for check in checks:
        line = Text(f"{check.verdict:<4} ", style=style[check.verdict])
        line.append(f"{check.name:<15} {check.detail}")
        out.print(line)
        if check.advice:
            out.print(Text(f"{'':20} -> {check.advice}"))
    out.print(Text(f"worst: {worst}", style=style[worst]))


@click.command("doctor")
@rpc_options
@json_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the key, store, disk, clock, ports and compute setup.

    Exit code: 0 all ok, 1 a warning, 2 a failure.
    """
    config = load(ctx)
    checks = [check_key(config), *check_store(config), check_disk(config), check_time_sync()]
    checks += check_ports(ctx, config)
    checks.append(check_cgroup(config))
    worst = max((c.verdict for c in checks), key=_RANK.__getitem__)
    if as_json:
        body = {
            "worst": worst,
            "checks": [
                {"name": c.name, "verdict": c.verdict, "detail": c.detail, "advice": c.advice}
                for c in checks
            ],
        }
        click.echo(json.dumps(body, indent=2, sort_keys=True))
    else:
        _show(checks, worst)
    ctx.exit(_RANK[worst])
