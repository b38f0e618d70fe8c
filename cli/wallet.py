"""``mycelia wallet``: local wallet keys, and balances, history and payments
through a running node's RPC.

Why this exists: a member of an economy needs a key of their own (not the
node's) and a way to pay with it. The key stays on this machine — entries
are built and signed here (``mycelia.client``) and only the signature goes to
the node — and every certificate the node shows back is checked against the
economy's genesis before anything is printed.

How it works:

* Wallet keys live in the user's config dir, apart from any node key:
  ``$MYCELIA_WALLET_DIR``, else ``$XDG_CONFIG_HOME/mycelia/wallets``, else
  ``~/.config/mycelia/wallets``; one file ``<NAME>.key`` per wallet, in the
  node key file format (``client/keyfile.py``: mode 0600, never overwritten,
  optionally passphrase-encrypted), in a folder created 0700. Names are
  short and path-free, so a name can never point outside the folder.
* Where a command takes an account (``--to``, a steward, an issuer), a
  ``did:key`` or the name of a local wallet is accepted: a did always
  starts with ``did:`` and a wallet name never contains a colon.
* Amounts on the command line are what the RPC takes: integers in the
  economy's minor units (``--amount 1500`` is 15.00 in an economy with 2
  decimals). Displays show both.
* ``send`` prints the entry id as soon as the node holds the entry, then
  waits for the certificate (a status line on stderr) unless ``--no-wait``.
  A refusal prints ``error: <reason>: <detail>`` and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mycelia.api.encoding import ParamError, amount_in, hex_out
from mycelia.cli.main import CliError, connect, json_option, rpc_options
from mycelia.client import Client, ClientError, EntryStatus
from mycelia.client.keyfile import KeyFileError, key_info, read_key, write_key
from mycelia.protocol import (
    Burn,
    Certificate,
    CreditSet,
    MemberAdmit,
    Mint,
    Refused,
    SigningKey,
    Transfer,
    did_decode,
    did_encode,
)

__all__ = [
    "WALLET_DIR_ENV",
    "account_did",
    "client_error",
    "create_wallet",
    "economy_id",
    "economy_option",
    "fail",
    "format_amount",
    "key_name",
    "load_wallet",
    "parse_amount",
    "print_json",
    "stderr",
    "stdout",
    "submit_and_report",
    "wait_options",
    "wallet",
    "wallet_dir",
    "wallet_path",
    "wallet_public",
]

WALLET_DIR_ENV = "MYCELIA_WALLET_DIR"
SUFFIX = ".key"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX_ID = re.compile(r"(0x)?([0-9a-fA-F]{64})")


def fail(reason: str, detail: str) -> CliError:
    """The one shape of a CLI error: ``error: <reason>: <detail>``."""
    return CliError(f"{reason}: {detail}")


# Plain consoles: text from the node or a user (a memo, a name, ":key:" in
# every did) must print as is, never as rich markup or emoji codes.
def stdout() -> Console:
    console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    if not console.is_terminal:
        # Piped or captured: there is no width to fit, and a table must not
        # fold a did or an id that someone will copy.
        console.width = 250
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


# -- wallet files --------------------------------------------------------------------------


def wallet_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where wallet keys live (see the module docstring)."""
    env = os.environ if env is None else env
    if env.get(WALLET_DIR_ENV):
        return Path(env[WALLET_DIR_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
    if base is None or not base.is_absolute():  # XDG: a relative value is ignored
        base = Path(env.get("HOME") or Path.home()) / ".config"
    return base / "mycelia" / "wallets"


def key_name(name: str, what: str = "wallet") -> str:
    """A key file's name (a wallet's, a device's): short and path-free, so
    it can never point outside its folder."""
    if not _NAME.fullmatch(name):
        raise fail(
            f"bad_{what}_name",
            f"{name!r}: a {what} name is 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def wallet_path(name: str) -> Path:
    return wallet_dir() / f"{key_name(name)}{SUFFIX}"


def create_wallet(name: str, passphrase: bytes | None = None) -> tuple[SigningKey, Path]:
    """A new key in a new wallet file (refused if the name is taken)."""
    path = wallet_path(name)
    if path.exists():
        raise fail("wallet_exists", f"a wallet named {name!r} already exists at {path}")
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise fail("wallet_dir", f"cannot create {folder}: {exc.strerror or exc}") from None
    if os.name == "posix" and stat.S_IMODE(folder.stat().st_mode) & 0o077:
        stderr().print(Text(f"warning: {folder} is accessible by other users; chmod 700 it"))
    key = SigningKey.generate()
    try:
        write_key(path, key, passphrase)
    except KeyFileError as exc:
        raise fail("wallet_file", str(exc)) from None
    return key, path


def _existing(name: str) -> Path:
    path = wallet_path(name)
    if not path.exists():
        raise fail("unknown_wallet", f"no wallet named {name!r} in {path.parent}")
    return path


def wallet_public(name: str) -> tuple[bytes, bool]:
    """A wallet's public key and whether it is encrypted (no passphrase needed)."""
    try:
        info = key_info(_existing(name))
    except KeyFileError as exc:
        raise fail("wallet_file", str(exc)) from None
    return info.public, info.encrypted


def load_wallet(name: str) -> SigningKey:
    """A wallet's key; asks for the passphrase if the file is encrypted."""
    path = _existing(name)
    _, encrypted = wallet_public(name)
    passphrase = None
    if encrypted:
        passphrase = click.prompt(f"Passphrase for wallet {name}", hide_input=True).encode()
    try:
        return read_key(path, passphrase)
    except KeyFileError as exc:
        raise fail("wallet_file", str(exc)) from None


def account_did(value: str, what: str) -> str:
    """A did:key as given, or the did of the local wallet so named."""
    if value.startswith("did:"):
        try:
            did_decode(value)
        except Refused as exc:
            raise fail(exc.reason.value, f"{what}: {exc.detail}") from None
        return value
    return did_encode(wallet_public(value)[0])


# -- parsing and formatting -------------------------------------------------------------------


def economy_id(value: str) -> bytes:
    """An economy id from ``0x``-prefixed or bare hex."""
    match = _HEX_ID.fullmatch(value.strip())
    if match is None:
        raise fail("invalid_params", f"--economy: {value!r} is not a 32-byte hex economy id")
    return bytes.fromhex(match.group(2))


def parse_amount(value: str, what: str, *, zero: bool = False) -> int:
    """An integer amount in minor units (≥ 1, or ≥ 0 with ``zero``)."""
    try:
        n = amount_in(value, what, negative=zero)
    except ParamError as exc:
        raise fail("invalid_params", f"{exc.field}: {exc.detail}") from None
    if n < 0:
        raise fail("invalid_params", f"{what}: must not be negative")
    return n


def format_amount(value: int, decimals: int) -> str:
    """Minor units as a decimal: ``format_amount(-1505, 2) == "-15.05"``."""
    if decimals == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


def short(hex_id: str, n: int = 10) -> str:
    return hex_id if len(hex_id) <= n + 2 else hex_id[: n + 2] + "…"


def _when(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- submitting --------------------------------------------------------------------------------


def _status_text(status: EntryStatus) -> str:
    text = f"{status.status}: waiting for the certificate of {short(hex_out(status.id))}"
    if status.waiting_on:  # pending: how many validators the node could not reach
        text += f" ({status.waiting_on} validators unreachable, retrying)"
    return text


def submit_and_report(
    client: Client, entry_id: bytes, *, no_wait: bool, timeout: float, what: str
) -> EntryStatus | None:
    """Print the id of a submitted entry, then (unless ``no_wait``) wait for
    its final status: a certificate prints ``certified``, a refusal is an error."""
    stdout().print(hex_out(entry_id))
    if no_wait:
        return None
    with stderr().status(
        f"pending: waiting for the certificate of {short(hex_out(entry_id))}"
    ) as line:
        status = client.wait(
            entry_id, timeout=timeout, on_status=lambda s: line.update(_status_text(s))
        )
    if not status.certified:
        raise fail(status.reason or "refused", status.detail or f"{what} was refused")
    stdout().print(Text(f"certified: {what}", style="green"))
    return status


def wait_options(f: Any) -> Any:
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=60.0,
        show_default=True,
        help="Seconds to wait for the certificate.",
    )(f)
    return click.option(
        "--no-wait", is_flag=True, help="Print the entry id once submitted; do not wait."
    )(f)


# -- commands -----------------------------------------------------------------------------------


@click.group()
def wallet() -> None:
    """Wallet keys (kept on this machine) and payments through the node."""


@wallet.command("new")
@click.argument("name")
@click.option("--encrypt", is_flag=True, help="Encrypt the key under a passphrase (asked).")
def wallet_new(name: str, encrypt: bool) -> None:
    """Create a wallet key NAME."""
    wallet_path(name)  # a bad name fails before the passphrase is asked
    passphrase = None
    if encrypt:
        text = click.prompt(
            f"Passphrase for wallet {name}", hide_input=True, confirmation_prompt=True
        )
        if not text:
            raise fail("invalid_params", "the passphrase must not be empty")
        passphrase = text.encode()
    key, path = create_wallet(name, passphrase)
    out = stdout()
    out.print(Text(f"wallet {name} created", style="bold green"))
    out.print(Text(f"  account  {key.did}"))
    out.print(Text(f"  key      {path} ({'encrypted' if encrypt else 'not encrypted'})"))


def _wallet_json(name: str) -> dict[str, Any]:
    public, encrypted = wallet_public(name)
    return {
        "name": name,
        "did": did_encode(public),
        "encrypted": encrypted,
        "path": str(wallet_path(name)),
    }


@wallet.command("list")
@json_option
def wallet_list(as_json: bool) -> None:
    """List the wallets in the wallet folder."""
    folder = wallet_dir()
    names = sorted(
        p.name[: -len(SUFFIX)]
        for p in (folder.iterdir() if folder.is_dir() else ())
        if p.name.endswith(SUFFIX) and _NAME.fullmatch(p.name[: -len(SUFFIX)])
    )
    items = [_wallet_json(n) for n in names]
    if as_json:
        print_json(items)
        return
    if not items:
        stdout().print(Text(f"no wallets in {folder} (create one with: mycelia wallet new NAME)"))
        return
    table = Table("name", "account", "encrypted", title=str(folder), title_justify="left")
    for item in items:
        table.add_row(item["name"], item["did"], "yes" if item["encrypted"] else "no")
    stdout().print(table)


@wallet.command("show")
@click.argument("name")
@json_option
def wallet_show(name: str, as_json: bool) -> None:
    """Show wallet NAME's account (its did:key) and key file."""
    item = _wallet_json(name)
    if as_json:
        print_json(item)
        return
    out = stdout()
    out.print(Text(f"wallet {name}", style="bold"))
    out.print(Text(f"  account    {item['did']}"))
    out.print(Text(f"  key        {item['path']}"))
    out.print(Text(f"  encrypted  {'yes' if item['encrypted'] else 'no'}"))


def economy_option(f: Any) -> Any:
    return click.option(
        "--economy", "economy", required=True, metavar="ID", help="The economy id (hex)."
    )(f)


@wallet.command("balance")
@click.argument("name")
@economy_option
@rpc_options
@json_option
@click.pass_context
def wallet_balance(ctx: click.Context, name: str, economy: str, as_json: bool) -> None:
    """Show wallet NAME's balance in an economy."""
    eid = economy_id(economy)
    did = did_encode(wallet_public(name)[0])
    with connect(ctx) as client:
        info = client.economy_get(eid)
        acct = client.account_get(eid, did)
    if as_json:
        print_json(
            {
                "economy": hex_out(eid),
                "symbol": info.symbol,
                "decimals": info.decimals,
                **acct.to_json(),
            }
        )
        return
    d, sym = info.decimals, info.symbol
    out = stdout()
    out.print(Text(f"{name} in {info.name} ({short(hex_out(eid))})", style="bold"))
    out.print(Text(f"  balance  {format_amount(acct.balance, d)} {sym}  ({acct.balance})"))
    if acct.limit is not None:
        out.print(Text(f"  limit    {format_amount(acct.limit, d)} {sym}  ({acct.limit})"))
    if acct.minted or acct.burned:
        out.print(Text(f"  minted   {format_amount(acct.minted, d)} {sym}"))
        out.print(Text(f"  burned   {format_amount(acct.burned, d)} {sym}"))
    out.print(Text(f"  member   {'yes' if acct.member else 'no'}"))
    out.print(Text(f"  entries  {acct.seq}"))


@wallet.command("send")
@click.argument("name")
@economy_option
@click.option("--to", "to", required=True, metavar="DID", help="Recipient: a did:key or a wallet.")
@click.option(
    "--amount", required=True, metavar="N", help="Amount in minor units, e.g. 1500 for 15.00."
)
@click.option("--memo", default="", help="A note for the recipient (at most 256 bytes).")
@wait_options
@rpc_options
@click.pass_context
def wallet_send(
    ctx: click.Context,
    name: str,
    economy: str,
    to: str,
    amount: str,
    memo: str,
    no_wait: bool,
    timeout: float,
) -> None:
    """Pay N to an account from wallet NAME: signed here, submitted to the node."""
    eid = economy_id(economy)
    recipient = account_did(to, "--to")
    n = parse_amount(amount, "--amount")
    key = load_wallet(name)
    with connect(ctx) as client:
        info = client.economy_get(eid)
        entry_id = client.transfer(key, eid, recipient, n, memo)
        what = f"sent {format_amount(n, info.decimals)} {info.symbol} ({n}) to {recipient}"
        submit_and_report(client, entry_id, no_wait=no_wait, timeout=timeout, what=what)


def _history_row(cert: Certificate, me: bytes, decimals: int) -> tuple[str, ...]:
    """(when, kind, counterparty, amount from ``me``'s side, memo, id)."""
    entry, body = cert.entry, cert.entry.body
    other, amount, memo = "", "", ""
    if isinstance(body, Transfer | Mint):
        memo = body.memo
        outgoing = entry.author == me and body.to != me
        other = did_encode(body.to if outgoing else entry.author)
        value = -body.amount if outgoing else body.amount
        amount = format_amount(value, decimals)
    elif isinstance(body, Burn):
        amount = format_amount(-body.amount, decimals)
    elif isinstance(body, MemberAdmit):
        other = did_encode(entry.author if body.member == me else body.member)
    elif isinstance(body, CreditSet):
        other = did_encode(entry.author if body.member == me else body.member)
        amount = f"limit {format_amount(body.limit, decimals)}"
    return (
        _when(entry.ts_ms),
        entry.kind,
        other,
        amount,
        memo,
        short(hex_out(cert.entry_id)),
    )


@wallet.command("history")
@click.argument("name")
@economy_option
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Entries per page (node default 50)."
)
@click.option("--cursor", default=None, help="Continue from a previous page's next cursor.")
@rpc_options
@json_option
@click.pass_context
def wallet_history(
    ctx: click.Context,
    name: str,
    economy: str,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Certified entries that changed wallet NAME's account, newest first."""
    eid = economy_id(economy)
    public = wallet_public(name)[0]
    with connect(ctx) as client:
        info = client.economy_get(eid)
        page = client.account_history(eid, did_encode(public), cursor=cursor, limit=limit)
    if as_json:
        print_json(page.to_json())
        return
    out = stdout()
    if not page.entries:
        out.print(Text(f"no certified entries for {name} in {info.name}"))
    else:
        table = Table(
            "time (UTC)",
            "kind",
            "counterparty",
            f"amount ({info.symbol})",
            "memo",
            "entry",
            title=f"{name} in {info.name} (certificates verified)",
            title_justify="left",
        )
        for cert in page.entries:
            table.add_row(*_history_row(cert, public, info.decimals))
        out.print(table)
    if page.next_cursor is not None:
        out.print(Text(f"more: --cursor {page.next_cursor}"))


def client_error(exc: ClientError, context: str) -> CliError:
    """A client error about one of several nodes, naming which."""
    return fail(exc.reason, f"{context}: {exc.detail}")
