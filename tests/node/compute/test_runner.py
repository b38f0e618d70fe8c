"""The job runner, in both metering tiers: metering a daemonised tree, freezing,
killing, limits, bounded output, input and output passing, refusals, the job user.

Every job whose processes a test knows by pid is checked to have left none
behind once it ended. Waits are bounded (``trio.fail_after``); nothing
asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
from pathlib import Path

import pytest
import trio

from mycelia.node.compute import proctree
from mycelia.node.compute.reasons import RunnerReason, RunnerRefused
from mycelia.node.compute.runner import Job, JobResult, Outcome, Runner
from mycelia.node.config import ComputeConfig, RuntimeConfig
from mycelia.protocol.reasons import Reason
from tests.node.compute.conftest import (
    IS_ROOT,
    JOB_USER,
    OpenRunner,
    alive,
    runtime,
    user_config,
)

BOUND = 60  # seconds any one job may take on a loaded machine


def report(result: JobResult) -> dict[str, object]:
    """The job's JSON line (the first line of its output)."""
    return json.loads(result.output.splitlines()[0])


async def until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(BOUND):
        while not predicate():
            await trio.sleep(0.02)


def children(job: Job) -> list[int]:
    """The live processes whose parent is the job's shim."""
    assert job.pid is not None
    table = proctree.snapshot()
    return [st.pid for st in table.values() if st.ppid == job.pid and not st.gone]


async def run(runner: Runner, name: str, data: bytes = b"") -> JobResult:
    with trio.fail_after(BOUND):
        async with runner.job(name, data) as job:
            return await job.wait()


# -- metering ------------------------------------------------------------------------------


async def test_a_daemonised_grandchild_is_metered_and_leaves_nothing(
    open_runner: OpenRunner,
) -> None:
    """The job double-forks a grandchild that calls setsid and burns CPU
    while its parent has exited: RUSAGE_CHILDREN of the main process misses
    it, the runner must not. Compared with the processes' own rusage."""
    runner = await open_runner(runtime("burn", "daemon_burn", "0.6"))
    result = await run(runner, "burn")
    assert result.outcome is Outcome.EXITED, result
    assert result.exit_code == 0
    seen = report(result)
    independent_ms = (float(seen["grandchild_cpu"]) + float(seen["main_cpu"])) * 1000
    assert float(seen["grandchild_cpu"]) >= 0.6
    # What the main process alone could have known (its own and reaped
    # children's CPU) is well short of the truth...
    assert float(seen["main_cpu"]) * 1000 < 0.5 * independent_ms
    # ... and the runner's figure is within 10 % of the truth.
    assert abs(result.usage.cpu_ms - independent_ms) <= 0.10 * independent_ms, (
        result.usage,
        independent_ms,
    )
    assert not alive(int(seen["grandchild_pid"]))  # type: ignore[arg-type]
    assert result.usage.wall_ms > 0
    assert result.usage.reserved_mib == 256
    assert result.usage.mib_ms == 256 * result.usage.wall_ms


async def test_usage_is_live_and_never_goes_back(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("spin", "spin"))
    with trio.fail_after(BOUND):
        async with runner.job("spin", b"") as job:
            readings = []
            await until(lambda: job.usage().cpu_ms >= 300, "the job burns CPU")
            for _ in range(5):
                readings.append(job.usage())
                await trio.sleep(0.05)
            result = await job.kill()
    cpu = [u.cpu_ms for u in readings]
    wall = [u.wall_ms for u in readings]
    assert cpu == sorted(cpu)
    assert wall == sorted(wall)
    assert cpu[-1] > cpu[0]  # it kept burning between the readings
    assert result.usage.cpu_ms >= cpu[-1]
    assert result.outcome is Outcome.KILLED


async def test_stragglers_are_killed_when_the_main_process_exits(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("straggle", "straggler"))
    result = await run(runner, "straggle")
    assert result.outcome is Outcome.EXITED
    assert result.exit_code == 0
    pid = int(report(result)["straggler_pid"])  # type: ignore[arg-type]
    assert pid > 0
    assert not alive(pid)


# -- freeze, thaw, kill ------------------------------------------------------------------------


async def test_freeze_stops_cpu_thaw_resumes_kill_leaves_nothing(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("spin", "spin"))
    with trio.fail_after(BOUND):
        async with runner.job("spin", b"") as job:
            await until(lambda: job.usage().cpu_ms >= 200, "the job burns CPU")
            await job.freeze()
            assert job.frozen
            frozen = job.usage()
            await trio.sleep(0.5)  # both processes would burn ~1 s of CPU in this time
            assert job.usage().cpu_ms == frozen.cpu_ms
            assert job.usage().wall_ms == frozen.wall_ms  # frozen time is not running time
            await job.thaw()
            assert not job.frozen
            await until(lambda: job.usage().cpu_ms > frozen.cpu_ms, "the job burns again")
            await job.freeze()  # killing a frozen job works too
            result = await job.kill()
    assert result.outcome is Outcome.KILLED
    assert result.signal == signal.SIGKILL
    seen = report(result)
    for key in ("main_pid", "spinner_pid"):
        assert not alive(int(seen[key])), key  # type: ignore[arg-type]


async def test_leaving_the_job_block_or_cancelling_kills_everything(
    open_runner: OpenRunner,
) -> None:
    runner = await open_runner(runtime("sleep", "sleep"))
    jobs: list[Job] = []
    pids: list[int] = []
    with trio.fail_after(BOUND):
        with trio.CancelScope() as scope:
            async with runner.job("sleep", b"") as job:
                jobs.append(job)
                # Both the main process and the daemonised sleeper are the
                # shim's children (the sleeper by reparenting), seen in /proc.
                await until(lambda: len(children(job)) == 2, "the job daemonised")
                pids.extend(children(job))
                scope.cancel()
                await trio.sleep_forever()
        result = await jobs[0].wait()
    assert result.outcome is Outcome.KILLED
    assert not any(alive(pid) for pid in pids)
    assert jobs[0].pid is not None
    assert not alive(jobs[0].pid)  # the shim too
    assert runner.running == 0


async def test_cancelling_the_runner_kills_every_job(tier: dict[str, object]) -> None:
    config = ComputeConfig(
        enabled=True,
        user=user_config(),
        max_jobs=2,
        runtimes=(runtime("sleep", "sleep"),),
        **tier,
    )
    with Runner.open(config) as runner:
        pids: list[int] = []
        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)

                async def one() -> None:
                    async with runner.job("sleep", b"") as job:
                        assert job.pid is not None
                        await until(lambda: len(children(job)) == 2, "the job daemonised")
                        pids.extend([job.pid, *children(job)])
                        await trio.sleep_forever()

                nursery.start_soon(one)
                nursery.start_soon(one)
                await until(lambda: len(pids) == 6, "two jobs started")
                nursery.cancel_scope.cancel()
        assert not any(alive(p) for p in pids)
        work = runner.work.path
    assert not work.exists()


# -- limits -------------------------------------------------------------------------------------


async def test_cpu_limit_kills_and_says_so(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("spin", "spin", max_cpu_s=0.4))
    result = await run(runner, "spin")
    assert result.outcome is Outcome.CPU_LIMIT
    assert result.usage.cpu_ms >= 400
    seen = report(result)
    assert not alive(int(seen["spinner_pid"]))  # type: ignore[arg-type]


async def test_wall_limit_kills_and_says_so(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("sleep", "sleep", max_wall_s=0.5))
    result = await run(runner, "sleep")
    assert result.outcome is Outcome.WALL_LIMIT
    assert result.usage.wall_ms >= 500
    seen = report(result)
    assert not alive(int(seen["sleeper_pid"]))  # type: ignore[arg-type]


async def test_a_job_s_own_lower_limits_are_enforced(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("sleep", "sleep"), runtime("spin", "spin"))
    with trio.fail_after(BOUND):
        async with runner.job("sleep", b"", max_wall_ms=300, max_cpu_ms=10**9) as job:
            assert (job.max_cpu_ms, job.max_wall_ms) == (60_000, 300)  # the lower of each
            result = await job.wait()
    assert result.outcome is Outcome.WALL_LIMIT
    assert result.usage.wall_ms >= 300
    with trio.fail_after(BOUND):
        async with runner.job("spin", b"", max_cpu_ms=300) as job:
            result = await job.wait()
    assert result.outcome is Outcome.CPU_LIMIT
    assert result.usage.cpu_ms >= 300
    with pytest.raises(ValueError, match="max_cpu_ms: expected a positive integer"):
        async with runner.job("spin", b"", max_cpu_ms=0):
            pass
    assert runner.running == 0


async def test_exit_codes_and_signals(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("exit3", "exit", "3"), runtime("term", "signal", "SIGTERM"))
    result = await run(runner, "exit3")
    assert (result.outcome, result.exit_code, result.signal) == (Outcome.EXITED, 3, None)
    assert result.output == b"bye\n"
    result = await run(runner, "term")
    assert (result.outcome, result.exit_code, result.signal) == (
        Outcome.SIGNALLED,
        None,
        signal.SIGTERM,
    )


# -- output and input ------------------------------------------------------------------------------


async def test_output_and_stderr_are_bounded_and_flagged(open_runner: OpenRunner) -> None:
    runner = await open_runner(
        runtime("flood", "flood", "300000", "5000", max_output_bytes=1000, max_stderr_bytes=100),
        runtime("small", "flood", "1000", "100", max_output_bytes=1000, max_stderr_bytes=100),
    )
    result = await run(runner, "flood")
    assert result.outcome is Outcome.EXITED
    assert result.exit_code == 0
    assert (result.output, result.output_truncated) == (b"o" * 1000, True)
    assert (result.stderr, result.stderr_truncated) == (b"e" * 100, True)
    result = await run(runner, "small")
    assert (result.output, result.output_truncated) == (b"o" * 1000, False)
    assert (result.stderr, result.stderr_truncated) == (b"e" * 100, False)


async def test_input_via_stdin_and_via_files(open_runner: OpenRunner) -> None:
    data = os.urandom(200_000)
    runner = await open_runner(
        runtime("echo", "echo"),
        runtime(
            "files",
            "reverse_file",
            "in.bin",
            "out.bin",
            input="file",
            output="file",
            input_file="in.bin",
            output_file="out.bin",
        ),
        runtime("file-in", "reverse_file", "input", "-", input="file"),
    )
    result = await run(runner, "echo", data)
    assert (result.outcome, result.output) == (Outcome.EXITED, data)
    result = await run(runner, "files", data)
    assert (result.outcome, result.output) == (Outcome.EXITED, data[::-1])
    assert not result.output_truncated
    result = await run(runner, "file-in", data)
    assert result.output == data[::-1]


async def test_an_output_file_linked_elsewhere_is_not_read(
    open_runner: OpenRunner, tmp_path: Path
) -> None:
    """The node (root) reads the job's output file: a symbolic link to a file
    the job could not read itself must not make the node read it."""
    secret = tmp_path / "secret"
    secret.write_text("the node's key")
    secret.chmod(0o600)
    runner = await open_runner(runtime("link", "symlink_output", str(secret), output="file"))
    result = await run(runner, "link")
    assert result.outcome is Outcome.EXITED
    assert result.output == b""


# -- what the consumer controls -------------------------------------------------------------


async def test_input_never_reaches_the_command_line_or_environment(
    open_runner: OpenRunner,
) -> None:
    rt = runtime("who", "whoami", env=(("RUNTIME_SETTING", "1"),))
    runner = await open_runner(rt)
    hostile = b"--uid 0 -- /bin/sh -c 'id' ; $(reboot) `x` PATH=/tmp\n"
    result = await run(runner, "who", hostile)
    seen = report(result)
    assert seen["argv"] == list(rt.command[3:])  # the script's argv: the provider's alone
    assert seen["stdin"] == hostile.decode("latin-1")
    env = seen["env"]
    assert isinstance(env, dict)
    assert set(env) == {"PATH", "LANG", "HOME", "TMPDIR", "RUNTIME_SETTING"}
    assert env["HOME"] == env["TMPDIR"] == seen["cwd"]
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"


async def test_refusals_have_reason_codes(open_runner: OpenRunner) -> None:
    runner = await open_runner(runtime("echo", "echo", max_input_bytes=10), max_jobs=1)
    cases = [
        ("python", b"", RunnerReason.UNKNOWN_RUNTIME),
        ("../echo", b"", RunnerReason.UNKNOWN_RUNTIME),
        ("echo", b"x" * 11, RunnerReason.OVER_LIMITS),
    ]
    for name, data, reason in cases:
        with pytest.raises(RunnerRefused) as exc:
            async with runner.job(name, data):
                pass
        assert exc.value.reason is reason
    assert runner.running == 0
    # One job at a time (max_jobs = 1): a second is refused while one runs.
    sleeper = runtime("sleep", "sleep")
    busy = await open_runner(sleeper, max_jobs=1)
    async with busy.job("sleep", b"") as job:
        with pytest.raises(RunnerRefused) as exc:
            async with busy.job("sleep", b""):
                pass
        assert exc.value.reason is RunnerReason.RUNNER_BUSY
        await job.kill()
    assert busy.running == 0
    assert (await run(runner, "echo", b"x" * 10)).output == b"x" * 10
    # The two refusals the compute session also makes carry its codes.
    assert RunnerReason.UNKNOWN_RUNTIME.value == Reason.UNKNOWN_RUNTIME.value == "unknown_runtime"
    assert RunnerReason.OVER_LIMITS.value == Reason.OVER_LIMITS.value == "over_limits"


async def test_disabled_compute_refuses_every_job() -> None:
    runner = Runner.open(ComputeConfig(enabled=False, runtimes=(runtime("echo", "echo"),)))
    assert runner.tier is None
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        with pytest.raises(RunnerRefused) as exc:
            async with runner.job("echo", b""):
                pass
        assert exc.value.reason is RunnerReason.COMPUTE_DISABLED
        nursery.cancel_scope.cancel()


@pytest.fixture
def broken_script(tmp_path: Path) -> Path:
    """An executable whose interpreter does not exist: exec fails."""
    script = tmp_path / "broken"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    return script


async def test_a_runtime_that_cannot_start_is_refused(
    open_runner: OpenRunner, broken_script: Path
) -> None:
    runner = await open_runner(RuntimeConfig(name="broken", command=(str(broken_script),)))
    with pytest.raises(RunnerRefused) as exc:
        async with runner.job("broken", b""):
            pass
    assert exc.value.reason is RunnerReason.START_FAILED
    assert "exec" in exc.value.detail
    assert runner.running == 0
    assert not any(runner.work.path.iterdir())  # its work directory is gone


# -- the job user and its directory -------------------------------------------------------------


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs a node running as root")
async def test_jobs_run_as_the_configured_user_in_a_private_directory(
    open_runner: OpenRunner,
) -> None:
    runner = await open_runner(runtime("who", "whoami"))
    result = await run(runner, "who")
    seen = report(result)
    nobody = pwd.getpwnam(JOB_USER or "nobody")
    assert (seen["uid"], seen["euid"], seen["gid"]) == (nobody.pw_uid, nobody.pw_uid, nobody.pw_gid)
    assert seen["groups"] in ([], [nobody.pw_gid])  # no supplementary groups of root's
    assert (seen["cwd_mode"], seen["cwd_uid"]) == (0o700, nobody.pw_uid)
    cwd = Path(str(seen["cwd"]))
    assert cwd.parent == runner.work.path
    assert not await trio.Path(cwd).exists()  # removed after the job
    assert (await trio.Path(runner.work.path).stat()).st_mode & 0o777 == 0o711


async def test_jobs_leave_no_descriptor_open_in_the_node(
    open_runner: OpenRunner, broken_script: Path
) -> None:
    runner = await open_runner(
        runtime("echo", "echo"),
        runtime("sleep", "sleep"),
        runtime("files", "reverse_file", "input", "-", input="file"),
        RuntimeConfig(name="broken", command=(str(broken_script),)),
    )
    await run(runner, "echo", b"warm up")  # trio's own threads and wakeup fds
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert (await run(runner, "echo", b"x")).output == b"x"
        assert (await run(runner, "files", b"ab")).output == b"ba"
        with pytest.raises(RunnerRefused):
            async with runner.job("broken", b""):
                pass
        with trio.move_on_after(0.2):
            async with runner.job("sleep", b""):
                await trio.sleep_forever()
    assert len(os.listdir("/proc/self/fd")) == before
