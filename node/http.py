"""HTTP serving for every listener of the node: the RPC (``rpc/``), the
sensor ingest (``ingest.py``) and the metrics endpoint (``metrics.py``).

Why this exists: each of them faces clients the node does not control (a
wallet, a LAN full of devices, a scraper), so each needs the same bounds on
time and number, and one implementation of them instead of three.

How it works:

* Hypercorn's trio connection handler speaks HTTP/1.1 (and WebSocket) to an
  ASGI app, on sockets bound here (:func:`bind_tcp`, :func:`bind_unix`: the
  unix socket is 0600 before it listens; port 0 reports the port bound).
  Why not ``hypercorn.trio.serve``: hypercorn shields every socket write
  from cancellation, so one client that stops reading would block its
  connection task — and the clean stop — forever. Our :class:`Stream` gives
  up a write after ``send_timeout_s``, and :func:`serve_asgi` closes every
  connection at once at stop.
* Time: a request head must be complete within ``header_timeout_s``
  (hypercorn's keep-alive timer, :func:`hyper_config`): then the connection
  closes, or is answered ``timeout_answer`` first (metrics: 408); a body
  within its own timeout (:func:`read_body`, the app's: 408).
* Size: a head is at most ``max_header_bytes`` (431), 16 KiB by default.
* Number: a :class:`Gate` counts connections at accept, before a byte is
  read, so that connections that never send a request count too; over its
  caps a connection is answered a canned 503 (:func:`http_refusal`) and
  closed.
* The datadir files the listeners write (endpoints) are written 0600 and
  atomically (:func:`write_private_file`); :func:`http_url` names an
  address the same way everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ASGIFramework, ConnectionState
from hypercorn.utils import wrap_app
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mycelia.node.config import ConfigError

log = logging.getLogger("mycelia.http")

#: A socket write that makes no progress for this long closes the connection.
SEND_TIMEOUT_S = 10.0
#: What the rest of an oversized HTTP body may be read (and dropped) up to,
#: as a multiple of the limit, so that a client still sending reads our 413
#: instead of a connection reset; beyond it the connection just closes.
_DRAIN_FACTOR = 4
#: How long a connection refused at accept (too many) is given to read its
#: 503 before it is closed, and how much of what it sent is read meanwhile.
_REFUSAL_LINGER_S = 1.0
_REFUSAL_DRAIN_BYTES = 64 * 1024
#: Refusals being answered at once per gate; beyond, a flood is closed unanswered.
_MAX_REFUSING = 256


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


class Stream(trio.abc.HalfCloseableStream):
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
        open_: set[Stream],
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


class Listener(trio.abc.Listener[Stream]):
    """Accepts :class:`Stream` s; with a ``gate``, those over its caps come
    marked with their refusal."""

    def __init__(
        self,
        sock: trio.socket.SocketType,
        timeout: float,
        open_: set[Stream],
        gate: Gate | None = None,
    ) -> None:
        self._inner = trio.SocketListener(sock)
        self._timeout = timeout
        self._open = open_
        self.gate = gate

    async def accept(self) -> Stream:
        while True:
            inner = await self._inner.accept()
            gate = self.gate
            if gate is None:
                return Stream(inner, self._timeout, self._open)
            try:
                address = str(inner.socket.getpeername()[0])
            except OSError:  # gone already
                inner.socket.close()
                continue
            if not gate.counted(address):
                return Stream(inner, self._timeout, self._open)
            refusal = gate.admit(address)
            if refusal is not None:
                return Stream(inner, self._timeout, self._open, refusal=(gate, refusal))
            release = functools.partial(gate.release, address)
            return Stream(inner, self._timeout, self._open, on_close=release)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Connection(TCPServer):
    """Hypercorn's connection handler; with a ``timeout_answer``, a client
    whose request head does not arrive in time (the keep-alive timer, see
    :func:`hyper_config`) is sent that answer before the connection closes,
    instead of nothing."""

    def __init__(
        self,
        app: AppWrapper,
        config: HyperConfig,
        context: WorkerContext,
        state: ConnectionState,
        stream: Stream,
        *,
        timeout_answer: bytes | None = None,
    ) -> None:
        # Hypercorn annotates its stream as a TLS one, and uses only what
        # every trio stream has (and ``socket``, which ours keeps).
        super().__init__(
            app, config, context, state, cast("trio.SSLStream[trio.SocketStream]", stream)
        )
        self._timeout_answer = timeout_answer

    async def _idle_timeout(self) -> None:
        with trio.move_on_after(self.config.keep_alive_timeout):
            await self.context.terminated.wait()
        with trio.CancelScope(shield=True):
            if self._timeout_answer is not None and not self.context.terminated.is_set():
                with (
                    trio.move_on_after(1.0),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await self.stream.send_all(self._timeout_answer)
            await self._initiate_server_close()


async def serve_asgi(
    app: ASGIApp,
    listeners: list[Listener],
    config: HyperConfig,
    open_streams: set[Stream],
    *,
    timeout_answer: bytes | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's trio connection handler on our listeners, until cancelled;
    then every connection is closed at once. ``timeout_answer``: the bytes
    sent to a client whose request head is late (default: none, the
    connection just closes)."""
    context = WorkerContext(None)
    # The same ASGI 3 callable, declared twice: starlette types a scope as a
    # mapping, hypercorn as TypedDicts, and neither type is the other's.
    asgi = wrap_app(cast("ASGIFramework", app), config.wsgi_max_body_size, "asgi")

    async def connection(stream: Stream) -> None:
        try:
            if stream.refusal is not None:
                await stream.refuse()
                return
            state = ConnectionState({})
            handler = _Connection(
                asgi, config, context, state, stream, timeout_answer=timeout_answer
            )
            await handler.run()
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


async def bind_tcp(host: str, port: int, what: str = "rpc") -> trio.socket.SocketType:
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


async def bind_unix(path: Path) -> trio.socket.SocketType:
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


def write_private_file(path: Path, text: str) -> None:
    """Atomically, mode 0600 whatever was there before."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _HeadLimit:
    """Answer 431 to an HTTP request whose head (request line and headers)
    is larger than ``limit`` bytes. h11 refuses a head that is still
    incomplete past its buffer size; this catches one that arrived whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + 16
            if size > self.limit:
                body = b"request too large\n"
                headers = [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ]
                await send({"type": "http.response.start", "status": 431, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def hyper_config(logger: str, header_timeout_s: float) -> HyperConfig:
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
    max_header_bytes: int | None = None,
    timeout_answer: bytes | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve an ASGI ``app`` over HTTP on ``host:port`` until cancelled, the
    way the RPC is served (hypercorn's trio connection handler on a socket
    bound here, headers within ``header_timeout_s``, writes bounded by
    ``send_timeout_s``, connections capped by ``gate``, every connection
    closed at stop). The app bounds its bodies' time (:func:`read_body`).
    ``max_header_bytes`` bounds a request head (default 16 KiB; more: 431);
    ``timeout_answer`` is what a late head is answered (default: nothing).
    Reports ``(host, bound port)``; ``what`` names the service in errors and
    logs (e.g. ``"ingest"``)."""
    sock = await bind_tcp(host, port, what)
    try:
        open_streams: set[Stream] = set()
        listener = Listener(sock, send_timeout_s, open_streams, gate)
        hyper = hyper_config(f"mycelia.{what}.http", header_timeout_s)
        if max_header_bytes is not None:
            hyper.h11_max_incomplete_size = max_header_bytes
            app = _HeadLimit(app, max_header_bytes)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                functools.partial(
                    serve_asgi, app, [listener], hyper, open_streams, timeout_answer=timeout_answer
                )
            )
            task_status.started((host, sock.getsockname()[1]))
    finally:
        sock.close()
