"""Ed25519 keys, strict verification, ``did:key`` and domain separation
(DESIGN §2–§3).

Independent oracles: PyNaCl's own ``VerifyKey`` for the signed message, a
base58 writer in this file for ``did:key``, ``hashlib.blake2b`` for ids, and
libsodium's group operations to build the degenerate keys and signatures
that a lax verifier would accept.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)
from nacl.signing import SigningKey as NaclSigningKey
from nacl.signing import VerifyKey

from mycelia.protocol import Reason, Refused, SigningKey, did_decode, did_encode, keys
from mycelia.protocol.domains import ENTRY, GENESIS, ID_SIZE, RESOURCE, VOTE, Domain
from mycelia.testing.economies import key

#: The order of the Ed25519 prime-order subgroup.
L = 2**252 + 27742317777372353535851937790883648493
#: The field prime.
P = 2**255 - 19

#: The eight points of small order (libsodium's blocklist), canonical encodings.
IDENTITY = bytes.fromhex("01" + "00" * 31)
SMALL_ORDER = [
    IDENTITY,  # order 1
    bytes.fromhex("ec" + "ff" * 30 + "7f"),  # (0, -1), order 2
    bytes(32),  # order 4
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    bytes(31) + b"\x80",  # order 4
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),  # order 8
]
TORSION = SMALL_ORDER[1:]  # the non-identity ones

DOMAINS = [ENTRY, VOTE, GENESIS, RESOURCE]
SEED0 = bytes(32)
#: W3C did:key spec, Ed25519 test vector: the key of the all-zero seed.
W3C_SEED0_DID = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
W3C_SEED0_PUBLIC = bytes.fromhex("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29")
#: Further Ed25519 did:key vectors from the same spec.
W3C_DIDS = [
    W3C_SEED0_DID,
    "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG",
    "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf",
]

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

seeds = st.binary(min_size=32, max_size=32)
ids = st.binary(min_size=32, max_size=32)


def b58(data: bytes) -> str:
    """Bitcoin base58 (the test's own writer)."""
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def reason_of(fn: Callable[[], object]) -> Reason:
    with pytest.raises(Refused) as info:
        fn()
    return info.value.reason


# -- SigningKey ----------------------------------------------------------------------


@given(seeds)
def test_public_key_is_deterministic_from_the_seed(seed: bytes) -> None:
    k = SigningKey(seed)
    assert k.public == SigningKey(seed).public
    assert len(k.public) == keys.PUBLIC_KEY_SIZE
    assert k.seed == seed
    # PyNaCl's high-level API derives the same key from the same seed
    assert bytes(NaclSigningKey(seed).verify_key) == k.public


def test_different_seeds_give_different_keys() -> None:
    publics = {SigningKey(bytes([i]) * 32).public for i in range(16)}
    assert len(publics) == 16
    assert SigningKey(SEED0).public == W3C_SEED0_PUBLIC


@given(seeds)
def test_repr_never_shows_the_seed(seed: bytes) -> None:
    k = SigningKey(seed)
    text = repr(k) + str(k)
    assert seed.hex() not in text
    assert seed.hex().upper() not in text
    assert k._secret.hex() not in text
    assert k.did in repr(k)


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), bytearray(32), "0" * 32, None])
def test_seed_must_be_32_bytes(seed: object) -> None:
    with pytest.raises(ValueError, match="seed is 32 bytes"):
        SigningKey(seed)  # type: ignore[arg-type]


def test_generate_gives_fresh_valid_keys() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.public != b.public
    assert keys.check_public_key(a.public) == a.public


# -- sign / verify ---------------------------------------------------------------------


@given(seeds, ids, st.sampled_from(DOMAINS))
def test_sign_verify_round_trip(seed: bytes, id_: bytes, domain: Domain) -> None:
    k = SigningKey(seed)
    sig = keys.sign(k, domain, id_)
    assert len(sig) == keys.SIGNATURE_SIZE
    assert keys.verify(k.public, domain, id_, sig) is True
    assert keys.sign(k, domain, id_) == sig  # Ed25519 is deterministic
    # the signed message is exactly the domain's prefix plus the id
    assert VerifyKey(k.public).verify(domain.sig_prefix + id_, sig) == domain.sig_prefix + id_


@pytest.mark.parametrize(
    ("signed_in", "checked_in"),
    list(itertools.permutations(DOMAINS, 2)),
    ids=lambda d: d.what,
)
def test_signature_does_not_verify_in_another_domain(signed_in: Domain, checked_in: Domain) -> None:
    k = key(0)
    id_ = bytes(range(32))
    sig = keys.sign(k, signed_in, id_)
    assert keys.verify(k.public, signed_in, id_, sig) is True
    assert keys.verify(k.public, checked_in, id_, sig) is False


def test_signature_does_not_verify_in_another_version() -> None:
    k = key(0)
    id_ = bytes(range(32))
    sig = keys.sign(k, ENTRY, id_)
    assert keys.verify(k.public, Domain("entry", 2), id_, sig) is False
    assert keys.verify(k.public, Domain("entry", 1), id_, sig) is True


@given(seeds, ids, ids)
def test_signature_does_not_verify_for_another_id(seed: bytes, id_: bytes, other: bytes) -> None:
    k = SigningKey(seed)
    sig = keys.sign(k, ENTRY, id_)
    assert keys.verify(k.public, ENTRY, other, sig) is (other == id_)


@given(st.integers(0, 8 * keys.SIGNATURE_SIZE - 1))
def test_any_flipped_signature_bit_fails(bit: int) -> None:
    k = key(3)
    id_ = bytes(range(32))
    sig = bytearray(keys.sign(k, VOTE, id_))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert keys.verify(k.public, VOTE, id_, bytes(sig)) is False


@given(st.integers(0, 8 * ID_SIZE - 1))
def test_any_flipped_id_bit_fails(bit: int) -> None:
    k = key(3)
    id_ = bytes(range(32))
    sig = keys.sign(k, VOTE, id_)
    other = bytearray(id_)
    other[bit // 8] ^= 1 << (bit % 8)
    assert keys.verify(k.public, VOTE, bytes(other), sig) is False


@given(seeds, seeds)
def test_signature_does_not_verify_under_another_key(a: bytes, b: bytes) -> None:
    ka, kb = SigningKey(a), SigningKey(b)
    id_ = bytes(32)
    sig = keys.sign(ka, GENESIS, id_)
    assert keys.verify(kb.public, GENESIS, id_, sig) is (a == b)


def _good() -> tuple[bytes, bytes, bytes]:
    k = key(5)
    id_ = bytes(range(32))
    return k.public, id_, keys.sign(k, ENTRY, id_)


@pytest.mark.parametrize(
    "bad",
    [
        ("public", b""),
        ("public", "short"),
        ("public", "long"),
        ("public", "bytearray"),
        ("public", "str"),
        ("public", None),
        ("signature", b""),
        ("signature", "short"),
        ("signature", "long"),
        ("signature", "double"),
        ("signature", "bytearray"),
        ("signature", None),
        ("id", b""),
        ("id", "short"),
        ("id", "long"),
        ("id", "double"),
    ],
    ids=lambda b: f"{b[0]}-{b[1]!r}",
)
def test_wrong_length_or_type_inputs_return_false(bad: tuple[str, object]) -> None:
    public, id_, sig = _good()
    assert keys.verify(public, ENTRY, id_, sig) is True
    original = {"public": public, "signature": sig, "id": id_}[bad[0]]
    value: object = {
        "short": original[:-1],
        "long": original + b"\x00",
        "double": original + original,
        "bytearray": bytearray(original),
        "str": original.hex()[:32],
    }.get(bad[1], bad[1])  # type: ignore[call-overload]
    args = {"public": public, "signature": sig, "id": id_, bad[0]: value}
    assert keys.verify(args["public"], ENTRY, args["id"], args["signature"]) is False


def test_non_canonical_s_is_refused_though_the_equation_holds() -> None:
    """``S + L`` satisfies ``[S]B = R + [k]A`` exactly like ``S`` (B has order
    L), so a verifier that does not check ``S < L`` would accept it: a
    second, different signature for the same message (malleability)."""
    k = key(7)
    id_ = bytes(range(32))
    sig = keys.sign(k, ENTRY, id_)
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    assert s < L
    s_plus_l = (s + L).to_bytes(32, "little")
    forged = r + s_plus_l
    # the verification equation still holds for the forged signature
    message = ENTRY.message(id_)
    h = int.from_bytes(hashlib.sha512(r + k.public + message).digest(), "little") % L
    lhs = crypto_scalarmult_ed25519_base_noclamp(s_plus_l)
    rhs = crypto_core_ed25519_add(
        r, crypto_scalarmult_ed25519_noclamp(h.to_bytes(32, "little"), k.public)
    )
    assert lhs == rhs == crypto_scalarmult_ed25519_base_noclamp(sig[32:])
    # but strict verification refuses it
    assert keys.verify(k.public, ENTRY, id_, sig) is True
    assert keys.verify(k.public, ENTRY, id_, forged) is False


@pytest.mark.parametrize("small", SMALL_ORDER, ids=lambda b: b.hex()[:8] + "…" + b.hex()[-2:])
@given(ids)
def test_small_order_key_verifies_nothing(small: bytes, id_: bytes) -> None:
    """With a small-order A and R, ``R = identity, S = 0`` satisfies the
    equation for every message under a lax verifier; strict refuses."""
    for r in SMALL_ORDER:
        assert keys.verify(small, ENTRY, id_, r + bytes(32)) is False


class MixedOrderKey:
    """A mixed-order key ``A' = a·B + T`` (``T`` of order 8) that signs.

    libsodium's verify refuses small-order keys but not mixed-order ones:
    the equation ``S·B = R + h·A'`` holds whenever ``h`` is a multiple of 8
    (then ``h·T`` vanishes), so :meth:`sign` retries the nonce until it is.
    An honest key generator never makes such a key; a lax key check lets it
    in. ``check_public_key`` refuses it (``bad_key``)."""

    def __init__(self, scalar: int = 12345, torsion: bytes = TORSION[2]) -> None:
        self.a = scalar % L
        prime = crypto_scalarmult_ed25519_base_noclamp(self.a.to_bytes(32, "little"))
        self.public = crypto_core_ed25519_add(prime, torsion)

    def sign(self, domain: Domain, id_: bytes) -> bytes:
        message = domain.message(id_)
        for attempt in itertools.count():
            seed = hashlib.sha512(b"nonce" + attempt.to_bytes(4, "little") + message).digest()
            r = int.from_bytes(seed, "little") % L
            big_r = crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))
            h = int.from_bytes(hashlib.sha512(big_r + self.public + message).digest(), "little")
            h %= L
            if h % 8 == 0:
                return big_r + ((r + h * self.a) % L).to_bytes(32, "little")
        raise AssertionError("unreachable")


def degenerate_signature(domain: Domain, id_: bytes) -> bytes:
    """``R = identity, S = 0``: what a lax verifier accepts from a small-order key."""
    return IDENTITY + bytes(32)


#: Invalid keys that reach a signature check, each with what it signs:
#: every small-order point, and a mixed-order key whose signatures verify.
BAD_SIGNERS: list[tuple[bytes, Callable[[Domain, bytes], bytes]]] = [
    *((small, degenerate_signature) for small in SMALL_ORDER),
    (MixedOrderKey().public, MixedOrderKey().sign),
]
BAD_SIGNER_IDS = [f"small-{i}-{b.hex()[:6]}" for i, b in enumerate(SMALL_ORDER)] + ["mixed-order"]


@given(ids)
def test_a_mixed_order_key_signs_what_verify_accepts(id_: bytes) -> None:
    """The gap ``check_signature`` closes: ``verify`` alone accepts it."""
    k = MixedOrderKey()
    sig = k.sign(ENTRY, id_)
    assert keys.verify(k.public, ENTRY, id_, sig) is True
    assert reason_of(lambda: keys.check_signature(k.public, ENTRY, id_, sig)) is Reason.BAD_KEY


@pytest.mark.parametrize(("public", "signer"), BAD_SIGNERS, ids=BAD_SIGNER_IDS)
def test_check_signature_names_a_bad_key_before_its_signature(
    public: bytes, signer: Callable[[Domain, bytes], bytes]
) -> None:
    id_ = bytes(range(32))
    refused = reason_of(lambda: keys.check_signature(public, VOTE, id_, signer(VOTE, id_), "x"))
    assert refused is Reason.BAD_KEY
    good = key(0)
    assert keys.check_signature(good.public, VOTE, id_, keys.sign(good, VOTE, id_)) is None
    forged = keys.sign(good, VOTE, bytes(32))
    assert reason_of(lambda: keys.check_signature(good.public, VOTE, id_, forged)) is (
        Reason.BAD_SIGNATURE
    )


# -- check_public_key ------------------------------------------------------------------


@given(seeds)
def test_real_keys_are_accepted(seed: bytes) -> None:
    public = SigningKey(seed).public
    assert keys.check_public_key(public) is public


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), bytes(64), None, "x" * 32], ids=repr)
def test_wrong_length_or_type_keys_are_refused(bad: object) -> None:
    assert reason_of(lambda: keys.check_public_key(bad)) is Reason.BAD_KEY


def test_refusal_names_the_key() -> None:
    with pytest.raises(Refused) as info:
        keys.check_public_key(IDENTITY, "validator")
    assert info.value.reason is Reason.BAD_KEY
    assert "validator" in info.value.detail
    good = key(1).public
    with pytest.raises(Refused):
        keys.check_public_key(bytearray(good), "issuer")
    assert keys.check_public_key(good, "issuer") is good


@pytest.mark.parametrize("small", SMALL_ORDER, ids=lambda b: b.hex()[:8] + "…" + b.hex()[-2:])
def test_small_order_points_are_refused(small: bytes) -> None:
    assert reason_of(lambda: keys.check_public_key(small)) is Reason.BAD_KEY


def test_small_order_list_is_the_torsion_subgroup() -> None:
    # closed under addition, and every element's 8th multiple is the
    # identity: the list is the order-8 torsion group it claims to be
    group = set(SMALL_ORDER)
    assert len(group) == 8
    for a in SMALL_ORDER:
        for b in SMALL_ORDER:
            assert crypto_core_ed25519_add(a, b) in group
        multiple = a
        for _ in range(7):
            multiple = crypto_core_ed25519_add(multiple, a)
        assert multiple == IDENTITY


@pytest.mark.parametrize("y_offset", range(2**255 - P))
@pytest.mark.parametrize("sign", [0, 1])
def test_non_canonical_encodings_are_refused(y_offset: int, sign: int) -> None:
    """y >= p: the 19 values p .. 2**255 - 1, with either sign bit."""
    encoded = ((P + y_offset) | (sign << 255)).to_bytes(32, "little")
    assert reason_of(lambda: keys.check_public_key(encoded)) is Reason.BAD_KEY


def test_non_canonical_p_encoding() -> None:
    encoded = bytes.fromhex("ed" + "ff" * 30 + "7f")
    assert int.from_bytes(encoded, "little") == P
    assert reason_of(lambda: keys.check_public_key(encoded)) is Reason.BAD_KEY


@pytest.mark.parametrize("torsion", TORSION, ids=lambda b: b.hex()[:8] + "…" + b.hex()[-2:])
@given(seeds)
def test_mixed_order_points_are_refused(torsion: bytes, seed: bytes) -> None:
    public = SigningKey(seed).public
    mixed = crypto_core_ed25519_add(public, torsion)
    assert mixed != public
    assert crypto_core_ed25519_sub(mixed, torsion) == public  # a genuine curve point
    assert keys.check_public_key(public) is public
    assert reason_of(lambda: keys.check_public_key(mixed)) is Reason.BAD_KEY


@given(st.binary(min_size=32, max_size=32))
def test_random_bytes_are_a_key_or_bad_key(raw: bytes) -> None:
    try:
        accepted = keys.check_public_key(raw)
    except Refused as exc:
        assert exc.reason is Reason.BAD_KEY
        assert reason_of(lambda: did_decode(did_encode(raw))) is Reason.BAD_KEY
    else:
        assert accepted == raw
        assert did_decode(did_encode(raw)) == raw


# -- did:key ---------------------------------------------------------------------------


def test_did_of_the_seed_zero_key() -> None:
    k = SigningKey(SEED0)
    assert k.did.startswith("did:key:z6Mk")
    assert k.did == W3C_SEED0_DID
    assert did_decode(W3C_SEED0_DID) == k.public == W3C_SEED0_PUBLIC
    assert key(0).did.startswith("did:key:z6Mk")


@pytest.mark.parametrize("did", W3C_DIDS)
def test_w3c_vectors_round_trip(did: str) -> None:
    public = did_decode(did)
    assert len(public) == 32
    assert did_encode(public) == did
    assert keys.check_public_key(public) is public


@given(seeds)
def test_did_round_trip(seed: bytes) -> None:
    public = SigningKey(seed).public
    did = did_encode(public)
    assert did.startswith("did:key:z6Mk")
    assert did == "did:key:z" + b58(b"\xed\x01" + public)  # independent base58
    assert did_decode(did) == public
    assert did_decode(did, check=False) == public
    assert len(did) <= 64


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), bytearray(32), None])
def test_did_encode_requires_32_bytes(bad: object) -> None:
    with pytest.raises(ValueError, match="public key is 32 bytes"):
        did_encode(bad)  # type: ignore[arg-type]


GOOD_DID = W3C_SEED0_DID
GOOD_TAIL = GOOD_DID.removeprefix("did:key:z")

BAD_DIDS = {
    "empty": "",
    "no method": GOOD_TAIL,
    "did:web": "did:web:example.com",
    "multibase base16 (f)": "did:key:f" + (b"\xed\x01" + W3C_SEED0_PUBLIC).hex(),
    "multibase base64 (m)": "did:key:m"
    + base64.b64encode(b"\xed\x01" + W3C_SEED0_PUBLIC).decode().rstrip("="),
    "upper-case Z": "did:key:Z" + GOOD_TAIL,
    "upper-case method": "DID:KEY:z" + GOOD_TAIL,
    "leading space": " " + GOOD_DID,
    "trailing space": GOOD_DID + " ",
    "trailing newline": GOOD_DID + "\n",
    "prefix only": "did:key:z",
    "secp256k1 (0xe701)": "did:key:z" + b58(b"\xe7\x01\x02" + bytes(range(32))),
    "x25519 (0xec01)": "did:key:z" + b58(b"\xec\x01" + W3C_SEED0_PUBLIC),
    "p-256 (0x8024)": "did:key:z" + b58(b"\x80\x24\x03" + bytes(range(32))),
    "ed25519 prefix without 01": "did:key:z" + b58(b"\xed\x00" + W3C_SEED0_PUBLIC),
    "bad base58 char 0": "did:key:z6Mk0" + GOOD_TAIL[4:],
    "bad base58 char O": "did:key:z6MkO" + GOOD_TAIL[4:],
    "bad base58 char I": "did:key:z6MkI" + GOOD_TAIL[4:],
    "bad base58 char l": "did:key:z6Mkl" + GOOD_TAIL[4:],
    "bad base58 char +": "did:key:z6Mk+" + GOOD_TAIL[4:],
    "non-ascii digit": "did:key:z6Mk٣" + GOOD_TAIL[4:],
    "31-byte key": "did:key:z" + b58(b"\xed\x01" + W3C_SEED0_PUBLIC[:31]),
    "33-byte key": "did:key:z" + b58(b"\xed\x01" + W3C_SEED0_PUBLIC + b"\x00"),
    "no key": "did:key:z" + b58(b"\xed\x01"),
    "leading 1": "did:key:z1" + GOOD_TAIL,
    "leading 11": "did:key:z11" + GOOD_TAIL,
    "one char dropped": GOOD_DID[:-1],
    "over-long (65 chars)": GOOD_DID + "1" * (65 - len(GOOD_DID)),
    "over-long (10k chars)": "did:key:z6Mk" + "2" * 10_000,
}


@pytest.mark.parametrize("did", BAD_DIDS.values(), ids=BAD_DIDS.keys())
def test_bad_dids_are_refused(did: str) -> None:
    assert reason_of(lambda: did_decode(did)) is Reason.BAD_KEY
    assert reason_of(lambda: did_decode(did, check=False)) is Reason.BAD_KEY


@pytest.mark.parametrize("bad", [None, b"did:key:z6Mk", 5, ["did:key:z"]], ids=repr)
def test_non_str_dids_are_refused(bad: object) -> None:
    assert reason_of(lambda: did_decode(bad)) is Reason.BAD_KEY  # type: ignore[arg-type]


def test_bad_did_cases_are_near_misses() -> None:
    # the refusals above are not accidents of a broken base: nearby strings work
    assert did_decode(GOOD_DID) == W3C_SEED0_PUBLIC
    assert did_decode("did:key:z" + b58(b"\xed\x01" + W3C_SEED0_PUBLIC)) == W3C_SEED0_PUBLIC
    assert len(GOOD_DID) < 65


@pytest.mark.parametrize("small", SMALL_ORDER, ids=lambda b: b.hex()[:8] + "…" + b.hex()[-2:])
def test_small_order_key_inside_a_did(small: bytes) -> None:
    did = did_encode(small)
    assert did.startswith("did:key:z6Mk")
    assert reason_of(lambda: did_decode(did)) is Reason.BAD_KEY
    assert reason_of(lambda: did_decode(did, check=True)) is Reason.BAD_KEY
    assert did_decode(did, check=False) == small


@given(seeds, st.sampled_from(TORSION))
def test_mixed_order_key_inside_a_did(seed: bytes, torsion: bytes) -> None:
    mixed = crypto_core_ed25519_add(SigningKey(seed).public, torsion)
    did = did_encode(mixed)
    assert reason_of(lambda: did_decode(did)) is Reason.BAD_KEY
    assert did_decode(did, check=False) == mixed


# -- domains ---------------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_ids_differ_across_domains(data: bytes) -> None:
    computed = [d.id(data) for d in DOMAINS]
    assert len(set(computed)) == len(DOMAINS)
    for d, id_ in zip(DOMAINS, computed, strict=True):
        assert len(id_) == ID_SIZE
        prefix = f"mycelia/{d.what}/{d.version}\0".encode()
        assert id_ == hashlib.blake2b(prefix + data, digest_size=32).digest()


def test_domain_prefixes() -> None:
    assert ENTRY.id_prefix == b"mycelia/entry/1\x00"
    assert ENTRY.sig_prefix == b"mycelia/sig/entry/1\x00"
    assert VOTE.sig_prefix == b"mycelia/sig/vote/1\x00"
    assert GENESIS.id_prefix == b"mycelia/genesis/1\x00"
    assert RESOURCE.id_prefix == b"mycelia/resource/1\x00"
    prefixes = [d.id_prefix for d in DOMAINS] + [d.sig_prefix for d in DOMAINS]
    assert len(set(prefixes)) == len(prefixes)


@given(ids)
def test_signature_messages_differ_across_domains(id_: bytes) -> None:
    messages = [d.message(id_) for d in DOMAINS]
    assert len(set(messages)) == len(DOMAINS)
    for d, m in zip(DOMAINS, messages, strict=True):
        assert m == b"mycelia/sig/" + d.what.encode() + b"/1\x00" + id_


@given(st.binary(max_size=100))
def test_versions_separate_ids(data: bytes) -> None:
    assert Domain("entry", 2).id(data) != ENTRY.id(data)
    assert Domain("entry", 1).id(data) == ENTRY.id(data)


@pytest.mark.parametrize("n", [0, 1, 31, 33, 64])
@pytest.mark.parametrize("domain", DOMAINS, ids=lambda d: d.what)
def test_message_rejects_non_32_byte_ids(domain: Domain, n: int) -> None:
    with pytest.raises(ValueError, match="an id is 32 bytes"):
        domain.message(bytes(n))
    assert domain.message(bytes(32)).endswith(bytes(32))


def test_sign_rejects_non_32_byte_ids() -> None:
    with pytest.raises(ValueError, match="an id is 32 bytes"):
        keys.sign(key(0), ENTRY, bytes(31))


@pytest.mark.parametrize("bad_id", [None, 7, "a" * 32, bytearray(32)])
def test_verify_returns_false_for_an_id_that_is_not_bytes(bad_id: object) -> None:
    k = SigningKey(bytes(32))
    sig = keys.sign(k, ENTRY, bytes(32))
    assert keys.verify(k.public, ENTRY, bytes(32), sig) is True
    assert keys.verify(k.public, ENTRY, bad_id, sig) is False  # type: ignore[arg-type]
