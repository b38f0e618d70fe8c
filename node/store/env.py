"""The one LMDB environment the store's parts share: its writer, its readers
and its map.

Why one environment for every part: one memory-mapped file to back up and
to fsync, one writer lock, and a write transaction that may span parts if a
rule ever needs it. The parts (``ledger``, ``votes``, ``submissions``,
``readings``) are :class:`Tables` handed this environment and only their
own named databases, so a part cannot touch another's tables by accident.

Threads: :meth:`Environment.write` holds the writer lock for the whole
transaction, so a part's ``*_sync`` method may run on any worker thread
(the package docstring says how the node runs them); reads are short read
transactions (:meth:`Environment.read`) on any thread.

Map size: starts at ``map_size`` (64 MiB by default, valid on 32-bit
systems), and doubles on ``MapFullError`` up to ``max_map_size`` — the
transaction is retried whole.

Keys: counters and sequence numbers in keys are 8 bytes big-endian
(``_SEQ``), so LMDB's byte order is their numeric order; ``_LAST`` is the
largest such suffix, for seeking to the end of a prefix.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

import lmdb

__all__ = ["MIB", "Environment", "StoreError", "Tables"]

MIB = 1 << 20
#: Database handles beyond the named ones, for a migration that opens a
#: table it deletes (``migrations._drop``).
_SPARE_DBS = 2
_SEQ = struct.Struct(">Q")
_LAST = b"\xff" * 8
T = TypeVar("T")


class StoreError(Exception):
    """A store that cannot be used as it is (schema mismatch, map at its bound)."""


def _counter(key: bytes) -> int:
    return int(_SEQ.unpack(key[-8:])[0])


def _stored(value: bytes | None, key: bytes, table: str) -> bytes:
    """The value an index entry points at, which the store writes in the same
    transaction as the entry: missing, the store is damaged."""
    if value is None:
        raise StoreError(f"store is damaged: {key.hex()} is indexed but not in {table}")
    return value


class Environment:
    """The LMDB environment at ``path`` with the named ``databases`` (opened
    by :meth:`open_databases`, after the schema check)."""

    def __init__(
        self,
        path: Path | str,
        databases: Sequence[str],
        *,
        map_size_mb: int,
        max_map_size_mb: int,
        sync: bool,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._names = tuple(databases)
        self._max_map = max_map_size_mb * MIB
        self.lmdb = lmdb.open(
            str(self.path),
            map_size=min(map_size_mb, max_map_size_mb) * MIB,
            max_dbs=len(self._names) + _SPARE_DBS,
            subdir=True,
            sync=sync,
            metasync=sync,
            readahead=False,  # random reads on SD cards; readahead wastes RAM
            max_spare_txns=4,
        )
        self._write_lock = threading.Lock()
        self._closed = False
        self._db: dict[str, lmdb._Database] = {}

    def open_databases(self) -> None:
        """Open (and create, if new) every named database."""
        self._db = {name: self.lmdb.open_db(name.encode()) for name in self._names}

    def db(self, name: str) -> lmdb._Database:
        """The handle of the named database (after :meth:`open_databases`)."""
        return self._db[name]

    def close(self) -> None:
        # After any write transaction still running in a worker thread (the
        # ingest's group commit may outlive the node's services at a stop).
        with self._write_lock:
            self._closed = True
            self.lmdb.close()

    # -- the writer --------------------------------------------------------------

    def write(self, fn: Callable[[lmdb.Transaction[bytes]], T]) -> T:
        """Run ``fn`` in one write transaction, growing the map and retrying
        the whole transaction if it fills."""
        with self._write_lock:
            if self._closed:
                raise StoreError(f"store at {self.path} is closed")
            while True:
                try:
                    with self.lmdb.begin(write=True) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    size = self.lmdb.info()["map_size"]
                    if size >= self._max_map:
                        raise StoreError(
                            f"store is full at {size // MIB} MiB (store.max_map_size_mb)"
                        ) from None
                    self.lmdb.set_mapsize(min(size * 2, self._max_map))

    # -- readers ---------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction[bytes]]:
        with self.lmdb.begin(write=False, buffers=False) as txn:
            yield txn

    def size_bytes(self) -> int:
        """Bytes in use (pages up to the last used one), for metrics."""
        info, stat = self.lmdb.info(), self.lmdb.stat()
        return (info["last_pgno"] + 1) * stat["psize"]


class Tables:
    """One part of the store: the named databases it owns (``DATABASES``,
    each part's module docstring gives their layout) in the shared
    :class:`Environment`."""

    DATABASES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._db = {name: env.db(name) for name in self.DATABASES}

    def _write(self, fn: Callable[[lmdb.Transaction[bytes]], T]) -> T:
        return self._env.write(fn)

    def _read(self) -> AbstractContextManager[lmdb.Transaction[bytes]]:
        return self._env.read()
