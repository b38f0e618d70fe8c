"""Schema versions of the store and the migrations between them.

Why in place, and never "delete and re-sync": a validator that lost its
locks could vote for a conflicting entry. So migrations keep every
certificate, chain, account, validator lock and vote, pending submission
and reading.

============  ===============================================  ==========================
database      key                                              value
============  ===============================================  ==========================
meta          b"schema"                                        schema version (ascii)
============  ===============================================  ==========================

``meta/schema`` names the layout. Opening a store of an older schema
migrates it in place, one step ``N -> N+1`` at a time, each in one write
transaction that also bumps the version (a crash leaves the store at N or
at N+1, never between). A store of an unknown (newer) schema, or whose
locks and votes cannot be read, is refused with :class:`StoreError` before
anything is written.

==========  =============================================================
schema      change
==========  =============================================================
4 -> 5      adds ``parked``, ``refusals`` and ``forks`` (empty: schema 4
            kept its gap buffer in memory, its refusals nowhere, and
            recorded no fork evidence); deletes ``peers`` (peer id ->
            addresses: written and read by nothing but a test — the
            p2p layer keeps its own peer store and bootstrap peers come
            from the config); fills ``sizes`` (per economy: accounts
            and certified entries, counted from ``accounts``); checks
            that every lock and vote reads back
5 -> 6      fills ``summary`` (per economy: its chains and the LtHash16
            lanes of their heads, ``summary.py``, computed from the
            ``seq`` of every account in ``accounts``: one SHAKE-256 per
            chain); every other table keeps its layout and contents
6 -> 7      writes the electorate's records of admissions applied before
            governance existed (``protocol/electorate.py``): per economy,
            fact ``admission/<member>`` = the earliest ``ts_ms`` of the
            member's certified ``member.admit`` entries and counter
            ``members`` = the number of distinct admitted members,
            computed by ``electorate.admission_records`` from the
            certificates in ``certs`` (the applied ones; parked ones are
            applied later, by code that writes the records). Stores whose
            code already wrote them get the same values back. Epoch
            history needs no table: the ``epoch/<n>`` and
            ``gov.proposal/<id>`` facts are ledger records, and the
            certificates they name are in ``certs``
            (``LedgerTables.economy_in_force``). It also adds
            ``vouchers`` (``compute.py``: the newest voucher this
            node holds as a compute provider per channel; empty — schema
            6 ran no provider, so it held none); every other table keeps
            its layout and contents (the channel records of schema 6 are
            ledger records and stay as they were)
==========  =============================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lmdb

from mycelia.node.store.env import Environment, StoreError
from mycelia.node.store.ledger import encode_sizes
from mycelia.node.store.summary import HeadsSum
from mycelia.protocol import Account, Certificate, MemberAdmit, Vote
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.electorate import admission_records
from mycelia.protocol.reasons import Refused

__all__ = ["OLDEST_SCHEMA", "SCHEMA_VERSION", "open_and_migrate"]

SCHEMA_VERSION = 7
#: The oldest schema this code migrates from.
OLDEST_SCHEMA = 4
log = logging.getLogger("mycelia.store")


def open_and_migrate(env: Environment) -> None:
    """Check the schema of the store in ``env`` (writing nothing), open its
    databases and migrate it to :data:`SCHEMA_VERSION`."""
    found = _schema_found(env)
    if found is not None and found < SCHEMA_VERSION:
        _check_locks_and_votes(env)  # before anything is written
    env.open_databases()
    _migrate(env, found)


def _schema_found(env: Environment) -> int | None:
    """The schema of an existing store (None for a new one), read
    without writing anything; :class:`StoreError` if this code cannot
    open it."""
    try:
        meta = env.lmdb.open_db(b"meta", create=False)
    except lmdb.NotFoundError:
        return None
    with env.lmdb.begin(write=False) as txn:
        raw = txn.get(b"schema", db=meta)
    if raw is None:
        return None
    try:
        found = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise StoreError(f"store at {env.path} has an unreadable schema version") from None
    if found > SCHEMA_VERSION or found < OLDEST_SCHEMA:
        raise StoreError(
            f"store at {env.path} has schema version {found}; this mycelia reads "
            f"{OLDEST_SCHEMA} to {SCHEMA_VERSION} (nothing was changed: run the mycelia "
            "version that wrote it, or one that migrates from it)"
        )
    return found


def _check_locks_and_votes(env: Environment) -> None:
    """Every validator lock and vote must read back, or the store is
    refused before it is migrated: voting with locks it cannot read
    could sign a conflicting entry."""
    try:
        locks = env.lmdb.open_db(b"locks", create=False)
        votes = env.lmdb.open_db(b"votes", create=False)
    except lmdb.NotFoundError:
        raise StoreError(f"store at {env.path} has no lock tables") from None
    with env.lmdb.begin(write=False) as txn:
        for key, value in txn.cursor(db=locks):
            if len(key) != ID_SIZE or len(value) != ID_SIZE:
                raise StoreError(f"store at {env.path}: an unreadable validator lock")
        for key, value in txn.cursor(db=votes):
            try:
                vote = Vote.decode(value)
            except Refused as exc:
                raise StoreError(f"store at {env.path}: an unreadable vote ({exc})") from None
            if vote.entry_id != key:
                raise StoreError(f"store at {env.path}: a vote stored under another entry")


def _migrate(env: Environment, found: int | None) -> None:
    meta = env.db("meta")
    if found is None:  # a new store
        with env.lmdb.begin(write=True) as txn:
            txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=meta)
        return
    while found < SCHEMA_VERSION:
        step = _MIGRATIONS[found]
        with env.lmdb.begin(write=True) as txn:
            step(env, txn)
            txn.put(b"schema", str(found + 1).encode(), db=meta)
        log.warning("store at %s migrated from schema %d to %d", env.path, found, found + 1)
        found += 1


def _drop(env: Environment, txn: lmdb.Transaction[bytes], name: str) -> None:
    """Delete the named database (and free its pages), if the store has it."""
    try:
        db = env.lmdb.open_db(name.encode(), txn=txn, create=False)
    except lmdb.NotFoundError:
        return
    txn.drop(db, delete=True)


def _v4_to_v5(env: Environment, txn: lmdb.Transaction[bytes]) -> None:
    """``parked``, ``refusals`` and ``forks`` were created empty when the
    store opened (after ``_check_locks_and_votes``); ``peers`` goes (see the
    module docstring); every other table keeps its layout."""
    _drop(env, txn, "peers")
    # ``sizes`` from what schema 4 holds: per economy, its accounts and the
    # sum of their chain heads (each applied entry advanced one head by one).
    sizes: dict[bytes, list[int]] = {}
    for key, raw in txn.cursor(db=env.db("accounts")):
        counts = sizes.setdefault(bytes(key[:32]), [0, 0])
        counts[0] += 1
        counts[1] += Account.decode(raw).seq
    for economy_id, (accounts, certified) in sizes.items():
        txn.put(economy_id, encode_sizes(accounts, certified), db=env.db("sizes"))


def _v5_to_v6(env: Environment, txn: lmdb.Transaction[bytes]) -> None:
    """``summary`` was created empty when the store opened: fill it from the
    chain heads schema 5 holds (an account's ``seq``; 0 for an account that
    never authored an entry, which is no chain)."""
    heads: dict[bytes, list[tuple[bytes, int]]] = {}
    for key, raw in txn.cursor(db=env.db("accounts")):
        seq = Account.decode(raw).seq
        if seq:
            heads.setdefault(bytes(key[:32]), []).append((bytes(key[32:]), seq))
    for economy_id, chains in heads.items():
        txn.put(economy_id, HeadsSum.of(chains).encode(), db=env.db("summary"))


def _v6_to_v7(env: Environment, txn: lmdb.Transaction[bytes]) -> None:
    """The admission records from the certified ``member.admit`` entries
    (module docstring); written whole, so a store that already holds them
    gets the same bytes."""
    admissions: dict[bytes, list[tuple[bytes, int]]] = {}
    for _, raw in txn.cursor(db=env.db("certs")):
        entry = Certificate.decode(bytes(raw)).entry
        if isinstance(entry.body, MemberAdmit):
            admissions.setdefault(entry.economy, []).append((entry.body.member, entry.ts_ms))
    records = env.db("records")
    for economy_id, admitted in admissions.items():
        for key, value in admission_records(admitted).items():
            txn.put(economy_id + key, value, db=records)
    # and ``vouchers`` was created empty when the store opened, which is what
    # a store that never ran a compute provider holds


#: ``N -> migration to N+1`` (see the module docstring).
_MIGRATIONS: dict[int, Callable[[Environment, lmdb.Transaction[bytes]], None]] = {
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
}
