"""Entry bodies in JSON (``docs/rpc.md``, "Encoding"; sensor bodies:
``docs/sensors.md``): :func:`body_out` writes a protocol body's view,
:func:`body_in` reads one back through the protocol's own constructors, so
a body from JSON is held to exactly the protocol's schema."""

from __future__ import annotations

from typing import Any

from mycelia.api.encoding import (
    ParamError,
    amount_in,
    amount_out,
    did_in,
    did_out,
    hex_in,
    hex_out,
    int64_in,
    int_in,
    str_in,
)
from mycelia.protocol import (
    Burn,
    CreditSet,
    MemberAdmit,
    Mint,
    Refused,
    Transfer,
)
from mycelia.protocol.sensors import (
    Aggregate,
    AttestedDevice,
    DeviceRegister,
    ImpactClaim,
    Metric,
    SensorAttest,
)

# -- bodies and entries ---------------------------------------------------------------


def body_out(body: Any) -> dict[str, Any]:
    if isinstance(body, Transfer | Mint):
        return {"to": did_out(body.to), "amount": amount_out(body.amount), "memo": body.memo}
    if isinstance(body, Burn):
        return {"amount": amount_out(body.amount)}
    if isinstance(body, MemberAdmit):
        return {"member": did_out(body.member)}
    if isinstance(body, CreditSet):
        return {"member": did_out(body.member), "limit": amount_out(body.limit)}
    if isinstance(body, DeviceRegister):
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
    if isinstance(body, SensorAttest):
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
    if isinstance(body, ImpactClaim):
        return {
            "device": hex_out(body.device),
            "first_counter": body.first_counter,
            "last_counter": body.last_counter,
            "attestations": [hex_out(a) for a in body.attestations],
            "total": str(body.total),
        }
    raise TypeError(f"no JSON view for {type(body).__name__}")


_BODY_FIELDS = {
    "transfer": ({"to", "amount"}, {"memo"}),
    "mint": ({"to", "amount"}, {"memo"}),
    "burn": ({"amount"}, set()),
    "member.admit": ({"member"}, set()),
    "credit.set": ({"member", "limit"}, set()),
    DeviceRegister.kind: (
        {"key_type", "public_key", "device_kind", "host", "metrics", "pop"},
        {"device"},
    ),
    SensorAttest.kind: ({"root", "count", "devices"}, set()),
    ImpactClaim.kind: (
        {"device", "first_counter", "last_counter", "attestations", "total"},
        set(),
    ),
}
_METRIC_FIELDS = {"name", "unit", "exponent", "min", "max"}
_ROW_FIELDS = {"device", "registration", "first", "last", "count", "aggregates"}
_AGGREGATE_FIELDS = {"metric", "sum", "min", "max"}
_UINT64_MAX = (1 << 64) - 1


def _fields(
    value: Any, field: str, required: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if type(value) is not dict:
        raise ParamError(field, "expected an object")
    for name in required - value.keys():
        raise ParamError(f"{field}.{name}", "missing")
    for name in value.keys() - required - optional:
        raise ParamError(f"{field}.{name}", "unknown field")
    return value


def _list(value: Any, field: str, max_len: int) -> list[Any]:
    if type(value) is not list:
        raise ParamError(field, "expected an array")
    if len(value) > max_len:
        raise ParamError(field, f"more than {max_len} items")
    return value


def _counter_in(value: Any, field: str) -> int:
    return int_in(value, field, high=_UINT64_MAX)


def _device_register_in(value: dict[str, Any], field: str) -> DeviceRegister:
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


def _sensor_attest_in(value: dict[str, Any], field: str) -> SensorAttest:
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
                _counter_in(d["first"], f"{f}.first"),
                _counter_in(d["last"], f"{f}.last"),
                int_in(d["count"], f"{f}.count", low=1),
                tuple(aggregates),
            )
        )
    return SensorAttest(
        hex_in(value["root"], f"{field}.root", size=32),
        int_in(value["count"], f"{field}.count", low=1),
        tuple(rows),
    )


def _impact_claim_in(value: dict[str, Any], field: str) -> ImpactClaim:
    attestations = _list(value["attestations"], f"{field}.attestations", 16)
    return ImpactClaim(
        hex_in(value["device"], f"{field}.device", size=32),
        _counter_in(value["first_counter"], f"{field}.first_counter"),
        _counter_in(value["last_counter"], f"{field}.last_counter"),
        tuple(hex_in(a, f"{field}.attestations[{i}]", size=32) for i, a in enumerate(attestations)),
        int64_in(value["total"], f"{field}.total"),
    )


def body_in(kind: Any, value: Any, field: str = "body") -> Any:
    """The protocol body of ``kind`` from its JSON view."""
    if type(kind) is not str or kind not in _BODY_FIELDS:
        raise ParamError("kind", f"unknown kind; one of {', '.join(_BODY_FIELDS)}")
    if type(value) is not dict:
        raise ParamError(field, "expected an object")
    required, optional = _BODY_FIELDS[kind]
    for name in required - value.keys():
        raise ParamError(f"{field}.{name}", "missing")
    for name in value.keys() - required - optional:
        raise ParamError(f"{field}.{name}", "unknown field")
    try:
        if kind == DeviceRegister.kind:
            return _device_register_in(value, field)
        if kind == SensorAttest.kind:
            return _sensor_attest_in(value, field)
        if kind == ImpactClaim.kind:
            return _impact_claim_in(value, field)
        if kind in ("transfer", "mint"):
            cls = Transfer if kind == "transfer" else Mint
            return cls(
                did_in(value["to"], f"{field}.to"),
                amount_in(value["amount"], f"{field}.amount"),
                str_in(value.get("memo", ""), f"{field}.memo"),
            )
        if kind == "burn":
            return Burn(amount_in(value["amount"], f"{field}.amount"))
        if kind == "member.admit":
            return MemberAdmit(did_in(value["member"], f"{field}.member"))
        return CreditSet(
            did_in(value["member"], f"{field}.member"),
            amount_in(value["limit"], f"{field}.limit", negative=True),
        )
    except Refused as exc:  # the protocol's own schema (e.g. a memo too long)
        raise ParamError(field, exc.detail or exc.reason.value) from None
