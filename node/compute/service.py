"""The node's compute service: a provider of its runtimes and a relay for its
wallets' jobs, as one node service.

Why this exists: the daemon runs each service in its nursery (``daemon.py``);
compute is several parts that start and stop together — the runner (the
OS side: ``runner.py``), the market (offers: ``market.py``), the voucher
keeper and the provider (``provider.py``), the closer (``closer.py``) and
the relay (``relay.py``). This module builds them from the ``[compute]``
config, serves ``/mycelia/compute/1`` through the provider and says what
the node can do (:meth:`ComputeService.status`: the metering tier and
why, for ``node_info``).

A node with ``compute.enabled = false`` still keeps others' offers, relays
its wallets' jobs and closes any channel it holds a voucher of (from an
earlier run); its runner refuses every job (``compute_disabled``).

Building the service opens the runner (``Runner.open``: the job user, each
runtime's program, the metering tier, the work directory; a ``ConfigError``
stops the node before it starts, with the key to fix). Stopping cancels the
runner, which kills every job: jobs do not outlive the node, and the shim kills a job whose node
died without a word (``docs/compute-runner.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from mycelia.node.applier import Applier
from mycelia.node.compute.closer import Closer
from mycelia.node.compute.market import Market
from mycelia.node.compute.provider import Provider, VoucherKeeper
from mycelia.node.compute.reasons import RunnerReason
from mycelia.node.compute.relay import Relay
from mycelia.node.compute.runner import Runner
from mycelia.node.config import ComputeConfig
from mycelia.node.p2p import P2P
from mycelia.node.store import Store
from mycelia.node.submitter import Submitter
from mycelia.protocol import SigningKey
from mycelia.protocol.compute_frames import MAX_FRAME_BYTES, PROTOCOL, ErrorFrame

__all__ = ["ComputeService", "ComputeStatus"]

log = logging.getLogger("mycelia.compute")


@dataclass(frozen=True, slots=True)
class ComputeStatus:
    """What this node does for compute: whether it provides, with which
    runtimes, how it meters and why (the runner's tier), and its load."""

    enabled: bool
    runtimes: tuple[str, ...]
    tier: str | None
    why: str | None
    running: int
    relayed: int


class ComputeService:
    """The compute parts of one node (see the module docstring)."""

    def __init__(
        self,
        key: SigningKey,
        store: Store,
        applier: Applier,
        submitter: Submitter,
        p2p: P2P,
        config: ComputeConfig,
        *,
        addresses: Callable[[], Sequence[str]],
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.key = key
        self.store = store
        self.config = config
        self.p2p = p2p
        self._wall_ms = wall_ms
        self.market = Market(key, p2p, config, addresses=addresses, wall_ms=wall_ms)
        self.keeper = VoucherKeeper(store)
        self.closer = Closer(key, store, applier, submitter, busy=self._busy, wall_ms=wall_ms)
        self.relay = Relay(p2p, self.market, max_jobs=config.max_relayed_jobs)
        # Opened here, with the node, so a config this machine cannot run
        # (ConfigError, naming the key) stops the node before it starts.
        self.runner = Runner.open(config)
        self.provider: Provider | None = None

    def _busy(self, channel: bytes) -> bool:
        return self.provider is not None and self.provider.pays(channel)

    async def follow(self, economy: bytes) -> None:
        """Keep (and, as a provider, make) offers in ``economy``."""
        await self.market.follow(economy)

    def status(self) -> ComputeStatus:
        tier = self.runner.tier
        return ComputeStatus(
            enabled=self.market.providing,
            runtimes=tuple(rt.name for rt in self.config.runtimes) if self.config.enabled else (),
            tier=None if tier is None else tier.name,
            why=None if tier is None else tier.why,
            running=0 if self.provider is None else self.provider.running,
            relayed=len(self.relay.jobs),
        )

    async def handle(self, peer: str, request: bytes) -> bytes:
        """``/mycelia/compute/1``."""
        if self.provider is None:
            return ErrorFrame.of(RunnerReason.COMPUTE_DISABLED, "compute is starting").encode()
        return await self.provider.handle(peer, request)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runner = self.runner
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                self.provider = Provider(
                    self.key,
                    self.store,
                    self.market,
                    runner,
                    self.keeper,
                    self.config,
                    close=self.closer.close,
                    closing=self.closer.closing,
                    wall_ms=self._wall_ms,
                )
                await nursery.start(self.keeper.run)
                await nursery.start(self.provider.run)
                await nursery.start(self.closer.run)
                await nursery.start(self.relay.run)
                await nursery.start(self.market.run)
                self.p2p.set_handler(PROTOCOL, self.handle, max_request_bytes=MAX_FRAME_BYTES)
                if self.market.providing:
                    tier = runner.tier
                    log.info(
                        "compute: providing %s (metering: %s)",
                        ", ".join(rt.name for rt in self.config.runtimes),
                        "none" if tier is None else f"{tier.name}, {tier.why}",
                    )
                task_status.started()
        finally:
            self.provider = None
            runner.close()
