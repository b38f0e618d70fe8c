"""Check JSON answers against the node's OpenRPC document (``rpc.discover``).

Why this exists: the client and CLI tests talk to a fake node, and an
answer the real node could never give would let a client bug pass, or fail
a test for nothing. The node's method registry (``node/rpc.py``'s
``REGISTRY``) declares each method's result as a JSON schema, and
``rpc.discover`` serves them; this module checks a value against such a
schema, so the fake node checks every answer it gives
(``tests/cli/fakenode.py``) and the real node's answers can be checked the
same way.

It understands the JSON Schema keywords the document uses — ``type``,
``enum``, ``const``, ``pattern``, ``minimum``, ``maximum``, ``required``,
``properties``, ``additionalProperties``, ``items``, ``minItems``,
``maxItems``, ``oneOf``, ``$ref`` (into ``#/components/schemas``), and the
annotations ``description`` and ``default`` — and refuses a schema with any
other keyword (:class:`SchemaError`), so a keyword added to the document
cannot be skipped silently here. Values are JSON as Python decodes it:
``bool`` is not an integer, and a ``pattern``'s ``$`` matches only at the
very end (as in JSON Schema, unlike Python's ``re``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache

__all__ = ["SchemaError", "method_result", "problems", "result_problems"]

_KEYWORDS = frozenset(
    {
        "$ref",
        "additionalProperties",
        "const",
        "default",
        "description",
        "enum",
        "items",
        "maxItems",
        "maximum",
        "minItems",
        "minimum",
        "oneOf",
        "pattern",
        "properties",
        "required",
        "type",
    }
)

_TYPES: dict[str, Callable[[object], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: type(v) is bool,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "string": lambda v: type(v) is str,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


class SchemaError(Exception):
    """A schema this checker does not understand (not a value that fails it)."""


@cache
def _pattern(text: str) -> re.Pattern[str]:
    # JSON Schema's "$" (ECMA-262, not multiline) is the end of the string.
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", text))


def _same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, and 1 is not "1"."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) in (int, float) and type(b) in (int, float):
        return a == b
    return type(a) is type(b) and a == b


def _resolve(document: Mapping[str, object], ref: object) -> object:
    """What a ``$ref`` names in ``document`` (a schema, checked where used)."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise SchemaError(f"only local references are understood, not {ref!r}")
    node: object = document
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise SchemaError(f"{ref!r} names nothing in the document")
        node = node[part]
    return node


def problems(
    schema: object, value: object, document: Mapping[str, object], path: str = "result"
) -> list[str]:
    """Why ``value`` does not conform to ``schema`` (whose ``$ref``\\ s point
    into ``document``): one line per problem, naming where it is; empty if
    it conforms."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: a schema is an object, not {schema!r}")
    unknown = schema.keys() - _KEYWORDS
    if unknown:
        raise SchemaError(f"{path}: keyword {sorted(unknown)[0]!r} is not understood")
    out: list[str] = []
    if "$ref" in schema:
        out += problems(_resolve(document, schema["$ref"]), value, document, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        for t in types:
            if t not in _TYPES:
                raise SchemaError(f"{path}: type {t!r} is not understood")
        if not any(_TYPES[t](value) for t in types):
            return [*out, f"{path}: {value!r} is not of type {' or '.join(types)}"]
    if "enum" in schema and not any(_same(value, c) for c in schema["enum"]):
        out.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _same(value, schema["const"]):
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    pattern = schema.get("pattern")
    if type(value) is str and pattern is not None and _pattern(pattern).search(value) is None:
        out.append(f"{path}: {value!r} does not match {schema['pattern']!r}")
    if type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value!r} is below the minimum {schema['minimum']!r}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value!r} is above the maximum {schema['maximum']!r}")
    if type(value) is list:
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(f"{path}: {len(value)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{path}: {len(value)} items, more than {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(value):
                out += problems(schema["items"], item, document, f"{path}[{i}]")
    if type(value) is dict:
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{path}: member {name!r} is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            where = f"{path}.{name}"
            if name in props:
                out += problems(props[name], item, document, where)
            elif extra is False:
                out.append(f"{path}: member {name!r} is not declared")
            elif isinstance(extra, dict):
                out += problems(extra, item, document, where)
    if "oneOf" in schema:
        fits = [not problems(s, value, document, path) for s in schema["oneOf"]]
        if fits.count(True) != 1:
            detail = "none" if not any(fits) else f"{fits.count(True)}"
            out.append(f"{path}: {value!r} matches {detail} of its oneOf schemas, not one")
    return out


def method_result(document: Mapping[str, object], method: str) -> object:
    """The result schema ``document`` declares for ``method``."""
    methods = document["methods"]
    if not isinstance(methods, list):
        raise SchemaError("the document's methods are not an array")
    for m in methods:
        if m["name"] == method:
            return m["result"]["schema"]
    raise KeyError(f"the document declares no method {method!r}")


def result_problems(document: Mapping[str, object], method: str, value: object) -> list[str]:
    """Why ``value`` is not a result ``method`` may give, per ``document``."""
    return problems(method_result(document, method), value, document, f"{method} result")
