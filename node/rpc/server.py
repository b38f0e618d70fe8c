"""The RPC server: auth, connection limits, HTTP and WebSocket, the datadir files."""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from mycelia.api.codecs import Json
from mycelia.api.contract import (
    COOKIE_FILE,
    COOKIE_USER,
    REQUEST_TIMEOUT,
    REQUEST_TOO_LARGE,
    RPC_ENDPOINT_FILE,
    SOCKET_FILE,
    TOO_MANY_CONNECTIONS,
    WS_PATH,
)
from mycelia.node.config import RpcConfig, check_rpc, split_host_port
from mycelia.node.http import (
    SEND_TIMEOUT_S,
    BodyTimeout,
    Gate,
    Listener,
    Stream,
    bind_tcp,
    bind_unix,
    http_refusal,
    http_url,
    hyper_config,
    is_loopback,
    read_body,
    serve_asgi,
    write_private_file,
)
from mycelia.node.jsonrpc import (
    INVALID_REQUEST,
    LIMIT,
    Dispatcher,
    RpcError,
    encode,
    error_response,
)
from mycelia.node.rpc.hub import (
    OUTBOX_SIZE,
    WS_NORMAL_CLOSURE,
    WS_POLICY_VIOLATION,
    WS_TRY_AGAIN_LATER,
    Hub,
    Session,
)
from mycelia.node.rpc.methods import REGISTRY, Api, openrpc_document, translate

if TYPE_CHECKING:  # the daemon imports the RPC
    from mycelia.node.daemon import Node

log = logging.getLogger("mycelia.rpc")

#: AF_UNIX paths are at most 107 bytes on Linux (108 with the NUL).
_MAX_UNIX_PATH = 107
# -- HTTP and WebSocket ------------------------------------------------------------------


def _json_response(message: Json, status_code: int = 200, *, close: bool = False) -> Response:
    headers = {"connection": "close"} if close else None
    return Response(
        encode(message), status_code=status_code, headers=headers, media_type="application/json"
    )


def _too_large(limit: int) -> RpcError:
    return RpcError(
        LIMIT,
        REQUEST_TOO_LARGE,
        f"larger than rpc.max_request_bytes ({limit} bytes)",
        limit=limit,
    )


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
                WebSocketRoute(WS_PATH, self._websocket),
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
    endpoint_path = datadir / RPC_ENDPOINT_FILE
    socket_path = datadir / SOCKET_FILE
    sockets: list[trio.socket.SocketType] = []
    ours: list[Path] = []
    server: RpcServer | None = None
    try:
        cookie = None
        if config.auth:
            cookie = f"{COOKIE_USER}:{secrets.token_hex(32)}"
            ours.append(cookie_path)
            write_private_file(cookie_path, cookie)
        else:
            cookie_path.unlink(missing_ok=True)  # a stale one would mislead clients
        server = RpcServer(node, config, cookie, outbox_size=outbox_size)

        main = await bind_tcp(config.host, config.port)
        sockets.append(main)
        http = http_url(config.host, main.getsockname()[1])
        extra = []
        for address in config.extra_bind:
            host, port = split_host_port(address)
            sock = await bind_tcp(host, port)
            sockets.append(sock)
            extra.append(http_url(host, sock.getsockname()[1]))
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
            sockets.append(await bind_unix(socket_path))
            unix = socket_path

        ours.append(endpoint_path)
        write_private_file(
            endpoint_path,
            json.dumps({"http": http, "unix": None if unix is None else str(unix)}) + "\n",
        )
        endpoints = RpcEndpoints(http, unix, tuple(extra), cookie_path if cookie else None)
        node.listening.rpc = (http, *extra)
        node.listening.rpc_unix = None if unix is None else str(unix)

        hyper = hyper_config("mycelia.rpc.http", config.header_timeout_s)
        # Messages up to twice our limit reach us and get a -32003 answer;
        # hypercorn closes the connection (1009) on anything larger.
        hyper.websocket_max_message_size = 2 * config.max_request_bytes
        open_streams: set[Stream] = set()
        gate = rpc_gate(config)
        listeners = [
            Listener(s, send_timeout_s, open_streams, gate if s.family != socket.AF_UNIX else None)
            for s in sockets
        ]
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_asgi, server.app, listeners, hyper, open_streams)
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
