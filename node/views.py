"""JSON views of protocol values: the one place that says how the wallet
RPC writes and reads entries, accounts, amounts, keys and bytes.

Why this exists: the RPC server, the Python client and the CLI all speak
the same JSON, and JSON cannot hold a 64-bit amount exactly (JavaScript
wallets read numbers as doubles) nor raw bytes. The rules (``docs/rpc.md``):

* amounts, balances, limits and caps are decimal strings, optionally
  negative where the value can be (a balance); a JSON number is refused;
* bytes are ``0x``-prefixed lowercase hex (uppercase accepted on input);
* accounts and validators are Ed25519 ``did:key`` strings;
* an entry is ``{"id", "economy", "author", "seq", "prev", "ts_ms", "kind",
  "body"}``, its body in the same encoding.
* sensor bodies (``docs/sensors.md``): counters, counts and exponents are
  JSON integers; values of a metric (bounds, sums, a claim's ``total``) are
  signed decimal strings like balances; device ids, keys, roots and entry
  ids are hex; the host is a ``did:key``.

Parsing raises :class:`ParamError` naming the field, which the server turns
into ``-32602 invalid params`` with ``data.field``. Protocol bodies are
built through their own constructors, so a body from JSON is held to
exactly the protocol's schema (an amount of 0 is refused there).
"""

from __future__ import annotations

import re
from typing import Any

from mycelia.protocol import (
    Account,
    Burn,
    Certificate,
    CreditSet,
    Economy,
    Entry,
    ForkEvidence,
    MemberAdmit,
    Mint,
    Refused,
    SignedGenesis,
    Transfer,
    did_decode,
    did_encode,
    schema,
)
from mycelia.protocol.economy import ImpactPolicy, IssuedPolicy, MutualCreditPolicy
from mycelia.protocol.impact import Claimable
from mycelia.protocol.sensors import (
    Aggregate,
    AttestedDevice,
    DeviceRegister,
    ImpactClaim,
    Metric,
    SensorAttest,
)

__all__ = [
    "NOT_UNICODE",
    "ParamError",
    "account_view",
    "amount_in",
    "amount_out",
    "body_in",
    "body_out",
    "certificate_view",
    "claimable_view",
    "did_in",
    "did_out",
    "economy_view",
    "entry_view",
    "fork_view",
    "hex_in",
    "hex_out",
    "int64_in",
    "int_in",
    "str_in",
]

#: Amounts are signed 64-bit in the protocol.
MAX_AMOUNT = (1 << 63) - 1
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_HEX = re.compile(r"0x([0-9a-fA-F]{2})*")
#: Why a string that UTF-8 cannot encode is refused: JSON can escape a lone
#: UTF-16 surrogate, a Python str can hold it, nothing can store or send it.
NOT_UNICODE = "not Unicode text (it holds a lone UTF-16 surrogate such as \\ud800)"


class ParamError(ValueError):
    """A parameter that is not what the method takes."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


# -- scalars ---------------------------------------------------------------------------


def hex_out(data: bytes) -> str:
    return "0x" + data.hex()


def hex_in(value: Any, field: str, *, size: int | None = None, max_size: int = 1 << 20) -> bytes:
    if type(value) is not str or not _HEX.fullmatch(value):
        raise ParamError(field, "expected 0x-prefixed hex")
    if len(value) > 2 + 2 * max_size:
        raise ParamError(field, f"longer than {max_size} bytes")
    data = bytes.fromhex(value[2:])
    if size is not None and len(data) != size:
        raise ParamError(field, f"expected {size} bytes, got {len(data)}")
    return data


def amount_out(value: int) -> str:
    return str(value)


def amount_in(value: Any, field: str, *, negative: bool = False) -> int:
    """A decimal string; positive (≥ 1) unless ``negative`` allows any sign."""
    if type(value) is not str:
        raise ParamError(field, 'amounts are decimal strings (e.g. "25"), not JSON numbers')
    if not _DECIMAL.fullmatch(value) or value == "-0":
        raise ParamError(field, "not a decimal integer string")
    n = int(value)
    if n > MAX_AMOUNT or n < -MAX_AMOUNT:
        raise ParamError(field, "out of the 64-bit range")
    if not negative and n < 1:
        raise ParamError(field, "must be at least 1")
    return n


def int_in(value: Any, field: str, *, low: int = 0, high: int = (1 << 63) - 1) -> int:
    if type(value) is not int:
        raise ParamError(field, "expected an integer")
    if not low <= value <= high:
        raise ParamError(field, f"must be between {low} and {high}")
    return value


def int64_in(value: Any, field: str) -> int:
    """A signed 64-bit value as a decimal string (a metric's value, bound or sum)."""
    if type(value) is not str:
        raise ParamError(field, 'a decimal string (e.g. "-25"), not a JSON number')
    if not _DECIMAL.fullmatch(value) or value == "-0":
        raise ParamError(field, "not a decimal integer string")
    n = int(value)
    if not schema.INT64_MIN <= n <= schema.INT64_MAX:
        raise ParamError(field, "out of the signed 64-bit range")
    return n


def str_in(value: Any, field: str, *, max_bytes: int = 256) -> str:
    if type(value) is not str:
        raise ParamError(field, "expected a string")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ParamError(field, NOT_UNICODE) from None
    if size > max_bytes:
        raise ParamError(field, f"longer than {max_bytes} bytes")
    return value


def did_out(public: bytes) -> str:
    return did_encode(public)


def did_in(value: Any, field: str) -> bytes:
    try:
        return did_decode(value)
    except Refused as exc:
        raise ParamError(field, exc.detail or "not an Ed25519 did:key") from None


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


def entry_view(entry: Entry, entry_id: bytes | None = None) -> dict[str, Any]:
    return {
        "id": hex_out(entry.id if entry_id is None else entry_id),
        "economy": hex_out(entry.economy),
        "author": did_out(entry.author),
        "seq": entry.seq,
        "prev": hex_out(entry.prev),
        "ts_ms": entry.ts_ms,
        "kind": entry.kind,
        "body": body_out(entry.body),
    }


def certificate_view(cert: Certificate, data: bytes | None = None) -> dict[str, Any]:
    """The entry view plus the certificate's bytes (verifiable offline)."""
    view = entry_view(cert.entry, cert.entry_id)
    view["certificate"] = hex_out(cert.encode() if data is None else data)
    return view


def fork_view(economy: Economy, evidence: ForkEvidence) -> dict[str, Any]:
    """A fork: its slot, both entries (in the evidence's order), the
    validators that signed both, and the evidence's bytes — which prove all
    of it offline (``protocol/forks.py``), so a client need trust none of
    the rest."""
    return {
        "economy": hex_out(evidence.economy),
        "author": did_out(evidence.author),
        "seq": evidence.seq,
        "entries": [entry_view(c.entry, c.entry_id) for c in (evidence.first, evidence.second)],
        "guilty": [did_out(k) for k in evidence.guilty(economy)],
        "evidence": hex_out(evidence.encode()),
    }


# -- accounts and economies -------------------------------------------------------------


def claimable_view(c: Claimable) -> dict[str, Any]:
    """The ``sensor_claimable`` result."""
    return {
        "cursor": c.cursor.last,
        "carry": amount_out(c.cursor.carry),
        "attestations": [
            {
                "id": hex_out(r.attestation),
                "first": r.first,
                "last": r.last,
                "count": r.count,
                "total": amount_out(r.total),
            }
            for r in c.rows
        ],
    }


def account_view(economy: Economy, public: bytes, acct: Account) -> dict[str, Any]:
    mutual = isinstance(economy.genesis.policy, MutualCreditPolicy)
    return {
        "account": did_out(public),
        "balance": amount_out(acct.balance),
        "limit": amount_out(economy.credit_limit(acct)) if mutual else None,
        "seq": acct.seq,
        "head": hex_out(acct.head),
        "ts_ms": acct.ts_ms,
        "member": economy.is_member(public, acct),
        "minted": amount_out(acct.minted),
        "burned": amount_out(acct.burned),
    }


def economy_view(signed: SignedGenesis) -> dict[str, Any]:
    g = signed.genesis
    policy = g.policy
    return {
        "id": hex_out(g.id),
        "name": g.name,
        "symbol": g.symbol,
        "decimals": g.decimals,
        "kind": g.kind,
        "membership": policy.membership,
        "stewards": [did_out(k) for k in policy.stewards],
        "default_limit": (
            amount_out(policy.default_limit) if isinstance(policy, MutualCreditPolicy) else None
        ),
        "issuers": (
            [{"account": did_out(k), "cap": amount_out(c)} for k, c in policy.issuers]
            if isinstance(policy, IssuedPolicy)
            else []
        ),
        "impact": (
            {
                "metric": policy.metric,
                "exponent": policy.exponent,
                "units_per_credit": amount_out(policy.units_per_credit),
                "device_kinds": list(policy.device_kinds),
            }
            if isinstance(policy, ImpactPolicy)
            else None
        ),
        "validators": [{"did": did_out(v.key), "weight": v.weight} for v in g.validators],
        "quorum": g.quorum,
        "ts_ms": g.ts_ms,
        "nonce": hex_out(g.nonce),
        "genesis": hex_out(signed.encode()),
    }
