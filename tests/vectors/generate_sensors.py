"""Build the sensor test vectors (``tests/vectors/sensors.json``).

``make vectors`` (``python -m tests.vectors.generate``) writes this file
together with ``protocol.json``; ``tests/protocol/test_sensor_vectors.py``
fails while the file and the code disagree.

For firmware writers: every key comes from a fixed 32-byte seed
(``seed(label)`` = BLAKE2b-256 of the label). An Ed25519 device key is that
seed; a P-256 device key's private scalar is the seed read big-endian (it is
below the group order). Ed25519 signatures are deterministic, and the P-256
ones are RFC 6979 (SHA-256) normalised to low S, so the signatures are
vectors too. For each device the file gives its id (and the id's preimage),
a reading's fields, canonical bytes, id, the exact 54-byte message signed,
the signature and the signed-reading bytes; then a three-leaf Merkle tree
over signed readings (leaf hashes, root, every proof); then the impact
economy's genesis, a ``device.register`` entry per device (with the proof of
possession's statement, id, message and signature) and the host's
``sensor.attest`` entry for the tree's batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mycelia.protocol import (
    DeviceRegister,
    Economy,
    Ed25519DeviceKey,
    Entry,
    Genesis,
    ImpactPolicy,
    Metric,
    P256DeviceKey,
    Reading,
    SignedGenesis,
    SigningKey,
    Validator,
    build_attestation,
    codec,
)
from mycelia.protocol.domains import DEVICE, ENTRY, GENESIS, MERKLE, READING
from mycelia.protocol.locks import resources
from mycelia.protocol.merkle import leaf_hash
from mycelia.protocol.sensors import DeviceKey
from mycelia.protocol.state import ZERO_ID
from tests.vectors.generate import TS, seed

PATH = Path(__file__).with_name("sensors.json")


def _key(label: str) -> SigningKey:
    return SigningKey(seed(label))


def _keyinfo(label: str, k: SigningKey) -> dict[str, str]:
    return {"seed_label": label, "seed": k.seed.hex(), "public": k.public.hex(), "did": k.did}


def _device_info(label: str, dev: DeviceKey) -> dict[str, str]:
    return {
        "key_type": dev.key_type,
        "seed_label": label,
        "secret": seed(label).hex(),
        "public": dev.public.hex(),
        "device_id_preimage": (dev.key_type.encode() + b"\x00" + dev.public).hex(),
        "device_id": dev.device.hex(),
    }


def _reading_vector(reading: Reading, dev: DeviceKey) -> dict[str, Any]:
    signed = reading.sign(dev)
    return {
        "fields": {
            "economy": reading.economy.hex(),
            "device": reading.device.hex(),
            "counter": reading.counter,
            "ts_ms": reading.ts_ms,
            "metric": reading.metric,
            "value": reading.value,
            "exponent": reading.exponent,
        },
        "bytes": reading.encode().hex(),
        "id": reading.id.hex(),
        "signed_message": reading.message.hex(),
        "signature": signed.signature.hex(),
        "signed_reading": signed.encode().hex(),
    }


def _entry_vector(entry: Entry, author: SigningKey) -> dict[str, Any]:
    signed = entry.sign(author)
    return {
        "kind": entry.kind,
        "bytes": entry.encode().hex(),
        "id": entry.id.hex(),
        "signed_message": ENTRY.message(entry.id).hex(),
        "signature": signed.signature.hex(),
        "signed_entry": signed.encode().hex(),
        "resources": [r.hex() for r in resources(entry)],
    }


def build() -> dict[str, Any]:
    validators = [_key(f"mycelia-vector/validator/{i}") for i in range(4)]
    owner = _key("mycelia-vector/sensor-owner")
    host = _key("mycelia-vector/sensor-host")
    labels = {"ed25519": "mycelia-vector/device/ed25519", "p256": "mycelia-vector/device/p256"}
    devices: dict[str, DeviceKey] = {
        "ed25519": Ed25519DeviceKey(seed(labels["ed25519"])),
        "p256": P256DeviceKey(seed(labels["p256"])),
    }

    g = Genesis(
        name="Riverside Sun",
        symbol="RVS",
        decimals=3,
        kind="impact",
        policy=ImpactPolicy("open", (), "energy_wh", 0, 1_000, ("solar-meter",)),
        validators=tuple(Validator(v.public, 1) for v in validators),
        quorum=3,
        ts_ms=TS,
        nonce=b"vector",
    )
    signed_genesis = SignedGenesis.assemble(g, {v.public: g.sign(v) for v in validators[:3]})
    economy = Economy.from_signed(signed_genesis)

    ed, p = devices["ed25519"], devices["p256"]
    readings = {
        # a small reading: positive fixints everywhere but the timestamp
        "ed25519": Reading(economy.id, ed.device, 1, TS, "energy_wh", 1234, 0),
        # wide and negative: a uint64 counter, a negative value and exponent
        "p256": Reading(economy.id, p.device, 1 << 32, TS + 60_000, "temp_c", -15, -1),
    }
    reading_vectors = {kt: _reading_vector(r, devices[kt]) for kt, r in readings.items()}

    metrics = {
        "ed25519": (Metric("energy_wh", "Wh", 0, 0, 1_000_000),),
        "p256": (
            Metric("energy_wh", "Wh", 0, 0, 1_000_000),
            Metric("temp_c", "degC", -1, -400, 1_000),
        ),
    }
    registrations = {}
    register_vectors = {}
    prev = ZERO_ID
    for seq, kt in enumerate(("ed25519", "p256"), 1):
        dev = devices[kt]
        body = DeviceRegister.make(
            dev, economy.id, owner.public, "solar-meter", host.public, metrics[kt]
        )
        statement = [
            "device", 1, economy.id, owner.public, kt, dev.public, "solar-meter", host.public,
            [m.to_wire() for m in metrics[kt]],
        ]  # fmt: skip
        pop_id = body.pop_id(economy.id, owner.public)
        assert DEVICE.id(codec.encode(statement)) == pop_id
        entry = Entry(economy.id, owner.public, seq, prev, TS + seq, body)
        register_vectors[kt] = {
            "pop_statement": codec.encode(statement).hex(),
            "pop_id": pop_id.hex(),
            "pop_signed_message": DEVICE.message(pop_id).hex(),
            "pop": body.pop.hex(),
            "entry": _entry_vector(entry, owner),
        }
        registrations[dev.device] = entry.id
        prev = entry.id

    batch = [
        readings["ed25519"].sign(ed),
        Reading(economy.id, ed.device, 2, TS + 1_000, "energy_wh", 99, 0).sign(ed),
        readings["p256"].sign(p),
    ]
    body, tree, ordered = build_attestation(batch, registrations)
    leaves = [r.encode() for r in ordered]
    merkle = {
        "leaves": [leaf.hex() for leaf in leaves],
        "leaf_hashes": [leaf_hash(leaf).hex() for leaf in leaves],
        "root": tree.root.hex(),
        "proofs": [
            {
                "index": i,
                "count": tree.count,
                "siblings": [s.hex() for s in tree.proof(i).siblings],
                "bytes": tree.proof(i).encode().hex(),
            }
            for i in range(tree.count)
        ],
    }
    attest = Entry(economy.id, host.public, 1, ZERO_ID, TS + 120_000, body)

    return {
        "about": (
            "mycelia sensor test vectors; see tests/vectors/generate_sensors.py, "
            "protocol/sensors.py (byte layout) and docs/sensors.md. Hex strings are bytes."
        ),
        "domains": {
            d.what: {"id_prefix": d.id_prefix.hex(), "sig_prefix": d.sig_prefix.hex()}
            for d in (READING, DEVICE, MERKLE)
        }
        | {"device-id": {"id_prefix": b"mycelia/device-id/1\0".hex()}},
        "keys": {
            "owner": _keyinfo("mycelia-vector/sensor-owner", owner),
            "host": _keyinfo("mycelia-vector/sensor-host", host),
            **{
                f"validator{i}": _keyinfo(f"mycelia-vector/validator/{i}", v)
                for i, v in enumerate(validators)
            },
        },
        "devices": {kt: _device_info(labels[kt], d) for kt, d in devices.items()},
        "readings": reading_vectors,
        "merkle": merkle,
        "genesis": {
            "bytes": g.encode().hex(),
            "id": g.id.hex(),
            "signed_message": GENESIS.message(g.id).hex(),
            "signed_genesis_by_validators_0_1_2": signed_genesis.encode().hex(),
        },
        "device.register": register_vectors,
        "sensor.attest": _entry_vector(attest, host),
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"
