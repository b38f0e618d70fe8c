"""A node's wallet RPC played in memory, for client and CLI tests.

:class:`FakeNode` answers the methods of ``docs/rpc.md`` from
``mycelia.testing.economies.World`` ledgers: a submitted entry is checked by the
protocol and, unless ``hold`` is set, certified at once by the world's
validator keys. It records every request body and header, so tests can
assert on exactly what a client sent, and ``lie`` replaces any method's
answer to play a dishonest node.

It is reachable two ways: :meth:`FakeNode.transport` (an
``httpx.MockTransport`` for a client built in the test) and :func:`serve`
(a real HTTP server on a unix socket or TCP, in a thread, with
``rpc.endpoint`` and ``.cookie`` written into a data directory as the real
node does, so the CLI's endpoint discovery runs for real).

Sensors: a :class:`FakeHost` given to the node plays a device's host — it
keeps readings, attests them in the world (its key authors the
``sensor.attest``, the world's validators certify it) and answers the
``sensor_*`` methods from that; :func:`serve_ingest` is its
``POST /v1/readings`` over real HTTP, checking each reading with the
protocol's ``check_reading`` as a host does.
"""

from __future__ import annotations

import base64
import json
import os
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgpack

from mycelia.node.views import (
    account_view,
    certificate_view,
    claimable_view,
    did_in,
    economy_view,
    entry_view,
    fork_view,
    hex_in,
    hex_out,
)
from mycelia.protocol import (
    Certificate,
    DeviceRecord,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    MerkleProof,
    Refused,
    SignedEntry,
    SignedGenesis,
    SignedReading,
    SigningKey,
    check_reading,
    codec,
    did_encode,
    entry_accounts,
)
from mycelia.protocol.impact import claimable
from mycelia.protocol.reasons import Reason
from mycelia.testing.economies import World, key, sign_genesis

COOKIE = "__cookie__:" + "5a" * 32


class FakeError(Exception):
    def __init__(self, code: int, reason: str, detail: str = "", **extra: Any) -> None:
        super().__init__(reason)
        self.error = {
            "code": code,
            "message": reason,
            "data": {"reason": reason, "detail": detail, **extra},
        }


def _relevant(cert: Certificate, public: bytes) -> bool:
    return public in entry_accounts(cert.entry)


class FakeNode:
    def __init__(self, *worlds: World, node_key: SigningKey | None = None) -> None:
        self.key = node_key if node_key is not None else key(7, "fake-node")
        self.worlds: dict[bytes, World] = {w.id: w for w in worlds}
        self.signed: dict[bytes, SignedGenesis] = {
            w.id: sign_genesis(w.genesis, w.vkeys) for w in worlds
        }
        self.certs: dict[bytes, list[Certificate]] = {w.id: [] for w in worlds}
        self.statuses: dict[bytes, dict[str, Any]] = {}
        self.created: list[SignedGenesis] = []
        self.followed: list[bytes] = []
        self.bodies: list[Any] = []  # every request body, parsed
        self.raw: list[bytes] = []  # every request body, as sent
        self.auth: list[str | None] = []  # every Authorization header
        self.hold = False  # True: submitted entries stay pending
        self.lie: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.host: FakeHost | None = None  # the sensor side, when given
        #: fork evidence the node shows, per economy (``economy_forks``)
        self.forks: dict[bytes, list[ForkEvidence]] = {w.id: [] for w in worlds}

    # -- state ------------------------------------------------------------------------

    def record(self, cert: Certificate) -> Certificate:
        """A certificate the node holds (applied to its world already)."""
        self.certs[cert.entry.economy].append(cert)
        self.statuses[cert.entry_id] = {
            "id": hex_out(cert.entry_id),
            "status": "certified",
            "certificate": hex_out(cert.encode()),
            "view": entry_view(cert.entry, cert.entry_id),
        }
        return cert

    def methods(self) -> list[str]:
        return [b["method"] for b in self.bodies if isinstance(b, dict)]

    # -- methods ------------------------------------------------------------------------

    def _world(self, params: dict[str, Any]) -> World:
        eid = hex_in(params["economy"], "economy", size=32)
        world = self.worlds.get(eid)
        if world is None:
            raise FakeError(-32002, "unknown_economy", "no such economy here")
        return world

    def rpc(self, method: str, params: dict[str, Any]) -> Any:
        if method in self.lie:
            return self.lie[method](params)
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            raise FakeError(-32601, "method_not_found", method)
        return handler(params)

    def m_node_info(self, p: dict[str, Any]) -> Any:
        return {
            "did": self.key.did,
            "peer_id": "12D3KooWFake",
            "version": "0.1.0",
            "addresses": ["/ip4/127.0.0.1/tcp/4101"],
            "rpc": ["http://127.0.0.1:8645"],
            "rpc_unix": None,
            "metrics": "http://127.0.0.1:9464/metrics",
            "ingest": None,
            "validator": True,
            "economies": [hex_out(e) for e in self.worlds],
            "pending": 0,
            "sync_lag": 0,
        }

    def m_node_peers(self, p: dict[str, Any]) -> Any:
        return [{"peer_id": "12D3KooWPeerOne"}, {"peer_id": "12D3KooWPeerTwo"}]

    def m_economy_list(self, p: dict[str, Any]) -> Any:
        out = []
        for eid, w in self.worlds.items():
            g = w.genesis
            out.append(
                {
                    "id": hex_out(eid),
                    "name": g.name,
                    "symbol": g.symbol,
                    "decimals": g.decimals,
                    "kind": g.kind,
                    "quorum": g.quorum,
                    "validators": [k.did for k in w.vkeys],
                    "certificates": len(self.certs[eid]),
                    "forks": len(self.forks[eid]),
                }
            )
        return out

    def m_economy_forks(self, p: dict[str, Any]) -> Any:
        world = self._world(p)
        views = [fork_view(world.economy, e) for e in self.forks[world.id]]
        return {"forks": views, "next_cursor": None}

    def m_economy_get(self, p: dict[str, Any]) -> Any:
        world = self._world(p)
        return {
            **economy_view(self.signed[world.id]),
            "accounts": 3,
            "certificates": len(self.certs[world.id]),
        }

    def m_account_get(self, p: dict[str, Any]) -> Any:
        world = self._world(p)
        public = did_in(p["account"], "account")
        return account_view(world.economy, public, world.ledger.account(public))

    def m_account_history(self, p: dict[str, Any]) -> Any:
        world = self._world(p)
        public = did_in(p["account"], "account")
        mine = [c for c in reversed(self.certs[world.id]) if _relevant(c, public)]
        start = int(p.get("cursor") or 0)
        limit = p.get("limit", 50)
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return {
            "entries": [certificate_view(c) for c in page],
            "next_cursor": str(start + limit) if more else None,
        }

    def m_entry_submit(self, p: dict[str, Any]) -> Any:
        entry = Entry.decode(hex_in(p["entry"], "entry"))
        signed = SignedEntry(entry, hex_in(p["signature"], "signature", size=64))
        try:
            signed.verify()
        except Refused as exc:
            raise FakeError(-32001, exc.reason.value, exc.detail) from None
        world = self.worlds.get(entry.economy)
        if world is None:
            raise FakeError(-32002, "unknown_economy", "no such economy here")
        entry_id = entry.id
        if self.hold:
            self.statuses[entry_id] = {"id": hex_out(entry_id), "status": "pending"}
            return {"id": hex_out(entry_id)}
        verdict = world.ledger.check(signed)
        if not verdict.ok:
            assert verdict.reason is not None
            self.statuses[entry_id] = {
                "id": hex_out(entry_id),
                "status": "refused",
                "reason": verdict.reason.value,
                "detail": verdict.detail,
                "view": entry_view(entry, entry_id),
            }
        else:
            cert = world.certify(signed)
            world.ledger.apply(cert)
            self.record(cert)
        return {"id": hex_out(entry_id)}

    def m_entry_get(self, p: dict[str, Any]) -> Any:
        entry_id = hex_in(p["id"], "id", size=32)
        status = self.statuses.get(entry_id)
        if status is None:
            raise FakeError(-32002, "unknown_entry", "no such entry here")
        return status

    def m_economy_signGenesis(self, p: dict[str, Any]) -> Any:
        genesis = Genesis.decode(hex_in(p["genesis"], "genesis"))
        if self.key.public not in {v.key for v in genesis.validators}:
            raise FakeError(-32004, "not_validator", "this node's key is not a validator")
        return {"validator": self.key.did, "signature": hex_out(genesis.sign(self.key))}

    def m_economy_create(self, p: dict[str, Any]) -> Any:
        signed = SignedGenesis.decode(hex_in(p["genesis"], "genesis"))
        try:
            economy = Economy.from_signed(signed)
        except Refused as exc:
            raise FakeError(-32001, exc.reason.value, exc.detail) from None
        self.created.append(signed)
        return {"id": hex_out(economy.id)}

    def m_economy_follow(self, p: dict[str, Any]) -> Any:
        eid = hex_in(p["economy"], "economy", size=32)
        self.followed.append(eid)
        return {"id": hex_out(eid), "known": eid in self.worlds}

    # -- sensors ---------------------------------------------------------------------------

    def _host(self) -> FakeHost:
        if self.host is None:
            raise FakeError(-32601, "method_not_found", "no sensors here")
        return self.host

    def m_sensor_getReadings(self, p: dict[str, Any]) -> Any:
        host = self._host()
        device = hex_in(p["device"], "device", size=32)
        first, last = p.get("first", 0), p.get("last", (1 << 64) - 1)
        limit = p.get("limit", host.page)
        items = [r for r in host.readings.get(device, []) if first <= r[0].reading.counter <= last]
        page, more = items[:limit], items[limit:]
        return {
            "readings": [
                {
                    "reading": hex_out(signed.encode()),
                    "attestation": None if att is None else hex_out(att),
                    "proof": None if proof is None else hex_out(proof.encode()),
                }
                for signed, att, proof in page
            ],
            "next": more[0][0].reading.counter if more else None,
        }

    def m_sensor_getAttestation(self, p: dict[str, Any]) -> Any:
        att = hex_in(p["id"], "id", size=32)
        cert = self._host().attestations.get(att)
        if cert is None:
            raise FakeError(-32002, "unknown_entry", "no such attestation")
        return {"certificate": hex_out(cert.encode()), "view": entry_view(cert.entry, att)}

    def m_sensor_claimable(self, p: dict[str, Any]) -> Any:
        world = self._world(p)
        device = hex_in(p["device"], "device", size=32)
        try:
            found = claimable(world.economy, world.ledger.state, device, self._host().order)
        except Refused as exc:
            raise FakeError(-32001, exc.reason.value, exc.detail) from None
        return claimable_view(found)

    def m_sensor_devices(self, p: dict[str, Any]) -> Any:
        host = self._host()
        out = []
        for device, items in host.readings.items():
            record = host.record(device)
            attested = [r[0].reading.counter for r in items if r[1] is not None]
            out.append(
                {
                    "device": hex_out(device),
                    "owner": did_encode(record.owner),
                    "kind": record.body.device_kind,
                    "last_accepted": items[-1][0].reading.counter if items else None,
                    "last_attested": max(attested) if attested else None,
                    "readings": len(items),
                }
            )
        return out

    # -- JSON-RPC over HTTP ---------------------------------------------------------------

    def _one(self, req: Any) -> dict[str, Any]:
        try:
            result = self.rpc(req["method"], req.get("params") or {})
        except FakeError as exc:
            return {"jsonrpc": "2.0", "id": req.get("id"), "error": exc.error}
        return {"jsonrpc": "2.0", "id": req.get("id"), "result": result}

    def http(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        self.raw.append(body)
        self.auth.append(authorization)
        expected = "Basic " + base64.b64encode(COOKIE.encode()).decode()
        if authorization != expected:
            return 401, b""
        payload = json.loads(body)
        self.bodies.extend(payload if isinstance(payload, list) else [payload])
        if isinstance(payload, list):
            return 200, json.dumps([self._one(r) for r in payload]).encode()
        return 200, json.dumps(self._one(payload)).encode()

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            status, content = self.http(request.content, request.headers.get("authorization"))
            return httpx.Response(
                status, content=content, headers={"content-type": "application/json"}
            )

        return httpx.MockTransport(handle)


class FakeHost:
    """A device host inside a FakeNode: the readings it accepted (each with
    its attestation id and proof once attested) and its attestations."""

    def __init__(self, node: FakeNode, world: World, host_key: SigningKey) -> None:
        self.node = node
        self.world = world
        self.key = host_key
        self.readings: dict[
            bytes, list[tuple[SignedReading, bytes | None, MerkleProof | None]]
        ] = {}
        self.attestations: dict[bytes, Certificate] = {}
        self.order: list[bytes] = []
        self.page = 100  # readings per sensor_getReadings page
        node.host = self

    def record(self, device: bytes) -> DeviceRecord:
        raw = self.world.ledger.state.get_record(DeviceRecord.key(device))  # type: ignore[attr-defined]
        if raw is None:
            raise Refused(Reason.UNKNOWN_DEVICE, "not registered")
        return DeviceRecord.decode(raw)

    def accept(self, signed: SignedReading) -> bytes:
        """The host's ingest check, then store (``Refused`` if refused)."""
        device = signed.reading.device
        items = self.readings.get(device, [])
        reading_id = check_reading(
            signed,
            self.record(device),
            economy=self.world.id,
            host=self.key.public,
            last_counter=items[-1][0].reading.counter if items else None,
            now_ms=None,
        )
        self.readings.setdefault(device, []).append((signed, None, None))
        return reading_id

    def attest(self) -> Certificate:
        """Attest every reading not attested yet (certified, applied, recorded)."""
        pending = [r[0] for items in self.readings.values() for r in items if r[1] is None]
        body, tree, ordered = self.world.attest_body(pending)
        cert = self.node.record(self.world.commit(self.key, body))
        proofs = {s.id: (cert.entry_id, tree.proof(i)) for i, s in enumerate(ordered)}
        for device, items in self.readings.items():
            self.readings[device] = [
                (s, *proofs[s.id]) if att is None and s.id in proofs else (s, att, proof)
                for s, att, proof in items
            ]
        self.attestations[cert.entry_id] = cert
        self.order.append(cert.entry_id)
        return cert


class _Handler(BaseHTTPRequestHandler):
    fake: FakeNode

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        status, content = self.fake.http(body, self.headers.get("authorization"))
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        if content:
            self.wfile.write(content)

    def address_string(self) -> str:  # a unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Quiet:
    """No traceback on stderr when a client hangs up early: CliRunner
    captures sys.stderr process-wide, so it would land in a CLI's output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _UnixServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TcpServer(_Quiet, ThreadingHTTPServer):
    daemon_threads = True


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@contextmanager
def serve(fake: FakeNode, datadir: Path, *, unix: bool = True) -> Iterator[Path]:
    """Serve ``fake`` as a running node whose data directory is ``datadir``."""
    datadir.mkdir(parents=True, exist_ok=True)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server: socketserver.BaseServer
    if unix:
        sock = datadir / "rpc.sock"
        server = _UnixServer(str(sock), handler)
        endpoint = {"http": "http://127.0.0.1:9", "unix": str(sock)}  # the socket wins
    else:
        server = _TcpServer(("127.0.0.1", 0), handler)
        endpoint = {"http": f"http://127.0.0.1:{server.server_address[1]}", "unix": None}
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    write_private(datadir / "rpc.endpoint", json.dumps(endpoint))
    write_private(datadir / ".cookie", COOKIE)
    try:
        yield datadir
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        (datadir / "rpc.endpoint").unlink(missing_ok=True)
        if unix:
            (datadir / "rpc.sock").unlink(missing_ok=True)


# -- the ingest port ------------------------------------------------------------------------


class FakeIngest:
    """``POST /v1/readings``: records each request; answers per reading from
    ``host`` (its ingest check) or, without a host, accepts everything —
    ``refuse`` maps a counter to a reason to answer instead."""

    def __init__(self, host: FakeHost | None = None) -> None:
        self.host = host
        self.requests: list[tuple[str, bytes]] = []  # (content type, body)
        self.received: list[SignedReading] = []
        self.refuse: dict[int, str] = {}
        self.status = 200  # another status answers the whole request with a refusal

    def answer(self, content_type: str, body: bytes) -> tuple[int, bytes]:
        self.requests.append((content_type, body))
        if self.status != 200:
            return self.status, msgpack.packb({"status": "refused", "reason": "too_large"})
        try:
            batch, single = [SignedReading.decode(body)], True
        except Refused:
            batch, single = [SignedReading.from_wire(w) for w in codec.decode(body)], False
        out: list[dict[str, Any]] = []
        for signed in batch:
            self.received.append(signed)
            reason = self.refuse.get(signed.reading.counter)
            try:
                if reason is not None:
                    raise Refused(Reason(reason), "told to refuse it")
                reading_id = self.host.accept(signed) if self.host is not None else signed.id
                out.append({"id": reading_id, "status": "accepted"})
            except Refused as exc:
                out.append({"status": "refused", "reason": exc.reason.value, "detail": exc.detail})
        return 200, msgpack.packb(out[0] if single else out)


class _IngestHandler(BaseHTTPRequestHandler):
    ingest: FakeIngest

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        status, content = self.ingest.answer(self.headers.get("content-type", ""), body)
        self.send_response(status)
        self.send_header("content-type", "application/msgpack")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_ingest(ingest: FakeIngest) -> Iterator[str]:
    """Serve ``ingest`` on loopback; yields its base URL."""
    handler = type("IngestHandler", (_IngestHandler,), {"ingest": ingest})
    server = _TcpServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
