"""Compute benchmark: what metering a job costs, and how exactly it measures.

Run by hand: ``python -m bench.compute [--jobs N] [--burn SECONDS]``.

Each part is a function ``part(args, tiers) -> list of lines`` printed in
turn (:data:`PARTS`); the payment part (vouchers per second, signing and
verifying) is to be added beside them by the channels work, in the same
shape.

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


PARTS: list[Callable[[argparse.Namespace, dict[str, dict[str, Any]]], list[str]]] = [
    overhead,
    accuracy,
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20, help="jobs per overhead figure")
    p.add_argument("--burn", type=float, default=1.0, help="CPU seconds of the accuracy job")
    args = p.parse_args()
    with cgroup_base() as base:
        tiers: dict[str, dict[str, Any]] = {"shim": {"metering": "shim"}}
        if base is not None:
            tiers["cgroup"] = {"metering": "cgroup", "cgroup": base}
        else:
            print("cgroup tier: not available here (no writable cgroup v2 below this process's)")
        for part in PARTS:
            for line in part(args, tiers):
                print(line)


if __name__ == "__main__":
    main()
