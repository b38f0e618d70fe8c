"""Buying compute through a node's RPC with the client (``mycelia.client``):
a wallet on one node, a provider node running the jobs, four validators.
The wallet's key signs every voucher in the test process; the nodes relay.
A job is paid to the minor unit of its metered price and the rest returned;
a provider that lies is stopped and cancelled, and paid only what the
wallet signed; the ``job`` subscription pushes the provider's answers; and
the RPC's refusals carry their reasons."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from mycelia.api.encoding import hex_out
from mycelia.client import AsyncClient, Endpoint, RpcError
from mycelia.node.config import RpcConfig
from mycelia.node.daemon import MetricsExporter
from mycelia.node.metrics import Metrics
from mycelia.protocol import Voucher
from mycelia.protocol.compute import Pay
from mycelia.protocol.compute_frames import ResultFrame, UsageFrame, decode_answer
from mycelia.protocol.pricing import price
from tests.node.compute.service_world import CONSUMER, Market, market
from tests.node.compute.test_service import settled
from tests.node.test_rpc import serving

RPC = RpcConfig(port=0, max_request_bytes=1 << 20)


@asynccontextmanager
async def wallet(m: Market) -> AsyncIterator[AsyncClient]:
    """The wallet's client on the wallet node's RPC."""
    async with trio.open_nursery() as nursery:
        async with serving(nursery, m.wallet_node, RPC):
            endpoint = Endpoint.from_datadir(m.wallet_node.datadir)  # written once it serves
            async with AsyncClient(endpoint) as client:
                yield client
        nursery.cancel_scope.cancel()


async def test_a_job_bought_over_the_rpc_pays_its_metered_price_and_returns_the_rest(
    tmp_path: Path,
) -> None:
    async with market(tmp_path) as m, wallet(m) as client:
        await m.offer()  # gossip brought it
        info = await client.node_info()
        assert info.compute is not None
        assert info.compute.enabled is False  # the wallet's node provides nothing
        paid: list[int] = []
        outcome = await client.buy_compute(
            CONSUMER,
            m.economy,
            "work",
            b"compute me",
            max_spend=800,
            poll_s=0.2,
            on_answer=lambda a, d: paid.append(d.amount) if isinstance(d, Pay) else None,
        )
        assert outcome.ok, outcome
        assert outcome.output == b"COMPUTE ME"
        report = outcome.report
        assert report is not None
        assert report.final
        assert outcome.paid == report.price == paid[-1]
        assert report.price == price(outcome.offer, "work", report.usage)
        await settled(m, outcome.channel)
        channel = await client.channel_get(outcome.channel)  # verified against its certificates
        assert channel.settlement == "channel.close"
        assert (channel.to_provider, channel.to_consumer) == (report.price, 800 - report.price)
        assert channel.escrow == 0
        provider_account = await client.account_get(m.economy, m.provider.key.did)
        me = await client.account_get(m.economy, CONSUMER.did)
        assert (provider_account.balance, me.balance) == (report.price, -report.price)
        listed = await client.channel_list(m.economy, CONSUMER.did)
        assert [c.id for c in listed] == [outcome.channel]
        provider_info = m.provider.compute.status()
        assert (provider_info.enabled, provider_info.tier) == (True, "shim")
        # The provider's metrics: the job, its CPU, the vouchers, the close.
        metrics = Metrics(process_metrics=False)
        MetricsExporter(m.provider, metrics).export()

        def sample(name: str, **labels: str) -> float | None:
            return metrics.registry.get_sample_value(name, labels)

        assert sample("mycelia_compute_jobs_total", outcome="completed") == 1
        assert sample("mycelia_compute_jobs_total", outcome="unpaid") == 0
        assert sample("mycelia_compute_cpu_seconds_total") == report.usage.cpu_ms / 1000
        persisted = sample("mycelia_compute_vouchers_total", stage="persisted")
        assert persisted == len(paid)  # each voucher the wallet signed was newer
        received = sample("mycelia_compute_vouchers_total", stage="received")
        assert received is not None
        assert received >= persisted
        assert sample("mycelia_compute_settlements_total", kind="close") == 1
        assert sample("mycelia_compute_jobs_running") == 0


async def test_a_lying_provider_is_stopped_and_paid_only_what_the_wallet_signed(
    tmp_path: Path,
) -> None:
    """A provider whose reports bill a unit more than the counters cost,
    from its third report on: the wallet stops paying and cancels; the
    provider closes with the last voucher the wallet signed."""
    async with market(tmp_path) as m, wallet(m) as client:
        await m.offer()
        service = m.provider.compute.provider
        assert service is not None
        honest = service.handle

        async def lying(peer: str, request: bytes) -> bytes:
            answer = decode_answer(await honest(peer, request))
            if isinstance(answer, UsageFrame) and answer.usage.report.seq >= 3:
                r = answer.usage.report
                forged = dataclasses.replace(r, price=r.price + 1).sign(m.provider.key)
                return UsageFrame(forged).encode()
            return answer.encode()

        service.handle = lying  # type: ignore[method-assign]
        outcome = await client.buy_compute(
            CONSUMER, m.economy, "sleep", b"", max_spend=800, poll_s=0.2
        )
        assert not outcome.ok
        assert outcome.stop is not None
        assert outcome.stop.reason.value == "price_mismatch"
        report = outcome.report
        assert report is not None
        assert outcome.paid == report.price == price(outcome.offer, "sleep", report.usage)
        await settled(m, outcome.channel)
        channel = await client.channel_get(outcome.channel)
        assert channel.to_provider == outcome.paid  # what the wallet signed, not a unit more
        job = service.jobs[outcome.job.id]
        assert job.pj.result is not None
        assert job.pj.result.outcome == "cancelled"


async def test_the_job_subscription_pushes_each_answer_until_the_result(tmp_path: Path) -> None:
    async with market(tmp_path) as m, wallet(m) as client:
        offer = await m.offer()
        channel = await m.open_channel(600, offer=offer)
        job, first = await client.compute_job_start(offer.offer, channel, "work", b"abc")
        assert isinstance(first, UsageFrame)
        fee = Voucher(m.economy, channel, first.usage.report.price).sign(CONSUMER)
        await client.compute_job_voucher(job.id, fee)
        seen = []
        async with client.subscribe("job", job=hex_out(job.id)) as sub:
            with trio.fail_after(60):
                async for answer in sub:
                    assert isinstance(answer, UsageFrame | ResultFrame)
                    seen.append(answer)
                    if isinstance(answer, ResultFrame):
                        break
        result = seen[-1]
        assert isinstance(result, ResultFrame)
        assert result.output == b"ABC"
        seqs = [a.usage.report.seq for a in seen]
        assert seqs == sorted(set(seqs))  # each new answer once, in order
        assert (await client.compute_job_result(job.id)) == result
        final = Voucher(m.economy, channel, result.usage.report.price).sign(CONSUMER)
        assert await client.compute_job_voucher(job.id, final) == result


async def test_compute_rpc_refusals_carry_their_reasons(tmp_path: Path) -> None:
    async with market(tmp_path) as m, wallet(m) as client:
        offer = await m.offer()
        channel = await m.open_channel(300, offer=offer)
        missing = bytes(32)
        other = dataclasses.replace(offer.offer, seq=9)  # never signed nor gossiped
        for call, reason in [
            (client.channel_get(missing), "unknown_channel"),
            (client.compute_job_status(missing), "unknown_job"),
            (client.compute_job_cancel(missing), "unknown_job"),
            (client.compute_job_start(other, channel, "work", b""), "unknown_offer"),
            (client.compute_job_start(offer.offer, channel, "nope", b""), "unknown_runtime"),
        ]:
            with pytest.raises(RpcError) as exc:
                await call
            assert exc.value.reason == reason
        job, _ = await client.compute_job_start(offer.offer, channel, "sleep", b"")
        with pytest.raises(RpcError) as exc:
            await client.compute_job_result(job.id)
        assert (exc.value.code, exc.value.reason) == (-32004, "job_running")
        with pytest.raises(RpcError) as exc:
            await client.call("compute_job_voucher", job=hex_out(job.id), voucher="0x00")
        assert (exc.value.code, exc.value.reason) == (-32001, "malformed")  # no signed voucher
        # The relay's own bound (compute.max_relayed_jobs): full of jobs that run.
        m.wallet_node.compute.relay.max_jobs = 1
        second = await m.open_channel(300, offer=offer)
        with pytest.raises(RpcError) as exc:
            await client.compute_job_start(offer.offer, second, "sleep", b"")
        assert (exc.value.code, exc.value.reason) == (-32003, "too_many_jobs")
        # The provider gone: the relay says so.
        await m.c.stop(m.provider)
        with pytest.raises(RpcError) as exc:
            await client.compute_job_status(job.id)
        assert (exc.value.code, exc.value.reason) == (-32004, "provider_unreachable")
