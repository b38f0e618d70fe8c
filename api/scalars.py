"""The RPC's scalar values as codecs, and their schemas (the OpenRPC
document's ``components/schemas`` for them): 32-byte ids, hex bytes,
signatures, Ed25519 did:keys, amounts as decimal strings, device counters,
signed 64-bit metric values as decimal strings, plain integers, booleans
and text. The parsing rules themselves are ``encoding.py``'s."""

from __future__ import annotations

from mycelia.api.codecs import Codec, Json, Schema, ref
from mycelia.api.encoding import (
    MAX_AMOUNT,
    UINT64_MAX,
    ParamError,
    amount_in,
    bool_in,
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
    "UNITS",
    "Boolean",
    "Choice",
    "DecimalString",
    "DidKey",
    "HexBytes",
    "Integer",
    "Text",
    "hex_bytes",
    "integer",
    "text",
]

#: Components: the scalars' schemas, referred to as ``{"$ref": ...}``.
SCHEMAS: dict[str, Schema] = {
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
    "Units": {
        "type": "string",
        "pattern": "^(0|[1-9][0-9]{0,18})$",
        "description": "an amount of minor units that may be 0 (a price, an escrow left), "
        "as a decimal string",
    },
}
#: After the body schemas in the document (``bodies.py`` adds Kind and Body).
LATE_SCHEMAS: dict[str, Schema] = {
    "Counter": {"type": "integer", "minimum": 0, "maximum": UINT64_MAX},
    "Int64": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a signed 64-bit value of a metric as a decimal string",
    },
}


class Integer(Codec[int]):
    """A JSON integer in ``low…high``."""

    __slots__ = ("high", "low")

    def __init__(self, low: int, high: int, schema: Schema) -> None:
        super().__init__(schema)
        self.low = low
        self.high = high

    def dump(self, value: int) -> Json:
        return value

    def load(self, value: object, field: str) -> int:
        return int_in(value, field, low=self.low, high=self.high)


class DecimalString(Codec[int]):
    """An integer in ``low…high`` written as a decimal string (amounts,
    balances, metric values: JSON numbers cannot hold 64 bits exactly)."""

    __slots__ = ("high", "low")

    def __init__(self, low: int, high: int, schema: Schema) -> None:
        super().__init__(schema)
        self.low = low
        self.high = high

    def dump(self, value: int) -> Json:
        return str(value)

    def load(self, value: object, field: str) -> int:
        if self.low >= 1:
            return amount_in(value, field)
        if self.high == MAX_AMOUNT and self.low == -MAX_AMOUNT:
            return amount_in(value, field, negative=True)
        n = int64_in(value, field)
        if not self.low <= n <= self.high:
            raise ParamError(field, f"expected {self.low}..{self.high}")
        return n


class HexBytes(Codec[bytes]):
    """Bytes as 0x-hex: ``size`` bytes, or at most ``max_size``."""

    __slots__ = ("max_size", "size")

    def __init__(self, schema: Schema, size: int | None, max_size: int = 1 << 20) -> None:
        super().__init__(schema)
        self.size = size
        self.max_size = max_size

    def dump(self, value: bytes) -> Json:
        return hex_out(value)

    def load(self, value: object, field: str) -> bytes:
        return hex_in(value, field, size=self.size, max_size=self.max_size)


class Text(Codec[str]):
    """A string of at most ``max_bytes`` bytes of UTF-8."""

    __slots__ = ("max_bytes",)

    def __init__(self, max_bytes: int, schema: Schema | None = None) -> None:
        super().__init__({"type": "string"} if schema is None else schema)
        self.max_bytes = max_bytes

    def dump(self, value: str) -> Json:
        return value

    def load(self, value: object, field: str) -> str:
        return str_in(value, field, max_bytes=self.max_bytes)


class Choice(Codec[str]):
    """One of a few strings (an enum)."""

    __slots__ = ("_choices",)

    def __init__(self, *choices: str, schema: Schema | None = None) -> None:
        super().__init__({"enum": [*choices]} if schema is None else schema)
        self._choices = choices

    @property
    def choices(self) -> tuple[str, ...]:
        return self._choices

    def dump(self, value: str) -> Json:
        return value

    def load(self, value: object, field: str) -> str:
        if type(value) is not str or value not in self.choices:
            raise ParamError(field or "result", f"one of {', '.join(self.choices)}")
        return value


class Boolean(Codec[bool]):
    __slots__ = ()

    def dump(self, value: bool) -> Json:
        return value

    def load(self, value: object, field: str) -> bool:
        return bool_in(value, field)


class DidKey(Codec[str]):
    """An Ed25519 did:key, kept as its (checked) string."""

    __slots__ = ()

    def dump(self, value: str) -> Json:
        return value

    def load(self, value: object, field: str) -> str:
        return did_str_in(value, field)


def hex_bytes(*, size: int | None = None, max_size: int = 1 << 20) -> HexBytes:
    """Bytes as 0x-hex (``Hex``), of ``size`` bytes or at most ``max_size``."""
    return HexBytes(ref("Hex"), size, max_size)


def integer(low: int = 0, high: int = (1 << 63) - 1, **schema: Json) -> Integer:
    """A JSON integer in ``low…high``; ``schema`` is the whole JSON schema
    (default: ``{"type": "integer", "minimum": low}``)."""
    return Integer(low, high, schema or {"type": "integer", "minimum": low})


def text(max_bytes: int = 256) -> Text:
    """A string of at most ``max_bytes`` bytes of UTF-8."""
    return Text(max_bytes)


ID = HexBytes(ref("Id"), 32)
HEX = hex_bytes()
SIGNATURE = HexBytes(ref("Signature"), 64)
#: A did:key, kept as its string in Python.
DID = DidKey(ref("Did"))
AMOUNT = DecimalString(1, MAX_AMOUNT, ref("Amount"))
SIGNED_AMOUNT = DecimalString(-MAX_AMOUNT, MAX_AMOUNT, ref("SignedAmount"))
UNITS = DecimalString(0, MAX_AMOUNT, ref("Units"))
INT64 = DecimalString(-(1 << 63), MAX_AMOUNT, ref("Int64"))
COUNTER = Integer(0, UINT64_MAX, ref("Counter"))
#: A count, a seq, a timestamp: an integer ≥ 0.
NAT = integer()
BOOL = Boolean({"type": "boolean"})
