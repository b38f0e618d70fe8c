"""Store schema migrations: a store of the previous schema (a checked-in
fixture, ``fixtures/store-v4.tar.gz``, written by schema-4 code) opens in
place with every certificate, chain, validator lock and vote, pending
submission and reading kept — and its validator still refuses to vote for
an entry that conflicts with one it locked before the upgrade. A store this
code cannot read is refused with nothing changed."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import lmdb
import pytest
import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import SCHEMA_VERSION, Store, StoreError, reading_key
from mycelia.node.submitter import CERTIFIED, Submitter
from mycelia.node.validator import ValidatorService
from mycelia.protocol import Reason, SignedEntry, Vote
from mycelia.protocol.locks import resources
from mycelia.testing.economies import validator_keys

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "store-v4.json").read_text())


def unpack_v4(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    with tarfile.open(FIXTURES / "store-v4.tar.gz") as tar:
        tar.extractall(path, filter="data")
    return path


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


def test_fixture_is_schema_4(tmp_path: Path) -> None:
    assert schema_of(unpack_v4(tmp_path)) == b"4"
    assert MANIFEST["schema"] == 4


def test_v4_store_migrates_in_place_and_keeps_everything(tmp_path: Path) -> None:
    path = unpack_v4(tmp_path)
    store = Store(path)
    try:
        assert SCHEMA_VERSION == 5
        for entry_id, cert in MANIFEST["certificates"].items():
            assert store.certificate_bytes(bytes.fromhex(entry_id)) == bytes.fromhex(cert)
        for resource, entry_id in MANIFEST["locks"].items():
            assert store.lock(bytes.fromhex(resource)) == bytes.fromhex(entry_id)
        for entry_id, vote in MANIFEST["votes"].items():
            assert store.vote(bytes.fromhex(entry_id)) == bytes.fromhex(vote)
        pending = store.pending()
        assert {k.hex() for k in pending} == set(MANIFEST["pending"])
        for k, record in pending.items():
            stored = SignedEntry.from_wire(record[0]).encode()
            assert stored == bytes.fromhex(MANIFEST["pending"][k.hex()])
        kept = []
        for key_hex in MANIFEST["readings"]:
            key = bytes.fromhex(key_hex)
            reading = store.reading(key[:32], int.from_bytes(key[32:], "big"))
            assert reading is not None
            kept.append(reading_key(key[:32], int.from_bytes(key[32:], "big")).hex())
        assert kept == MANIFEST["readings"]
        flights = store.in_flight()
        assert {k.hex(): [x.hex() for x in f.keys] for k, f in flights.items()} == MANIFEST[
            "in_flight"
        ]
        econ = bytes.fromhex(MANIFEST["economies"][0])
        heads = store.heads(econ)
        assert {a.hex(): n for a, n in heads.items()} == MANIFEST["heads"]
        # The new tables exist and are empty.
        assert store.parked(econ) == []
        assert store.forks(econ) == []
        # Sizes counted from the schema-4 accounts: 3 payers, 30 transfers.
        assert store.sizes_of(econ) == (len(store.accounts(econ)), sum(MANIFEST["heads"].values()))
        assert store.sizes_of(econ) == (3, 30)
    finally:
        store.close()
    assert schema_of(path) == str(SCHEMA_VERSION).encode()
    # Opening a migrated store again writes nothing.
    before = digest(path)
    Store(path).close()
    assert digest(path) == before


async def test_locks_hold_across_the_migration(tmp_path: Path) -> None:
    """The double spend the fixture's validator 0 locked against before the
    upgrade: after it, the locked entry gets the very vote it got then, the
    conflicting one gets ``resource_locked`` — so across the migration at
    most one of them can gather a quorum."""
    store = Store(unpack_v4(tmp_path))
    applier = Applier(store)
    svc = ValidatorService(validator_keys(4)[0], store, applier)
    locked = SignedEntry.decode(bytes.fromhex(MANIFEST["locked_entry"]))
    conflicting = SignedEntry.decode(bytes.fromhex(MANIFEST["conflicting_entry"]))
    assert resources(locked.entry)[0] == resources(conflicting.entry)[0]
    economy = applier.economies[locked.entry.economy]
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            nursery.start_soon(svc.run)
            [again] = await svc.vote(economy.id, [wire.VoteItem(locked)])
            assert again.vote is not None
            assert again.vote.encode() == bytes.fromhex(MANIFEST["votes"][locked.id.hex()])
            [refused] = await svc.vote(economy.id, [wire.VoteItem(conflicting)])
            assert refused.vote is None
            assert refused.reason is Reason.RESOURCE_LOCKED
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_pending_submission_resumes_after_the_migration(tmp_path: Path) -> None:
    """The pending record written at schema 4 is resumed, and certified by
    validators that vote for it (here: fakes answering with real votes)."""
    store = Store(unpack_v4(tmp_path))
    applier = Applier(store)
    vkeys = validator_keys(4)
    [(entry_id_hex, signed_hex)] = MANIFEST["pending"].items()
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
    with pytest.raises(StoreError, match=r"schema version 99; this mycelia reads 4 to 5"):
        Store(tmp_path)
    assert digest(tmp_path) == before


def test_unreadable_locks_refuse_the_migration_and_change_nothing(tmp_path: Path) -> None:
    path = unpack_v4(tmp_path)
    env = lmdb.open(str(path), max_dbs=32)
    votes = env.open_db(b"votes", create=False)
    with env.begin(write=True) as txn:
        txn.put(b"\x01" * 32, b"not a vote", db=votes)
    env.close()
    before = digest(path)
    with pytest.raises(StoreError, match="unreadable vote"):
        Store(path)
    assert schema_of(path) == b"4"
    assert digest(path) == before
