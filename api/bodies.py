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
        "Kind": {"enum": [*BODIES]},
        "Body": {
            "description": "by kind: transfer/mint {to, amount, memo?}; burn {amount}; "
            "member.admit {member}; credit.set {member, limit}; device.register, "
            "sensor.attest, impact.claim: docs/sensors.md (counters are integers, metric "
            "values decimal strings); channel.open, channel.close, channel.refund: "
            "docs/compute.md",
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
