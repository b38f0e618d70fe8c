"""The job runner: start a runtime for a consumer, meter it, freeze it, kill it (trio).

Why this exists: the compute service (``/mycelia/compute/1``) turns a
consumer's ``JOB`` into a running process tree, reports its usage about
every second, freezes it when the consumer falls behind on payment, kills it
on a limit or a ``CANCEL``, and returns its output. This module is the part
that touches processes, with one small API the service calls::

    runner = Runner.open(config.compute)            # at node start: checks, tier
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)             # owns every job's tasks
        async with runner.job("python", data) as job:   # RunnerRefused if not
            job.usage()                             # live, any time
            await job.freeze(); await job.thaw()
            result = await job.wait()               # or: await job.kill()

Leaving the ``job`` block ends the job (killed if still running); cancelling
the runner's ``run`` kills every job. Either way no process of the job is
left behind, and its work directory and cgroup leaf are removed.

What the consumer controls: the runtime's *name* and the input *bytes*
(bounded by the runtime's ``max_input_bytes``). The command line, the
environment, the user, the limits and the way input and output pass are the
provider's (``[compute.runtimes.NAME]``); the input only ever reaches the
job as its stdin or as the file ``input_file`` in its work directory.

A job's life (``Job._run``, a task in the runner's nursery): a private work
directory (``isolation.py``) and, in the cgroup tier, a leaf
(``cgroup.py``); the shim (``shim.py``) started with the job's minimal
environment, the job's stdio and a control socket; ``started`` from the
shim, then the input written, stdout and stderr drained (the first
``max_output_bytes`` / ``max_stderr_bytes`` kept, the rest read and
dropped, and flagged), the usage polled every ``compute.poll_interval_s``
against ``max_cpu_s`` and ``max_wall_s`` (wall time counts running time:
a frozen job's clock stops, as in the usage reports). A breach kills the
job and the result says which limit (:class:`Outcome`). The job ends when
the runtime's first process exits (the shim kills whatever it left
running) or when it is killed; the node reaps the shim with ``wait4``,
reads the final usage (``metering.py``), the output (from the pipe, or
from ``output_file``), removes the directory and the leaf, and the result
is ready.

Killing: ``cgroup.kill`` and the shim's ``K`` (which kills the tree); if the
shim has not exited after :data:`KILL_GRACE_S`, the node kills the tree
itself and then the shim. A cancelled job goes through the same steps,
shielded and bounded.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import trio

from mycelia.node.compute import proctree
from mycelia.node.compute.cgroup import Leaf
from mycelia.node.compute.isolation import JobUser, WorkRoot, job_user
from mycelia.node.compute.metering import CgroupMeter, Meter, Tier, TreeMeter, Usage, choose_tier
from mycelia.node.compute.reasons import RunnerReason, RunnerRefused
from mycelia.node.config import ComputeConfig, ConfigError, RuntimeConfig

__all__ = [
    "KILL_GRACE_S",
    "Job",
    "JobError",
    "JobResult",
    "Outcome",
    "Runner",
]

log = logging.getLogger("mycelia.compute")

#: How long the shim has to end a job it was told to kill before the node
#: kills the tree and the shim itself.
KILL_GRACE_S = 5.0
#: How long the shim has to start the runtime (Python's start-up on a slow Pi
#: is well under this).
START_TIMEOUT_S = 30.0
#: How long a freeze or a thaw may take.
FREEZE_TIMEOUT_S = 2.0
#: After the shim exited every process of the job is gone, so its pipes end;
#: this bounds the wait for the last bytes in them.
DRAIN_TIMEOUT_S = 2.0
_CHUNK = 64 * 1024
_CONTROL_LINE_MAX = 4096

#: The job's environment before the runtime's ``env``: nothing of the node's.
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class Outcome(enum.StrEnum):
    """How a job ended. The value is a stable code."""

    #: the runtime's process exited by itself (``exit_code``, 0 = success).
    EXITED = "exited"
    #: the runtime's process died of a signal the runner did not send (``signal``).
    SIGNALLED = "signalled"
    #: killed on request (:meth:`Job.kill`, or the job block was left).
    KILLED = "killed"
    #: killed for using ``max_cpu_s``.
    CPU_LIMIT = "cpu_limit"
    #: killed for running ``max_wall_s``.
    WALL_LIMIT = "wall_limit"
    #: the runner lost the job (its shim died); ``detail`` says how.
    FAILED = "failed"


class JobError(Exception):
    """A freeze or a thaw that did not take effect in time."""


@dataclass(frozen=True, slots=True)
class JobResult:
    """A finished job: how it ended, what it wrote (bounded) and what it used."""

    outcome: Outcome
    exit_code: int | None
    signal: int | None
    output: bytes
    output_truncated: bool
    stderr: bytes
    stderr_truncated: bool
    usage: Usage
    detail: str = ""


class _Capture:
    """The first ``limit`` bytes of a stream; the rest is read and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self.data += chunk


def _spawn(
    argv: list[str], env: dict[str, str], fds: tuple[int, int, int, int]
) -> subprocess.Popen[bytes]:
    stdin, stdout, stderr, control = fds
    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=(control,),
        env=env,
        cwd="/",
        start_new_session=True,  # no terminal signal of the node's reaches a job
    )


def _lower(limit: int, asked: int | None, name: str) -> int:
    if asked is None:
        return limit
    if type(asked) is not int or asked <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {asked!r}")
    return min(limit, asked)


def _reap(pid: int) -> tuple[int, float] | None:
    """The wait status and the CPU seconds (``wait4`` rusage: the process and
    everything it reaped) of the exited child ``pid``; None while it runs.
    Never blocks."""
    got, status, rusage = os.wait4(pid, os.WNOHANG)
    return (status, rusage.ru_utime + rusage.ru_stime) if got else None


class Job:
    """A running (then finished) job. Made by :meth:`Runner.job` only."""

    def __init__(
        self,
        runner: Runner,
        runtime: RuntimeConfig,
        job_id: str,
        job_dir: Path,
        leaf: Leaf | None,
        limits: tuple[int, int],
    ) -> None:
        self.id = job_id
        self.runtime = runtime
        #: The limits enforced: the runtime's, or lower ones asked for the job.
        self.max_cpu_ms, self.max_wall_ms = limits
        self._runner = runner
        self._dir = job_dir
        self._leaf = leaf
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._control: trio.socket.SocketType | None = None
        self._meter: Meter | None = None
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self._cpu_ms = 0
        self._peak: int | None = None
        # When the job was last frozen (None: it runs), and the seconds it
        # spent frozen before: wall time counts running time only.
        self._frozen_since: float | None = None
        self._frozen_s = 0.0
        self._lock = trio.Lock()
        self._replies_in, self._replies = trio.open_memory_channel[str](8)
        self._kill_outcome: Outcome | None = None
        self._main_status: int | None = None
        self._shim_self_us: int | None = None
        self._shim_total_us = 0
        self._shim_error = ""
        self._pending = b""  # control bytes read past the first line
        self._exited = False
        self._out = _Capture(runtime.max_output_bytes)
        self._err = _Capture(runtime.max_stderr_bytes)
        self._tasks: trio.Nursery | None = None
        self._result: JobResult | None = None
        self._done = trio.Event()

    # -- the API ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The shim's pid (the root of the job's process tree)."""
        return None if self._proc is None else self._proc.pid

    @property
    def frozen(self) -> bool:
        return self._frozen_since is not None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def usage(self) -> Usage:
        """What the job used so far (cumulative; never smaller than a previous reading)."""
        if self._t_end is None and self._meter is not None:
            us = self._meter.cpu_us()
            if us is not None:
                self._cpu_ms = max(self._cpu_ms, us // 1000)
            peak = self._meter.peak_bytes()
            if peak is not None:
                self._peak = max(self._peak or 0, peak)
        return Usage(self._cpu_ms, self._running_ms(), self.runtime.memory_mib, self._peak)

    def _running_ms(self) -> int:
        """Wall time since the runtime started, less the time it was frozen."""
        end = time.monotonic() if self._t_end is None else self._t_end
        frozen = self._frozen_s + (0.0 if self._frozen_since is None else end - self._frozen_since)
        return max(0, math.floor((end - self._t0 - frozen) * 1000))

    def _mark_frozen(self, frozen: bool) -> None:
        now = time.monotonic() if self._t_end is None else self._t_end
        if frozen and self._frozen_since is None:
            self._frozen_since = now
        elif not frozen and self._frozen_since is not None:
            self._frozen_s += now - self._frozen_since
            self._frozen_since = None

    async def freeze(self) -> None:
        """Stop every process of the job; returns once none runs. No-op if
        frozen or ended. Raises :class:`JobError` if that takes too long."""
        await self._set_frozen(True)

    async def thaw(self) -> None:
        """Let a frozen job run again."""
        await self._set_frozen(False)

    async def kill(self) -> JobResult:
        """Kill the job (outcome ``killed`` unless it ended before) and return its result."""
        await self._request_kill(Outcome.KILLED)
        return await self.wait()

    async def wait(self) -> JobResult:
        """Wait for the job to end; its result."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    # -- freezing and killing ----------------------------------------------------------

    async def _set_frozen(self, frozen: bool) -> None:
        what = "freeze" if frozen else "thaw"
        async with self._lock:
            if self._exited or self._kill_outcome is not None or self.frozen == frozen:
                return
            if self._leaf is not None:
                self._leaf.freeze(frozen)
                with trio.move_on_after(FREEZE_TIMEOUT_S):
                    # cgroup.events signals its changes with POLLPRI, which
                    # trio does not wait for: read it again until it agrees.
                    while not self._exited and self._leaf.frozen() != frozen:  # noqa: ASYNC110
                        await trio.sleep(0.005)
                    if not self._exited:
                        self._mark_frozen(frozen)
                    return
                raise JobError(f"job {self.id}: its cgroup did not {what} in time")
            assert self._control is not None
            try:
                await self._control.send(b"F" if frozen else b"T")
                with trio.fail_after(FREEZE_TIMEOUT_S + 1):
                    reply = await self._replies.receive()
            except (OSError, trio.EndOfChannel):
                return  # the shim closed the channel: the job is ending
            except trio.TooSlowError:
                reply = "no answer"
            if reply != ("frozen" if frozen else "thawed"):
                raise JobError(f"job {self.id}: could not {what} its processes ({reply})")
            self._mark_frozen(frozen)

    async def _request_kill(self, outcome: Outcome) -> None:
        if self._exited or self._kill_outcome is not None or self._proc is None:
            return
        self._kill_outcome = outcome
        log.info("compute job %s: killing (%s)", self.id, outcome.value)
        if self._leaf is not None:
            with contextlib.suppress(OSError):
                self._leaf.kill()
        if self._control is not None:
            with contextlib.suppress(OSError):
                await self._control.send(b"K")
        if self._tasks is not None:
            # A nursery being cancelled takes no new task: then _run is
            # ending, and its _stop escalates.
            with contextlib.suppress(RuntimeError):
                self._tasks.start_soon(self._escalate)

    async def _escalate(self) -> None:
        await trio.sleep(KILL_GRACE_S)
        if not self._exited:
            log.warning("compute job %s: the shim did not end the job; killing it", self.id)
            await self._hard_kill()

    async def _hard_kill(self) -> None:
        """Kill the tree and the shim from the node (the shim is stuck or gone)."""
        if self._proc is None or self._exited:
            return
        if self._leaf is not None:
            with contextlib.suppress(OSError):
                self._leaf.kill()
        await trio.to_thread.run_sync(proctree.kill_tree, self._proc.pid)
        with contextlib.suppress(OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                self._proc.kill()

    # -- the job's life ---------------------------------------------------------------

    async def _run(
        self, data: bytes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self._start(data, task_status)
        finally:
            # However the job ended (or this task was cancelled): nothing of
            # it may outlive this task.
            with trio.CancelScope(shield=True):
                await self._stop()

    async def _start(self, data: bytes, task_status: trio.TaskStatus[None]) -> None:
        rt, runner = self.runtime, self._runner
        stdin_r, stdin_w = (
            os.pipe() if rt.input == "stdin" else (os.open(os.devnull, os.O_RDONLY), -1)
        )
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = runner.shim_argv(rt, self._dir, theirs.fileno(), self._leaf)
        env = {**BASE_ENV, "HOME": str(self._dir), "TMPDIR": str(self._dir), **dict(rt.env)}
        try:
            self._proc = await trio.to_thread.run_sync(
                _spawn, argv, env, (stdin_r, stdout_w, stderr_w, theirs.fileno())
            )
        except OSError as exc:
            for fd in (stdin_w, stdout_r, stderr_r):  # the node's ends (the finally: theirs)
                if fd >= 0:
                    os.close(fd)
            ours.close()
            raise RunnerRefused(
                RunnerReason.START_FAILED, f"cannot start the shim: {exc}"
            ) from None
        finally:
            # The shim has its copies; the node keeps only its own ends.
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
            theirs.close()
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:  # Linux < 5.3: the shim's exit is polled for
            self._pidfd = None
        self._control = trio.socket.from_stdlib_socket(ours)
        stdout = trio.lowlevel.FdStream(stdout_r)
        stderr = trio.lowlevel.FdStream(stderr_r)
        stdin = trio.lowlevel.FdStream(stdin_w) if stdin_w >= 0 else None
        try:
            await self._live(stdin, stdout, stderr, data, task_status)
        finally:
            for stream in (stdin, stdout, stderr):  # closing twice is harmless
                if stream is not None:
                    stream.close()  # not aclose: no checkpoint, even when cancelled
        await self._conclude()

    async def _live(
        self,
        stdin: trio.lowlevel.FdStream | None,
        stdout: trio.lowlevel.FdStream,
        stderr: trio.lowlevel.FdStream,
        data: bytes,
        task_status: trio.TaskStatus[None],
    ) -> None:
        """From the shim's first word to its exit, the pipes drained."""
        assert self._proc is not None
        first = await self._first_line()
        if not first.startswith("started "):
            self._shim_error = first.partition(" ")[2] if first.startswith("error ") else first
            raise RunnerRefused(RunnerReason.START_FAILED, self._describe_error(first))
        self._t0 = time.monotonic()
        self._meter = (
            CgroupMeter(self._leaf) if self._leaf is not None else TreeMeter(self._proc.pid)
        )
        log.info(
            "compute job %s: %s started (pid %s)", self.id, self.runtime.name, first.split()[1]
        )
        task_status.started()
        try:
            async with trio.open_nursery() as tasks:
                self._tasks = tasks
                if stdin is not None:
                    tasks.start_soon(self._pump, stdin, data)
                tasks.start_soon(self._watch_limits)
                async with trio.open_nursery() as readers:
                    readers.start_soon(self._drain, stdout, self._out)
                    readers.start_soon(self._drain, stderr, self._err)
                    readers.start_soon(self._read_control)
                    await self._wait_shim()
                    readers.cancel_scope.deadline = trio.current_time() + DRAIN_TIMEOUT_S
                tasks.cancel_scope.cancel()
        finally:
            self._tasks = None  # a kill from now on is escalated by _stop

    async def _first_line(self) -> str:
        assert self._control is not None
        buf = b""
        with trio.move_on_after(START_TIMEOUT_S):
            while b"\n" not in buf and len(buf) < _CONTROL_LINE_MAX:
                try:
                    chunk = await self._control.recv(_CONTROL_LINE_MAX)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        line, _, rest = buf.partition(b"\n")
        self._pending = rest
        return line.decode("ascii", "replace")

    @staticmethod
    def _describe_error(line: str) -> str:
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[0] == "error":
            _, step, err, message = parts
            return f"{step}: {message} (errno {err})"
        return f"the shim did not start the runtime ({line or 'no answer'})"

    async def _pump(self, stdin: trio.lowlevel.FdStream, data: bytes) -> None:
        # A job that exits without reading its input closes the pipe: fine.
        async with stdin:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stdin.send_all(data)

    async def _drain(self, stream: trio.lowlevel.FdStream, capture: _Capture) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            while chunk := await stream.receive_some(_CHUNK):
                capture.add(chunk)

    async def _read_control(self) -> None:
        assert self._control is not None
        buf = self._pending
        try:
            while True:
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    self._on_line(line.decode("ascii", "replace"))
                if len(buf) > _CONTROL_LINE_MAX:
                    return  # not the shim talking
                try:
                    chunk = await self._control.recv(_CONTROL_LINE_MAX)
                except OSError:  # reset: the shim exited with a K unread
                    return
                if not chunk:
                    return
                buf += chunk
        finally:
            self._replies_in.close()

    def _on_line(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "exit":
            parts = rest.split()
            with contextlib.suppress(ValueError, IndexError):
                self._main_status = int(parts[0])
                self._shim_self_us = int(parts[1]) + int(parts[2])
        elif word in ("frozen", "freeze-failed", "thawed"):
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                self._replies_in.send_nowait(word)
        elif word == "error":
            self._shim_error = rest

    async def _watch_limits(self) -> None:
        # Wall time is running time (frozen time is not counted, as in the
        # usage reports), so both limits are read from the usage.
        poll = self._runner.config.poll_interval_s
        while True:
            await trio.sleep(poll)
            usage = self.usage()
            if usage.cpu_ms >= self.max_cpu_ms:
                await self._request_kill(Outcome.CPU_LIMIT)
                return
            if usage.wall_ms >= self.max_wall_ms:
                await self._request_kill(Outcome.WALL_LIMIT)
                return

    async def _wait_shim(self) -> None:
        assert self._proc is not None
        pid = self._proc.pid
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)  # readable: it exited
        # Without a pidfd (Linux < 5.3) nothing signals the exit to trio: poll.
        while (reaped := _reap(pid)) is None:  # noqa: ASYNC110
            await trio.sleep(0.05)
        self._reaped(*reaped)

    def _reaped(self, status: int, cpu_s: float) -> None:  # the shim's wait status and CPU
        assert self._proc is not None
        # Popen must not wait for this pid again (it could be another
        # process's by then).
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        self._shim_total_us = round(cpu_s * 1e6)
        self._t_end = time.monotonic()
        self._exited = True
        self._mark_frozen(False)

    async def _conclude(self) -> None:
        """The result, once the shim is reaped and the pipes drained."""
        assert self._meter is not None
        rt = self.runtime
        final_ms = self._meter.final_cpu_us(self._shim_total_us, self._shim_self_us) // 1000
        self._cpu_ms = max(self._cpu_ms, final_ms)
        peak = self._meter.peak_bytes()
        if peak is not None:
            self._peak = max(self._peak or 0, peak)
        if rt.output == "file":
            output, truncated = await trio.to_thread.run_sync(
                self._runner.work.read_output, self._dir, rt.output_file, rt.max_output_bytes
            )
        else:
            output, truncated = bytes(self._out.data), self._out.truncated
        exit_code = sig = None
        detail = ""
        status = self._main_status
        if status is None or status < 0:
            outcome = Outcome.FAILED
            detail = self._shim_error or "the shim ended without reporting"
        else:
            code = os.waitstatus_to_exitcode(status)
            if code >= 0:
                outcome, exit_code = Outcome.EXITED, code
            else:
                sig = -code
                outcome = self._kill_outcome or Outcome.SIGNALLED
        self._result = JobResult(
            outcome=outcome,
            exit_code=exit_code,
            signal=sig,
            output=output,
            output_truncated=truncated,
            stderr=bytes(self._err.data),
            stderr_truncated=self._err.truncated,
            usage=self.usage(),
            detail=detail,
        )
        log.info(
            "compute job %s: %s (cpu %d ms, wall %d ms)",
            self.id,
            outcome.value,
            self._result.usage.cpu_ms,
            self._result.usage.wall_ms,
        )

    async def _stop(self) -> None:
        """Shielded: end the job if it still runs, reap the shim, remove the
        job's directory and leaf, and let waiters go."""
        if self._proc is not None and not self._exited:
            await self._request_kill(Outcome.KILLED)
            with trio.move_on_after(KILL_GRACE_S):
                with contextlib.suppress(OSError, ChildProcessError):
                    await self._wait_shim()
            if not self._exited:
                await self._hard_kill()
                with trio.move_on_after(KILL_GRACE_S), contextlib.suppress(ChildProcessError):
                    await self._wait_shim()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._control is not None:
            self._control.close()
        if self._leaf is not None:
            await trio.to_thread.run_sync(self._leaf.remove)
        await trio.to_thread.run_sync(self._runner.work.remove, self._dir)
        if self._result is None:
            self._result = JobResult(
                outcome=self._kill_outcome or Outcome.FAILED,
                exit_code=None,
                signal=None,
                output=b"",
                output_truncated=False,
                stderr=bytes(self._err.data),
                stderr_truncated=self._err.truncated,
                usage=self.usage(),
                detail=self._shim_error,
            )
        self._done.set()


class Runner:
    """Runs jobs for the runtimes of one ``[compute]`` config. Build it with
    :meth:`open`; run :meth:`run` in a nursery; start jobs with :meth:`job`."""

    def __init__(
        self,
        config: ComputeConfig,
        tier: Tier | None,
        user: JobUser | None,
        work: WorkRoot | None,
    ) -> None:
        self.config = config
        self._tier = tier
        self._user = user
        self._work = work
        self._nursery: trio.Nursery | None = None
        self._running = 0

    @classmethod
    def open(cls, config: ComputeConfig) -> Runner:
        """Check the config against this machine and set the tier up: the job
        user exists and is not root, each runtime's program is executable,
        the metering tier (:func:`~mycelia.node.compute.metering.choose_tier`),
        the work root. Raises :class:`ConfigError` naming the key. A disabled
        config gives a runner that refuses every job."""
        if not config.enabled:
            return cls(config, None, None, None)
        user = job_user(config.user)
        for rt in config.runtimes:
            program = rt.command[0]
            if not (os.path.isfile(program) and os.access(program, os.X_OK)):
                raise ConfigError(
                    f"compute.runtimes.{rt.name}.command: {program} is not an executable file",
                    key=f"compute.runtimes.{rt.name}.command",
                )
        tier = choose_tier(config.metering, config.cgroup)
        work = WorkRoot.prepare(config.work_dir, user)
        log.info("compute: metering tier %s: %s; jobs run as %s", tier.name, tier.why, user.name)
        return cls(config, tier, user, work)

    @property
    def tier(self) -> Tier | None:
        """The metering tier and why it was chosen (None when compute is off)."""
        return self._tier

    @property
    def user(self) -> JobUser | None:
        return self._user

    @property
    def work(self) -> WorkRoot:
        assert self._work is not None
        return self._work

    @property
    def running(self) -> int:
        return self._running

    def close(self) -> None:
        """Remove what the runner made at :meth:`open` (call after :meth:`run` ended)."""
        if self._work is not None:
            self._work.close()
        if self._tier is not None and self._tier.delegation is not None:
            self._tier.delegation.clean()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own every job's tasks until cancelled; cancelling kills every job."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def shim_argv(
        self, rt: RuntimeConfig, job_dir: Path, control_fd: int, leaf: Leaf | None
    ) -> list[str]:
        """The shim's command line: built from the provider's config and the
        node's own paths only."""
        argv = [sys.executable, "-I", "-m", "mycelia.node.compute.shim"]
        argv += ["--control-fd", str(control_fd), "--cwd", str(job_dir)]
        argv += ["--fsize", str(rt.max_file_bytes)]
        if self._user is not None and self._user.switch:
            argv += ["--uid", str(self._user.uid), "--gid", str(self._user.gid)]
        if leaf is not None:
            argv += ["--cgroup", str(leaf.path)]
        return [*argv, "--", *rt.command]

    def admit(self, runtime: str, data: bytes) -> RuntimeConfig:
        """The runtime for a job request, or :class:`RunnerRefused`."""
        if not self.config.enabled or self._tier is None:
            raise RunnerRefused(RunnerReason.COMPUTE_DISABLED, "this node runs no compute jobs")
        rt = self.config.runtime(runtime) if isinstance(runtime, str) else None
        if rt is None:
            raise RunnerRefused(
                RunnerReason.UNKNOWN_RUNTIME, f"no runtime {str(runtime)[:64]!r} here"
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise RunnerRefused(RunnerReason.OVER_LIMITS, "the input must be bytes")
        if len(data) > rt.max_input_bytes:
            raise RunnerRefused(
                RunnerReason.OVER_LIMITS,
                f"{len(data)} bytes of input, runtime {rt.name} takes at most {rt.max_input_bytes}",
            )
        if self._running >= self.config.max_jobs:
            raise RunnerRefused(
                RunnerReason.RUNNER_BUSY, f"{self._running} jobs running (compute.max_jobs)"
            )
        return rt

    @asynccontextmanager
    async def job(
        self,
        runtime: str,
        data: bytes,
        *,
        max_cpu_ms: int | None = None,
        max_wall_ms: int | None = None,
    ) -> AsyncIterator[Job]:
        """Start a job of ``runtime`` with ``data`` as its input; the job is
        ended (killed if still running) when the block is left. Raises
        :class:`RunnerRefused` if it does not start.

        ``max_cpu_ms`` and ``max_wall_ms`` (the consumer's, from its ``JOB``)
        can only lower the runtime's limits: the lower of each is enforced."""
        rt = self.admit(runtime, data)
        limits = (
            _lower(rt.max_cpu_ms, max_cpu_ms, "max_cpu_ms"),
            _lower(rt.max_wall_ms, max_wall_ms, "max_wall_ms"),
        )
        if self._nursery is None:
            raise RuntimeError("Runner.run is not running")
        self._running += 1
        try:
            job_id = secrets.token_hex(8)
            tier = self._tier
            assert tier is not None
            job_dir = await trio.to_thread.run_sync(self.work.job_dir, job_id)
            leaf = None
            try:
                if rt.input == "file":
                    await trio.to_thread.run_sync(
                        self.work.write_input, job_dir, rt.input_file, bytes(data)
                    )
                if tier.delegation is not None:
                    leaf = tier.delegation.leaf(job_id)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self.work.remove, job_dir)
                raise
            job = Job(self, rt, job_id, job_dir, leaf, limits)
            await self._nursery.start(job._run, bytes(data))
            try:
                yield job
            finally:
                with trio.CancelScope(shield=True):
                    await job.kill()
        finally:
            self._running -= 1
