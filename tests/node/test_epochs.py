"""The node follows the economy's epochs (issue 12, the node step): the
store keeps the epoch history as ledger records, the applier's economy in
force advances when an enactment and its proposal are applied — in one
batch with certificates of the new epoch, in any order —, a restarted
node starts in the epoch it reached, and a certificate of an epoch the node
has not reached is refused ``wrong_epoch`` with nothing stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.store import Store, VoteGrant
from mycelia.node.validator import ValidatorService
from mycelia.protocol import Certificate, Reason, Refused, SignedEntry, Transfer, Vote, codec
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.gov_bodies import CONSENT, MAJORITY, GovVote, Method
from mycelia.protocol.handover import seed, snapshot
from mycelia.protocol.locks import resources
from mycelia.protocol.seals import Held, seal
from mycelia.testing.economies import sign_genesis, validator_keys
from mycelia.testing.governance import GovWorld, new_validators
from tests.protocol.gov_scenarios import MEMBERS, RAISE, STEWARD, bare_enactment, council

A, B = MEMBERS[0], MEMBERS[1]


def replaced_committee() -> tuple[GovWorld, list[Certificate], Certificate]:
    """Validator 3 replaced by a new one (consent, no objection): the
    certificates of epoch 0 in order, and a transfer of epoch 1 signed
    by the new committee."""
    w = council()
    admissions = [w.ledger.state.certificate(i) for i in sorted(w.ledger.chain.values())]
    payload = w.committee_set([*validator_keys(3), *new_validators(1)])
    proposal = w.propose(STEWARD, payload, Method(CONSENT))
    w.close(proposal)
    enact = w.enact(STEWARD, bare_enactment(w, proposal))
    assert w.economy.epoch == 1
    later = w.transfer(A, B, 7, "epoch 1")
    assert later.epoch == 1
    epoch0 = [c for c in admissions if c is not None]
    return w, [*epoch0, proposal, enact], later


async def test_a_batch_across_the_boundary_applies_whole_and_the_epoch_survives_restart(
    tmp_path: Path,
) -> None:
    w, epoch0, later = replaced_committee()
    store = Store(tmp_path / "s", sync=False)
    try:
        applier = Applier(store)
        economy = await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
        assert economy.epoch == 0
        async with trio.open_nursery() as nursery:
            await nursery.start(applier.run)
            # The epoch-1 certificate first: it waits for the enactment
            # in the same call instead of being refused.
            result = await applier.apply(w.id, [later, *epoch0[::-1]])
            assert result.refused == ()
            assert set(result.applied) == {c.entry_id for c in [*epoch0, later]}
            now = applier.economies[w.id]
            assert now.epoch == 1
            assert now.validators == w.economy.validators
            assert tuple(v.key for v in now.committee(0).validators) == economy.validators
            assert now.validators != economy.validators
            nursery.cancel_scope.cancel()
        # The committee chain is built from the store and verifies from
        # the genesis alone.
        chain = CommitteeChain.build(applier.economies[w.id], store.certificate)
        assert chain.verify(economy).validators == w.economy.validators
    finally:
        store.close()
    again = Store(tmp_path / "s", sync=False)
    try:
        assert Applier(again).economies[w.id].epoch == 1
    finally:
        again.close()


async def test_a_certificate_of_an_epoch_not_reached_is_refused_and_not_stored(
    tmp_path: Path,
) -> None:
    w, _, later = replaced_committee()
    store = Store(tmp_path / "s", sync=False)
    try:
        applier = Applier(store)
        await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
        async with trio.open_nursery() as nursery:
            await nursery.start(applier.run)
            result = await applier.apply(w.id, [later])
            assert result.applied == ()
            [(cert, why)] = result.refused
            assert cert.entry_id == later.entry_id
            assert why.reason is Reason.WRONG_EPOCH
            assert store.certificate(later.entry_id) is None
            assert applier.economies[w.id].epoch == 0
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def test_an_epoch_0_certificate_still_verifies_in_epoch_1() -> None:
    w, epoch0, later = replaced_committee()
    # the old committee's certificate against the economy in force
    for cert in epoch0:
        cert.verify(w.economy)
    later.verify(w.economy)
    assert isinstance(later.entry.body, Transfer)


# -- the validator's governance state (node/store/votes.py, node/handover.py) ----------


def _grant(w: GovWorld, signed: SignedEntry, epoch: int = 0) -> VoteGrant:
    vote = Vote.make(w.vkeys[0], w.id, epoch, signed.id)
    body = signed.entry.body
    held = Held.of(signed.id, signed.entry) if isinstance(body, GovVote) else None
    return VoteGrant(
        signed.id, resources(signed.entry), vote.encode(), held=held, economy=w.id, epoch=epoch
    )


def test_a_sealed_proposal_gets_no_more_ballot_votes_and_the_seal_lists_held_ballots(
    tmp_path: Path,
) -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(MAJORITY, 10))
    first = w.entry(A, GovVote(p.entry_id, "yes", 0))
    second = w.entry(B, GovVote(p.entry_id, "no", 0))
    store = Store(tmp_path / "s", sync=False)
    try:
        assert store.grant_votes_sync([_grant(w, first)]) == [True]
        assert [h.ballot for h in store.held(w.id)] == [first.id]
        w.close(p)
        record = w.record(p)
        made = store.seal_sync(
            w.id,
            0,
            p.entry_id,
            lambda held: seal(w.vkeys[0], w.economy, p.entry_id, record, held, w.clock + 1),
        )
        assert made.ballots == (first.id,)
        assert store.sealed(p.entry_id) == made
        # never again, whatever the clock says: the grant is refused, no lock
        assert store.grant_votes_sync([_grant(w, second)]) == [False]
        assert store.vote(second.id) is None
        assert all(store.lock(r) is None for r in resources(second.entry))
    finally:
        store.close()


def test_a_seal_before_the_close_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    w = council()
    p = w.propose(STEWARD, RAISE, Method(MAJORITY, 10))
    record = w.record(p)
    store = Store(tmp_path / "s", sync=False)
    try:
        with pytest.raises(Refused) as info:
            store.seal_sync(
                w.id,
                0,
                p.entry_id,
                lambda held: seal(w.vkeys[0], w.economy, p.entry_id, record, held, w.clock),
            )
        assert info.value.reason is Reason.VOTING_OPEN
        assert store.sealed(p.entry_id) is None
    finally:
        store.close()


def test_after_its_snapshot_a_validator_grants_no_vote_of_the_ended_epoch_and_seeds(
    tmp_path: Path,
) -> None:
    w, _, _ = replaced_committee()
    economy = w.economy  # at epoch 1
    before = w.entry(A, Transfer(B.public, 1, "voted in epoch 0"))
    after = w.entry(B, Transfer(A.public, 1, "asked in epoch 0, too late"))
    store = Store(tmp_path / "s", sync=False)
    try:
        assert store.grant_votes_sync([_grant(w, before)]) == [True]
        parts = store.snapshot_sync(
            w.id, 0, lambda locks, held: snapshot(w.vkeys[0], economy.at(0), locks, held)
        )
        assert [dict(p.locks) for p in parts] == [dict.fromkeys(resources(before.entry), before.id)]
        assert store.snapshot_part(w.id, 0, 0) == parts[0].encode()
        # the snapshot is taken once; an ended epoch's grant is refused
        again = store.snapshot_sync(w.id, 0, lambda locks, held: [])
        assert again == parts
        assert store.grant_votes_sync([_grant(w, after)]) == [False]
        # a seed from a quorum of snapshots replaces the locks: epoch 1 is held
        others = [
            snapshot(k, economy.at(0), dict.fromkeys(resources(before.entry), before.id), [])[0]
            for k in w.vkeys[1:3]
        ]
        seeded = seed(economy, 0, [*parts, *others])
        assert store.seeded_epoch(w.id) == 0
        store.seed_sync(w.id, 1, seeded)
        assert store.seeded_epoch(w.id) == 1
        for r in resources(before.entry):
            assert store.lock(r) == before.id
    finally:
        store.close()


def test_a_seed_short_of_a_quorum_of_snapshots_is_refused() -> None:
    w, _, _ = replaced_committee()
    economy = w.economy
    one = snapshot(w.vkeys[0], economy.at(0), {}, [])
    with pytest.raises(Refused) as info:
        seed(economy, 0, one)
    assert info.value.reason is Reason.QUORUM_NOT_REACHED


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (["seal-req", 1, b"\x01" * 31, b"\x02" * 32], Reason.MALFORMED),
        (["seal-req", 2, b"\x01" * 32, b"\x02" * 32], Reason.MALFORMED),
        (["snapshot-req", 1, b"\x01" * 32, 0, -1], Reason.MALFORMED),
        (["snapshot-req", 1, b"\x01" * 32, 0], Reason.MALFORMED),
    ],
)
def test_bad_governance_requests_are_refused(request_: list[object], reason: Reason) -> None:
    with pytest.raises(Refused) as info:
        wire.decode_validator_request(codec.encode(request_))
    assert info.value.reason is reason


def test_governance_requests_round_trip() -> None:
    econ, prop = b"\x01" * 32, b"\x02" * 32
    got = wire.decode_validator_request(wire.encode_seal_request(econ, prop))
    assert got == wire.SealRequest(econ, prop)
    got = wire.decode_validator_request(wire.encode_snapshot_request(econ, 3, 1))
    assert got == wire.SnapshotRequest(econ, 3, 1)
    with pytest.raises(Refused) as info:
        wire.decode_snapshot(wire.encode_error(Reason.MISSING, "not yet"))
    assert info.value.reason is Reason.MISSING


async def test_a_validator_serves_its_snapshot_and_seals_and_refuses_what_it_lacks(
    tmp_path: Path,
) -> None:
    w, epoch0, _ = replaced_committee()
    store = Store(tmp_path / "s", sync=False)
    try:
        applier = Applier(store)
        await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
        svc = ValidatorService(w.vkeys[0], store, applier)
        async with trio.open_nursery() as nursery:
            await nursery.start(applier.run)
            await nursery.start(svc.run)
            request = wire.encode_snapshot_request(w.id, 0, 0)
            with pytest.raises(Refused) as info:
                wire.decode_snapshot(await svc.handle("peer", request))
            assert info.value.reason is Reason.MISSING
            unknown = wire.encode_seal_request(w.id, b"\x09" * 32)
            with pytest.raises(Refused) as info:
                wire.decode_seal(await svc.handle("peer", unknown))
            assert info.value.reason is Reason.MISSING
            await applier.apply(w.id, epoch0)
            # epoch 1 reached: validator 0 snapshots epoch 0 and serves it
            with trio.fail_after(10):
                while store.snapshot_part(w.id, 0, 0) is None:
                    await trio.sleep(0.05)
            part = wire.decode_snapshot(await svc.handle("peer", request))
            assert part.validator == w.vkeys[0].public
            part.verify(applier.economies[w.id])
            # it stays in the new committee but cannot seed alone (no ask):
            # entries are answered "missing" (ask again), no vote
            [answer] = await svc.vote(w.id, [wire.VoteItem(w.entry(B, Transfer(A.public, 1)))])
            assert answer.vote is None
            assert answer.reason is Reason.MISSING
            nursery.cancel_scope.cancel()
    finally:
        store.close()
