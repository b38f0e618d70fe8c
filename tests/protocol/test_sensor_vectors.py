"""The checked-in sensor vectors (``tests/vectors/sensors.json``) agree with
the code byte for byte, and each vector stands on its own: its bytes decode,
its ids and messages recompute from the documented constructions (with
``hashlib``, not the protocol's helpers), and its signatures verify — the
P-256 ones also with OpenSSL directly.
"""

from __future__ import annotations

import json
from hashlib import blake2b, sha256

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mycelia.protocol import (
    DeviceRegister,
    Economy,
    Ed25519DeviceKey,
    Entry,
    Ledger,
    MerkleProof,
    P256DeviceKey,
    Reading,
    SignedEntry,
    SignedGenesis,
    SignedReading,
    SigningKey,
    Vote,
    assemble,
    check,
    verify_proof,
)
from mycelia.protocol.certificates import Certificate
from mycelia.protocol.locks import resources
from mycelia.protocol.sensors import P256_N
from tests.vectors.generate import seed
from tests.vectors.generate_sensors import PATH, render

VECTORS = json.loads(PATH.read_text())
H = bytes.fromhex
KEY_TYPES = ["ed25519", "p256"]


def b2b(data: bytes) -> bytes:
    return blake2b(data, digest_size=32).digest()


def economy() -> Economy:
    return Economy.from_signed(
        SignedGenesis.decode(H(VECTORS["genesis"]["signed_genesis_by_validators_0_1_2"]))
    )


def test_file_matches_the_code() -> None:
    # If this fails after an intended encoding change, run `make vectors`.
    assert PATH.read_text() == render()


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_device_keys_and_ids(key_type: str) -> None:
    info = VECTORS["devices"][key_type]
    assert H(info["secret"]) == seed(info["seed_label"])
    dev = (Ed25519DeviceKey if key_type == "ed25519" else P256DeviceKey)(H(info["secret"]))
    assert dev.public.hex() == info["public"]
    assert H(info["device_id_preimage"]) == key_type.encode() + b"\0" + dev.public
    assert b2b(b"mycelia/device-id/1\0" + H(info["device_id_preimage"])) == H(info["device_id"])
    assert dev.device == H(info["device_id"])


def _verify_raw(key_type: str, public: bytes, message: bytes, signature: bytes) -> None:
    """Verify with the libraries directly, from the message bytes alone."""
    if key_type == "ed25519":
        from nacl.signing import VerifyKey

        VerifyKey(public).verify(message, signature)
        return
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert s <= P256_N // 2  # low S
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    pub.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    assert len(sha256(message).digest()) == 32  # what a secure element signs


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_reading_vectors(key_type: str) -> None:
    v = VECTORS["readings"][key_type]
    f = v["fields"]
    data = H(v["bytes"])
    r = Reading.decode(data)
    assert r == Reading(
        H(f["economy"]), H(f["device"]), f["counter"], f["ts_ms"], f["metric"], f["value"],
        f["exponent"],
    )  # fmt: skip
    assert r.encode() == data
    assert b2b(b"mycelia/reading/1\0" + data) == H(v["id"]) == r.id
    assert H(v["signed_message"]) == b"mycelia/sig/reading/1\0" + H(v["id"]) == r.message
    signed = SignedReading.decode(H(v["signed_reading"]))
    assert signed.reading == r
    assert signed.signature == H(v["signature"])
    assert H(v["signed_reading"]) == b"\x94\xaesigned-reading\x01" + data + b"\xc4\x40" + H(
        v["signature"]
    )
    public = H(VECTORS["devices"][key_type]["public"])
    assert signed.verify(key_type, public) == r.id
    _verify_raw(key_type, public, H(v["signed_message"]), H(v["signature"]))
    assert r.economy == economy().id
    assert r.device == H(VECTORS["devices"][key_type]["device_id"])


def test_merkle_vectors() -> None:
    m = VECTORS["merkle"]
    leaves = [H(x) for x in m["leaves"]]
    hashes_ = [b2b(b"mycelia/merkle/1\0" + b"\x00" + leaf) for leaf in leaves]
    assert [h.hex() for h in hashes_] == m["leaf_hashes"]
    node = b2b(b"mycelia/merkle/1\0" + b"\x01" + hashes_[0] + hashes_[1])
    top = b2b(b"mycelia/merkle/1\0" + b"\x01" + node + hashes_[2])  # leaf 2 promoted
    root = b2b(b"mycelia/merkle/1\0" + b"\x02" + len(leaves).to_bytes(8, "big") + top)
    assert root == H(m["root"])
    for p in m["proofs"]:
        proof = MerkleProof.decode(H(p["bytes"]))
        assert proof == MerkleProof(p["index"], p["count"], tuple(H(s) for s in p["siblings"]))
        assert verify_proof(root, leaves[p["index"]], proof)
    for leaf in leaves:
        SignedReading.decode(leaf)  # every leaf is a signed reading


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_device_register_vectors(key_type: str) -> None:
    v = VECTORS["device.register"][key_type]
    econ = economy()
    e = Entry.decode(H(v["entry"]["bytes"]))
    body = e.body
    assert isinstance(body, DeviceRegister)
    assert e.kind == "device.register"
    assert body.device == H(VECTORS["devices"][key_type]["device_id"])
    assert b2b(b"mycelia/device/1\0" + H(v["pop_statement"])) == H(v["pop_id"])
    assert body.pop_id(e.economy, e.author) == H(v["pop_id"])
    assert H(v["pop_signed_message"]) == b"mycelia/sig/device/1\0" + H(v["pop_id"])
    assert body.pop == H(v["pop"])
    _verify_raw(key_type, body.public_key, H(v["pop_signed_message"]), body.pop)
    body.verify_pop(econ.id, e.author)
    assert e.id == H(v["entry"]["id"])
    signed = SignedEntry.decode(H(v["entry"]["signed_entry"]))
    assert signed.entry == e
    assert signed.verify() == e.id
    assert [r.hex() for r in resources(e)] == v["entry"]["resources"]
    assert e.author == H(VECTORS["keys"]["owner"]["public"])


def test_the_vector_chain_is_valid() -> None:
    """The registrations and the attestation pass the ledger's rules in order."""
    econ = economy()
    validators = [SigningKey(seed(f"mycelia-vector/validator/{i}")) for i in range(4)]
    ledger = Ledger(econ)
    chain = [VECTORS["device.register"][kt]["entry"] for kt in KEY_TYPES]
    chain.append(VECTORS["sensor.attest"])
    for v in chain:
        signed = SignedEntry.decode(H(v["signed_entry"]))
        assert check(econ, ledger.state, signed).ok
        votes = [Vote.make(k, econ.id, 0, signed.id) for k in validators[:3]]
        cert: Certificate = assemble(econ, signed, votes)
        assert ledger.apply(cert) == [signed.id]
    attest = SignedEntry.decode(H(VECTORS["sensor.attest"]["signed_entry"])).entry
    assert attest.body.root == H(VECTORS["merkle"]["root"])
    assert attest.body.count == len(VECTORS["merkle"]["leaves"])
