"""A compute market on a real cluster, for the service tests: four
validators (one of them the wallets' node, which relays), and a provider
node whose runtimes are the test jobs (``jobs.py``), metered by the shim.

The consumer is played here as a wallet would (``ConsumerJob`` and the
consumer's key, which never reaches a node), talking to its node's relay
directly: the RPC and the client over it have tests of their own
(``tests/node/compute/test_rpc.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from mycelia.node.compute.relay import Relayed, RelayError
from mycelia.node.config import ComputeConfig, RuntimeConfig
from mycelia.node.daemon import Node
from mycelia.node.submitter import CERTIFIED
from mycelia.protocol import ChannelOpen, Entry, SignedEntry, SigningKey, Voucher, channel_state
from mycelia.protocol.channels import ChannelState
from mycelia.protocol.compute import ConsumerJob, Failed, Pay, Stop
from mycelia.protocol.compute_frames import decode_answer
from mycelia.protocol.offers import SignedOffer
from mycelia.testing.cluster import FAST, Cluster, cluster
from mycelia.testing.economies import key
from tests.node.compute.conftest import runtime, user_config

CONSUMER = key(1, "consumer")
HOUR = 3_600_000
#: Prices of the test runtimes (minor units): a fee, CPU and running time.
PRICES: dict[str, Any] = {"fee": 50, "per_cpu_ms": 1, "per_mib_s": 0, "per_wall_s": 100}


def now_ms() -> int:
    return int(time.time() * 1000)


def runtimes() -> tuple[RuntimeConfig, ...]:
    return (
        dataclasses.replace(runtime("work", "work", "0.3"), **PRICES),
        dataclasses.replace(runtime("sleep", "sleep"), **PRICES),
        dataclasses.replace(runtime("echo", "echo"), **PRICES),
    )


def compute_config(**changes: Any) -> ComputeConfig:
    base = ComputeConfig(
        enabled=True,
        user=user_config(),
        metering="shim",
        poll_interval_s=0.05,
        runtimes=runtimes(),
        # Wide enough that a wallet paying every report keeps a job running
        # however loaded the machine (the freeze test narrows it).
        credit_window=100_000,
        grace_s=30.0,
        offer_interval_s=0.5,
        close_margin_s=5.0,
        final_voucher_s=3.0,
        max_jobs=2,
        max_jobs_per_peer=2,
    )
    return dataclasses.replace(base, **changes)


@dataclass
class Market:
    c: Cluster
    provider: Node
    wallet_node: Node

    @property
    def economy(self) -> bytes:
        return self.c.economy_id

    def channel(self, node: Node, channel: bytes) -> ChannelState | None:
        return channel_state(lambda k: node.store.record(self.economy, k), channel)

    async def offer(self) -> SignedOffer:
        """The provider's offer, once gossip brought it to the wallet's node."""
        with trio.fail_after(30):
            while True:
                for signed in self.wallet_node.compute.market.offers(self.economy):
                    if signed.offer.provider == self.provider.key.public:
                        return signed
                await trio.sleep(0.05)

    async def certified(self, signed: SignedEntry, node: Node | None = None) -> None:
        node = node or self.wallet_node
        status = await node.submitter.wait(await node.submit(signed))
        assert status.state == CERTIFIED, status

    async def open_channel(
        self,
        amount: int,
        *,
        offer: SignedOffer,
        consumer: SigningKey = CONSUMER,
        lasts_ms: int = HOUR,
    ) -> bytes:
        head = self.wallet_node.store.account(self.economy, consumer.public)
        body = ChannelOpen(self.provider.key.public, amount, now_ms() + lasts_ms, offer.id)
        entry = Entry(self.economy, consumer.public, head.seq + 1, head.head, now_ms(), body)
        signed = entry.sign(consumer)
        await self.certified(signed)
        # The provider checks the channel against its own ledger: wait for it.
        with trio.fail_after(30):
            while self.channel(self.provider, signed.id) is None:
                await trio.sleep(0.05)
        return signed.id

    async def start(
        self, offer: SignedOffer, channel: bytes, runtime_: str, data: bytes
    ) -> Relayed:
        return await self.wallet_node.compute.relay.start(offer.id, channel, runtime_, data)


@asynccontextmanager
async def market(tmp_path: Path, **compute: Any) -> AsyncIterator[Market]:
    """Four validators and a provider node, connected, in one economy."""
    async with cluster(tmp_path, n_followers=0) as c:
        settings = dataclasses.replace(FAST, compute=compute_config(**compute))
        provider = await c.start_node(key(7, "provider"), "provider", settings=settings)
        c.followers.append(provider)
        await c.connect_all()
        signed = c.nodes[0].store.economy(c.economy_id)
        assert signed is not None
        await provider.add_economy(signed)
        yield Market(c, provider, c.validators[0])


@dataclass
class Bought:
    """What a consumer loop saw: the job, each decision, the last answer."""

    job: ConsumerJob
    decisions: list[Pay | Stop | Failed | None]
    paid: list[int]


async def buy(
    m: Market,
    relayed: Relayed,
    offer: SignedOffer,
    *,
    escrow: int,
    max_spend: int,
    pay: bool = True,
    consumer: SigningKey = CONSUMER,
    until: Any = None,
    interval_s: float = 0.1,
) -> Bought:
    """Run the consumer's side of a relayed job until it is done (or
    ``until(job)`` says so): apply the consumer's rule to each answer and
    pay what it asks (when ``pay``); stop paying and cancel on a Stop.
    ``until(bought_so_far)`` ends the loop early."""
    relay = m.wallet_node.compute.relay
    cj = ConsumerJob(offer.offer, relayed.job, escrow=escrow, max_spend=max_spend)
    out = Bought(cj, [], [])
    answer = relayed.answer
    with trio.fail_after(60):
        while True:
            decision = cj.receive(decode_answer(answer))
            out.decisions.append(decision)
            if isinstance(decision, Stop):
                await relay.cancel(relayed.id)
                return out
            if cj.done or (cj.ended and not pay) or (until is not None and until(out)):
                return out
            if isinstance(decision, Pay) and pay:
                v = Voucher(m.economy, relayed.job.channel, decision.amount).sign(consumer)
                out.paid.append(decision.amount)
                answer = await relay.voucher(relayed.id, cj.pay(v).voucher)
                continue
            await trio.sleep(interval_s)
            try:
                answer = await relay.poll(relayed.id)
            except RelayError as exc:
                if exc.reason == "provider_unreachable":
                    continue
                raise
