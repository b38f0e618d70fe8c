"""The checked-in test vectors agree with the code, and each vector stands on
its own: decoding its bytes gives a structure whose id and signatures verify.
"""

from __future__ import annotations

import json

import pytest

from mycelia.protocol import (
    Certificate,
    Economy,
    Entry,
    Genesis,
    Reason,
    Refused,
    SignedEntry,
    SignedGenesis,
    SigningKey,
    Vote,
    codec,
    did_decode,
    keys,
)
from mycelia.protocol.domains import ENTRY, GENESIS
from mycelia.protocol.locks import resources
from tests.vectors.generate import PATH, render, seed

VECTORS = json.loads(PATH.read_text())
H = bytes.fromhex


def test_file_matches_the_code() -> None:
    # If this fails after an intended encoding change, run `make vectors`.
    assert PATH.read_text() == render()


@pytest.mark.parametrize("name", sorted(VECTORS["keys"]))
def test_keys_derive_from_their_seed_labels(name: str) -> None:
    info = VECTORS["keys"][name]
    k = SigningKey(seed(info["seed_label"]))
    assert k.seed.hex() == info["seed"]
    assert k.public.hex() == info["public"]
    assert k.did == info["did"]
    assert did_decode(info["did"]) == k.public


@pytest.mark.parametrize("kind", ["mutual_credit", "issued"])
def test_genesis_vectors(kind: str) -> None:
    v = VECTORS["genesis"][kind]
    g = Genesis.decode(H(v["bytes"]))
    assert g.encode() == H(v["bytes"])
    assert g.id == H(v["id"])
    assert GENESIS.message(g.id) == H(v["signed_message"])
    for name, sig in v["signatures"].items():
        assert keys.verify(H(VECTORS["keys"][name]["public"]), GENESIS, g.id, H(sig))
    signed = SignedGenesis.decode(H(v["signed_genesis_by_validators_0_1_2"]))
    assert Economy.from_signed(signed).id == g.id


def _economy_for(entry: Entry) -> Economy:
    for v in VECTORS["genesis"].values():
        signed = SignedGenesis.decode(H(v["signed_genesis_by_validators_0_1_2"]))
        if signed.genesis.id == entry.economy:
            return Economy.from_signed(signed)
    raise AssertionError("entry vector names an unknown economy")


@pytest.mark.parametrize("kind", sorted(VECTORS["entries"]))
def test_entry_vectors(kind: str) -> None:
    v = VECTORS["entries"][kind]
    e = Entry.decode(H(v["bytes"]))
    assert e.kind == kind
    assert e.encode() == H(v["bytes"])
    assert e.id == H(v["id"])
    assert ENTRY.message(e.id) == H(v["signed_message"])
    assert keys.verify(e.author, ENTRY, e.id, H(v["signature"]))
    signed = SignedEntry.decode(H(v["signed_entry"]))
    assert signed.entry == e
    assert signed.verify() == e.id
    assert [r.hex() for r in resources(e)] == v["resources"]
    _economy_for(e)  # every entry belongs to a vector economy


def test_vote_and_certificate_vectors() -> None:
    v = VECTORS["vote"]
    vote = Vote.decode(H(v["bytes"]))
    assert vote.entry_id == H(v["entry_id"])
    assert vote.signature == H(v["signature"])
    cert = Certificate.decode(H(VECTORS["certificate"]["bytes"]))
    economy = _economy_for(cert.entry)
    vote.verify(economy)
    cert.verify(economy)
    assert cert.entry_id == H(v["entry_id"])
    assert cert.bitmap == H(VECTORS["certificate"]["bitmap"])


@pytest.mark.parametrize("case", VECTORS["non_canonical"], ids=lambda c: c["why"])
def test_non_canonical_vectors_are_refused(case: dict[str, str]) -> None:
    with pytest.raises(Refused) as info:
        codec.decode(H(case["hex"]))
    assert info.value.reason == Reason(case["reason"])
