"""The checked-in test vectors agree with the code, and each vector stands on
its own: decoding its bytes gives a structure whose id and signatures verify.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mycelia.protocol import (
    Certificate,
    Economy,
    Entry,
    Genesis,
    Ledger,
    Reason,
    Refused,
    Release,
    SignedEntry,
    SignedGenesis,
    SignedRelease,
    SignedVoucher,
    SigningKey,
    Vote,
    Voucher,
    channel_state,
    codec,
    did_decode,
    keys,
    transition,
)
from mycelia.protocol.domains import ENTRY, GENESIS, RELEASE, VOUCHER, Domain
from mycelia.protocol.locks import resources
from mycelia.protocol.state import Changes
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


# -- compute channels (docs/compute.md) ------------------------------------------------------

CHANNELS = VECTORS["channels"]


def _public(name: str) -> bytes:
    return H(VECTORS["keys"][name]["public"])


@pytest.mark.parametrize(
    ("what", "cls", "signed_cls", "domain"),
    [("voucher", Voucher, SignedVoucher, VOUCHER), ("release", Release, SignedRelease, RELEASE)],
)
def test_voucher_and_release_vectors(
    what: str,
    cls: type[Voucher | Release],
    signed_cls: type[SignedVoucher | SignedRelease],
    domain: Domain,
) -> None:
    v = CHANNELS[what]
    value = cls.decode(H(v["bytes"]))
    assert value.encode() == H(v["bytes"])
    assert value.id == H(v["id"])
    assert value.channel == H(CHANNELS["channel"])
    assert domain.message(value.id) == H(v["signed_message"])
    assert keys.verify(_public(v["signer"]), domain, value.id, H(v["signature"]))
    signed = signed_cls.decode(H(v[f"signed_{what}"]))
    signed.verify(_public(v["signer"]))
    assert signed.signature == H(v["signature"])


def _assert_effects(changes: Changes, expected: dict[str, Any]) -> None:
    names = {_public(n): n for n in expected["accounts"]}
    assert set(changes.accounts) == set(names)
    for k, acct in changes.accounts.items():
        want = expected["accounts"][names[k]]
        got = (acct.seq, acct.head.hex(), acct.ts_ms, acct.balance, acct.minted)
        assert got == (want["seq"], want["head"], want["ts_ms"], want["balance"], want["minted"])
    assert {k.hex(): v.hex() for k, v in changes.records.items()} == expected["records"]


def test_channel_vectors_apply_with_their_effects() -> None:
    """Apply the history and the open; each settlement is an alternative from
    the state after the open (they lock the same channel)."""
    economy = Economy.from_signed(
        SignedGenesis.decode(
            H(VECTORS["genesis"][CHANNELS["economy"]]["signed_genesis_by_validators_0_1_2"])
        )
    )
    ledger = Ledger(economy)
    for raw in CHANNELS["history"]:
        cert = Certificate.decode(H(raw))
        assert ledger.apply(cert) == [cert.entry_id]
    steps = CHANNELS["steps"]
    opening = Certificate.decode(H(steps["channel.open"]["certificate"]))
    assert opening.entry_id == H(CHANNELS["channel"]) == H(VECTORS["entries"]["channel.open"]["id"])
    opening.verify(economy)
    _assert_effects(
        transition(economy, ledger.state, opening.entry, opening.entry_id),
        steps["channel.open"]["effects"],
    )
    ledger.apply(opening)
    state = channel_state(ledger.state, opening.entry_id)
    assert state is not None
    assert state.offer == H(CHANNELS["offer"])
    paid = []
    for name in ("channel.close", "channel.refund", "channel.refund/expired"):
        cert = Certificate.decode(H(steps[name]["certificate"]))
        cert.verify(economy)
        assert ledger.check(cert.signed_entry, now_ms=cert.entry.ts_ms).ok
        changes = transition(economy, ledger.state, cert.entry, cert.entry_id)
        _assert_effects(changes, steps[name]["effects"])
        paid.append(sum(a.balance - ledger.account(k).balance for k, a in changes.accounts.items()))
    assert paid == [state.amount] * 3  # each pays out exactly the escrow
    expired = steps["channel.refund/expired"]
    entry = Entry.decode(H(expired["entry"]))
    assert entry.id == H(expired["id"])
    assert keys.verify(entry.author, ENTRY, entry.id, H(expired["signature"]))
    assert [r.hex() for r in resources(entry)] == expired["resources"]
    close = Entry.decode(H(VECTORS["entries"]["channel.close"]["bytes"]))
    assert resources(entry)[1] == resources(close)[1]  # the one channel lock
