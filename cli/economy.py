"""``mycelia economy``: create an economy with its validators, list, show
and follow economies, and the stewards' entries (admit, set-credit).

Why this exists: a community steward should create an economy in one
command. An economy is one genesis document signed by a quorum of its
validators, so creating one means talking to every validator node; this
command does the whole ceremony over the RPC and nothing else:

1. reach every validator node (``--validator``: its data directory, holding
   ``rpc.endpoint`` and ``.cookie``, or ``URL#COOKIEFILE``) and the
   steward's own node (``--rpc``/``--cookie``/config), and read each one's
   key from ``node_info`` — before anything is signed, so an unreachable
   node fails fast;
2. build the genesis here (``protocol.Genesis``; every validator weight 1,
   quorum by default the smallest more than two thirds, a random nonce so
   two economies with the same fields differ) and check its rules;
3. ask each validator to sign it (``economy_signGenesis``) and check each
   signature before using it;
4. assemble the signed genesis, check its quorum, and hand it to every
   validator and to the steward's own node (``economy_create``, idempotent).

It prints the economy id, the one thing members need to follow the economy.
A failure at a given node names that node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from mycelia.api.encoding import hex_out
from mycelia.cli.main import connect, json_option, rpc_options
from mycelia.cli.wallet import (
    account_did,
    client_error,
    economy_id,
    economy_option,
    fail,
    format_amount,
    load_wallet,
    parse_amount,
    print_json,
    stderr,
    stdout,
    submit_and_report,
    wait_options,
)
from mycelia.client import Client, ClientError, Endpoint
from mycelia.protocol import (
    Economy,
    Genesis,
    Refused,
    SignedGenesis,
    Validator,
    did_decode,
    smallest_quorum,
)
from mycelia.protocol.economy import (
    KINDS,
    MEMBERSHIP_APPROVED,
    MEMBERSHIP_OPEN,
    MUTUAL_CREDIT,
    IssuedPolicy,
    MutualCreditPolicy,
)

__all__ = ["economies_table", "economy"]

T = TypeVar("T")


@click.group()
def economy() -> None:
    """Create, list, show and follow economies; admit members, set credit limits."""


def _issuer(spec: str) -> tuple[bytes, int]:
    account, colon, cap = spec.rpartition(":")
    if not colon or not account:
        raise fail("invalid_params", f"--issuer {spec!r}: expected DID:CAP or WALLET:CAP")
    return did_decode(account_did(account, "--issuer")), parse_amount(cap, "--issuer cap")


def _build_genesis(
    *,
    name: str,
    symbol: str,
    decimals: int,
    kind: str,
    membership: str,
    stewards: tuple[str, ...],
    default_limit: str | None,
    issuers: tuple[str, ...],
    validator_keys: list[bytes],
    quorum: int | None,
) -> Genesis:
    steward_keys = tuple(did_decode(account_did(s, "--steward")) for s in stewards)
    policy: MutualCreditPolicy | IssuedPolicy
    if kind == MUTUAL_CREDIT:
        if issuers:
            raise fail("invalid_params", "--issuer is for --kind issued")
        limit = (
            0
            if default_limit is None
            else parse_amount(default_limit, "--default-limit", zero=True)
        )
        policy = MutualCreditPolicy(membership, steward_keys, limit)
    else:
        if default_limit is not None:
            raise fail("invalid_params", "--default-limit is for --kind mutual_credit")
        if not issuers:
            raise fail("invalid_params", "an issued economy needs at least one --issuer DID:CAP")
        policy = IssuedPolicy(membership, steward_keys, tuple(_issuer(i) for i in issuers))
    total = len(validator_keys)
    genesis = Genesis(
        name=name,
        symbol=symbol,
        decimals=decimals,
        kind=kind,
        policy=policy,
        validators=tuple(Validator(k, 1) for k in validator_keys),
        quorum=smallest_quorum(total) if quorum is None else quorum,
        ts_ms=int(time.time() * 1000),
        nonce=os.urandom(16),
    )
    try:
        return genesis.checked()
    except Refused as exc:
        raise fail(exc.reason.value, exc.detail or "the genesis breaks a rule") from None


@economy.command("create")
@click.option("--name", required=True, help="The economy's name (1-64 bytes).")
@click.option("--symbol", required=True, help="Its currency symbol (1-12 bytes).")
@click.option("--decimals", type=click.IntRange(0, 18), default=2, show_default=True)
@click.option("--kind", type=click.Choice(KINDS), default=MUTUAL_CREDIT, show_default=True)
@click.option(
    "--membership",
    type=click.Choice([MEMBERSHIP_OPEN, MEMBERSHIP_APPROVED]),
    default=MEMBERSHIP_OPEN,
    show_default=True,
    help="open: anyone transacts; approved: stewards admit members.",
)
@click.option(
    "--steward",
    "stewards",
    multiple=True,
    metavar="WALLET_OR_DID",
    help="A steward (repeatable).",
)
@click.option(
    "--default-limit",
    metavar="N",
    help="Mutual credit: the credit limit of accounts no steward has set (minor units; 0).",
)
@click.option(
    "--issuer",
    "issuers",
    multiple=True,
    metavar="DID:CAP",
    help="Issued: an issuer and its cap in minor units (repeatable; a wallet name works too).",
)
@click.option(
    "--validator",
    "validators",
    multiple=True,
    required=True,
    metavar="NODE",
    help="A validator node: its data directory, or URL#COOKIEFILE (repeatable).",
)
@click.option("--quorum", type=click.IntRange(min=1), help="Default: more than 2/3 of them.")
@rpc_options
@click.pass_context
def economy_create(
    ctx: click.Context,
    name: str,
    symbol: str,
    decimals: int,
    kind: str,
    membership: str,
    stewards: tuple[str, ...],
    default_limit: str | None,
    issuers: tuple[str, ...],
    validators: tuple[str, ...],
    quorum: int | None,
) -> None:
    """Create an economy signed by its validator nodes; print its id."""
    opened: list[Client] = []

    def reach(make: Callable[[], Client], where: str) -> tuple[str, Client, bytes]:
        client = _at(where, make)
        opened.append(client)
        return where, client, did_decode(_at(where, client.node_info).did)

    try:
        with stderr().status("reaching the nodes") as line:
            # 1. Every node first: nothing is signed unless all of them answer.
            nodes = [
                reach(lambda spec=spec: Client(Endpoint.from_node_spec(spec)), f"validator {spec}")
                for spec in validators
            ]
            keys = [key for _, _, key in nodes]
            if len(set(keys)) != len(keys):
                raise fail("invalid_params", "the same node is named twice as a validator")
            own = reach(lambda: connect(ctx), "your node")
            targets = nodes if own[2] in keys else [*nodes, own]

            # 2. The genesis, checked against the protocol's rules.
            genesis = _build_genesis(
                name=name,
                symbol=symbol,
                decimals=decimals,
                kind=kind,
                membership=membership,
                stewards=stewards,
                default_limit=default_limit,
                issuers=issuers,
                validator_keys=keys,
                quorum=quorum,
            )

            # 3. Each validator signs; the client checks each signature.
            signatures: dict[bytes, bytes] = {}
            for where, client, key in nodes:
                line.update(f"asking {where} to sign")
                sig = _at(where, lambda c=client: c.economy_sign_genesis(genesis.encode()))
                if did_decode(sig.validator) != key:
                    raise fail("bad_response", f"{where} signed as {sig.validator}")
                signatures[key] = sig.signature

            # 4. Assemble, check the quorum, create everywhere.
            signed = SignedGenesis.assemble(genesis, signatures)
            try:
                Economy.from_signed(signed)
            except Refused as exc:
                detail = exc.detail or "the signed genesis does not verify"
                raise fail(exc.reason.value, detail) from None
            for where, client, _ in targets:
                line.update(f"creating the economy on {where}")
                _at(where, lambda c=client: c.economy_create(signed))
    finally:
        for client in opened:
            client.close()
    stdout().print(hex_out(genesis.id))


def _at(where: str, call: Callable[[], T]) -> T:
    """``call()``, its client error naming the node."""
    try:
        return call()
    except ClientError as exc:
        raise client_error(exc, where) from None


@economy.command("list")
@rpc_options
@json_option
@click.pass_context
def economy_list(ctx: click.Context, as_json: bool) -> None:
    """The economies the node follows."""
    with connect(ctx) as client:
        items = client.economy_list()
    if as_json:
        print_json([e.to_json() for e in items])
        return
    stdout().print(economies_table(items))


def economies_table(items: list[Any]) -> Any:
    if not items:
        return Text("the node follows no economy")
    table = Table("id", "name", "symbol", "kind", "validators", "quorum", "certificates", "forks")
    for e in items:
        forks = e.forks
        table.add_row(
            hex_out(e.id),
            e.name,
            e.symbol,
            e.kind,
            str(len(e.validators)),
            str(e.quorum),
            str(e.certificates),
            Text(str(forks), style="bold red") if forks else "0",
        )
    return table


@economy.command("show")
@click.argument("economy_id_", metavar="ID")
@rpc_options
@json_option
@click.pass_context
def economy_show(ctx: click.Context, economy_id_: str, as_json: bool) -> None:
    """One economy, its genesis verified against ID."""
    eid = economy_id(economy_id_)
    with connect(ctx) as client:
        info = client.economy_get(eid)
    if as_json:
        print_json(info.to_json())
        return
    view = info.to_json()
    g = info.signed.genesis
    out = stdout()
    out.print(Text(f"{g.name} ({g.symbol})", style="bold"))
    rows = [
        ("id", view["id"]),
        ("kind", g.kind),
        ("membership", view["membership"]),
        ("decimals", str(g.decimals)),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(g.ts_ms / 1000))),
        ("quorum", f"{g.quorum} of {sum(v.weight for v in g.validators)}"),
        ("accounts", str(info.accounts)),
        ("certificates", str(info.certificates)),
    ]
    if isinstance(g.policy, MutualCreditPolicy):
        rows.append(("default limit", format_amount(g.policy.default_limit, g.decimals)))
    for label, value in rows:
        out.print(Text(f"  {label:<14}{value}"))
    for v in view["validators"]:
        out.print(Text(f"  {'validator':<14}{v['did']} (weight {v['weight']})"))
    for s in view["stewards"]:
        out.print(Text(f"  {'steward':<14}{s}"))
    for i in view["issuers"]:
        cap = format_amount(int(i["cap"]), g.decimals)
        out.print(Text(f"  {'issuer':<14}{i['account']} (cap {cap})"))
    out.print(Text("  genesis verified: signed by a quorum of its validators", style="green"))


@economy.command("follow")
@click.argument("economy_id_", metavar="ID")
@rpc_options
@click.pass_context
def economy_follow(ctx: click.Context, economy_id_: str) -> None:
    """Have the node follow an economy (its genesis is fetched from peers)."""
    eid = economy_id(economy_id_)
    with connect(ctx) as client:
        followed = client.economy_follow(eid)
    note = "already known" if followed.known else "genesis to be fetched from peers"
    stdout().print(Text(f"following {hex_out(eid)} ({note})"))


def _steward_options(f: Any) -> Any:
    f = click.option("--member", required=True, metavar="DID", help="A did:key or a wallet.")(f)
    f = click.option(
        "--steward", required=True, metavar="WALLET", help="The steward's wallet (signs)."
    )(f)
    return economy_option(f)


@economy.command("admit")
@_steward_options
@wait_options
@rpc_options
@click.pass_context
def economy_admit(
    ctx: click.Context, economy: str, steward: str, member: str, no_wait: bool, timeout: float
) -> None:
    """Admit a member (approved membership), signed by a steward's wallet."""
    eid = economy_id(economy)
    member_did = account_did(member, "--member")
    key = load_wallet(steward)
    with connect(ctx) as client:
        entry_id = client.admit(key, eid, member_did)
        what = f"admitted {member_did}"
        submit_and_report(client, entry_id, no_wait=no_wait, timeout=timeout, what=what)


@economy.command("set-credit")
@_steward_options
@click.option("--limit", "limit", required=True, metavar="N", help="Credit limit, minor units.")
@wait_options
@rpc_options
@click.pass_context
def economy_set_credit(
    ctx: click.Context,
    economy: str,
    steward: str,
    member: str,
    limit: str,
    no_wait: bool,
    timeout: float,
) -> None:
    """Set a member's credit limit (mutual credit), signed by a steward's wallet."""
    eid = economy_id(economy)
    member_did = account_did(member, "--member")
    n = parse_amount(limit, "--limit", zero=True)
    key = load_wallet(steward)
    with connect(ctx) as client:
        info = client.economy_get(eid)
        entry_id = client.set_credit(key, eid, member_did, n)
        what = f"limit of {member_did} set to {format_amount(n, info.decimals)} {info.symbol}"
        submit_and_report(client, entry_id, no_wait=no_wait, timeout=timeout, what=what)
