"""The daemon: every service of a node in one trio nursery.

:class:`Node` builds the services from a key, a data directory and its
settings, and :meth:`Node.run` starts them in dependency order, each with
``nursery.start`` so the next starts only once the previous is ready: the
p2p host, the one writer (applier), the validator's group commit, gossip,
the submitter, sync, the fork monitor (``forks.py``), the attester, the
compute service (``compute/service.py``: provider, closer and relay) and the
metrics endpoint. One log line
per start names what started and where.

Sensors (docs/sensors.md): every node serves ``/mycelia/audit/1`` (the
readings it hosts, with proofs) and runs the attester (idle without
readings; after a restart it settles the attestations it left in flight).
``serve`` starts the LAN-facing ingest too when ``[sensors] enabled``.

Routing votes: a validator's libp2p peer id derives from its key (the node
key is the validator key), so the submitter reaches validator ``k`` at
``peer_id_of(k)``; when ``k`` is this node's own key, the request goes to
the local validator service directly, without the network.

Shutdown: cancelling :meth:`Node.run` (``main`` does it on SIGINT/SIGTERM)
unwinds every service; gossip flushes its outbox under a shield, LMDB has
committed every batch already, pending submissions are in the store and
resume at the next start. :func:`main` then exits 0, without a traceback.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from mycelia.node import p2p as p2p_mod
from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.attester import DAY_MS, Attester
from mycelia.node.audit import Audit
from mycelia.node.compute.service import ComputeService
from mycelia.node.config import DEFAULTS, ComputeConfig, Config
from mycelia.node.forks import ForkMonitor
from mycelia.node.gossip import Gossip
from mycelia.node.http import http_url
from mycelia.node.ingest import serve_ingest
from mycelia.node.metrics import Metrics, serve_metrics
from mycelia.node.rpc import serve_rpc
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED, Status, Submitter
from mycelia.node.sync import Sync
from mycelia.node.validator import ValidatorService
from mycelia.protocol import Economy, SignedEntry, SignedGenesis, SigningKey
from mycelia.protocol.seals import Seal

__all__ = ["Listening", "Node", "NodeSettings"]

log = logging.getLogger("mycelia.node")

#: A service that uses the node from outside (RPC, ingest, metrics):
#: ``fn(node, *, task_status)``, run by :meth:`Node.run` in its own nursery.
Frontend = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What a node needs besides its key and data directory (the daemon's
    view of the config file; see ``config.py`` for the operator's view)."""

    # Defaults are the config file's (``config.DEFAULTS``: declared once),
    # except where a node is: an in-process node listens on loopback, port 0.
    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = DEFAULTS.p2p.bootstrap
    mdns: bool = DEFAULTS.p2p.mdns
    follow: frozenset[bytes] = field(default_factory=frozenset)
    validator: bool = DEFAULTS.validator.enabled
    gossip_flush_ms: int = DEFAULTS.p2p.gossip_flush_ms
    gossip_max_batch_bytes: int = min(
        DEFAULTS.p2p.gossip_max_batch_bytes, p2p_mod.MAX_GOSSIP_BYTES - 65536
    )
    max_frame_bytes: int = DEFAULTS.p2p.max_frame_bytes
    request_timeout_s: float = DEFAULTS.p2p.request_timeout_s
    announce: tuple[str, ...] = DEFAULTS.p2p.announce
    heartbeat_interval_s: float = DEFAULTS.p2p.heartbeat_interval_s
    ping_interval_s: float = DEFAULTS.p2p.ping_interval_s
    ping_timeout_s: float = DEFAULTS.p2p.ping_timeout_s
    redial_max_backoff_s: float = DEFAULTS.p2p.redial_max_backoff_s
    sync_interval_s: float = DEFAULTS.sync.interval_s
    sync_batch: int = DEFAULTS.sync.batch
    retry_deadline_s: float = DEFAULTS.submit.retry_deadline_s
    map_size_mb: int = DEFAULTS.store.map_size_mb
    max_map_size_mb: int = DEFAULTS.store.max_map_size_mb
    fsync: bool = DEFAULTS.store.sync
    attest_interval_s: float = DEFAULTS.sensors.attest_interval_s
    attest_max_readings: int = DEFAULTS.sensors.attest_max_readings
    retention_days: int = DEFAULTS.sensors.retention_days
    compute: ComputeConfig = DEFAULTS.compute

    @classmethod
    def from_config(cls, config: Config) -> NodeSettings:
        p = config.p2p
        return cls(
            listen=tuple(p.listen),
            bootstrap=tuple(p.bootstrap),
            mdns=p.mdns,
            follow=frozenset(bytes.fromhex(h) for h in config.economies.follow),
            validator=config.validator.enabled,
            gossip_flush_ms=p.gossip_flush_ms,
            # Room for the batch's own framing under libp2p's message bound.
            gossip_max_batch_bytes=min(p.gossip_max_batch_bytes, p2p_mod.MAX_GOSSIP_BYTES - 65536),
            max_frame_bytes=p.max_frame_bytes,
            request_timeout_s=p.request_timeout_s,
            announce=tuple(p.announce),
            heartbeat_interval_s=p.heartbeat_interval_s,
            ping_interval_s=p.ping_interval_s,
            ping_timeout_s=p.ping_timeout_s,
            redial_max_backoff_s=p.redial_max_backoff_s,
            sync_interval_s=config.sync.interval_s,
            sync_batch=config.sync.batch,
            retry_deadline_s=config.submit.retry_deadline_s,
            map_size_mb=config.store.map_size_mb,
            max_map_size_mb=config.store.max_map_size_mb,
            fsync=config.store.sync,
            attest_interval_s=config.sensors.attest_interval_s,
            attest_max_readings=config.sensors.attest_max_readings,
            retention_days=config.sensors.retention_days,
            compute=config.compute,
        )


@dataclass(slots=True)
class Listening:
    """Where this node's services listen, as bound (port 0 resolved), for
    ``node_info``: tools read it there (or in ``rpc.endpoint`` /
    ``ingest.endpoint``) instead of scraping logs. Each service fills its
    part once it listens (the RPC and the ingest clear theirs when they
    stop; metrics live as long as :func:`serve`); libp2p's addresses are
    :attr:`Node.addresses`."""

    #: the RPC's HTTP URLs: ``rpc.host:rpc.port``, then ``rpc.extra_bind``
    rpc: tuple[str, ...] = ()
    #: the RPC's unix socket (absolute path)
    rpc_unix: str | None = None
    #: the Prometheus endpoint, ``http://HOST:PORT/metrics``
    metrics: str | None = None
    #: the sensor ingest's base URL (``POST …/v1/readings``)
    ingest: str | None = None


class Node:
    def __init__(self, key: SigningKey, datadir: Path, settings: NodeSettings | None = None):
        self.key = key
        self.datadir = Path(datadir)
        self.settings = s = settings or NodeSettings()
        self.store = Store(
            self.datadir / "store",
            map_size_mb=s.map_size_mb,
            max_map_size_mb=s.max_map_size_mb,
            sync=s.fsync,
        )
        self.p2p = p2p_mod.P2P(
            key.seed,
            listen=s.listen,
            bootstrap=s.bootstrap,
            mdns=s.mdns,
            max_frame_bytes=s.max_frame_bytes,
            request_timeout_s=s.request_timeout_s,
            announce=s.announce,
            heartbeat_interval_s=s.heartbeat_interval_s,
            ping_interval_s=s.ping_interval_s,
            ping_timeout_s=s.ping_timeout_s,
            redial_max_backoff_s=s.redial_max_backoff_s,
        )
        self.applier = Applier(self.store)
        self.validator = ValidatorService(key, self.store, self.applier, self._ask_validator)
        self.gossip = Gossip(
            self.p2p,
            self.applier,
            flush_ms=s.gossip_flush_ms,
            max_batch_bytes=s.gossip_max_batch_bytes,
        )
        self.follow: set[bytes] = set(s.follow) | set(self.applier.economies)
        self.sync = Sync(
            self.p2p,
            self.store,
            self.applier,
            follow=self.follow,
            interval_s=s.sync_interval_s,
            batch=s.sync_batch,
            on_economy=self._subscribe,
        )
        self.submitter = Submitter(
            self.store,
            self.applier,
            self._send_votes,
            self.gossip.publish,
            retry_deadline_s=s.retry_deadline_s,
        )
        self.forks = ForkMonitor(
            self.store, self.applier, publish=self.gossip.publish, fetch=self.sync.fetch_by_id
        )
        self.attester = Attester(
            key,
            self.store,
            self.applier,
            self.submitter,
            interval_s=s.attest_interval_s,
            max_readings=s.attest_max_readings,
            retention_ms=s.retention_days * DAY_MS,
        )
        self.audit = Audit(self.store, self.p2p, self.applier)
        self.compute = ComputeService(
            key,
            self.store,
            self.applier,
            self.submitter,
            self.p2p,
            s.compute,
            addresses=self._offer_addresses,
        )
        self.listening = Listening()
        self._started = trio.Event()

    # -- the node-internal API (the RPC builds on it) -------------------------------

    async def add_economy(self, signed: SignedGenesis) -> Economy:
        """Store a signed genesis (verified), follow it and serve it."""
        economy = await self.applier.add_economy(signed)
        self.follow.add(economy.id)
        await self._subscribe(economy)
        return economy

    async def follow_economy(self, economy_id: bytes) -> None:
        """Follow an economy known only by id: sync fetches its genesis."""
        self.follow.add(economy_id)
        if economy_id in self.applier.economies:
            await self._subscribe(self.applier.economies[economy_id])
        for peer in self.p2p.peers():
            self.sync.peer_connected(peer)

    async def submit(self, signed: SignedEntry) -> bytes:
        return await self.submitter.submit(signed)

    @property
    def addresses(self) -> list[str]:
        return self.p2p.listen_addrs

    # -- running --------------------------------------------------------------------

    def _offer_addresses(self) -> list[str]:
        """Where a consumer dials this node's compute: the announced
        addresses, else the listening ones (with the peer id)."""
        if self.settings.announce:
            return [f"{a}/p2p/{self.p2p.peer_id}" for a in self.settings.announce]
        return self.p2p.listen_addrs

    async def _subscribe(self, economy: Economy) -> None:
        if self._started.is_set():
            await self.gossip.follow(economy.id)
            await self.compute.follow(economy.id)

    async def _send_votes(
        self, validator: bytes, economy_id: bytes, items: list[wire.VoteItem]
    ) -> list[wire.VoteResult]:
        if validator == self.key.public:  # our own validator: a call, not a message
            return await self.validator.vote(economy_id, items)
        request = wire.encode_vote_request(economy_id, items)
        response = await self.p2p.request(
            p2p_mod.peer_id_of(validator), wire.VOTE_PROTOCOL, request
        )
        return wire.decode_vote_response(response, len(items))

    async def _ask_validator(
        self, validator: bytes, request: bytes, max_response_bytes: int
    ) -> bytes:
        """A seal or snapshot request to another validator (``handover.py``)."""
        return await self.p2p.request(
            p2p_mod.peer_id_of(validator),
            wire.VOTE_PROTOCOL,
            request,
            max_response_bytes=max_response_bytes,
        )

    async def gather_seals(self, economy: Economy, proposal: bytes) -> list[Seal]:
        """The seals of ``proposal`` by ``economy``'s committee in force that
        answer (concurrently, each within the request timeout): this node's
        own when it is one of them, the others' by ``seal-req``. Refusals
        and unreachable validators are left out; every seal is verified."""
        out: list[Seal] = []

        async def one(validator: bytes) -> None:
            try:
                if validator == self.key.public:
                    got = await self.validator.handover.seal(economy.id, proposal)
                else:
                    request = wire.encode_seal_request(economy.id, proposal)
                    response = await self._ask_validator(
                        validator, request, wire.MAX_SEAL_RESPONSE_BYTES
                    )
                    got = wire.decode_seal(response)
                if got.proposal == proposal and got.epoch == economy.epoch:
                    got.verify(economy)
                    out.append(got)
            except Exception as exc:  # refused, unreachable, timed out: left out
                log.info("no seal from %s: %s", validator.hex()[:12], exc)

        async with trio.open_nursery() as nursery:
            for validator in economy.validators:
                nursery.start_soon(one, validator)
        return sorted(out, key=lambda s: economy.index[s.validator])

    async def _on_connect(self, peer: str) -> None:
        self.sync.peer_connected(peer)
        for economy in self.applier.economies.values():
            for validator in economy.validators:
                if p2p_mod.peer_id_of(validator) == peer:
                    self.submitter.validator_reachable(validator)
                    break

    async def run(
        self,
        *,
        frontends: Sequence[Frontend] = (),
        task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every service until cancelled; ``started(self)`` once ready.

        ``frontends`` (the RPC, the sensor ingest, the metrics endpoint: each
        ``fn(node, task_status=...)``) run inside the node's own nursery,
        started in order once the node is ready: the node owns its store and
        encloses its users, so the store closes only after every one of
        them has ended."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.p2p.run)
                log.info("p2p listening on %s", ", ".join(self.p2p.listen_addrs))
                if self.settings.validator:
                    self.p2p.set_handler(wire.VOTE_PROTOCOL, self.validator.handle)
                self.p2p.set_handler(wire.SYNC_PROTOCOL, self.sync.handle)
                self.p2p.set_handler(wire.AUDIT_PROTOCOL, self.audit.handle)
                self.p2p.on_connect(self._on_connect)
                await nursery.start(self.applier.run)
                log.info("store open at %s (%d economies)", self.store.path, len(self.follow))
                await nursery.start(self.validator.run)
                await nursery.start(self.gossip.run)
                self._started.set()
                for economy_id in self.follow:
                    if economy_id in self.applier.economies:
                        await self.gossip.follow(economy_id)
                        await self.compute.follow(economy_id)
                await nursery.start(self.submitter.run)
                await nursery.start(self.sync.run)
                await nursery.start(self.forks.run)
                await nursery.start(self.attester.run)
                await nursery.start(self.compute.run)
                log.info("node %s ready", self.key.did)
                for frontend in frontends:
                    await nursery.start(partial(frontend, self))
                task_status.started(self)
        finally:
            self.store.close()


class MetricsExporter:
    """Feeds a node's service counters into its Prometheus metrics.

    Services keep plain counters (they know nothing of Prometheus); this
    task turns their growth into counter increments once a second and sets
    the gauges, and observes submit-to-certified latency as statuses come."""

    def __init__(self, node: Node, metrics: Metrics) -> None:
        self.node = node
        self.metrics = metrics
        self._last: dict[str, int] = {}
        node.submitter.subscribe(self._on_status)

    def _on_status(self, status: Status) -> None:
        outcome = "certified" if status.state == CERTIFIED else "refused"
        self.metrics.submissions_total.labels(outcome=outcome).inc()
        if status.latency_s is not None:
            self.metrics.submit_to_certified_seconds.observe(status.latency_s)

    def _delta(self, name: str, value: int) -> int:
        delta = value - self._last.get(name, 0)
        self._last[name] = value
        return max(0, delta)

    def export(self) -> None:
        n, m = self.node, self.metrics
        m.peers.set(len(n.p2p.peers()))
        m.sync_lag_certificates.set(n.sync.lag)
        m.store_size_bytes.set(n.store.size_bytes())
        m.certificates_applied_total.inc(self._delta("applied", n.applier.applied_total))
        m.votes_cast_total.inc(self._delta("votes", n.validator.votes_cast))
        gin = m.gossip_messages_total.labels(direction="in")
        gin.inc(self._delta("in", n.gossip.received))
        gout = m.gossip_messages_total.labels(direction="out")
        gout.inc(self._delta("out", n.gossip.sent))
        for reason, count in n.gossip.dropped.items():
            for _ in range(self._delta(f"drop:{reason}", count)):
                m.gossip_dropped(reason)
        m.forks_detected_total.inc(self._delta("forks", n.forks.detected))
        m.sensor_attestations_total.inc(self._delta("attested", n.attester.certified))
        m.impact_claims_total.inc(self._delta("claims", n.store.claims_applied))
        m.impact_claimed_units.set(n.store.claimed_units)
        m.sensor_readings_bytes.set(n.store.readings_size_bytes())
        compute = n.compute
        provider = compute.provider
        if provider is not None:
            for outcome, count in provider.outcomes.items():
                m.compute_jobs_total.labels(outcome=outcome).inc(
                    self._delta(f"job:{outcome}", count)
                )
            m.compute_cpu_seconds_total.inc(self._delta("cpu_ms", provider.cpu_ms) / 1000)
            m.compute_jobs_running.set(provider.running)
            for stage, count in (
                ("received", provider.vouchers_received),
                ("persisted", provider.vouchers_persisted),
            ):
                m.compute_vouchers_total.labels(stage=stage).inc(self._delta(f"v:{stage}", count))
        for kind, count in compute.closer.settlements.items():
            if kind in ("close", "refund"):
                m.compute_settlements_total.labels(kind=kind).inc(
                    self._delta(f"settled:{kind}", count)
                )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.export()
            await trio.sleep(1.0)


async def serve(config: Config, key: SigningKey) -> None:
    """``mycelia node run``: the node, its metrics endpoint and its RPC, until
    SIGINT or SIGTERM; then a clean stop (the RPC removes its cookie, socket
    and endpoint file)."""
    node = Node(key, config.node.datadir, NodeSettings.from_config(config))
    metrics = Metrics(node_id=key.did)
    exporter = MetricsExporter(node, metrics)

    async def export(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        await exporter.run(task_status=task_status)

    async def metrics_endpoint(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as inner:
            host, port = await inner.start(
                serve_metrics, metrics, config.metrics.host, config.metrics.port
            )
            node.listening.metrics = f"{http_url(host, port)}/metrics"
            log.info("metrics at %s", node.listening.metrics)
            task_status.started()

    async def rpc(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as inner:
            endpoints = await inner.start(serve_rpc, node, config.rpc)
            log.info("rpc at %s", endpoints)
            task_status.started()

    async def ingest(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as inner:
            host, port = await inner.start(serve_ingest, node, config.sensors, metrics)
            log.info("sensor ingest at http://%s:%d/v1/readings", host, port)
            task_status.started()

    frontends: list[Frontend] = [export]
    if config.metrics.enabled:
        frontends.append(metrics_endpoint)
    if config.rpc.enabled:
        frontends.append(rpc)
    if config.sensors.enabled:
        frontends.append(ingest)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(node.run, frontends=frontends))
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    log.info("stopped")
