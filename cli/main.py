"""The ``mycelia`` command: global options, ``init``, and the ``node`` group.

Why this exists: it is the operator's first contact with mycelia
(``mycelia init``, then ``mycelia node run``), so it must be hard to misuse and
say plainly what went wrong. Expected problems (a bad config value, an
existing key, an unreadable passphrase file) print one line on stderr,
``error: ...``, and exit non-zero; tracebacks are for bugs only.

How it works:

* The ``cli`` group takes the global ``--config PATH`` (or ``$MYCELIA_CONFIG``)
  and repeatable ``--set section.key=value`` options and keeps them in a
  :class:`CliState` on ``ctx.obj``. Commands call :func:`load` to get the
  :class:`~mycelia.node.config.Config` (defaults < file < environment <
  ``--set``; see ``node/config.py``). Without ``--config``, the config that
  ``mycelia init`` writes into the default datadir is read if it exists.
* :class:`CliError` is the one way to report an expected failure; the group
  also turns a ``ConfigError`` or ``KeyFileError`` raised by any subcommand
  into one, so commands added later get the same behaviour for free.
* Output goes through rich consoles with soft wrapping, so a long path never
  splits an error message over several lines.
* Commands that talk to a running node (``status``, ``wallet``, ``economy``,
  ``sensor``, ``compute``) live in their own modules, loaded when invoked
  (:data:`_COMMANDS`). They
  share :func:`rpc_options` (``--rpc``, ``--cookie``) and :func:`connect`,
  which finds the node as :meth:`~mycelia.client.Endpoint.discover`
  says (flags, then ``MYCELIA_RPC_URL``/``MYCELIA_RPC_COOKIE``, then the
  configured datadir).
  A :class:`~mycelia.client.ClientError` from any command becomes
  ``error: <reason>: <detail>``.
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from mycelia.client import Client, ClientError, Endpoint
from mycelia.client.keyfile import KeyFileError, read_key, read_passphrase_file, write_key
from mycelia.node.config import (
    CONFIG_FILE_NAME,
    Config,
    ConfigError,
    default_config_path,
    default_toml,
    load_config,
)
from mycelia.protocol.keys import SigningKey

__all__ = ["CliError", "CliState", "cli", "connect", "json_option", "load", "node", "rpc_options"]


def _stdout() -> Console:
    # Built per call so it writes to whatever sys.stdout is now (CliRunner
    # swaps it); highlight off so output is plain and predictable.
    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


class CliError(click.ClickException):
    """An expected failure: shown as one ``error: ...`` line on stderr, exit 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        text = Text("error: ", style="bold red")
        text.append(" ".join(self.format_message().split()))  # one line, always
        _stderr().print(text)


@dataclass
class CliState:
    """What the global options said; ``ctx.obj`` of every command."""

    config_path: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    config: Config | None = None  # loaded once, by load()
    rpc: str | None = None  # --rpc of a command that talks to the node
    cookie: Path | None = None  # --cookie


def _parse_sets(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or "." not in key.strip():
            raise CliError(f"--set {item!r}: expected section.key=value")
        out[key.strip()] = value  # later --set of the same key wins
    return out


class _Group(click.Group):
    """A group that reports config and key-file errors as one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, KeyFileError) as exc:
            raise CliError(str(exc)) from None
        except ClientError as exc:  # str() is "reason: detail"
            raise CliError(str(exc)) from None


#: Commands in their own modules, imported when first used: they import this
#: module (for CliError, load, connect), so this one must not import them.
_COMMANDS = {
    "backup": "mycelia.cli.backup:backup",
    "compute": "mycelia.cli.compute:compute",
    "devnet": "mycelia.cli.devnet:devnet",
    "doctor": "mycelia.cli.doctor:doctor",
    "economy": "mycelia.cli.economy:economy",
    "key": "mycelia.cli.keys:key",
    "restore": "mycelia.cli.backup:restore",
    "sensor": "mycelia.cli.sensor:sensor",
    "status": "mycelia.cli.status:status",
    "wallet": "mycelia.cli.wallet:wallet",
}


class _Main(_Group):
    """The top group: its own commands plus the ones in :data:`_COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MYCELIA_CONFIG",
    help=f"Config file (default: {default_config_path()} if it exists). Env: MYCELIA_CONFIG.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one setting, e.g. --set p2p.listen=/ip4/0.0.0.0/tcp/4102 (repeatable).",
)
@click.version_option(package_name="mycelia", prog_name="mycelia")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, sets: tuple[str, ...]) -> None:
    """mycelia: a node for federated community economies.

    Settings come from defaults < the config file < MYCELIA_<SECTION>__<KEY>
    environment variables < --set options.
    """
    ctx.obj = CliState(
        config_path=config_path.expanduser() if config_path else None,
        overrides=_parse_sets(sets),
    )


def _state(ctx: click.Context) -> CliState:
    state = ctx.find_object(CliState)
    if state is None:  # a command invoked outside the group (tests, embedding)
        state = ctx.ensure_object(CliState)
    return state


def load(ctx: click.Context) -> Config:
    """The configuration for this invocation (loaded once, then cached).

    Reads ``--config`` if given (it must exist), else the default config file
    if it exists, else defaults only; then the environment and ``--set``.
    Raises :class:`CliError` with the config error's message.
    """
    state = _state(ctx)
    if state.config is None:
        path = state.config_path
        if path is None and default_config_path().is_file():
            path = default_config_path()
        try:
            state.config = load_config(path, overrides=state.overrides)
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    return state.config


F = TypeVar("F", bound=Any)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        setattr(_state(ctx), str(param.name), value)


def rpc_options(f: F) -> F:
    """``--rpc`` and ``--cookie`` for a command that talks to a node; read
    by :func:`connect`, not passed to the command."""
    f = click.option(
        "--cookie",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="The node's cookie file (default: $MYCELIA_RPC_COOKIE, else DATADIR/.cookie).",
    )(f)
    return click.option(  # type: ignore[no-any-return]
        "--rpc",
        metavar="URL",
        expose_value=False,
        callback=_remember,
        help="The node's RPC: http://HOST:PORT or unix:/path/rpc.sock "
        "(default: $MYCELIA_RPC_URL, else DATADIR/rpc.endpoint of the running node).",
    )(f)


def json_option(f: F) -> F:
    """``--json``: print machine-readable JSON (stable keys) instead of tables."""
    return click.option(  # type: ignore[no-any-return]
        "--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of text."
    )(f)


def connect(ctx: click.Context) -> Client:
    """A client for the node this invocation names (see :func:`rpc_options`)."""
    state = _state(ctx)
    endpoint = Endpoint.discover(
        rpc=state.rpc, cookie=state.cookie, datadir=lambda: load(ctx).node.datadir
    )
    return Client(endpoint)


def _write_new_file(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` (never overwriting), fsynced."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


@cli.command()
@click.option(
    "--datadir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory to create (default: node.datadir from the config).",
)
@click.option("--encrypt", is_flag=True, help="Encrypt the node key under a passphrase.")
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the passphrase from this file (mode 0600) instead of asking; implies --encrypt.",
)
@click.pass_context
def init(
    ctx: click.Context, datadir: Path | None, encrypt: bool, passphrase_file: Path | None
) -> None:
    """Create a data directory, a node key and a commented default config.

    The config is written to --config if given, else to DATADIR/mycelia.toml;
    an existing config file is kept. Refuses if a node key already exists.
    """
    state = _state(ctx)
    overrides = dict(state.overrides)
    if datadir is not None:
        overrides["node.datadir"] = str(datadir.expanduser().absolute())
    if passphrase_file is not None:
        passphrase_file = passphrase_file.expanduser().absolute()
        overrides["node.passphrase_file"] = str(passphrase_file)
    # Read an existing --config (an operator may have prepared it); a missing
    # one is where the new config goes. No fallback to the default config
    # here: init must not mix in a file from some other setup.
    explicit = state.config_path
    source = explicit if explicit is not None and explicit.exists() else None
    try:
        cfg = load_config(source, overrides=overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    datadir = cfg.node.datadir
    key_path = cfg.node.key_file
    config_path = (explicit or datadir / CONFIG_FILE_NAME).absolute()

    if key_path.exists():
        raise CliError(f"a node key already exists at {key_path}; refusing to overwrite it")

    # A passphrase file from --passphrase-file, --set, the environment or an
    # existing config means the key is to be encrypted with it: the node
    # will use that same file to unlock the key.
    passphrase_file = cfg.node.passphrase_file
    passphrase: bytes | None = None
    if encrypt or passphrase_file is not None:
        if passphrase_file is not None:
            passphrase = read_passphrase_file(passphrase_file)
        else:
            text = click.prompt(
                "Passphrase for the node key", hide_input=True, confirmation_prompt=True
            )
            passphrase = text.encode("utf-8")

    try:
        created = not datadir.exists()
        datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {datadir}: {exc.strerror or exc}") from None
    if not created and os.stat(datadir).st_mode & 0o077:
        _stderr().print(
            Text(f"warning: {datadir} is accessible by other users; consider chmod 700")
        )

    key = SigningKey.generate()
    write_key(key_path, key, passphrase)

    config_written = False
    if not config_path.exists():
        toml = default_toml(datadir=datadir, passphrase_file=passphrase_file)
        try:
            _write_new_file(config_path, toml)
        except OSError as exc:
            raise CliError(f"cannot write {config_path}: {exc.strerror or exc}") from None
        config_written = True

    out = _stdout()
    out.print(Text("node key created", style="bold green"))
    out.print(Text(f"  identity  {key.did}"))
    kind = "encrypted" if passphrase is not None else "not encrypted"
    out.print(Text(f"  key       {key_path} ({kind})"))
    note = "written" if config_written else "kept existing"
    out.print(Text(f"  config    {config_path} ({note})"))
    out.print(Text(f"  datadir   {datadir}"))
    if passphrase is not None and passphrase_file is None:
        out.print(
            Text(
                f"the key is encrypted: set node.passphrase_file in {config_path} "
                "so the node can unlock it at start"
            )
        )
    out.print(Text(f"start the node with: mycelia --config {config_path} node run"))


@cli.group(cls=_Group)
def node() -> None:
    """Run and inspect the node daemon."""


def _node_key(config: Config) -> SigningKey:
    passphrase = None
    if config.node.passphrase_file is not None:
        passphrase = read_passphrase_file(config.node.passphrase_file)
    return read_key(config.node.key_file, passphrase)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@node.command("run")
@click.pass_context
def node_run(ctx: click.Context) -> None:
    """Run the node daemon until SIGINT or SIGTERM."""
    import trio

    from mycelia.node.daemon import serve
    from mycelia.node.store import StoreError

    config = load(ctx)
    key = _node_key(config)
    _setup_logging(config.node.log_level)
    logging.getLogger("mycelia").info(
        "starting node %s with data in %s", key.did, config.node.datadir
    )
    try:
        trio.run(serve, config, key)
    except StoreError as exc:
        raise CliError(str(exc)) from None


@node.command("import-economy")
@click.argument("genesis_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def node_import_economy(ctx: click.Context, genesis_file: Path) -> None:
    """Add a signed genesis (canonical bytes, as a steward distributes it) to
    the node's store and follow it. Run it while the node is stopped."""
    from mycelia.node.store import Store
    from mycelia.protocol import Refused, SignedGenesis

    config = load(ctx)
    try:
        signed = SignedGenesis.decode(genesis_file.read_bytes())
        store = Store(config.node.datadir / "store", map_size_mb=config.store.map_size_mb)
        economy = store.add_economy_sync(signed)
        store.close()
    except Refused as exc:
        raise CliError(f"{genesis_file}: {exc.reason.value}: {exc.detail}") from None
    _stdout().print(
        Text(f"economy {economy.id.hex()} ({signed.genesis.name}, {signed.genesis.symbol}) added")
    )
