"""The node follows the economy's epochs (issue 12, the node step): the
store keeps the epoch history as ledger records, the applier's economy in
force advances when an enactment and its proposal are applied — in one
batch with certificates of the new epoch, in any order —, a restarted
node starts in the epoch it reached, and a certificate of an epoch the node
has not reached is refused ``wrong_epoch`` with nothing stored.
"""

from __future__ import annotations

from pathlib import Path

import trio

from mycelia.node.applier import Applier
from mycelia.node.store import Store
from mycelia.protocol import Certificate, Reason, Transfer
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.gov_bodies import CONSENT, Method
from mycelia.testing.economies import sign_genesis, validator_keys
from mycelia.testing.governance import GovWorld, new_validators
from tests.protocol.gov_scenarios import MEMBERS, STEWARD, bare_enactment, council

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
