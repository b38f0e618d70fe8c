"""Metrics: names, isolation between nodes, and the trio HTTP endpoint."""

from __future__ import annotations

import functools
import re

import trio
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY

from mycelia.node.metrics import MAX_REQUEST_BYTES, Metrics, serve_metrics

EXPECTED = [
    "mycelia_up",
    "mycelia_node_info",
    "mycelia_peers",
    "mycelia_certificates_applied_total",
    "mycelia_votes_cast_total",
    'mycelia_gossip_messages_total{direction="in"}',
    'mycelia_gossip_messages_total{direction="out"}',
    "mycelia_sync_lag_certificates",
    "mycelia_store_size_bytes",
    "mycelia_submit_to_certified_seconds_bucket",
    'mycelia_submissions_total{outcome="certified"}',
    'mycelia_submissions_total{outcome="refused"}',
    "mycelia_forks_detected_total",
]


def sample(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())


def test_metric_names_and_prefix() -> None:
    m = Metrics(node_id="did:key:z6Mkexample", version="0.1.0", process_metrics=False)
    text = m.exposition().decode()
    for name in EXPECTED:
        assert name in text, name
    # Every series is ours: mycelia_ prefix (no process metrics requested).
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    assert names
    assert all(n.startswith("mycelia_") for n in names), names
    assert sample(m, "mycelia_up") == 1.0
    assert sample(m, "mycelia_node_info", node_id="did:key:z6Mkexample", version="0.1.0") == 1.0
    # Buckets span 5 ms to 10 s.
    assert 'le="0.005"' in text
    assert 'le="10.0"' in text


def test_updates_show_up() -> None:
    m = Metrics(process_metrics=False)
    m.peers.set(3)
    m.certificates_applied_total.inc(5)
    m.votes_cast_total.inc()
    m.gossip_messages_total.labels(direction="out").inc(2)
    m.submit_to_certified_seconds.observe(0.042)
    m.submissions_total.labels(outcome="certified").inc()
    m.gossip_dropped("bad_signature")
    m.gossip_dropped("decode")
    m.gossip_dropped("some/unbounded/thing")
    assert sample(m, "mycelia_peers") == 3
    assert sample(m, "mycelia_certificates_applied_total") == 5
    assert sample(m, "mycelia_votes_cast_total") == 1
    assert sample(m, "mycelia_gossip_messages_total", direction="out") == 2
    assert sample(m, "mycelia_gossip_messages_total", direction="in") == 0
    assert sample(m, "mycelia_submit_to_certified_seconds_bucket", le="0.05") == 1
    assert sample(m, "mycelia_submit_to_certified_seconds_bucket", le="0.025") == 0
    assert sample(m, "mycelia_submissions_total", outcome="certified") == 1
    assert sample(m, "mycelia_gossip_dropped_total", reason="bad_signature") == 1
    assert sample(m, "mycelia_gossip_dropped_total", reason="decode") == 1
    assert sample(m, "mycelia_gossip_dropped_total", reason="other") == 1
    assert sample(m, "mycelia_gossip_dropped_total", reason="some/unbounded/thing") is None


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()  # the global registry would refuse the second
    a.votes_cast_total.inc(7)
    assert sample(a, "mycelia_votes_cast_total") == 7
    assert sample(b, "mycelia_votes_cast_total") == 0
    assert a.registry is not b.registry
    assert REGISTRY.get_sample_value("mycelia_votes_cast_total") is None
    # Process metrics are included by default, in the node's own registry.
    assert sample(a, "process_resident_memory_bytes") is not None


async def test_endpoint_serves_metrics_and_404() -> None:
    m = Metrics(node_id="n1")
    m.peers.set(4)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve_metrics, m, "127.0.0.1", 0)
        assert host == "127.0.0.1"
        assert port > 0
        status, headers, body = await get(port, "/metrics")
        assert status == 200
        assert headers["content-type"] == CONTENT_TYPE_LATEST
        assert int(headers["content-length"]) == len(body)
        text = body.decode()
        for name in EXPECTED:
            assert name in text
        assert re.search(r"^mycelia_peers 4\.0$", text, re.M)

        status, _, body = await get(port, "/metrics?x=1")
        assert status == 200
        assert b"mycelia_peers" in body
        status, _, body = await get(port, "/")
        assert status == 404
        assert b"mycelia_" not in body
        status, _, _ = await get(port, "/metricsx")
        assert status == 404
        status, headers, body = await request(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
        assert body == b""
        assert int(headers["content-length"]) > 0
        status, headers, _ = await request(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 405
        assert headers["allow"] == "GET, HEAD"
        status, _, _ = await request(port, b"nonsense\r\n\r\n")
        assert status == 400
        nursery.cancel_scope.cancel()


async def test_oversize_request_refused_and_server_keeps_serving() -> None:
    m = Metrics()
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(serve_metrics, m, "127.0.0.1", 0)
        big = (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n"
        )
        status, _, body = await request(port, big)
        assert status == 431
        assert b"mycelia_" not in body
        # A head that never ends is refused once it passes the bound, too.
        status, _, _ = await request(port, b"GET /metrics HTTP/1.1\r\n" + b"b" * 20000)
        assert status == 431
        status, _, body = await get(port, "/metrics")
        assert status == 200
        assert b"mycelia_peers" in body
        nursery.cancel_scope.cancel()


async def test_slow_client_times_out_and_server_keeps_serving() -> None:
    m = Metrics()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(serve_metrics, read_timeout_s=0.2)
        _, port = await nursery.start(serve, m, "127.0.0.1", 0)
        slow = await trio.open_tcp_stream("127.0.0.1", port)
        await slow.send_all(b"GET /metrics HTTP/1.1\r\n")  # ... and nothing more
        data = b""
        with trio.fail_after(5):
            while chunk := await slow.receive_some(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 408 ")
        await slow.aclose()
        status, _, _ = await get(port, "/metrics")
        assert status == 200
        nursery.cancel_scope.cancel()


async def test_two_nodes_two_endpoints() -> None:
    a, b = Metrics(), Metrics()
    a.peers.set(1)
    b.peers.set(2)
    async with trio.open_nursery() as nursery:
        _, pa = await nursery.start(serve_metrics, a, "127.0.0.1", 0)
        _, pb = await nursery.start(serve_metrics, b, "127.0.0.1", 0)
        assert pa != pb
        _, _, body_a = await get(pa, "/metrics")
        _, _, body_b = await get(pb, "/metrics")
        assert re.search(rb"^mycelia_peers 1\.0$", body_a, re.M)
        assert re.search(rb"^mycelia_peers 2\.0$", body_b, re.M)
        nursery.cancel_scope.cancel()
