"""``mycelia key show|export|import``: the node key moved between machines,
always encrypted in transit.

Why this exists: moving a node (a new Pi, a new disk) must keep its
identity, and on a validator its key; a plain copy of ``node.key`` on a USB
stick is the node's identity for whoever finds it. ``export`` writes the
key in the node key-file format (``client/keyfile.py``) encrypted under a
passphrase of its own, and ``import`` reads such a file (or a plain one)
into the datadir, encrypted with the node's configured passphrase if it has
one. Neither overwrites a key: a node's key is never replaced silently.

Refusals are ``error: <code>: <detail>`` (``key_exists``) or the key file's
own one-line errors (wrong passphrase, loose permissions, corrupt file),
and change nothing.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from mycelia.cli.backup import refuse
from mycelia.cli.main import load
from mycelia.cli.wallet import stdout
from mycelia.client.keyfile import key_info, read_key, read_passphrase_file, write_key
from mycelia.node.config import Config
from mycelia.protocol.keys import SigningKey

__all__ = ["key"]

KEY_EXISTS = "key_exists"


def _passphrase(passphrase_file: Path | None, prompt: str, *, confirm: bool) -> bytes:
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file.expanduser())
    text: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return text.encode("utf-8")


def _node_passphrase(config: Config) -> bytes | None:
    path = config.node.passphrase_file
    return None if path is None else read_passphrase_file(path)


_PASSPHRASE_FILE = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the file's passphrase from this file (mode 0600) instead of asking.",
)


@click.group("key")
def key() -> None:
    """Show, export or import the node key."""


@key.command("show")
@click.option("--did", "did_only", is_flag=True, help="Print the node's did only.")
@click.pass_context
def key_show(ctx: click.Context, did_only: bool) -> None:
    """The node's identity (no passphrase needed)."""
    config = load(ctx)
    info = key_info(config.node.key_file)
    if did_only:
        click.echo(info.did)
        return
    out = stdout()
    out.print(Text(f"identity  {info.did}"))
    kind = "encrypted" if info.encrypted else "not encrypted"
    out.print(Text(f"key       {config.node.key_file} ({kind})"))


@key.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_PASSPHRASE_FILE
@click.pass_context
def key_export(ctx: click.Context, file: Path, passphrase_file: Path | None) -> None:
    """Write the node key to FILE, encrypted under a new passphrase (mode 0600)."""
    config = load(ctx)
    if file.exists():
        raise refuse(KEY_EXISTS, f"{file} exists; refusing to overwrite it")
    node_key = read_key(config.node.key_file, _node_passphrase(config))
    passphrase = _passphrase(passphrase_file, "Passphrase for the exported key", confirm=True)
    write_key(file, node_key, passphrase)
    stdout().print(Text(f"node key {node_key.did} exported to {file} (encrypted)"))


@key.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_PASSPHRASE_FILE
@click.pass_context
def key_import(ctx: click.Context, file: Path, passphrase_file: Path | None) -> None:
    """Make the key in FILE (from `mycelia key export`) this node's key.

    Refuses if the datadir already has a key. The key is stored encrypted
    with node.passphrase_file when the config sets one, else plain (0600).
    """
    config = load(ctx)
    target = config.node.key_file
    if target.exists():
        raise refuse(KEY_EXISTS, f"a node key already exists at {target}; refusing to replace it")
    imported: SigningKey
    if key_info(file).encrypted:
        imported = read_key(file, _passphrase(passphrase_file, "Passphrase of FILE", confirm=False))
    else:
        imported = read_key(file)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_key(target, imported, _node_passphrase(config))
    stdout().print(Text(f"node key {imported.did} imported into {target}"))
