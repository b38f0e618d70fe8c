"""Field checks for decoded canonical values: the one set of schema helpers.

Why this exists: every structure (entry, body, vote, certificate, genesis)
turns a decoded msgpack array into typed fields, and each must refuse the same
way — ``malformed`` (or ``malformed_body`` inside an entry body) naming the
field. Keeping the checks here means a bool never passes for an int, a str
never for bytes, and every bound is explicit.
"""

from __future__ import annotations

from typing import Any

from mycelia.protocol.reasons import Reason, Refused

__all__ = ["INT64_MAX", "INT64_MIN", "UINT64_MAX", "array", "bytes_", "int_", "list_", "str_"]

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)
UINT64_MAX = (1 << 64) - 1


def array(value: Any, tag: str, version: int, length: int, what: str) -> list[Any]:
    """A ``[tag, version, ...]`` array of exactly ``length`` elements."""
    if type(value) is not list:
        raise Refused(Reason.MALFORMED, f"{what}: expected an array")
    if len(value) != length:
        raise Refused(Reason.MALFORMED, f"{what}: expected {length} fields, got {len(value)}")
    if value[0] != tag or type(value[0]) is not str:
        raise Refused(Reason.MALFORMED, f"{what}: expected tag {tag!r}")
    if value[1] != version or type(value[1]) is not int:
        raise Refused(Reason.MALFORMED, f"{what}: unsupported version {value[1]!r}")
    return value


def bytes_(
    value: Any,
    name: str,
    size: int | None = None,
    *,
    max_size: int = 1024,
    reason: Reason = Reason.MALFORMED,
) -> bytes:
    if type(value) is not bytes:
        raise Refused(reason, f"{name}: expected bytes")
    if size is not None and len(value) != size:
        raise Refused(reason, f"{name}: expected {size} bytes, got {len(value)}")
    if len(value) > max_size:
        raise Refused(reason, f"{name}: more than {max_size} bytes")
    return value


def int_(
    value: Any,
    name: str,
    lo: int = INT64_MIN,
    hi: int = INT64_MAX,
    *,
    reason: Reason = Reason.MALFORMED,
) -> int:
    if type(value) is not int:
        raise Refused(reason, f"{name}: expected an integer")
    if not lo <= value <= hi:
        raise Refused(reason, f"{name}: {value} not in [{lo}, {hi}]")
    return value


def str_(
    value: Any,
    name: str,
    *,
    max_bytes: int,
    min_bytes: int = 0,
    reason: Reason = Reason.MALFORMED,
) -> str:
    if type(value) is not str:
        raise Refused(reason, f"{name}: expected a string")
    n = len(value.encode())
    if not min_bytes <= n <= max_bytes:
        raise Refused(reason, f"{name}: length {n} bytes not in [{min_bytes}, {max_bytes}]")
    return value


def list_(
    value: Any,
    name: str,
    *,
    max_len: int,
    min_len: int = 0,
    reason: Reason = Reason.MALFORMED,
) -> list[Any]:
    if type(value) is not list:
        raise Refused(reason, f"{name}: expected an array")
    if not min_len <= len(value) <= max_len:
        raise Refused(reason, f"{name}: {len(value)} items not in [{min_len}, {max_len}]")
    return value
