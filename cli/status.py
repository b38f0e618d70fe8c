"""``mycelia status``: what the running node is, who it talks to, and how
far along it is — one screen for an operator, or ``--json`` for a script.

Why this exists: "is my node healthy?" should be one command. It asks the
node for ``node_info``, ``node_peers`` and ``economy_list`` in a single
JSON-RPC batch (one round trip, one consistent moment) and shows the node's
identity, every address it listens on (libp2p, RPC, metrics, ingest: as
bound, so an operator or a tool need not read the logs for them),
validator role, pending submissions, sync lag, peer count and the
economies it follows with their certificate and fork counts.

Forks come first in the operator's eye: for an economy whose listing
counts forks, the evidence is fetched (``economy_forks``) and verified here
against the genesis (the client does), and a table names each forked
author and seq, the two entries and the validators that signed both — the
ones to stop trusting. Nothing of those authors is applied past the fork.
Economies without forks cost no extra call.

``--json`` prints ``{"node": <node_info>, "peers": [peer ids], "economies":
[<economy_list items>], "sensors": {economy id: [<sensor_devices items>]},
"forks": {economy id: [<economy_forks items>]}}`` (economies with forks
only), the RPC's own shapes.
"""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from mycelia.api import methods as declared
from mycelia.api.encoding import hex_out
from mycelia.api.types import ComputeInfo
from mycelia.cli.economy import economies_table
from mycelia.cli.main import connect, json_option, rpc_options
from mycelia.cli.wallet import print_json, stdout
from mycelia.client import RpcError, parse_result, peer_ids

__all__ = ["status"]


@click.command("status")
@rpc_options
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the running node: identity, role, peers, sync and economies."""
    with connect(ctx) as client:
        results = client.batch([("node_info", {}), ("node_peers", {}), ("economy_list", {})])
    for result in results:
        if isinstance(result, RpcError):
            raise result
    info = parse_result(declared.NODE_INFO, results[0])
    peers = peer_ids(results[1])
    economies = list(parse_result(declared.ECONOMY_LIST, results[2]))
    with connect(ctx) as client:
        hosted = {e.id: client.sensor_devices(e.id) for e in economies if e.kind == "impact"}
        forks = {e.id: client.economy_forks(e.id) for e in economies if e.forks}
    if as_json:
        print_json(
            {
                "node": info.to_json(),
                "peers": peers,
                "economies": [e.to_json() for e in economies],
                "sensors": {hex_out(k): [d.to_json() for d in v] for k, v in hosted.items()},
                "forks": {hex_out(k): [f.to_json() for f in v] for k, v in forks.items()},
            }
        )
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("node", info.did)
    table.add_row("peer id", info.peer_id)
    table.add_row("version", info.version)
    table.add_row("addresses", "\n".join(info.addresses) or "none")
    rpc = [*info.rpc, *([f"unix:{info.rpc_unix}"] if info.rpc_unix else [])]
    table.add_row("rpc", "\n".join(rpc) or "-")
    table.add_row("metrics", info.metrics or "off")
    table.add_row("ingest", info.ingest or "off")
    if info.validator:
        votes_in = sum(info.did in e.validators for e in economies)
        role = f"validator (votes in {votes_in} of {len(economies)} economies)"
    else:
        role = "follower (does not vote)"
    table.add_row("role", role)
    table.add_row("pending", f"{info.pending} submissions awaiting certification")
    table.add_row("sync lag", f"{info.sync_lag} certificates behind its peers")
    table.add_row("peers", str(len(peers)))
    table.add_row("compute", _compute_row(info.compute))
    out = stdout()
    out.print(table)
    out.print(Text(f"economies: {len(economies)}", style="bold"))
    if economies:
        out.print(economies_table(economies))
    names = {e.id: e.name for e in economies}
    for economy_id, found in forks.items():
        if not found:
            continue
        title = (
            f"FORKS in {names[economy_id]}: two certificates for one slot; nothing of these "
            "authors is applied past it"
        )
        table = Table(title=title, title_style="bold red")
        for column in ("author", "seq", "entries", "signed both (misbehaved)"):
            table.add_column(column)
        for f in found:
            table.add_row(
                f.author,
                str(f.seq),
                "\n".join(hex_out(i) for i in f.evidence.entry_ids),
                "\n".join(f.guilty) or "-",
            )
        out.print(table)
    for economy_id, devices in hosted.items():
        if not devices:
            continue
        sensors = Table(title=f"sensors hosted in {names[economy_id]}")
        for column in ("device", "kind", "owner", "readings", "last accepted", "last attested"):
            sensors.add_column(column)
        for d in devices:
            sensors.add_row(
                hex_out(d.device)[:14] + "…",
                d.kind,
                d.owner,
                str(d.readings),
                "-" if d.last_accepted is None else str(d.last_accepted),
                "-" if d.last_attested is None else str(d.last_attested),
            )
        out.print(sensors)
    # Followed by id, genesis not fetched from peers yet.
    known = {e.id for e in economies}
    for economy_id in info.economies:
        if economy_id not in known:
            out.print(Text(f"following {hex_out(economy_id)}: waiting for its genesis from peers"))


def _compute_row(compute: ComputeInfo | None) -> str:
    """The node's own compute in one cell: what it offers, the metering tier
    it chose at start and why (docs/compute-runner.md), and its jobs."""
    if compute is None:
        return "unknown (the node predates compute)"
    relayed = f"{compute.relayed} jobs relayed for its wallets"
    if not compute.enabled:
        return f"off (runs no jobs for others); {relayed}"
    tier = compute.metering or "none"
    why = f" ({compute.metering_why})" if compute.metering_why else ""
    runtimes = ", ".join(compute.runtimes) or "none"
    return (
        f"provider of {runtimes}; metering: {tier}{why}\n{compute.running} jobs running; {relayed}"
    )
