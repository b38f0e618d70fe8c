"""Device keys, readings, the ingest check, batch attestation and the audit
(``protocol/sensors.py``).

Signatures of both key types are checked against independent oracles
(RFC 6979's published P-256 vector, OpenSSL's own ECDSA verification), the
reading bytes against the layout the module docstring gives firmware
writers, and every refusal against its reason code.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    AttestationAudit,
    Certificate,
    DeviceKey,
    DeviceRecord,
    Entry,
    MerkleProof,
    MerkleTree,
    P256DeviceKey,
    Reading,
    Reason,
    Refused,
    SignedReading,
    Transfer,
    build_attestation,
    build_attestations,
    check_device_key,
    check_reading,
    codec,
    device_id,
    verify_device_signature,
)
from mycelia.protocol.devices import _rfc6979_sign
from mycelia.protocol.domains import DEVICE, READING
from mycelia.protocol.entries import MAX_ENTRY_BYTES, MAX_SEQ
from mycelia.protocol.reasons import NeedCertificate
from mycelia.protocol.schema import INT64_MAX, INT64_MIN, UINT64_MAX
from mycelia.protocol.sensors import (
    MAX_ATTEST_BODY_BYTES,
    MAX_ATTESTED_DEVICES,
    MAX_COUNTER,
    MAX_READING_BYTES,
    MAX_SIGNED_READING_BYTES,
    MIN_READING_TS_MS,
    P256_N,
    READING_REASONS,
    Aggregate,
    AttestedDevice,
    SensorAttest,
)
from mycelia.testing.economies import (
    ENERGY,
    T0,
    TEMPERATURE,
    World,
    device_key,
    impact_genesis,
    key,
    validator_keys,
)

OWNER, HOST, OTHER_HOST = key(1), key(5, "host"), key(6, "host")
ID = blake2b(b"some id", digest_size=32).digest()
KEY_TYPES = ["ed25519", "p256"]


def refused(fn: Callable[[], object]) -> Refused:
    with pytest.raises(Refused) as info:
        fn()
    return info.value


def high_s(signature: bytes) -> bytes:
    """The malleable twin of a low-S P-256 signature."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (P256_N - s).to_bytes(32, "big")


# -- keys and signatures -----------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_device_id_is_the_documented_hash(key_type: str) -> None:
    dev = device_key(1, key_type)
    expected = blake2b(
        b"mycelia/device-id/1\0" + key_type.encode() + b"\0" + dev.public, digest_size=32
    ).digest()
    assert dev.device == device_id(key_type, dev.public) == expected
    assert len(dev.public) == (32 if key_type == "ed25519" else 33)
    assert device_id("ed25519", dev.public[:32]) != device_id("p256", dev.public[:32])


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_device_signatures_verify_only_for_their_key_domain_and_id(key_type: str) -> None:
    dev, other = device_key(1, key_type), device_key(2, key_type)
    sig = dev.sign(READING, ID)
    assert len(sig) == 64
    verify_device_signature(key_type, dev.public, READING, ID, sig)  # no raise
    for public, domain, id_ in (
        (other.public, READING, ID),
        (dev.public, DEVICE, ID),
        (dev.public, READING, bytes(32)),
    ):
        err = refused(
            lambda p=public, d=domain, i=id_: verify_device_signature(key_type, p, d, i, sig)
        )
        assert err.reason is Reason.BAD_SIGNATURE
    assert (
        refused(lambda: verify_device_signature(key_type, dev.public, READING, ID, sig[:63])).reason
        is Reason.BAD_SIGNATURE
    )


def test_p256_matches_rfc6979_and_openssl() -> None:
    # RFC 6979 A.2.5, P-256 with SHA-256, message "sample".
    d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    r, s = _rfc6979_sign(ec.derive_private_key(d, ec.SECP256R1()), b"sample")
    assert r == 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716
    assert s == 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8
    # Our signer emits the low-S form of that signature; OpenSSL accepts both.
    dev = P256DeviceKey(d.to_bytes(32, "big"))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), dev.public)
    sig = dev.sign(READING, ID)
    low = int.from_bytes(sig[32:], "big")
    assert low <= P256_N // 2
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), low)
    pub.verify(der, READING.message(ID), ec.ECDSA(hashes.SHA256()))  # no raise
    twin = encode_dss_signature(int.from_bytes(sig[:32], "big"), P256_N - low)
    pub.verify(twin, READING.message(ID), ec.ECDSA(hashes.SHA256()))  # OpenSSL takes high S
    err = refused(lambda: verify_device_signature("p256", dev.public, READING, ID, high_s(sig)))
    assert err.reason is Reason.HIGH_S  # … mycelia does not


@given(st.binary(min_size=32, max_size=32), st.integers(1, P256_N - 1))
def test_p256_signatures_are_deterministic_low_s_and_verify(id_: bytes, d: int) -> None:
    dev = P256DeviceKey(d.to_bytes(32, "big"))
    sig = dev.sign(READING, id_)
    assert sig == dev.sign(READING, id_)
    assert int.from_bytes(sig[32:], "big") <= P256_N // 2
    verify_device_signature("p256", dev.public, READING, id_, sig)
    assert (
        refused(
            lambda: verify_device_signature("p256", dev.public, READING, id_, high_s(sig))
        ).reason
        is Reason.HIGH_S
    )
    # OpenSSL, as an independent verifier, agrees that the signature is good.
    pub = ec.derive_private_key(d, ec.SECP256R1()).public_key()
    assert (
        pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        == dev.public
    )
    pub.verify(
        encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
        READING.message(id_),
        ec.ECDSA(hashes.SHA256()),
    )


def test_p256_signature_scalars_out_of_range_are_bad_signatures() -> None:
    dev = device_key(1, "p256")
    sig = dev.sign(READING, ID)
    r = sig[:32]
    for bad in (bytes(32) + sig[32:], r + bytes(32), P256_N.to_bytes(32, "big") + sig[32:]):
        err = refused(lambda b=bad: verify_device_signature("p256", dev.public, READING, ID, b))
        assert err.reason is Reason.BAD_SIGNATURE


def _x_not_on_curve() -> bytes:
    for x in range(1, 100):
        candidate = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), candidate)
        except ValueError:
            return candidate
    raise AssertionError("every small x is on the curve?")


def test_device_keys_are_checked() -> None:
    p = device_key(1, "p256").public
    e = device_key(1, "ed25519").public
    assert check_device_key("p256", p) == p
    assert check_device_key("ed25519", e) == e
    uncompressed = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p).public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    for key_type, public in (
        ("p256", uncompressed),  # 65 bytes: only the compressed form is accepted
        ("p256", b"\x04" + p[1:]),
        ("p256", _x_not_on_curve()),
        ("p256", e),
        ("ed25519", bytes([1]) + bytes(31)),  # small order
        ("ed25519", p),
    ):
        assert (
            refused(lambda k=key_type, pk=public: check_device_key(k, pk)).reason is Reason.BAD_KEY
        )
    for key_type in ("rsa", b"p256", ["p256"]):
        assert refused(lambda k=key_type: check_device_key(k, p)).reason is Reason.MALFORMED_BODY
    assert (
        refused(
            lambda: verify_device_signature("p256", _x_not_on_curve(), READING, ID, bytes(64))
        ).reason
        is Reason.BAD_KEY
    )


def test_p256_secret_bounds() -> None:
    for secret in (bytes(32), P256_N.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError, match="a P-256 secret is"):
            P256DeviceKey(secret)
    fresh = P256DeviceKey.generate()
    verify_device_signature("p256", fresh.public, READING, ID, fresh.sign(READING, ID))
    assert "secret" not in repr(fresh)
    assert "Ed25519DeviceKey" in repr(device_key(1))


# -- readings ----------------------------------------------------------------------------


ECON = bytes(range(32))


def test_reading_bytes_follow_the_documented_layout() -> None:
    dev = device_key(1)
    r = Reading(ECON, dev.device, 300, 1_700_000_000_000, "energy_wh", -2, -3)
    data = r.encode()
    assert data == (
        b"\x99\xa7reading\x01"
        + b"\xc4\x20" + ECON
        + b"\xc4\x20" + dev.device
        + b"\xcd\x01\x2c"  # 300 as uint16
        + b"\xcf" + (1_700_000_000_000).to_bytes(8, "big")
        + b"\xa9energy_wh"
        + b"\xfe"  # -2 as negative fixint
        + b"\xfd"  # -3
    )  # fmt: skip
    assert r.id == blake2b(b"mycelia/reading/1\0" + data, digest_size=32).digest()
    assert r.message == b"mycelia/sig/reading/1\0" + r.id
    assert len(r.message) == 54
    signed = r.sign(dev)
    assert signed.encode() == b"\x94\xaesigned-reading\x01" + data + b"\xc4\x40" + signed.signature
    assert SignedReading.decode(signed.encode()) == signed
    assert signed.verify("ed25519", dev.public) == r.id
    with pytest.raises(ValueError, match="its own device's key"):
        r.sign(device_key(2))


def test_widest_reading_fits_the_bounds_exactly() -> None:
    r = Reading(b"\xff" * 32, b"\xff" * 32, UINT64_MAX, INT64_MAX, "m" * 32, INT64_MIN, -18)
    assert len(r.encode()) == MAX_READING_BYTES
    assert len(SignedReading(r, b"\xff" * 64).encode()) == MAX_SIGNED_READING_BYTES
    err = refused(lambda: SignedReading.decode(SignedReading(r, b"\xff" * 64).encode() + b"\x00"))
    assert err.reason is Reason.TOO_LARGE
    assert refused(lambda: Reading.decode(codec.encode(["x" * 140]))).reason is Reason.TOO_LARGE


readings = st.builds(
    Reading,
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    st.integers(0, UINT64_MAX),
    st.integers(0, INT64_MAX),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(-18, 18),
)


@given(readings, st.binary(min_size=64, max_size=64))
def test_readings_round_trip(r: Reading, sig: bytes) -> None:
    assert Reading.decode(r.encode()) == r
    signed = SignedReading(r, sig)
    data = signed.encode()
    assert SignedReading.decode(data) == signed
    assert data[17:-66] == r.encode()  # the reading's own bytes, verbatim
    assert len(data) <= MAX_SIGNED_READING_BYTES


# -- the ingest check ---------------------------------------------------------------------


@pytest.fixture(params=KEY_TYPES)
def registered(request: pytest.FixtureRequest) -> tuple[World, object, DeviceRecord]:
    w = World(impact_genesis(), validator_keys(4))
    dev = device_key(1, request.param)
    w.register(OWNER, dev, HOST, metrics=(ENERGY, TEMPERATURE))
    record = w.device_record(dev)
    assert record is not None
    return w, dev, record


def test_check_reading_accepts_and_refuses(registered: tuple[World, object, DeviceRecord]) -> None:
    w, dev, record = registered
    now = T0 + 1_000

    def check(signed: SignedReading, **kw: object) -> bytes:
        args: dict[str, object] = {
            "economy": w.id,
            "host": HOST.public,
            "last_counter": 9,
            "now_ms": now,
        }
        args.update(kw)
        return check_reading(signed, record, **args)  # type: ignore[arg-type]

    def reading(**kw: object) -> SignedReading:
        fields: dict[str, object] = {
            "economy": w.id,
            "device": dev.device,  # type: ignore[attr-defined]
            "counter": 10,
            "ts_ms": now,
            "metric": "energy_wh",
            "value": 5,
            "exponent": 0,
        }
        fields.update(kw)
        return Reading(**fields).sign(dev)  # type: ignore[arg-type]

    good = reading()
    assert check(good) == good.id
    assert check(good, last_counter=None, now_ms=None) == good.id
    cold = reading(metric="temp_c", value=-400, exponent=-1)  # ENERGY 0..1e6, temp -400..1000
    assert check(cold) == cold.id
    cases = {
        Reason.WRONG_ECONOMY: lambda: check(reading(economy=bytes(32))),
        Reason.UNKNOWN_DEVICE: lambda: check(
            Reading(w.id, device_key(9).device, 10, now, "energy_wh", 5, 0).sign(device_key(9))
        ),
        Reason.NOT_HOST: lambda: check(good, host=OTHER_HOST.public),
        Reason.UNKNOWN_METRIC: lambda: check(reading(metric="water_l")),
        Reason.OUT_OF_RANGE: lambda: check(reading(value=1_000_001)),
        Reason.REPLAYED_COUNTER: lambda: check(good, last_counter=10),
        Reason.CLOCK_SKEW: lambda: check(reading(ts_ms=now + 120_001)),
        Reason.COUNTER_OUT_OF_RANGE: lambda: check(reading(counter=MAX_COUNTER + 1)),
        Reason.BAD_SIGNATURE: lambda: check(
            SignedReading(good.reading, reading(value=6).signature)
        ),
    }
    before = w.ledger.state.snapshot()
    for reason, action in cases.items():
        assert refused(action).reason is reason, reason
    # the declared exponent is part of the metric
    assert refused(lambda: check(reading(exponent=-3))).reason is Reason.UNKNOWN_METRIC
    assert (
        refused(lambda: check(reading(metric="temp_c", value=-401, exponent=-1))).reason
        is Reason.OUT_OF_RANGE
    )
    assert refused(lambda: check(good, last_counter=11)).reason is Reason.REPLAYED_COUNTER
    assert check(reading(ts_ms=now + 120_000)) is not None  # the bound is inclusive
    # The bounds: counters up to 2**53 - 1, timestamps from 2020-01-01, inclusive.
    assert check(reading(counter=MAX_COUNTER)) is not None
    assert check(reading(ts_ms=MIN_READING_TS_MS)) is not None
    for counter in (MAX_COUNTER + 1, UINT64_MAX):  # 2**64 - 1: erased flash, or -1
        too_far = reading(counter=counter)
        for last in (9, None):
            refusal = refused(lambda r=too_far, c=last: check(r, last_counter=c))  # type: ignore[misc]
            assert refusal.reason is Reason.COUNTER_OUT_OF_RANGE
    for ts in (0, 946_684_800_000, MIN_READING_TS_MS - 1):  # 1970, 2000 (an RTC's epoch)
        unset = reading(ts_ms=ts)
        refusal = refused(lambda r=unset: check(r, now_ms=None))  # type: ignore[misc]
        assert refusal.reason is Reason.CLOCK_SKEW
        assert "not set" in refusal.detail
    if record.body.key_type == "p256":
        twin = SignedReading(good.reading, high_s(good.signature))
        assert refused(lambda: check(twin)).reason is Reason.HIGH_S
    assert w.ledger.state.snapshot() == before  # checking a reading changes no state


# -- building an attestation ------------------------------------------------------------


def test_build_attestation_orders_counts_and_aggregates() -> None:
    w = World(impact_genesis(), validator_keys(4))
    a, b = device_key(1), device_key(2, "p256")
    regs = {a.device: b"\x0a" * 32, b.device: b"\x0b" * 32}
    batch = [
        *w.readings(a, [5, 3, 9], [10, -4, 7]),
        *w.readings(b, [100], 50),
        *w.readings(a, [4], 1, metric="temp_c", exponent=-1),
    ]
    body, tree, ordered = build_attestation(reversed(batch), regs)
    assert [(r.reading.device, r.reading.counter) for r in ordered] == sorted(
        (r.reading.device, r.reading.counter) for r in batch
    )
    assert body.root == tree.root == MerkleTree(r.encode() for r in ordered).root
    assert body.count == tree.count == 5
    row_a = body.row(a.device)
    assert row_a is not None
    assert (row_a.first, row_a.last, row_a.count, row_a.registration) == (3, 9, 4, b"\x0a" * 32)
    energy = row_a.aggregate("energy_wh")
    assert energy is not None
    assert (energy.sum, energy.min, energy.max) == (13, -4, 10)
    assert [x.metric for x in row_a.aggregates] == ["energy_wh", "temp_c"]
    for i, r in enumerate(ordered):
        assert tree.proof(i).index == i
        assert tree.proof(i).count == 5
        assert r.encode()  # every leaf is a signed reading
    twice = [*w.readings(a, [3]), *w.readings(a, [3], 9)]
    assert refused(lambda: build_attestation(twice, regs)).reason is Reason.REPLAYED_COUNTER
    with pytest.raises(ValueError, match="no registration for device"):
        build_attestation(w.readings(device_key(3), [1]), regs)
    with pytest.raises(ValueError, match="an empty batch"):
        build_attestation([], regs)
    many = [device_key(i) for i in range(MAX_ATTESTED_DEVICES + 1)]
    batch = [r for d in many for r in w.readings(d, [1])]
    all_regs = {d.device: bytes(32) for d in many}
    assert refused(lambda: build_attestation(batch, all_regs)).reason is Reason.TOO_LARGE
    huge = w.readings(a, [1, 2], INT64_MAX)
    assert refused(lambda: build_attestation(huge, regs)).reason is Reason.TOO_LARGE


# -- the audit ---------------------------------------------------------------------------


class Batch:
    """An impact world with an Ed25519 and a P-256 device attested in one batch."""

    def __init__(self) -> None:
        self.w = World(impact_genesis(), validator_keys(4))
        self.ed, self.p = device_key(1), device_key(1, "p256")
        self.stranger = device_key(3)
        self.regs = [self.w.register(OWNER, d, HOST) for d in (self.ed, self.p, self.stranger)]
        readings = [
            *self.w.readings(self.ed, range(1, 6)),
            *self.w.readings(self.p, range(7, 11), 30),
        ]
        body, self.tree, self.ordered = self.w.attest_body(readings)
        self.cert = self.w.commit(HOST, body)
        self.leaves = [r.encode() for r in self.ordered]
        self.audit = AttestationAudit(self.w.economy, self.cert, self.regs)

    def index_of(self, dev: object) -> int:
        return next(i for i, r in enumerate(self.ordered) if r.reading.device == dev.device)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch()


def test_audit_accepts_every_attested_reading(batch: Batch) -> None:
    for i, leaf in enumerate(batch.leaves):
        assert batch.audit.check(leaf, batch.tree.proof(i)) == batch.ordered[i]
        assert batch.audit.verdict(leaf, batch.tree.proof(i)).ok
    assert batch.audit.check_batch(batch.leaves) == batch.ordered
    # DeviceRecords (as a node holds them) serve as well as certificates.
    records = [DeviceRecord.from_certificate(c) for c in batch.regs]
    audit = AttestationAudit(batch.w.economy, batch.cert, records)
    assert audit.check(batch.leaves[0], batch.tree.proof(0)) == batch.ordered[0]


def test_audit_refusals(batch: Batch) -> None:
    w, audit, tree = batch.w, batch.audit, batch.tree
    before = (w.ledger.state.snapshot(), dict(w.ledger.chain))
    i_ed, i_p = batch.index_of(batch.ed), batch.index_of(batch.p)
    leaf, proof = batch.leaves[i_ed], tree.proof(i_ed)
    ed_reading = batch.ordered[i_ed].reading

    def reason(leaf_: bytes, proof_: MerkleProof, a: AttestationAudit = audit) -> Reason | None:
        return a.verdict(leaf_, proof_).reason

    # a reading signed for another economy
    other = Reading(
        bytes(32), ed_reading.device, ed_reading.counter, ed_reading.ts_ms, "energy_wh", 100, 0
    )
    assert reason(other.sign(batch.ed).encode(), proof) is Reason.WRONG_ECONOMY
    # a device without a row, a counter outside the row
    stranger = w.readings(batch.stranger, [1])[0].encode()
    assert reason(stranger, proof) is Reason.NOT_ATTESTED
    beyond = w.readings(batch.ed, [6])[0].encode()
    assert reason(beyond, proof) is Reason.NOT_ATTESTED
    above = w.readings(batch.ed, [2], 101)[0].encode()  # above the row's max
    assert reason(above, proof) is Reason.NOT_ATTESTED
    # the registration was not given: curable
    bare = AttestationAudit(w.economy, batch.cert, batch.regs[:1])
    verdict = bare.verdict(batch.leaves[i_p], tree.proof(i_p))
    assert verdict.reason is Reason.MISSING
    assert verdict.needs == (NeedCertificate(batch.regs[1].entry_id),)
    # forged or malleated signatures
    forged = SignedReading(ed_reading, w.readings(batch.ed, [1], 99)[0].signature).encode()
    assert reason(forged, proof) is Reason.BAD_SIGNATURE
    p_signed = batch.ordered[i_p]
    twin = SignedReading(p_signed.reading, high_s(p_signed.signature)).encode()
    assert reason(twin, tree.proof(i_p)) is Reason.HIGH_S
    # an undeclared metric
    odd = w.readings(batch.ed, [2], 1, metric="temp_c", exponent=-1)[0].encode()
    assert reason(odd, proof) is Reason.UNKNOWN_METRIC
    # proofs: tampered, another leaf's, another count
    sibs = proof.siblings
    tampered = MerkleProof(proof.index, proof.count, (bytes(32), *sibs[1:]))
    assert reason(leaf, tampered) is Reason.BAD_PROOF
    assert reason(leaf, tree.proof(i_p)) is Reason.BAD_PROOF
    assert reason(leaf, MerkleProof(proof.index, proof.count + 1, sibs)) is Reason.BAD_PROOF
    # bytes that are no signed reading
    assert reason(leaf + b"\x00", proof) is Reason.NON_CANONICAL
    assert reason(codec.encode(["signed-reading", 2]), proof) is Reason.MALFORMED
    # a whole batch out of order, or short
    swapped = [batch.leaves[1], batch.leaves[0], *batch.leaves[2:]]
    assert refused(lambda: audit.check_batch(swapped)).reason is Reason.BAD_PROOF
    assert refused(lambda: audit.check_batch(batch.leaves[:-1])).reason is Reason.NOT_ATTESTED
    assert (w.ledger.state.snapshot(), dict(w.ledger.chain)) == before  # an audit is read-only


def test_audit_verifies_its_certificates(batch: Batch) -> None:
    w = batch.w
    other = World(impact_genesis(nonce=b"other"), validator_keys(4))
    err = refused(lambda: AttestationAudit(other.economy, batch.cert, batch.regs))
    assert err.reason is Reason.WRONG_ECONOMY
    forged = Certificate(batch.cert.entry, bytes(64), 0, batch.cert.bitmap, batch.cert.signatures)
    assert refused(lambda: AttestationAudit(w.economy, forged)).reason is Reason.BAD_SIGNATURE
    # a registration certificate that does not verify is refused too
    bad_reg = Certificate(
        batch.regs[0].entry, bytes(64), 0, batch.regs[0].bitmap, batch.regs[0].signatures
    )
    err = refused(lambda: AttestationAudit(w.economy, batch.cert, [bad_reg]))
    assert err.reason is Reason.BAD_SIGNATURE
    # not an attestation
    assert refused(lambda: AttestationAudit(w.economy, batch.regs[0])).reason is Reason.MALFORMED
    transfer = w.certify(w.entry(key(7), Transfer(OWNER.public, 1)))
    assert transfer.entry.kind == "transfer"
    assert refused(lambda: AttestationAudit(w.economy, transfer)).reason is Reason.MALFORMED


def test_build_attestations_splits_batches_to_fit_entries() -> None:
    w = World(impact_genesis(), validator_keys(4))
    devs = [device_key(i, "p256" if i % 3 == 0 else "ed25519") for i in range(40)]
    batch = []
    for i, d in enumerate(devs):
        batch += w.readings(d, [1, 5, 9], [i, 2 * i, 3 * i])
        batch += w.readings(d, [2], i, metric="temp_c", exponent=-1)
    regs = {d.device: bytes([i]) * 32 for i, d in enumerate(devs)}
    parts = build_attestations(batch, regs)
    assert len(parts) > 40 // MAX_ATTESTED_DEVICES
    seen = []
    for body, tree, ordered in parts:
        assert len(body.devices) <= MAX_ATTESTED_DEVICES
        assert len(codec.encode(body.to_wire())) <= MAX_ATTEST_BODY_BYTES
        # The widest envelope around it still fits an entry.
        e = Entry(b"\xff" * 32, HOST.public, MAX_SEQ, b"\xff" * 32, INT64_MAX, body)
        assert len(e.encode()) <= MAX_ENTRY_BYTES
        assert Entry.decode(e.encode()) == e
        assert tree.root == body.root
        assert tree.count == len(ordered) == body.count
        seen += ordered
    assert sorted(r.encode() for r in seen) == sorted(r.encode() for r in batch)
    with pytest.raises(Refused) as info:
        build_attestation(batch, regs)
    assert info.value.reason is Reason.TOO_LARGE


def test_the_attestation_body_bound_leaves_room_for_the_widest_envelope() -> None:
    row = AttestedDevice(bytes(32), bytes(32), 0, 0, 1, (Aggregate("e", 0, 0, 0),))
    body = SensorAttest(bytes(32), 1, (row,))
    widest = Entry(b"\xff" * 32, HOST.public, MAX_SEQ, b"\xff" * 32, INT64_MAX, body)
    envelope = len(widest.encode()) - len(codec.encode(body.to_wire()))
    assert MAX_ATTEST_BODY_BYTES + envelope == MAX_ENTRY_BYTES
    # and a body over the bound is refused on construction
    wide = (Aggregate("m" * 32, INT64_MIN, INT64_MIN, INT64_MAX),)
    rows = tuple(
        AttestedDevice(bytes([i]) * 32, bytes(32), 0, UINT64_MAX, 1, wide) for i in range(16)
    )
    with pytest.raises(Refused) as info:
        SensorAttest(bytes(32), 16, rows)
    assert info.value.reason is Reason.TOO_LARGE


@pytest.mark.parametrize(
    ("counter", "ts_ms", "reason"),
    [
        (UINT64_MAX, T0, Reason.COUNTER_OUT_OF_RANGE),
        (MAX_COUNTER + 1, T0, Reason.COUNTER_OUT_OF_RANGE),
        (1, 0, Reason.CLOCK_SKEW),
        (1, MIN_READING_TS_MS - 1, Reason.CLOCK_SKEW),
    ],
)
def test_the_auditor_refuses_out_of_bounds_readings_as_the_host_does(
    counter: int, ts_ms: int, reason: Reason
) -> None:
    """A host that attested a reading its ingest check refuses (a faulty
    host, or one that ran old code): the audit names the same reason."""
    w = World(impact_genesis(), validator_keys(4))
    dev = device_key(1)
    reg = w.register(OWNER, dev, HOST)
    record = w.device_record(dev)
    assert record is not None
    bad = Reading(w.id, dev.device, counter, ts_ms, "energy_wh", 5, 0).sign(dev)
    host_says = refused(
        lambda: check_reading(
            bad, record, economy=w.id, host=HOST.public, last_counter=None, now_ms=None
        )
    )
    good = w.readings(dev, [2])
    body, tree, ordered = w.attest_body([bad, *good])
    cert = w.commit(HOST, body)
    audit = AttestationAudit(w.economy, cert, [reg])
    i = ordered.index(bad)
    assert audit.verdict(bad.encode(), tree.proof(i)).reason is host_says.reason is reason
    assert refused(lambda: audit.check_batch([r.encode() for r in ordered])).reason is reason


def _mutations() -> st.SearchStrategy[tuple[int, int, bytes, int]]:
    # (where, what, insert, cut): overwrite a byte, insert bytes, cut the tail
    return st.tuples(
        st.integers(0, MAX_SIGNED_READING_BYTES),
        st.integers(0, 255),
        st.binary(max_size=4),
        st.integers(0, 8),
    )


@given(
    st.sampled_from(KEY_TYPES),
    st.lists(_mutations(), max_size=3),
    st.integers(0, (1 << 64) - 1),
    st.integers(0, INT64_MAX),
    st.integers(INT64_MIN, INT64_MAX),
)
def test_a_host_can_only_answer_the_documented_reading_reasons(
    key_type: str,
    mutations: list[tuple[int, int, bytes, int]],
    counter: int,
    ts_ms: int,
    value: int,
) -> None:
    """Whatever arrives — a reading of any counter, time and value, its
    bytes corrupted — strict decoding and ``check_reading`` accept it or
    refuse it with one of ``READING_REASONS`` (what docs/sensors.md lists
    for device makers); nothing else escapes."""
    w, dev, record = _REGISTERED[key_type]
    data = bytearray(
        Reading(w.id, dev.device, counter, ts_ms, "energy_wh", value, 0).sign(dev).encode()
    )
    for where, what, insert, cut in mutations:
        if where < len(data):
            data[where] = what
        data[where:where] = insert
        if cut:
            del data[-cut:]
    try:
        signed = SignedReading.decode(bytes(data))
        check_reading(
            signed,
            record,
            economy=w.id,
            host=HOST.public,
            last_counter=5,
            now_ms=T0 + 1_000,
        )
    except Refused as exc:
        assert exc.reason in READING_REASONS, exc


def _registered(key_type: str) -> tuple[World, DeviceKey, DeviceRecord]:
    w = World(impact_genesis(), validator_keys(4))
    dev = device_key(1, key_type)
    w.register(OWNER, dev, HOST, metrics=(ENERGY, TEMPERATURE))
    record = w.device_record(dev)
    assert record is not None
    return w, dev, record


_REGISTERED = {kt: _registered(kt) for kt in KEY_TYPES}
