"""The JSON encoding of the wallet RPC's scalars: the one place that says how
amounts, keys, ids and bytes are written and read (entry bodies:
``bodies.py``).

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

from mycelia.protocol import (
    Refused,
    did_decode,
    did_encode,
    schema,
)

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


def hex_in(value: object, field: str, *, size: int | None = None, max_size: int = 1 << 20) -> bytes:
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


def amount_in(value: object, field: str, *, negative: bool = False) -> int:
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


def int_in(value: object, field: str, *, low: int = 0, high: int = (1 << 63) - 1) -> int:
    if type(value) is not int:
        raise ParamError(field, "expected an integer")
    if not low <= value <= high:
        raise ParamError(field, f"must be between {low} and {high}")
    return value


def int64_in(value: object, field: str) -> int:
    """A signed 64-bit value as a decimal string (a metric's value, bound or sum)."""
    if type(value) is not str:
        raise ParamError(field, 'a decimal string (e.g. "-25"), not a JSON number')
    if not _DECIMAL.fullmatch(value) or value == "-0":
        raise ParamError(field, "not a decimal integer string")
    n = int(value)
    if not schema.INT64_MIN <= n <= schema.INT64_MAX:
        raise ParamError(field, "out of the signed 64-bit range")
    return n


def str_in(value: object, field: str, *, max_bytes: int = 256) -> str:
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


def did_in(value: object, field: str) -> bytes:
    try:
        return did_decode(value)
    except Refused as exc:
        raise ParamError(field, exc.detail or "not an Ed25519 did:key") from None


# -- a few more, for results -----------------------------------------------------------

#: Device counters are unsigned 64-bit.
UINT64_MAX = (1 << 64) - 1


def did_str_in(value: object, field: str) -> str:
    """A did:key kept as its (checked) string."""
    did_in(value, field)
    return str(value)


def bool_in(value: object, field: str) -> bool:
    if type(value) is not bool:
        raise ParamError(field, "expected a boolean")
    return value


def counter_in(value: object, field: str) -> int:
    """A device counter (unsigned 64-bit)."""
    return int_in(value, field, high=UINT64_MAX)
