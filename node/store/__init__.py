"""The node's durable state in LMDB.

Why LMDB: one memory-mapped file, readers that never block the writer,
atomic and durable write transactions, and nothing to run beside the node —
right for a Raspberry Pi's SD card as for a server.

Why parts: the store's named databases fall into five groups that share
nothing but the environment — each group has its own writer, its own
rules and its own reason to change — so each is a module and a class
(:class:`~mycelia.node.store.env.Tables`) handed the environment and only
its own databases. Each module's docstring gives its databases' layout
(all keys fixed-width bytes, all values canonical msgpack or raw ids) and
the rules they keep:

===============  ============================================  ===================================
module           databases                                     what and why
===============  ============================================  ===================================
``ledger``       economies, certs, chains, history, accounts,  certified ledger state, the same on
                 records, parked, attests, forks, sizes,       every node; one transaction a batch
                 summary
``votes``        locks, votes, held, inherited, sealed,        this validator's locks and votes,
                 snapshots, seeded                             durable before a vote leaves;
                                                               its ballots, seals, snapshots
``submissions``  pending, refusals                             this gateway's submissions and its
                                                               final answers, across restarts
``readings``     readings, ingest, unattested, inflight,       this host's sensor readings and
                 batches, received                             their way into attestations
``compute``      vouchers                                      the newest voucher this provider
                                                               holds per channel, its close
``summary``      (the values of ledger's ``summary``)          the per-economy summary sync compares
                                                               before it asks for heads
``migrations``   meta                                          the schema version and the
                                                               migrations between versions
``env``          (the environment)                             the one writer, readers, map growth
===============  ============================================  ===================================

:class:`Store` owns the environment: it opens it, migrates it
(``migrations``: in place, one step per version, refused with
:class:`StoreError` before anything is written if it cannot be read), and
builds the parts. Callers use the parts' methods on the store itself —
``store.account(...)``, ``store.grant_votes_sync(...)``,
``store.ingest_sync(...)`` — so which part owns a table is the store's
business, not theirs.

Threads: every write transaction runs entirely inside one call of a
``*_sync`` method, which the node runs with ``trio.to_thread.run_sync`` under
a one-slot limiter (LMDB allows one writer; a transaction must stay on its
thread). Reads are short read transactions on any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from mycelia.node.store import migrations
from mycelia.node.store.compute import ComputeTables, HeldVoucher
from mycelia.node.store.env import Environment, StoreError
from mycelia.node.store.ledger import ApplyResult, LedgerTables
from mycelia.node.store.migrations import SCHEMA_VERSION
from mycelia.node.store.readings import (
    MAX_BATCH_READINGS,
    Accepted,
    InFlight,
    IngestState,
    ReadingTables,
    StoredReading,
    reading_key,
)
from mycelia.node.store.submissions import Refusal, SubmissionTables
from mycelia.node.store.votes import VoteGrant, VoteTables

__all__ = [
    "MAX_BATCH_READINGS",
    "SCHEMA_VERSION",
    "Accepted",
    "ApplyResult",
    "HeldVoucher",
    "InFlight",
    "IngestState",
    "Refusal",
    "Store",
    "StoreError",
    "StoredReading",
    "VoteGrant",
    "reading_key",
]

_DATABASES = (
    "meta",
    *LedgerTables.DATABASES,
    *VoteTables.DATABASES,
    *SubmissionTables.DATABASES,
    *ReadingTables.DATABASES,
    *ComputeTables.DATABASES,
)
P = ParamSpec("P")
R = TypeVar("R")


class _Via(Generic[P, R]):
    """A :class:`Store` method that is one of its parts' methods:
    ``store.account(...)`` calls ``store._ledger.account(...)``. The part's
    method is the one definition (signature, docstring); the store only
    routes to it, so a caller never needs to know which part owns a table.
    Assigning the attribute on a store (a test's patch) shadows it as for
    any method."""

    def __init__(self, part: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self._part = part
        self._name = method.__name__
        self.__doc__ = method.__doc__
        self.__wrapped__ = method

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self._name:  # a typo would route to another method
            raise TypeError(f"{owner.__name__}.{name} routes to {self._name}")

    @overload
    def __get__(self, store: None, owner: type) -> _Via[P, R]: ...

    @overload
    def __get__(self, store: Store, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(
        self, store: Store | None, owner: type | None = None
    ) -> _Via[P, R] | Callable[P, R]:
        if store is None:
            return self
        method: Callable[P, R] = getattr(getattr(store, self._part), self._name)
        return method


class Store:
    """The store at ``path``: opened (created if new, migrated if older)
    here; :meth:`close` it after the last write."""

    def __init__(
        self,
        path: Path | str,
        *,
        map_size_mb: int = 64,
        max_map_size_mb: int = 1536,
        sync: bool = True,
    ) -> None:
        env = Environment(
            path,
            _DATABASES,
            map_size_mb=map_size_mb,
            max_map_size_mb=max_map_size_mb,
            sync=sync,
        )
        try:
            migrations.open_and_migrate(env)
        except BaseException:
            env.lmdb.close()
            raise
        self._env = env
        self._ledger = LedgerTables(env)
        self._votes = VoteTables(env)
        self._submissions = SubmissionTables(env)
        self._readings = ReadingTables(env)
        self._compute = ComputeTables(env)

    @property
    def path(self) -> Path:
        return self._env.path

    @property
    def claims_applied(self) -> int:
        """Impact claims applied since this store was opened (a metric)."""
        return self._ledger.claims_applied

    @property
    def claimed_units(self) -> int:
        """The sum of those claims' totals (a metric)."""
        return self._ledger.claimed_units

    # Every method below is called by the node, except three plain reads of
    # one table that only tests (and the test cluster) call: ``chain_ids``,
    # ``lock`` and ``reading`` — kept, as the one way to observe those
    # tables from outside (the migration test reads a schema-4 store's
    # locks and readings through them).

    close = _Via("_env", Environment.close)
    size_bytes = _Via("_env", Environment.size_bytes)

    # -- ledger.py ---------------------------------------------------------------

    add_economy_sync = _Via("_ledger", LedgerTables.add_economy_sync)
    apply_sync = _Via("_ledger", LedgerTables.apply_sync)
    economies = _Via("_ledger", LedgerTables.economies)
    economy = _Via("_ledger", LedgerTables.economy)
    economy_in_force = _Via("_ledger", LedgerTables.economy_in_force)
    account = _Via("_ledger", LedgerTables.account)
    accounts = _Via("_ledger", LedgerTables.accounts)
    record = _Via("_ledger", LedgerTables.record)
    records = _Via("_ledger", LedgerTables.records)
    heads = _Via("_ledger", LedgerTables.heads)
    sizes_of = _Via("_ledger", LedgerTables.sizes_of)
    summary_of = _Via("_ledger", LedgerTables.summary_of)
    certificate_bytes = _Via("_ledger", LedgerTables.certificate_bytes)
    certificate = _Via("_ledger", LedgerTables.certificate)
    unknown = _Via("_ledger", LedgerTables.unknown)
    not_stored_as_is = _Via("_ledger", LedgerTables.not_stored_as_is)
    parked = _Via("_ledger", LedgerTables.parked)
    chain_range = _Via("_ledger", LedgerTables.chain_range)
    chain_entry = _Via("_ledger", LedgerTables.chain_entry)
    chain_ids = _Via("_ledger", LedgerTables.chain_ids)
    history = _Via("_ledger", LedgerTables.history)
    forks = _Via("_ledger", LedgerTables.forks)
    fork_slots = _Via("_ledger", LedgerTables.fork_slots)
    fork = _Via("_ledger", LedgerTables.fork)
    fork_seq = _Via("_ledger", LedgerTables.fork_seq)
    attestations_of = _Via("_ledger", LedgerTables.attestations_of)
    last_attested = _Via("_ledger", LedgerTables.last_attested)

    # -- votes.py ----------------------------------------------------------------

    grant_votes_sync = _Via("_votes", VoteTables.grant_votes_sync)
    lock = _Via("_votes", VoteTables.lock)
    vote = _Via("_votes", VoteTables.vote)
    held = _Via("_votes", VoteTables.held)
    sealed = _Via("_votes", VoteTables.sealed)
    seal_sync = _Via("_votes", VoteTables.seal_sync)
    snapshot_sync = _Via("_votes", VoteTables.snapshot_sync)
    snapshot_part = _Via("_votes", VoteTables.snapshot_part)
    seeded_epoch = _Via("_votes", VoteTables.seeded_epoch)
    seed_sync = _Via("_votes", VoteTables.seed_sync)

    # -- submissions.py ----------------------------------------------------------

    update_pending_sync = _Via("_submissions", SubmissionTables.update_pending_sync)
    pending = _Via("_submissions", SubmissionTables.pending)
    refusal = _Via("_submissions", SubmissionTables.refusal)

    # -- readings.py -------------------------------------------------------------

    ingest_sync = _Via("_readings", ReadingTables.ingest_sync)
    begin_attestation_sync = _Via("_readings", ReadingTables.begin_attestation_sync)
    finish_attestation_sync = _Via("_readings", ReadingTables.finish_attestation_sync)
    abort_attestation_sync = _Via("_readings", ReadingTables.abort_attestation_sync)
    prune_readings_sync = _Via("_readings", ReadingTables.prune_readings_sync)
    ingest_state = _Via("_readings", ReadingTables.ingest_state)
    reading = _Via("_readings", ReadingTables.reading)
    readings = _Via("_readings", ReadingTables.readings)
    batch = _Via("_readings", ReadingTables.batch)
    unattested = _Via("_readings", ReadingTables.unattested)
    unattested_economies = _Via("_readings", ReadingTables.unattested_economies)
    unattested_count = _Via("_readings", ReadingTables.unattested_count)
    in_flight = _Via("_readings", ReadingTables.in_flight)
    readings_size_bytes = _Via("_readings", ReadingTables.readings_size_bytes)

    # -- compute.py --------------------------------------------------------------

    hold_vouchers_sync = _Via("_compute", ComputeTables.hold_vouchers_sync)
    begin_close_sync = _Via("_compute", ComputeTables.begin_close_sync)
    abort_close_sync = _Via("_compute", ComputeTables.abort_close_sync)
    forget_voucher_sync = _Via("_compute", ComputeTables.forget_voucher_sync)
    held_voucher = _Via("_compute", ComputeTables.held_voucher)
    held_vouchers = _Via("_compute", ComputeTables.held_vouchers)
