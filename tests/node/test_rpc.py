"""The wallet RPC (docs/rpc.md) over real sockets: auth, strict JSON-RPC,
limits, refusals that change nothing stored, subscriptions, and a wallet's
whole path on a 4-validator cluster."""

from __future__ import annotations

import base64
import json
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from mycelia.node.config import ConfigError, RpcConfig
from mycelia.node.daemon import Node
from mycelia.node.rpc import (
    REGISTRY,
    Hub,
    RpcEndpoints,
    Session,
    _bind_tcp,
    _Listener,
    _serve_asgi,
    serve_rpc,
)
from mycelia.protocol import Entry, SignedGenesis, SigningKey, Transfer, did_encode
from mycelia.protocol.state import ZERO_ID
from tests.factory import T0, genesis, key, sign_genesis
from tests.node.cluster import FAST, cluster, converge
from tests.node.procs import Proc, mycelia

SOLO = key(0, "solo")
SOLO_GENESIS = sign_genesis(genesis(validators=[SOLO]), [SOLO])
ECON = "0x" + SOLO_GENESIS.genesis.id.hex()
ALICE, BOB = key(1, "wallet"), key(2, "wallet")
#: Small limits, so each can be reached with small messages.
LIMITS = RpcConfig(
    port=0,
    max_request_bytes=16 * 1024,
    max_batch=4,
    max_page=10,
    max_connections=8,
    max_subscriptions=2,
)


def did(k: SigningKey) -> str:
    return did_encode(k.public)


def sign(k: SigningKey, message_hex: str) -> str:
    """What a wallet does: Ed25519 over the signing message, with its own library."""
    message = bytes.fromhex(message_hex.removeprefix("0x"))
    return "0x" + nacl.signing.SigningKey(k.seed).sign(message).signature.hex()


def stored(node: Node) -> tuple[Any, ...]:
    """Everything a refusal must leave as it was."""
    s = node.store
    ids = sorted(g.genesis.id for g in s.economies())
    return (
        sorted(g.encode() for g in s.economies()),
        {i: s.accounts(i) for i in ids},
        {i: s.chain_ids(i) for i in ids},
        s.pending(),
        node.submitter.pending_count,
    )


# -- clients ------------------------------------------------------------------------------


class Ws:
    """A WebSocket JSON-RPC client that sets notifications aside."""

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.notifications: list[dict[str, Any]] = []
        self._next = 0

    async def send(self, message: Any) -> None:
        await self.conn.send_message(message if isinstance(message, str) else json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        return json.loads(await self.conn.get_message())  # type: ignore[no-any-return]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        await self.send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        return await self.response(self._next)

    async def response(self, request_id: Any) -> dict[str, Any]:
        while True:
            message = await self.receive()
            if message.get("method") == "subscription":
                self.notifications.append(message["params"])
                continue
            assert message["id"] == request_id, message
            return message

    async def result(self, method: str, **params: Any) -> Any:
        response = await self.call(method, **params)
        assert "error" not in response, response
        return response["result"]

    async def notification(self, subscription: str) -> Any:
        """The next notification of ``subscription`` (waits for it)."""
        while True:
            for i, n in enumerate(self.notifications):
                if n["subscription"] == subscription:
                    return self.notifications.pop(i)["result"]
            message = await self.receive()
            assert message.get("method") == "subscription", message
            self.notifications.append(message["params"])


@dataclass
class Served:
    node: Node
    endpoints: RpcEndpoints
    cookie: str
    http: httpx.AsyncClient
    stopped: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def secret(self) -> str:
        return self.cookie.partition(":")[2]

    @property
    def auth(self) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", b"Bearer " + self.secret.encode())]

    async def post(self, body: Any, *, headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        return await self.http.post("/", content=content, headers={**h, **(headers or {})})

    async def call(self, method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        response = await self.post(request)
        assert response.status_code == 200, response
        return response.json()  # type: ignore[no-any-return]

    async def result(self, method: str, **params: Any) -> Any:
        response = await self.call(method, params)
        assert "error" not in response, response
        return response["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        response = await self.call(method, params)
        assert "result" not in response, response
        assert response["id"] == 1
        return response["error"]  # type: ignore[no-any-return]

    @property
    def ws_url(self) -> str:
        return self.endpoints.http.replace("http://", "ws://") + "/ws"

    @asynccontextmanager
    async def ws(self) -> AsyncIterator[Ws]:
        async with open_websocket_url(self.ws_url, extra_headers=self.auth) as conn:
            yield Ws(conn)

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


@asynccontextmanager
async def serving(
    nursery: trio.Nursery, node: Node, config: RpcConfig = LIMITS
) -> AsyncIterator[Served]:
    served: list[Served] = []

    async def run(*, task_status: trio.TaskStatus[RpcEndpoints]) -> None:
        scope, stopped = trio.CancelScope(), trio.Event()
        try:
            with scope:
                await serve_rpc(
                    node,
                    config,
                    task_status=_Relay(task_status, lambda e: served.append((e, scope, stopped))),
                )
        finally:
            stopped.set()

    endpoints = await nursery.start(run)
    _, scope, stopped = served[0]
    cookie = (node.datadir / ".cookie").read_text() if config.auth else ""
    async with httpx.AsyncClient(base_url=endpoints.http, timeout=30) as http:
        s = Served(node, endpoints, cookie, http, stopped, scope)
        try:
            yield s
        finally:
            scope.cancel()


class _Relay:
    """A task_status that also tells the test what started."""

    def __init__(self, inner: Any, hook: Any) -> None:
        self.inner, self.hook = inner, hook

    def started(self, value: Any = None) -> None:
        self.hook(value)
        self.inner.started(value)


@asynccontextmanager
async def solo(tmp_path: Path, config: RpcConfig = LIMITS) -> AsyncIterator[Served]:
    """One node, the only validator of its economy, serving its RPC."""
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "solo", FAST)
        await nursery.start(node.run)
        await node.add_economy(SOLO_GENESIS)
        async with serving(nursery, node, config) as s:
            yield s
        nursery.cancel_scope.cancel()


def transfer(to: SigningKey, amount: Any = "5", **extra: Any) -> dict[str, Any]:
    return {
        "economy": ECON,
        "author": did(ALICE),
        "kind": "transfer",
        "body": {"to": did(to), "amount": amount, **extra},
    }


# -- auth and files -------------------------------------------------------------------------


async def test_http_needs_the_cookie(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        new = sign_genesis(genesis(validators=[SOLO], name="Other"), [SOLO])
        request = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "economy_create",
            "params": {"genesis": "0x" + new.encode().hex()},
        }
        before = stored(s.node)
        wrong = "0" * 64
        for headers in (
            {},
            {"Authorization": f"Bearer {wrong}"},
            {"Authorization": "Basic " + base64.b64encode(f"__cookie__:{wrong}".encode()).decode()},
            {"Authorization": "Basic " + base64.b64encode(f"user:{s.secret}".encode()).decode()},
            {"Authorization": "Basic !!!"},
            {"Authorization": s.secret},
        ):
            response = await s.http.post("/", json=request, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == 'Basic realm="mycelia"'
            assert response.content == b""
            assert stored(s.node) == before  # no method ran
        # Basic, as curl -u sends it, and Bearer both work.
        response = await s.http.post("/", json=request, auth=("__cookie__", s.secret))
        assert response.json()["result"] == {"id": "0x" + new.genesis.id.hex()}
        assert stored(s.node) != before


async def test_websocket_handshake_needs_the_cookie(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        for headers in ([], [(b"authorization", b"Bearer " + b"1" * 64)]):
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(s.ws_url, extra_headers=headers):
                    pass
            assert rejected.value.status_code == 401
            assert dict(rejected.value.headers)[b"www-authenticate"] == b'Basic realm="mycelia"'
            assert not rejected.value.body
        async with s.ws() as ws:
            assert (await ws.result("node_info"))["did"] == SOLO.did


async def test_cookie_endpoint_and_socket_files(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "n", FAST)
        await nursery.start(node.run)
        datadir = node.datadir
        cookies = []
        for _ in range(2):
            async with serving(nursery, node) as s:
                cookie_file = datadir / ".cookie"
                assert stat.S_IMODE(cookie_file.stat().st_mode) == 0o600
                assert s.endpoints.cookie == cookie_file
                user, _, secret = s.cookie.partition(":")
                assert user == "__cookie__" and len(secret) == 64 and int(secret, 16) >= 0
                cookies.append(s.cookie)
                sock = datadir / "rpc.sock"
                assert stat.S_ISSOCK(sock.stat().st_mode)
                assert stat.S_IMODE(sock.stat().st_mode) == 0o600
                endpoint = json.loads((datadir / "rpc.endpoint").read_text())
                port = int(endpoint["http"].rsplit(":", 1)[1])
                assert endpoint == {"http": f"http://127.0.0.1:{port}", "unix": str(sock)}
                assert port != 0 and endpoint["http"] == s.endpoints.http
                assert (await s.result("node_info"))["did"] == SOLO.did
                await s.stop()
            # A clean stop removes what it wrote.
            assert not (datadir / ".cookie").exists()
            assert not (datadir / "rpc.endpoint").exists()
            assert not (datadir / "rpc.sock").exists()
        assert cookies[0] != cookies[1]
        nursery.cancel_scope.cancel()


async def test_the_old_cookie_is_refused_after_a_restart(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "n", FAST)
        await nursery.start(node.run)
        async with serving(nursery, node) as first:
            old = first.secret
            await first.stop()
        async with serving(nursery, node) as second:
            response = await second.http.post(
                "/",
                json={"jsonrpc": "2.0", "id": 1, "method": "node_info"},
                auth=("__cookie__", old),
            )
            assert response.status_code == 401
            assert (await second.result("node_info"))["did"] == SOLO.did
        nursery.cancel_scope.cancel()


async def test_unix_socket(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        assert s.endpoints.unix == s.node.datadir / "rpc.sock"
        transport = httpx.AsyncHTTPTransport(uds=str(s.endpoints.unix))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            request = {"jsonrpc": "2.0", "id": "u", "method": "node_info"}
            response = await client.post("/", json=request)
            assert response.status_code == 401  # auth holds on the socket too
            response = await client.post("/", json=request, auth=("__cookie__", s.secret))
            assert response.json()["id"] == "u"
            assert response.json()["result"]["did"] == SOLO.did


async def test_extra_bind_without_auth_is_refused(tmp_path: Path) -> None:
    node = Node(SOLO, tmp_path / "n", FAST)
    config = replace(LIMITS, auth=False, extra_bind=("127.0.0.1:0",))
    with pytest.raises(ConfigError, match=r"rpc\.extra_bind.*rpc\.auth"):
        await serve_rpc(node, config)
    assert not (node.datadir / "rpc.endpoint").exists()
    node.store.close()


async def test_extra_bind_and_auth_off(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "n", FAST)
        await nursery.start(node.run)
        async with serving(nursery, node, replace(LIMITS, extra_bind=("127.0.0.1:0",))) as s:
            (extra,) = s.endpoints.extra
            async with httpx.AsyncClient(base_url=extra) as client:
                request = {"jsonrpc": "2.0", "id": 1, "method": "node_info"}
                assert (await client.post("/", json=request)).status_code == 401
                response = await client.post("/", json=request, auth=("__cookie__", s.secret))
                assert response.json()["result"]["did"] == SOLO.did
            await s.stop()
        async with serving(nursery, node, replace(LIMITS, auth=False, unix_socket=False)) as s:
            assert not (node.datadir / ".cookie").exists() and s.endpoints.cookie is None
            assert s.endpoints.unix is None
            request = {"jsonrpc": "2.0", "id": 1, "method": "node_info"}
            response = await s.http.post("/", json=request)  # no Authorization at all
            assert response.json()["result"]["did"] == SOLO.did
        nursery.cancel_scope.cancel()


async def test_a_datadir_too_deep_for_a_unix_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / ("deep" * 30), FAST)
        await nursery.start(node.run)
        async with serving(nursery, node) as s:
            # The node serves anyway, over HTTP, and says why there is no socket.
            assert s.endpoints.unix is None
            assert json.loads((node.datadir / "rpc.endpoint").read_text())["unix"] is None
            assert "no unix socket" in caplog.text
            assert (await s.result("node_info"))["did"] == SOLO.did
        nursery.cancel_scope.cancel()


async def test_node_run_serves_the_rpc_and_a_signal_stops_it_cleanly(tmp_path: Path) -> None:
    datadir = tmp_path / "n"
    assert mycelia("init", "--datadir", str(datadir)).returncode == 0
    proc = await trio.to_thread.run_sync(Proc, datadir, [])
    try:
        with trio.fail_after(30):
            while not (datadir / "rpc.endpoint").exists():  # written once it listens
                await trio.sleep(0.05)
        endpoint = json.loads((datadir / "rpc.endpoint").read_text())
        cookie = (datadir / ".cookie").read_text()
        transport = httpx.AsyncHTTPTransport(uds=endpoint["unix"])
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            request = {"jsonrpc": "2.0", "id": 1, "method": "node_info"}
            response = await client.post("/", json=request, auth=tuple(cookie.split(":")))
            assert response.json()["result"]["did"].startswith("did:key:z6Mk")
    finally:
        code, log = await trio.to_thread.run_sync(proc.stop)
    assert code == 0, log
    assert "Traceback" not in log
    assert f"rpc at {endpoint['http']}, unix:{endpoint['unix']}" in log
    for name in (".cookie", "rpc.endpoint", "rpc.sock"):
        assert not (datadir / name).exists(), name


# -- strict JSON-RPC ------------------------------------------------------------------------


async def test_parse_errors(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        for body in (b'{"jsonrpc": "2.0", "method": ', b"\xff\xfe{}", b"[NaN]", b"", b"[" * 5000):
            response = await s.post(body)
            assert response.status_code == 200
            reply = response.json()
            assert reply["id"] is None
            assert reply["error"]["code"] == -32700, body
            assert reply["error"]["data"]["reason"] == "parse_error"


INVALID_REQUESTS = [
    ({"jsonrpc": "1.0", "id": 1, "method": "node_info"}, 1),
    ({"id": 1, "method": "node_info"}, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": 5}, 1),
    ({"jsonrpc": "2.0", "id": 1}, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": "node_info", "params": "x"}, 1),
    ({"jsonrpc": "2.0", "id": 1, "method": "node_info", "params": 3}, 1),
    ({"jsonrpc": "2.0", "id": 1.5, "method": "node_info"}, None),
    ({"jsonrpc": "2.0", "id": True, "method": "node_info"}, None),
    ({"jsonrpc": "2.0", "id": [1], "method": "node_info"}, None),
    ({"jsonrpc": "2.0", "id": "a", "method": "node_info", "extra": 1}, "a"),
    ("node_info", None),
    (7, None),
    ([], None),
]


async def test_invalid_requests(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        for request, echo in INVALID_REQUESTS:
            reply = (await s.post(request)).json()
            assert reply["error"]["code"] == -32600, (request, reply)
            assert reply["error"]["data"]["reason"] == "invalid_request"
            assert reply["id"] == echo, request
        # In a batch, each invalid member gets its own error.
        reply = (await s.post([1, {"jsonrpc": "2.0", "id": 2, "method": "node_info"}])).json()
        assert reply[0]["error"]["code"] == -32600 and reply[0]["id"] is None
        assert reply[1]["id"] == 2 and "result" in reply[1]


async def test_unknown_method(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        error = await s.error("account_steal", {"economy": ECON})
        assert error["code"] == -32601
        assert error["data"]["reason"] == "method_not_found"
        # Subscriptions need a WebSocket.
        error = await s.error("subscribe", {"topic": "entry", "id": "0x" + "00" * 32})
        assert (error["code"], error["data"]["reason"]) == (-32601, "websocket_only")


def _history(**extra: Any) -> dict[str, Any]:
    return {"economy": ECON, "account": did(ALICE), **extra}


def _without(params: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != name}


SIG = "0x" + "00" * 64
#: (what, method, params, the field the error must name)
BAD_PARAMS = [
    ("wrong type", "account_get", {"economy": 5, "account": did(ALICE)}, "economy"),
    ("short id", "account_get", {"economy": "0x1234", "account": did(ALICE)}, "economy"),
    ("bad did:key", "account_get", {"economy": ECON, "account": "did:key:zNope"}, "account"),
    ("not a did", "account_get", {"economy": ECON, "account": 42}, "account"),
    ("missing", "account_get", {"economy": ECON}, "account"),
    ("unknown param", "account_get", {"economy": ECON, "account": did(ALICE), "x": 1}, "x"),
    ("too many", "account_get", [ECON, did(ALICE), 3], "params"),
    ("negative amount", "entry_prepare", transfer(BOB, "-5"), "body.amount"),
    ("zero amount", "entry_prepare", transfer(BOB, "0"), "body.amount"),
    ("float amount", "entry_prepare", transfer(BOB, 5.0), "body.amount"),
    ("number amount", "entry_prepare", transfer(BOB, 5), "body.amount"),
    ("huge amount", "entry_prepare", transfer(BOB, "9" * 30), "body.amount"),
    ("unknown body field", "entry_prepare", transfer(BOB, colour="red"), "body.colour"),
    ("missing amount", "entry_prepare", transfer(BOB) | {"body": {"to": "x"}}, "body.amount"),
    ("missing author", "entry_prepare", _without(transfer(BOB), "author"), "author"),
    ("unknown kind", "entry_prepare", transfer(BOB) | {"kind": "teleport"}, "kind"),
    ("float seq", "entry_prepare", transfer(BOB) | {"seq": 1.0}, "seq"),
    ("zero limit", "account_history", _history(limit=0), "limit"),
    ("text limit", "account_history", _history(limit="5"), "limit"),
    ("bad cursor", "account_history", _history(cursor="-1"), "cursor"),
    ("number cursor", "account_history", _history(cursor=5), "cursor"),
    ("short signature", "entry_submit", {"entry": "0x00", "signature": "0x00"}, "signature"),
    ("not hex", "entry_submit", {"entry": "00", "signature": SIG}, "entry"),
    ("odd hex", "economy_create", {"genesis": "0x123"}, "genesis"),
    ("bad topic", "entry_get", {"id": ECON, "topic": "x"}, "topic"),
]


async def test_bad_params(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        before = stored(s.node)
        for what, method, params, field in BAD_PARAMS:
            error = await s.error(method, params)
            assert error["code"] == -32602, (what, error)
            assert error["data"]["reason"] == "invalid_params", what
            assert error["data"]["field"] == field, (what, error)
            assert error["data"]["detail"], what
        # Body values are checked one by one, naming the first bad one.
        params = transfer(BOB) | {"body": {"to": "did:key:z6MkBad", "amount": "1"}}
        error = await s.error("entry_prepare", params)
        assert (error["code"], error["data"]["field"]) == (-32602, "body.to")
        assert stored(s.node) == before


async def test_refusals_change_nothing(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        before = stored(s.node)
        prepared = await s.result("entry_prepare", **transfer(BOB))
        # Signed by the wrong key.
        error = await s.error(
            "entry_submit",
            {"entry": prepared["entry"], "signature": sign(BOB, prepared["signing_message"])},
        )
        assert error["code"] == -32001
        assert error["data"]["reason"] == "bad_signature"
        # Not an entry at all.
        error = await s.error("entry_submit", {"entry": "0x00", "signature": "0x" + "00" * 64})
        assert error["code"] == -32001
        assert error["data"]["reason"] in ("malformed", "non_canonical")
        # An economy this node does not follow.
        other = Entry(b"\x01" * 32, ALICE.public, 1, ZERO_ID, T0, Transfer(BOB.public, 1, ""))
        signed = other.sign(ALICE)
        error = await s.error(
            "entry_submit",
            {"entry": "0x" + other.encode().hex(), "signature": "0x" + signed.signature.hex()},
        )
        assert (error["code"], error["data"]["reason"]) == (-32001, "wrong_economy")
        # A genesis short of its quorum.
        vkeys = [key(i, "v") for i in range(4)]
        short = sign_genesis(genesis(validators=vkeys), vkeys[:2])
        error = await s.error("economy_create", {"genesis": "0x" + short.encode().hex()})
        assert (error["code"], error["data"]["reason"]) == (-32001, "bad_genesis")
        # Not a validator of that genesis.
        error = await s.error(
            "economy_signGenesis", {"genesis": "0x" + short.genesis.encode().hex()}
        )
        assert (error["code"], error["data"]["reason"]) == (-32004, "not_validator")
        # Not found.
        missing = "0x" + "ab" * 32
        error = await s.error("account_get", {"economy": missing, "account": did(ALICE)})
        assert (error["code"], error["data"]["reason"]) == (-32002, "unknown_economy")
        error = await s.error("entry_get", {"id": missing})
        assert (error["code"], error["data"]["reason"]) == (-32002, "unknown_entry")
        # An entry the protocol's schema refuses: seq 1 with a prev.
        error = await s.error("entry_prepare", {**transfer(BOB), "seq": 1, "prev": missing})
        assert (error["code"], error["data"]["reason"]) == (-32001, "prev_mismatch")
        assert stored(s.node) == before


# -- limits -----------------------------------------------------------------------------------


async def test_oversized_request(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        before = stored(s.node)
        big = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "entry_prepare",
            "params": transfer(BOB, memo="x" * LIMITS.max_request_bytes),
        }
        response = await s.post(big)
        assert response.status_code == 413
        reply = response.json()
        assert reply["id"] is None
        assert reply["error"]["code"] == -32003
        assert reply["error"]["data"]["reason"] == "request_too_large"
        # Over a WebSocket: an error answer, and the connection goes on.
        async with s.ws() as ws:
            await ws.send(big)
            reply = await ws.receive()
            assert reply["id"] is None
            assert (reply["error"]["code"], reply["error"]["data"]["reason"]) == (
                -32003,
                "request_too_large",
            )
            assert (await ws.result("node_info"))["did"] == SOLO.did
        assert stored(s.node) == before


async def test_batch_limits_and_shapes(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        info = {"jsonrpc": "2.0", "method": "node_info"}
        reply = (await s.post([{**info, "id": i} for i in range(LIMITS.max_batch + 1)])).json()
        assert isinstance(reply, dict) and reply["id"] is None
        assert (reply["error"]["code"], reply["error"]["data"]["reason"]) == (
            -32003,
            "batch_too_large",
        )
        # Requests, a notification, an invalid request and an error, in order.
        batch = [
            {**info, "id": "first"},
            info,  # a notification: runs, no response
            {"jsonrpc": "2.0", "id": 3, "method": 3},
            {"jsonrpc": "2.0", "id": 4, "method": "economy_get", "params": [ECON]},
        ]
        reply = (await s.post(batch)).json()
        assert [r["id"] for r in reply] == ["first", 3, 4]
        assert reply[0]["result"]["did"] == SOLO.did
        assert reply[1]["error"]["code"] == -32600
        assert reply[2]["result"]["id"] == ECON
        # Notifications only: 204 and nothing else; a lone one too.
        for body in ([info, {**info, "method": "economy_list"}], info):
            response = await s.post(body)
            assert response.status_code == 204
            assert response.content == b""
        # A batch with an unknown notification method answers nothing for it.
        reply = (await s.post([{**info, "method": "nope"}, {**info, "id": 9}])).json()
        assert [r["id"] for r in reply] == [9]


async def test_page_too_large(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        params = {"economy": ECON, "account": did(ALICE), "limit": LIMITS.max_page + 1}
        error = await s.error("account_history", params)
        assert (error["code"], error["data"]["reason"]) == (-32003, "page_too_large")
        page = await s.result("account_history", **{**params, "limit": LIMITS.max_page})
        assert page == {"entries": [], "next_cursor": None}


async def test_too_many_subscriptions(tmp_path: Path) -> None:
    async with solo(tmp_path) as s, s.ws() as ws:
        ids = [
            await ws.result("subscribe", topic="account", economy=ECON, account=did(k))
            for k in (ALICE, BOB)
        ]
        assert len(set(ids)) == 2
        reply = await ws.call("subscribe", topic="account", economy=ECON, account=did(SOLO))
        assert (reply["error"]["code"], reply["error"]["data"]["reason"]) == (
            -32003,
            "too_many_subscriptions",
        )
        # Unsubscribing frees a slot.
        assert await ws.result("unsubscribe", subscription=ids[0]) is True
        await ws.result("subscribe", topic="account", economy=ECON, account=did(SOLO))
        reply = await ws.call("unsubscribe", subscription="0x99")
        assert reply["error"]["data"]["field"] == "subscription"
        # Params that do not fit the topic.
        reply = await ws.call("subscribe", topic="entry", economy=ECON)
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["field"] == "economy"


async def test_too_many_connections(tmp_path: Path) -> None:
    async with solo(tmp_path, replace(LIMITS, max_connections=1)) as s, s.ws() as ws:
        # The open WebSocket holds the one slot.
        response = await s.post({"jsonrpc": "2.0", "id": 1, "method": "node_info"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert (error["code"], error["data"]["reason"]) == (-32003, "too_many_connections")
        async with open_websocket_url(s.ws_url, extra_headers=s.auth) as second:
            error = json.loads(await second.get_message())["error"]
            assert (error["code"], error["data"]["reason"]) == (-32003, "too_many_connections")
            with pytest.raises(ConnectionClosed) as closed:
                await second.get_message()
            assert closed.value.reason.code == 1013
        assert (await ws.result("node_info"))["did"] == SOLO.did


async def test_a_slow_websocket_is_dropped_not_waited_for(tmp_path: Path) -> None:
    # The policy, without the network: notifications never block; a full
    # outbox ends the session and its subscriptions.
    async with solo(tmp_path) as s:
        hub = Hub(s.node)
        session = Session(hub, outbox_size=2)
        sub = hub.watch_account(session, SOLO_GENESIS.genesis.id, ALICE.public)
        session.notify(sub.id, {"n": 1})
        session.notify(sub.id, {"n": 2})
        assert not session.overflowed
        session.notify(sub.id, {"n": 3})  # returns at once
        assert session.overflowed
        assert session.scope.cancel_called
        assert session.subscriptions == {}
        assert hub._accounts == {}
        hub.close()


async def test_a_client_that_stops_reading_does_not_hold_the_server() -> None:
    # Hypercorn shields its socket writes; the RPC's streams give up on a
    # write that makes no progress, and a stop closes every connection.
    gone = trio.Event()
    writing: list[float | None] = [None]  # since when the app's current write waits

    async def flood(websocket: WebSocket) -> None:
        await websocket.accept()

        async def reader() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
            gone.set()
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            while True:
                writing[0] = trio.current_time()
                await websocket.send_text("x" * 65536)
                writing[0] = None
                await trio.sleep(0)

    app = Starlette(routes=[WebSocketRoute("/ws", flood)])
    for timeout_s in (0.2, 60.0):
        sock = await _bind_tcp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        streams: set[Any] = set()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                listener = _Listener(sock, timeout_s, streams)
                await nursery.start(_serve_asgi, app, [listener], HyperConfig(), streams)
                client = trio.socket.socket()
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await client.connect(("127.0.0.1", port))
                await client.send(
                    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                if timeout_s < 1:
                    await gone.wait()  # the stuck write gave up: the connection closed
                    assert not streams
                else:  # until a write is stuck: the client's buffers are full
                    while (since := writing[0]) is None or trio.current_time() - since < 0.5:
                        await trio.sleep(0.05)
                # A stop does not wait for a stuck connection either.
                nursery.cancel_scope.cancel()
        assert not streams
        client.close()


# -- discovery ---------------------------------------------------------------------------------


async def test_openrpc_document(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        doc = await s.result("rpc.discover")
        assert json.loads(json.dumps(doc)) == doc
        assert doc["openrpc"] == "1.2.6"
        assert doc["info"]["title"] and doc["info"]["version"]
        by_name = {m["name"]: m for m in doc["methods"]}
        assert set(by_name) == set(REGISTRY.methods)
        for name, declared in REGISTRY.methods.items():
            m = by_name[name]
            assert [p["name"] for p in m["params"]] == [p.name for p in declared.params]
            assert [p["required"] for p in m["params"]] == [p.required for p in declared.params]
            assert m["result"]["schema"] == declared.result
            assert m["summary"]
        # Every $ref points into the document.
        text = json.dumps(doc)
        refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
        assert refs
        for ref in refs:
            node: Any = doc
            assert ref.startswith("#/")
            for part in ref[2:].split("/"):
                node = node[part]
        expected = {
            "node_info", "node_peers", "economy_list", "economy_get", "economy_signGenesis",
            "economy_create", "economy_follow", "economy_forks", "account_get", "account_history",
            "entry_prepare", "entry_submit", "entry_get", "subscribe", "unsubscribe",
            "sensor_getReadings", "sensor_getAttestation", "sensor_claimable", "sensor_devices",
            "rpc.discover",
        }  # fmt: skip
        assert set(by_name) == expected


# -- a wallet's path on a 4-validator cluster ----------------------------------------------------


@asynccontextmanager
async def served_cluster(tmp_path: Path) -> AsyncIterator[tuple[Any, list[Served]]]:
    """A 4-validator cluster, each validator serving its RPC."""
    config = replace(LIMITS, unix_socket=False, max_subscriptions=8)
    async with cluster(tmp_path, 4, 0) as c, trio.open_nursery() as nursery:
        async with (
            serving(nursery, c.validators[0], config) as s0,
            serving(nursery, c.validators[1], config) as s1,
            serving(nursery, c.validators[2], config) as s2,
            serving(nursery, c.validators[3], config) as s3,
        ):
            yield c, [s0, s1, s2, s3]
        nursery.cancel_scope.cancel()


async def test_wallet_path_on_a_cluster(tmp_path: Path) -> None:
    async with served_cluster(tmp_path) as (c, servers):
        s0, s3 = servers[0], servers[3]
        econ = "0x" + c.economy_id.hex()
        assert len(await s0.result("node_peers")) == 3
        info = await s0.result("node_info")
        assert info["economies"] == [econ] and info["validator"] is True
        ids: list[str] = []
        async with s3.ws() as watcher, s0.ws() as ws0:
            # Bob is watched on another node than the one Alice submits to.
            bob_sub = await watcher.result(
                "subscribe", topic="account", economy=econ, account=did(BOB)
            )
            for i in range(1, 8):
                body = {"to": did(BOB), "amount": str(i), "memo": f"#{i}"}
                prepared = await s0.result(
                    "entry_prepare", economy=econ, author=did(ALICE), kind="transfer", body=body
                )
                view = prepared["view"]
                assert (view["seq"], view["body"], view["id"]) == (i, body, prepared["id"])
                assert view["prev"] == (ids[-1] if ids else "0x" + "00" * 32)
                signature = sign(ALICE, prepared["signing_message"])
                submitted = await s0.result(
                    "entry_submit", entry=prepared["entry"], signature=signature
                )
                assert submitted == {"id": prepared["id"]}
                if i == 1:
                    entry_sub = await ws0.result("subscribe", topic="entry", id=prepared["id"])
                    with trio.fail_after(30):
                        status = await ws0.notification(entry_sub)
                    assert status["status"] == "certified", status
                    assert status["view"] == view and status["certificate"].startswith("0x")
                else:
                    with trio.fail_after(30):
                        await c.validators[0].submitter.wait(bytes.fromhex(prepared["id"][2:]))
                got = await s0.result("entry_get", id=prepared["id"])
                assert got["status"] == "certified" and got["view"] == view
                ids.append(prepared["id"])
            with trio.fail_after(30):
                seen = [await watcher.notification(bob_sub) for _ in ids]
            assert sorted(n["id"] for n in seen) == sorted(ids)
            assert all(n["body"]["to"] == did(BOB) for n in seen)
            assert all(n["certificate"].startswith("0x") for n in seen)
            # Already final: the subscription id, then one notification.
            again = await ws0.result("subscribe", topic="entry", id=ids[0])
            assert ws0.notifications == []
            assert (await ws0.notification(again))["status"] == "certified"

        alice = await s0.result("account_get", economy=econ, account=did(ALICE))
        assert (alice["balance"], alice["seq"], alice["head"]) == ("-28", 7, ids[-1])
        assert alice["member"] is True and alice["limit"] == "1000"
        bob = await s3.result("account_get", economy=econ, account=did(BOB))
        assert (bob["balance"], bob["seq"]) == ("28", 0)

        # History: pages of 3, newest first, no overlap, nothing missing.
        pages, cursor = [], None
        while True:
            page = await s0.result(
                "account_history", economy=econ, account=did(ALICE), cursor=cursor, limit=3
            )
            pages.append(page["entries"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert isinstance(cursor, str)
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [e["id"] for p in pages for e in p] == ids[::-1]
        assert [e["seq"] for p in pages for e in p] == [7, 6, 5, 4, 3, 2, 1]
        received = await s3.result("account_history", economy=econ, account=did(BOB), limit=10)
        assert received["next_cursor"] is None
        assert sorted(e["id"] for e in received["entries"]) == sorted(ids)

        await converge(c.nodes, c.economy_id)
        summary = {e["id"]: e for e in await s3.result("economy_list")}[econ]
        assert summary["certificates"] == 7 and len(summary["validators"]) == 4


async def test_a_new_economy_signed_and_created_over_rpc(tmp_path: Path) -> None:
    async with served_cluster(tmp_path) as (c, servers):
        vkeys = [n.key for n in c.validators]
        g = genesis(validators=vkeys, name="Garden Tokens", symbol="GDN", nonce=b"rpc")
        new_id = "0x" + g.id.hex()
        signatures = {}
        for s in servers:
            answer = await s.result("economy_signGenesis", genesis="0x" + g.encode().hex())
            assert answer["validator"] == s.node.key.did
            signatures[s.node.key.public] = bytes.fromhex(answer["signature"][2:])

        before = [stored(s.node) for s in servers]
        short = SignedGenesis.assemble(g, dict(list(signatures.items())[:2]))
        error = await servers[0].error("economy_create", {"genesis": "0x" + short.encode().hex()})
        assert (error["code"], error["data"]["reason"]) == (-32001, "bad_genesis")
        assert [stored(s.node) for s in servers] == before

        signed = "0x" + SignedGenesis.assemble(g, signatures).encode().hex()
        for s in servers:
            assert await s.result("economy_create", genesis=signed) == {"id": new_id}
        assert await servers[0].result("economy_create", genesis=signed) == {"id": new_id}
        for s in servers:
            listed = {e["id"]: e for e in await s.result("economy_list")}
            assert listed[new_id]["name"] == "Garden Tokens"
            assert listed[new_id]["validators"] == [k.did for k in vkeys]
            economy = await s.result("economy_get", economy=new_id)
            assert (economy["genesis"], economy["certificates"]) == (signed, 0)
        follow = await servers[2].result("economy_follow", economy=new_id)
        assert follow == {"id": new_id, "known": True}

        # The new economy certifies an entry submitted over the RPC.
        prepared = await servers[1].result(
            "entry_prepare",
            economy=new_id,
            author=did(ALICE),
            kind="transfer",
            body={"to": did(BOB), "amount": "3"},
        )
        await servers[1].result(
            "entry_submit",
            entry=prepared["entry"],
            signature=sign(ALICE, prepared["signing_message"]),
        )
        with trio.fail_after(30):
            await c.validators[1].submitter.wait(bytes.fromhex(prepared["id"][2:]))
        got = await servers[1].result("entry_get", id=prepared["id"])
        assert got["status"] == "certified"
        bob = await servers[1].result("account_get", economy=new_id, account=did(BOB))
        assert bob["balance"] == "3"
        # Every validator holds it (and gossip is quiet before the cluster stops:
        # py-libp2p's pubsub can fail when a message arrives mid-shutdown).
        await converge(c.nodes, g.id)
