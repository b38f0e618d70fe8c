"""The RPC's scalar values as codecs, and their schemas (the OpenRPC
document's ``components/schemas`` for them): 32-byte ids, hex bytes,
signatures, Ed25519 did:keys, amounts as decimal strings, device counters,
signed 64-bit metric values as decimal strings, plain integers, booleans
and text. The parsing rules themselves are ``encoding.py``'s."""

from __future__ import annotations

from functools import partial
from typing import Any

from mycelia.api.codecs import Scalar, ref
from mycelia.api.encoding import (
    UINT64_MAX,
    amount_in,
    amount_out,
    bool_in,
    counter_in,
    did_str_in,
    hex_in,
    hex_out,
    int64_in,
    int_in,
    str_in,
)

__all__ = [
    "AMOUNT",
    "BOOL",
    "COUNTER",
    "DID",
    "HEX",
    "ID",
    "INT64",
    "NAT",
    "SCHEMAS",
    "SIGNATURE",
    "SIGNED_AMOUNT",
    "hex_bytes",
    "integer",
    "text",
]

#: Components: the scalars' schemas, referred to as ``{"$ref": ...}``.
SCHEMAS: dict[str, dict[str, Any]] = {
    "Hex": {
        "type": "string",
        "pattern": "^0x([0-9a-fA-F]{2})*$",
        "description": "bytes as 0x-prefixed hex (lowercase in answers)",
    },
    "Id": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$", "description": "a 32-byte id"},
    "Signature": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{128}$",
        "description": "a 64-byte Ed25519 signature",
    },
    "Did": {
        "type": "string",
        "pattern": "^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+$",
        "description": "an Ed25519 did:key",
    },
    "Amount": {
        "type": "string",
        "pattern": "^[1-9][0-9]{0,18}$",
        "description": "a positive amount as a decimal string (never a JSON number)",
    },
    "SignedAmount": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a balance or limit as a decimal string, may be negative",
    },
}
#: After the body schemas in the document (``bodies.py`` adds Kind and Body).
LATE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Counter": {"type": "integer", "minimum": 0, "maximum": UINT64_MAX},
    "Int64": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a signed 64-bit value of a metric as a decimal string",
    },
}


def hex_bytes(*, size: int | None = None, max_size: int = 1 << 20) -> Scalar:
    """Bytes as 0x-hex (``Hex``), of ``size`` bytes or at most ``max_size``."""
    return Scalar(ref("Hex"), partial(hex_in, size=size, max_size=max_size), hex_out)


def integer(low: int = 0, high: int = (1 << 63) - 1, **schema: Any) -> Scalar:
    """A JSON integer in ``low…high``; ``schema`` is the whole JSON schema
    (default: ``{"type": "integer", "minimum": low}``)."""
    return Scalar(
        schema or {"type": "integer", "minimum": low}, partial(int_in, low=low, high=high)
    )


def text(max_bytes: int = 256) -> Scalar:
    """A string of at most ``max_bytes`` bytes of UTF-8."""
    return Scalar({"type": "string"}, partial(str_in, max_bytes=max_bytes))


ID = Scalar(ref("Id"), partial(hex_in, size=32), hex_out)
HEX = hex_bytes()
SIGNATURE = Scalar(ref("Signature"), partial(hex_in, size=64), hex_out)
#: A did:key, kept as its string in Python.
DID = Scalar(ref("Did"), did_str_in)
AMOUNT = Scalar(ref("Amount"), amount_in, amount_out)
SIGNED_AMOUNT = Scalar(ref("SignedAmount"), partial(amount_in, negative=True), amount_out)
COUNTER = Scalar(ref("Counter"), counter_in)
INT64 = Scalar(ref("Int64"), int64_in, str)
#: A count, a seq, a timestamp: an integer ≥ 0.
NAT = integer()
BOOL = Scalar({"type": "boolean"}, bool_in)
