"""Build the protocol test vectors (``tests/vectors/protocol.json``; the
sensor vectors, ``sensors.json``, come from ``generate_sensors.py``).

Run ``make vectors`` (``python -m tests.vectors.generate``) only when an
encoding change is intended; ``tests/protocol/test_vectors.py`` fails while
the file and the code disagree.

Everything is derived from fixed 32-byte seeds (``seed(label)`` =
BLAKE2b-256 of the label), so another implementation can rebuild the same
keys. Ed25519 signatures are deterministic, so signatures are vectors too.
For each structure the file gives: the canonical bytes (hex), the id, the
exact message signed (domain prefix + id) and the signature.

``channels`` (docs/compute.md) is a small history in the issued economy:
the issuer's two mints (certified), then the consumer's ``channel.open``;
from the state after it, the provider's ``channel.close`` with the
consumer's voucher, and — its alternatives, they lock the same channel —
the consumer's ``channel.refund`` with the provider's release and without
one (after expiry). Each with its certificate (validators 0, 1, 2) and the
exact effects of applying it: every account it changes and every record
it writes (key and value bytes).
"""

from __future__ import annotations

import json
import sys
from hashlib import blake2b
from pathlib import Path
from typing import Any

from mycelia.protocol import (
    Burn,
    Certificate,
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    CreditSet,
    Economy,
    Entry,
    Genesis,
    Ledger,
    MemberAdmit,
    Mint,
    Release,
    SignedEntry,
    SignedGenesis,
    SigningKey,
    Transfer,
    Validator,
    Vote,
    Voucher,
    assemble,
    channel_state,
    transition,
    vote_id,
)
from mycelia.protocol.domains import ENTRY, GENESIS, RELEASE, VOTE, VOUCHER
from mycelia.protocol.economy import IssuedPolicy, MutualCreditPolicy
from mycelia.protocol.locks import resources
from mycelia.protocol.state import ZERO_ID, Account, Changes

PATH = Path(__file__).with_name("protocol.json")
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def seed(label: str) -> bytes:
    return blake2b(label.encode(), digest_size=32).digest()


def _key(label: str) -> SigningKey:
    return SigningKey(seed(label))


def _keyinfo(label: str, k: SigningKey) -> dict[str, str]:
    return {"seed_label": label, "seed": k.seed.hex(), "public": k.public.hex(), "did": k.did}


def build() -> dict[str, Any]:
    validators = [_key(f"mycelia-vector/validator/{i}") for i in range(4)]
    alice = _key("mycelia-vector/alice")
    bob = _key("mycelia-vector/bob")
    steward = _key("mycelia-vector/steward")
    issuer = _key("mycelia-vector/issuer")
    consumer = _key("mycelia-vector/consumer")
    provider = _key("mycelia-vector/provider")
    keyinfo = {
        **{
            f"validator{i}": _keyinfo(f"mycelia-vector/validator/{i}", k)
            for i, k in enumerate(validators)
        },
        "alice": _keyinfo("mycelia-vector/alice", alice),
        "bob": _keyinfo("mycelia-vector/bob", bob),
        "steward": _keyinfo("mycelia-vector/steward", steward),
        "issuer": _keyinfo("mycelia-vector/issuer", issuer),
        "consumer": _keyinfo("mycelia-vector/consumer", consumer),
        "provider": _keyinfo("mycelia-vector/provider", provider),
    }
    vset = tuple(Validator(v.public, 1) for v in validators)

    def genesis_vectors(g: Genesis) -> tuple[dict[str, Any], Economy]:
        sigs = {v.public: g.sign(v) for v in validators[:3]}
        signed = SignedGenesis.assemble(g, sigs)
        economy = Economy.from_signed(signed)
        return {
            "bytes": g.encode().hex(),
            "id": g.id.hex(),
            "signed_message": GENESIS.message(g.id).hex(),
            "signatures": {f"validator{i}": g.sign(v).hex() for i, v in enumerate(validators)},
            "signed_genesis_by_validators_0_1_2": signed.encode().hex(),
        }, economy

    mutual = Genesis(
        name="Riverside Hours",
        symbol="RVH",
        decimals=2,
        kind="mutual_credit",
        policy=MutualCreditPolicy("approved", (steward.public,), 50_000),
        validators=vset,
        quorum=3,
        ts_ms=TS,
        nonce=b"vector",
    )
    issued = Genesis(
        name="Compute Credits",
        symbol="CPU",
        decimals=3,
        kind="issued",
        policy=IssuedPolicy("open", (steward.public,), ((issuer.public, 1_000_000),)),
        validators=vset,
        quorum=3,
        ts_ms=TS,
        nonce=b"",
    )
    mutual_v, mutual_econ = genesis_vectors(mutual)
    issued_v, issued_econ = genesis_vectors(issued)

    def entry_vectors(economy: Economy, author: SigningKey, seq: int, prev: bytes, body: object):
        e = Entry(economy.id, author.public, seq, prev, TS + seq, body)
        signed = e.sign(author)
        return {
            "kind": e.kind,
            "bytes": e.encode().hex(),
            "id": e.id.hex(),
            "signed_message": ENTRY.message(e.id).hex(),
            "signature": signed.signature.hex(),
            "signed_entry": signed.encode().hex(),
            "resources": [r.hex() for r in resources(e)],
        }, signed

    def certify(economy: Economy, signed: SignedEntry) -> Certificate:
        votes = [Vote.make(v, economy.id, 0, signed.id) for v in validators[:3]]
        return assemble(economy, signed, votes)

    entries: dict[str, Any] = {}
    admit_v, admit = entry_vectors(mutual_econ, steward, 1, ZERO_ID, MemberAdmit(alice.public))
    entries["member.admit"] = admit_v
    credit_v, _ = entry_vectors(mutual_econ, steward, 2, admit.id, CreditSet(alice.public, 120_000))
    entries["credit.set"] = credit_v
    transfer_v, transfer = entry_vectors(
        mutual_econ, alice, 1, ZERO_ID, Transfer(steward.public, 2_550, "bread, thanks!")
    )
    entries["transfer"] = transfer_v
    mint_v, _ = entry_vectors(issued_econ, issuer, 1, ZERO_ID, Mint(bob.public, 10_000, ""))
    entries["mint"] = mint_v
    burn_v, _ = entry_vectors(issued_econ, bob, 1, ZERO_ID, Burn(400))
    entries["burn"] = burn_v

    names = {
        k.public: name
        for name, k in (
            ("issuer", issuer),
            ("bob", bob),
            ("consumer", consumer),
            ("provider", provider),
        )
    }

    def effects(changes: Changes) -> dict[str, Any]:
        def account(a: Account) -> dict[str, Any]:
            return {
                "seq": a.seq,
                "head": a.head.hex(),
                "ts_ms": a.ts_ms,
                "balance": a.balance,
                "minted": a.minted,
            }

        return {
            "accounts": {names[k]: account(a) for k, a in sorted(changes.accounts.items())},
            "records": {k.hex(): v.hex() for k, v in sorted(changes.records.items())},
        }

    def step(ledger: Ledger, cert: Certificate) -> dict[str, Any]:
        """The certificate and what applying it to ``ledger``'s state changes."""
        changed = transition(issued_econ, ledger.state, cert.entry, cert.entry_id)
        return {"certificate": cert.encode().hex(), "effects": effects(changed)}

    ledger = Ledger(issued_econ)
    _, mint_signed = entry_vectors(issued_econ, issuer, 1, ZERO_ID, Mint(bob.public, 10_000, ""))
    first_mint = certify(issued_econ, mint_signed)
    ledger.apply(first_mint)
    funding = Entry(
        issued_econ.id,
        issuer.public,
        2,
        first_mint.entry_id,
        TS + 2,
        Mint(consumer.public, 5_000, ""),
    )
    second_mint = certify(issued_econ, funding.sign(issuer))
    ledger.apply(second_mint)
    offer = seed("mycelia-vector/offer")
    open_v, open_signed = entry_vectors(
        issued_econ,
        consumer,
        1,
        ZERO_ID,
        ChannelOpen(provider.public, 1_500, TS + 86_400_000, offer),
    )
    entries["channel.open"] = open_v
    open_cert = certify(issued_econ, open_signed)
    channel_steps = {"channel.open": step(ledger, open_cert)}
    ledger.apply(open_cert)
    channel = open_cert.entry_id
    state = channel_state(ledger.state, channel)
    assert state is not None
    voucher = Voucher(issued_econ.id, channel, 600)
    signed_voucher = voucher.sign(consumer)
    release = Release(issued_econ.id, channel, 250)
    signed_release = release.sign(provider)
    close_v, close_signed = entry_vectors(
        issued_econ, provider, 1, ZERO_ID, ChannelClose.of(state, signed_voucher)
    )
    entries["channel.close"] = close_v
    channel_steps["channel.close"] = step(ledger, certify(issued_econ, close_signed))
    refund_v, refund_signed = entry_vectors(
        issued_econ, consumer, 2, channel, ChannelRefund.of(state, signed_release)
    )
    entries["channel.refund"] = refund_v
    channel_steps["channel.refund"] = step(ledger, certify(issued_econ, refund_signed))
    expired = Entry(
        issued_econ.id,
        consumer.public,
        2,
        channel,
        state.refund_after_ms + 1,
        ChannelRefund.of(state),
    ).sign(consumer)
    channel_steps["channel.refund/expired"] = {
        "entry": expired.entry.encode().hex(),
        "id": expired.id.hex(),
        "signature": expired.signature.hex(),
        "resources": [r.hex() for r in resources(expired.entry)],
        **step(ledger, certify(issued_econ, expired)),
    }
    channels = {
        "economy": "issued",
        "channel": channel.hex(),
        "offer": offer.hex(),
        "history": [first_mint.encode().hex(), second_mint.encode().hex()],
        "voucher": {
            "bytes": voucher.encode().hex(),
            "id": voucher.id.hex(),
            "signed_message": VOUCHER.message(voucher.id).hex(),
            "signer": "consumer",
            "signature": signed_voucher.signature.hex(),
            "signed_voucher": signed_voucher.encode().hex(),
        },
        "release": {
            "bytes": release.encode().hex(),
            "id": release.id.hex(),
            "signed_message": RELEASE.message(release.id).hex(),
            "signer": "provider",
            "signature": signed_release.signature.hex(),
            "signed_release": signed_release.encode().hex(),
        },
        "steps": channel_steps,
    }

    vid = vote_id(mutual_econ.id, 0, transfer.id)
    votes = [Vote.make(v, mutual_econ.id, 0, transfer.id) for v in validators[1:]]
    cert = assemble(mutual_econ, transfer, votes)
    vote = {
        "economy": mutual_econ.id.hex(),
        "epoch": 0,
        "entry_id": transfer.id.hex(),
        "vote_id": vid.hex(),
        "signed_message": VOTE.message(vid).hex(),
        "validator": "validator1",
        "signature": votes[0].signature.hex(),
        "bytes": votes[0].encode().hex(),
    }
    certificate = {
        "entry": "transfer",
        "signers": [1, 2, 3],
        "bitmap": cert.bitmap.hex(),
        "bytes": cert.encode().hex(),
    }
    non_canonical = [
        {"hex": "cc05", "reason": "non_canonical", "why": "5 as uint8 instead of fixint"},
        {"hex": "d000", "reason": "non_canonical", "why": "0 as int8"},
        {"hex": "d90161", "reason": "non_canonical", "why": "'a' with a str8 header"},
        {"hex": "dc000101", "reason": "non_canonical", "why": "[1] with an array16 header"},
        {"hex": "81a16101", "reason": "non_canonical", "why": "a map"},
        {"hex": "cb3ff0000000000000", "reason": "non_canonical", "why": "a float64"},
        {"hex": "c0", "reason": "non_canonical", "why": "nil"},
        {"hex": "c3", "reason": "non_canonical", "why": "true"},
        {"hex": "d40100", "reason": "non_canonical", "why": "an ext type"},
        {"hex": "0100", "reason": "non_canonical", "why": "trailing byte"},
        {"hex": "92", "reason": "non_canonical", "why": "truncated array"},
        {"hex": "a2c328", "reason": "non_canonical", "why": "invalid UTF-8 in str"},
    ]
    return {
        "about": (
            "mycelia protocol test vectors; see tests/vectors/generate.py and "
            "protocol/codec.py, domains.py for the rules. Hex strings are bytes."
        ),
        "domains": {
            d.what: {"id_prefix": d.id_prefix.hex(), "sig_prefix": d.sig_prefix.hex()}
            for d in (ENTRY, VOTE, GENESIS, VOUCHER, RELEASE)
        },
        "keys": keyinfo,
        "genesis": {"mutual_credit": mutual_v, "issued": issued_v},
        "entries": entries,
        "vote": vote,
        "certificate": certificate,
        "channels": channels,
        "non_canonical": non_canonical,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    # Imported here: generate_sensors, generate_compute and generate_gov take
    # their seeds and timestamp from this module.
    from tests.vectors import generate_compute, generate_gov, generate_sensors

    PATH.write_text(render())
    print(f"wrote {PATH}", file=sys.stderr)
    generate_sensors.PATH.write_text(generate_sensors.render())
    print(f"wrote {generate_sensors.PATH}", file=sys.stderr)
    generate_compute.main()
    generate_gov.PATH.write_text(generate_gov.render())
    print(f"wrote {generate_gov.PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
