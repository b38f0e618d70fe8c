"""The wallet RPC: JSON-RPC 2.0 over HTTP and WebSocket (docs/rpc.md).

Why this exists: wallets, the ``mycelia`` CLI and scripts need the node's
state and a way to submit signed entries, without speaking libp2p or
msgpack. This module is only a translator: every validity and balance rule
stays in ``protocol/``; a method parses its params with ``views.py``, calls
the node-internal API (``Node.submit``, ``Node.add_economy``, the store's
readers) and writes the answer with ``views.py``. A protocol refusal
(:class:`Refused`) becomes ``-32001`` with its reason; nothing refused
changes anything stored, because refusals happen before the node stores.

How it works:

* The methods are declared in :data:`REGISTRY` (``jsonrpc.py`` holds the
  generic machinery: request validation, batches, error objects, OpenRPC),
  each with its params' schemas and parsers, so ``rpc.discover`` documents
  exactly what is accepted.
* Transport: a Starlette app (``POST /``, WebSocket ``/ws``) behind one
  ASGI guard that checks the cookie (401 with ``WWW-Authenticate`` and an
  empty body, also for a WebSocket handshake, through the ASGI denial
  response) and the connection limit, before any route runs. Hypercorn's
  trio connection handler speaks HTTP/1.1 and WebSocket; :func:`serve_rpc`
  binds the sockets itself and serves them through :class:`_Listener`.
  Why not ``hypercorn.trio.serve``: hypercorn shields every socket write
  from cancellation, so one client that stops reading would block its
  connection task — and the clean stop — forever. Binding ourselves lets
  every write give up after ``send_timeout_s`` (:class:`_Stream`), closes
  every connection at once at stop, makes the unix socket 0600 before it
  listens (no umask games), and reports the real port for port 0.
* Slow and idle clients (docs/rpc.md, "Limits"): each costs a connection
  task and perhaps one of ``rpc.max_connections``, so each is bounded in
  time — headers within ``rpc.header_timeout_s`` (hypercorn's keep-alive
  timer, which runs until a request's headers are complete), a body within
  ``rpc.body_timeout_s`` (:func:`read_body`: 408), a WebSocket without
  subscriptions closed after ``rpc.ws_idle_timeout_s`` without a message —
  and in number: a :class:`Gate` at accept caps TCP connections from
  addresses other than loopback (in all and per address), and the guard
  keeps ``rpc.unix_reserve`` slots that only the unix socket may take, so
  slow or idle TCP clients cannot lock the local wallet out. The sensor
  ingest is served by the same machinery (:func:`serve_http`) with its
  own caps.
* Subscriptions (WebSocket only): :class:`Hub` listens to the applier
  (every applied certificate: which subscribed accounts it touched), to
  the submitter (entry statuses) and to the fork monitor (new fork
  evidence, ``forks.py``), all synchronous callbacks on the trio thread
  that must never block. So each connection (:class:`Session`) has a
  bounded outbox drained by its own writer task; a notification that finds
  the outbox full closes that connection (code 1008) instead of waiting: a
  slow client loses its connection, the node loses nothing. Notifications
  raised while a message is being answered wait until its response is
  queued, so a client always learns a subscription id before its first
  notification.
* Files in the datadir: ``.cookie`` (0600, new at every start), ``rpc.sock``
  (0600) and ``rpc.endpoint`` (the addresses actually bound); all removed at
  a clean stop.

Structured concurrency: :func:`serve_rpc` owns one nursery holding the
listeners and every connection's tasks (hypercorn's included); each
WebSocket's reader and writer live in that connection's own nursery.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hmac
import importlib.metadata
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from mycelia.node import wire
from mycelia.node.config import ConfigError, RpcConfig, check_rpc, split_host_port
from mycelia.node.jsonrpc import (
    INVALID_REQUEST,
    LIMIT,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    REFUSED,
    UNAVAILABLE,
    Dispatcher,
    Param,
    Registry,
    RpcError,
    encode,
    error_response,
)
from mycelia.node.p2p import P2PError
from mycelia.node.submitter import CERTIFIED, PENDING, UNKNOWN, Status
from mycelia.node.submitter import REFUSED as REFUSED_STATE
from mycelia.node.validator import StoreView
from mycelia.node.views import (
    ParamError,
    account_view,
    body_in,
    certificate_view,
    claimable_view,
    did_in,
    did_out,
    economy_view,
    entry_view,
    fork_view,
    hex_in,
    hex_out,
    int_in,
    str_in,
)
from mycelia.protocol import (
    ZERO_ID,
    Certificate,
    ClaimCursor,
    DeviceRecord,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    Refused,
    SensorAttest,
    SignedEntry,
    SignedGenesis,
    entry_accounts,
    impact,
    next_entry,
    schema,
)
from mycelia.protocol.domains import ENTRY
from mycelia.protocol.economy import MAX_GENESIS_BYTES, MAX_SIGNED_GENESIS_BYTES
from mycelia.protocol.entries import MAX_ENTRY_BYTES
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain

if TYPE_CHECKING:  # daemon imports this module for serve()
    from mycelia.node.daemon import Node

__all__ = [
    "REGISTRY",
    "Api",
    "BodyTimeout",
    "Gate",
    "Hub",
    "RpcEndpoints",
    "RpcServer",
    "Session",
    "http_refusal",
    "http_url",
    "is_loopback",
    "openrpc_document",
    "read_body",
    "serve_http",
    "serve_rpc",
    "status_view",
    "write_private_file",
]

log = logging.getLogger("mycelia.rpc")

COOKIE_FILE = ".cookie"
COOKIE_USER = "__cookie__"
SOCKET_FILE = "rpc.sock"
ENDPOINT_FILE = "rpc.endpoint"
#: Messages a WebSocket's outbox holds before a notification closes it.
OUTBOX_SIZE = 1024
#: A socket write that makes no progress for this long closes the connection.
SEND_TIMEOUT_S = 10.0
#: What the rest of an oversized HTTP body may be read (and dropped) up to,
#: as a multiple of the limit, so that a client still sending reads our 413
#: instead of a connection reset; beyond it the connection just closes.
_DRAIN_FACTOR = 4
#: AF_UNIX paths are at most 107 bytes on Linux (108 with the NUL).
_MAX_UNIX_PATH = 107
#: WebSocket close codes (RFC 6455 §7.4.1).
WS_NORMAL_CLOSURE = 1000
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
#: How long a connection refused at accept (too many) is given to read its
#: 503 before it is closed, and how much of what it sent is read meanwhile.
_REFUSAL_LINGER_S = 1.0
_REFUSAL_DRAIN_BYTES = 64 * 1024
#: Refusals being answered at once per gate; beyond, a flood is closed unanswered.
_MAX_REFUSING = 256

try:
    VERSION = importlib.metadata.version("mycelia")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"


# -- JSON schemas shared by the method declarations ------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str] | None, optional: dict[str, Any] | None = None, **props: Any) -> dict:
    """An object schema: ``props`` (all required when ``required`` is None)
    and ``optional`` ones; no other member."""
    return {
        "type": "object",
        "required": list(props) if required is None else required,
        "properties": {**props, **(optional or {})},
        "additionalProperties": False,
    }


_PAYMENT = _obj(["to", "amount"], to=_ref("Did"), amount=_ref("Amount"), memo={"type": "string"})
_ENTRY_FIELDS = {
    "id": _ref("Id"),
    "economy": _ref("Id"),
    "author": _ref("Did"),
    "seq": {"type": "integer", "minimum": 1},
    "prev": _ref("Id"),
    "ts_ms": {"type": "integer", "minimum": 0},
    "kind": _ref("Kind"),
    "body": _ref("Body"),
}
_INT = {"type": "integer", "minimum": 0}

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
    "Kind": {
        "enum": [
            "transfer",
            "mint",
            "burn",
            "member.admit",
            "credit.set",
            "device.register",
            "sensor.attest",
            "impact.claim",
        ]
    },
    "Body": {
        "description": "by kind: transfer/mint {to, amount, memo?}; burn {amount}; "
        "member.admit {member}; credit.set {member, limit}; device.register, sensor.attest, "
        "impact.claim: docs/sensors.md (counters are integers, metric values decimal strings)",
        "oneOf": [
            _PAYMENT,
            _obj(["amount"], amount=_ref("Amount")),
            _obj(["member"], member=_ref("Did")),
            _obj(["member", "limit"], member=_ref("Did"), limit=_ref("SignedAmount")),
            _ref("DeviceRegisterBody"),
            _ref("SensorAttestBody"),
            _ref("ImpactClaimBody"),
        ],
    },
    "Counter": {"type": "integer", "minimum": 0, "maximum": (1 << 64) - 1},
    "Int64": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a signed 64-bit value of a metric as a decimal string",
    },
    "DeviceRegisterBody": _obj(
        ["key_type", "public_key", "device_kind", "host", "metrics", "pop"],
        {"device": {**_ref("Id"), "description": "the device id (derived from the key)"}},
        key_type={"enum": ["ed25519", "p256"]},
        public_key=_ref("Hex"),
        device_kind={"type": "string"},
        host=_ref("Did"),
        metrics={
            "type": "array",
            "items": _obj(
                None,
                name={"type": "string"},
                unit={"type": "string"},
                exponent={"type": "integer", "minimum": -18, "maximum": 18},
                min=_ref("Int64"),
                max=_ref("Int64"),
            ),
        },
        pop={**_ref("Hex"), "description": "the device key's proof of possession"},
    ),
    "SensorAttestBody": _obj(
        None,
        root=_ref("Id"),
        count={"type": "integer", "minimum": 1},
        devices={
            "type": "array",
            "items": _obj(
                None,
                device=_ref("Id"),
                registration=_ref("Id"),
                first=_ref("Counter"),
                last=_ref("Counter"),
                count={"type": "integer", "minimum": 1},
                aggregates={
                    "type": "array",
                    "items": _obj(
                        None,
                        metric={"type": "string"},
                        sum=_ref("Int64"),
                        min=_ref("Int64"),
                        max=_ref("Int64"),
                    ),
                },
            ),
        },
    ),
    "ImpactClaimBody": _obj(
        None,
        device=_ref("Id"),
        first_counter=_ref("Counter"),
        last_counter=_ref("Counter"),
        attestations={"type": "array", "items": _ref("Id")},
        total=_ref("Int64"),
    ),
    "EntryView": _obj(list(_ENTRY_FIELDS), **_ENTRY_FIELDS),
    "CertifiedEntry": _obj(
        [*_ENTRY_FIELDS, "certificate"],
        **_ENTRY_FIELDS,
        certificate={**_ref("Hex"), "description": "the certificate's bytes"},
    ),
    "EntryStatus": _obj(
        ["id", "status"],
        {
            "reason": {
                "type": "string",
                "description": "refused: the protocol reason; pending: the refusal (depending "
                "on the validators' state) that is being asked again",
            },
            "detail": {"type": "string"},
            "retryable": {
                "type": "boolean",
                "description": "refused: true when the reason depended on what the validators "
                "had seen (the node gave up at its deadline): the same entry may still be "
                "certified, e.g. submitted again",
            },
            "waiting_on": {**_INT, "description": "pending: validators found unreachable"},
            "certificate": _ref("Hex"),
            "view": _ref("EntryView"),
        },
        id=_ref("Id"),
        status={"enum": [PENDING, CERTIFIED, REFUSED_STATE]},
    ),
    "Account": _obj(
        None,
        account=_ref("Did"),
        balance=_ref("SignedAmount"),
        limit={
            "oneOf": [_ref("SignedAmount"), {"type": "null"}],
            "description": "the credit limit in force (mutual credit); null in issued",
        },
        seq=_INT,
        head=_ref("Id"),
        ts_ms={**_INT, "description": "the head entry's timestamp (0 before the first entry)"},
        member={"type": "boolean"},
        minted=_ref("SignedAmount"),
        burned=_ref("SignedAmount"),
    ),
    "EconomySummary": _obj(
        None,
        id=_ref("Id"),
        name={"type": "string"},
        symbol={"type": "string"},
        decimals=_INT,
        kind={"enum": ["mutual_credit", "issued", "impact"]},
        quorum=_INT,
        validators={"type": "array", "items": _ref("Did")},
        certificates={**_INT, "description": "certified entries this node holds"},
        forks={**_INT, "description": "chain slots this node holds fork evidence for"},
    ),
    "Economy": _obj(
        None,
        id=_ref("Id"),
        name={"type": "string"},
        symbol={"type": "string"},
        decimals=_INT,
        kind={"enum": ["mutual_credit", "issued", "impact"]},
        membership={"enum": ["open", "approved"]},
        stewards={"type": "array", "items": _ref("Did")},
        default_limit={"oneOf": [_ref("SignedAmount"), {"type": "null"}]},
        issuers={
            "type": "array",
            "items": _obj(["account", "cap"], account=_ref("Did"), cap=_ref("Amount")),
        },
        impact={
            "oneOf": [
                _obj(
                    None,
                    metric={"type": "string"},
                    exponent={"type": "integer"},
                    units_per_credit=_ref("Amount"),
                    device_kinds={"type": "array", "items": {"type": "string"}},
                ),
                {"type": "null"},
            ],
            "description": "an impact economy's policy; null in other kinds",
        },
        validators={
            "type": "array",
            "items": _obj(["did", "weight"], did=_ref("Did"), weight=_INT),
        },
        quorum=_INT,
        ts_ms=_INT,
        nonce=_ref("Hex"),
        genesis={**_ref("Hex"), "description": "the signed genesis' bytes"},
        accounts={**_INT, "description": "accounts with any state on this node"},
        certificates={**_INT, "description": "certified entries this node holds"},
    ),
    "Fork": _obj(
        None,
        economy=_ref("Id"),
        author={**_ref("Did"), "description": "the author whose chain forked"},
        seq={"type": "integer", "minimum": 1, "description": "the slot with two certificates"},
        entries={
            "type": "array",
            "items": _ref("EntryView"),
            "minItems": 2,
            "maxItems": 2,
            "description": "the two certified entries, in the evidence's order",
        },
        guilty={
            "type": "array",
            "items": _ref("Did"),
            "description": "the validators that signed both certificates",
        },
        evidence={
            **_ref("Hex"),
            "description": 'the evidence\'s bytes, ["fork", 1, cert, cert]: proves the rest',
        },
    ),
    "NodeInfo": _obj(
        None,
        did=_ref("Did"),
        peer_id={"type": "string"},
        version={"type": "string"},
        addresses={
            "type": "array",
            "items": {"type": "string"},
            "description": "libp2p listen multiaddrs",
        },
        rpc={
            "type": "array",
            "items": {"type": "string"},
            "description": "the RPC's HTTP URLs as bound: rpc.host:rpc.port, then rpc.extra_bind",
        },
        rpc_unix={
            "type": ["string", "null"],
            "description": "the RPC's unix socket (absolute path); null without one",
        },
        metrics={
            "type": ["string", "null"],
            "description": "the Prometheus endpoint (http://HOST:PORT/metrics); null when off",
        },
        ingest={
            "type": ["string", "null"],
            "description": "the sensor ingest's base URL (POST /v1/readings); null when off",
        },
        validator={"type": "boolean", "description": "votes where its key is a validator"},
        economies={
            "type": "array",
            "items": _ref("Id"),
            "description": "ids of the economies this node follows",
        },
        pending={**_INT, "description": "submissions awaiting certification"},
        sync_lag={**_INT, "description": "certificates peers hold that this node lacks"},
    ),
}


# -- param parsers (views.py does the work; these only fix the options) ---------------


def _id_in(value: Any, field: str) -> bytes:
    return hex_in(value, field, size=32)


def _cursor_in(value: Any, field: str) -> int:
    text = str_in(value, field, max_bytes=19)
    if not text.isascii() or not text.isdigit() or text.startswith("0"):
        raise ParamError(field, "expected a cursor from a previous page (a decimal string)")
    return int(text)


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def parse(value: Any, field: str) -> str:
        if value not in choices or type(value) is not str:
            raise ParamError(field, f"one of {', '.join(choices)}")
        return value

    return parse


def _economy_param(description: str = "the economy id") -> Param:
    return Param("economy", _ref("Id"), description, _id_in)


def _account_param(name: str = "account", description: str = "the account") -> Param:
    return Param(name, _ref("Did"), description, did_in)


# -- the methods -----------------------------------------------------------------------

REGISTRY = Registry(schemas=SCHEMAS)
method = REGISTRY.method


@dataclass(slots=True)
class Api:
    """What every method handler gets first: the node and the RPC settings."""

    node: Node
    config: RpcConfig
    hub: Hub
    openrpc: dict[str, Any] = field(default_factory=dict)

    def economy(self, economy_id: bytes) -> Economy:
        economy = self.node.applier.economies.get(economy_id)
        if economy is None:
            detail = f"this node does not know economy {hex_out(economy_id)}"
            raise RpcError(NOT_FOUND, "unknown_economy", detail)
        return economy

    def certificates(self, economy_id: bytes) -> tuple[int, int]:
        """(accounts with state, certified entries) of an economy on this
        node: counters the store keeps with every batch, not a scan."""
        return self.node.store.sizes_of(economy_id)


def _ws_only(session: Session | None, name: str) -> Session:
    if session is None:
        raise RpcError(
            METHOD_NOT_FOUND, "websocket_only", f"{name} works over the WebSocket (/ws) only"
        )
    return session


@method(
    "node_info",
    "This node: its key, peer id, every address it listens on, and load.",
    result=_ref("NodeInfo"),
)
async def node_info(api: Api, session: Session | None) -> dict[str, Any]:
    node = api.node
    listening = node.listening
    return {
        "did": node.key.did,
        "peer_id": node.p2p.peer_id,
        "version": VERSION,
        "addresses": node.addresses,
        "rpc": list(listening.rpc),
        "rpc_unix": listening.rpc_unix,
        "metrics": listening.metrics,
        "ingest": listening.ingest,
        "validator": node.settings.validator,
        "economies": sorted(hex_out(e) for e in node.follow),
        "pending": node.submitter.pending_count,
        "sync_lag": node.sync.lag,
    }


@method(
    "node_peers",
    "The libp2p peers this node is connected to.",
    result={"type": "array", "items": _obj(["peer_id"], peer_id={"type": "string"})},
)
async def node_peers(api: Api, session: Session | None) -> list[dict[str, Any]]:
    return [{"peer_id": peer} for peer in api.node.p2p.peers()]


@method(
    "economy_list",
    "The economies this node holds a genesis for.",
    result={"type": "array", "items": _ref("EconomySummary")},
)
async def economy_list(api: Api, session: Session | None) -> list[dict[str, Any]]:
    out = []
    for economy in api.node.applier.economies.values():
        g = economy.genesis
        out.append(
            {
                "id": hex_out(economy.id),
                "name": g.name,
                "symbol": g.symbol,
                "decimals": g.decimals,
                "kind": g.kind,
                "quorum": g.quorum,
                "validators": [did_out(k) for k in economy.validators],
                "certificates": api.certificates(economy.id)[1],
                "forks": api.node.forks.count(economy.id),
            }
        )
    return out


@method(
    "economy_get",
    "One economy: its genesis, policy, validators and size on this node.",
    _economy_param(),
    result=_ref("Economy"),
    errors=(NOT_FOUND,),
)
async def economy_get(api: Api, session: Session | None, economy: bytes) -> dict[str, Any]:
    api.economy(economy)
    signed = api.node.store.economy(economy)
    if signed is None:  # known to the applier, so stored; a race with nothing
        raise RpcError(NOT_FOUND, "unknown_economy", "no stored genesis")
    view = economy_view(signed)
    view["accounts"], view["certificates"] = api.certificates(economy)
    return view


@method(
    "economy_signGenesis",
    "Sign an unsigned genesis with this node's key, if it names it as a validator.",
    Param(
        "genesis",
        _ref("Hex"),
        "the unsigned genesis' canonical bytes",
        lambda v, f: hex_in(v, f, max_size=MAX_GENESIS_BYTES),
    ),
    result=_obj(["validator", "signature"], validator=_ref("Did"), signature=_ref("Signature")),
    description="Refused with not_validator (-32004) unless this node's key is a validator "
    "of the genesis; a genesis that breaks the protocol's rules is refused (-32001).",
    errors=(REFUSED, UNAVAILABLE),
)
async def economy_sign_genesis(api: Api, session: Session | None, genesis: bytes) -> dict[str, Any]:
    g = Genesis.decode(genesis)
    key = api.node.key
    if all(v.key != key.public for v in g.validators):
        raise RpcError(
            UNAVAILABLE, "not_validator", f"this node's key {key.did} is not a validator of it"
        )
    return {"validator": key.did, "signature": hex_out(g.sign(key))}


@method(
    "economy_create",
    "Store, follow and serve a signed genesis (idempotent).",
    Param(
        "genesis",
        _ref("Hex"),
        "the signed genesis' canonical bytes (with a quorum of validator signatures)",
        lambda v, f: hex_in(v, f, max_size=MAX_SIGNED_GENESIS_BYTES),
    ),
    result=_obj(["id"], id=_ref("Id")),
    description="A genesis without a quorum of valid signatures is refused (bad_genesis).",
    errors=(REFUSED,),
)
async def economy_create(api: Api, session: Session | None, genesis: bytes) -> dict[str, Any]:
    economy = await api.node.add_economy(SignedGenesis.decode(genesis))
    return {"id": hex_out(economy.id)}


@method(
    "economy_follow",
    "Follow an economy by id; its genesis is fetched from peers if unknown.",
    _economy_param(),
    result=_obj(
        ["id", "known"],
        id=_ref("Id"),
        known={"type": "boolean", "description": "whether this node already holds its genesis"},
    ),
)
async def economy_follow(api: Api, session: Session | None, economy: bytes) -> dict[str, Any]:
    known = economy in api.node.applier.economies
    await api.node.follow_economy(economy)
    return {"id": hex_out(economy), "known": known}


def _fork_cursor_in(value: Any, field: str) -> bytes:
    return hex_in(value, field, size=40)


@method(
    "economy_forks",
    "Forks in an economy: two certificates for one chain slot, and who signed both.",
    _economy_param(),
    Param(
        "cursor",
        {"type": ["string", "null"]},
        "next_cursor of the previous page; absent or null for the first page",
        _fork_cursor_in,
        required=False,
    ),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 50},
        "most forks in the page (default 50 or rpc.max_page if lower; at most rpc.max_page)",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["forks", "next_cursor"],
        forks={"type": "array", "items": _ref("Fork")},
        next_cursor={"type": ["string", "null"], "description": "null on the last page"},
    ),
    description="In (author, seq) order. Each fork's evidence proves, offline and against "
    "the genesis alone, that the validators in guilty signed two entries for one slot; this "
    "node applies nothing of that author at or past seq (docs/rpc.md, Forks). Subscribe to "
    "topic forks for new ones.",
    errors=(NOT_FOUND, LIMIT),
)
async def economy_forks(
    api: Api,
    session: Session | None,
    economy: bytes,
    cursor: bytes | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    if limit is None:
        limit = min(50, api.config.max_page)
    elif limit > api.config.max_page:
        raise RpcError(
            LIMIT,
            "page_too_large",
            f"limit {limit} is above rpc.max_page ({api.config.max_page})",
            limit=api.config.max_page,
        )
    econ = api.economy(economy)
    store = api.node.store
    slots = [a + n.to_bytes(8, "big") for a, n in store.fork_slots(economy)]
    if cursor is not None:
        slots = [k for k in slots if k > cursor]
    out = []
    for k in slots[:limit]:
        raw = store.fork(economy, k[:32], int.from_bytes(k[32:], "big"))
        if raw is not None:
            out.append(fork_view(econ, ForkEvidence.decode(raw)))
    more = len(slots) > limit
    return {"forks": out, "next_cursor": hex_out(slots[limit - 1]) if more else None}


@method(
    "account_get",
    "An account's state in an economy.",
    _economy_param(),
    _account_param(),
    result=_ref("Account"),
    errors=(NOT_FOUND,),
)
async def account_get(
    api: Api, session: Session | None, economy: bytes, account: bytes
) -> dict[str, Any]:
    econ = api.economy(economy)
    return account_view(econ, account, api.node.store.account(economy, account))


@method(
    "account_history",
    "Certified entries that changed an account, newest first, a page at a time.",
    _economy_param(),
    _account_param(),
    Param(
        "cursor",
        {"type": ["string", "null"]},
        "next_cursor of the previous page; absent or null for the newest page",
        _cursor_in,
        required=False,
    ),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 50},
        "most entries in the page (default 50, at most rpc.max_page)",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["entries", "next_cursor"],
        entries={"type": "array", "items": _ref("CertifiedEntry")},
        next_cursor={"type": ["string", "null"], "description": "null on the last page"},
    ),
    errors=(NOT_FOUND, LIMIT),
)
async def account_history(
    api: Api,
    session: Session | None,
    economy: bytes,
    account: bytes,
    cursor: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    if limit > api.config.max_page:
        raise RpcError(
            LIMIT,
            "page_too_large",
            f"limit {limit} is above rpc.max_page ({api.config.max_page})",
            limit=api.config.max_page,
        )
    api.economy(economy)
    # One more than asked tells whether a next page exists.
    items = api.node.store.history(economy, account, cursor, limit + 1)
    page = items[:limit]
    entries = [certificate_view(Certificate.decode(data), data) for _, data in page]
    more = len(items) > limit
    return {"entries": entries, "next_cursor": str(page[-1][0]) if more else None}


@method(
    "entry_prepare",
    "Build an unsigned entry: its id, canonical bytes and the message to sign.",
    _economy_param(),
    _account_param("author", "the author (who signs it)"),
    Param("kind", _ref("Kind"), "the entry kind", lambda v, f: str_in(v, f, max_bytes=32)),
    Param("body", _ref("Body"), "the body, in the JSON view of its kind"),
    Param(
        "seq",
        {"type": "integer", "minimum": 1},
        "default: the author's next seq in this node's store",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    Param(
        "prev",
        _ref("Id"),
        "default: the id of the author's entry at seq - 1, from this node's store",
        _id_in,
        required=False,
    ),
    Param("ts_ms", {"type": "integer", "minimum": 0}, "default: now", int_in, required=False),
    result=_obj(
        ["id", "entry", "signing_message", "view"],
        id=_ref("Id"),
        entry={**_ref("Hex"), "description": "the canonical unsigned entry bytes"},
        signing_message={**_ref("Hex"), "description": "sign these bytes with Ed25519"},
        view=_ref("EntryView"),
    ),
    errors=(REFUSED, NOT_FOUND),
)
async def entry_prepare(
    api: Api,
    session: Session | None,
    economy: bytes,
    author: bytes,
    kind: str,
    body: Any,
    seq: int | None = None,
    prev: bytes | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    api.economy(economy)
    parsed = body_in(kind, body)
    store = api.node.store
    acct = store.account(economy, author)
    now_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    if seq is None and prev is None and ts_ms is None:
        return _prepared(next_entry(economy, author, acct, parsed, now_ms))
    if seq is None:
        seq = acct.seq + 1
    if prev is None:
        if seq == acct.seq + 1:
            prev = acct.head
        elif seq == 1:
            prev = ZERO_ID
        else:
            found = store.chain_range(economy, author, seq - 1, 1)
            if not found:
                raise ParamError("prev", f"this node does not hold the author's entry {seq - 1}")
            prev = Certificate.decode(found[0]).entry_id
    if ts_ms is None:  # never before the head's: check would refuse ts_regression
        ts_ms = max(now_ms, acct.ts_ms) if seq == acct.seq + 1 else now_ms
    return _prepared(Entry(economy, author, seq, prev, ts_ms, parsed))


def _prepared(entry: Entry) -> dict[str, Any]:
    entry_id = entry.id
    return {
        "id": hex_out(entry_id),
        "entry": hex_out(entry.encode()),
        "signing_message": hex_out(ENTRY.message(entry_id)),
        "view": entry_view(entry, entry_id),
    }


@method(
    "entry_submit",
    "Submit a signed entry for certification; returns once it is durable.",
    Param(
        "entry",
        _ref("Hex"),
        "the unsigned entry bytes (entry_prepare's entry)",
        lambda v, f: hex_in(v, f, max_size=MAX_ENTRY_BYTES),
    ),
    Param(
        "signature",
        _ref("Signature"),
        "the author's Ed25519 signature of signing_message",
        lambda v, f: hex_in(v, f, size=64),
    ),
    result=_obj(["id"], id=_ref("Id")),
    description="Returns before certification: follow it with entry_get or an entry "
    "subscription. Refused (-32001) for a bad signature or an economy this node does not "
    "follow; everything else is the validators' to decide.",
    errors=(REFUSED,),
)
async def entry_submit(
    api: Api, session: Session | None, entry: bytes, signature: bytes
) -> dict[str, Any]:
    signed = SignedEntry(Entry.decode(entry), signature)
    return {"id": hex_out(await api.node.submit(signed))}


def status_view(status: Status) -> dict[str, Any]:
    """The ``entry_get`` result (and an ``entry`` notification) for a status."""
    out: dict[str, Any] = {"id": hex_out(status.entry_id), "status": status.state}
    if status.state == PENDING:
        out["waiting_on"] = status.waiting_on
        if status.reason is not None:
            out["reason"] = status.reason.value
            out["detail"] = status.detail
    elif status.state == REFUSED_STATE:
        out["reason"] = status.reason.value if status.reason else ""
        out["detail"] = status.detail
        out["retryable"] = not status.final
    elif status.certificate is not None:
        cert = status.certificate
        out["certificate"] = hex_out(cert.encode())
        out["view"] = entry_view(cert.entry, cert.entry_id)
    return out


def _known_status(api: Api, entry_id: bytes) -> Status:
    status = api.node.submitter.status(entry_id)
    if status.state == UNKNOWN:
        raise RpcError(NOT_FOUND, "unknown_entry", f"this node knows no entry {hex_out(entry_id)}")
    return status


@method(
    "entry_get",
    "An entry's status: pending, certified (with its certificate) or refused.",
    Param("id", _ref("Id"), "the entry id", _id_in),
    result=_ref("EntryStatus"),
    errors=(NOT_FOUND,),
)
async def entry_get(api: Api, session: Session | None, id: bytes) -> dict[str, Any]:
    return status_view(_known_status(api, id))


@method(
    "subscribe",
    "Subscribe to an account's certified entries, an entry's status or an economy's forks "
    "(WebSocket only).",
    Param(
        "topic",
        {"enum": ["account", "entry", "forks"]},
        "account, entry or forks",
        _choice("account", "entry", "forks"),
    ),
    Param(
        "economy", _ref("Id"), "topics account and forks: the economy id", _id_in, required=False
    ),
    Param("account", _ref("Did"), "topic account: the account", did_in, required=False),
    Param("id", _ref("Id"), "topic entry: the entry id", _id_in, required=False),
    result={"type": "string", "description": "the subscription id"},
    description="Notifications: {jsonrpc, method: 'subscription', params: {subscription, "
    "result}}. account: a CertifiedEntry for every certificate applied that changed the "
    "account. entry: the entry_get result at every status change (at once if already final); "
    "an entry subscription ends after its final status. forks: a Fork (as economy_forks "
    "lists) for every fork this node newly finds evidence of in the economy; economy_forks "
    "lists those found before. By position: [topic, economy, account], [topic, null, null, "
    "id] or [topic, economy].",
    errors=(NOT_FOUND, LIMIT),
)
async def subscribe(
    api: Api,
    session: Session | None,
    topic: str,
    economy: bytes | None = None,
    account: bytes | None = None,
    id: bytes | None = None,
) -> str:
    ws = _ws_only(session, "subscribe")
    needed = {"account": ("economy", "account"), "entry": ("id",), "forks": ("economy",)}[topic]
    given = {"economy": economy, "account": account, "id": id}
    for name, value in given.items():
        if name in needed and value is None:
            raise ParamError(name, f"missing (topic {topic})")
        if name not in needed and value is not None:
            raise ParamError(name, f"not a parameter of topic {topic}")
    if len(ws.subscriptions) >= api.config.max_subscriptions:
        raise RpcError(
            LIMIT,
            "too_many_subscriptions",
            f"this WebSocket holds {len(ws.subscriptions)} subscriptions already "
            f"(rpc.max_subscriptions)",
            limit=api.config.max_subscriptions,
        )
    if topic == "account":
        assert economy is not None and account is not None
        api.economy(economy)
        return api.hub.watch_account(ws, economy, account).id
    if topic == "forks":
        assert economy is not None
        api.economy(economy)
        return api.hub.watch_forks(ws, economy).id
    assert id is not None
    status = _known_status(api, id)
    if status.state == PENDING:
        return api.hub.watch_entry(ws, id).id
    # Final already: one notification, after the response that names it.
    sub = ws.new_subscription("entry")
    ws.notify(sub.id, status_view(status))
    ws.end(sub)
    return sub.id


@method(
    "unsubscribe",
    "End a subscription of this WebSocket.",
    Param("subscription", {"type": "string"}, "the subscription id", str_in),
    result={"const": True},
)
async def unsubscribe(api: Api, session: Session | None, subscription: str) -> bool:
    ws = _ws_only(session, "unsubscribe")
    if not ws.issued(subscription):
        raise ParamError("subscription", "not a subscription of this WebSocket")
    sub = ws.subscriptions.get(subscription)
    if sub is not None:
        api.hub.forget(sub)
    return True


# -- sensors (docs/sensors.md, "Node interfaces") ----------------------------------------

#: Most attestations one sensor_claimable answer lists (a claim names at most 16).
MAX_CLAIMABLE = 1024


def _counter_param(name: str, description: str) -> Param:
    return Param(
        name,
        _ref("Counter"),
        description,
        lambda v, f: int_in(v, f, high=schema.UINT64_MAX),
        required=False,
    )


def _registration(api: Api, economy: bytes, device: bytes) -> DeviceRecord:
    raw = api.node.store.record(economy, DeviceRecord.key(device))
    if raw is None:
        raise RpcError(
            NOT_FOUND, "unknown_device", f"device {hex_out(device)} is not registered there"
        )
    return DeviceRecord.decode(raw)


def _hex_or_null(data: bytes) -> str | None:
    return hex_out(data) if data else None


@method(
    "sensor_getReadings",
    "A device's readings, each with its attestation and Merkle proof once attested.",
    _economy_param(),
    Param("device", _ref("Id"), "the device id", _id_in),
    _counter_param("first", "the lowest counter (default 0)"),
    _counter_param("last", "the highest counter (default 2^64 - 1)"),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 100},
        f"most readings (default 100 or rpc.max_page if lower; at most rpc.max_page and "
        f"{wire.MAX_AUDIT_READINGS})",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["readings", "next"],
        readings={
            "type": "array",
            "items": _obj(
                None,
                reading={**_ref("Hex"), "description": "the signed-reading bytes"},
                attestation={"oneOf": [_ref("Id"), {"type": "null"}]},
                proof={
                    "oneOf": [_ref("Hex"), {"type": "null"}],
                    "description": "the MerkleProof bytes",
                },
            ),
        },
        next={
            "oneOf": [_ref("Counter"), {"type": "null"}],
            "description": "pass as first for the next page; null on the last page",
        },
    ),
    description="Answered from this node's store when it hosts the device; otherwise asked "
    "of the device's host over /mycelia/audit/1 and relayed unverified (verify each reading "
    "with the attestation certificate: sensor_getAttestation). Errors: unknown_device "
    "(-32002), host_unreachable (-32004).",
    errors=(NOT_FOUND, LIMIT, UNAVAILABLE),
)
async def sensor_get_readings(
    api: Api,
    session: Session | None,
    economy: bytes,
    device: bytes,
    first: int = 0,
    last: int = schema.UINT64_MAX,
    limit: int | None = None,
) -> dict[str, Any]:
    most = min(api.config.max_page, wire.MAX_AUDIT_READINGS)
    if limit is None:
        limit = min(100, most)
    elif limit > most:
        raise RpcError(
            LIMIT, "page_too_large", f"limit {limit} is above {most} (rpc.max_page)", limit=most
        )
    api.economy(economy)
    record = _registration(api, economy, device)
    request = wire.AuditRequest(economy, device, first, last, limit)
    node = api.node
    if record.host == node.key.public:
        items, next_counter = await node.audit.readings(request)
    else:
        try:
            items, next_counter = await node.audit.ask(record.host, request)
        except (P2PError, Refused) as exc:
            raise RpcError(
                UNAVAILABLE,
                "host_unreachable",
                f"the device's host {did_out(record.host)} did not answer: {exc}",
            ) from None
    return {
        "readings": [
            {
                "reading": hex_out(i.signed),
                "attestation": _hex_or_null(i.attestation),
                "proof": _hex_or_null(i.proof),
            }
            for i in items
        ],
        "next": next_counter,
    }


@method(
    "sensor_getAttestation",
    "A certified sensor.attest: its certificate and entry view.",
    Param("id", _ref("Id"), "the attestation's entry id", _id_in),
    result=_obj(["certificate", "view"], certificate=_ref("Hex"), view=_ref("EntryView")),
    description="From this node's store, else fetched by id from its peers (and verified). "
    "unknown_attestation (-32002) if nobody has it or it is not a sensor.attest.",
    errors=(NOT_FOUND,),
)
async def sensor_get_attestation(api: Api, session: Session | None, id: bytes) -> dict[str, Any]:
    data = api.node.store.certificate_bytes(id)
    cert = Certificate.decode(data) if data is not None else None
    if cert is None:
        cert = await api.node.audit.fetch_certificate(id)
    if cert is None or cert.entry.kind != SensorAttest.kind:
        what = "no certified entry" if cert is None else f"a {cert.entry.kind}, not an attestation"
        raise RpcError(NOT_FOUND, "unknown_attestation", f"{hex_out(id)}: {what}")
    return {"certificate": hex_out(cert.encode()), "view": entry_view(cert.entry, cert.entry_id)}


@method(
    "sensor_claimable",
    "A device's certified attestations after its owner's claim cursor: what to claim next.",
    _economy_param(),
    Param("device", _ref("Id"), "the device id", _id_in),
    result=_obj(
        ["cursor", "carry", "attestations"],
        cursor={"type": "integer", "description": "the last counter claimed; -1: none"},
        carry={**_ref("Int64"), "description": "units carried to the next claim"},
        attestations={
            "type": "array",
            "items": _obj(
                None,
                id=_ref("Id"),
                first=_ref("Counter"),
                last=_ref("Counter"),
                count={"type": "integer", "minimum": 1},
                total={**_ref("Int64"), "description": "the economy metric's sum in the row"},
            ),
        },
    ),
    description="In counter order, at most 1024. An impact.claim names 1-16 of them from the "
    "first, in order, with total = the sum of their totals.",
    errors=(NOT_FOUND, REFUSED),
)
async def sensor_claimable(
    api: Api, session: Session | None, economy: bytes, device: bytes
) -> dict[str, Any]:
    econ = api.economy(economy)
    _ = econ.impact  # not_allowed outside impact economies (before unknown_device)
    record = _registration(api, economy, device)
    store = api.node.store
    view = StoreView(store, economy)
    raw = store.record(economy, ClaimCursor.key(record.owner, device))
    after = (ClaimCursor() if raw is None else ClaimCursor.decode(raw)).last
    candidates = store.attestations_of(economy, device, after, MAX_CLAIMABLE)
    return claimable_view(impact.claimable(econ, view, device, candidates))


@method(
    "sensor_devices",
    "The devices this node hosts in an economy, with its ingest state of each.",
    _economy_param(),
    result={
        "type": "array",
        "items": _obj(
            None,
            device=_ref("Id"),
            owner=_ref("Did"),
            kind={"type": "string", "description": "the device_kind"},
            last_accepted={
                "oneOf": [_ref("Counter"), {"type": "null"}],
                "description": "the last counter ingest accepted; null: none yet",
            },
            last_attested={
                "oneOf": [_ref("Counter"), {"type": "null"}],
                "description": "the last counter certified in an attestation; null: none",
            },
            readings={**_INT, "description": "readings this node stores"},
        ),
    },
    errors=(NOT_FOUND,),
)
async def sensor_devices(api: Api, session: Session | None, economy: bytes) -> list[dict[str, Any]]:
    api.economy(economy)
    store = api.node.store
    me = api.node.key.public
    out = []
    for raw in store.records(economy, DeviceRecord.key(b"")).values():
        record = DeviceRecord.decode(raw)
        if record.host != me:
            continue
        state = store.ingest_state(record.device)
        if state is not None and state.economy != economy:
            state = None
        out.append(
            {
                "device": hex_out(record.device),
                "owner": did_out(record.owner),
                "kind": record.body.device_kind,
                "last_accepted": None if state is None else state.last_accepted,
                "last_attested": store.last_attested(economy, record.device),
                "readings": 0 if state is None else state.readings,
            }
        )
    return out


@method(
    "rpc.discover",
    "This API's OpenRPC 1.2.6 document.",
    result={"type": "object", "description": "an OpenRPC 1.2.6 document"},
    result_name="OpenRPC",
)
async def rpc_discover(api: Api, session: Session | None) -> dict[str, Any]:
    return api.openrpc


def openrpc_document() -> dict[str, Any]:
    return REGISTRY.openrpc(
        {
            "title": "mycelia node",
            "version": VERSION,
            "description": "The wallet RPC of a mycelia node. Transport, auth, encoding "
            "rules, error codes and subscriptions: docs/rpc.md.",
        }
    )


def _needs_view(need: Need) -> dict[str, Any]:
    if isinstance(need, NeedChain):
        return {
            "type": "chain",
            "author": did_out(need.author),
            "after_seq": need.after_seq,
            "through": hex_out(need.through),
        }
    if isinstance(need, NeedAdmission):
        return {"type": "admission", "account": did_out(need.account)}
    assert isinstance(need, NeedCertificate)
    return {"type": "certificate", "id": hex_out(need.id)}


def translate(exc: Exception) -> RpcError | None:
    """A protocol refusal is -32001 with its reason (and needs)."""
    if isinstance(exc, Refused):
        extra = {"needs": [_needs_view(n) for n in exc.needs]} if exc.needs else {}
        return RpcError(REFUSED, exc.reason.value, exc.detail, **extra)
    return None


# -- subscriptions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    id: str
    session: Session
    topic: str
    #: (economy, account) for an account subscription, (entry id,) for an entry
    #: one, (economy,) for a forks one
    key: tuple[bytes, ...] = ()


class Session:
    """One WebSocket: its subscriptions and its bounded outbox.

    ``notify`` is called from synchronous callbacks and never blocks: when
    the outbox is full the session is marked ``overflowed`` and its scope
    cancelled, which ends the connection (1008). ``active_at`` is when it
    last did something (a message came, an answer was queued, a
    subscription ended), for the idle timeout of :meth:`RpcServer._ws_idle`."""

    def __init__(self, hub: Hub, outbox_size: int) -> None:
        self.hub = hub
        self.subscriptions: dict[str, Subscription] = {}
        self.outbox, self.outbox_out = trio.open_memory_channel[str](outbox_size)
        self.scope = trio.CancelScope()
        self.overflowed = False
        #: the close code and reason once the server has ended the session
        self.closing: tuple[int, str] | None = None
        self.active_at = trio.current_time()
        self._issued = 0
        self._held: list[str] | None = None

    def touch(self) -> None:
        self.active_at = trio.current_time()

    @property
    def busy(self) -> bool:
        """Whether a message is being answered."""
        return self._held is not None

    def close(self, code: int, reason: str) -> None:
        """End the connection (from any task): its scope is cancelled, then
        the server closes the WebSocket with ``code``."""
        if self.closing is None:
            self.closing = (code, reason)
        self.scope.cancel()

    # -- subscriptions
    def new_subscription(self, topic: str, key: tuple[bytes, ...] = ()) -> Subscription:
        self._issued += 1
        sub = Subscription(f"0x{self._issued:x}", self, topic, key)
        self.subscriptions[sub.id] = sub
        return sub

    def issued(self, sub_id: str) -> bool:
        """Whether ``sub_id`` was ever given to this session (ended or not)."""
        if not sub_id.startswith("0x") or not 2 < len(sub_id) <= 18:
            return False
        try:
            n = int(sub_id[2:], 16)
        except ValueError:
            return False
        return f"0x{n:x}" == sub_id and 1 <= n <= self._issued

    def end(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)
        self.touch()  # the idle time counts from the last subscription's end

    # -- the outbox
    def notify(self, sub_id: str, result: Any) -> None:
        if self.overflowed:
            return
        text = encode(
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": sub_id, "result": result},
            }
        )
        if self._held is not None:
            used = self.outbox.statistics().current_buffer_used
            if used + len(self._held) >= self.outbox.statistics().max_buffer_size:
                self._overflow()
            else:
                self._held.append(text)
            return
        self._push(text)

    def _push(self, text: str) -> None:
        try:
            self.outbox.send_nowait(text)
        except trio.WouldBlock:
            self._overflow()
        except trio.ClosedResourceError:
            pass  # the connection is ending

    def _overflow(self) -> None:
        queued = self.outbox.statistics().current_buffer_used
        log.info("closing a WebSocket that reads too slowly (%d messages queued)", queued)
        self.overflowed = True
        self.close(WS_POLICY_VIOLATION, "too slow: notifications overflowed")
        self.hub.drop(self)

    def hold(self) -> None:
        """Until :meth:`release`: keep notifications back (a response is being made)."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        self.touch()
        for text in held:
            if self.overflowed:
                return
            self._push(text)


class Hub:
    """Which sessions watch which accounts, entries and economies' forks; fed
    by the applier, the submitter and the fork monitor. Its callbacks run on
    the trio thread inside those services, so they do only lookups and
    non-blocking sends, and never raise into them."""

    def __init__(self, node: Node) -> None:
        self.node = node
        #: economy -> account -> subscriptions
        self._accounts: dict[bytes, dict[bytes, dict[Subscription, None]]] = {}
        #: entry id -> subscriptions
        self._entries: dict[bytes, dict[Subscription, None]] = {}
        #: economy -> forks subscriptions
        self._forks: dict[bytes, dict[Subscription, None]] = {}
        self._closed = False
        # The services offer no way to remove a listener; a closed hub's
        # listeners stay registered and do nothing.
        node.applier.on_applied(self._on_applied)
        node.submitter.subscribe(self._on_status)
        node.forks.subscribe(self._on_fork)

    def close(self) -> None:
        self._closed = True
        self._accounts.clear()
        self._entries.clear()
        self._forks.clear()

    def watch_account(self, session: Session, economy: bytes, account: bytes) -> Subscription:
        sub = session.new_subscription("account", (economy, account))
        self._accounts.setdefault(economy, {}).setdefault(account, {})[sub] = None
        return sub

    def watch_entry(self, session: Session, entry_id: bytes) -> Subscription:
        sub = session.new_subscription("entry", (entry_id,))
        self._entries.setdefault(entry_id, {})[sub] = None
        return sub

    def watch_forks(self, session: Session, economy: bytes) -> Subscription:
        sub = session.new_subscription("forks", (economy,))
        self._forks.setdefault(economy, {})[sub] = None
        return sub

    def forget(self, sub: Subscription) -> None:
        sub.session.end(sub)
        if sub.topic == "forks":
            subs = self._forks.get(sub.key[0], {})
            subs.pop(sub, None)
            if not subs:
                self._forks.pop(sub.key[0], None)
        elif sub.topic == "account":
            economy, account = sub.key
            by_account = self._accounts.get(economy, {})
            subs = by_account.get(account, {})
            subs.pop(sub, None)
            if not subs:
                by_account.pop(account, None)
                if not by_account:
                    self._accounts.pop(economy, None)
        else:
            subs = self._entries.get(sub.key[0], {})
            subs.pop(sub, None)
            if not subs:
                self._entries.pop(sub.key[0], None)

    def drop(self, session: Session) -> None:
        for sub in list(session.subscriptions.values()):
            self.forget(sub)

    def _on_applied(self, economy_id: bytes, certs: tuple[Certificate, ...]) -> None:
        by_account = self._accounts.get(economy_id)
        if not by_account or self._closed:
            return
        try:
            for cert in certs:
                view: dict[str, Any] | None = None
                for account in entry_accounts(cert.entry):
                    for sub in list(by_account.get(account, ())):
                        view = view or certificate_view(cert, cert.encode())
                        sub.session.notify(sub.id, view)
        except Exception:  # never into the applier: it is the node's one writer
            log.exception("account notifications failed")

    def _on_fork(self, economy_id: bytes, evidence: ForkEvidence) -> None:
        subs = self._forks.get(economy_id)
        if not subs or self._closed:
            return
        try:
            view = fork_view(self.node.applier.economies[economy_id], evidence)
            for sub in list(subs):
                sub.session.notify(sub.id, view)
        except Exception:  # never into the fork monitor (the writer calls it)
            log.exception("fork notifications failed")

    def _on_status(self, status: Status) -> None:
        if self._closed or status.state == PENDING:
            return
        subs = self._entries.pop(status.entry_id, None)
        if not subs:
            return
        try:
            view = status_view(status)
            for sub in subs:
                sub.session.notify(sub.id, view)
                sub.session.end(sub)  # final: the subscription is over
        except Exception:  # never into the submitter
            log.exception("entry notifications failed")


# -- HTTP and WebSocket ------------------------------------------------------------------


def _json_response(message: Any, status_code: int = 200, *, close: bool = False) -> Response:
    headers = {"connection": "close"} if close else None
    return Response(
        encode(message), status_code=status_code, headers=headers, media_type="application/json"
    )


def _too_large(limit: int) -> RpcError:
    return RpcError(
        LIMIT,
        "request_too_large",
        f"larger than rpc.max_request_bytes ({limit} bytes)",
        limit=limit,
    )


TOO_MANY_CONNECTIONS = "too_many_connections"
REQUEST_TIMEOUT = "request_timeout"


def _too_many_connections(limit: int, setting: str = "rpc.max_connections") -> RpcError:
    what = "from this address " if setting.endswith("per_address") else ""
    return RpcError(
        LIMIT,
        TOO_MANY_CONNECTIONS,
        f"{limit} connections {what}are open already ({setting})",
        limit=limit,
    )


class _Guard:
    """Before any route: the cookie, then the connection limit. A connection
    here is an HTTP request being answered or an open WebSocket; one that
    came over the unix socket may also take one of ``rpc.unix_reserve``
    more slots, so that clients over TCP (slow ones, idle WebSockets)
    cannot lock the local wallet out. Hypercorn reports no client address
    for a unix socket, which is how it is told from TCP."""

    def __init__(self, app: ASGIApp, server: RpcServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.server.authorized(scope["headers"]):
            await _deny(scope, receive, send)
            return
        config = self.server.config
        limit = config.max_connections
        local = scope.get("client") is None
        if self.server.active >= limit + (config.unix_reserve if local else 0):
            await _busy(scope, receive, send, _too_many_connections(limit))
            return
        self.server.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.server.active -= 1


_UNAUTHORIZED = [(b"www-authenticate", b'Basic realm="mycelia"'), (b"content-length", b"0")]


async def _deny(scope: Scope, receive: Receive, send: Send) -> None:
    """401, an empty body, nothing else: for HTTP and for a WebSocket handshake."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 401, "headers": _UNAUTHORIZED})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {"type": "websocket.http.response.start", "status": 401, "headers": _UNAUTHORIZED}
        )
        await send({"type": "websocket.http.response.body", "body": b""})
    else:  # a server without the denial extension: refuse before accepting
        await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})


async def _busy(scope: Scope, receive: Receive, send: Send, error: RpcError) -> None:
    body = encode(error_response(error))
    if scope["type"] == "http":
        response = Response(body, status_code=503, media_type="application/json")
        await response(scope, receive, send)
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": body})
    await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER})


class BodyTimeout(Exception):
    """A request body did not arrive within its time."""


async def read_body(request: Request, limit: int, timeout: float) -> bytes | None:
    """The body, or None if it is larger than ``limit``; raises
    :class:`BodyTimeout` if it is not all there within ``timeout`` seconds
    (a client trickling a body would otherwise hold its connection, and one
    of the server's slots, for as long as it likes)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > _DRAIN_FACTOR * limit:
        return None
    chunks, size = [], 0
    with trio.move_on_after(timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                # Read the rest (dropped, bounded) before answering 413.
                if size > _DRAIN_FACTOR * limit:
                    return None
                continue
            chunks.append(chunk)
        return None if size > limit else b"".join(chunks)
    raise BodyTimeout


class RpcServer:
    """The ASGI app and its state: auth, the connection count, the methods."""

    def __init__(
        self, node: Node, config: RpcConfig, cookie: str | None, *, outbox_size: int = OUTBOX_SIZE
    ) -> None:
        self.config = config
        self.hub = Hub(node)
        self.api = Api(node, config, self.hub, openrpc_document())
        self.dispatcher = Dispatcher(REGISTRY, self.api, config.max_batch, translate)
        self.outbox_size = outbox_size
        self.active = 0
        #: "__cookie__:<hex>" and "<hex>"; None when auth is off
        self._cookie = cookie
        self._secret = cookie.partition(":")[2] if cookie else None
        self.app = Starlette(
            routes=[
                Route("/", self._http, methods=["POST"]),
                WebSocketRoute("/ws", self._websocket),
            ],
            middleware=[Middleware(_Guard, server=self)],
        )

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self._cookie is None or self._secret is None:
            return True
        value = next((v for k, v in headers if k.lower() == b"authorization"), None)
        if value is None:
            return False
        scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.encode(), self._secret.encode())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except ValueError:
                return False
            return hmac.compare_digest(decoded, self._cookie.encode())
        return False

    async def _http(self, request: Request) -> Response:
        limit = self.config.max_request_bytes
        timeout = self.config.body_timeout_s
        try:
            body = await read_body(request, limit, timeout)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        except BodyTimeout:
            error = RpcError(
                LIMIT,
                REQUEST_TIMEOUT,
                f"the body did not arrive within rpc.body_timeout_s ({timeout:g} s)",
                limit=timeout,
            )
            return _json_response(error_response(error), 408, close=True)
        if body is None:
            return _json_response(error_response(_too_large(limit)), 413)
        reply = await self.dispatcher.handle(body, None)
        if reply is None:
            return Response(status_code=204)
        return Response(reply, media_type="application/json")

    async def _websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        session = Session(self.hub, self.outbox_size)
        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._ws_writer, websocket, session)
                    nursery.start_soon(self._ws_idle, session, self.config.ws_idle_timeout_s)
                    await self._ws_reader(websocket, session)
                    nursery.cancel_scope.cancel()
        finally:
            self.hub.drop(session)
            session.outbox.close()
        if session.closing is not None:
            with contextlib.suppress(Exception):
                await websocket.close(*session.closing)

    @staticmethod
    async def _ws_idle(session: Session, timeout: float) -> None:
        """Close ``session`` once it has held no subscription, sent no message
        and had no answer pending for ``timeout`` seconds: an idle WebSocket
        would hold one of rpc.max_connections for nothing."""
        while True:
            await trio.sleep_until(session.active_at + timeout)
            if session.subscriptions or session.busy:
                # Their end touches the session: the deadline moves with it.
                await trio.sleep(timeout)
            elif trio.current_time() >= session.active_at + timeout:
                session.close(WS_NORMAL_CLOSURE, f"idle for {timeout:g} s (rpc.ws_idle_timeout_s)")
                return

    async def _ws_reader(self, websocket: WebSocket, session: Session) -> None:
        limit = self.config.max_request_bytes
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            session.hold()
            try:
                if text is None:
                    error = RpcError(
                        INVALID_REQUEST, "invalid_request", "send JSON-RPC in text frames"
                    )
                    reply: str | None = encode(error_response(error))
                elif len(text) > limit or len(text.encode()) > limit:
                    reply = encode(error_response(_too_large(limit)))
                else:
                    reply = await self.dispatcher.handle(text, session)
                if reply is not None:
                    await session.outbox.send(reply)
            finally:
                session.release()

    @staticmethod
    async def _ws_writer(websocket: WebSocket, session: Session) -> None:
        async for text in session.outbox_out:
            await websocket.send_text(text)


# -- sockets and the serving loop -------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a peer's IP address) is this machine's loopback."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def http_refusal(body: str) -> bytes:
    """A whole HTTP/1.1 503 answer with a JSON ``body``, sent as a connection
    is accepted, before its request is read: h11 cannot make an answer
    without a request, and these bytes never change."""
    data = body.encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + data


class Gate:
    """Connection caps counted at accept, before a byte is read, so that
    connections that never send a request (or send it slowly) are counted
    too: at most ``total`` open at once and ``per_address`` from one peer
    address, among the peers ``counted`` selects (the others pass, not
    counted). A connection over a cap is answered ``busy`` (``total``) or
    ``crowded`` (``per_address``), canned HTTP 503s, and closed."""

    def __init__(
        self,
        total: int,
        per_address: int,
        *,
        busy: bytes,
        crowded: bytes,
        counted: Callable[[str], bool] = lambda address: True,
    ) -> None:
        self.total = total
        self.per_address = per_address
        self.busy = busy
        self.crowded = crowded
        self.counted = counted
        self.open: Counter[str] = Counter()
        self.count = 0
        #: refused connections being answered (at most _MAX_REFUSING linger)
        self.refusing = 0

    def admit(self, address: str) -> bytes | None:
        """None, counting the connection in, or the refusal to answer it with."""
        if self.count >= self.total:
            return self.busy
        if self.open[address] >= self.per_address:
            return self.crowded
        self.open[address] += 1
        self.count += 1
        return None

    def release(self, address: str) -> None:
        if self.open[address] > 0:
            self.count -= 1
            self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class _Stream(trio.abc.HalfCloseableStream):
    """A socket stream whose writes give up after ``timeout`` seconds
    without completing. Hypercorn shields its writes from cancellation, so
    a client that stops reading would otherwise hold its connection task,
    and a clean stop, forever. ``on_close`` runs once, at the first close
    (a :class:`Gate` counting it out). A stream with a ``refusal`` (the
    gate that refused it, and the answer) is only answered and closed
    (:meth:`refuse`)."""

    def __init__(
        self,
        inner: trio.SocketStream,
        timeout: float,
        open_: set[_Stream],
        *,
        on_close: Callable[[], None] | None = None,
        refusal: tuple[Gate, bytes] | None = None,
    ) -> None:
        self._inner = inner
        self._timeout = timeout
        self._open = open_
        self._on_close = on_close
        self.refusal = refusal
        self.socket = inner.socket  # hypercorn reads the peer's address here
        open_.add(self)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.move_on_after(self._timeout) as scope:
            await self._inner.send_all(data)
        if scope.cancelled_caught:
            self.close_now()
            raise trio.BrokenResourceError("the client stopped reading")

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    def forget(self) -> None:
        """No longer an open connection (idempotent)."""
        self._open.discard(self)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def close_now(self) -> None:
        """Close the socket at once; any task blocked on it wakes with
        ClosedResourceError."""
        self.forget()
        self._inner.socket.close()

    async def aclose(self) -> None:
        self.forget()
        await self._inner.aclose()

    async def refuse(self) -> None:
        """Send the refusal, read (and drop) what the client sent meanwhile
        so that the close does not reset the connection before the answer
        is read, and close — within a second; at once when many refusals
        linger already (a flood is not answered)."""
        assert self.refusal is not None
        gate, answer = self.refusal
        if gate.refusing >= _MAX_REFUSING:
            self.close_now()
            return
        gate.refusing += 1
        try:
            with trio.move_on_after(_REFUSAL_LINGER_S):
                await self._inner.send_all(answer)
                await self._inner.send_eof()
                drained = 0
                while drained < _REFUSAL_DRAIN_BYTES:
                    data = await self._inner.receive_some(4096)
                    if not data:
                        break
                    drained += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # it has gone already
        finally:
            gate.refusing -= 1
            self.close_now()


class _Listener(trio.abc.Listener[_Stream]):
    """Accepts :class:`_Stream` s; with a ``gate``, those over its caps come
    marked with their refusal."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        timeout: float,
        open_: set[_Stream],
        gate: Gate | None = None,
    ) -> None:
        self._inner = trio.SocketListener(sock)
        self._timeout = timeout
        self._open = open_
        self.gate = gate

    async def accept(self) -> _Stream:
        while True:
            inner = await self._inner.accept()
            gate = self.gate
            if gate is None:
                return _Stream(inner, self._timeout, self._open)
            try:
                address = str(inner.socket.getpeername()[0])
            except OSError:  # gone already
                inner.socket.close()
                continue
            if not gate.counted(address):
                return _Stream(inner, self._timeout, self._open)
            refusal = gate.admit(address)
            if refusal is not None:
                return _Stream(inner, self._timeout, self._open, refusal=(gate, refusal))
            release = functools.partial(gate.release, address)
            return _Stream(inner, self._timeout, self._open, on_close=release)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _serve_asgi(
    app: ASGIApp,
    listeners: list[_Listener],
    config: HyperConfig,
    open_streams: set[_Stream],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's trio connection handler on our listeners, until cancelled;
    then every connection is closed at once."""
    context = WorkerContext(None)
    asgi = wrap_app(app, config.wsgi_max_body_size, "asgi")

    async def connection(stream: _Stream) -> None:
        try:
            if stream.refusal is not None:
                await stream.refuse()
                return
            await TCPServer(asgi, config, context, ConnectionState({}), stream).run()
        except Exception:  # one connection's failure is not the server's
            log.exception("http connection failed")
        finally:
            stream.forget()

    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(
                lambda task_status: trio.serve_listeners(
                    connection, listeners, handler_nursery=nursery, task_status=task_status
                )
            )
            task_status.started()
            await trio.sleep_forever()
        finally:
            for stream in list(open_streams):
                stream.close_now()


async def _bind_tcp(host: str, port: int, what: str = "rpc") -> trio.socket.SocketType:
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ConfigError(f"{what}: cannot resolve {host}: {exc}") from None
    family, type_, proto, _, address = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"{what}: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    return sock


async def _bind_unix(path: Path) -> trio.socket.SocketType:
    if path.is_socket():
        probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # left by a node that did not stop cleanly
        else:
            raise OSError(f"rpc: {path} is in use: is another node running on this datadir?")
        finally:
            probe.close()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        # Before listen(): nobody can connect while it is briefly wider.
        os.chmod(path, 0o600)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _write_file(path: Path, text: str) -> None:
    """Atomically, mode 0600 whatever was there before."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


#: The same two, for the node's other listeners (ingest, metrics): one way
#: to write a datadir file and to name an address.
write_private_file = _write_file
http_url = _url


def _hyper_config(logger: str, header_timeout_s: float) -> HyperConfig:
    hyper = HyperConfig()
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger(logger)
    hyper.include_server_header = False
    # Hypercorn's idle timer runs from a connection's start (and from each
    # answer) until a request's headers are complete, whatever trickles in
    # meanwhile: that makes it the header timeout. Headers are at most
    # h11_max_incomplete_size (16 KiB). No read_timeout: it would also close
    # a WebSocket whose client only listens to its subscriptions.
    hyper.keep_alive_timeout = header_timeout_s
    return hyper


async def serve_http(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    what: str,
    header_timeout_s: float,
    gate: Gate | None = None,
    send_timeout_s: float = SEND_TIMEOUT_S,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an ASGI ``app`` over HTTP on ``host:port`` until cancelled, the
    way the RPC is served (hypercorn's trio connection handler on a socket
    bound here, headers within ``header_timeout_s``, writes bounded by
    ``send_timeout_s``, connections capped by ``gate``, every connection
    closed at stop). The app bounds its bodies' time (:func:`read_body`).
    Reports ``(host, bound port)``; ``what`` names the service in errors and
    logs (e.g. ``"ingest"``)."""
    sock = await _bind_tcp(host, port, what)
    try:
        open_streams: set[_Stream] = set()
        listener = _Listener(sock, send_timeout_s, open_streams, gate)
        hyper = _hyper_config(f"mycelia.{what}.http", header_timeout_s)
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve_asgi, app, [listener], hyper, open_streams)
            task_status.started((host, sock.getsockname()[1]))
    finally:
        sock.close()


def rpc_gate(config: RpcConfig) -> Gate:
    """The RPC's caps at accept, for TCP from other addresses than loopback
    (a LAN client through rpc.extra_bind): rpc.max_connections_per_address
    each, rpc.max_connections together. Loopback and the unix socket are
    this machine's own wallets: only the guard's slots count them."""
    total, each = config.max_connections, config.max_connections_per_address
    setting = "rpc.max_connections_per_address"
    return Gate(
        total,
        each,
        busy=http_refusal(encode(error_response(_too_many_connections(total)))),
        crowded=http_refusal(encode(error_response(_too_many_connections(each, setting)))),
        counted=lambda address: not is_loopback(address),
    )


@dataclass(frozen=True, slots=True)
class RpcEndpoints:
    """Where the RPC listens (the addresses actually bound)."""

    http: str
    unix: Path | None
    extra: tuple[str, ...]
    #: the cookie file, None when rpc.auth is off
    cookie: Path | None

    def __str__(self) -> str:
        parts = [self.http, *self.extra]
        if self.unix is not None:
            parts.append(f"unix:{self.unix}")
        return ", ".join(parts)


async def serve_rpc(
    node: Node,
    config: RpcConfig,
    *,
    outbox_size: int = OUTBOX_SIZE,
    send_timeout_s: float = SEND_TIMEOUT_S,
    task_status: trio.TaskStatus[RpcEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``node``'s RPC until cancelled (start it once the node is ready:
    ``endpoints = await nursery.start(serve_rpc, node, config.rpc)``).

    Writes a new cookie, binds every address, writes ``rpc.endpoint`` and
    reports the :class:`RpcEndpoints`; at cancellation closes every
    connection and removes the cookie, the socket and the endpoint file."""
    check_rpc(config)
    datadir = node.datadir.absolute()
    datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cookie_path = datadir / COOKIE_FILE
    endpoint_path = datadir / ENDPOINT_FILE
    socket_path = datadir / SOCKET_FILE
    sockets: list[trio.socket.SocketType] = []
    ours: list[Path] = []
    server: RpcServer | None = None
    try:
        cookie = None
        if config.auth:
            cookie = f"{COOKIE_USER}:{secrets.token_hex(32)}"
            ours.append(cookie_path)
            _write_file(cookie_path, cookie)
        else:
            cookie_path.unlink(missing_ok=True)  # a stale one would mislead clients
        server = RpcServer(node, config, cookie, outbox_size=outbox_size)

        main = await _bind_tcp(config.host, config.port)
        sockets.append(main)
        http = _url(config.host, main.getsockname()[1])
        extra = []
        for address in config.extra_bind:
            host, port = split_host_port(address)
            sock = await _bind_tcp(host, port)
            sockets.append(sock)
            extra.append(_url(host, sock.getsockname()[1]))
        unix = None
        if config.unix_socket and len(os.fsencode(socket_path)) > _MAX_UNIX_PATH:
            # A deep datadir should not keep the node from starting: clients
            # read "unix": null in rpc.endpoint and use HTTP.
            log.warning(
                "rpc: no unix socket: %s is longer than %d bytes (the system's limit)",
                socket_path,
                _MAX_UNIX_PATH,
            )
        elif config.unix_socket:
            ours.append(socket_path)
            sockets.append(await _bind_unix(socket_path))
            unix = socket_path

        ours.append(endpoint_path)
        _write_file(
            endpoint_path,
            json.dumps({"http": http, "unix": None if unix is None else str(unix)}) + "\n",
        )
        endpoints = RpcEndpoints(http, unix, tuple(extra), cookie_path if cookie else None)
        node.listening.rpc = (http, *extra)
        node.listening.rpc_unix = None if unix is None else str(unix)

        hyper = _hyper_config("mycelia.rpc.http", config.header_timeout_s)
        # Messages up to twice our limit reach us and get a -32003 answer;
        # hypercorn closes the connection (1009) on anything larger.
        hyper.websocket_max_message_size = 2 * config.max_request_bytes
        open_streams: set[_Stream] = set()
        gate = rpc_gate(config)
        listeners = [
            _Listener(s, send_timeout_s, open_streams, gate if s.family != socket.AF_UNIX else None)
            for s in sockets
        ]
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve_asgi, server.app, listeners, hyper, open_streams)
            task_status.started(endpoints)
    finally:
        node.listening.rpc, node.listening.rpc_unix = (), None
        if server is not None:
            server.hub.close()
        for sock in sockets:
            sock.close()
        for path in ours:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
