"""The governance vectors (``tests/vectors/gov.json``) agree with the code
and stand on their own: every entry decodes to its id and signature, every
certificate verifies from the genesis plus the committee chain — the epoch-1
ones against the new committee —, the seal and the lock snapshot verify,
and replaying the certificates from the genesis reaches the same epochs.
"""

from __future__ import annotations

import json

import pytest

from mycelia.protocol import (
    Certificate,
    Economy,
    Entry,
    Ledger,
    Reason,
    Refused,
    SignedGenesis,
    SigningKey,
    codec,
    keys,
)
from mycelia.protocol.domains import ENTRY, LOCK_SNAPSHOT, SEAL
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.gov_bodies import GovEnact
from mycelia.protocol.handover import LockSnapshot
from mycelia.protocol.locks import resources
from mycelia.protocol.quorum import bitmap_indices
from mycelia.protocol.seals import Seal
from tests.vectors.generate import seed
from tests.vectors.generate_gov import PATH, render

VECTORS = json.loads(PATH.read_text())
H = bytes.fromhex


def genesis_economy() -> Economy:
    return Economy.from_signed(SignedGenesis.decode(H(VECTORS["genesis"]["signed_genesis"])))


def chain_economy() -> Economy:
    return CommitteeChain.decode(H(VECTORS["committee_chain"]["bytes"])).verify(genesis_economy())


def test_file_matches_the_code() -> None:
    # If this fails after an intended encoding change, run `make vectors`.
    assert PATH.read_text() == render()


@pytest.mark.parametrize("name", sorted(VECTORS["keys"]))
def test_keys_derive_from_their_seed_labels(name: str) -> None:
    info = VECTORS["keys"][name]
    assert SigningKey(seed(info["seed_label"])).public.hex() == info["public"]


@pytest.mark.parametrize("name", sorted(VECTORS["entries"]))
def test_entry_vectors_verify_offline_from_the_genesis_and_the_chain(name: str) -> None:
    v = VECTORS["entries"][name]
    e = Entry.decode(H(v["bytes"]))
    assert e.kind == v["kind"]
    assert e.id == H(v["id"])
    assert ENTRY.message(e.id) == H(v["signed_message"])
    assert keys.verify(e.author, ENTRY, e.id, H(v["signature"]))
    assert [r.hex() for r in resources(e)] == v["resources"]
    cert = Certificate.decode(H(v["certificate"]))
    assert cert.entry == e
    assert cert.epoch == v["epoch"]
    cert.verify(chain_economy())
    if cert.epoch > 0:
        # only the committee chain knows that committee
        with pytest.raises(Refused) as info:
            cert.verify(genesis_economy())
        assert info.value.reason is Reason.WRONG_EPOCH


def test_the_epoch_1_certificate_is_the_new_committees() -> None:
    cert = Certificate.decode(H(VECTORS["entries"]["transfer in epoch 1"]["certificate"]))
    economy = chain_economy()
    assert cert.epoch == 1
    new = [H(VECTORS["keys"][f"new{i}"]["public"]) for i in range(4)]
    assert economy.committee(1).keys == tuple(new)
    assert economy.committee(0).keys != tuple(new)
    signers = bitmap_indices(cert.bitmap, 4)
    assert [economy.committee(1).keys[i] for i in signers] == new[:3]


def test_the_chain_yields_the_epochs_listed() -> None:
    economy = chain_economy()
    listed = VECTORS["committee_chain"]["epochs"]
    assert len(economy.epochs) == len(listed)
    for record, v in zip(economy.epochs, listed, strict=True):
        assert record.number == v["epoch"]
        assert [k.hex() for k in record.keys] == v["validators"]
        assert list(record.weights) == v["weights"]
        assert record.quorum == v["quorum"]
        assert record.policy.default_limit == v["default_limit"]  # type: ignore[union-attr]
        assert record.enact.hex() == v["enact"]
        assert record.proposal.hex() == v["proposal"]


def test_replaying_the_certificates_from_the_genesis_reaches_the_same_epochs() -> None:
    certs = [Certificate.decode(H(v["certificate"])) for v in VECTORS["entries"].values()]
    ledger = Ledger(genesis_economy())
    pending = sorted(certs, key=lambda c: (c.epoch, c.entry.ts_ms))
    for cert in pending:
        ledger.apply(cert)
    assert ledger.economy.epochs == chain_economy().epochs


def test_the_seal_vector() -> None:
    v = VECTORS["seal"]
    seal = Seal.decode(H(v["bytes"]))
    assert codec.encode(
        ["seal", 1, seal.economy, seal.epoch, seal.proposal, list(seal.ballots)]
    ) == (H(v["content"]))
    assert seal.id == H(v["id"])
    assert SEAL.message(seal.id) == H(v["signed_message"])
    assert seal.signature == H(v["signature"])
    economy = chain_economy()
    assert seal.verify(economy) == v["in_enactment"]["index"]
    enact = Entry.decode(H(VECTORS["entries"]["gov.enact policy.set"]["bytes"])).body
    assert isinstance(enact, GovEnact)
    ref = enact.seals[0]
    assert ref.bitmap == H(v["in_enactment"]["bitmap"])
    listed = tuple(enact.ballots[i] for i in bitmap_indices(ref.bitmap, len(enact.ballots)))
    assert listed == seal.ballots
    assert len(seal.ballots) == 3  # the three certified votes


def test_the_lock_snapshot_vector() -> None:
    v = VECTORS["lock_snapshot"]
    part = LockSnapshot.decode(H(v["bytes"]))
    assert codec.encode(part.content()) == H(v["content"])
    assert part.id == H(v["id"])
    assert LOCK_SNAPSHOT.message(part.id) == H(v["signed_message"])
    assert part.signature == H(v["signature"])
    assert part.epoch == v["epoch"]
    assert part.validator.hex() == VECTORS["keys"][v["validator"]]["public"]
    part.verify(chain_economy())
    votes = {H(e["id"]) for name, e in VECTORS["entries"].items() if name.startswith("gov.vote")}
    assert {h.ballot for h in part.ballots} == votes
