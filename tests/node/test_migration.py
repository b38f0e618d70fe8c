"""Store schema migrations: a store of an older schema (checked-in
fixtures, ``fixtures/store-v4.tar.gz``, ``store-v5.tar.gz`` and
``store-v6.tar.gz``, written by schema-4, -5 and -6 code, and
``store-v6-gov.tar.gz``, schema 6 with governance admissions) opens in place
with every certificate, chain, validator lock and vote, pending submission
and reading kept — and its validator still refuses to vote for an entry
that conflicts with one it locked before the upgrade. Schema 6's
``summary`` records and schema 7's admission records are computed from
what was stored and equal the ones a store that applied the same
certificates keeps. Schema 7's ``vouchers`` (a compute provider's) starts
empty beside the channel records schema 6 kept, and holds vouchers from
then on. A store this code cannot read is refused with nothing changed."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import lmdb
import pytest
import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import SCHEMA_VERSION, Store, StoreError, reading_key
from mycelia.node.store.summary import HeadsSum, Summary
from mycelia.node.submitter import CERTIFIED, Submitter
from mycelia.node.validator import ValidatorService
from mycelia.protocol import (
    Certificate,
    Economy,
    Reason,
    SignedEntry,
    Vote,
    Voucher,
    channel_state,
    codec,
)
from mycelia.protocol.electorate import MEMBERS_COUNTER
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.locks import resources
from mycelia.protocol.state import counter_key, decode_count
from mycelia.testing.economies import key, validator_keys

FIXTURES = Path(__file__).parent / "fixtures"
MANIFESTS = {v: json.loads((FIXTURES / f"store-v{v}.json").read_text()) for v in (4, 5, 6)}
MANIFEST = MANIFESTS[4]
V5 = MANIFESTS[5]
V6 = MANIFESTS[6]
#: Schema 6 with admissions applied by governance-era code, their records removed.
V6_GOV = json.loads((FIXTURES / "store-v6-gov.json").read_text())
#: The fixture stores, each of an older schema than this code writes.
OLDER = pytest.mark.parametrize("schema", sorted(MANIFESTS))


def unpack(tmp_path: Path, schema: int | str) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    with tarfile.open(FIXTURES / f"store-v{schema}.tar.gz") as tar:
        tar.extractall(path, filter="data")
    return path


def unpack_v4(tmp_path: Path) -> Path:
    return unpack(tmp_path, 4)


def schema_of(path: Path) -> bytes:
    env = lmdb.open(str(path), max_dbs=32, readonly=True, lock=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            return bytes(txn.get(b"schema", db=meta))
    finally:
        env.close()


def digest(path: Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


def from_scratch(store: Store, economy: bytes) -> Summary:
    """The summary of what ``store`` holds, computed from its heads, its
    sizes and its fork slots rather than read from its records."""
    heads = HeadsSum.of(store.heads(economy).items())
    return Summary.of(store.sizes_of(economy)[1], heads, store.fork_slots(economy))


def assert_kept(store: Store, manifest: dict[str, Any]) -> None:
    """Every certificate, lock, vote, pending submission, reading and
    attestation in flight the fixture's manifest lists reads back."""
    for entry_id, cert in manifest["certificates"].items():
        assert store.certificate_bytes(bytes.fromhex(entry_id)) == bytes.fromhex(cert)
    for resource, entry_id in manifest["locks"].items():
        assert store.lock(bytes.fromhex(resource)) == bytes.fromhex(entry_id)
    for entry_id, vote in manifest["votes"].items():
        assert store.vote(bytes.fromhex(entry_id)) == bytes.fromhex(vote)
    pending = store.pending()
    assert {k.hex() for k in pending} == set(manifest["pending"])
    for k, record in pending.items():
        stored = SignedEntry.from_wire(record[0]).encode()
        assert stored == bytes.fromhex(manifest["pending"][k.hex()])
    kept = []
    for key_hex in manifest["readings"]:
        key = bytes.fromhex(key_hex)
        reading = store.reading(key[:32], int.from_bytes(key[32:], "big"))
        assert reading is not None
        kept.append(reading_key(key[:32], int.from_bytes(key[32:], "big")).hex())
    assert kept == manifest["readings"]
    flights = store.in_flight()
    assert {k.hex(): [x.hex() for x in f.keys] for k, f in flights.items()} == manifest["in_flight"]
    econ = bytes.fromhex(manifest["economies"][0])
    heads = store.heads(econ)
    assert {a.hex(): n for a, n in heads.items()} == manifest["heads"]


@OLDER
def test_fixture_is_of_its_schema(tmp_path: Path, schema: int) -> None:
    assert schema_of(unpack(tmp_path, schema)) == str(schema).encode()
    assert MANIFESTS[schema]["schema"] == schema


def test_v4_store_migrates_in_place_and_keeps_everything(tmp_path: Path) -> None:
    path = unpack_v4(tmp_path)
    store = Store(path)
    try:
        assert SCHEMA_VERSION == 7
        assert_kept(store, MANIFEST)
        econ = bytes.fromhex(MANIFEST["economies"][0])
        # The tables schema 5 added exist and are empty.
        assert store.parked(econ) == []
        assert store.forks(econ) == []
        # Sizes counted from the schema-4 accounts: 3 payers, 30 transfers.
        assert store.sizes_of(econ) == (len(store.accounts(econ)), sum(MANIFEST["heads"].values()))
        assert store.sizes_of(econ) == (3, 30)
        # Schema 6's summary, through both steps, from the same heads.
        assert store.summary_of(econ) == from_scratch(store, econ)
        assert store.summary_of(econ).chains == 3
    finally:
        store.close()
    assert schema_of(path) == str(SCHEMA_VERSION).encode()
    # Opening a migrated store again writes nothing.
    before = digest(path)
    Store(path).close()
    assert digest(path) == before


def _fixture_certificates(manifest: dict[str, Any], economy: bytes) -> list[Certificate]:
    blobs = [*manifest["certificates"].values(), *manifest["parked"].values()]
    certs = [Certificate.decode(bytes.fromhex(b)) for b in blobs]
    return [c for c in certs if c.entry.economy == economy]


def test_v5_store_migrates_in_place_and_its_summary_is_computed(tmp_path: Path) -> None:
    """Schema 5 -> 6: everything kept (schema 5's parked certificate, fork
    evidence, refusal and sizes too), and each economy's summary equals
    the one computed from scratch — and the one a schema-6 store keeps
    after applying the same certificates in another order. The summary
    then keeps up from the migrated records: the certificate that fills
    the parked one's gap moves the head by two."""
    path = unpack(tmp_path, 5)
    store = Store(path)
    fresh = Store(tmp_path / "fresh", sync=False)
    try:
        assert_kept(store, V5)
        econ, impact = (bytes.fromhex(e) for e in V5["economies"])
        for entry_id, cert in V5["parked"].items():
            assert store.certificate_bytes(bytes.fromhex(entry_id)) == bytes.fromhex(cert)
        assert [c.encode().hex() for c in store.parked(econ)] == list(V5["parked"].values())
        forks = {f"{a.hex()}/{n}": store.fork(econ, a, n) for a, n in store.fork_slots(econ)}
        assert {k: v.hex() for k, v in forks.items() if v is not None} == V5["forks"]
        for entry_id, refusal in V5["refusals"].items():
            kept = store.refusal(bytes.fromhex(entry_id))
            assert kept is not None
            assert kept.encode().hex() == refusal
        for economy_hex, sizes in V5["sizes"].items():
            assert list(store.sizes_of(bytes.fromhex(economy_hex))) == sizes

        for economy in (econ, impact):
            migrated = store.summary_of(economy)
            assert migrated == from_scratch(store, economy)
            assert migrated.chains == len(store.heads(economy))
            signed = store.economy(economy)
            assert signed is not None
            fresh.add_economy_sync(signed)
            certs = _fixture_certificates(V5, economy)
            fresh.apply_sync(Economy.from_signed(signed), GapBuffer(), certs[::-1])
            assert fresh.summary_of(economy).same_heads(migrated)
        assert store.summary_of(econ).forks == len(V5["forks"]) == 1
        assert store.summary_of(econ) != Summary.of(0, HeadsSum(), [])

        unparks = Certificate.decode(bytes.fromhex(V5["unparks"]))
        signed = store.economy(econ)
        assert signed is not None
        buffer = GapBuffer()
        for cert in store.parked(econ):
            buffer.add(cert)
        result = store.apply_sync(Economy.from_signed(signed), buffer, [unparks])
        assert len(result.applied) == 2
        after = store.summary_of(econ)
        assert after == from_scratch(store, econ)
        assert after.certified == store.sizes_of(econ)[1] == sum(V5["heads"].values()) + 2
        assert not after.same_heads(Summary.of(0, HeadsSum(), []))
    finally:
        store.close()
        fresh.close()
    assert schema_of(path) == str(SCHEMA_VERSION).encode()


def test_v6_store_migrates_and_its_admission_records_are_computed(tmp_path: Path) -> None:
    """Schema 6 -> 7: everything kept, and the admissions applied before
    governance existed get their records: the earliest admission time of
    each member (of two stewards' admissions, the earlier) and the
    member count — byte for byte what applying the same certificates
    writes on a fresh store. Opening the migrated store again writes
    nothing."""
    path = unpack(tmp_path, "6-gov")
    store = Store(path)
    fresh = Store(tmp_path / "fresh", sync=False)
    try:
        assert_kept(store, V6_GOV)
        [(economy_hex, admissions)] = V6_GOV["admissions"].items()
        economy = bytes.fromhex(economy_hex)
        migrated = store.records(economy, b"fact/admission/")
        assert {
            k.removeprefix(b"fact/admission/").hex(): codec.decode(v) for k, v in migrated.items()
        } == admissions
        members = store.record(economy, counter_key(MEMBERS_COUNTER))
        assert members is not None
        assert decode_count(members) == V6_GOV["members"][economy_hex] == 2
        # Economies without admissions get no records.
        for other in V6_GOV["economies"]:
            if other != economy_hex:
                assert store.records(bytes.fromhex(other), b"fact/admission/") == {}
                assert store.record(bytes.fromhex(other), counter_key(MEMBERS_COUNTER)) is None
        signed = store.economy(economy)
        assert signed is not None
        fresh.add_economy_sync(signed)
        certs = _fixture_certificates(V6_GOV, economy)
        fresh.apply_sync(Economy.from_signed(signed), GapBuffer(), certs)
        assert fresh.records(economy, b"fact/admission/") == migrated
        assert fresh.record(economy, counter_key(MEMBERS_COUNTER)) == members
    finally:
        store.close()
        fresh.close()
    assert schema_of(path) == str(SCHEMA_VERSION).encode()
    before = digest(path)
    Store(path).close()
    assert digest(path) == before


def test_v6_store_migrates_in_place_and_keeps_its_channels(tmp_path: Path) -> None:
    """Schema 6 -> 7: everything kept — the channel records too — and the
    provider's voucher table is there, empty, and holds the newest voucher
    from then on."""
    path = unpack(tmp_path, 6)
    store = Store(path)
    try:
        assert_kept(store, V6)
        econ = bytes.fromhex(V6["economies"][0])
        for channel_hex, records in V6["channels"].items():
            channel = bytes.fromhex(channel_hex)
            for key_hex, value_hex in records.items():
                assert store.record(econ, bytes.fromhex(key_hex)) == bytes.fromhex(value_hex)
            state = channel_state(lambda k: store.record(econ, k), channel)
            assert state is not None
        for economy_hex, sizes in V6["sizes"].items():
            assert list(store.sizes_of(bytes.fromhex(economy_hex))) == sizes
        assert store.summary_of(econ) == from_scratch(store, econ)
        assert store.held_vouchers() == {}
        [open_hex] = [c for c, r in V6["channels"].items() if len(r) == 1]  # not settled
        consumer = key(3)  # carol opened it
        channel = bytes.fromhex(open_hex)
        newer, older = (Voucher(econ, channel, n).sign(consumer) for n in (30, 20))
        assert store.hold_vouchers_sync([(econ, newer), (econ, older)]) == [True, False]
        held = store.held_voucher(channel)
        assert held is not None
        assert (held.economy, held.voucher, held.closing) == (econ, newer, b"")
    finally:
        store.close()
    assert schema_of(path) == str(SCHEMA_VERSION).encode()


@OLDER
async def test_locks_hold_across_the_migration(tmp_path: Path, schema: int) -> None:
    """The double spend the fixture's validator 0 locked against before the
    upgrade: after it, the locked entry gets the very vote it got then, the
    conflicting one gets ``resource_locked`` — so across the migration at
    most one of them can gather a quorum."""
    manifest = MANIFESTS[schema]
    store = Store(unpack(tmp_path, schema))
    applier = Applier(store)
    svc = ValidatorService(validator_keys(4)[0], store, applier)
    locked = SignedEntry.decode(bytes.fromhex(manifest["locked_entry"]))
    conflicting = SignedEntry.decode(bytes.fromhex(manifest["conflicting_entry"]))
    assert resources(locked.entry)[0] == resources(conflicting.entry)[0]
    economy = applier.economies[locked.entry.economy]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            nursery.start_soon(svc.run)
            [again] = await svc.vote(economy.id, [wire.VoteItem(locked)])
            assert again.vote is not None
            assert again.vote.encode() == bytes.fromhex(manifest["votes"][locked.id.hex()])
            [refused] = await svc.vote(economy.id, [wire.VoteItem(conflicting)])
            assert refused.vote is None
            assert refused.reason is Reason.RESOURCE_LOCKED
            nursery.cancel_scope.cancel()
    finally:
        store.close()


@OLDER
async def test_pending_submission_resumes_after_the_migration(tmp_path: Path, schema: int) -> None:
    """The pending record written at schema 4 (or 5) is resumed, and
    certified by validators that vote for it (here: fakes answering with
    real votes)."""
    manifest = MANIFESTS[schema]
    store = Store(unpack(tmp_path, schema))
    applier = Applier(store)
    vkeys = validator_keys(4)
    [(entry_id_hex, signed_hex)] = manifest["pending"].items()
    signed = SignedEntry.decode(bytes.fromhex(signed_hex))
    economy = applier.economies[signed.entry.economy]

    async def send_votes(
        validator: bytes, econ: bytes, items: list[wire.VoteItem]
    ) -> list[wire.VoteResult]:
        k = next(k for k in vkeys if k.public == validator)
        return [wire.VoteResult(vote=Vote.make(k, econ, economy.epoch, i.signed.id)) for i in items]

    submitter = Submitter(store, applier, send_votes, lambda _e, _c: None)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            await nursery.start(submitter.run)
            with trio.fail_after(30):
                status = await submitter.wait(bytes.fromhex(entry_id_hex))
            assert status.state == CERTIFIED
            assert store.certificate(signed.id) is not None
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def test_newer_schema_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    Store(tmp_path).close()
    env = lmdb.open(str(tmp_path), max_dbs=32)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"99", db=meta)
    env.close()
    before = digest(tmp_path)
    with pytest.raises(StoreError, match=r"schema version 99; this mycelia reads 4 to 7"):
        Store(tmp_path)
    assert digest(tmp_path) == before


@OLDER
def test_unreadable_locks_refuse_the_migration_and_change_nothing(
    tmp_path: Path, schema: int
) -> None:
    path = unpack(tmp_path, schema)
    env = lmdb.open(str(path), max_dbs=32)
    votes = env.open_db(b"votes", create=False)
    with env.begin(write=True) as txn:
        txn.put(b"\x01" * 32, b"not a vote", db=votes)
    env.close()
    before = digest(path)
    with pytest.raises(StoreError, match="unreadable vote"):
        Store(path)
    assert schema_of(path) == str(schema).encode()
    assert digest(path) == before
