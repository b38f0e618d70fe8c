"""The compute service on real nodes (``node/compute/service.py``): four
validators and a provider in one trio process, jobs through a node's relay
to the provider's runner, vouchers persisted, channels closed — also after
a restart — and every refusal through the wire with its reason."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from mycelia.node.compute.relay import Relayed
from mycelia.node.daemon import Node
from mycelia.protocol import Reason, Refused, Voucher
from mycelia.protocol.compute import Pay
from mycelia.protocol.compute_frames import (
    PROTOCOL,
    ErrorFrame,
    HashInput,
    Job,
    JobFrame,
    PollFrame,
    ResultFrame,
    UsageFrame,
    decode_answer,
    input_digest,
)
from mycelia.protocol.pricing import Usage, price
from mycelia.testing.cluster import converge
from tests.node.compute.conftest import runtime, user_config
from tests.node.compute.service_world import CONSUMER, Market, buy, market


async def settled(m: Market, channel: bytes) -> None:
    """Wait until every node applied the channel's settlement."""
    with trio.fail_after(60):
        while True:
            states = [m.channel(n, channel) for n in m.c.nodes]
            if all(s is not None and s.settlement is not None for s in states):
                break
            await trio.sleep(0.1)
    await converge(m.c.nodes, m.economy)


def answer_of(relayed: Relayed) -> UsageFrame | ResultFrame | ErrorFrame:
    return decode_answer(relayed.answer)


async def test_a_job_runs_and_the_provider_is_paid_exactly_its_metered_price(
    tmp_path: Path,
) -> None:
    async with market(tmp_path) as m:
        offer = await m.offer()
        channel = await m.open_channel(900, offer=offer)
        relayed = await m.start(offer, channel, "work", b"hello")
        first = answer_of(relayed)
        assert isinstance(first, UsageFrame)
        assert (first.usage.report.seq, first.usage.report.price) == (1, 50)  # the fee
        bought = await buy(m, relayed, offer, escrow=900, max_spend=900)
        cj = bought.job
        assert cj.done
        result = cj.result
        assert result is not None
        assert (result.outcome, result.exit_status, result.output) == ("completed", 0, b"HELLO")
        final = result.usage.report
        assert final.final
        assert final.price == price(offer.offer, "work", final.usage)
        assert final.usage.cpu_ms >= 250  # it burned 0.3 s
        assert bought.paid[-1] == final.price == cj.paid
        assert bought.paid == sorted(bought.paid)
        await settled(m, channel)
        provider, me = m.provider.key.public, CONSUMER.public
        for node in m.c.nodes:
            state = m.channel(node, channel)
            assert state is not None
            assert state.settlement is not None
            assert state.settlement.kind == "channel.close"
            assert (state.settlement.to_provider, state.settlement.to_consumer) == (
                final.price,
                900 - final.price,
            )
            assert node.store.account(m.economy, provider).balance == final.price
            assert node.store.account(m.economy, me).balance == -final.price
        # The provider forgot the voucher once the close was certified.
        assert m.provider.store.held_voucher(channel) is None
        service = m.provider.compute
        assert service.provider is not None
        assert service.provider.outcomes["completed"] == 1
        assert service.closer.settlements["close"] == 1
        assert isinstance(bought.decisions[0], Pay)


async def test_a_consumer_cannot_run_a_runtime_the_provider_did_not_configure(
    tmp_path: Path,
) -> None:
    async with market(tmp_path) as m:
        offer = await m.offer()
        channel = await m.open_channel(500, offer=offer)
        relay = m.wallet_node.compute.relay
        # The relay knows the offer lists no "sh" (it refuses to build such a
        # job without limits); with limits, the JOB goes to the provider.
        with pytest.raises(Refused) as local:
            await relay.start(offer.id, channel, "sh", b"rm -rf /")
        assert local.value.reason is Reason.UNKNOWN_RUNTIME
        limits = offer.offer.runtimes[0].limits
        relayed = await relay.start(offer.id, channel, "sh", b"rm -rf /", limits=limits)
        refused = answer_of(relayed)
        assert isinstance(refused, ErrorFrame)
        assert refused.code == "unknown_runtime"
        assert relayed.id not in relay.jobs
        assert m.provider.compute.provider is not None
        assert m.provider.compute.provider.running == 0
        # The channel is still free: an offered runtime runs on it.
        ok = await relay.start(offer.id, channel, "echo", b"x")
        assert isinstance(answer_of(ok), UsageFrame)
        done = await buy(m, ok, offer, escrow=500, max_spend=500)
        assert isinstance(done.job.result, ResultFrame)
        assert done.job.result.output == b"x"


def job_pids(work_root: Path) -> set[int]:
    """The processes whose working directory is a job directory under
    ``work_root`` (every process a job runs starts there)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").readlink()
        except OSError:
            continue
        if cwd.is_relative_to(work_root):
            pids.add(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_consumer_that_stops_paying_is_frozen_then_killed_within_its_window(
    tmp_path: Path,
) -> None:
    async with market(tmp_path, credit_window=400, grace_s=1.0) as m:
        offer = await m.offer()
        channel = await m.open_channel(900, offer=offer)
        relayed = await m.start(offer, channel, "sleep", b"")
        provider = m.provider.compute.provider
        assert provider is not None
        run = provider.jobs[relayed.id]
        with trio.fail_after(30):
            while not run.frozen:  # the fee was within the window; running time is not
                await trio.sleep(0.02)
        assert run.running is not None
        frozen_at = run.running.usage()  # its clock stopped with the freeze
        bought = await buy(m, relayed, offer, escrow=900, max_spend=900, pay=False)
        result = bought.job.result
        assert result is not None
        assert result.outcome == "unpaid"
        assert result.exit_status < 0  # killed by a signal
        final = result.usage.report
        assert abs(final.usage.wall_ms - frozen_at.wall_ms) <= 1  # nothing billed while frozen
        assert bought.paid == []
        # Never more unpaid than the credit window plus one step of work
        # (a tick of 0.05 s at full use of both cores, with margin for the
        # moment a freeze takes to land).
        window = offer.offer.credit_window
        step = price(offer.offer, "sleep", Usage(2 * 250, 250, 0)) - 50
        assert window < final.price <= window + step
        # Nothing was paid, so there is nothing to close.
        assert m.provider.store.held_voucher(channel) is None
        assert provider.outcomes["unpaid"] == 1


async def test_a_restarted_provider_still_closes_with_the_newest_voucher(tmp_path: Path) -> None:
    async with market(tmp_path) as m:
        offer = await m.offer()
        channel = await m.open_channel(900, offer=offer)
        relayed = await m.start(offer, channel, "sleep", b"")
        provider = m.provider.compute.provider
        runner = m.provider.compute.runner
        assert provider is not None
        assert runner is not None
        work_root = runner.work.path
        # Pay as the job runs, until three vouchers are durable.
        bought = await buy(
            m, relayed, offer, escrow=900, max_spend=900, until=lambda b: len(b.paid) >= 3
        )
        newest = bought.paid[-1]
        held = m.provider.store.held_voucher(channel)
        assert held is not None
        assert held.amount == newest
        pids = job_pids(work_root)
        assert pids  # the shim and the job's processes
        await m.c.stop(m.provider)
        # The job died with the node: none of its processes is left.
        assert not [p for p in pids if alive(p)]
        fresh = await m.c.restart(m.provider)
        m.provider = fresh
        await settled(m, channel)
        state = m.channel(m.wallet_node, channel)
        assert state is not None
        assert state.settlement is not None
        assert state.settlement.kind == "channel.close"
        assert state.settlement.to_provider == newest
        assert fresh.store.held_voucher(channel) is None
        # The consumer asking about the job now hears that it is gone.
        answer = decode_answer(await m.wallet_node.compute.relay.poll(relayed.id))
        assert isinstance(answer, ErrorFrame)
        assert answer.code == "unknown_job"


async def test_the_provider_refuses_through_the_wire_and_changes_nothing(tmp_path: Path) -> None:
    """Each refusal of a JOB or a VOUCHER comes back as ERROR with its reason;
    nothing runs, nothing is stored."""
    # A wide credit window (the market's): the jobs run unpaid until
    # cancelled. The consumer's credit limit is 1000 in all.
    async with market(tmp_path) as m:
        offer = await m.offer()
        relay = m.wallet_node.compute.relay
        provider = m.provider.compute.provider
        assert provider is not None
        limits = offer.offer.runtimes[0].limits

        async def refused(code: str, **job: object) -> None:
            args: dict[str, object] = {
                "offer_id": offer.id,
                "channel": channel,
                "runtime": "echo",
                "data": b"",
            } | job
            relayed = await relay.start(**args)  # type: ignore[arg-type]
            answer = answer_of(relayed)
            assert isinstance(answer, ErrorFrame), answer
            assert answer.code == code, answer

        channel = await m.open_channel(200, offer=offer)
        held_before = m.provider.store.held_vouchers()
        await refused("channel_unknown", channel=bytes(32))
        short = await m.open_channel(100, offer=offer, lasts_ms=10_000)  # < wall limit + margin
        await refused("channel_expiring", channel=short)
        await refused("base_mismatch", base=7)
        poor = await m.open_channel(30, offer=offer)  # less than the fee
        await refused("over_escrow", channel=poor)
        big = dataclasses.replace(limits, max_wall_ms=limits.max_wall_ms + 1)
        await refused("over_limits", limits=big)
        # One job on the channel; a second on it is refused; a second job of
        # the same peer on another channel runs, a third is refused
        # (compute.max_jobs_per_peer = 2).
        running = await relay.start(offer.id, channel, "sleep", b"")
        assert isinstance(answer_of(running), UsageFrame)
        await refused("channel_busy")
        other = await m.open_channel(200, offer=offer)
        second = await relay.start(offer.id, other, "sleep", b"")
        assert isinstance(answer_of(second), UsageFrame)
        third = await m.open_channel(200, offer=offer)
        await refused("peer_busy", channel=third)
        assert provider.running == 2
        # Vouchers that do not pay this job.
        for voucher, code in [
            (Voucher(m.economy, other, 10).sign(CONSUMER), "wrong_channel"),
            (Voucher(m.economy, channel, 10).sign(m.provider.key), "voucher_bad_sig"),
            (Voucher(m.economy, channel, 201).sign(CONSUMER), "voucher_over_escrow"),
        ]:
            answer = decode_answer(await relay.voucher(running.id, voucher.encode()))
            assert isinstance(answer, ErrorFrame)
            assert answer.code == code
        assert m.provider.store.held_vouchers() == held_before == {}
        assert isinstance(decode_answer(await relay.poll(running.id)), UsageFrame)  # runs on
        for job in (running, second):
            cancelled = decode_answer(await relay.cancel(job.id))
            with trio.fail_after(30):
                while not isinstance(cancelled, ResultFrame):
                    await trio.sleep(0.05)
                    cancelled = decode_answer(await relay.poll(job.id))
            assert cancelled.outcome == "cancelled"
        assert provider.outcomes["cancelled"] == 2

        # Straight to the provider: a job it does not hold; an input by hash
        # (this provider fetches none); and to a node that provides nothing.
        async def ask(node: Node, request: bytes) -> ErrorFrame:
            raw = await m.wallet_node.p2p.request(node.p2p.peer_id, PROTOCOL, request)
            answer = decode_answer(raw)
            assert isinstance(answer, ErrorFrame)
            return answer

        assert (await ask(m.provider, PollFrame(bytes(32)).encode())).code == "unknown_job"
        hashed = Job(
            m.economy,
            offer.id,
            third,
            0,
            bytes(16),
            "echo",
            limits,
            HashInput(input_digest(b"x"), 1),
        )
        assert (await ask(m.provider, JobFrame(hashed).encode())).code == "missing"
        assert m.provider.compute.provider is not None
        assert m.provider.compute.provider.running == 0
        validator = m.c.validators[1]
        assert (await ask(validator, JobFrame(hashed).encode())).code == "compute_disabled"


CRASHING_NODE = """
import sys, trio
from mycelia.node.compute.runner import Runner
from mycelia.node.config import ComputeConfig, RuntimeConfig

async def main():
    rt = RuntimeConfig(name="sleep", command=tuple(sys.argv[2:]))
    cfg = ComputeConfig(enabled=True, user=sys.argv[1], metering="shim", runtimes=(rt,))
    runner = Runner.open(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        async with runner.job("sleep", b"") as job:
            await trio.sleep(0.5)  # its processes are up
            print(runner.work.path, job.pid, flush=True)
            await trio.sleep_forever()

trio.run(main)
"""


def test_a_job_dies_with_a_node_killed_without_a_word(tmp_path: Path) -> None:
    """The node is SIGKILLed mid-job (nothing of it runs to clean up): the
    job's shim sees its control socket close and kills the job, so none of
    its processes outlives the node."""
    job = runtime("sleep", "sleep")
    # A process of its own playing the node (the runner as the node runs it).
    node = subprocess.Popen(
        [sys.executable, "-c", CRASHING_NODE, user_config(), *job.command],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        work_root, shim = node.stdout.readline().split()
        pids = job_pids(Path(work_root))
        assert len(pids) >= 2  # the job and its daemonised grandchild
        pids.add(int(shim))  # and the shim (its own directory is /)
        node.kill()
        node.wait(timeout=30)
        deadline = time.monotonic() + 30
        while [p for p in pids if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if alive(p)]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_the_result_says_how_the_runner_saw_the_job_end() -> None:
    """``exit_and_outcome``: the RESULT's exit status and outcome for each of
    the runner's outcomes, and the provider's own reason when it killed."""
    from mycelia.node.compute.metering import Usage as Metered
    from mycelia.node.compute.provider import exit_and_outcome
    from mycelia.node.compute.runner import JobResult, Outcome

    def result(
        outcome: Outcome, code: int | None = None, sig: int | None = None, cut: bool = False
    ) -> JobResult:
        return JobResult(outcome, code, sig, b"", cut, b"", False, Metered(0, 0, 1))

    assert exit_and_outcome(result(Outcome.EXITED, 0), None) == (0, "completed")
    assert exit_and_outcome(result(Outcome.EXITED, 3), None) == (3, "completed")
    assert exit_and_outcome(result(Outcome.EXITED, 0, cut=True), None) == (0, "limit")
    assert exit_and_outcome(result(Outcome.SIGNALLED, sig=11), None) == (-11, "completed")
    assert exit_and_outcome(result(Outcome.CPU_LIMIT, sig=9), None) == (-9, "limit")
    assert exit_and_outcome(result(Outcome.WALL_LIMIT, sig=9), None) == (-9, "limit")
    assert exit_and_outcome(result(Outcome.KILLED, sig=9), "unpaid") == (-9, "unpaid")
    assert exit_and_outcome(result(Outcome.KILLED, sig=9), "cancelled") == (-9, "cancelled")
    assert exit_and_outcome(result(Outcome.KILLED, sig=9), None) == (-9, "failed")
    assert exit_and_outcome(result(Outcome.FAILED), None) == (0, "failed")
