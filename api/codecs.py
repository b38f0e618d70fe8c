"""How an API value is declared once and gets its JSON form, its JSON schema
and its parser from that one declaration.

Why this exists: every RPC result used to be declared three times — a JSON
schema for the OpenRPC document, a function writing the node's answer, a
client type reading it back — and the three could drift. Here a result is
one frozen dataclass (a :class:`Record`) whose fields each name a
:class:`Codec`; the schema, ``to_json`` and ``from_json`` are derived from
the fields, so what the document says, what the node writes and what the
client reads are the same thing by construction.

How it works:

* A :class:`Codec` knows one JSON shape: its ``schema``, ``dump`` (Python
  value → JSON) and ``load`` (JSON → Python value, checked, raising
  :class:`~mycelia.api.encoding.ParamError` naming the field). Scalars
  (``scalars.py``: ids, did:keys, decimal-string amounts…) use the
  functions of ``encoding.py``; :class:`Nullable`, :class:`ListOf` and
  :class:`Decoded` (a protocol object as the hex of its canonical bytes)
  combine them.
* A :class:`Record` subclass is a ``@dataclass(frozen=True, slots=True,
  kw_only=True)`` whose fields are declared with :func:`member`: a codec, a
  description for the schema, the JSON name if it differs, ``omit`` for a
  member left out of the JSON when None (and optional in the schema). A
  field with a default may be absent from the JSON it is read from (a node
  older than the field). ``COMPONENT`` names the record in the OpenRPC
  document's ``components/schemas`` (a ``$ref`` where it is used); without
  one its schema is written inline.
* Reading is strict about what is there (types, ranges, sizes, sub-objects)
  and lenient about members it does not know, so a newer node's extra
  member does not break an older client. Writing never fails for a value
  built from valid parts.
* Types: a ``Codec[T]`` writes a ``T`` (``dump``, to :data:`Json`) and reads
  one back from anything (``load`` takes ``object``: what a JSON decoder
  made, checked). :func:`member` is typed as its codec's ``T``, so mypy
  holds each field's annotation to its codec (``id: bytes = member(ID)``;
  an ``omit`` member's type must allow None), and a method's declaration
  (``methods.MethodSpec[T]``) types both the node's handler and the
  client's reading of the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import (
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    Self,
    TypeAlias,
    TypeVar,
    cast,
    overload,
)

from mycelia.api.encoding import ParamError, hex_in, hex_out

__all__ = [
    "AnyJson",
    "Canonical",
    "Codec",
    "Const",
    "Decoded",
    "Json",
    "ListOf",
    "Member",
    "Nullable",
    "Record",
    "RecordCodec",
    "RecordField",
    "Schema",
    "join",
    "member",
    "ref",
]

#: A JSON value as the ``json`` module writes it: what a codec dumps. (What a
#: codec loads is typed ``object``: anything a decoder produced, checked.)
#: An object is any Mapping (covariant: a dict of schemas is JSON); an array
#: is a list, not any Sequence, which bytes (never JSON) would be.
Json: TypeAlias = "bool | int | float | str | list[Json] | Mapping[str, Json] | None"
#: A JSON schema (an object).
Schema: TypeAlias = dict[str, Json]

T = TypeVar("T")
R = TypeVar("R", bound="Record")


class Canonical(Protocol):
    """A protocol object that keeps a canonical encoding (``Certificate``,
    ``SignedGenesis``, ``Entry``, ``ForkEvidence``…)."""

    def encode(self) -> bytes: ...

    @classmethod
    def decode(cls, data: bytes) -> Self: ...


C = TypeVar("C", bound=Canonical)
J = TypeVar("J", bound="Json")


def ref(name: str) -> Schema:
    """A ``$ref`` to a component of the OpenRPC document."""
    return {"$ref": f"#/components/schemas/{name}"}


def join(path: str, name: str | int) -> str:
    """The path of a member (``name``) or an item (an index) under ``path``."""
    if isinstance(name, int):
        return f"{path or 'result'}[{name}]"
    return f"{path}.{name}" if path else name


class Codec(Generic[T]):
    """One JSON shape: its schema, and how a value of ``T`` is written and read."""

    __slots__ = ("schema",)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def dump(self, value: T) -> Json:
        raise NotImplementedError

    def load(self, value: object, field: str) -> T:
        raise NotImplementedError


class AnyJson(Codec[Json]):
    """Any JSON, as is (the OpenRPC document, a registry's ad-hoc result)."""

    __slots__ = ()

    def dump(self, value: Json) -> Json:
        return value

    def load(self, value: object, field: str) -> Json:
        # The one codec that checks nothing: what it is given is what a JSON
        # decoder made.
        return cast("Json", value)


class Const(Codec[J]):
    """Always the same value (``unsubscribe``'s ``true``)."""

    __slots__ = ("value",)

    def __init__(self, value: J) -> None:
        super().__init__({"const": value})
        self.value = value

    def dump(self, value: J) -> Json:
        return self.value

    def load(self, value: object, field: str) -> J:
        if type(value) is not type(self.value) or value != self.value:
            raise ParamError(field, f"expected {self.value!r}")
        return self.value


class Nullable(Codec[T | None]):
    """``inner`` or null (None)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Codec[T]) -> None:
        schema = inner.schema
        if set(schema) == {"type"} and isinstance(schema["type"], str):
            nullable: Schema = {"type": [schema["type"], "null"]}
        else:
            nullable = {"oneOf": [schema, {"type": "null"}]}
        super().__init__(nullable)
        self.inner = inner

    def dump(self, value: T | None) -> Json:
        return None if value is None else self.inner.dump(value)

    def load(self, value: object, field: str) -> T | None:
        return None if value is None else self.inner.load(value, field)


class ListOf(Codec[tuple[T, ...]]):
    """An array of ``inner`` (a tuple in Python; any sequence is written)."""

    __slots__ = ("inner", "max_items", "min_items")

    def __init__(
        self,
        inner: Codec[T],
        *,
        min_items: int | None = None,
        max_items: int | None = None,
        schema: Schema | None = None,
    ) -> None:
        out: Schema = {"type": "array", "items": inner.schema}
        if min_items is not None:
            out["minItems"] = min_items
        if max_items is not None:
            out["maxItems"] = max_items
        super().__init__(out if schema is None else {**out, **schema})
        self.inner = inner
        self.min_items = min_items
        self.max_items = max_items

    def dump(self, value: Sequence[T]) -> Json:
        return [self.inner.dump(v) for v in value]

    def load(self, value: object, field: str) -> tuple[T, ...]:
        if type(value) is not list:
            raise ParamError(field or "result", "expected an array")
        if self.min_items is not None and len(value) < self.min_items:
            raise ParamError(field or "result", f"fewer than {self.min_items} items")
        if self.max_items is not None and len(value) > self.max_items:
            raise ParamError(field or "result", f"more than {self.max_items} items")
        return tuple(self.inner.load(v, join(field, i)) for i, v in enumerate(value))


class Decoded(Codec[C]):
    """A protocol object (``cls``, :class:`Canonical`) as the 0x-hex of its
    canonical bytes; at most ``max_size`` bytes."""

    __slots__ = ("cls", "max_size")

    def __init__(self, cls: type[C], schema: Schema, max_size: int = 1 << 20) -> None:
        super().__init__(schema)
        self.cls = cls
        self.max_size = max_size

    def dump(self, value: C) -> Json:
        return hex_out(value.encode())

    def load(self, value: object, field: str) -> C:
        data = hex_in(value, field, max_size=self.max_size)
        try:
            return self.cls.decode(data)
        except ValueError as exc:  # Refused is a ValueError
            detail = getattr(exc, "detail", "") or str(exc)
            raise ParamError(field, f"not a valid {self.cls.__name__}: {detail}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """How one field of a :class:`Record` appears in JSON."""

    # A record's fields hold values of different types: each its own codec.
    codec: Codec[Any]
    description: str | None = None
    #: the member's name in JSON, when it is not the field's
    json: str | None = None
    #: left out of the JSON when None (optional in the schema)
    omit: bool = False

    @property
    def schema(self) -> Schema:
        if self.description is None:
            return self.codec.schema
        return {**self.codec.schema, "description": self.description}


@overload
def member(
    codec: Codec[T],
    description: str | None = None,
    *,
    json: str | None = None,
    omit: Literal[False] = False,
    default: T = ...,
) -> T: ...
@overload
def member(
    codec: Codec[T],
    description: str | None = None,
    *,
    json: str | None = None,
    omit: Literal[True],
    default: T | None = ...,
) -> T | None: ...
def member(
    codec: Codec[Any],
    description: str | None = None,
    *,
    json: str | None = None,
    omit: bool = False,
    default: object = dataclasses.MISSING,
) -> Any:
    """A :class:`Record` field (a ``dataclasses.field`` carrying its
    :class:`Member`), typed as the value its ``codec`` reads, so a field
    declared with another type than its codec's does not type-check. An
    ``omit`` member defaults to None (its field type must allow None)."""
    if omit and default is dataclasses.MISSING:
        default = None
    return dataclasses.field(
        default=default, metadata={"api": Member(codec, description, json, omit)}
    )


@dataclasses.dataclass(frozen=True, slots=True)
class RecordField:
    """One field of a :class:`Record`: its Python name, its JSON name, how
    it is written, and whether it may be absent."""

    name: str
    json: str
    member: Member
    has_default: bool


_FIELDS: dict[type, tuple[RecordField, ...]] = {}


class Record:
    """The base of API values; see the module docstring."""

    __slots__ = ()
    #: the schema's name in the OpenRPC document's components (None: inline)
    COMPONENT: ClassVar[str | None] = None
    # Every subclass is a dataclass (the module docstring); declared here so
    # that ``dataclasses.fields`` takes the class.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @classmethod
    def fields(cls) -> tuple[RecordField, ...]:
        found = _FIELDS.get(cls)
        if found is None:
            out = []
            for f in dataclasses.fields(cls):
                m = f.metadata.get("api")
                if m is None:
                    raise TypeError(f"{cls.__name__}.{f.name} is not declared with member()")
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                out.append(RecordField(f.name, m.json or f.name, m, has_default))
            found = _FIELDS[cls] = tuple(out)
        return found

    @classmethod
    def schema(cls) -> Schema:
        """The record's JSON schema (an object, no other members)."""
        fields = cls.fields()
        return {
            "type": "object",
            "required": [f.json for f in fields if not f.member.omit],
            "properties": {f.json: f.member.schema for f in fields},
            "additionalProperties": False,
        }

    @classmethod
    def codec(cls) -> RecordCodec[Self]:
        return RecordCodec(cls)

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {}
        for f in self.fields():
            value = getattr(self, f.name)
            if value is None and f.member.omit:
                continue
            out[f.json] = f.member.codec.dump(value)
        return out

    @classmethod
    def from_json(cls, value: object, field: str = "") -> Self:
        """The record from its JSON object; :class:`ParamError` names what
        is wrong (``field`` is the object's own path)."""
        if type(value) is not dict:
            raise ParamError(field or "result", "expected an object")
        kwargs: dict[str, object] = {}
        for f in cls.fields():
            raw = value.get(f.json)
            if f.json not in value or (raw is None and f.member.omit):
                if f.has_default:
                    continue
                raise ParamError(join(field, f.json), "missing")
            kwargs[f.name] = cls._load(f, raw, join(field, f.json), kwargs)
        return cls(**kwargs)

    @classmethod
    def _load(cls, f: RecordField, raw: object, path: str, loaded: dict[str, object]) -> object:
        """One member's value (``loaded``: the members read before it). A
        record whose member depends on another overrides this."""
        return f.member.codec.load(raw, path)


class RecordCodec(Codec[R]):
    """A :class:`Record` inside another value: a ``$ref`` to its component,
    or its schema inline."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[R]) -> None:
        super().__init__(ref(cls.COMPONENT) if cls.COMPONENT else cls.schema())
        self.cls = cls

    def dump(self, value: R) -> Json:
        return value.to_json()

    def load(self, value: object, field: str) -> R:
        return self.cls.from_json(value, field)
