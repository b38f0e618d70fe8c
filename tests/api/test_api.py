"""The API layer (mycelia.api): every result declared once. The OpenRPC
document's schemas are the types' schemas, the server binds exactly the
declared methods, every type survives a JSON round trip, and every entry
kind of the protocol has its JSON form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mycelia.api import bodies, scalars, types
from mycelia.api.codecs import AnyJson, Codec, Const, Decoded, ListOf, Nullable, RecordCodec
from mycelia.api.encoding import ParamError
from mycelia.api.methods import COMPONENTS, METHODS, openrpc_document
from mycelia.protocol import (
    Account,
    Burn,
    Certificate,
    CreditSet,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    ImpactClaim,
    MemberAdmit,
    Metric,
    Mint,
    SensorAttest,
    SignedGenesis,
    SigningKey,
    Transfer,
    Validator,
    Vote,
    assemble,
    smallest_quorum,
)
from mycelia.protocol.channels import (
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    Release,
    ReleaseTerms,
)
from mycelia.protocol.context import Kind
from mycelia.protocol.economy import MutualCreditPolicy
from mycelia.protocol.gov_bodies import (
    CommitteeSet,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    SealRef,
    Tally,
)
from mycelia.protocol.kinds import KINDS
from mycelia.protocol.offers import SignedOffer
from mycelia.protocol.sensors import (
    AttestedDevice,
    DeviceRegister,
    Ed25519DeviceKey,
    Reading,
    build_attestation,
)
from mycelia.protocol.state import ZERO_ID
from tests.protocol.compute_world import signed_offer

# -- a few real protocol values (certificates, a genesis, fork evidence) ----------------------


def _key(label: str) -> SigningKey:
    return SigningKey(blake2b(label.encode(), digest_size=32).digest())


VALIDATORS = [_key(f"api/validator/{i}") for i in range(4)]
ALICE, BOB = _key("api/alice"), _key("api/bob")
T0 = 1_700_000_000_000
GENESIS = Genesis(
    name="API Hours",
    symbol="APH",
    decimals=2,
    kind="mutual_credit",
    policy=MutualCreditPolicy("open", (ALICE.public,), 1_000),
    validators=tuple(Validator(v.public, 1) for v in VALIDATORS),
    quorum=smallest_quorum(4),
    ts_ms=T0,
    nonce=b"api",
)
SIGNED = SignedGenesis.assemble(GENESIS, {v.public: GENESIS.sign(v) for v in VALIDATORS})
ECONOMY = Economy.from_signed(SIGNED)
DEVICE = Ed25519DeviceKey(blake2b(b"api/device", digest_size=32).digest())


def _certify(body: Any, seq: int = 1, prev: bytes = ZERO_ID, signers: range = range(3)) -> Any:
    signed = Entry(ECONOMY.id, ALICE.public, seq, prev, T0 + seq, body).sign(ALICE)
    votes = [Vote.make(VALIDATORS[i], ECONOMY.id, ECONOMY.epoch, signed.id) for i in signers]
    return assemble(ECONOMY, signed, votes)


def _sensor_bodies() -> list[Any]:
    register = DeviceRegister.make(
        DEVICE, ECONOMY.id, ALICE.public, "solar-meter", BOB.public, [Metric("e", "Wh", 0, 0, 99)]
    )
    readings = [Reading(ECONOMY.id, DEVICE.device, c, T0, "e", 7, 0).sign(DEVICE) for c in (1, 2)]
    attest, _, _ = build_attestation(readings, {DEVICE.device: b"\x01" * 32})
    claim = ImpactClaim(DEVICE.device, 1, 2, (b"\x02" * 32,), 14)
    return [register, attest, claim]


def _channel_bodies() -> list[Any]:
    channel = b"\x03" * 32
    release = Release(ECONOMY.id, channel, 0).sign(BOB)
    return [
        ChannelOpen(BOB.public, 500, T0 + 60_000, b"\x04" * 32),
        ChannelClose(channel, 20, b"\x05" * 64, ALICE.public, 500),
        ChannelRefund(channel, ReleaseTerms(0, release.signature), BOB.public, 500),
        ChannelOpen(BOB.public, 1, T0),  # no offer: null in JSON
        ChannelRefund(channel, None, BOB.public, 500),  # no release: null
    ]


def _gov_bodies() -> list[Any]:
    policy = PolicySet(
        (
            ("default_limit", 2_000),
            ("gov.participation_bps", 5_000),
            ("membership", "approved"),
            ("stewards", [ALICE.public, BOB.public]),
        )
    )
    committee = CommitteeSet(tuple(Validator(v.public, 2) for v in VALIDATORS), 6)
    p = b"\x03" * 32
    seal = SealRef(1, b"\x03", b"\x04" * 64)
    return [
        GovPropose("policy.set", policy, Method("majority", 12), T0 + 10**9),
        GovPropose("committee.set", committee, Method("consent"), T0 + 10**9),
        GovVote(p, "yes", 3),
        GovDelegate(BOB.public, b"", T0 + 10**9),
        GovDelegate(BOB.public, p, T0),
        GovObject(p),
        GovEnact(p, 2, Tally(4, 1, 0), (b"\x05" * 32, b"\x06" * 32), (seal,)),
        GovEnact(p, 1, Tally()),
    ]


BODIES = [
    Transfer(BOB.public, 5, "lunch"),
    Mint(BOB.public, 1, ""),
    Burn(3),
    MemberAdmit(BOB.public),
    CreditSet(BOB.public, 0),
    *_sensor_bodies(),
    *_channel_bodies(),
    *_gov_bodies(),
]
CERTIFICATES = [_certify(b) for b in BODIES[:3]]
FORK = ForkEvidence.of(
    _certify(Transfer(BOB.public, 1)), _certify(Transfer(BOB.public, 2), signers=range(1, 4))
)


# -- strategies from the codecs: any value a record's fields allow ---------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_POOLS: dict[type, list[Any]] = {
    SignedOffer: [signed_offer()],
    Certificate: CERTIFICATES,
    SignedGenesis: [SIGNED],
    ForkEvidence: [FORK],
    Entry: [c.entry for c in CERTIFICATES],
}


def strategy(codec: Codec) -> st.SearchStrategy[Any]:
    if isinstance(codec, RecordCodec):
        return record(codec.cls)
    if isinstance(codec, ListOf):
        low = codec.min_items or 0
        return st.lists(strategy(codec.inner), min_size=low, max_size=codec.max_items or 3).map(
            tuple
        )
    if isinstance(codec, Nullable):
        return st.none() | strategy(codec.inner)
    if isinstance(codec, Const):
        return st.just(codec.value)
    if isinstance(codec, AnyJson):
        return st.just({"any": ["json"]})
    if isinstance(codec, Decoded):
        return st.sampled_from(_POOLS[codec.cls])
    if isinstance(codec, scalars.Integer | scalars.DecimalString):
        return st.integers(codec.low, codec.high)
    if isinstance(codec, scalars.HexBytes):
        if codec.size is not None:
            return st.binary(min_size=codec.size, max_size=codec.size)
        return st.binary(max_size=min(codec.max_size, 40))
    if isinstance(codec, scalars.Text):
        return _text.filter(lambda t: len(t.encode()) <= codec.max_bytes)
    if isinstance(codec, scalars.Choice):
        return st.sampled_from(codec.choices)
    if isinstance(codec, scalars.Boolean):
        return st.booleans()
    if isinstance(codec, scalars.DidKey):
        return st.sampled_from([k.did for k in (ALICE, BOB, *VALIDATORS)])
    raise AssertionError(f"no strategy for {codec!r}")


def record(cls: type[Any]) -> st.SearchStrategy[Any]:
    fields = {f.name: strategy(f.member.codec) for f in cls.fields() if f.name != "body"}
    if issubclass(cls, types.EntryView):  # the body goes with its kind
        body = st.sampled_from(BODIES)
        return st.builds(lambda b, **kw: cls(**{**kw, "kind": b.kind, "body": b}), body, **fields)
    return st.builds(cls, **fields)


#: Every record the API declares.
RECORDS = sorted(
    {
        t
        for t in vars(types).values()
        if isinstance(t, type) and issubclass(t, types.Record) and t is not types.Record
    },
    key=lambda t: t.__name__,
)


def test_every_record_is_covered() -> None:
    names = {t.__name__ for t in RECORDS}
    assert {"EntryView", "CertifiedEntry", "EntryStatus", "AccountInfo", "EconomyView"} <= names
    assert {"Fork", "NodeInfo", "Claimable", "HostedDevice", "ReadingsPage"} <= names
    assert len(RECORDS) >= 25


@pytest.mark.parametrize("cls", RECORDS, ids=lambda t: t.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_record_survives_a_json_round_trip(cls: type[Any], data: st.DataObject) -> None:
    value = data.draw(record(cls))
    encoded = value.to_json()
    assert json.loads(json.dumps(encoded)) == encoded  # plain JSON
    assert cls.from_json(json.loads(json.dumps(encoded))) == value


@pytest.mark.parametrize("name", sorted(METHODS))
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_method_result_survives_a_json_round_trip(name: str, data: st.DataObject) -> None:
    codec = METHODS[name].result
    value = data.draw(strategy(codec))
    assert codec.load(json.loads(json.dumps(codec.dump(value))), "") == value


# -- the document is made from the types ----------------------------------------------------------


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return document["components"]["schemas"][ref.removeprefix("#/components/schemas/")]


def _result_records(codec: Codec) -> list[tuple[type[Any], dict[str, Any] | None]]:
    """(record type, the schema the codec shows for it) inside a result codec."""
    if isinstance(codec, RecordCodec):
        return [(codec.cls, codec.schema)]
    if isinstance(codec, ListOf):
        return _result_records(codec.inner)
    return []


def test_the_documents_result_schemas_are_the_api_types_schemas() -> None:
    document = json.loads(json.dumps(openrpc_document("test")))
    by_name = {m["name"]: m for m in document["methods"]}
    assert set(by_name) == set(METHODS)
    typed = 0
    for name, spec in METHODS.items():
        shown = by_name[name]["result"]["schema"]
        assert shown == spec.result.schema, name
        for cls, _ in _result_records(spec.result):
            typed += 1
            schema = shown["items"] if isinstance(spec.result, ListOf) else shown
            assert _resolve(schema, document) == cls.schema(), name
            if cls.COMPONENT:
                assert schema == {"$ref": f"#/components/schemas/{cls.COMPONENT}"}
        assert [p["name"] for p in by_name[name]["params"]] == [p.name for p in spec.params]
    assert typed >= 17  # every method but subscribe, unsubscribe and rpc.discover
    for cls in RECORDS:
        if cls.COMPONENT:
            assert document["components"]["schemas"][cls.COMPONENT] == cls.schema()
    # A record's schema names exactly the members its JSON has.
    for cls in RECORDS:
        assert list(cls.schema()["properties"]) == [f.json for f in cls.fields()]


def test_every_ref_resolves() -> None:
    text = json.dumps(openrpc_document("test"))
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    for ref in refs:
        if ref.startswith("#/components/schemas/"):
            assert ref.removeprefix("#/components/schemas/") in COMPONENTS, ref


def test_the_server_answers_exactly_the_declared_methods() -> None:
    from mycelia.node.rpc import REGISTRY
    from mycelia.node.rpc.methods import VERSION
    from mycelia.node.rpc.methods import openrpc_document as served

    assert set(REGISTRY.methods) == set(METHODS)
    for name, method in REGISTRY.methods.items():
        assert method.spec is METHODS[name]  # the declaration itself, not a copy
    assert served() == openrpc_document(VERSION)


# -- bodies: one form per kind --------------------------------------------------------------------


def test_every_protocol_kind_has_a_json_form() -> None:
    assert list(bodies.BODIES) == list(KINDS)
    assert COMPONENTS["Kind"] == {"enum": list(KINDS)}
    assert {b.kind for b in BODIES} == set(KINDS)


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b.kind)
def test_bodies_round_trip(body: Any) -> None:
    assert bodies.body_in(body.kind, json.loads(json.dumps(bodies.body_out(body)))) == body


def test_views_are_built_from_the_protocol() -> None:
    cert = CERTIFICATES[0]
    view = types.CertifiedEntry.of_certificate(cert)
    assert view.certificate is cert
    assert view.id == cert.entry_id
    assert view.to_entry() == cert.entry
    assert view.view() == types.EntryView.of(cert.entry)
    economy = types.EconomyView.of(SIGNED, 2, 3)
    assert economy.id == ECONOMY.id
    assert economy.genesis == SIGNED
    assert economy.stewards == (ALICE.did,)
    assert economy.max_channel_ms == ECONOMY.max_channel_ms == 7 * 86_400_000  # the default
    older = {k: v for k, v in economy.to_json().items() if k != "max_channel_ms"}
    assert types.EconomyView.from_json(older) == economy
    fork = types.Fork.of(ECONOMY, FORK)
    assert fork.guilty == (VALIDATORS[1].did, VALIDATORS[2].did)
    assert types.Fork.from_json(fork.to_json()) == fork


def test_reading_is_strict_where_the_contract_is() -> None:
    good = types.AccountInfo.of(ECONOMY, BOB.public, Account()).to_json()
    for change, field in [
        ({"balance": 5}, "balance"),  # amounts are strings
        ({"head": "0x12"}, "head"),
        ({"member": "yes"}, "member"),
        ({"account": "did:key:nope"}, "account"),
    ]:
        with pytest.raises(ParamError) as info:
            types.AccountInfo.from_json({**good, **change})
        assert info.value.field == field
    missing = {k: v for k, v in good.items() if k != "seq"}
    with pytest.raises(ParamError, match="seq: missing"):
        types.AccountInfo.from_json(missing)
    # A member a newer node adds is not an error; one an older node lacks
    # is, unless the record gives it a default.
    assert types.AccountInfo.from_json({**good, "new": 1}) == types.AccountInfo.from_json(good)
    listing = {
        "id": "0x" + ECONOMY.id.hex(),
        "name": "n",
        "symbol": "s",
        "decimals": 0,
        "kind": "issued",
        "quorum": 1,
        "validators": [],
        "certificates": 0,
    }
    assert types.EconomySummary.from_json(listing).forks == 0


def test_an_entry_view_reads_its_body_with_its_kind() -> None:
    view = types.EntryView.of(CERTIFICATES[0].entry).to_json()
    with pytest.raises(ParamError) as info:
        types.EntryView.from_json({**view, "kind": "burn"})  # a transfer's body
    assert info.value.field.startswith("body")
    with pytest.raises(ParamError, match="one of transfer"):
        types.EntryView.from_json({**view, "kind": "nope"})
    assert isinstance(BODIES[5], DeviceRegister)
    assert isinstance(BODIES[6], SensorAttest)
    assert isinstance(BODIES[6].devices[0], AttestedDevice)


def test_channel_bodies_in_json() -> None:
    opening, close, refund, plain, expired = _channel_bodies()
    assert bodies.body_out(plain)["offer"] is None
    assert bodies.body_out(expired)["release"] is None
    assert bodies.body_in("channel.open", {**bodies.body_out(plain), "offer": None}) == plain
    without = {k: v for k, v in bodies.body_out(expired).items() if k != "release"}
    assert bodies.body_in("channel.refund", without) == expired
    good = bodies.body_out(refund)
    release = good["release"]
    for kind, value, field in [
        ("channel.refund", {**good, "release": {**release, "final": "-1"}}, "body.release.final"),
        ("channel.refund", {**good, "release": {**release, "x": 1}}, "body.release.x"),
        ("channel.refund", {**good, "release": {"final": "0"}}, "body.release.signature"),
        ("channel.open", {**bodies.body_out(opening), "offer": "0x12"}, "body.offer"),
        ("channel.open", {**bodies.body_out(opening), "expiry_ms": "5"}, "body.expiry_ms"),
        ("channel.close", {**bodies.body_out(close), "amount": 20}, "body.amount"),
        ("channel.close", {**bodies.body_out(close), "voucher_sig": "0x00"}, "body.voucher_sig"),
    ]:
        with pytest.raises(ParamError) as info:
            bodies.body_in(kind, value)
        assert info.value.field == field, (value, info.value)


# -- a new kind: the protocol's body and rule, and one BodyForm -------------------------------


@dataclass(frozen=True, slots=True)
class _Note:
    """A hypothetical kind: a note to the economy, no effect on balances."""

    kind: ClassVar[str] = "note"
    text: str

    def to_wire(self) -> list[Any]:
        return [self.text]


class _NoteRule(Kind):
    name = "note"

    @staticmethod
    def parse(raw: Any) -> _Note:
        return _Note(*raw)


def test_a_new_kind_is_a_protocol_body_and_one_body_form(monkeypatch: pytest.MonkeyPatch) -> None:
    # What adding a kind takes outside protocol/: one BodyForm in the API.
    monkeypatch.setitem(KINDS, "note", _NoteRule)
    form = bodies.BodyForm(
        "note",
        {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
        frozenset({"text"}),
        frozenset(),
        lambda body: {"text": body.text},
        lambda value, field: _Note(value["text"]),
    )
    monkeypatch.setitem(bodies.BODIES, "note", form)
    assert "note" in bodies.schemas()["Kind"]["enum"]
    assert form.schema in bodies.schemas()["Body"]["oneOf"]
    entry = Entry(ECONOMY.id, ALICE.public, 1, ZERO_ID, T0, _Note("hello"))
    view = types.EntryView.of(entry)
    assert view.to_json()["body"] == {"text": "hello"}
    assert types.EntryView.from_json(view.to_json()) == view
    assert view.to_entry() == entry
    assert view.to_entry().id == entry.id
    # A client verifies it as any other: the view is rebuilt from the entry.
    assert types.EntryView.of(view.to_entry(), view.id) == view
