"""Runners for the compute tests: both metering tiers, test jobs as runtimes.

The jobs (``jobs.py``) run as the job user. Under root that is ``nobody``,
which needs an interpreter it may execute: the system's ``python3`` when
this interpreter lives where ``nobody`` cannot reach (a home directory).
The cgroup tier runs under a fresh cgroup made for each test below this
process's own cgroup v2, and is skipped, saying why, where there is none
the tests may write to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from mycelia.node.compute.cgroup import CgroupUnavailable, Delegation, Leaf, locate
from mycelia.node.compute.runner import Runner
from mycelia.node.config import ComputeConfig, RuntimeConfig

JOBS = Path(__file__).with_name("jobs.py")
IS_ROOT = os.geteuid() == 0
JOB_USER = "nobody" if IS_ROOT else None


def _python_for_jobs() -> str | None:
    """An interpreter the job user can run (None: there is none)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if not os.path.exists(candidate):
            continue
        if not IS_ROOT:
            return candidate
        try:
            probe = subprocess.run(
                [candidate, "-I", "-S", "-c", f"open({str(JOBS)!r}).close()"],
                user="nobody",
                extra_groups=[],
                capture_output=True,
                check=False,
            )
        except OSError:  # not even executable by nobody
            continue
        if probe.returncode == 0:
            return candidate
    return None


PYTHON = _python_for_jobs()


def runtime(name: str, job: str, *args: str, **limits: Any) -> RuntimeConfig:
    """A runtime running the test job ``job`` (``jobs.py``) with ``args``."""
    if PYTHON is None:
        pytest.skip("no Python interpreter the job user may run")
    return RuntimeConfig(name=name, command=(PYTHON, "-I", "-S", str(JOBS), job, *args), **limits)


def user_config() -> str:
    """compute.user for this test process: nobody under root, else itself."""
    if JOB_USER is not None:
        return JOB_USER
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


@contextlib.contextmanager
def cgroup_base() -> Iterator[Path]:
    """A fresh cgroup below this process's own, removed afterwards; skips the
    test when the machine gives none."""
    try:
        _, own = locate()
    except CgroupUnavailable as exc:
        pytest.skip(f"cgroup tier: {exc}")
    base = own / f"mycelia-test-{secrets.token_hex(4)}"
    try:
        base.mkdir()
    except OSError as exc:
        pytest.skip(f"cgroup tier: cannot create a cgroup in {own}: {exc.strerror}")
    try:
        try:
            Delegation.setup(base)
        except CgroupUnavailable as exc:
            pytest.skip(f"cgroup tier: {exc}")
        yield base
    finally:
        for child in base.iterdir():
            if child.is_dir():
                Leaf(child).remove()
        Leaf(base).remove()


@pytest.fixture(params=["shim", "cgroup"])
def tier(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The [compute] settings of one metering tier."""
    if request.param == "shim":
        yield {"metering": "shim"}
    else:
        with cgroup_base() as base:
            yield {"metering": "cgroup", "cgroup": base}


OpenRunner = Callable[..., Awaitable[Runner]]


@pytest.fixture
async def open_runner(tier: dict[str, Any]) -> AsyncIterator[OpenRunner]:
    """``await open_runner(*runtimes, **settings)``: a running runner of the
    tier under test (its work root the default: a fresh temporary directory,
    which the job user can reach, unlike pytest's 0700 ``tmp_path``)."""
    runners: list[Runner] = []
    async with trio.open_nursery() as nursery:

        async def start(*runtimes: RuntimeConfig, **settings: Any) -> Runner:
            config = ComputeConfig(
                enabled=True,
                user=user_config(),
                poll_interval_s=0.05,
                runtimes=runtimes,
                **{**tier, **settings},
            )
            runner = Runner.open(config)
            runners.append(runner)
            await nursery.start(runner.run)
            return runner

        yield start
        nursery.cancel_scope.cancel()
    for runner in runners:
        runner.close()


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts: it is not reaped)."""
    return Path(f"/proc/{pid}").exists()
