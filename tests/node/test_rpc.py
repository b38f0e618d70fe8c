"""The wallet RPC (docs/rpc.md) over real sockets: auth, strict JSON-RPC,
limits, refusals that change nothing stored, subscriptions, and a wallet's
whole path on a 4-validator cluster."""

from __future__ import annotations

import base64
import json
import logging
import socket
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
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

from mycelia.api.encoding import hex_out
from mycelia.client import AsyncClient, Endpoint
from mycelia.node.config import ConfigError, RpcConfig
from mycelia.node.daemon import Node
from mycelia.node.http import Listener, bind_tcp, serve_asgi
from mycelia.node.jsonrpc import Dispatcher, Registry
from mycelia.node.rpc import REGISTRY, Hub, RpcEndpoints, Session, rpc_gate, serve_rpc
from mycelia.protocol import Entry, SignedGenesis, SigningKey, Transfer, did_encode
from mycelia.protocol.domains import ENTRY, Domain
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.cluster import FAST, cluster, converge
from mycelia.testing.economies import T0, genesis, key, sign_genesis
from mycelia.testing.processes import Proc, mycelia
from tests.protocol.test_keys import BAD_SIGNER_IDS, BAD_SIGNERS

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
                assert user == "__cookie__"
                assert len(secret) == 64
                assert int(secret, 16) >= 0
                cookies.append(s.cookie)
                sock = datadir / "rpc.sock"
                assert stat.S_ISSOCK(sock.stat().st_mode)
                assert stat.S_IMODE(sock.stat().st_mode) == 0o600
                endpoint = json.loads((datadir / "rpc.endpoint").read_text())
                port = int(endpoint["http"].rsplit(":", 1)[1])
                assert endpoint == {"http": f"http://127.0.0.1:{port}", "unix": str(sock)}
                assert port != 0
                assert endpoint["http"] == s.endpoints.http
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
            assert not (node.datadir / ".cookie").exists()
            assert s.endpoints.cookie is None
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
    sensors = ("sensors.enabled=true", "sensors.host=127.0.0.1", "sensors.port=0")
    proc = await trio.to_thread.run_sync(Proc, datadir, [], sensors)
    try:
        with trio.fail_after(30):
            # Written once each listens (the ingest starts last).
            while not (datadir / "ingest.endpoint").exists():
                await trio.sleep(0.05)
        endpoint = json.loads((datadir / "rpc.endpoint").read_text())
        ingest = json.loads((datadir / "ingest.endpoint").read_text())
        assert stat.S_IMODE((datadir / "ingest.endpoint").stat().st_mode) == 0o600
        cookie = (datadir / ".cookie").read_text()
        transport = httpx.AsyncHTTPTransport(uds=endpoint["unix"])
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            request = {"jsonrpc": "2.0", "id": 1, "method": "node_info"}
            response = await client.post("/", json=request, auth=tuple(cookie.split(":")))
            info = response.json()["result"]
        async with httpx.AsyncClient(base_url=ingest["http"]) as client:
            assert (await client.get("/v1/health")).json() == {"ok": True}
    finally:
        code, log = await trio.to_thread.run_sync(proc.stop)
    assert code == 0, log
    assert "Traceback" not in log
    assert f"rpc at {endpoint['http']}, unix:{endpoint['unix']}" in log
    # node_info names every address the node bound: what the logs said.
    assert info["did"].startswith("did:key:z6Mk")
    assert info["addresses"] == [proc.address]
    assert (info["rpc"], info["rpc_unix"]) == ([endpoint["http"]], endpoint["unix"])
    assert info["metrics"] == f"http://127.0.0.1:{proc.metrics_port}/metrics"
    assert info["ingest"] == ingest["http"]
    assert ingest["http"].startswith("http://127.0.0.1:")
    assert f"sensor ingest at {ingest['http']}/v1/readings" in log
    for name in (".cookie", "rpc.endpoint", "rpc.sock", "ingest.endpoint"):
        assert not (datadir / name).exists(), name


async def test_node_info_reports_every_address_the_rpc_bound(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "n", FAST)
        await nursery.start(node.run)
        async with serving(nursery, node, replace(LIMITS, extra_bind=("127.0.0.1:0",))) as s:
            info = await s.result("node_info")
            assert info["addresses"] == node.addresses
            assert info["addresses"]
            assert info["rpc"] == [s.endpoints.http, *s.endpoints.extra]
            assert len(info["rpc"]) == 2
            assert ":0" not in "".join(info["rpc"])
            assert info["rpc_unix"] == str(node.datadir.absolute() / "rpc.sock")
            # Not started here (the daemon starts them): reported as off.
            assert (info["metrics"], info["ingest"]) == (None, None)
            await s.stop()
        assert node.listening.rpc == ()
        assert node.listening.rpc_unix is None
        nursery.cancel_scope.cancel()


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
        assert reply[0]["error"]["code"] == -32600
        assert reply[0]["id"] is None
        assert reply[1]["id"] == 2
        assert "result" in reply[1]


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


@pytest.mark.parametrize(("public", "signer"), BAD_SIGNERS, ids=BAD_SIGNER_IDS)
async def test_entry_submit_names_an_invalid_author_key_bad_key(
    tmp_path: Path, public: bytes, signer: Callable[[Domain, bytes], bytes]
) -> None:
    """The reason ledger.check gives (protocol/test_reasons.py checks the
    same keys there): a small-order author is not a bad signature, and a
    mixed-order one whose signature verifies is not accepted."""
    async with solo(tmp_path) as s:
        before = stored(s.node)
        entry = Entry(SOLO_GENESIS.genesis.id, public, 1, ZERO_ID, T0, Transfer(BOB.public, 1))
        params = {"entry": hex_out(entry.encode()), "signature": hex_out(signer(ENTRY, entry.id))}
        error = await s.error("entry_submit", params)
        assert (error["code"], error["data"]["reason"]) == (-32001, "bad_key")
        assert stored(s.node) == before


# -- text that is not Unicode ------------------------------------------------------------------

#: A lone UTF-16 surrogate: valid in a JSON string (as the escape json.dumps
#: writes for it), but no UTF-8 encodes it.
LONE = "\ud800"
METER = {
    "key_type": "ed25519",
    "public_key": "0x" + "11" * 32,
    "device_kind": "solar-meter",
    "host": did(SOLO),
    "metrics": [{"name": LONE, "unit": "Wh", "exponent": 0, "min": "0", "max": "100"}],
    "pop": SIG,
}
#: (what, method, params, the field the -32602 error must name)
NOT_UNICODE_PARAMS = [
    ("memo", "entry_prepare", transfer(BOB, memo=LONE), "body.memo"),
    ("low surrogate", "entry_prepare", transfer(BOB, memo="ok \udfff"), "body.memo"),
    ("body member name", "entry_prepare", transfer(BOB, **{LONE: "x"}), "body"),
    ("kind", "entry_prepare", transfer(BOB) | {"kind": LONE}, "kind"),
    ("metric name", "entry_prepare", transfer(BOB) | {"kind": "device.register", "body": METER},
     "body.metrics[0].name"),
    ("in an array", "entry_prepare", transfer(BOB) | {"body": [1, LONE]}, "body[1]"),
    ("cursor", "account_history", _history(cursor=LONE), "cursor"),
    ("cursor by position", "account_history", [ECON, did(ALICE), LONE], "cursor"),
    ("param name", "account_get", {"economy": ECON, "account": did(ALICE), LONE: 1}, "params"),
    ("economy", "account_get", {"economy": LONE, "account": did(ALICE)}, "economy"),
    ("account", "account_get", {"economy": ECON, "account": "did:key:z6Mk" + LONE}, "account"),
    ("subscription", "unsubscribe", {"subscription": LONE}, "subscription"),
    ("topic", "subscribe", {"topic": LONE, "id": ECON}, "topic"),
    ("entry id", "entry_get", {"id": LONE}, "id"),
]  # fmt: skip
#: (what, request object, the id the -32600 error must carry)
NOT_UNICODE_REQUESTS: list[tuple[str, Any, Any]] = [
    ("id", {"jsonrpc": "2.0", "id": LONE, "method": "node_info"}, None),
    ("id, inside", {"jsonrpc": "2.0", "id": f"a{LONE}b", "method": "node_info"}, None),
    ("method", {"jsonrpc": "2.0", "id": 1, "method": LONE}, 1),
    ("member name", {"jsonrpc": "2.0", "id": 2, "method": "node_info", LONE: 1}, 2),
    ("jsonrpc", {"jsonrpc": LONE, "id": 3, "method": "node_info"}, 3),
    ("notification", {"jsonrpc": "2.0", "method": f"node_info{LONE}"}, None),
]


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing a client sent made the node log an error or a traceback."""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    assert "Traceback" not in caplog.text


def _request(method: str, params: Any, request_id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def _check_not_unicode_param(reply: dict[str, Any], what: str, field: str) -> None:
    assert reply["id"] == 1, (what, reply)
    error = reply["error"]
    assert (error["code"], error["data"]["reason"]) == (-32602, "invalid_params"), (what, error)
    assert error["data"]["field"] == field, (what, error)
    assert "not Unicode text" in error["data"]["detail"], (what, error)


def _check_not_unicode_request(reply: dict[str, Any], what: str, echo: Any) -> None:
    assert reply["id"] == echo, (what, reply)
    error = reply["error"]
    assert (error["code"], error["data"]["reason"]) == (-32600, "invalid_request"), (what, error)
    assert "not Unicode text" in error["data"]["detail"], (what, error)


async def test_lone_surrogates_are_refused_over_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with solo(tmp_path) as s:
        before = stored(s.node)
        for what, method, params, field in NOT_UNICODE_PARAMS:
            body = json.dumps(_request(method, params)).encode()
            assert b"\\ud800" in body or b"\\udfff" in body  # sent as the JSON escape
            response = await s.post(body)
            assert response.status_code == 200, (what, response)
            _check_not_unicode_param(response.json(), what, field)
        for what, request, echo in NOT_UNICODE_REQUESTS:
            response = await s.post(request)
            assert response.status_code == 200, (what, response)
            _check_not_unicode_request(response.json(), what, echo)
        # An upper-case escape is the same character.
        response = await s.post(b'{"jsonrpc":"2.0","id":"\\uDC00","method":"node_info"}')
        _check_not_unicode_request(response.json(), "upper case", None)
        # In a batch, the other requests are answered as usual.
        batch = [
            NOT_UNICODE_REQUESTS[0][1],
            {"jsonrpc": "2.0", "id": 7, "method": "node_info"},
            _request("entry_prepare", transfer(BOB, memo=LONE), 8),
            _request("entry_prepare", transfer(BOB, memo="fine"), 9),
        ]
        first, info, memo, prepared = (await s.post(batch)).json()
        _check_not_unicode_request(first, "batch", None)
        assert info["id"] == 7
        assert info["result"]["did"] == SOLO.did
        assert memo["id"] == 8
        assert memo["error"]["data"]["field"] == "body.memo"
        assert prepared["id"] == 9
        assert prepared["result"]["view"]["body"]["memo"] == "fine"
        assert stored(s.node) == before
    assert_quiet(caplog)


async def test_lone_surrogates_are_refused_over_a_websocket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with solo(tmp_path) as s, s.ws() as ws:
        before = stored(s.node)
        for what, method, params, field in NOT_UNICODE_PARAMS:
            await ws.send(_request(method, params))
            _check_not_unicode_param(await ws.receive(), what, field)
        for what, request, echo in NOT_UNICODE_REQUESTS:
            await ws.send(request)
            _check_not_unicode_request(await ws.receive(), what, echo)
        # The connection goes on: a subscription and its id are still fine.
        sub = await ws.result("subscribe", topic="account", economy=ECON, account=did(ALICE))
        assert await ws.result("unsubscribe", subscription=sub) is True
        assert stored(s.node) == before
    assert_quiet(caplog)


async def test_an_unexpected_exception_is_logged_once_and_answered_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A handler's bug, and a result that is not JSON (a bug past the handler):
    # each is logged once with its traceback, and the client gets -32603
    # without the node's internals, never a transport error.
    registry = Registry()

    @registry.method("boom", "raises", result={})
    async def boom(api: Any, session: Any) -> Any:
        raise RuntimeError("internal detail")

    @registry.method("opaque", "returns what JSON cannot hold", result={})
    async def opaque(api: Any, session: Any) -> Any:
        return object()

    dispatcher = Dispatcher(registry, None, max_batch=4)
    for name in ("boom", "opaque"):
        caplog.clear()
        reply = json.loads(await dispatcher.handle(json.dumps(_request(name, {})), None) or "")
        assert reply["error"]["code"] == -32603
        assert reply["error"]["data"] == {
            "reason": "internal_error",
            "detail": "see the node's log",
        }
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, name
        assert errors[0].exc_info is not None, name
        assert "internal detail" not in json.dumps(reply)


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
        assert isinstance(reply, dict)
        assert reply["id"] is None
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
                await trio.lowlevel.checkpoint()

    app = Starlette(routes=[WebSocketRoute("/ws", flood)])
    for timeout_s in (0.2, 60.0):
        sock = await bind_tcp("127.0.0.1", 0)
        port = sock.getsockname()[1]
        streams: set[Any] = set()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                listener = Listener(sock, timeout_s, streams)
                await nursery.start(serve_asgi, app, [listener], HyperConfig(), streams)
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


# -- slow clients -------------------------------------------------------------------------------


async def connect(port: int, data: bytes = b"") -> trio.SocketStream:
    """A raw client on 127.0.0.1:``port`` that sends ``data`` and then nothing."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if data:
        await stream.send_all(data)
    return stream


async def read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while True:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset: closed all the same
            return out
        if not data:
            return out
        out += data


def http_answer(raw: bytes) -> tuple[int, Any]:
    """(status, JSON body or None) of one HTTP/1.1 answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def slow_post(path: str, *, secret: str = "", content_type: str = "application/json") -> bytes:
    """A POST's headers and the first byte of a body announced 1000 bytes long."""
    auth = f"Authorization: Bearer {secret}\r\n" if secret else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: node\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: 1000\r\n{auth}\r\n["
    ).encode()


#: Headers that never end.
SLOW_HEADERS = b"POST / HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"


def rpc_port(s: Served) -> int:
    return int(s.endpoints.http.rsplit(":", 1)[1])


def rpc_error(raw: bytes) -> tuple[int, int, str]:
    status, body = http_answer(raw)
    return status, body["error"]["code"], body["error"]["data"]["reason"]


async def test_slow_clients_are_cut_off_after_the_header_and_body_timeouts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = replace(LIMITS, max_connections=16, header_timeout_s=0.5, body_timeout_s=0.5)
    async with solo(tmp_path, config) as s:
        port = rpc_port(s)
        bodies = [await connect(port, slow_post("/", secret=s.secret)) for _ in range(100)]
        heads = [await connect(port, SLOW_HEADERS) for _ in range(100)]
        with trio.fail_after(60):  # the old server held them forever
            body_answers = [await read_all(c) for c in bodies]
            head_answers = [await read_all(c) for c in heads]
        # A body cut off: 408 and closed; those beyond rpc.max_connections
        # were refused at once (503).
        answers = [rpc_error(a) for a in body_answers]
        assert (408, -32003, "request_timeout") in answers
        assert set(answers) <= {
            (408, -32003, "request_timeout"),
            (503, -32003, "too_many_connections"),
        }
        # Headers cut off: closed without an answer.
        assert head_answers == [b""] * len(heads)
        for c in bodies + heads:
            await c.aclose()
        assert (await s.result("node_info"))["did"] == SOLO.did
    assert_quiet(caplog)


async def test_a_local_wallet_is_answered_while_200_slow_clients_hang_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Long timeouts: the slow clients hold on for the whole test. Idle
    # WebSockets and slow bodies take every slot TCP may have; the wallet
    # (the real client, which prefers the unix socket) gets the reserve.
    caplog.set_level(logging.DEBUG)
    config = replace(
        LIMITS,
        max_connections=16,
        unix_reserve=2,
        header_timeout_s=300,
        body_timeout_s=300,
        ws_idle_timeout_s=300,
    )
    async with solo(tmp_path, config) as s, AsyncExitStack() as stack:
        port = rpc_port(s)
        slow = [
            await stack.enter_async_context(open_websocket_url(s.ws_url, extra_headers=s.auth))
            for _ in range(6)
        ]
        slow += [await connect(port, slow_post("/", secret=s.secret)) for _ in range(100)]
        slow += [await connect(port, SLOW_HEADERS) for _ in range(94)]
        assert len(slow) == 200
        # Over TCP: every slot is taken (answered at once, not held).
        response = await s.post({"jsonrpc": "2.0", "id": 1, "method": "node_info"})
        assert response.status_code == 503
        assert response.json()["error"]["data"]["reason"] == "too_many_connections"

        endpoint = Endpoint.from_datadir(s.node.datadir)
        assert endpoint.unix == str(s.endpoints.unix)
        async with AsyncClient(endpoint) as wallet:
            econ = SOLO_GENESIS.genesis.id
            entry_id = await wallet.transfer(ALICE, econ, did(BOB), 7, memo="still here")
            with trio.fail_after(30):
                await s.node.submitter.wait(entry_id)
            assert (await wallet.entry_get(entry_id)).status == "certified"
            assert (await wallet.account_get(econ, did(BOB))).balance == 7
        # The slow clients are all still there, and TCP still full.
        response = await s.post({"jsonrpc": "2.0", "id": 1, "method": "node_info"})
        assert response.status_code == 503
        for c in slow[6:]:
            await c.aclose()  # type: ignore[union-attr]
    assert_quiet(caplog)


async def test_an_idle_websocket_without_subscriptions_is_closed(tmp_path: Path) -> None:
    async with solo(tmp_path, replace(LIMITS, ws_idle_timeout_s=0.5)) as s, s.ws() as watching:
        sub = await watching.result("subscribe", topic="account", economy=ECON, account=did(ALICE))
        async with s.ws() as idle:
            assert (await idle.result("node_info"))["did"] == SOLO.did
            with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
                await idle.receive()
            assert closed.value.reason.code == 1000
            assert "idle" in (closed.value.reason.reason or "")
        # Quiet for longer than that one, but it holds a subscription.
        assert (await watching.result("node_info"))["did"] == SOLO.did
        assert await watching.result("unsubscribe", subscription=sub) is True
        with trio.fail_after(30), pytest.raises(ConnectionClosed) as closed:
            await watching.receive()
        assert closed.value.reason.code == 1000


def test_the_rpc_gate_counts_addresses_other_than_loopback() -> None:
    gate = rpc_gate(replace(LIMITS, max_connections=3, max_connections_per_address=2))
    for local in ("127.0.0.1", "127.8.0.1", "::1", "::ffff:127.0.0.1"):
        assert not gate.counted(local), local
    for remote in ("10.0.0.7", "192.168.1.20", "fe80::1%eth0", "2001:db8::1"):
        assert gate.counted(remote), remote
    assert gate.admit("10.0.0.7") is None
    assert gate.admit("10.0.0.7") is None
    crowded = gate.admit("10.0.0.7")  # a third from one address
    assert crowded is not None
    assert crowded == gate.crowded
    status, error = http_answer(crowded)
    assert (status, error["error"]["code"]) == (503, -32003)
    assert error["error"]["data"]["reason"] == "too_many_connections"
    assert "rpc.max_connections_per_address" in error["error"]["data"]["detail"]
    assert gate.admit("10.0.0.8") is None  # the third in all
    assert gate.admit("10.0.0.9") == gate.busy
    assert "rpc.max_connections)" in http_answer(gate.busy)[1]["error"]["data"]["detail"]
    gate.release("10.0.0.7")
    assert gate.admit("10.0.0.9") is None
    assert gate.open == {"10.0.0.7": 1, "10.0.0.8": 1, "10.0.0.9": 1}


# -- discovery ---------------------------------------------------------------------------------


async def test_openrpc_document(tmp_path: Path) -> None:
    async with solo(tmp_path) as s:
        doc = await s.result("rpc.discover")
        assert json.loads(json.dumps(doc)) == doc
        assert doc["openrpc"] == "1.2.6"
        assert doc["info"]["title"]
        assert doc["info"]["version"]
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
            "compute_offers", "channel_get", "channel_list", "compute_job_start",
            "compute_job_voucher", "compute_job_status", "compute_job_result",
            "compute_job_cancel", "rpc.discover",
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
        assert info["economies"] == [econ]
        assert info["validator"] is True
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
                    assert status["view"] == view
                    assert status["certificate"].startswith("0x")
                else:
                    with trio.fail_after(30):
                        await c.validators[0].submitter.wait(bytes.fromhex(prepared["id"][2:]))
                got = await s0.result("entry_get", id=prepared["id"])
                assert got["status"] == "certified"
                assert got["view"] == view
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
        assert alice["member"] is True
        assert alice["limit"] == "1000"
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
        assert summary["certificates"] == 7
        assert len(summary["validators"]) == 4


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
