"""Economy genesis rules (economy.py, DESIGN §4): what makes a genesis and
its validator signatures valid, and the exact reason each broken one is
refused with.

A rule is checked on every path a genesis takes into an :class:`Economy`:
``Genesis.from_wire`` (a decoded wire list), ``Economy.from_genesis`` (a
genesis built in code) and ``Economy.from_signed`` (signed by all of its
validators, so only the rule can be at fault).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from mycelia.protocol import Economy, Genesis, Reason, Refused, SignedGenesis, codec
from mycelia.protocol.economy import IssuedPolicy, MutualCreditPolicy, Validator
from mycelia.protocol.quorum import make_bitmap
from mycelia.protocol.schema import INT64_MAX
from mycelia.testing.economies import genesis, key, sign_genesis, validator_keys

ALL_VK = validator_keys(8)
VK = ALL_VK[:4]
STEWARD = key(10, "steward")
ISSUERS = [(key(11, "issuer"), 5_000), (key(12, "issuer"), 3_000)]
OUTSIDER = key(99, "validator")
SMALL_ORDER = bytes([1]) + bytes(31)  # the identity point: small order


def refused(fn: Callable[[], object]) -> Refused:
    with pytest.raises(Refused) as info:
        fn()
    return info.value


def refused_everywhere(g: Genesis) -> Reason:
    """The reason ``g`` is refused with, the same on all three paths (signed
    by every validator it names)."""
    named = {v.key for v in g.validators}
    signers = [k for k in ALL_VK if k.public in named]
    wire = codec.decode(g.encode())
    reasons = {
        refused(lambda: Genesis.from_wire(wire)).reason,
        refused(lambda: Genesis.decode(g.encode())).reason,
        refused(lambda: Economy.from_genesis(g)).reason,
        refused(lambda: Economy.from_signed(sign_genesis(g, signers))).reason,
    }
    assert len(reasons) == 1, reasons
    return reasons.pop()


# -- valid geneses --------------------------------------------------------------------


def test_mutual_credit_genesis() -> None:
    g = genesis(validators=VK, stewards=[STEWARD], default_limit=500)
    econ = Economy.from_signed(sign_genesis(g, VK))
    assert econ.id == g.id
    assert econ.genesis == g
    assert econ.kind == "mutual_credit"
    assert econ.membership == "open"
    assert econ.default_limit == 500
    assert econ.validators == tuple(k.public for k in VK)
    assert econ.weights == (1, 1, 1, 1)
    assert econ.quorum == 3
    assert econ.epoch == 0
    assert econ.index == {k.public: i for i, k in enumerate(VK)}
    assert econ.stewards == frozenset({STEWARD.public})
    assert econ.issuers == {}
    assert econ.is_member_by_policy(key(1).public)


def test_issued_genesis() -> None:
    g = genesis(
        kind="issued", membership="approved", validators=VK, stewards=[STEWARD], issuers=ISSUERS
    )
    econ = Economy.from_signed(sign_genesis(g, VK[:3]))
    assert econ.id == g.id
    assert econ.kind == "issued"
    assert econ.membership == "approved"
    assert econ.default_limit == 0
    assert econ.issuers == {k.public: cap for k, cap in ISSUERS}
    assert econ.is_member_by_policy(STEWARD.public)
    assert econ.is_member_by_policy(ISSUERS[0][0].public)
    assert not econ.is_member_by_policy(key(1).public)


@pytest.mark.parametrize("kind", ["mutual_credit", "issued"])
def test_economy_id_is_the_genesis_id_and_stable(kind: str) -> None:
    def build(nonce: bytes = b"") -> Genesis:
        return genesis(kind=kind, validators=VK, issuers=ISSUERS, nonce=nonce)

    g = build()
    econ = Economy.from_signed(sign_genesis(g, VK))
    assert len(econ.id) == 32
    assert econ.id == g.id == build().id  # rebuilt from scratch: the same id
    # which quorum signed, and in which order, does not change the economy
    assert Economy.from_signed(sign_genesis(g, VK[1:])).id == econ.id
    assert sign_genesis(g, reversed(VK)) == sign_genesis(g, VK)
    assert Economy.from_genesis(g).id == econ.id
    assert Genesis.decode(g.encode()) == g
    assert Genesis.decode(g.encode()).id == econ.id
    assert g.checked() == g
    # any field change is another economy
    assert build(b"x").id != g.id
    assert dataclasses.replace(g, ts_ms=g.ts_ms + 1).id != g.id
    assert dataclasses.replace(g, quorum=4).id != g.id


def test_signed_genesis_round_trip() -> None:
    g = genesis(kind="issued", validators=VK, issuers=ISSUERS, stewards=[STEWARD])
    signed = sign_genesis(g, [VK[3], VK[0], VK[2]])
    assert signed.bitmap == bytes([0b1101])
    data = signed.encode()
    decoded = SignedGenesis.decode(data)
    assert decoded == signed
    assert decoded.encode() == data
    assert Economy.from_signed(decoded).id == g.id
    for cut in range(len(data)):
        assert refused(lambda c=cut: SignedGenesis.decode(data[:c])).reason is (
            Reason.NON_CANONICAL
        )


# -- signatures -----------------------------------------------------------------------


def test_signatures_short_of_quorum() -> None:
    g = genesis(validators=VK)
    for signers in ([], VK[:1], VK[:2], VK[2:]):
        bad = refused(lambda s=signers: Economy.from_signed(sign_genesis(g, s)))
        assert bad.reason is Reason.BAD_GENESIS
        assert "quorum_not_reached" in bad.detail
    assert Economy.from_signed(sign_genesis(g, VK[1:])).quorum == 3


def test_signatures_short_of_quorum_with_unequal_weights() -> None:
    g = genesis(validators=VK, weights=[5, 1, 1, 1])
    assert g.quorum == 6
    bad = refused(lambda: Economy.from_signed(sign_genesis(g, VK[1:])))
    assert bad.reason is Reason.BAD_GENESIS
    assert refused(lambda: Economy.from_signed(sign_genesis(g, VK[:1]))).reason is (
        Reason.BAD_GENESIS
    )
    assert Economy.from_signed(sign_genesis(g, [VK[0], VK[3]])).id == g.id


def test_signature_from_a_wrong_key() -> None:
    g = genesis(validators=VK)
    sigs = {k.public: g.sign(k) for k in VK[:3]}
    sigs[VK[2].public] = g.sign(OUTSIDER)  # filed under validator 2
    bad = refused(lambda: Economy.from_signed(SignedGenesis.assemble(g, sigs)))
    assert bad.reason is Reason.BAD_GENESIS
    assert "bad_signature" in bad.detail


def test_signature_over_another_genesis() -> None:
    g, other = genesis(validators=VK), genesis(validators=VK, nonce=b"other")
    sigs = {k.public: g.sign(k) for k in VK[:3]}
    sigs[VK[1].public] = other.sign(VK[1])
    bad = refused(lambda: Economy.from_signed(SignedGenesis.assemble(g, sigs)))
    assert bad.reason is Reason.BAD_GENESIS
    assert "bad_signature" in bad.detail


def test_one_signature_counted_for_two_validators() -> None:
    g = genesis(validators=VK)
    s0, s1 = g.sign(VK[0]), g.sign(VK[1])
    dup = SignedGenesis(g, make_bitmap([0, 1, 2], 4), (s0, s1, s1))
    bad = refused(lambda: Economy.from_signed(dup))
    assert bad.reason is Reason.BAD_GENESIS
    assert "bad_signature" in bad.detail


@pytest.mark.parametrize(
    ("bitmap", "count"),
    [
        (make_bitmap([0, 1, 2, 3], 4), 3),
        (make_bitmap([0, 1, 2], 4), 4),
        (b"", 3),
        (b"\x07\x00", 3),
        (bytes([0b1000_0111]), 4),
    ],
)
def test_signer_bitmap_lies(bitmap: bytes, count: int) -> None:
    g = genesis(validators=VK)
    sigs = tuple(g.sign(k) for k in VK[:count])
    bad = refused(lambda: Economy.from_signed(SignedGenesis(g, bitmap, sigs)))
    assert bad.reason is Reason.BAD_GENESIS
    assert "bad_bitmap" in bad.detail


def test_assemble_refuses_a_non_validator_signature() -> None:
    g = genesis(validators=VK)
    sigs = {k.public: g.sign(k) for k in VK}
    sigs[OUTSIDER.public] = g.sign(OUTSIDER)
    assert refused(lambda: SignedGenesis.assemble(g, sigs)).reason is Reason.NOT_VALIDATOR
    assert refused(lambda: sign_genesis(g, [OUTSIDER])).reason is Reason.NOT_VALIDATOR


# -- the quorum rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "quorum", "ok"),
    [
        ([1, 1, 1, 1], 2, False),  # 6 > 8 is false: two disjoint quorums
        ([1, 1, 1, 1], 3, True),  # 9 > 8
        ([1, 1, 1, 1], 4, True),  # all of them
        ([1, 1, 1, 1], 5, False),  # more than the total: never reachable
        ([1, 1, 1], 2, False),  # 6 > 6 is false: exactly two thirds is not enough
        ([1, 1, 1], 3, True),
        ([1] * 6, 4, False),  # 12 > 12 is false
        ([1] * 6, 5, True),
        ([5, 1, 1, 1], 5, False),  # 15 > 16 is false
        ([5, 1, 1, 1], 6, True),
        ([5, 1, 1, 1], 8, True),
        ([5, 1, 1, 1], 9, False),
        ([1], 1, True),  # a single validator is its own quorum
        ([1 << 32] * 3, (1 << 33) + 1, True),  # the largest weights
    ],
)
def test_quorum_must_exceed_two_thirds_and_not_the_total(
    weights: list[int], quorum: int, ok: bool
) -> None:
    vk = validator_keys(len(weights))
    g = genesis(validators=vk, weights=weights, quorum=quorum)
    if ok:
        econ = Economy.from_signed(sign_genesis(g, vk))
        assert econ.quorum == quorum
        assert econ.weights == tuple(weights)
    else:
        assert refused_everywhere(g) is Reason.BAD_GENESIS


# -- other rules ----------------------------------------------------------------------


def _with_policy(g: Genesis, **changes: Any) -> Genesis:
    return dataclasses.replace(g, policy=dataclasses.replace(g.policy, **changes))


BAD_GENESES: list[Any] = [
    pytest.param(
        lambda: genesis(validators=[VK[0], VK[1], VK[0], VK[2]]), id="duplicate-validator"
    ),
    pytest.param(lambda: genesis(validators=VK, membership="approved"), id="approved-no-steward"),
    pytest.param(
        lambda: genesis(kind="issued", validators=VK, membership="approved", issuers=ISSUERS),
        id="issued-approved-no-steward",
    ),
    pytest.param(
        lambda: genesis(
            kind="issued",
            validators=VK,
            issuers=[(ISSUERS[0][0], 1 << 62), (ISSUERS[1][0], 1 << 62)],
        ),
        id="issuer-caps-sum-past-int64",
    ),
    pytest.param(
        lambda: genesis(kind="issued", validators=VK, issuers=[ISSUERS[0], (ISSUERS[0][0], 1)]),
        id="duplicate-issuer",
    ),
    pytest.param(
        lambda: genesis(validators=VK, stewards=[STEWARD, STEWARD]), id="duplicate-steward"
    ),
    pytest.param(lambda: dataclasses.replace(genesis(validators=VK), kind="lottery"), id="kind"),
    pytest.param(
        lambda: _with_policy(genesis(validators=VK), membership="invite"), id="membership"
    ),
    pytest.param(
        lambda: _with_policy(genesis(validators=VK), membership=""), id="empty-membership"
    ),
]


@pytest.mark.parametrize("build", BAD_GENESES)
def test_rule_breaking_genesis_is_bad_genesis(build: Callable[[], Genesis]) -> None:
    assert refused_everywhere(build()) is Reason.BAD_GENESIS


def test_issuer_caps_may_sum_to_exactly_int64_max() -> None:
    g = genesis(
        kind="issued",
        validators=VK,
        issuers=[(ISSUERS[0][0], 1 << 62), (ISSUERS[1][0], (1 << 62) - 1)],
    )
    econ = Economy.from_signed(sign_genesis(g, VK))
    assert sum(econ.issuers.values()) == INT64_MAX


@pytest.mark.parametrize(
    ("changes", "ok"),
    [
        ({"decimals": 18}, True),
        ({"decimals": 0}, True),
        ({"name": "x" * 64}, True),
        ({"name": "é" * 32}, True),  # 64 bytes of UTF-8
        ({"symbol": "S" * 12}, True),
        ({"decimals": 19}, False),
        ({"name": ""}, False),
        ({"name": "x" * 65}, False),
        ({"name": "é" * 32 + "x"}, False),  # 33 characters, 65 bytes
        ({"symbol": ""}, False),
        ({"symbol": "S" * 13}, False),
    ],
)
def test_name_symbol_and_decimals_bounds(changes: dict[str, Any], ok: bool) -> None:
    """In range they parse; out of range they are refused as ``malformed``
    (schema bounds, like every other field bound). See the report: the
    economy docstring lists these among the genesis *rules*."""
    g = dataclasses.replace(genesis(validators=VK), **changes)
    if ok:
        assert Economy.from_signed(sign_genesis(g, VK)).id == g.id
    else:
        assert refused_everywhere(g) is Reason.MALFORMED


def test_issued_economy_without_issuers_is_refused() -> None:
    """Refused as ``malformed`` today (the issuers list has min length 1).
    See the report: ``approved`` with no stewards is ``bad_genesis``."""
    g = genesis(kind="issued", validators=VK, issuers=[])
    assert isinstance(g.policy, IssuedPolicy)
    assert g.policy.issuers == ()
    assert refused_everywhere(g) is Reason.MALFORMED


def test_small_order_keys_are_bad_key() -> None:
    base = genesis(validators=VK, stewards=[STEWARD])
    small_validator = dataclasses.replace(
        base, validators=(*base.validators[:3], Validator(SMALL_ORDER, 1))
    )
    small_steward = _with_policy(base, stewards=(SMALL_ORDER,))
    small_issuer = genesis(kind="issued", validators=VK, issuers=ISSUERS)
    small_issuer = _with_policy(small_issuer, issuers=((SMALL_ORDER, 10),))
    for g in (small_validator, small_steward, small_issuer):
        assert refused(lambda g=g: Economy.from_genesis(g)).reason is Reason.BAD_KEY
        assert refused(lambda g=g: Genesis.from_wire(g.to_wire())).reason is Reason.BAD_KEY
    # from_signed checks the rules before signatures: bad_key, not bad_genesis
    signed = SignedGenesis(small_validator, make_bitmap(range(3), 4), ())
    assert refused(lambda: Economy.from_signed(signed)).reason is Reason.BAD_KEY


def test_policies_keep_their_kind_fields() -> None:
    mc = genesis(validators=VK, default_limit=0)
    assert isinstance(mc.policy, MutualCreditPolicy)
    assert Economy.from_genesis(mc).default_limit == 0
    wire = mc.to_wire()
    wire[6][2] = -1  # a negative default limit
    assert refused(lambda: Genesis.from_wire(wire)).reason is Reason.MALFORMED


def test_zero_and_oversized_weights_are_refused() -> None:
    for weight in (0, (1 << 32) + 1):
        g = dataclasses.replace(
            genesis(validators=VK), validators=(Validator(VK[0].public, weight),)
        )
        assert refused(lambda g=g: Economy.from_genesis(g)).reason is Reason.MALFORMED
