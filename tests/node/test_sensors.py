"""Sensors on the node (docs/sensors.md, "Node interfaces"): the ingest over
real HTTP (every refusal with its reason and nothing stored, accepted
readings durable, msgpack and JSON), the attester on a 4-validator cluster
(a certified attestation whose proofs verify with ``AttestationAudit``, a
claim that mints), the audit stream relayed through another node's RPC, a
restart in the middle of an attestation, and retention."""

from __future__ import annotations

import json
import logging
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio

from mycelia.client import AsyncClient, Endpoint
from mycelia.node import wire
from mycelia.node.config import SensorsConfig
from mycelia.node.daemon import MetricsExporter, Node
from mycelia.node.ingest import BODY_REFUSALS, RATE_LIMITED, READING_REASONS, Ingest
from mycelia.node.metrics import Metrics
from mycelia.node.store import Store, StoreError
from mycelia.node.submitter import CERTIFIED
from mycelia.node.wire import AuditRequest
from mycelia.protocol import (
    P256,
    AttestationAudit,
    Certificate,
    DeviceKey,
    DeviceRegister,
    Economy,
    Entry,
    ImpactClaim,
    MerkleProof,
    Reading,
    Reason,
    Refused,
    SignedReading,
    SigningKey,
    codec,
    schema,
)
from mycelia.protocol.sensors import MAX_COUNTER, P256_N
from mycelia.testing.cluster import FAST, cluster, converge
from mycelia.testing.economies import (
    ENERGY,
    TEMPERATURE,
    World,
    device_key,
    impact_genesis,
    key,
    sign_genesis,
    validator_keys,
)
from tests.node.test_rpc import (
    LIMITS,
    SLOW_HEADERS,
    connect,
    http_answer,
    read_all,
    serving,
    slow_post,
)

SOLO = key(0, "sensor-host")
OWNER = key(1, "sensor-owner")
OTHER_HOST = key(2, "other-host")
IMPACT = sign_genesis(impact_genesis(validators=[SOLO]), [SOLO])
ECON = IMPACT.genesis.id
SECOND = sign_genesis(impact_genesis(validators=[SOLO], nonce=b"second"), [SOLO])
ED, P2 = device_key(1), device_key(2, P256)
STRANGER, ELSEWHERE = device_key(9), device_key(3)
MSGPACK, JSON = "application/msgpack", "application/json"
CONFIG = SensorsConfig(enabled=True, host="127.0.0.1", port=0)
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def reading(
    dev: DeviceKey,
    counter: int,
    value: int = 100,
    *,
    economy: bytes = ECON,
    metric: str = "energy_wh",
    exponent: int = 0,
    ts_ms: int | None = None,
) -> SignedReading:
    ts = now_ms() if ts_ms is None else ts_ms
    return Reading(economy, dev.device, counter, ts, metric, value, exponent).sign(dev)


def batch(readings: list[SignedReading]) -> bytes:
    return codec.encode_trusted([r.to_wire() for r in readings])


def as_json(r: SignedReading) -> dict[str, Any]:
    x = r.reading
    return {
        "economy": "0x" + x.economy.hex(),
        "device": "0x" + x.device.hex(),
        "counter": x.counter,
        "ts_ms": x.ts_ms,
        "metric": x.metric,
        "value": x.value,
        "exponent": x.exponent,
        "signature": "0x" + r.signature.hex(),
    }


async def commit(node: Node, author: SigningKey, economy: bytes, body: Any) -> Certificate:
    """``author``'s next entry, submitted to ``node`` and certified."""
    acct = node.store.account(economy, author.public)
    ts = max(now_ms(), acct.ts_ms)
    signed = Entry(economy, author.public, acct.seq + 1, acct.head, ts, body).sign(author)
    await node.submit(signed)
    with trio.fail_after(30):
        status = await node.submitter.wait(signed.id)
    assert status.state == CERTIFIED, status
    assert status.certificate is not None
    return status.certificate


async def register(
    node: Node, dev: DeviceKey, host: SigningKey = SOLO, economy: bytes = ECON
) -> Certificate:
    body = DeviceRegister.make(
        dev, economy, OWNER.public, "solar-meter", host.public, (ENERGY, TEMPERATURE)
    )
    return await commit(node, OWNER, economy, body)


def stored(node: Node) -> tuple[Any, ...]:
    """Everything about readings a refusal must leave as it was."""
    s = node.store
    devices = [d.device for d in (ED, P2, STRANGER, ELSEWHERE)]
    return (
        s.unattested_count(),
        s.in_flight(),
        {d: s.ingest_state(d) for d in devices},
        {
            (e, d): s.readings(e, d, 0, schema.UINT64_MAX, 1000)
            for e in (ECON, SECOND.genesis.id, bytes(32))
            for d in devices
        },
    )


@dataclass
class Host:
    node: Node
    ingest: Ingest
    http: httpx.AsyncClient
    metrics: Metrics

    async def send(self, body: bytes, content_type: str = MSGPACK) -> httpx.Response:
        return await self.http.post(
            "/v1/readings", content=body, headers={"content-type": content_type}
        )

    async def post(self, body: bytes | SignedReading | list[SignedReading]) -> list[Any]:
        if isinstance(body, SignedReading):
            body = body.encode()
        elif isinstance(body, list):
            body = batch(body)
        response = await self.send(body)
        assert response.status_code == 200, response.content
        assert response.headers["content-type"] == MSGPACK
        return msgpack.unpackb(response.content)  # type: ignore[no-any-return]

    def refused(self, reason: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "mycelia_sensor_readings_refused_total", {"reason": reason}
        )


@asynccontextmanager
async def solo_host(
    tmp_path: Path,
    config: SensorsConfig = CONFIG,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_ms: Callable[[], int] = now_ms,
) -> AsyncIterator[Host]:
    """One node, the only validator of an impact economy, hosting devices
    and serving its ingest over HTTP."""
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "host", FAST)
        await nursery.start(node.run)
        await node.add_economy(IMPACT)
        metrics = Metrics(process_metrics=False)
        ingest = Ingest(node, config, metrics, clock=clock, wall_ms=wall_ms)
        host, port = await nursery.start(ingest.serve)
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http:
            yield Host(node, ingest, http, metrics)
        nursery.cancel_scope.cancel()


# -- ingest ------------------------------------------------------------------------------------


async def test_accepted_readings_are_durable_in_msgpack_and_json(tmp_path: Path) -> None:
    accepted: list[SignedReading] = []
    async with solo_host(tmp_path) as h:
        await register(h.node, ED)
        await register(h.node, P2)
        assert (await h.http.get("/v1/health")).json() == {"ok": True}

        # One reading as its own signed-reading bytes, as a device sends it.
        one = reading(ED, 1, 250)
        assert await h.post(one) == [{"id": one.id, "status": "accepted"}]
        # A msgpack batch of both key types.
        many = [reading(ED, c, 250) for c in (2, 3)] + [reading(P2, c, 90) for c in (1, 2, 7)]
        assert await h.post(many) == [{"id": r.id, "status": "accepted"} for r in many]
        accepted += [one, *many]

        # JSON: one object, then a list with a malformed object in the middle.
        single = reading(ED, 4, -12, metric="temp_c", exponent=-1)
        response = await h.send(json.dumps(as_json(single)).encode(), JSON)
        assert response.headers["content-type"] == JSON
        assert response.json() == [{"id": "0x" + single.id.hex(), "status": "accepted"}]
        first, last = reading(P2, 8), reading(P2, 9)
        broken = {k: v for k, v in as_json(reading(P2, 10)).items() if k != "signature"}
        response = await h.send(json.dumps([as_json(first), broken, as_json(last)]).encode(), JSON)
        answers = response.json()
        assert [a["status"] for a in answers] == ["accepted", "refused", "accepted"]
        assert answers[1]["reason"] == "malformed"
        assert "signature" in answers[1]["detail"]
        accepted += [single, first, last]

        metrics = h.metrics.registry
        assert metrics.get_sample_value("mycelia_sensor_readings_accepted_total") == 9
        assert h.refused("malformed") == 1
        assert metrics.get_sample_value("mycelia_sensor_ingest_seconds_count") == 4
        assert h.node.attester._waiting == 9  # the attester was told
    # Durable: the store, opened again after the node stopped, holds them.
    store = Store(tmp_path / "host" / "store")
    for r in accepted:
        held = store.reading(r.reading.device, r.reading.counter)
        assert held is not None
        assert held.signed == r.encode()
        assert not held.attested
        assert held.economy == ECON
        assert held.received_ms > 0
    ed, p2 = store.ingest_state(ED.device), store.ingest_state(P2.device)
    assert ed is not None
    assert (ed.last_accepted, ed.readings) == (4, 4)
    assert p2 is not None
    assert (p2.last_accepted, p2.readings) == (9, 5)
    assert store.unattested_count() == 9
    store.close()


async def test_every_refusal_has_its_reason_and_stores_nothing(tmp_path: Path) -> None:
    async with solo_host(tmp_path) as h:
        await h.node.add_economy(SECOND)
        await register(h.node, ED)
        await register(h.node, P2)
        await register(h.node, ELSEWHERE, host=OTHER_HOST)
        assert len(await h.post([reading(ED, 1), reading(P2, 1)])) == 2

        good = reading(ED, 2)
        flipped = bytes([good.signature[0] ^ 1]) + good.signature[1:]
        p = reading(P2, 2)
        s = int.from_bytes(p.signature[32:], "big")
        high_s = p.signature[:32] + (P256_N - s).to_bytes(32, "big")
        cases: list[tuple[str, bytes]] = [
            ("bad_signature", SignedReading(good.reading, flipped).encode()),
            ("high_s", SignedReading(p.reading, high_s).encode()),
            ("unknown_device", reading(STRANGER, 1).encode()),
            ("not_host", reading(ELSEWHERE, 1).encode()),
            ("replayed_counter", reading(ED, 1).encode()),
            ("clock_skew", reading(ED, 5, ts_ms=now_ms() + 600_000).encode()),
            ("clock_skew", reading(ED, 5, ts_ms=0).encode()),  # a clock never set
            ("counter_out_of_range", reading(ED, (1 << 64) - 1).encode()),  # erased flash
            ("counter_out_of_range", reading(ED, MAX_COUNTER + 1).encode()),
            ("unknown_metric", reading(ED, 5, metric="humidity").encode()),
            ("unknown_metric", reading(ED, 5, exponent=1).encode()),
            ("out_of_range", reading(ED, 5, 2_000_000).encode()),
            ("out_of_range", reading(ED, 5, -500, metric="temp_c", exponent=-1).encode()),
            # Signed for an economy this node follows but that does not
            # register the device, and for one it does not follow.
            ("wrong_economy", reading(ED, 5, economy=SECOND.genesis.id).encode()),
            ("wrong_economy", reading(ED, 5, economy=bytes(32)).encode()),
            ("non_canonical", good.encode().replace(b"\xa7reading\x01", b"\xa7reading\xcc\x01")),
            ("too_large", codec.encode([b"x" * 300])),
            (
                "malformed",
                codec.encode(["signed-reading", 2, good.reading.to_wire(), good.signature]),
            ),
            ("malformed", codec.encode(["signed-reading", 1, good.reading.to_wire(), b"short"])),
        ]
        # Every reason a reading can get (rate_limited: the token bucket test).
        assert {reason for reason, _ in cases} == READING_REASONS - {RATE_LIMITED}
        for reason, data in cases:
            before = stored(h.node)
            # Alone, and as the one element of a batch.
            for body in (data, b"\x91" + data):
                answers = await h.post(body)
                assert len(answers) == 1, reason
                assert answers[0]["status"] == "refused", (reason, answers)
                assert answers[0]["reason"] == reason, (reason, answers)
                assert answers[0]["detail"]
                assert stored(h.node) == before, reason
        assert h.refused("wrong_economy") == 4
        assert h.refused("high_s") == 2

        # A replayed batch: all refused, nothing stored; a counter twice in one batch.
        sent = [reading(ED, 5), reading(ED, 6)]
        assert [a["status"] for a in await h.post(sent)] == ["accepted", "accepted"]
        before = stored(h.node)
        answers = await h.post(sent)
        assert [a["reason"] for a in answers] == ["replayed_counter"] * 2
        assert stored(h.node) == before
        twice = [reading(ED, 7), reading(ED, 7, 101)]
        answers = await h.post(twice)
        assert [a["status"] for a in answers] == ["accepted", "refused"]
        assert answers[1]["reason"] == "replayed_counter"
        held = h.node.store.reading(ED.device, 7)
        assert held is not None
        assert held.signed == twice[0].encode()
        # A good reading beside bad ones is accepted alone.
        answers = await h.post([reading(STRANGER, 2), reading(P2, 3), reading(ED, 7)])
        assert [a.get("reason", a["status"]) for a in answers] == [
            "unknown_device",
            "accepted",
            "replayed_counter",
        ]


async def test_the_ingest_endpoint_file_and_node_info(tmp_path: Path) -> None:
    """As ``rpc.endpoint``: ``ingest.endpoint`` names the bound address
    (port 0 resolved), 0600, and a stop removes it; ``node_info`` says it."""
    endpoint = tmp_path / "host" / "ingest.endpoint"
    async with solo_host(tmp_path) as h, trio.open_nursery() as nursery:
        url = str(h.http.base_url).rstrip("/")
        assert json.loads(endpoint.read_text()) == {"http": url}
        assert stat.S_IMODE(endpoint.stat().st_mode) == 0o600
        assert h.node.listening.ingest == url
        assert not url.endswith(":0")
        async with serving(nursery, h.node, replace(LIMITS, unix_socket=False)) as s:
            assert (await s.result("node_info"))["ingest"] == url
        nursery.cancel_scope.cancel()
    assert not endpoint.exists()
    assert h.node.listening.ingest is None


async def test_json_integers_beyond_2_53_are_refused_as_not_exact(tmp_path: Path) -> None:
    """A JSON library that holds numbers as doubles rounds them above 2**53;
    the ingest refuses those integers as ``malformed`` (naming msgpack), and
    the same reading in msgpack is judged on its merits."""
    async with solo_host(tmp_path) as h:
        await register(h.node, ED)
        edge = reading(ED, MAX_COUNTER)  # 2**53 - 1: exact in JSON
        response = await h.send(json.dumps(as_json(edge)).encode(), JSON)
        assert response.json() == [{"id": "0x" + edge.id.hex(), "status": "accepted"}]
        before = stored(h.node)
        beyond = [
            as_json(reading(ED, MAX_COUNTER + 1)),
            as_json(reading(ED, MAX_COUNTER + 2)) | {"counter": MAX_COUNTER + 1},
            as_json(reading(ED, 1)) | {"value": -(1 << 53)},
            as_json(reading(ED, 1)) | {"ts_ms": 1 << 60},
        ]
        answers = (await h.send(json.dumps(beyond).encode(), JSON)).json()
        for answer in answers:
            assert answer["status"] == "refused", answer
            assert answer["reason"] == "malformed", answer
            assert "msgpack" in answer["detail"]
            assert "2**53" in answer["detail"]
        assert stored(h.node) == before
        # As msgpack the protocol's own bound speaks.
        (answer,) = await h.post(reading(ED, MAX_COUNTER + 1))
        assert answer["reason"] == "counter_out_of_range"
        assert stored(h.node) == before


async def test_whole_requests_refused(tmp_path: Path) -> None:
    config = replace(CONFIG, max_batch=4, max_body_bytes=1024)
    async with solo_host(tmp_path, config) as h:
        await register(h.node, ED)
        before = stored(h.node)
        five = batch([reading(ED, c) for c in range(1, 6)])
        assert len(five) < 1024
        cases = [
            (413, "too_large", b"[" + b" " * 2000 + b"]", JSON),
            (413, "too_large", b"\x91" + b"\x00" * 2000, MSGPACK),
            (413, "too_large", five, MSGPACK),
            (413, "too_large", b"[{}, {}, {}, {}, {}]", JSON),
            (400, "malformed", b"\xc1", MSGPACK),
            (400, "malformed", b"\x92\x91", MSGPACK),
            (400, "malformed", b"\x05", MSGPACK),
            (400, "malformed", b"\x92" + reading(ED, 1).encode(), MSGPACK),
            (400, "malformed", b"{nope", JSON),
            (400, "malformed", b"5", JSON),
            (400, "malformed", b"[NaN]", JSON),
            (415, "malformed", reading(ED, 1).encode(), "text/plain"),
        ]
        # Every whole-request refusal: 503 unavailable below; the cut-offs
        # (408, 503 too_many_connections) and 500 internal_error in their
        # own tests further down.
        elsewhere = {
            (503, "unavailable"),
            (408, "request_timeout"),
            (503, "too_many_connections"),
            (500, "internal_error"),
        }
        assert {(st, r) for st, r, _, _ in cases} | elsewhere == BODY_REFUSALS
        for status, reason, body, content_type in cases:
            response = await h.send(body, content_type)
            assert response.status_code == status, (body[:20], response.content)
            if content_type == MSGPACK:
                answer = msgpack.unpackb(response.content)
            else:
                answer = response.json()
            assert answer["status"] == "refused", answer
            assert answer["reason"] == reason, answer
            assert stored(h.node) == before
        assert h.refused("too_large") == 4
        # An empty batch is no reading, no error; one reading with bytes
        # after it is that reading, refused as the protocol decodes it.
        assert await h.post(b"\x90") == []
        answers = await h.post(reading(ED, 1).encode() + b"\x00")
        assert [a["reason"] for a in answers] == ["non_canonical"]
        assert stored(h.node) == before

        # A store that cannot write: 503, nothing stored, and the same
        # reading is accepted once it can.
        store = h.node.store

        def full(*args: object) -> None:
            raise StoreError("store is full")

        store.ingest_sync = full  # type: ignore[method-assign]
        one = reading(ED, 1)
        response = await h.send(one.encode())
        assert response.status_code == 503
        assert msgpack.unpackb(response.content)["reason"] == "unavailable"
        assert stored(h.node) == before
        del store.ingest_sync
        assert await h.post(one) == [{"id": one.id, "status": "accepted"}]


async def test_lone_surrogates_refuse_their_reading_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "\ud800" is valid JSON, but no UTF-8 encodes it: in any field or member
    # name it refuses that reading (malformed), never the batch, and nothing
    # is logged as an error.
    caplog.set_level(logging.DEBUG)
    lone = "\ud800"
    async with solo_host(tmp_path) as h:
        await register(h.node, ED)
        base = as_json(reading(ED, 1))
        bad: list[tuple[str, dict[str, Any], str]] = [
            ("metric", base | {"metric": lone}, "metric"),
            ("metric, inside", base | {"metric": f"energy{lone}_wh"}, "metric"),
            ("economy", base | {"economy": lone}, "economy"),
            ("device", base | {"device": "0x" + lone}, "device"),
            ("signature", base | {"signature": lone}, "signature"),
            ("unknown key", base | {lone: 1}, "reading"),
            ("unknown key's value", base | {"colour": ["red", lone]}, "colour[1]"),
            ("low surrogate", base | {"metric": "\udfff"}, "metric"),
        ]
        good = [reading(ED, 1), reading(ED, 2)]
        body = [as_json(good[0]), *(b for _, b, _ in bad), as_json(good[1])]
        text = json.dumps(body).encode()
        assert b"\\ud800" in text  # the JSON escape, as a client sends it
        response = await h.send(text, JSON)
        assert response.status_code == 200, response.content
        answers = response.json()
        assert answers[0] == {"id": "0x" + good[0].id.hex(), "status": "accepted"}
        assert answers[-1] == {"id": "0x" + good[1].id.hex(), "status": "accepted"}
        for (what, _, field), answer in zip(bad, answers[1:-1], strict=True):
            assert (answer["status"], answer["reason"]) == ("refused", "malformed"), what
            assert answer["detail"].startswith(f"{field}: "), (what, answer)
            assert "not Unicode text" in answer["detail"], (what, answer)
        # One reading alone: its answer, not a whole-request refusal.
        before = stored(h.node)
        response = await h.send(
            json.dumps(as_json(reading(ED, 3)) | {"metric": lone}).encode(), JSON
        )
        assert response.status_code == 200
        assert [a["reason"] for a in response.json()] == ["malformed"]
        assert stored(h.node) == before
        held = h.node.store.ingest_state(ED.device)
        assert held is not None
        assert (held.last_accepted, held.readings) == (2, 2)
        assert h.refused("malformed") == len(bad) + 1
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    assert "Traceback" not in caplog.text


async def test_an_unexpected_exception_is_a_500_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with solo_host(tmp_path) as h:
        await register(h.node, ED)

        async def broken(items: list[Any], address: str) -> list[Any]:
            raise RuntimeError("internal detail")

        h.ingest.ingest = broken  # type: ignore[method-assign]
        caplog.clear()
        one = reading(ED, 1)
        response = await h.send(one.encode())
        assert response.status_code == 500
        answer = msgpack.unpackb(response.content)
        assert (answer["status"], answer["reason"]) == ("refused", "internal_error")
        assert "internal detail" not in answer["detail"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert errors[0].name == "mycelia.ingest", errors
        del h.ingest.ingest
        assert await h.post(one) == [{"id": one.id, "status": "accepted"}]


async def test_token_buckets_per_device_and_per_address(tmp_path: Path) -> None:
    t = [100.0]  # a frozen clock: no token comes back unless the test says so
    config = replace(CONFIG, max_batch=4, rate_per_device=1.0, rate_per_address=1.0)
    async with solo_host(tmp_path, config, clock=lambda: t[0]) as h:
        await register(h.node, ED)
        await register(h.node, P2)
        ingest = h.ingest

        async def send(readings: list[SignedReading], address: str) -> list[str]:
            results = await ingest.ingest([r.encode() for r in readings], address)
            return [r.reason or "accepted" for r in results]

        # Buckets hold max_batch (4) readings.
        assert await send([reading(ED, c) for c in range(1, 5)], "10.0.0.1") == ["accepted"] * 4
        before = stored(h.node)
        assert await send([reading(ED, 5)], "10.0.0.2") == ["rate_limited"]  # the device's
        assert await send([reading(P2, 1)], "10.0.0.2") == ["accepted"]
        assert await send([reading(P2, 2)], "10.0.0.1") == ["rate_limited"]  # the address's
        # Over HTTP (from 127.0.0.1): P2 has 3 tokens left.
        answers = await h.post([reading(P2, c) for c in range(2, 6)])
        assert [a.get("reason", a["status"]) for a in answers] == ["accepted"] * 3 + [
            "rate_limited"
        ]
        assert stored(h.node) != before
        assert h.node.store.reading(P2.device, 5) is None
        assert h.node.store.reading(ED.device, 5) is None
        assert h.refused("rate_limited") == 3
        # Tokens come back with time; a counter refused for the rate may come again.
        t[0] += 10
        assert await send([reading(ED, 5), reading(P2, 5)], "10.0.0.1") == ["accepted"] * 2


def ingest_port(h: Host) -> int:
    return int(str(h.http.base_url).rstrip("/").rsplit(":", 1)[1])


def ingest_answer(raw: bytes) -> tuple[int, str]:
    status, body = http_answer(raw)
    return status, body["reason"]


async def test_the_ingest_caps_connections_while_200_slow_clients_hang_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Long timeouts: the slow clients hold on for the whole test. Beyond
    # max_connections they are answered 503 at once and closed; a device is
    # refused the same way, not left hanging; the node's wallet RPC answers.
    caplog.set_level(logging.DEBUG)
    config = replace(
        CONFIG,
        max_connections=16,
        max_connections_per_address=16,
        header_timeout_s=300,
        body_timeout_s=300,
    )
    async with solo_host(tmp_path, config) as h, trio.open_nursery() as nursery:
        await register(h.node, ED)
        port = ingest_port(h)
        slow = [await connect(port, slow_post("/v1/readings")) for _ in range(100)]
        slow += [await connect(port, SLOW_HEADERS) for _ in range(100)]
        answers: dict[int, bytes] = {}
        everyone = trio.Event()

        async def answer(i: int) -> None:
            answers[i] = await read_all(slow[i])
            if len(answers) == len(slow) - config.max_connections:
                everyone.set()

        async with trio.open_nursery() as readers:
            for i in range(len(slow)):
                readers.start_soon(answer, i)
            with trio.fail_after(60):
                await everyone.wait()
            # Exactly max_connections hang on; every other one was refused.
            assert {ingest_answer(a) for a in answers.values()} == {(503, "too_many_connections")}
            response = await h.send(reading(ED, 1).encode())
            assert response.status_code == 503
            assert response.json()["reason"] == "too_many_connections"
            async with serving(nursery, h.node, replace(LIMITS, max_connections=4)) as rpc:
                async with AsyncClient(Endpoint.from_datadir(h.node.datadir)) as wallet:
                    assert (await wallet.node_info()).did == SOLO.did
                    hosted = await wallet.sensor_devices(ECON)
                    assert [d.device for d in hosted] == [ED.device]
                await rpc.stop()
            assert len(answers) == len(slow) - config.max_connections  # still hanging on
            readers.cancel_scope.cancel()
        for c in slow:
            await c.aclose()
        # Their slots come back as they close.
        one = reading(ED, 1)
        with trio.fail_after(30):
            while (response := await h.send(one.encode())).status_code == 503:
                await trio.sleep(0.05)
        assert msgpack.unpackb(response.content) == [{"id": one.id, "status": "accepted"}]
        nursery.cancel_scope.cancel()
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


async def test_the_ingest_caps_connections_per_address(tmp_path: Path) -> None:
    config = replace(CONFIG, max_connections=64, max_connections_per_address=2)
    async with solo_host(tmp_path, config) as h:
        port = ingest_port(h)
        held = [await connect(port) for _ in range(2)]  # connected, sending nothing
        third = await connect(port)
        with trio.fail_after(30):
            raw = await read_all(third)
        status, body = http_answer(raw)
        assert (status, body["reason"]) == (503, "too_many_connections")
        assert "from this address" in body["detail"]
        await held[0].aclose()
        with trio.fail_after(30):
            while (await h.http.get("/v1/health")).status_code == 503:
                await trio.sleep(0.05)
        await held[1].aclose()
        await third.aclose()


async def test_a_slow_body_is_cut_off_at_the_ingest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = replace(
        CONFIG,
        max_connections=64,
        max_connections_per_address=64,
        header_timeout_s=0.5,
        body_timeout_s=0.5,
    )
    async with solo_host(tmp_path, config) as h:
        await register(h.node, ED)
        before = stored(h.node)
        port = ingest_port(h)
        bodies = [await connect(port, slow_post("/v1/readings")) for _ in range(100)]
        heads = [await connect(port, SLOW_HEADERS) for _ in range(100)]
        with trio.fail_after(60):  # the old ingest held them forever
            body_answers = [ingest_answer(await read_all(c)) for c in bodies]
            head_answers = [await read_all(c) for c in heads]
        assert (408, "request_timeout") in body_answers
        assert set(body_answers) <= {(408, "request_timeout"), (503, "too_many_connections")}
        assert {a if not a else ingest_answer(a) for a in head_answers} <= {
            b"",
            (503, "too_many_connections"),
        }
        assert stored(h.node) == before
        for c in bodies + heads:
            await c.aclose()
        one = reading(ED, 1)
        with trio.fail_after(30):
            while (response := await h.send(one.encode())).status_code == 503:
                await trio.sleep(0.05)
        assert msgpack.unpackb(response.content) == [{"id": one.id, "status": "accepted"}]
        assert h.refused("request_timeout") is not None
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


# -- the attester, proofs, claims and the audit stream -------------------------------------------


async def test_attested_readings_prove_and_claim_across_nodes(tmp_path: Path) -> None:
    rpc = replace(LIMITS, unix_socket=False, max_page=50)
    async with cluster(tmp_path, 4, 1) as c, trio.open_nursery() as nursery:
        vkeys = [n.key for n in c.validators]
        signed_genesis = sign_genesis(impact_genesis(validators=vkeys, nonce=b"c"), vkeys)
        economy = Economy.from_signed(signed_genesis)
        econ = economy.id
        for node in c.nodes:
            await node.add_economy(signed_genesis)
        host, follower = c.validators[0], c.followers[0]
        registrations = [await register(host, d, host.key, econ) for d in (ED, P2)]
        ingest = Ingest(host, CONFIG)
        address, port = await nursery.start(ingest.serve)
        ed = [reading(ED, n, 600, economy=econ) for n in range(1, 6)]
        ed.append(reading(ED, 6, 215, economy=econ, metric="temp_c", exponent=-1))
        p2 = [reading(P2, n, 250, economy=econ) for n in (1, 2, 4)]
        async with httpx.AsyncClient(base_url=f"http://{address}:{port}") as http:
            response = await http.post(
                "/v1/readings", content=batch(ed + p2), headers={"content-type": MSGPACK}
            )
        assert [a["status"] for a in msgpack.unpackb(response.content)] == ["accepted"] * 9

        with trio.fail_after(30):
            assert await host.attester.attest_now() == 1
        assert host.store.unattested_count() == 0
        assert host.store.in_flight() == {}
        await converge(c.nodes, econ)

        async with serving(nursery, follower, rpc) as b, serving(nursery, host, rpc) as a:
            # Node B relays the host's readings (by pages) over /mycelia/audit/1.
            params = {"economy": "0x" + econ.hex(), "device": "0x" + ED.device.hex()}
            page1 = await b.result("sensor_getReadings", **params, limit=4)
            assert page1["next"] == 5
            page2 = await b.result("sensor_getReadings", **params, first=page1["next"])
            assert page2["next"] is None
            items = page1["readings"] + page2["readings"]
            assert [i["reading"] for i in items] == ["0x" + r.encode().hex() for r in ed]
            ids = {i["attestation"] for i in items}
            assert len(ids) == 1
            att_id = ids.pop()
            # The client's audit: the certificate (fetched through B), the
            # registrations, and each reading with its proof.
            answer = await b.result("sensor_getAttestation", id=att_id)
            cert = Certificate.decode(bytes.fromhex(answer["certificate"][2:]))
            assert answer["view"]["kind"] == "sensor.attest"
            assert answer["view"]["id"] == att_id
            audit = AttestationAudit(economy, cert, registrations)
            for item, r in zip(items, ed, strict=True):
                proof = MerkleProof.decode(bytes.fromhex(item["proof"][2:]))
                assert audit.check(bytes.fromhex(item["reading"][2:]), proof) == r
            # The host answers from its own store; the other key type verifies too.
            local = await a.result(
                "sensor_getReadings", **{**params, "device": "0x" + P2.device.hex()}
            )
            assert len(local["readings"]) == 3
            for item in local["readings"]:
                proof = MerkleProof.decode(bytes.fromhex(item["proof"][2:]))
                audit.check(bytes.fromhex(item["reading"][2:]), proof)
            unknown = await b.error("sensor_getReadings", {**params, "device": "0x" + "11" * 32})
            assert (unknown["code"], unknown["data"]["reason"]) == (-32002, "unknown_device")
            assert (await b.error("sensor_getAttestation", {"id": "0x" + "11" * 32}))["data"][
                "reason"
            ] == "unknown_attestation"

            # What to claim, and the claim (3000 Wh at 1000 a credit: 3 credits).
            claimable = await b.result("sensor_claimable", **params)
            row = {"id": att_id, "first": 1, "last": 6, "count": 6, "total": "3000"}
            assert claimable == {"cursor": -1, "carry": "0", "attestations": [row]}
            body = ImpactClaim(ED.device, 1, 6, (bytes.fromhex(att_id[2:]),), 3000)
            claim = await commit(follower, OWNER, econ, body)
            await converge(c.nodes, econ)
            assert host.store.account(econ, OWNER.public).balance == 3
            claimable = await a.result("sensor_claimable", **params)
            assert claimable == {"cursor": 6, "carry": "0", "attestations": []}

            # The JSON views of the sensor kinds: history, and entry_prepare
            # building the same claim from its view.
            history = await b.result(
                "account_history", economy=params["economy"], account=OWNER.did, limit=10
            )
            kinds = [e["kind"] for e in history["entries"]]
            assert kinds == ["impact.claim", "device.register", "device.register"]
            claim_view = history["entries"][0]
            assert claim_view["body"] == {
                "device": params["device"],
                "first_counter": 1,
                "last_counter": 6,
                "attestations": [att_id],
                "total": "3000",
            }
            prepared = await b.result(
                "entry_prepare",
                economy=params["economy"],
                author=OWNER.did,
                kind="impact.claim",
                body=claim_view["body"],
                seq=claim.entry.seq,
                prev="0x" + claim.entry.prev.hex(),
                ts_ms=claim.entry.ts_ms,
            )
            assert prepared["id"] == "0x" + claim.entry_id.hex()
            register_view = history["entries"][2]["body"]
            assert register_view["device"] == params["device"]
            assert register_view["metrics"][1] == {
                "name": "temp_c",
                "unit": "degC",
                "exponent": -1,
                "min": "-400",
                "max": "1000",
            }
            attest_view = await b.result("entry_get", id=att_id)
            rows = attest_view["view"]["body"]["devices"]
            assert {r["device"]: r["count"] for r in rows} == {
                params["device"]: 6,
                "0x" + P2.device.hex(): 3,
            }
            impact = (await b.result("economy_get", economy=params["economy"]))["impact"]
            assert impact == {
                "metric": "energy_wh",
                "exponent": 0,
                "units_per_credit": "1000",
                "device_kinds": ["solar-meter", "wind-meter"],
            }

            # What each node hosts.
            devices = await a.result("sensor_devices", economy=params["economy"])
            by_device = {d["device"]: d for d in devices}
            assert by_device[params["device"]] == {
                "device": params["device"],
                "owner": OWNER.did,
                "kind": "solar-meter",
                "last_accepted": 6,
                "last_attested": 6,
                "readings": 6,
            }
            assert by_device["0x" + P2.device.hex()]["last_attested"] == 4
            assert await b.result("sensor_devices", economy=params["economy"]) == []

        # The node's metrics: the host's attestation, the claim every node applied.
        metrics = Metrics(process_metrics=False)
        MetricsExporter(host, metrics).export()
        value = metrics.registry.get_sample_value
        assert value("mycelia_sensor_attestations_total") == 1
        assert value("mycelia_impact_claims_total") == 1
        assert value("mycelia_impact_claimed_units") == 3000
        assert (value("mycelia_sensor_readings_bytes") or 0) > 0
        nursery.cancel_scope.cancel()


async def test_the_attester_resumes_after_a_restart(tmp_path: Path) -> None:
    async with solo_host(tmp_path) as h:
        node = h.node
        await register(node, ED)
        assert len(await h.post([reading(ED, c) for c in (1, 2, 3)])) == 3
        # Signed and recorded in flight, then the node stops before submitting it.
        rows = node.store.unattested(ECON, 100)
        [(signed, flight)] = node.attester._build(node.applier.economies[ECON], rows)
        node.store.begin_attestation_sync(signed.id, flight)
        assert len(await h.post([reading(ED, c) for c in (4, 5)])) == 2
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "host", FAST)
        await nursery.start(node.run)
        # The attester resubmits the very entry it had signed.
        with trio.fail_after(30):
            while node.store.in_flight():
                await trio.sleep(0.02)
        assert node.store.certificate(signed.id) is not None
        first = node.store.reading(ED.device, 1)
        assert first is not None
        assert first.attestation == signed.id
        # The queue survived too.
        assert node.store.unattested_count() == 2
        with trio.fail_after(30):
            assert await node.attester.attest_now() == 1
        assert node.store.last_attested(ECON, ED.device) == 5
        assert node.attester.certified == 2
        nursery.cancel_scope.cancel()


async def test_retention_prunes_old_readings_and_keeps_attestations(tmp_path: Path) -> None:
    wall = [now_ms() - 40 * DAY_MS]
    async with solo_host(tmp_path, wall_ms=lambda: wall[0]) as h:
        node = h.node
        await register(node, ED)
        old = [reading(ED, c, ts_ms=wall[0]) for c in (1, 2, 3)]
        assert len(await h.post(old)) == 3
        with trio.fail_after(30):
            assert await node.attester.attest_now() == 1
        wall[0] = now_ms()
        new = [reading(ED, 4), reading(ED, 5)]
        assert len(await h.post(new)) == 2
        with trio.fail_after(30):
            assert await node.attester.attest_now() == 1
        attestations = node.store.attestations_of(ECON, ED.device, -1, 10)
        assert len(attestations) == 2

        assert await node.attester.prune() == 3  # retention_days = 30
        assert [node.store.reading(ED.device, c) is None for c in range(1, 6)] == [
            True,
            True,
            True,
            False,
            False,
        ]
        # The attestations are ledger data: certificates and records stay.
        assert all(node.store.certificate(a) is not None for a in attestations)
        assert node.store.attestations_of(ECON, ED.device, -1, 10) == attestations
        # The newer batch still proves; the replay guard holds.
        items, _ = await node.audit.readings(AuditRequest(ECON, ED.device, 0, 10, 10))
        assert [i.signed for i in items] == [r.encode() for r in new]
        assert all(i.attestation == attestations[1] and i.proof for i in items)
        state = node.store.ingest_state(ED.device)
        assert state is not None
        assert (state.last_accepted, state.readings) == (5, 2)
        answers = await h.post(reading(ED, 2))
        assert answers[0]["reason"] == "replayed_counter"
        assert await node.attester.prune() == 0


# -- the audit frames --------------------------------------------------------------------------


def test_audit_frames_are_strict_and_attestations_travel_in_vote_requests() -> None:
    w = World(impact_genesis(), validator_keys(4))
    w.register(OWNER, ED, SOLO)
    body, tree, ordered = w.attest_body(w.readings(ED, range(1, 4)))
    signed = w.entry(SOLO, body)
    # A sensor.attest nests deeper than the codec's default bound.
    [item] = wire.decode_vote_request(wire.encode_vote_request(w.id, [wire.VoteItem(signed)]))[1]
    assert item.signed == signed

    request = AuditRequest(w.id, ED.device, 1, schema.UINT64_MAX, wire.MAX_AUDIT_READINGS)
    assert wire.decode_audit_request(wire.encode_audit_request(request)) == request
    for bad in (
        ["readings", 1, w.id, ED.device, 1, 2, 0],  # limit 0
        ["readings", 1, w.id, ED.device, 1, 2, wire.MAX_AUDIT_READINGS + 1],
        ["readings", 1, w.id, ED.device, -1, 2, 5],
        ["readings", 1, w.id, ED.device[:31], 1, 2, 5],
        ["readings", 2, w.id, ED.device, 1, 2, 5],
        ["readings", 1, w.id, ED.device, 1, 2, 5, 6],
    ):
        with pytest.raises(Refused) as refused:
            wire.decode_audit_request(codec.encode(bad))
        assert refused.value.reason == Reason.MALFORMED, bad

    items = [
        wire.AuditItem(r.encode(), signed.id, tree.proof(i).encode()) for i, r in enumerate(ordered)
    ]
    items.append(wire.AuditItem(reading(ED, 9).encode()))  # not attested yet
    data = wire.encode_audit_response(items, None)
    assert wire.decode_audit_response(data, 4) == (items, None)
    assert wire.decode_audit_response(wire.encode_audit_response(items[:1], 7), 1) == (
        items[:1],
        7,
    )
    for bad_response in (
        wire.encode_audit_response(items, None),  # more than asked for
        codec.encode(["readings", 1, [[b"x" * 300, b"", b""]], -1]),
        codec.encode(["readings", 1, [[items[0].signed, b"short", b""]], -1]),
        codec.encode(["readings", 1, [[items[0].signed, b"", b"p" * 2000]], -1]),
        codec.encode(["readings", 1, [], -2]),
    ):
        with pytest.raises(Refused):
            wire.decode_audit_response(bad_response, 3)
    with pytest.raises(Refused) as refused:
        wire.decode_audit_response(wire.encode_error(Reason.MALFORMED, "nope"), 3)
    assert refused.value.reason == Reason.MALFORMED


async def test_the_audit_handler_answers_garbage_with_an_error(tmp_path: Path) -> None:
    async with solo_host(tmp_path) as h:
        for garbage in (b"", b"\xc1", codec.encode(["readings", 1])):
            answer = codec.decode(await h.node.audit.handle("peer", garbage))
            assert answer[0] == "error", answer
        # Nothing stored for an unknown device: an empty page.
        request = AuditRequest(ECON, STRANGER.device, 0, 10, 10)
        answer = await h.node.audit.handle("peer", wire.encode_audit_request(request))
        assert wire.decode_audit_response(answer, 10) == ([], None)
