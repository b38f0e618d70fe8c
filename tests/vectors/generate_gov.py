"""Build the governance test vectors (``tests/vectors/gov.json``).

``make vectors`` (``python -m tests.vectors.generate``) writes this file
with the others; ``tests/protocol/test_gov_vectors.py`` fails while the
file and the code disagree.

The story, every key from a fixed seed (``seed(label)`` = BLAKE2b-256 of the
label, as in ``generate.py``) and every timestamp fixed:

1. an approved-membership mutual-credit economy (validators 0–3, quorum 3;
   a steward), the steward admits alice, bob and carol (epoch 0);
2. a ``committee.set`` proposal (``consent``) replacing the four validators
   by ``new0``–``new3``, enacted: epoch 1;
3. alice pays bob: a certificate of epoch 1, signed by the new committee;
4. a ``policy.set`` proposal (``majority``, electorate 4) raising the
   default credit limit; alice and bob vote yes, carol no, all certified by
   new0–new2; after the close new0–new2 seal it and the steward enacts it
   with their seals: epoch 2;
5. new1's lock snapshot at the end of epoch 1;
6. the committee chain from the genesis (epochs 1 and 2).

For each entry: its canonical bytes, id, the message signed, the signature,
the signed-entry bytes, its resources and its certificate. For the seal and
the snapshot: the signed content's bytes, id, message, signature and the
transported bytes. Then the chain's bytes and the epochs it yields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mycelia.protocol import (
    Certificate,
    Economy,
    Genesis,
    MemberAdmit,
    SignedGenesis,
    SigningKey,
    Transfer,
    Validator,
    codec,
)
from mycelia.protocol.domains import ENTRY, LOCK_SNAPSHOT, SEAL
from mycelia.protocol.economy import DAY_MS, MutualCreditPolicy
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.gov_bodies import CONSENT, MAJORITY, GovPropose, GovVote, Method, PolicySet
from mycelia.protocol.handover import snapshot
from mycelia.protocol.locks import resources
from mycelia.protocol.seals import Held
from mycelia.testing.governance import GovWorld
from tests.vectors.generate import TS, seed

PATH = Path(__file__).with_name("gov.json")


def _key(label: str) -> SigningKey:
    return SigningKey(seed(label))


def _keyinfo(label: str, k: SigningKey) -> dict[str, str]:
    return {"seed_label": label, "seed": k.seed.hex(), "public": k.public.hex(), "did": k.did}


LABELS = {
    **{f"validator{i}": f"mycelia-vector/validator/{i}" for i in range(4)},
    **{f"new{i}": f"mycelia-vector/gov/new-validator/{i}" for i in range(4)},
    "steward": "mycelia-vector/steward",
    "alice": "mycelia-vector/alice",
    "bob": "mycelia-vector/bob",
    "carol": "mycelia-vector/gov/carol",
}


def _entry(cert: Certificate, signature: bytes) -> dict[str, Any]:
    e = cert.entry
    return {
        "kind": e.kind,
        "epoch": cert.epoch,
        "bytes": e.encode().hex(),
        "id": cert.entry_id.hex(),
        "signed_message": ENTRY.message(cert.entry_id).hex(),
        "signature": signature.hex(),
        "resources": [r.hex() for r in resources(e)],
        "certificate": cert.encode().hex(),
    }


def build() -> dict[str, Any]:
    k = {name: _key(label) for name, label in LABELS.items()}
    old = [k[f"validator{i}"] for i in range(4)]
    new = [k[f"new{i}"] for i in range(4)]
    g = Genesis(
        name="Riverside Commons",
        symbol="RVC",
        decimals=2,
        kind="mutual_credit",
        policy=MutualCreditPolicy("approved", (k["steward"].public,), 50_000),
        validators=tuple(Validator(v.public, 1) for v in old),
        quorum=3,
        ts_ms=TS,
        nonce=b"gov-vector",
    )
    signed_genesis = SignedGenesis.assemble(g, {v.public: g.sign(v) for v in old[:3]})
    w = GovWorld(g, old, spare=new)
    w.clock = TS
    entries: dict[str, Any] = {}

    def commit(name: str, author: str, body: object) -> Certificate:
        signed = w.entry(k[author], body)
        verdict = w.ledger.check(signed)
        assert verdict.ok, verdict
        cert = w.certify(signed)
        w.ledger.apply(cert)
        entries[name] = _entry(cert, signed.signature)
        return cert

    for who in ("alice", "bob", "carol"):
        commit(f"admit {who}", "steward", MemberAdmit(k[who].public))
    min_ms = w.economy.settings.min_voting_ms
    w.at(TS + 1_000)
    committee = commit(
        "gov.propose committee.set",
        "steward",
        GovPropose("committee.set", w.committee_set(new), Method(CONSENT), TS + 1_000 + min_ms),
    )
    w.close(committee)
    commit("gov.enact committee.set", "steward", w.enactment(committee))
    assert w.economy.epoch == 1
    commit("transfer in epoch 1", "alice", Transfer(k["bob"].public, 2_500, "soup"))
    start = w.clock + 1
    proposal = commit(
        "gov.propose policy.set",
        "steward",
        GovPropose(
            "policy.set",
            PolicySet((("default_limit", 80_000),)),
            Method(MAJORITY, 4),
            start + 7 * DAY_MS,
        ),
    )
    for who, choice in (("alice", "yes"), ("bob", "yes"), ("carol", "no")):
        commit(f"gov.vote {who}", who, GovVote(proposal.entry_id, choice))
    w.close(proposal)
    seals = w.seals(proposal, [0, 1, 2])
    enact_body = w.enactment(proposal, seals)
    commit("gov.enact policy.set", "steward", enact_body)
    assert w.economy.epoch == 2

    s0 = seals[0]
    seal_content = ["seal", 1, s0.economy, s0.epoch, s0.proposal, list(s0.ballots)]
    seal_v = {
        "validator": "new0",
        "content": codec.encode(seal_content).hex(),
        "id": s0.id.hex(),
        "signed_message": SEAL.message(s0.id).hex(),
        "signature": s0.signature.hex(),
        "bytes": s0.encode().hex(),
        "in_enactment": {"index": 0, "bitmap": enact_body.seals[0].bitmap.hex()},
    }

    # new1 at the end of epoch 1: the locks of what it voted for (every
    # certificate of epoch 1 has new0-new2's votes), and its ballots
    voter = new[1]
    locks: dict[bytes, bytes] = {}
    held = []
    for cert in w.ledger.state.certs.values():
        if cert.epoch == 1:
            locks.update(dict.fromkeys(resources(cert.entry), cert.entry_id))
            if cert.entry.kind == "gov.vote":
                held.append(Held.of(cert.entry_id, cert.entry))
    [part] = snapshot(voter, w.economy.at(1), locks, held)
    snapshot_v = {
        "validator": "new1",
        "epoch": 1,
        "content": codec.encode(part.content()).hex(),
        "id": part.id.hex(),
        "signed_message": LOCK_SNAPSHOT.message(part.id).hex(),
        "signature": part.signature.hex(),
        "bytes": part.encode().hex(),
    }

    chain = CommitteeChain.build(w.economy, w.ledger.state.certificate)
    epochs = [
        {
            "epoch": r.number,
            "validators": [v.key.hex() for v in r.validators],
            "weights": [v.weight for v in r.validators],
            "quorum": r.quorum,
            "default_limit": r.policy.default_limit,  # type: ignore[union-attr]
            "enact": r.enact.hex(),
            "proposal": r.proposal.hex(),
        }
        for r in w.economy.epochs
    ]
    assert Economy.from_signed(signed_genesis).id == g.id
    return {
        "about": (
            "mycelia governance test vectors; see tests/vectors/generate_gov.py and "
            "docs/governance.md. Hex strings are bytes."
        ),
        "domains": {
            d.what: {"id_prefix": d.id_prefix.hex(), "sig_prefix": d.sig_prefix.hex()}
            for d in (SEAL, LOCK_SNAPSHOT)
        },
        "keys": {name: _keyinfo(LABELS[name], key_) for name, key_ in k.items()},
        "genesis": {"id": g.id.hex(), "signed_genesis": signed_genesis.encode().hex()},
        "entries": entries,
        "seal": seal_v,
        "lock_snapshot": snapshot_v,
        "committee_chain": {"from_epoch": 1, "bytes": chain.encode().hex(), "epochs": epochs},
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
