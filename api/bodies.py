"""Entry bodies in JSON, one :class:`BodyForm` per entry kind: its schema,
how a protocol body is written (``docs/rpc.md``, "Encoding"; the sensor
kinds: ``docs/sensors.md``; the channel kinds: ``docs/compute.md``) and how
it is read back — through the
protocol's own constructors, so a body from JSON is held to exactly the
protocol's schema (an amount of 0 is refused there).

:data:`BODIES` is the one registry: the ``Kind`` enum and the ``Body``
schema of the OpenRPC document are made from it, and :func:`body_in` /
:func:`body_out` dispatch through it. A new entry kind is a protocol body
(``protocol/kinds.py``) and one more ``BodyForm`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from mycelia.api.codecs import Codec, Json, Schema, ref
from mycelia.api.encoding import (
    ParamError,
    amount_in,
    amount_out,
    counter_in,
    did_in,
    did_out,
    hex_in,
    hex_out,
    int64_in,
    int_in,
    str_in,
)
from mycelia.api.scalars import Choice
from mycelia.protocol import (
    Burn,
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    CreditSet,
    MemberAdmit,
    Mint,
    Refused,
    Transfer,
)
from mycelia.protocol.channels import NO_OFFER, ReleaseTerms
from mycelia.protocol.economy import Validator
from mycelia.protocol.gov_bodies import (
    ACTIONS,
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
from mycelia.protocol.sensors import (
    Aggregate,
    AttestedDevice,
    DeviceRegister,
    ImpactClaim,
    Metric,
    SensorAttest,
)

__all__ = [
    "BODIES",
    "BODY",
    "KIND",
    "Body",
    "BodyForm",
    "body_components",
    "body_in",
    "body_out",
    "schemas",
]


class Body(Protocol):
    """A protocol entry body (``protocol/kinds.py``): its class names its kind."""

    kind: ClassVar[str]


B = TypeVar("B", bound=Body)


def _obj(
    required: list[str] | None, optional: dict[str, Json] | None = None, **props: Json
) -> Schema:
    """An object schema: ``props`` (all required when ``required`` is None)
    and ``optional`` ones; no other member."""
    names: list[Json] = list(props if required is None else required)
    return {
        "type": "object",
        "required": names,
        "properties": {**props, **(optional or {})},
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class BodyForm(Generic[B]):
    """One kind's body in JSON. ``schema`` is the body's object schema;
    ``component`` names it in the document's components (it is then
    referred to), else it is written inline in ``Body``."""

    kind: str
    schema: Schema
    #: the members it must have, and those it may
    required: frozenset[str]
    optional: frozenset[str]
    dump: Callable[[B], dict[str, Json]]
    #: ``load(value, field)``: value is an object holding the required
    #: members and no unknown one (checked before)
    load: Callable[[dict[str, object], str], B]
    component: str | None = None

    @property
    def reference(self) -> Schema:
        return ref(self.component) if self.component else self.schema


def _form(
    kind: str,
    schema: Schema,
    dump: Callable[[B], dict[str, Json]],
    load: Callable[[dict[str, object], str], B],
    component: str | None = None,
) -> BodyForm[B]:
    declared = schema["required"]
    properties = schema["properties"]
    # As _obj makes them: a list of names, an object of schemas.
    assert isinstance(declared, list)
    assert isinstance(properties, dict)
    required = frozenset(str(name) for name in declared)
    return BodyForm(kind, schema, required, frozenset(properties) - required, dump, load, component)


# -- the foundation kinds ------------------------------------------------------------------

P = TypeVar("P", Transfer, Mint)
_PAYMENT = _obj(["to", "amount"], to=ref("Did"), amount=ref("Amount"), memo={"type": "string"})


def _payment_out(body: Transfer | Mint) -> dict[str, Json]:
    return {"to": did_out(body.to), "amount": amount_out(body.amount), "memo": body.memo}


def _payment_in(cls: type[P]) -> Callable[[dict[str, object], str], P]:
    def load(value: dict[str, object], field: str) -> P:
        return cls(
            did_in(value["to"], f"{field}.to"),
            amount_in(value["amount"], f"{field}.amount"),
            str_in(value.get("memo", ""), f"{field}.memo"),
        )

    return load


_TRANSFER = _form("transfer", _PAYMENT, _payment_out, _payment_in(Transfer))
_MINT = _form("mint", _PAYMENT, _payment_out, _payment_in(Mint))
_BURN = _form(
    "burn",
    _obj(["amount"], amount=ref("Amount")),
    lambda body: {"amount": amount_out(body.amount)},
    lambda value, field: Burn(amount_in(value["amount"], f"{field}.amount")),
)
_ADMIT = _form(
    "member.admit",
    _obj(["member"], member=ref("Did")),
    lambda body: {"member": did_out(body.member)},
    lambda value, field: MemberAdmit(did_in(value["member"], f"{field}.member")),
)
_CREDIT = _form(
    "credit.set",
    _obj(["member", "limit"], member=ref("Did"), limit=ref("SignedAmount")),
    lambda body: {"member": did_out(body.member), "limit": amount_out(body.limit)},
    lambda value, field: CreditSet(
        did_in(value["member"], f"{field}.member"),
        amount_in(value["limit"], f"{field}.limit", negative=True),
    ),
)


# -- the sensor kinds ------------------------------------------------------------------------------


def _device_register_out(body: DeviceRegister) -> dict[str, Json]:
    return {
        "device": hex_out(body.device),
        "key_type": body.key_type,
        "public_key": hex_out(body.public_key),
        "device_kind": body.device_kind,
        "host": did_out(body.host),
        "metrics": [
            {
                "name": m.name,
                "unit": m.unit,
                "exponent": m.exponent,
                "min": str(m.min),
                "max": str(m.max),
            }
            for m in body.metrics
        ],
        "pop": hex_out(body.pop),
    }


def _sensor_attest_out(body: SensorAttest) -> dict[str, Json]:
    return {
        "root": hex_out(body.root),
        "count": body.count,
        "devices": [
            {
                "device": hex_out(d.device),
                "registration": hex_out(d.registration),
                "first": d.first,
                "last": d.last,
                "count": d.count,
                "aggregates": [
                    {
                        "metric": a.metric,
                        "sum": str(a.sum),
                        "min": str(a.min),
                        "max": str(a.max),
                    }
                    for a in d.aggregates
                ],
            }
            for d in body.devices
        ],
    }


def _impact_claim_out(body: ImpactClaim) -> dict[str, Json]:
    return {
        "device": hex_out(body.device),
        "first_counter": body.first_counter,
        "last_counter": body.last_counter,
        "attestations": [hex_out(a) for a in body.attestations],
        "total": str(body.total),
    }


_METRIC_FIELDS = {"name", "unit", "exponent", "min", "max"}
_ROW_FIELDS = {"device", "registration", "first", "last", "count", "aggregates"}
_AGGREGATE_FIELDS = {"metric", "sum", "min", "max"}


def _fields(
    value: object, field: str, required: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, object]:
    if type(value) is not dict:
        raise ParamError(field, "expected an object")
    for name in required - value.keys():
        raise ParamError(f"{field}.{name}", "missing")
    for name in value.keys() - required - optional:
        raise ParamError(f"{field}.{name}", "unknown field")
    return value


def _list(value: object, field: str, max_len: int) -> list[object]:
    if type(value) is not list:
        raise ParamError(field, "expected an array")
    if len(value) > max_len:
        raise ParamError(field, f"more than {max_len} items")
    return value


def _device_register_in(value: dict[str, object], field: str) -> DeviceRegister:
    metrics = []
    for i, raw in enumerate(_list(value["metrics"], f"{field}.metrics", 16)):
        f = f"{field}.metrics[{i}]"
        m = _fields(raw, f, _METRIC_FIELDS)
        metrics.append(
            Metric(
                str_in(m["name"], f"{f}.name", max_bytes=32),
                str_in(m["unit"], f"{f}.unit", max_bytes=16),
                int_in(m["exponent"], f"{f}.exponent", low=-18, high=18),
                int64_in(m["min"], f"{f}.min"),
                int64_in(m["max"], f"{f}.max"),
            )
        )
    body = DeviceRegister(
        str_in(value["key_type"], f"{field}.key_type", max_bytes=16),
        hex_in(value["public_key"], f"{field}.public_key", max_size=33),
        str_in(value["device_kind"], f"{field}.device_kind", max_bytes=32),
        did_in(value["host"], f"{field}.host"),
        tuple(metrics),
        hex_in(value["pop"], f"{field}.pop", size=64),
    )
    if "device" in value and hex_in(value["device"], f"{field}.device", size=32) != body.device:
        raise ParamError(f"{field}.device", "is not the id of this key (it may be left out)")
    return body


def _sensor_attest_in(value: dict[str, object], field: str) -> SensorAttest:
    rows = []
    for i, raw in enumerate(_list(value["devices"], f"{field}.devices", 16)):
        f = f"{field}.devices[{i}]"
        d = _fields(raw, f, _ROW_FIELDS)
        aggregates = []
        for j, agg in enumerate(_list(d["aggregates"], f"{f}.aggregates", 16)):
            g = f"{f}.aggregates[{j}]"
            a = _fields(agg, g, _AGGREGATE_FIELDS)
            aggregates.append(
                Aggregate(
                    str_in(a["metric"], f"{g}.metric", max_bytes=32),
                    int64_in(a["sum"], f"{g}.sum"),
                    int64_in(a["min"], f"{g}.min"),
                    int64_in(a["max"], f"{g}.max"),
                )
            )
        rows.append(
            AttestedDevice(
                hex_in(d["device"], f"{f}.device", size=32),
                hex_in(d["registration"], f"{f}.registration", size=32),
                counter_in(d["first"], f"{f}.first"),
                counter_in(d["last"], f"{f}.last"),
                int_in(d["count"], f"{f}.count", low=1),
                tuple(aggregates),
            )
        )
    return SensorAttest(
        hex_in(value["root"], f"{field}.root", size=32),
        int_in(value["count"], f"{field}.count", low=1),
        tuple(rows),
    )


def _impact_claim_in(value: dict[str, object], field: str) -> ImpactClaim:
    attestations = _list(value["attestations"], f"{field}.attestations", 16)
    return ImpactClaim(
        hex_in(value["device"], f"{field}.device", size=32),
        counter_in(value["first_counter"], f"{field}.first_counter"),
        counter_in(value["last_counter"], f"{field}.last_counter"),
        tuple(hex_in(a, f"{field}.attestations[{i}]", size=32) for i, a in enumerate(attestations)),
        int64_in(value["total"], f"{field}.total"),
    )


_DEVICE_REGISTER = _form(
    DeviceRegister.kind,
    _obj(
        ["key_type", "public_key", "device_kind", "host", "metrics", "pop"],
        {"device": {**ref("Id"), "description": "the device id (derived from the key)"}},
        key_type={"enum": ["ed25519", "p256"]},
        public_key=ref("Hex"),
        device_kind={"type": "string"},
        host=ref("Did"),
        metrics={
            "type": "array",
            "items": _obj(
                None,
                name={"type": "string"},
                unit={"type": "string"},
                exponent={"type": "integer", "minimum": -18, "maximum": 18},
                min=ref("Int64"),
                max=ref("Int64"),
            ),
        },
        pop={**ref("Hex"), "description": "the device key's proof of possession"},
    ),
    _device_register_out,
    _device_register_in,
    "DeviceRegisterBody",
)
_SENSOR_ATTEST = _form(
    SensorAttest.kind,
    _obj(
        None,
        root=ref("Id"),
        count={"type": "integer", "minimum": 1},
        devices={
            "type": "array",
            "items": _obj(
                None,
                device=ref("Id"),
                registration=ref("Id"),
                first=ref("Counter"),
                last=ref("Counter"),
                count={"type": "integer", "minimum": 1},
                aggregates={
                    "type": "array",
                    "items": _obj(
                        None,
                        metric={"type": "string"},
                        sum=ref("Int64"),
                        min=ref("Int64"),
                        max=ref("Int64"),
                    ),
                },
            ),
        },
    ),
    _sensor_attest_out,
    _sensor_attest_in,
    "SensorAttestBody",
)
_IMPACT_CLAIM = _form(
    ImpactClaim.kind,
    _obj(
        None,
        device=ref("Id"),
        first_counter=ref("Counter"),
        last_counter=ref("Counter"),
        attestations={"type": "array", "items": ref("Id")},
        total=ref("Int64"),
    ),
    _impact_claim_out,
    _impact_claim_in,
    "ImpactClaimBody",
)

# -- the compute channel kinds (docs/compute.md) -----------------------------------------------

_NATURAL_AMOUNT = {
    "type": "string",
    "pattern": "^(0|[1-9][0-9]{0,18})$",
    "description": "an amount as a decimal string, may be 0",
}
_RELEASE_FIELDS = {"final", "signature"}


def _channel_open_out(body: ChannelOpen) -> dict[str, Json]:
    return {
        "provider": did_out(body.provider),
        "amount": amount_out(body.amount),
        "expiry_ms": body.expiry_ms,
        "offer": hex_out(body.offer) if body.offer else None,
    }


def _channel_open_in(value: dict[str, Any], field: str) -> ChannelOpen:
    offer = value.get("offer")
    return ChannelOpen(
        did_in(value["provider"], f"{field}.provider"),
        amount_in(value["amount"], f"{field}.amount"),
        int_in(value["expiry_ms"], f"{field}.expiry_ms"),
        NO_OFFER if offer is None else hex_in(offer, f"{field}.offer", size=32),
    )


def _channel_close_out(body: ChannelClose) -> dict[str, Json]:
    return {
        "channel": hex_out(body.channel),
        "amount": amount_out(body.amount),
        "voucher_sig": hex_out(body.voucher_sig),
        "consumer": did_out(body.consumer),
        "escrow": amount_out(body.escrow),
    }


def _channel_close_in(value: dict[str, Any], field: str) -> ChannelClose:
    return ChannelClose(
        hex_in(value["channel"], f"{field}.channel", size=32),
        amount_in(value["amount"], f"{field}.amount"),
        hex_in(value["voucher_sig"], f"{field}.voucher_sig", size=64),
        did_in(value["consumer"], f"{field}.consumer"),
        amount_in(value["escrow"], f"{field}.escrow"),
    )


def _channel_refund_out(body: ChannelRefund) -> dict[str, Json]:
    release = body.release
    return {
        "channel": hex_out(body.channel),
        "release": None
        if release is None
        else {"final": amount_out(release.final), "signature": hex_out(release.signature)},
        "provider": did_out(body.provider),
        "escrow": amount_out(body.escrow),
    }


def _channel_refund_in(value: dict[str, Any], field: str) -> ChannelRefund:
    raw = value.get("release")
    release = None
    if raw is not None:
        r = _fields(raw, f"{field}.release", _RELEASE_FIELDS)
        final = amount_in(r["final"], f"{field}.release.final", negative=True)
        if final < 0:
            raise ParamError(f"{field}.release.final", "must be at least 0")
        release = ReleaseTerms(final, hex_in(r["signature"], f"{field}.release.signature", size=64))
    return ChannelRefund(
        hex_in(value["channel"], f"{field}.channel", size=32),
        release,
        did_in(value["provider"], f"{field}.provider"),
        amount_in(value["escrow"], f"{field}.escrow"),
    )


_CHANNEL_OPEN = _form(
    ChannelOpen.kind,
    _obj(
        ["provider", "amount", "expiry_ms"],
        {
            "offer": {
                "oneOf": [ref("Id"), {"type": "null"}],
                "description": "the id of the provider's offer, or null",
            }
        },
        provider=ref("Did"),
        amount={**ref("Amount"), "description": "what the escrow locks"},
        expiry_ms={"type": "integer", "minimum": 0, "description": "ms since the Unix epoch"},
    ),
    _channel_open_out,
    _channel_open_in,
    "ChannelOpenBody",
)
_CHANNEL_CLOSE = _form(
    ChannelClose.kind,
    _obj(
        None,
        channel={**ref("Id"), "description": "the channel.open entry's id"},
        amount={**ref("Amount"), "description": "the voucher's cumulative amount"},
        voucher_sig=ref("Signature"),
        consumer={**ref("Did"), "description": "the channel's consumer (checked)"},
        escrow={**ref("Amount"), "description": "the channel's amount (checked)"},
    ),
    _channel_close_out,
    _channel_close_in,
    "ChannelCloseBody",
)
_CHANNEL_REFUND = _form(
    ChannelRefund.kind,
    _obj(
        ["channel", "provider", "escrow"],
        {
            "release": {
                "oneOf": [
                    _obj(None, final=_NATURAL_AMOUNT, signature=ref("Signature")),
                    {"type": "null"},
                ],
                "description": "the provider's release; null: refund after expiry",
            }
        },
        channel={**ref("Id"), "description": "the channel.open entry's id"},
        provider={**ref("Did"), "description": "the channel's provider (checked)"},
        escrow={**ref("Amount"), "description": "the channel's amount (checked)"},
    ),
    _channel_refund_out,
    _channel_refund_in,
    "ChannelRefundBody",
)


# -- the governance kinds (docs/governance.md) -----------------------------------------------------


def _wire_out(value: Any) -> Json:
    """A policy value in its genesis wire form, tagged by type (JSON has no
    bytes and no 64-bit integers): ``{"int": "25"}``, ``{"str": "open"}``,
    ``{"hex": "0x.."}``, ``{"list": [...]}``."""
    if type(value) is int:
        return {"int": str(value)}
    if type(value) is str:
        return {"str": value}
    if type(value) is bytes:
        return {"hex": hex_out(value)}
    return {"list": [_wire_out(v) for v in value]}


def _wire_in(value: Any, field: str, depth: int = 0) -> Any:
    if type(value) is not dict or len(value) != 1 or depth > 4:
        raise ParamError(field, 'expected one of {"int"}, {"str"}, {"hex"}, {"list"}')
    ((tag, inner),) = value.items()
    if tag == "int":
        if type(inner) is not str or not inner.lstrip("-").isdigit():
            raise ParamError(f"{field}.int", "a decimal string")
        return int(inner)
    if tag == "str":
        return str_in(inner, f"{field}.str", max_bytes=1024)
    if tag == "hex":
        return hex_in(inner, f"{field}.hex", max_size=1024)
    if tag == "list":
        items = _list(inner, f"{field}.list", 64)
        return [_wire_in(v, f"{field}.list[{i}]", depth + 1) for i, v in enumerate(items)]
    raise ParamError(field, f"unknown tag {tag!r}")


def _payload_out(body: GovPropose) -> dict[str, Json]:
    p = body.payload
    if isinstance(p, PolicySet):
        return {"changes": [{"field": n, "value": _wire_out(v)} for n, v in p.changes]}
    return {
        "validators": [{"key": did_out(v.key), "weight": v.weight} for v in p.validators],
        "quorum": p.quorum,
    }


def _payload_in(action: str, value: Any, field: str) -> Any:
    if action == "policy.set":
        v = _fields(value, field, {"changes"})
        changes = []
        for i, raw in enumerate(_list(v["changes"], f"{field}.changes", 16)):
            c = _fields(raw, f"{field}.changes[{i}]", {"field", "value"})
            name = str_in(c["field"], f"{field}.changes[{i}].field", max_bytes=32)
            changes.append((name, _wire_in(c["value"], f"{field}.changes[{i}].value")))
        return PolicySet(tuple(changes))
    if action == "committee.set":
        v = _fields(value, field, {"validators", "quorum"})
        validators = []
        for i, raw in enumerate(_list(v["validators"], f"{field}.validators", 64)):
            r = _fields(raw, f"{field}.validators[{i}]", {"key", "weight"})
            validators.append(
                Validator(
                    did_in(r["key"], f"{field}.validators[{i}].key"),
                    int_in(r["weight"], f"{field}.validators[{i}].weight", low=1),
                )
            )
        return CommitteeSet(tuple(validators), int_in(v["quorum"], f"{field}.quorum", low=1))
    raise ParamError(f"{field}", f"unknown action {action!r}")


def _propose_out(body: GovPropose) -> dict[str, Json]:
    method: dict[str, Json] = {"name": body.method.name}
    if body.method.name == "majority":
        method["electorate"] = body.method.electorate
    return {
        "action": body.action,
        "payload": _payload_out(body),
        "method": method,
        "close_ms": body.close_ms,
    }


def _propose_in(value: dict[str, Any], field: str) -> GovPropose:
    action = str_in(value["action"], f"{field}.action", max_bytes=32)
    m = _fields(value["method"], f"{field}.method", {"name"}, frozenset({"electorate"}))
    method = Method(
        str_in(m["name"], f"{field}.method.name", max_bytes=32),
        int_in(m.get("electorate", 0), f"{field}.method.electorate"),
    )
    return GovPropose(
        action,
        _payload_in(action, value["payload"], f"{field}.payload"),
        method,
        int_in(value["close_ms"], f"{field}.close_ms"),
    )


def _enact_out(body: GovEnact) -> dict[str, Json]:
    return {
        "proposal": hex_out(body.proposal),
        "epoch": body.epoch,
        "tally": {"yes": body.tally.yes, "no": body.tally.no, "abstain": body.tally.abstain},
        "ballots": [hex_out(b) for b in body.ballots],
        "seals": [
            {"index": r.index, "bitmap": hex_out(r.bitmap), "signature": hex_out(r.signature)}
            for r in body.seals
        ],
    }


def _enact_in(value: dict[str, Any], field: str) -> GovEnact:
    t = _fields(value["tally"], f"{field}.tally", {"yes", "no", "abstain"})
    seals = []
    for i, raw in enumerate(_list(value.get("seals", []), f"{field}.seals", 64)):
        f = f"{field}.seals[{i}]"
        r = _fields(raw, f, {"index", "bitmap", "signature"})
        seals.append(
            SealRef(
                int_in(r["index"], f"{f}.index", high=63),
                hex_in(r["bitmap"], f"{f}.bitmap", max_size=8),
                hex_in(r["signature"], f"{f}.signature", size=64),
            )
        )
    ballots = _list(value.get("ballots", []), f"{field}.ballots", 64)
    return GovEnact(
        hex_in(value["proposal"], f"{field}.proposal", size=32),
        int_in(value["epoch"], f"{field}.epoch", low=1),
        Tally(*(int_in(t[k], f"{field}.tally.{k}") for k in ("yes", "no", "abstain"))),
        tuple(hex_in(b, f"{field}.ballots[{i}]", size=32) for i, b in enumerate(ballots)),
        tuple(seals),
    )


_WIRE_VALUE: Schema = {
    "description": "a policy value in its genesis wire form (docs/governance.md)",
    "oneOf": [
        _obj(None, int={"type": "string", "pattern": "^-?[0-9]+$"}),
        _obj(None, str={"type": "string"}),
        _obj(None, hex=ref("Hex")),
        _obj(None, list={"type": "array", "items": ref("WireValue")}),
    ],
}
_GOV_PROPOSE = _form(
    GovPropose.kind,
    _obj(
        None,
        action={"enum": list(ACTIONS)},
        payload={
            "oneOf": [
                _obj(
                    None,
                    changes={
                        "type": "array",
                        "items": _obj(None, field={"type": "string"}, value=ref("WireValue")),
                    },
                ),
                _obj(
                    None,
                    validators={
                        "type": "array",
                        "items": _obj(
                            None, key=ref("Did"), weight={"type": "integer", "minimum": 1}
                        ),
                    },
                    quorum={"type": "integer", "minimum": 1},
                ),
            ]
        },
        method=_obj(
            ["name"],
            {"electorate": {"type": "integer", "minimum": 1}},
            name={"enum": ["majority", "absolute", "quadratic", "consent"]},
        ),
        close_ms={"type": "integer", "minimum": 0},
    ),
    _propose_out,
    _propose_in,
    "GovProposeBody",
)
_GOV_VOTE = _form(
    GovVote.kind,
    _obj(
        ["proposal", "choice"],
        {"n": {"type": "integer", "minimum": 0, "maximum": 1 << 16}},
        proposal=ref("Id"),
        choice={"enum": ["yes", "no", "abstain"]},
    ),
    lambda body: {"proposal": hex_out(body.proposal), "choice": body.choice, "n": body.n},
    lambda value, field: GovVote(
        hex_in(value["proposal"], f"{field}.proposal", size=32),
        str_in(value["choice"], f"{field}.choice", max_bytes=16),
        int_in(value.get("n", 0), f"{field}.n", high=1 << 16),
    ),
)
_GOV_DELEGATE = _form(
    GovDelegate.kind,
    _obj(
        ["delegate", "until"],
        {"scope": {**ref("Hex"), "description": "a proposal id; absent or 0x: every proposal"}},
        delegate=ref("Did"),
        until={"type": "integer", "minimum": 0},
    ),
    lambda body: {
        "delegate": did_out(body.delegate),
        "scope": hex_out(body.scope),
        "until": body.until,
    },
    lambda value, field: GovDelegate(
        did_in(value["delegate"], f"{field}.delegate"),
        hex_in(value.get("scope", "0x"), f"{field}.scope", max_size=32),
        int_in(value["until"], f"{field}.until"),
    ),
)
_GOV_OBJECT = _form(
    GovObject.kind,
    _obj(None, proposal=ref("Id")),
    lambda body: {"proposal": hex_out(body.proposal)},
    lambda value, field: GovObject(hex_in(value["proposal"], f"{field}.proposal", size=32)),
)
_GOV_ENACT = _form(
    GovEnact.kind,
    _obj(
        ["proposal", "epoch", "tally"],
        {
            "ballots": {"type": "array", "items": ref("Id")},
            "seals": {
                "type": "array",
                "items": _obj(
                    None,
                    index={"type": "integer", "minimum": 0, "maximum": 63},
                    bitmap=ref("Hex"),
                    signature=ref("Hex"),
                ),
            },
        },
        proposal=ref("Id"),
        epoch={"type": "integer", "minimum": 1},
        tally=_obj(
            None,
            yes={"type": "integer", "minimum": 0},
            no={"type": "integer", "minimum": 0},
            abstain={"type": "integer", "minimum": 0},
        ),
    ),
    _enact_out,
    _enact_in,
    "GovEnactBody",
)

#: kind -> its JSON form: every kind the RPC reads and writes.
BODIES: dict[str, BodyForm[Any]] = {
    f.kind: f
    for f in (
        _TRANSFER,
        _MINT,
        _BURN,
        _ADMIT,
        _CREDIT,
        _DEVICE_REGISTER,
        _SENSOR_ATTEST,
        _IMPACT_CLAIM,
        _CHANNEL_OPEN,
        _CHANNEL_CLOSE,
        _CHANNEL_REFUND,
        # governance (docs/governance.md)
        _GOV_PROPOSE,
        _GOV_VOTE,
        _GOV_DELEGATE,
        _GOV_OBJECT,
        _GOV_ENACT,
    )
}


def body_out(body: Body) -> dict[str, Json]:
    """A protocol body's JSON view."""
    kind = getattr(body, "kind", None)  # an entry's body is not typed (protocol.Entry)
    form = BODIES.get(kind) if isinstance(kind, str) else None
    if form is None:
        raise TypeError(f"no JSON view for {type(body).__name__}")
    return form.dump(body)


def body_in(kind: object, value: object, field: str = "body") -> Body:
    """The protocol body of ``kind`` from its JSON view."""
    if type(kind) is not str or kind not in BODIES:
        raise ParamError("kind", f"unknown kind; one of {', '.join(BODIES)}")
    if type(value) is not dict:
        raise ParamError(field, "expected an object")
    form = BODIES[kind]
    for name in form.required - value.keys():
        raise ParamError(f"{field}.{name}", "missing")
    for name in value.keys() - form.required - form.optional:
        raise ParamError(f"{field}.{name}", "unknown field")
    try:
        body: Body = form.load(value, field)  # BODIES holds every kind's form
    except Refused as exc:  # the protocol's own schema (e.g. a memo too long)
        raise ParamError(field, exc.detail or exc.reason.value) from None
    return body


def schemas() -> dict[str, Schema]:
    """``Kind`` and ``Body``, for the document's components (the bodies'
    own components: :func:`body_components`)."""
    one_of: list[Json] = []
    for form in BODIES.values():
        if form.reference not in one_of:
            one_of.append(form.reference)
    return {
        "WireValue": _WIRE_VALUE,
        "Kind": {"enum": [*BODIES]},
        "Body": {
            "description": "by kind: transfer/mint {to, amount, memo?}; burn {amount}; "
            "member.admit {member}; credit.set {member, limit}; device.register, "
            "sensor.attest, impact.claim: docs/sensors.md (counters are integers, metric "
            "values decimal strings); channel.open, channel.close, channel.refund: "
            "docs/compute.md; gov.propose, gov.vote, gov.delegate, gov.object, "
            "gov.enact: docs/governance.md",
            "oneOf": one_of,
        },
    }


def body_components() -> dict[str, Schema]:
    """The bodies that are components of their own."""
    return {f.component: f.schema for f in BODIES.values() if f.component}


class _Body(Codec[Body]):
    """A body inside an entry view: written from the protocol body; read
    only with its kind (``EntryView`` does, through :func:`body_in`)."""

    __slots__ = ()

    def dump(self, value: Body) -> Json:
        return body_out(value)

    def load(self, value: object, field: str) -> Body:
        raise TypeError("a body is read with its kind: body_in(kind, value)")


class _Kind(Choice):
    """An entry's kind: one of :data:`BODIES` (as they are now)."""

    __slots__ = ()

    def __init__(self) -> None:
        Codec.__init__(self, ref("Kind"))

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(BODIES)


KIND = _Kind()
BODY = _Body(ref("Body"))
