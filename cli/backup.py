"""``mycelia backup DIR`` and ``mycelia restore DIR``: the node's store (and,
if asked, its key) copied out and back, safely while the node runs.

Why this exists: an SD card dies, and with it a community's certificates
and, on a validator, the record of every vote it cast. A copy of the
store's files taken with ``cp`` while the node writes may be torn; LMDB's
own copy (``Environment.copy(compact=True)``) runs in one read transaction,
so it is a consistent snapshot even from another process while the node
writes, and compaction drops free pages.

Layout of a backup directory (docs/install.md, "Backup and restore")::

    DIR/manifest.json      what the backup holds (below), written last
    DIR/store/data.mdb     the compacted LMDB copy
    DIR/node.key           the node key, only with --include-key (mode 0600)

``manifest.json`` (format 1): ``format``, ``created_ms``, ``mycelia`` (the
version that wrote it), ``schema`` (the store's ``meta/schema``), ``did``
(the node's, read from the key file's public part), ``economies`` (hex ids),
``tables`` (entries per named database, as read from the copy), and
``files``: per relative path, ``sha256`` (hex) and ``bytes``.

Restore and votes: a validator's locks and votes are what stop it signing
two entries for one slot. A restore that would forget any lock or vote the
current store holds (an older backup over a newer store) is refused with
``restore_loses_votes`` unless ``--i-know``; a restore over no store cannot
be compared, so the command says the rule instead: do not let the node vote
(``validator.enabled = false``) until it has synced past the backup's time.
A node that still answers on the datadir's RPC is refused
(``node_running``): it holds the store open. The store a restore replaces
is moved aside (``store.before-restore-<ms>``), never deleted. Every
refusal is ``error: <code>: <detail>`` and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import lmdb
from rich.text import Text

from mycelia.cli.main import CliError, connect, load
from mycelia.cli.wallet import stdout
from mycelia.client import ClientError
from mycelia.client.keyfile import KeyFileError, key_info, read_private
from mycelia.node.store import SCHEMA_VERSION

__all__ = ["StoreFacts", "backup", "read_store_facts", "restore", "store_facts"]

MANIFEST = "manifest.json"
FORMAT = 1
STORE_FILE = "store/data.mdb"
KEY_FILE = "node.key"
#: A manifest is a few kilobytes; read no more than this of one.
_MAX_MANIFEST = 1 << 20
#: Named databases a store can hold (the store's own plus spare room).
_MAX_DBS = 64

# Stable reason codes of these commands (docs/install.md).
BACKUP_EXISTS = "backup_exists"
NO_STORE = "no_store"
NOT_A_BACKUP = "not_a_backup"
BACKUP_CORRUPT = "backup_corrupt"
SCHEMA_NEWER = "backup_schema_newer"
STORE_EXISTS = "store_exists"
LOSES_VOTES = "restore_loses_votes"
KEY_MISMATCH = "key_mismatch"
STORE_UNREADABLE = "store_unreadable"
NODE_RUNNING = "node_running"


def refuse(code: str, detail: str) -> CliError:
    """The one-line refusal ``error: <code>: <detail>``."""
    return CliError(f"{code}: {detail}")


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What a store holds, read in one read transaction."""

    schema: int | None
    economies: tuple[str, ...]
    tables: dict[str, int]
    locks: dict[bytes, bytes]
    votes: dict[bytes, bytes]
    used_bytes: int
    map_bytes: int


def _open(path: Path, *, lock: bool) -> lmdb.Environment:
    # Read-only; lock=True registers as a reader beside a running node.
    try:
        return lmdb.open(
            str(path), readonly=True, lock=lock, max_dbs=_MAX_DBS, subdir=True, readahead=False
        )
    except lmdb.Error as exc:
        raise refuse(STORE_UNREADABLE, f"{path} cannot be opened as a store: {exc}") from None


def read_store_facts(env: lmdb.Environment) -> StoreFacts:
    """The facts of an open environment (see :class:`StoreFacts`)."""
    tables: dict[str, int] = {}
    locks: dict[bytes, bytes] = {}
    votes: dict[bytes, bytes] = {}
    economies: list[str] = []
    schema: int | None = None
    with env.begin(write=False) as txn:
        names = [bytes(key) for key, _ in txn.cursor()]
    for name in names:
        db = env.open_db(name, create=False)
        with env.begin(write=False) as txn:
            tables[name.decode("utf-8", "replace")] = int(txn.stat(db)["entries"])
            if name == b"meta":
                raw = txn.get(b"schema", db=db)
                if raw is not None and raw.isdigit():
                    schema = int(raw)
            elif name == b"economies":
                economies = [bytes(k).hex() for k, _ in txn.cursor(db=db)]
            elif name == b"locks":
                locks = {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
            elif name == b"votes":
                votes = {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
    info, stat = env.info(), env.stat()
    return StoreFacts(
        schema=schema,
        economies=tuple(sorted(economies)),
        tables=dict(sorted(tables.items())),
        locks=locks,
        votes=votes,
        used_bytes=(info["last_pgno"] + 1) * stat["psize"],
        map_bytes=int(info["map_size"]),
    )


def store_facts(path: Path) -> StoreFacts:
    """The facts of the store at ``path`` (a directory with ``data.mdb``),
    read beside a running node."""
    env = _open(path, lock=True)
    try:
        return read_store_facts(env)
    finally:
        env.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _version() -> str:
    from mycelia.node.rpc.methods import VERSION

    return VERSION


@click.command("backup")
@click.argument("target", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--include-key",
    is_flag=True,
    help="Also copy the node key (mode 0600): whoever holds the backup can then act as the node.",
)
@click.pass_context
def backup(ctx: click.Context, target: Path, include_key: bool) -> None:
    """Copy the node's store (consistent, while the node runs) into DIR.

    DIR must not exist or be empty. Writes DIR/store/data.mdb, DIR/node.key
    with --include-key, and DIR/manifest.json last.
    """
    config = load(ctx)
    store = config.node.datadir / "store"
    if not (store / "data.mdb").is_file():
        raise refuse(NO_STORE, f"no store at {store}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise refuse(BACKUP_EXISTS, f"{target} exists and is not an empty directory")
    key_file = config.node.key_file
    did: str | None = None
    key_bytes: bytes | None = None
    try:
        did = key_info(key_file).did
        if include_key:
            key_bytes = read_private(key_file, "node key")
    except KeyFileError as exc:
        if include_key:
            raise CliError(str(exc)) from None
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    (target / "store").mkdir(mode=0o700)
    env = _open(store, lock=True)
    try:
        env.copy(str(target / "store"), compact=True)
    finally:
        env.close()
    files: dict[str, dict[str, Any]] = {}
    copy = target / STORE_FILE
    os.chmod(copy, 0o600)  # the ledger is not secret, but it is the node's, not the host's
    _fsync(copy)
    files[STORE_FILE] = {"sha256": _sha256(copy), "bytes": copy.stat().st_size}
    if key_bytes is not None:
        fd = os.open(target / KEY_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        files[KEY_FILE] = {
            "sha256": hashlib.sha256(key_bytes).hexdigest(),
            "bytes": len(key_bytes),
        }
    # Counted from the copy: the manifest describes exactly what was copied.
    copied_env = _open(target / "store", lock=False)
    try:
        facts = read_store_facts(copied_env)
    finally:
        copied_env.close()
    manifest = {
        "format": FORMAT,
        "created_ms": time.time_ns() // 1_000_000,
        "mycelia": _version(),
        "schema": facts.schema,
        "did": did,
        "economies": list(facts.economies),
        "tables": facts.tables,
        "files": files,
    }
    tmp = target / (MANIFEST + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _fsync(tmp)
    tmp.rename(target / MANIFEST)
    _fsync(target)
    out = stdout()
    out.print(Text(f"backup written to {target}", style="bold green"))
    out.print(Text(f"  schema     {facts.schema}"))
    out.print(Text(f"  economies  {len(facts.economies)}"))
    out.print(Text(f"  store      {files[STORE_FILE]['bytes']} bytes"))
    out.print(Text(f"  key        {'included (mode 0600)' if key_bytes else 'not included'}"))


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of the backup in ``source``, checked against its files."""
    path = source / MANIFEST
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_MANIFEST + 1)
    except OSError:
        raise refuse(NOT_A_BACKUP, f"{path} cannot be read") from None
    if len(raw) > _MAX_MANIFEST:
        raise refuse(NOT_A_BACKUP, f"{path} is over {_MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise refuse(NOT_A_BACKUP, f"{path} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise refuse(NOT_A_BACKUP, f"{path} is not a format {FORMAT} mycelia backup manifest")
    files = manifest.get("files")
    schema = manifest.get("schema")
    if not isinstance(files, dict) or STORE_FILE not in files or not isinstance(schema, int):
        raise refuse(NOT_A_BACKUP, f"{path} names no store or no schema")
    if schema > SCHEMA_VERSION:
        raise refuse(
            SCHEMA_NEWER,
            f"the backup's store has schema {schema}; this mycelia reads up to "
            f"{SCHEMA_VERSION} (restore it with the version that wrote it: "
            f"{manifest.get('mycelia')})",
        )
    for name, want in files.items():
        if name not in (STORE_FILE, KEY_FILE) or not isinstance(want, dict):
            raise refuse(NOT_A_BACKUP, f"{path} names an unexpected file {name!r}")
        file = source / name
        if not file.is_file() or _sha256(file) != want.get("sha256"):
            raise refuse(BACKUP_CORRUPT, f"{file} is missing or does not match its checksum")
    return manifest


def _refuse_if_running(ctx: click.Context) -> None:
    """A node that answers on this datadir's RPC still has the store open:
    moving it aside under the node would lose what it writes next."""
    try:
        with connect(ctx) as client:
            did = client.node_info().did
    except ClientError:
        return
    raise refuse(NODE_RUNNING, f"node {did} is running on this datadir; stop it first")


def _lost(current: dict[bytes, bytes], restored: dict[bytes, bytes]) -> int:
    return sum(1 for key, value in current.items() if restored.get(key) != value)


@click.command("restore")
@click.argument(
    "source", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--force", is_flag=True, help="Replace an existing store (it is moved aside).")
@click.option(
    "--i-know",
    "i_know",
    is_flag=True,
    help="Restore even though the backup lacks locks or votes the current store holds "
    "(the node must not vote until it has synced: see docs/install.md).",
)
@click.pass_context
def restore(ctx: click.Context, source: Path, force: bool, i_know: bool) -> None:
    """Restore a backup made by `mycelia backup` into the node's datadir.

    Stop the node first (refused while it answers). Refuses to replace a
    store unless --force, a backup of a newer schema, and (without
    --i-know) one that would forget a validator's locks or votes.
    """
    config = load(ctx)
    manifest = read_manifest(source)
    _refuse_if_running(ctx)
    datadir = config.node.datadir
    store = datadir / "store"
    key_file = config.node.key_file
    has_store = (store / "data.mdb").is_file()
    if has_store and not force:
        raise refuse(STORE_EXISTS, f"{store} holds a store; use --force to replace it")
    backup_key = source / KEY_FILE if KEY_FILE in manifest["files"] else None
    if key_file.exists():
        try:
            current_did = key_info(key_file).did
        except KeyFileError as exc:
            raise CliError(str(exc)) from None
        if manifest.get("did") not in (None, current_did):
            raise refuse(
                KEY_MISMATCH,
                f"the backup is of node {manifest.get('did')}, this datadir's key is "
                f"{current_did}; restore into a datadir without a key",
            )
    restored_env = _open(source / "store", lock=False)
    try:
        restored = read_store_facts(restored_env)
    finally:
        restored_env.close()
    if has_store:
        current = store_facts(store)
        lost = _lost(current.locks, restored.locks) + _lost(current.votes, restored.votes)
        if lost and not i_know:
            raise refuse(
                LOSES_VOTES,
                f"the backup lacks {lost} validator locks or votes the current store holds "
                "(restoring it could let this validator vote twice); use --i-know, and keep "
                "validator.enabled = false until the node has synced",
            )
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = datadir / "store.restoring"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted restore: ours, never the store
    staging.mkdir(mode=0o700)
    shutil.copyfile(source / STORE_FILE, staging / "data.mdb")
    os.chmod(staging / "data.mdb", 0o600)
    _fsync(staging / "data.mdb")
    moved = None
    if store.exists():
        moved = datadir / f"store.before-restore-{time.time_ns() // 1_000_000}"
        store.rename(moved)
    staging.rename(store)
    key_note = "kept" if key_file.exists() else "none"
    if backup_key is not None and not key_file.exists():
        fd = os.open(key_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(backup_key.read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        key_note = "restored from the backup"
    _fsync(datadir)
    out = stdout()
    out.print(Text(f"restored {source} into {store}", style="bold green"))
    out.print(Text(f"  schema     {manifest['schema']} (the node migrates it when it starts)"))
    out.print(Text(f"  key        {key_note}"))
    if moved is not None:
        out.print(Text(f"  previous   moved to {moved}"))
    if config.validator.enabled:
        out.print(
            Text(
                "a validator restored from a backup must not vote for slots it voted on after "
                "the backup: keep validator.enabled = false until the node has synced"
            )
        )
