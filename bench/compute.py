"""Compute benchmark: what metering a job costs, and how exactly it measures.

Run by hand: ``python -m bench.compute [--jobs N] [--burn SECONDS]
[--channels N --vouchers N --rounds N] [--only PART]``.

Each part is a function ``part(args, tiers) -> list of lines`` printed in
turn (:data:`PARTS`).

Tiers: every tier this machine offers — ``shim`` always; ``cgroup`` when a
writable cgroup v2 is found below this process's own cgroup (the benchmark
makes a fresh one there and removes it).

**Overhead** (:func:`overhead`): wall time per job to start a metered job,
read its usage once, and collect its result, for a job that does nothing
(``python3 -I -S -c pass``), against a bare ``subprocess.run`` of the same
command as the same user, in the same run. Printed: ms per job each, and the
ratio metered / bare (the limit: 1.0 would be free metering). Most of the
difference is the shim's own Python start-up.

**Accuracy** (:func:`accuracy`): a fixed busy loop of ``--burn`` CPU seconds
in a daemonised grandchild (double fork, ``setsid``, its parent gone) plus
the main process's own start-up; the runner's figure against the processes'
own rusage, summed (independent of the runner). Printed: the ratio metered /
independent (the limit: 1.0), and what ``RUSAGE_CHILDREN`` of the main
process alone would have billed, as the same kind of ratio — the undercount
the shim and the cgroup exist to avoid.

**Vouchers** (:func:`vouchers`): what a provider node does for each VOUCHER
it is sent, on one core (the process pins itself to one CPU for this part):
the provider's own handler (``Provider.handle``: decode the request, find
the job, check the voucher against the channel as the store holds it — one
Ed25519 verification — persist it, hold it, answer with the job's USAGE),
with ``--channels`` jobs paying at once, ``--vouchers`` vouchers each, into
a real store with fsync on (group commits: ``VoucherKeeper``). The limit:
libsodium ``crypto_sign_open`` of the same signed messages, timed in the
same run; the ratio is vouchers/s ÷ verifications/s (1.0 would be a
provider whose every other cost is free; the target is ≥ 0.5). Best of
``--rounds`` rounds, alternating the two.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from mycelia.node.compute.cgroup import CgroupUnavailable, Delegation, Leaf, locate
from mycelia.node.compute.runner import Runner
from mycelia.node.config import ComputeConfig, RuntimeConfig

NOTHING = "pass"
# The accuracy workload: the same shape as the test suite's daemon_burn job.
BURN = r"""
import json, os, resource, sys, time
burn = float(sys.argv[1])
def spin():
    t0 = time.process_time()
    while time.process_time() - t0 < burn:
        pass
child = os.fork()
if child == 0:
    if os.fork() == 0:
        os.setsid()
        spin()
        me = resource.getrusage(resource.RUSAGE_SELF)
        with open("gc.tmp", "w") as fh:
            fh.write(str(me.ru_utime + me.ru_stime))
        os.rename("gc.tmp", "gc")
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
while not os.path.exists("gc"):
    time.sleep(0.01)
gc = float(open("gc").read())
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
main = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
print(json.dumps({"grandchild": gc, "main": main}))
"""


def job_user() -> tuple[str, str | None]:
    """compute.user, and the user a bare run switches to (None: itself)."""
    if os.geteuid() == 0:
        return "nobody", "nobody"
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name, None


def interpreter() -> str:
    """A python3 the job user can run (root's may live in a home directory)."""
    return "/usr/bin/python3" if os.geteuid() == 0 else sys.executable


@contextmanager
def cgroup_base() -> Iterator[Path | None]:
    """A fresh cgroup below this process's own, or None if there is none."""
    try:
        _, own = locate()
        base = own / f"mycelia-bench-{secrets.token_hex(4)}"
        base.mkdir()
    except (CgroupUnavailable, OSError):
        yield None
        return
    try:
        try:
            Delegation.setup(base)
        except CgroupUnavailable:
            yield None
            return
        yield base
    finally:
        for child in base.iterdir():
            if child.is_dir():
                Leaf(child).remove()
        Leaf(base).remove()


def config(tier: dict[str, Any], *runtimes: RuntimeConfig) -> ComputeConfig:
    user, _ = job_user()
    return ComputeConfig(enabled=True, user=user, runtimes=runtimes, **tier)


async def _metered_runs(cfg: ComputeConfig, name: str, n: int, data: bytes) -> list[Any]:
    results = []
    with Runner.open(cfg) as runner:
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            for _ in range(n):
                async with runner.job(name, data) as job:
                    job.usage()
                    results.append(await job.wait())
            nursery.cancel_scope.cancel()
    return results


def overhead(args: argparse.Namespace, tiers: dict[str, dict[str, Any]]) -> list[str]:
    py = interpreter()
    cmd = (py, "-I", "-S", "-c", NOTHING)
    _, bare_user = job_user()
    lines = [f"overhead per job ({args.jobs} jobs of `{' '.join(cmd)}`):"]
    t0 = time.perf_counter()
    for _ in range(args.jobs):
        subprocess.run(cmd, user=bare_user, check=True, stdin=subprocess.DEVNULL)
    bare = (time.perf_counter() - t0) / args.jobs
    lines.append(f"  bare subprocess.run   {bare * 1000:8.1f} ms")
    for name, tier in tiers.items():
        cfg = config(tier, RuntimeConfig(name="nothing", command=cmd))
        t0 = time.perf_counter()
        results = trio.run(_metered_runs, cfg, "nothing", args.jobs, b"")
        metered = (time.perf_counter() - t0) / args.jobs
        assert all(r.exit_code == 0 for r in results), results
        cpu = sum(r.usage.cpu_ms for r in results) / len(results)
        lines.append(
            f"  metered ({name:6})      {metered * 1000:8.1f} ms   ratio to bare "
            f"{metered / bare:5.2f}   (job cpu billed {cpu:.1f} ms)"
        )
    return lines


def accuracy(args: argparse.Namespace, tiers: dict[str, dict[str, Any]]) -> list[str]:
    cmd = (interpreter(), "-I", "-S", "-c", BURN, str(args.burn))
    lines = [f"accuracy ({args.burn:g} CPU s in a daemonised grandchild):"]
    for name, tier in tiers.items():
        cfg = config(tier, RuntimeConfig(name="burn", command=cmd))
        (result,) = trio.run(_metered_runs, cfg, "burn", 1, b"")
        seen = json.loads(result.output)
        independent = (seen["grandchild"] + seen["main"]) * 1000
        lines.append(
            f"  {name:6}  metered {result.usage.cpu_ms:7.1f} ms   independent "
            f"{independent:7.1f} ms   ratio {result.usage.cpu_ms / independent:6.3f}   "
            f"(RUSAGE_CHILDREN alone: ratio {seen['main'] * 1000 / independent:5.3f})"
        )
    return lines


def _voucher_world(channels: int, per_channel: int) -> tuple[Any, Any, list[Any], list[Any]]:
    """A store-ready economy: ``channels`` consumers each opened a channel
    to the provider; each signs ``per_channel`` vouchers of growing amounts."""
    from mycelia.protocol import Voucher
    from mycelia.testing.economies import World, genesis, key

    provider = key(1, "bench-provider")
    world = World(genesis(default_limit=10**9))
    certs, signed = [], []
    for i in range(channels):
        consumer = key(100 + i, "bench-consumer")
        cert = world.open_channel(consumer, provider, 10**6, lasts_ms=86_400_000)
        certs.append(cert)
        signed.append(
            [Voucher(world.id, cert.entry_id, n).sign(consumer) for n in range(1, per_channel + 1)]
        )
    return world, provider, certs, signed


async def _through_the_provider(
    world: Any, provider_key: Any, certs: list[Any], signed: list[list[Any]], path: Path
) -> float:
    """Seconds for every voucher through ``Provider.handle`` (concurrently per
    channel); the store is fresh, durable (fsync on)."""
    from mycelia.node.compute.market import Market
    from mycelia.node.compute.provider import Provider, VoucherKeeper, _Run
    from mycelia.node.p2p import P2P
    from mycelia.node.store import Store
    from mycelia.protocol import channel_state
    from mycelia.protocol.compute import ProviderJob
    from mycelia.protocol.compute_frames import (
        InlineInput,
        Job,
        UsageFrame,
        VoucherFrame,
        decode_answer,
    )
    from mycelia.protocol.ledger import GapBuffer
    from mycelia.protocol.offers import Limits, Offer, Runtime
    from mycelia.protocol.pricing import Prices
    from mycelia.testing.economies import sign_genesis

    store = Store(path, sync=True)
    try:
        store.add_economy_sync(sign_genesis(world.genesis, world.vkeys))
        store.apply_sync(world.economy, GapBuffer(), certs)
        cfg = ComputeConfig()
        market = Market(provider_key, P2P(provider_key.seed), cfg, addresses=lambda: ())
        keeper = VoucherKeeper(store)
        provider = Provider(
            provider_key,
            store,
            market,
            Runner.open(cfg),
            keeper,
            cfg,
            close=lambda _c: None,
            closing=lambda _c: False,
        )
        limits = Limits(60_000, 60_000, 64, 1024, 1024)
        offer = Offer(
            world.id,
            provider_key.public,
            1,
            world.clock,
            world.clock + 3_600_000,
            "12D3KooWBench",
            (),
            (Runtime("bench", limits, Prices(1, 1, 0, 0)),),
            10**6,
            1_000,
        )
        requests = []
        for i, (cert, vouchers) in enumerate(zip(certs, signed, strict=True)):
            job = Job(
                world.id,
                offer.id,
                cert.entry_id,
                0,
                i.to_bytes(16, "big"),
                "bench",
                limits,
                InlineInput(b""),
            )
            channel = channel_state(lambda k: store.record(world.id, k), cert.entry_id)
            provider.jobs[job.id] = _Run(
                ProviderJob(offer, job, provider_key), "bench", b"", channel
            )
            requests.append([VoucherFrame(job.id, v.encode()).encode() for v in vouchers])

        answers: list[bytes] = []

        async def pay(batch: list[bytes]) -> None:
            for request in batch:
                answer = await provider.handle("bench", request)
            answers.append(answer)  # the consumer's side is not timed: checked below

        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            t0 = time.perf_counter()
            async with trio.open_nursery() as payers:
                for batch in requests:
                    payers.start_soon(pay, batch)
            elapsed = time.perf_counter() - t0
            nursery.cancel_scope.cancel()
        assert all(isinstance(decode_answer(a), UsageFrame) for a in answers)
        held = store.held_vouchers()
        assert len(held) == len(certs), len(held)
        assert all(h.amount == len(signed[0]) for h in held.values())
        assert provider.vouchers_persisted == sum(map(len, signed))
        return elapsed
    finally:
        store.close()


def vouchers(args: argparse.Namespace, tiers: dict[str, dict[str, Any]]) -> list[str]:
    import tempfile

    from nacl.bindings import crypto_sign_open

    from mycelia.protocol.domains import VOUCHER

    pinned = "not pinned"
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
        pinned = f"pinned to CPU {cpu}"
    world, provider, certs, signed = _voucher_world(args.channels, args.vouchers)
    flat = [v for vs in signed for v in vs]
    consumers = {c.entry_id: c.entry.author for c in certs}
    inputs = [
        (v.signature + VOUCHER.message(v.voucher.id), consumers[v.voucher.channel]) for v in flat
    ]
    best_node, best_sodium = float("inf"), float("inf")
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            t = trio.run(_through_the_provider, world, provider, certs, signed, Path(tmp) / "s")
        best_node = min(best_node, t)
        t0 = time.perf_counter()
        for smsg, pk in inputs:
            crypto_sign_open(smsg, pk)
        best_sodium = min(best_sodium, time.perf_counter() - t0)
    per_s = len(flat) / best_node
    verifs = len(inputs) / best_sodium
    ratio = per_s / verifs
    verdict = "meets" if ratio >= 0.5 else "BELOW"
    return [
        f"vouchers ({args.channels} channels x {args.vouchers} vouchers, fsync on, {pinned}):",
        f"  libsodium Ed25519 verifications/s      {verifs:10,.0f}",
        f"  vouchers verified+persisted/s (node)   {per_s:10,.0f}   "
        f"({best_node / len(flat) * 1e6:.1f} µs each)",
        f"  ratio {ratio:.3f} ({verdict} the 0.5 target)",
    ]


PARTS: list[Callable[[argparse.Namespace, dict[str, dict[str, Any]]], list[str]]] = [
    overhead,
    accuracy,
    vouchers,  # last: it pins the process to one CPU
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20, help="jobs per overhead figure")
    p.add_argument("--burn", type=float, default=1.0, help="CPU seconds of the accuracy job")
    p.add_argument("--channels", type=int, default=1024, help="jobs paying at once (vouchers)")
    p.add_argument("--vouchers", type=int, default=5, help="vouchers per channel")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the voucher part (best)")
    p.add_argument(
        "--only", choices=[f.__name__ for f in PARTS], help="run one part only (default: all)"
    )
    args = p.parse_args()
    with cgroup_base() as base:
        tiers: dict[str, dict[str, Any]] = {"shim": {"metering": "shim"}}
        if base is not None:
            tiers["cgroup"] = {"metering": "cgroup", "cgroup": base}
        else:
            print("cgroup tier: not available here (no writable cgroup v2 below this process's)")
        for part in PARTS:
            if args.only is not None and part.__name__ != args.only:
                continue
            for line in part(args, tiers):
                print(line, flush=True)


if __name__ == "__main__":
    main()
