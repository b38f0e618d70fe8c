"""JSON-RPC 2.0, strictly: messages in, responses out, nothing about transports.

Why this exists: the node's RPC (``node/rpc/``) speaks JSON-RPC over HTTP and
over WebSocket frames, and both must answer a malformed message, a batch or
a bad parameter the same way, with the same codes (docs/rpc.md). So the
protocol lives here once, as a function from one message (bytes or text) to
one response (text, or None when nothing is to be sent), and the transports
only move bytes and enforce their own limits (body size, connections).

How it works:

* A :class:`Registry` holds :class:`Method` s: a declaration
  (``mycelia.api.methods.MethodSpec``: a name, a summary, its ``Param`` list
  — name, JSON schema, required, description, and the parser that turns the
  JSON value into what the handler takes — and its result codec) and the
  handler that answers it. Handlers are plain ``async def`` functions called
  with the parsed params as keyword arguments; what they return is written
  by the declaration's result codec. The OpenRPC document (``rpc.discover``)
  is generated from the same declarations (:meth:`Registry.openrpc`), so it
  cannot drift from what the server accepts and answers.
* :meth:`Dispatcher.handle` parses the message, validates each request object
  (``"jsonrpc": "2.0"``, a string ``method``, ``params`` an object or an
  array or absent, ``id`` a string, an integer or null, no other member),
  binds the params (by name or by position, in the declared order), runs the
  handler and builds the response. A batch runs its requests one after the
  other, in order, so a batch may prepare, submit and then read an entry.
  Notifications (no ``id``) run and get no response; a batch of only
  notifications gets None, which HTTP turns into 204.
* Errors: handlers raise :class:`RpcError` (or ``views.ParamError``, which
  becomes ``-32602`` naming the field). The ``translate`` hook lets the
  application turn its own exceptions (protocol refusals) into RpcErrors;
  anything else is logged and answered ``-32603`` without detail, so an
  internal message never leaks to a client. Every error carries
  ``data = {"reason": <stable code>, "detail": <text>, ...}``, the standard
  codes included, so a client can always switch on ``data.reason``.
* Text that is not Unicode: JSON may escape a lone UTF-16 surrogate
  (``"\\ud800"``), which decodes to a Python string that cannot be encoded
  as UTF-8 — so it can neither be stored nor echoed back in an answer. It is
  refused where the message is decoded, before any handler sees it, as the
  part of the message it is in: in ``params`` (a value or a parameter name)
  ``-32602`` naming the field; anywhere else in a request object (``id``,
  ``method``, a member name) ``-32600``, with a null id. Other requests of a
  batch are answered as usual. :func:`lone_surrogate` finds such strings
  for the sensor ingest too.
* Nothing a client sends reaches an unhandled exception: an exception a
  handler did not mean (a bug) is logged once, with its traceback, and
  answered ``-32603``; :func:`encode` never makes text that cannot be sent.

A JSON ``null`` given for an optional param means "absent": a client can pass
back a ``next_cursor`` of null as is, and fill positional slots it skips.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeAlias, TypeGuard, TypeVar

from mycelia.api import contract
from mycelia.api.codecs import AnyJson, Codec, Json, Schema
from mycelia.api.contract import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT,
    MESSAGES,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    REFUSED,
    UNAVAILABLE,
)
from mycelia.api.encoding import NOT_UNICODE, ParamError
from mycelia.api.methods import MethodSpec, Param, openrpc

__all__ = [
    "BATCH_TOO_LARGE",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "NOT_UNICODE",
    "PARSE_ERROR",
    "REFUSED",
    "UNAVAILABLE",
    "Dispatcher",
    "Method",
    "Param",
    "Registry",
    "RpcError",
    "encode",
    "error_response",
    "loads",
    "lone_surrogate",
    "may_hold_surrogates",
]

log = logging.getLogger("mycelia.rpc")

BATCH_TOO_LARGE = contract.BATCH_TOO_LARGE


class RpcError(Exception):
    """An error response: ``code``, the standard ``message`` for it, and
    ``data = {"reason", "detail", **extra}``."""

    def __init__(self, code: int, reason: str, detail: str = "", **extra: Json) -> None:
        super().__init__(f"{code} {reason}: {detail}")
        self.code = code
        self.reason = reason
        self.detail = detail
        self.extra = extra

    @classmethod
    def invalid_params(cls, field: str, detail: str) -> RpcError:
        return cls(INVALID_PARAMS, "invalid_params", detail, field=field)

    def to_json(self) -> dict[str, Json]:
        data: dict[str, Json] = {"reason": self.reason, "detail": self.detail, **self.extra}
        return {"code": self.code, "message": MESSAGES.get(self.code, "Error"), "data": data}


def error_response(error: RpcError, request_id: Json = None) -> dict[str, Json]:
    return {"jsonrpc": "2.0", "error": error.to_json(), "id": request_id}


def encode(message: Json) -> str:
    """Compact JSON; NaN and infinities cannot occur (nothing here makes floats).

    Always text that encodes as UTF-8: should a lone surrogate reach an
    answer after all, it is written as its ``\\uXXXX`` escape (ASCII-only
    JSON) instead of failing the write of the answer."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if _SURROGATE.search(text) is None:
        return text
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


# -- decoding -------------------------------------------------------------------------

#: The only strings a Python ``str`` can hold that UTF-8 cannot encode.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: JSON text that may decode to such a string: a \uD800-\uDFFF escape (or
#: the character itself in a ``str``). ``\\ud800`` (an escaped backslash)
#: matches too: a false alarm only costs :func:`lone_surrogate` a walk.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _no_constants(name: str) -> NoReturn:
    # json accepts NaN/Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str) -> object:
    """Strict JSON: UTF-8 (when bytes), no NaN or infinities. Raises
    ``ValueError`` (``UnicodeDecodeError`` for bytes that are not UTF-8) or
    ``RecursionError`` (nesting too deep). Strings in the value may still
    hold lone surrogates: see :func:`lone_surrogate`."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return json.loads(text, parse_constant=_no_constants)


def may_hold_surrogates(text: str) -> bool:
    """False when the JSON ``text`` cannot decode to a string holding a lone
    surrogate, so the (rare) walk of :func:`lone_surrogate` can be skipped."""
    return _MAYBE_SURROGATE.search(text) is not None


#: A path to a value, as the steps from the root: (parent's chain, step) or None.
_Chain: TypeAlias = "tuple[_Chain, str | int] | None"


def lone_surrogate(value: object, path: str = "") -> tuple[str, bool] | None:
    """Where the first string in the decoded JSON ``value`` that cannot be
    encoded as UTF-8 is: ``(path, False)`` for a value, ``(path of its
    object, True)`` for a member name, None if there is none. Paths read as
    the fields of ``mycelia.api`` do (``body.metrics[0].name``), under ``path``.

    Iterative, not recursive: the JSON decoder accepts nesting deeper than
    a recursive walk could follow from inside a request handler."""
    # (value, its path as a (parent, step) chain): paths are spelled out only
    # for the one string refused, not for every value walked.
    stack: list[tuple[object, _Chain]] = [(value, None)]
    while stack:
        item, chain = stack.pop()
        if type(item) is str:
            if _SURROGATE.search(item) is not None:
                return _spell(path, chain), False
        elif type(item) is dict:
            for name in item:
                if _SURROGATE.search(name) is not None:
                    return _spell(path, chain), True
            stack.extend((v, (chain, k)) for k, v in reversed(item.items()))
        elif type(item) is list:
            stack.extend((item[i], (chain, i)) for i in range(len(item) - 1, -1, -1))
    return None


def _spell(path: str, chain: _Chain) -> str:
    steps: list[str | int] = []
    while chain is not None:
        chain, step = chain
        steps.append(step)
    out = path
    for step in reversed(steps):
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out = f"{out}.{step}" if out else step
    return out


# -- declarations ---------------------------------------------------------------------

R = TypeVar("R")
#: A method's handler: called with the dispatcher's context, the session and
#: the parsed params by name; returns what the declaration's codec writes.
Handler: TypeAlias = Callable[..., Awaitable[R]]


@dataclass(frozen=True, slots=True)
class Method(Generic[R]):
    """A declared method (``mycelia.api.methods``) and its handler, which
    returns what the declaration's result codec takes."""

    spec: MethodSpec[R]
    handler: Handler[R]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def params(self) -> tuple[Param, ...]:
        return self.spec.params

    @property
    def result(self) -> Schema:
        """The result's JSON schema."""
        return self.spec.result.schema

    @property
    def codec(self) -> Codec[R]:
        return self.spec.result


@dataclass(slots=True)
class Registry:
    """The methods a server offers, and the shared JSON schemas they refer
    to as ``{"$ref": "#/components/schemas/<name>"}``."""

    schemas: dict[str, Schema] = field(default_factory=dict)
    #: each method's own result type
    methods: dict[str, Method[Any]] = field(default_factory=dict)

    def add(self, method: Method[Any]) -> None:
        if method.name in self.methods:
            raise ValueError(f"method {method.name} registered twice")
        names = [p.name for p in method.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{method.name}: duplicate param names")
        self.methods[method.name] = method

    def implement(self, spec: MethodSpec[R]) -> Callable[[Handler[R]], Handler[R]]:
        """Decorator: ``handler`` answers the declared method ``spec``; it
        returns the result as the declaration's codec takes it (an API
        value), which writes it."""

        def register(handler: Handler[R]) -> Handler[R]:
            self.add(Method(spec, handler))
            return handler

        return register

    def method(
        self,
        name: str,
        summary: str,
        *params: Param,
        result: Schema,
        result_name: str = "result",
        description: str = "",
        errors: tuple[int, ...] = (),
    ) -> Callable[[Handler[Json]], Handler[Json]]:
        """Decorator: a method declared here, its result any JSON the
        handler returns, described by the schema ``result``."""
        spec = MethodSpec(name, summary, params, AnyJson(result), result_name, description, errors)
        return self.implement(spec)

    def bind(self, method: Method[Any], params: object) -> dict[str, object]:
        """The handler's keyword arguments from the request's ``params``
        (already known to be absent, a list or a dict)."""
        declared = method.params
        if params is None:
            given: dict[str, object] = {}
        elif isinstance(params, list):
            if len(params) > len(declared):
                raise RpcError.invalid_params(
                    "params", f"{method.name} takes at most {len(declared)} positional params"
                )
            given = {p.name: v for p, v in zip(declared, params, strict=False)}
        else:
            assert isinstance(params, dict)
            known = {p.name for p in declared}
            for name in params:
                if name not in known:
                    raise RpcError.invalid_params(name, "unknown parameter")
            given = params
        out: dict[str, object] = {}
        for p in declared:
            value = given.get(p.name)
            if value is None and not p.required:
                continue  # absent or null: the handler's default applies
            if p.name not in given:
                raise RpcError.invalid_params(p.name, "missing")
            out[p.name] = p.parse(value, p.name)
        return out

    def openrpc(self, info: dict[str, Json]) -> dict[str, Json]:
        """An OpenRPC 1.2.6 document describing every registered method."""
        return openrpc(info, (m.spec for m in self.methods.values()), self.schemas)


# -- dispatching -------------------------------------------------------------------

_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
_NO_ID = object()


def _valid_id(value: object) -> TypeGuard[int | str | None]:
    """Whether ``value`` is a request id (not ``_NO_ID``, the absence of one)."""
    return (
        value is None
        or type(value) is int
        or (type(value) is str and _SURROGATE.search(value) is None)
    )


def _not_unicode(found: tuple[str, bool]) -> str:
    path, is_name = found
    if is_name:
        return (
            f"a member name in {path} is {NOT_UNICODE}"
            if path
            else f"a member name is {NOT_UNICODE}"
        )
    return f"{path} is {NOT_UNICODE}"


@dataclass(frozen=True, slots=True)
class Dispatcher:
    """Runs messages against a registry. ``context`` is passed to every
    handler as its first argument (the application's state); ``translate``
    maps application exceptions to :class:`RpcError` (or returns None)."""

    registry: Registry
    context: object
    max_batch: int
    translate: Callable[[Exception], RpcError | None] = lambda exc: None

    async def handle(self, message: bytes | str, session: object) -> str | None:
        """The response text for ``message``, or None when there is none
        (notifications). ``session`` reaches the handler as its second
        argument (the connection: None over HTTP)."""
        try:
            return await self._handle(message, session)
        except Exception:  # a bug here must not become the transport's 500 or 1011
            log.exception("rpc message failed")
            return encode(error_response(_internal()))

    async def _handle(self, message: bytes | str, session: object) -> str | None:
        try:
            text = message.decode("utf-8") if isinstance(message, bytes) else message
            payload = loads(text)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            detail = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
            return encode(error_response(RpcError(PARSE_ERROR, "parse_error", detail)))
        suspect = may_hold_surrogates(text)
        if isinstance(payload, list):
            if not payload:
                error = RpcError(INVALID_REQUEST, "invalid_request", "an empty batch")
                return encode(error_response(error))
            if len(payload) > self.max_batch:
                error = RpcError(
                    LIMIT,
                    BATCH_TOO_LARGE,
                    f"{len(payload)} requests in a batch; at most {self.max_batch}",
                    limit=self.max_batch,
                )
                return encode(error_response(error))
            responses: list[Json] = []
            for item in payload:
                response = await self._one(item, session, suspect)
                if response is not None:
                    responses.append(response)
            return encode(responses) if responses else None
        response = await self._one(payload, session, suspect)
        return None if response is None else encode(response)

    async def _one(self, request: object, session: object, suspect: bool) -> dict[str, Json] | None:
        if not isinstance(request, dict):
            error = RpcError(INVALID_REQUEST, "invalid_request", "a request is a JSON object")
            return error_response(error)
        request_id: object = request.get("id", _NO_ID)
        problem = self._invalid(request, suspect)
        if problem is not None:
            # Echo the id when it is one; else null, as JSON-RPC 2.0 says.
            echo = request_id if _valid_id(request_id) else None
            return error_response(RpcError(INVALID_REQUEST, "invalid_request", problem), echo)
        try:
            # Valid: the method is a string, params absent, an object or an array.
            result = await self._call(request["method"], request.get("params"), session, suspect)
        except RpcError as exc:
            error = exc
        else:
            if _valid_id(request_id):
                return {"jsonrpc": "2.0", "result": result, "id": request_id}
            return None  # a notification (no id: a bad one was refused above)
        return error_response(error, request_id) if _valid_id(request_id) else None

    @staticmethod
    def _invalid(request: dict[str, object], suspect: bool) -> str | None:
        """Why ``request`` is not a JSON-RPC 2.0 request object, or None
        (``params`` aside: they are the method's to refuse)."""
        if suspect:
            envelope = {k: v for k, v in request.items() if k != "params"}
            found = lone_surrogate(envelope)
            if found is not None:
                return _not_unicode(found)
        extra = request.keys() - _MEMBERS
        if extra:
            return f"unknown member {sorted(extra)[0]!r}"
        if request.get("jsonrpc") != "2.0":
            return 'jsonrpc must be "2.0"'
        if type(request.get("method")) is not str:
            return "method must be a string"
        if "params" in request and not isinstance(request["params"], list | dict):
            return "params must be an object or an array"
        if "id" in request and not _valid_id(request["id"]):
            return "id must be a string, an integer or null"
        return None

    async def _call(self, name: str, params: object, session: object, suspect: bool) -> Json:
        method = self.registry.methods.get(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, "method_not_found", f"no method {name!r}")
        if suspect:
            _check_unicode(method, params)
        try:
            kwargs = self.registry.bind(method, params)
            return method.codec.dump(await method.handler(self.context, session, **kwargs))
        except RpcError:
            raise
        except ParamError as exc:
            raise RpcError.invalid_params(exc.field, exc.detail) from None
        except Exception as exc:
            translated = self.translate(exc)
            if translated is not None:
                raise translated from None
            log.exception("rpc method %s failed", name)
            raise _internal() from None


def _internal() -> RpcError:
    return RpcError(INTERNAL_ERROR, "internal_error", "see the node's log")


def _check_unicode(method: Method[Any], params: object) -> None:
    """Refuse params holding a string that is not Unicode text (-32602),
    naming the param as :meth:`Registry.bind` would, by name or position."""
    if isinstance(params, dict):
        named = list(params.items())
    elif isinstance(params, list):
        declared = method.params
        named = [
            (declared[i].name if i < len(declared) else f"params[{i}]", value)
            for i, value in enumerate(params)
        ]
    else:
        return
    for name, value in named:
        if _SURROGATE.search(name) is not None:
            raise RpcError.invalid_params("params", f"a parameter name is {NOT_UNICODE}")
        found = lone_surrogate(value, name)
        if found is not None:
            path, is_name = found
            detail = f"a member name is {NOT_UNICODE}" if is_name else NOT_UNICODE
            raise RpcError.invalid_params(path, detail)
