"""Prometheus metrics for one node, and the HTTP endpoint that serves them.

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
  the sensor ingest's; a compute job's outcome, a settlement's kind); nothing is
  labelled by account, device or peer, which would grow without bound and
  identify people. :meth:`Metrics.gossip_dropped` folds an unexpected reason
  into ``other`` for the same reason.
* The standard ``process_*`` metrics (RSS, CPU, open fds) are registered too,
  unless ``process_metrics=False``: resident memory is one of the figures an
  operator of a small machine watches first.
* :func:`serve_metrics` serves :class:`MetricsApp` (a small ASGI app) with
  the HTTP machinery the RPC and the sensor ingest use (``node/http.py``):
  one request per connection (``Connection: close``), ``GET`` or ``HEAD
  /metrics`` only, the request head bounded to 8 KiB (431) and to a read
  timeout (408), writes bounded in time, every connection closed at stop.
  A client that misbehaves gets a 4xx and its connection closed; it cannot
  take the server (or the node) down. The caller logs the address it
  reports.
"""

from __future__ import annotations

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
from starlette.types import Receive, Scope, Send

from mycelia.node.http import serve_http
from mycelia.protocol.compute_frames import OUTCOMES as COMPUTE_OUTCOMES
from mycelia.protocol.reasons import Reason

__all__ = [
    "DROP_REASONS",
    "INGEST_BUCKETS",
    "INGEST_REASONS",
    "MAX_REQUEST_BYTES",
    "READ_TIMEOUT_S",
    "SUBMIT_BUCKETS",
    "Metrics",
    "MetricsApp",
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

#: A request head is at most this many bytes (else 431) ...
MAX_REQUEST_BYTES = 8 * 1024
#: ... and must arrive within this many seconds (else 408).
READ_TIMEOUT_S = 5.0


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
        self.compute_jobs_total = Counter(
            "mycelia_compute_jobs_total",
            "Compute jobs this provider ran to their end, by outcome (the RESULT's: "
            "completed, limit, unpaid, cancelled, failed).",
            ["outcome"],
            registry=r,
        )
        self.compute_cpu_seconds_total = Counter(
            "mycelia_compute_cpu_seconds_total",
            "CPU seconds of the compute jobs that ended, as metered and billed.",
            registry=r,
        )
        self.compute_jobs_running = Gauge(
            "mycelia_compute_jobs_running", "Compute jobs running on this provider.", registry=r
        )
        self.compute_vouchers_total = Counter(
            "mycelia_compute_vouchers_total",
            "Vouchers for this provider's jobs: received (any, valid or not) and persisted "
            "(newer than the one held, written to the store).",
            ["stage"],
            registry=r,
        )
        self.compute_settlements_total = Counter(
            "mycelia_compute_settlements_total",
            "Channels this provider held a voucher of that were settled, by how: close "
            "(its channel.close) or refund (the consumer's won).",
            ["kind"],
            registry=r,
        )
        # Label values known in advance are created now, so they export 0
        # instead of being absent (absent series break rate() and alerts).
        for outcome in COMPUTE_OUTCOMES:
            self.compute_jobs_total.labels(outcome=outcome)
        for stage in ("received", "persisted"):
            self.compute_vouchers_total.labels(stage=stage)
        for kind in ("close", "refund"):
            self.compute_settlements_total.labels(kind=kind)
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


#: An ASGI answer's headers.
_Headers = list[tuple[bytes, bytes]]


def _plain(status: int, text: str, *extra: tuple[bytes, bytes]) -> tuple[int, _Headers, bytes]:
    body = text.encode()
    return status, [(b"content-type", b"text/plain; charset=utf-8"), *extra], body


class MetricsApp:
    """The ASGI app of the endpoint: ``GET`` or ``HEAD /metrics`` (a query
    string is ignored), the registry in the text format; anything else is
    a 404 or 405 that shows no metric. Each answer closes its connection
    (a scraper makes one request per scrape). A collector that fails is
    logged and answered 500; it cannot take the node down."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no WebSocket
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            status, headers, body = _plain(405, "GET or HEAD only\n", (b"allow", b"GET, HEAD"))
        elif scope["path"] != "/metrics":
            status, headers, body = _plain(404, "not found; metrics are at /metrics\n")
        else:
            try:
                body = self.metrics.exposition()
            except Exception:
                log.exception("metrics: error while answering a request")
                status, headers, body = _plain(500, "internal error\n")
            else:
                status, headers = 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


#: The answer to a request head that does not arrive within the read timeout.
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 16\r\nconnection: close\r\n\r\nrequest timeout\n"
)


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
    Served as the RPC and the ingest are (``http.serve_http``): a request head
    within ``read_timeout_s`` (else 408) and at most :data:`MAX_REQUEST_BYTES`
    (else 431), writes bounded in time, every connection closed at stop.
    """
    if not (read_timeout_s > 0 and math.isfinite(read_timeout_s)):
        raise ValueError("read_timeout_s must be a positive number")
    await serve_http(
        MetricsApp(metrics),
        host,
        port,
        what="metrics",
        header_timeout_s=read_timeout_s,
        max_header_bytes=MAX_REQUEST_BYTES,
        timeout_answer=_TIMEOUT,
        task_status=task_status,
    )
