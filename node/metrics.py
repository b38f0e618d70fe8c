"""Prometheus metrics for one node, and the trio HTTP endpoint that serves them.

Why this exists: an operator running a node on a Raspberry Pi wants to see in
Grafana whether it has peers, keeps up with its economies, votes, and how long
a submission takes to be certified. prometheus-client provides the metric
types and the text exposition format; this module decides the names and
labels, and serves them without threads.

How it works:

* :class:`Metrics` owns its own ``CollectorRegistry``. Tests run several
  nodes in one process, and the global default registry would refuse the
  second node's metrics as duplicates (or mix them), so the global registry
  is never used. The daemon creates one ``Metrics`` and hands it to each
  service, which updates its attributes directly (``metrics.peers.set(n)``).
* Names follow Prometheus conventions: the ``mycelia_`` prefix, base units
  (seconds, bytes), ``_total`` on counters. Labels have small fixed value
  sets only (a direction, an outcome, a refusal reason code: gossip's and
  the sensor ingest's); nothing is
  labelled by account, device or peer, which would grow without bound and
  identify people. :meth:`Metrics.gossip_dropped` folds an unexpected reason
  into ``other`` for the same reason.
* The standard ``process_*`` metrics (RSS, CPU, open fds) are registered too,
  unless ``process_metrics=False``: resident memory is one of the figures an
  operator of a small machine watches first.
* :func:`serve_metrics` is a deliberately small HTTP/1.1 server on trio
  sockets: one request per connection (``Connection: close``), ``GET`` or
  ``HEAD /metrics`` only, the request head bounded to 8 KiB and to a read
  timeout, one task per connection in a nursery the server owns. A client
  that misbehaves gets a 4xx and its connection closed; it cannot take the
  server (or the node) down. The caller logs the address it reports.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

from mycelia.protocol.reasons import Reason

__all__ = [
    "DROP_REASONS",
    "INGEST_BUCKETS",
    "INGEST_REASONS",
    "MAX_REQUEST_BYTES",
    "READ_TIMEOUT_S",
    "SUBMIT_BUCKETS",
    "Metrics",
    "serve_metrics",
]

log = logging.getLogger(__name__)

#: Histogram buckets for submit-to-certified latency: from 5 ms (a loopback
#: round of votes) to 10 s (a validator down, retries), denser where the
#: targets are (p50 <= 100 ms, p99 <= 500 ms).
SUBMIT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Why a gossip message may be dropped: every protocol refusal code, plus the
#: transport-level reasons the p2p layer names itself.
DROP_REASONS = frozenset(r.value for r in Reason) | {
    "decode",  # the batch is not valid msgpack / not a batch
    "oversize",  # larger than p2p.gossip_max_batch_bytes allows
    "unknown_topic",  # a topic this node does not follow
    "unknown_economy",  # a batch for an economy whose genesis this node lacks
    "backlog",  # the node could not keep up and shed the message
    "duplicate",  # already seen
    "other",
}

#: Why ingest refuses a reading (docs/sensors.md, "Reason codes"): the
#: protocol's codes a reading can get, the node's own ``rate_limited``,
#: ``unavailable`` (its store could not write) and ``request_timeout`` (a
#: body too slow), and ``other`` for anything unexpected (so the label set
#: stays fixed).
INGEST_REASONS = frozenset(
    {
        "bad_signature",
        "high_s",
        "bad_key",
        "unknown_device",
        "not_host",
        "replayed_counter",
        "clock_skew",
        "unknown_metric",
        "out_of_range",
        "wrong_economy",
        "too_large",
        "malformed",
        "non_canonical",
        "rate_limited",
        "unavailable",
        "request_timeout",
        "other",
    }
)

#: Histogram buckets for answering one ingest request (checks, signature
#: verification, the fsync): 1 ms to 5 s.
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

MAX_REQUEST_BYTES = 8 * 1024
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
# How long to keep reading (and discarding) after an early error response, so
# the client receives the response instead of a TCP reset.
_LINGER_S = 1.0


class Metrics:
    """The metrics of one node, in a registry of its own (``self.registry``)."""

    def __init__(
        self, *, node_id: str = "", version: str = "", process_metrics: bool = True
    ) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.up = Gauge("mycelia_up", "1 while the node is running.", registry=r)
        self.info = Info("mycelia_node", "The node's identity and software version.", registry=r)
        self.peers = Gauge("mycelia_peers", "Connected libp2p peers.", registry=r)
        self.certificates_applied_total = Counter(
            "mycelia_certificates_applied_total",
            "Certificates applied to the local state (gossip, sync or own submissions).",
            registry=r,
        )
        self.votes_cast_total = Counter(
            "mycelia_votes_cast_total", "Votes this node signed as a validator.", registry=r
        )
        self.gossip_messages_total = Counter(
            "mycelia_gossip_messages_total",
            "Gossip messages (certificate batches) received (in) and published (out).",
            ["direction"],
            registry=r,
        )
        self.gossip_dropped_total = Counter(
            "mycelia_gossip_dropped_total",
            "Gossip messages dropped, by reason code.",
            ["reason"],
            registry=r,
        )
        self.forks_detected_total = Counter(
            "mycelia_forks_detected_total",
            "Forks this node found evidence of: two certificates for one chain slot, proof "
            "that the validators who signed both misbehaved (logged at ERROR with their "
            "did:key; listed by the economy_forks RPC).",
            registry=r,
        )
        self.sync_lag_certificates = Gauge(
            "mycelia_sync_lag_certificates",
            "Certificates peers have announced that this node has not applied yet.",
            registry=r,
        )
        self.store_size_bytes = Gauge(
            "mycelia_store_size_bytes", "Bytes used by the LMDB store.", registry=r
        )
        self.submit_to_certified_seconds = Histogram(
            "mycelia_submit_to_certified_seconds",
            "Time from accepting a signed entry to holding its certificate.",
            buckets=SUBMIT_BUCKETS,
            registry=r,
        )
        self.submissions_total = Counter(
            "mycelia_submissions_total",
            "Submitted entries by final outcome.",
            ["outcome"],
            registry=r,
        )
        self.sensor_readings_accepted_total = Counter(
            "mycelia_sensor_readings_accepted_total",
            "Device readings the ingest accepted and stored.",
            registry=r,
        )
        self.sensor_readings_refused_total = Counter(
            "mycelia_sensor_readings_refused_total",
            "Device readings (or whole ingest requests) refused, by reason code.",
            ["reason"],
            registry=r,
        )
        self.sensor_ingest_seconds = Histogram(
            "mycelia_sensor_ingest_seconds",
            "Time to answer one ingest request (checks, signatures, the durable write).",
            buckets=INGEST_BUCKETS,
            registry=r,
        )
        self.sensor_attestations_total = Counter(
            "mycelia_sensor_attestations_total",
            "Attestations (sensor.attest entries) of this node's readings that were certified.",
            registry=r,
        )
        self.sensor_readings_bytes = Gauge(
            "mycelia_sensor_readings_bytes",
            "Bytes the stored readings and their indexes take in the LMDB store.",
            registry=r,
        )
        self.impact_claims_total = Counter(
            "mycelia_impact_claims_total",
            "impact.claim certificates applied to the local state.",
            registry=r,
        )
        self.impact_claimed_units = Gauge(
            "mycelia_impact_claimed_units",
            "Sum of the totals of the impact claims applied since start, in their "
            "economies' metric units (a negative total, a debt, lowers it).",
            registry=r,
        )
        # Label values known in advance are created now, so they export 0
        # instead of being absent (absent series break rate() and alerts).
        for direction in ("in", "out"):
            self.gossip_messages_total.labels(direction=direction)
        for outcome in ("certified", "refused"):
            self.submissions_total.labels(outcome=outcome)
        for reason in INGEST_REASONS:
            self.sensor_readings_refused_total.labels(reason=reason)
        if process_metrics:
            ProcessCollector(registry=r)
        self.info.info({"node_id": node_id, "version": version})
        self.up.set(1)

    def gossip_dropped(self, reason: str) -> None:
        """Count a dropped gossip message; an unknown reason counts as ``other``
        so a bug elsewhere cannot grow the label set without bound."""
        self.gossip_dropped_total.labels(reason=reason if reason in DROP_REASONS else "other").inc()

    def sensor_refused(self, reason: str, count: int = 1) -> None:
        """Count refused readings; an unknown reason counts as ``other``."""
        label = reason if reason in INGEST_REASONS else "other"
        self.sensor_readings_refused_total.labels(reason=label).inc(count)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra),
    ]
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


async def _read_head(stream: trio.SocketStream, limit: int) -> bytes | None:
    """Bytes up to the blank line ending the request head; None if the head
    exceeds ``limit``; b"" if the client closed before finishing it."""
    buf = bytearray()
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return bytes(buf[:end]) if end + 4 <= limit else None
        if len(buf) > limit:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return b""
        buf += chunk


async def _linger(stream: trio.SocketStream) -> None:
    """After an early response: signal EOF, then drain what the client is
    still sending for a moment, so closing does not reset the connection
    before the client has read the response."""
    with trio.move_on_after(_LINGER_S):
        await stream.send_eof()
        drained = 0
        while drained < 1024 * 1024:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            drained += len(chunk)


async def _answer(stream: trio.SocketStream, metrics: Metrics, read_timeout_s: float) -> None:
    early = False  # responded before reading the whole request
    with trio.move_on_after(read_timeout_s) as scope:
        head = await _read_head(stream, MAX_REQUEST_BYTES)
    if scope.cancelled_caught:
        reply, early = _response(408, b"request timeout\n"), True
    elif head is None:
        reply, early = _response(431, b"request too large\n"), True
    elif head == b"":
        return  # client went away
    else:
        reply = _route(head, metrics)
    with trio.move_on_after(WRITE_TIMEOUT_S):
        await stream.send_all(reply)
        if early:
            await _linger(stream)


def _route(head: bytes, metrics: Metrics) -> bytes:
    request_line = head.split(b"\r\n", 1)[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response(400, b"bad request\n")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        return _response(505, b"HTTP/1.0 or HTTP/1.1 only\n")
    if method not in (b"GET", b"HEAD"):
        return _response(405, b"GET or HEAD only\n", extra=(("Allow", "GET, HEAD"),))
    path = target.split(b"?", 1)[0]
    if path != b"/metrics":
        return _response(404, b"not found; metrics are at /metrics\n", head_only=method == b"HEAD")
    return _response(200, metrics.exposition(), CONTENT_TYPE_LATEST, head_only=method == b"HEAD")


async def _handle(stream: trio.SocketStream, metrics: Metrics, read_timeout_s: float) -> None:
    try:
        await _answer(stream, metrics, read_timeout_s)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the client went away; nothing to answer
    except Exception:
        # A failing collector must not take the node down; report and go on.
        log.exception("metrics: error while answering a request")
        with trio.move_on_after(1):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(_response(500, b"internal error\n"))
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    *,
    read_timeout_s: float = READ_TIMEOUT_S,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``metrics`` at ``http://host:port/metrics`` until cancelled.

    Reports ``(host, actual_port)`` through ``task_status`` once listening, so
    ``port=0`` picks a free port (``await nursery.start(serve_metrics, ...)``).
    """
    if not (read_timeout_s > 0 and math.isfinite(read_timeout_s)):
        raise ValueError("read_timeout_s must be a positive number")
    listeners = await trio.open_tcp_listeners(port, host=host)
    actual_port = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, metrics, read_timeout_s)

    async with trio.open_nursery() as nursery:
        # Connection tasks run in this nursery: cancelling the server ends them.
        await nursery.start(
            functools.partial(trio.serve_listeners, handler, listeners, handler_nursery=nursery)
        )
        task_status.started((host, actual_port))
