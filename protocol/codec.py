"""The canonical codec: the one byte form of everything mycelia signs.

Why this exists: a signature is over bytes, so every node, wallet and device
must produce the same bytes for the same value. msgpack has no canonical form
of its own (maps have no order, an int can be written in several widths), so
signed data uses a strict subset of it, and this module is the only place that
encodes or decodes it.

The rules (DESIGN §3):

* A value is an ``int``, ``bytes``, ``str`` or an array of values. Nothing
  else: no maps, no floats, no nil, no booleans, no extension types. Signed
  structures are arrays with a fixed field order, ``[tag, version, ...]``.
* ``bytes`` pack as msgpack bin, ``str`` as msgpack str (valid UTF-8), ints
  and every length header in their shortest form. Ints are within
  ``[-2**63, 2**64 - 1]`` (what msgpack can carry).
* Decoding is strict: the input size is bounded before parsing, the nesting
  depth and the item count after, and then the value is re-encoded and must
  equal the input byte for byte. That single comparison rejects every
  non-shortest int or length, every bin/str mix-up, trailing bytes and
  truncation, without a hand-written parser to get wrong.

Callers keep and forward the *original* bytes they received (they are
canonical by construction once :func:`decode` accepted them).

Tuples and lists both encode as arrays; :func:`decode` returns lists.
"""

from __future__ import annotations

from typing import Any, cast

import msgpack

from mycelia.protocol.reasons import Reason, Refused

__all__ = ["MAX_DEPTH", "MAX_SIZE", "decode", "encode", "encode_trusted"]

#: Default bound on an encoded value, in bytes. Callers pass tighter bounds
#: for the structures they know (an entry, a certificate, a reading).
MAX_SIZE = 1 << 20
#: Nesting bound: our deepest signed structure (a certificate holding an entry
#: holding a body holding a list) is 4 deep; leave room, refuse recursion bombs.
MAX_DEPTH = 8
#: Bound on the total number of values in one decoded structure.
MAX_ITEMS = 1 << 16


def encode(value: Any) -> bytes:
    """Encode ``value`` canonically. Raises ``TypeError`` for a value outside
    the allowed types (a programming error, not bad input) and
    ``OverflowError`` for an int outside msgpack's range."""
    _check_types(value, 0)
    return cast(bytes, msgpack.packb(value, use_bin_type=True))  # msgpack is unannotated


def encode_trusted(value: Any) -> bytes:
    """Encode a value whose shape is already known to be canonical (built by
    a ``to_wire`` method from validated fields, or just returned by
    :func:`decode`). Skips the type walk on hot paths; same bytes as
    :func:`encode`."""
    return cast(bytes, msgpack.packb(value, use_bin_type=True))  # msgpack is unannotated


def _check_types(value: Any, depth: int) -> None:
    t = type(value)
    if t is int or t is bytes or t is str:
        return
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise ValueError("canonical value nested too deeply")
        for item in value:
            _check_types(item, depth + 1)
        return
    raise TypeError(f"type {t.__name__} is not allowed in canonical data")


def _refuse_map(_pairs: object) -> object:
    raise Refused(Reason.NON_CANONICAL, "maps are not allowed")


def _refuse_ext(_code: int, _data: bytes) -> object:
    raise Refused(Reason.NON_CANONICAL, "extension types are not allowed")


def decode(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH) -> Any:
    """Decode canonical bytes, or raise :class:`Refused`.

    Reasons: ``too_large`` (size, depth or item count over the bound),
    ``non_canonical`` (anything that is not the one canonical form).
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) > max_size:
        raise Refused(Reason.TOO_LARGE, f"{len(data)} bytes > {max_size}")
    if not data:
        raise Refused(Reason.NON_CANONICAL, "empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_refuse_map,
            ext_hook=_refuse_ext,
        )
    except Refused:
        raise
    except msgpack.ExtraData:
        raise Refused(Reason.NON_CANONICAL, "trailing bytes") from None
    except msgpack.StackError:
        raise Refused(Reason.TOO_LARGE, "nesting deeper than the decoder's stack") from None
    except UnicodeDecodeError:
        raise Refused(Reason.NON_CANONICAL, "invalid UTF-8 in str") from None
    except (ValueError, msgpack.UnpackException, TypeError, RecursionError) as exc:
        # Truncation, reserved bytes, over-deep nesting inside msgpack's own
        # stack (it raises ValueError/StackError), non-str map keys.
        raise Refused(Reason.NON_CANONICAL, f"not msgpack: {type(exc).__name__}") from None
    _walk(value, max_depth)
    if msgpack.packb(value, use_bin_type=True) != data:
        raise Refused(Reason.NON_CANONICAL, "bytes differ from their canonical re-encoding")
    return value


def _walk(value: Any, max_depth: int) -> None:
    """Reject types outside the canonical set and bound depth and item count."""
    items = 1  # the root; each list adds its children once
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        t = type(node)
        if t is list:
            if depth >= max_depth:
                raise Refused(Reason.TOO_LARGE, f"nesting deeper than {max_depth}")
            items += len(node)
            for child in node:
                tc = type(child)
                if tc is list:
                    stack.append((child, depth + 1))
                elif tc is not int and tc is not bytes and tc is not str:
                    _refuse_type(tc)
        elif t is not int and t is not bytes and t is not str:
            _refuse_type(t)
        if items > MAX_ITEMS:
            raise Refused(Reason.TOO_LARGE, f"more than {MAX_ITEMS} values")


def _refuse_type(t: type) -> None:
    name = {float: "float", bool: "bool", type(None): "nil"}.get(t, t.__name__)
    raise Refused(Reason.NON_CANONICAL, f"{name} is not allowed")
