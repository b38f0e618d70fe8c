"""The LMDB store: batches apply atomically through the protocol's rules,
state survives reopening, the map grows, locks are durable, and a process
killed at any instant leaves a store consistent with its certificates."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mycelia.node.store import (
    Accepted,
    InFlight,
    IngestState,
    Store,
    StoreError,
    VoteGrant,
    reading_key,
)
from mycelia.node.store.ledger import LedgerTables
from mycelia.node.store.readings import ReadingTables
from mycelia.node.store.submissions import SubmissionTables
from mycelia.node.store.votes import VoteTables
from mycelia.protocol import (
    P256,
    Certificate,
    DeviceRecord,
    Ledger,
    Reason,
    SignedReading,
    Transfer,
    schema,
)
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.locks import resources
from mycelia.testing.economies import (
    ENERGY,
    TEMPERATURE,
    World,
    device_key,
    impact_genesis,
    key,
    sign_genesis,
    validator_keys,
)
from tests.node.test_migration import unpack_v4

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = [key(i) for i in range(8)]


@functools.cache
def history(n: int, seed: int = 1, memo: str = "") -> tuple[World, list[Certificate]]:
    """``n`` certified transfers (the World's ledger holds the expected state).
    Cached: treat the result as read-only."""
    rnd = random.Random(seed)
    w = World()
    certs = []
    for _ in range(n):
        a, b = rnd.sample(ACCOUNTS, 2)
        certs.append(w.transfer(a, b, rnd.randint(1, 50), memo))
    return w, certs


BULKY = "x" * 250  # memos that make 1,500 certificates outgrow a 1 MiB map


def open_store(path: Path, w: World, **kw: object) -> Store:
    store = Store(path, **kw)  # type: ignore[arg-type]
    store.add_economy_sync(sign_genesis(w.genesis, w.vkeys))
    return store


def test_batches_apply_like_the_in_memory_ledger(tmp_path: Path) -> None:
    w, certs = history(60)
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    applied: list[bytes] = []
    for i in range(0, len(certs), 7):
        result = store.apply_sync(w.economy, buf, certs[i : i + 7])
        assert result.refused == ()
        applied.extend(result.applied)
    assert sorted(applied) == sorted(c.entry_id for c in certs)
    assert store.accounts(w.id) == w.ledger.state.accounts
    assert store.chain_ids(w.id) == w.ledger.chain
    assert store.certificate_bytes(certs[5].entry_id) == certs[5].encode()
    assert store.heads(w.id) == {k: a.seq for k, a in w.ledger.state.accounts.items() if a.seq}


def test_gaps_wait_in_the_buffer_and_duplicates_are_no_ops(tmp_path: Path) -> None:
    w, certs = history(30)
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    late, early = certs[:10], certs[10:]
    first = store.apply_sync(w.economy, buf, early)
    second = store.apply_sync(w.economy, buf, late + late[:3])
    assert len(first.applied) + len(second.applied) == 30
    assert len(buf) == 0
    assert store.accounts(w.id) == w.ledger.state.accounts


def test_a_conflicting_certificate_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    w, certs = history(5)
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    store.apply_sync(w.economy, buf, certs)
    first = certs[0].entry
    twin = w.certify(w.entry(ACCOUNTS[7], Transfer(ACCOUNTS[6].public, 1)))
    fork = w.certify(
        w.entry(key(0, "author-of-fork"), Transfer(first.author, 1), seq=1, prev=bytes(32))
    )
    fork_twin = w.certify(
        w.entry(key(0, "author-of-fork"), Transfer(first.author, 2), seq=1, prev=bytes(32))
    )
    before = store.accounts(w.id)
    store.apply_sync(w.economy, buf, [fork])
    result = store.apply_sync(w.economy, buf, [fork_twin])
    assert [r.reason for _, r in result.refused] == [Reason.CONFLICT]
    assert result.applied == ()
    assert store.accounts(w.id) != before  # the fork's first certificate applied
    after_fork = store.accounts(w.id)
    assert store.apply_sync(w.economy, buf, [fork_twin]).applied == ()
    assert store.accounts(w.id) == after_fork
    assert twin.entry_id not in store.chain_ids(w.id).values()


def test_state_survives_reopening(tmp_path: Path) -> None:
    w, certs = history(20)
    store = open_store(tmp_path, w)
    store.apply_sync(w.economy, GapBuffer(), certs)
    store.close()
    again = Store(tmp_path)
    assert [g.genesis.id for g in again.economies()] == [w.id]
    assert again.accounts(w.id) == w.ledger.state.accounts
    assert again.chain_ids(w.id) == w.ledger.chain


def test_schema_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    Store(tmp_path).close()
    import lmdb

    env = lmdb.open(str(tmp_path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"99", db=meta)
    env.close()
    with pytest.raises(StoreError, match=r"schema version 99; this mycelia reads 4 to 7"):
        Store(tmp_path)


def test_the_store_routes_every_part_method_to_its_part(tmp_path: Path) -> None:
    """Callers use ``store.method(...)`` whichever part owns the table: each
    public method of a part is the store's, and calls that part's."""
    store = Store(tmp_path)
    try:
        parts = {
            "_ledger": LedgerTables,
            "_votes": VoteTables,
            "_submissions": SubmissionTables,
            "_readings": ReadingTables,
        }
        for attr, cls in parts.items():
            names = [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]
            assert names, cls
            for name in names:
                routed = getattr(store, name)
                assert routed.__self__ is getattr(store, attr), name
                assert routed.__func__ is vars(cls)[name], name
    finally:
        store.close()


def map_size(store: Store) -> int:
    """The environment's map size now (white box: the store exports only
    the bytes in use, ``size_bytes``)."""
    return int(store._env.lmdb.info()["map_size"])


def test_the_map_grows_on_demand(tmp_path: Path) -> None:
    w, certs = history(1500, memo=BULKY)
    store = open_store(tmp_path, w, map_size_mb=1, max_map_size_mb=64)
    assert map_size(store) == 1 << 20
    result = store.apply_sync(w.economy, GapBuffer(), certs)
    assert len(result.applied) == 1500
    assert map_size(store) > 1 << 20
    assert store.accounts(w.id) == w.ledger.state.accounts


def test_a_full_map_at_its_bound_refuses_the_batch_whole(tmp_path: Path) -> None:
    w, certs = history(1500, memo=BULKY)
    store = open_store(tmp_path, w, map_size_mb=1, max_map_size_mb=1)
    buf = GapBuffer()
    store.apply_sync(w.economy, buf, certs[:20])
    before = store.accounts(w.id)
    with pytest.raises(StoreError, match="store is full"):
        store.apply_sync(w.economy, buf, certs[20:])
    assert store.accounts(w.id) == before
    assert len(store.chain_ids(w.id)) == 20


def test_vote_grants_lock_durably_and_never_twice(tmp_path: Path) -> None:
    w = World()
    store = open_store(tmp_path, w)
    one = w.entry(ACCOUNTS[0], Transfer(ACCOUNTS[1].public, 1))
    two = w.entry(ACCOUNTS[0], Transfer(ACCOUNTS[2].public, 1))
    g1 = VoteGrant(one.id, resources(one.entry), b"vote-1")
    g2 = VoteGrant(two.id, resources(two.entry), b"vote-2")
    assert store.grant_votes_sync([g1, g2]) == [True, False]
    assert store.grant_votes_sync([g1]) == [True]  # re-vote for the same entry
    store.close()
    again = Store(tmp_path)
    assert again.grant_votes_sync([g2]) == [False]
    assert again.lock(resources(one.entry)[0]) == one.id
    assert again.vote(one.id) == b"vote-1"
    assert again.vote(two.id) is None


def test_pending_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.update_pending_sync([(b"\x01" * 32, [b"entry", "pending", 5])], [])
    assert store.pending() == {b"\x01" * 32: [b"entry", "pending", 5]}
    store.update_pending_sync([], [b"\x01" * 32])
    assert store.pending() == {}


def database_names(path: Path) -> set[bytes]:
    """The named databases of the store at ``path`` (closed)."""
    import lmdb

    env = lmdb.open(str(path), max_dbs=32, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {bytes(k) for k, _ in txn.cursor()}
    finally:
        env.close()


def test_the_v4_peers_table_is_deleted_and_a_new_store_has_none(tmp_path: Path) -> None:
    """Schema 4's ``peers`` table (read by nothing) goes in the 4 -> 5
    migration, with the rest of the store kept; a new store never has it."""
    path = unpack_v4(tmp_path)
    assert b"peers" in database_names(path)
    Store(path).close()
    names = database_names(path)
    assert b"peers" not in names
    assert {b"meta", b"certs", b"locks", b"votes", b"pending", b"readings"} <= names
    assert {b"parked", b"refusals", b"forks"} <= names
    Store(tmp_path / "new").close()
    assert b"peers" not in database_names(tmp_path / "new")


CRASH_WRITER = """
import sys
from pathlib import Path
from tests.node.test_store import history, open_store
from mycelia.protocol.ledger import GapBuffer
w, certs = history(600, seed=7)
store = open_store(Path(sys.argv[1]), w, map_size_mb=1, max_map_size_mb=64)
buf = GapBuffer()
print("ready", flush=True)
for i in range(0, len(certs), 3):
    store.apply_sync(w.economy, buf, certs[i:i + 3])
    print(i, flush=True)
print("done", flush=True)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_killed_writer_leaves_a_consistent_store(tmp_path: Path, attempt: int) -> None:
    """SIGKILL a process in the middle of writing batches; the reopened store
    holds whole batches only: replaying its stored certificates in chain
    order gives exactly its stored accounts."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    # Kill while batches are being committed: after a random number of them.
    for _ in range(random.Random(attempt).randint(5, 120)):
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    w, _ = history(0, seed=7)
    store = Store(tmp_path)
    chain = store.chain_ids(w.id)
    assert 0 < len(chain) < 600  # killed mid-way
    assert len(chain) % 3 == 0  # whole batches only
    replay = Ledger(w.economy)
    for _author_seq, entry_id in sorted(chain.items(), key=lambda kv: kv[0][1]):
        cert = store.certificate(entry_id)
        assert cert is not None
        assert cert.entry_id == entry_id
        cert.verify(w.economy)
        replay.apply(cert, verified=True)
    assert replay.pending_count == 0
    assert store.accounts(w.id) == replay.state.accounts


def test_history_lists_each_accounts_certificates_newest_first(tmp_path: Path) -> None:
    w, certs = history(60)
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    applied: list[bytes] = []  # the order the node applied them in
    for i in range(0, len(certs), 9):
        applied.extend(store.apply_sync(w.economy, buf, certs[i : i + 9]).applied)
    by_id = {c.entry_id: c for c in certs}
    for acct in ACCOUNTS[:4]:
        mine = [
            i
            for i in applied
            if acct.public in (by_id[i].entry.author, by_id[i].entry.body.to)  # type: ignore[attr-defined]
        ]
        got = store.history(w.id, acct.public, None, 1000)
        assert [n for n, _ in got] == list(range(len(mine), 0, -1))
        assert [Certificate.decode(b).entry_id for _, b in got] == mine[::-1]
        # Pages of 4 by cursor cover the same list, without overlap.
        paged: list[bytes] = []
        before = None
        while True:
            page = store.history(w.id, acct.public, before, 4)
            if not page:
                break
            paged.extend(b for _, b in page)
            before = page[-1][0]
        assert paged == [b for _, b in got]
    assert store.history(w.id, key(99).public, None, 10) == []
    assert store.history(bytes(32), ACCOUNTS[0].public, None, 10) == []


# -- sensors ------------------------------------------------------------------------------------

OWNER, HOST = key(1, "owner"), key(2, "host")


def impact_history() -> tuple[World, list[Certificate], list[SignedReading]]:
    """register (both key types) -> attest -> claim -> attest -> claim, in a World."""
    w = World(impact_genesis(), validator_keys(4))
    devs = [device_key(1), device_key(2, P256)]
    certs = [w.register(OWNER, d, HOST, metrics=(ENERGY, TEMPERATURE)) for d in devs]
    readings = [r for d in devs for r in w.readings(d, range(1, 6), 400)]
    readings += w.readings(devs[0], [6], -35, metric="temp_c", exponent=-1)
    first = w.attest(HOST, readings)
    certs.append(first)
    certs.append(w.claim(OWNER, devs[0], [first]))
    second = w.attest(HOST, w.readings(devs[0], range(7, 10), 700))
    certs += [second, w.claim(OWNER, devs[0], [second])]
    return w, certs, readings


def test_sensor_records_apply_like_the_in_memory_ledger(tmp_path: Path) -> None:
    w, certs, _ = impact_history()
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    for cert in certs:  # one transaction each, as gossip would bring them
        assert store.apply_sync(w.economy, buf, [cert]).refused == ()
    assert store.records(w.id) == w.ledger.state.records
    assert store.accounts(w.id) == w.ledger.state.accounts
    assert store.account(w.id, OWNER.public).minted == 2 + 2  # 2000 Wh, then 2100 (+ carry)
    # The attestations of a device, in order, after a claim cursor.
    dev = device_key(1).device
    attests = [c.entry_id for c in certs if c.entry.kind == "sensor.attest"]
    assert store.attestations_of(w.id, dev, -1, 10) == attests
    assert store.attestations_of(w.id, dev, 6, 10) == attests[1:]
    assert store.attestations_of(w.id, dev, 9, 10) == []
    assert store.last_attested(w.id, dev) == 9
    assert store.last_attested(w.id, device_key(2, P256).device) == 5
    assert store.last_attested(w.id, device_key(3).device) is None
    assert (store.claims_applied, store.claimed_units) == (2, 2000 + 2100)
    devices = store.records(w.id, DeviceRecord.key(b""))
    assert len(devices) == 2


def test_readings_ingest_attest_and_prune(tmp_path: Path) -> None:
    w, _certs, readings = impact_history()
    store = open_store(tmp_path, w)
    econ = w.id
    old, new = readings[:5], readings[5:]

    def accepted(batch: list[SignedReading]) -> list[Accepted]:
        return [Accepted(econ, r.reading.device, r.reading.counter, r.encode()) for r in batch]

    store.ingest_sync(accepted(old), received_ms=1_000)
    store.ingest_sync(accepted(new), received_ms=5_000)
    dev1, dev2 = device_key(1).device, device_key(2, P256).device
    state = store.ingest_state(dev1)
    assert state == IngestState(econ, 6, 6)
    assert store.unattested_count() == len(readings)
    assert store.unattested_economies() == [econ]
    queued = store.unattested(econ, 100)
    assert [k for k, _ in queued] == sorted(k for k, _ in queued)  # (device, counter) order
    # The first five (dev1's 1..5, received at 1000) form a batch in flight.
    batch_keys = tuple(reading_key(r.reading.device, r.reading.counter) for r in old)
    flight = InFlight(econ, b"signed entry", batch_keys)
    store.begin_attestation_sync(b"\x07" * 32, flight)
    assert store.unattested_count() == len(readings) - 5
    assert store.in_flight() == {b"\x07" * 32: flight}
    # In flight: kept by retention whatever its age.
    assert store.prune_readings_sync(2_000) == 0
    # Refused: back in the queue; then attested for real.
    store.abort_attestation_sync(b"\x07" * 32)
    assert store.unattested_count() == len(readings)
    assert store.in_flight() == {}
    store.begin_attestation_sync(b"\x08" * 32, flight)
    assert store.finish_attestation_sync(b"\x08" * 32) == 5
    assert store.batch(b"\x08" * 32) == [r.encode() for r in old]
    page, more = store.readings(econ, dev1, 0, schema.UINT64_MAX, 4)
    assert [c for c, _ in page] == [1, 2, 3, 4]
    assert more == 5
    assert all(r.attestation == b"\x08" * 32 and r.index == c - 1 for c, r in page)
    page, more = store.readings(econ, dev1, 5, 6, 4)
    assert [(c, r.attested) for c, r in page] == [(5, True), (6, False)]
    assert more is None
    assert store.readings(bytes(32), dev1, 0, 10, 10) == ([], None)  # another economy
    # Retention: the old batch goes whole, everything newer stays, and so
    # does the replay guard (the last accepted counter).
    assert store.prune_readings_sync(2_000) == 5
    assert store.batch(b"\x08" * 32) is None
    assert store.reading(dev1, 1) is None
    assert store.reading(dev1, 6) is not None
    assert store.ingest_state(dev1) == IngestState(econ, 6, 1)
    assert store.ingest_state(dev2) == IngestState(econ, 5, 5)
    assert store.prune_readings_sync(10_000, chunk=2) == 6  # several transactions
    assert store.unattested_count() == 0
    assert store.ingest_state(dev2) == IngestState(econ, 5, 0)
    assert store.readings_size_bytes() > 0
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.ingest_sync(accepted(old), received_ms=1)


def test_sizes_count_accounts_and_entries_with_every_batch(tmp_path: Path) -> None:
    """``economy_get``'s figures come from counters kept in the apply
    transaction, equal to what a scan of the accounts gives."""
    w, certs = history(60)
    store = open_store(tmp_path, w)
    buf = GapBuffer()
    assert store.sizes_of(w.id) == (0, 0)
    for i in range(0, len(certs), 7):
        store.apply_sync(w.economy, buf, certs[i : i + 7])
        accounts = store.accounts(w.id)
        assert store.sizes_of(w.id) == (len(accounts), sum(a.seq for a in accounts.values()))
    assert store.sizes_of(w.id)[1] == 60
    # A batch applied twice changes nothing.
    store.apply_sync(w.economy, buf, certs[:7])
    assert store.sizes_of(w.id)[1] == 60


def test_held_vouchers_keep_the_newest_and_their_close(tmp_path: Path) -> None:
    """The compute provider's part (store/compute.py): the newest voucher per
    channel, in one transaction for many; a close under way keeps its
    voucher; a settled channel's row goes."""
    from mycelia.protocol import Voucher
    from mycelia.testing.economies import key as account

    consumer = account(1, "consumer")
    economy, a, b = b"\x01" * 32, b"\x0a" * 32, b"\x0b" * 32
    v = {(c, n): Voucher(economy, c, n).sign(consumer) for c in (a, b) for n in (10, 20, 30, 40)}
    store = Store(tmp_path / "s", sync=False)
    try:
        held = store.hold_vouchers_sync(
            [(economy, v[a, 20]), (economy, v[a, 10]), (economy, v[b, 10]), (economy, v[a, 20])]
        )
        assert held == [True, False, True, True]  # an older one is not held; the same one is
        row = store.held_voucher(a)
        assert row is not None
        assert (row.economy, row.voucher, row.amount, row.closing) == (economy, v[a, 20], 20, b"")
        assert store.hold_vouchers_sync([(economy, v[a, 30])]) == [True]
        store.begin_close_sync(a, b"signed close")
        # While its close is under way, a channel keeps the voucher it closes with.
        assert store.hold_vouchers_sync([(economy, v[a, 40]), (economy, v[b, 30])]) == [
            False,
            True,
        ]
        row = store.held_voucher(a)
        assert row is not None
        assert (row.amount, row.closing) == (30, b"signed close")
        store.abort_close_sync(a)
        row = store.held_voucher(a)
        assert row is not None
        assert row.closing == b""
        store.forget_voucher_sync(a)
        assert store.held_voucher(a) is None
        assert set(store.held_vouchers()) == {b}
        with pytest.raises(KeyError):
            store.begin_close_sync(a, b"x")
        with pytest.raises(StoreError):  # a channel is one economy's
            store.hold_vouchers_sync([(b"\x02" * 32, v[b, 40])])
        kept = store.held_voucher(b)
        assert kept is not None
        assert kept.amount == 30
    finally:
        store.close()
