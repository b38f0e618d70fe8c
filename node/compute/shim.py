"""The per-job shim: starts a runtime, owns every process it makes, reports.

Why this exists: a job is a process tree the runtime may reshape at will —
fork workers, daemonise a grandchild (double fork and ``setsid``) and exit.
``RUSAGE_CHILDREN`` of the runtime's own process misses such a grandchild
(its parent never waits for it), and killing the runtime's process group
misses one that called ``setsid``. The shim closes both holes without any
privilege: it is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``), so every
orphan below it is reparented to it, and it reaps them all. Its own
``wait4`` rusage, read by the node, therefore counts every process the job
ever ran; and its process tree (``proctree.py``) is the whole job, to stop
or kill. In the cgroup tier the shim is the same launcher (the runtime joins
the job's cgroup before it executes) and the cgroup does the counting.

Run by the node, never by hand (``runner.py`` builds the command line from
the provider's config only)::

    python -I -m mycelia.node.compute.shim --control-fd N --cwd DIR
        [--uid U --gid G] [--cgroup DIR] --fsize BYTES -- COMMAND ARG...

File descriptors: 0, 1 and 2 are the job's stdin, stdout and stderr (the
shim hands them to the runtime and keeps none); ``N`` is a stream socket to
the node, the control channel and the shim's lifeline. The environment is
the job's (the node passes the minimal one).

The runtime's process, between fork and exec, in this order: default signal
dispositions and an empty signal mask; joins the cgroup (``--cgroup``: its
``cgroup.procs``) while still privileged; ``setsid``; ``RLIMIT_CORE`` 0 and
``RLIMIT_FSIZE``; changes to the work directory; drops to ``--uid/--gid``
with no supplementary groups (when given: the node runs as root); asks for
SIGKILL when the shim dies (``PR_SET_PDEATHSIG``, after the uid change,
which clears it); executes ``COMMAND`` (an absolute path, no PATH lookup).
A failed step is reported with its name and errno and nothing runs.

Control protocol, one line per message, ASCII. Node to shim, one byte
each: ``F`` stop every process of the tree (shim tier freeze), ``T``
continue them, ``K`` kill the job. End of file (the node went away) is
``K``. Shim to node::

    started PID                 the runtime's process runs
    error STEP ERRNO MESSAGE    it could not be started (nothing runs)
    frozen | freeze-failed      answer to F
    thawed                      answer to T
    exit STATUS UTIME_US STIME_US
                                the end: STATUS the runtime's raw wait status
                                (-1 if it never ran), then the shim's OWN cpu
                                (RUSAGE_SELF), which the node subtracts from
                                the shim's wait4 rusage to leave the job's

The job ends when the runtime's process exits, or on ``K``: the shim then
kills whatever is left (``cgroup.kill`` in the cgroup tier, SIGKILL to the
tree in both), reaps until it has no child, reports ``exit`` and exits 0.
Standard library only beyond ``proctree``: it starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import resource
import selectors
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mycelia.node.compute import proctree

__all__ = ["main"]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# Signals the shim handles; the runtime gets them back at their defaults,
# with SIGPIPE and SIGXFSZ, which Python ignores.
_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_RESET = (*_HANDLED, signal.SIGPIPE, signal.SIGXFSZ)


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mycelia-shim", add_help=False)
    p.add_argument("--control-fd", type=int, required=True)
    p.add_argument("--cwd", required=True)
    p.add_argument("--uid", type=int)
    p.add_argument("--gid", type=int)
    p.add_argument("--cgroup")
    p.add_argument("--fsize", type=int, required=True)
    p.add_argument("command", nargs="+")
    return p.parse_args(argv)


def _runtime(args: argparse.Namespace, report: int) -> NoReturn:
    """In the forked child: set up, then become the runtime (see the module
    docstring); on failure write ``STEP\\0ERRNO\\0MESSAGE`` to ``report``."""
    step = "signals"
    try:
        signal.set_wakeup_fd(-1)
        for sig in _RESET:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if args.cgroup:
            step = "cgroup"
            with open(Path(args.cgroup) / "cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))
        step = "setsid"
        os.setsid()
        step = "rlimit"
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))
        step = "cwd"
        os.chdir(args.cwd)
        if args.uid is not None:
            step = "user"
            os.setgroups([])
            os.setresgid(args.gid, args.gid, args.gid)
            os.setresuid(args.uid, args.uid, args.uid)
        step = "pdeathsig"
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        step = "exec"
        os.execv(args.command[0], args.command)
    except OSError as exc:
        os.write(report, f"{step}\0{exc.errno or 0}\0{exc.strerror or exc}".encode())
    except BaseException as exc:  # whatever it was, nothing may run
        os.write(report, f"{step}\0{errno.EINVAL}\0{exc!r}".encode())
    os._exit(127)


class _Shim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.control = socket.socket(fileno=args.control_fd)
        self.control.set_inheritable(False)
        self.main_pid = -1
        self.main_status = -1
        self.kill = False
        # Before the fork, so that no SIGCHLD goes unnoticed however soon
        # the runtime exits.
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)

    def say(self, line: str) -> None:
        # The node may be gone (its end closed): nothing to tell then.
        with contextlib.suppress(OSError):
            self.control.sendall(line.encode("ascii", "replace") + b"\n")

    def reap(self, *, block: bool) -> bool:
        """Reap children (all of them, with ``block``); True if none is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.main_pid:
                self.main_status = status

    def start(self) -> bool:
        r, w = os.pipe()  # both close on exec: EOF on r means the exec worked
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _runtime(self.args, w)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            failure = fh.read(4096)
        self.main_pid = pid
        # The job's stdio now belongs to the runtime alone: the node sees end
        # of file once the job's processes have closed them.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        if failure:
            step, err, message = [*failure.decode("utf-8", "replace").split("\0"), "", ""][:3]
            self.say(f"error {step} {err or 0} {' '.join(message.split())}")
            return False
        self.say(f"started {pid}")
        return True

    def serve(self) -> None:
        """Until the runtime exits or the node says K (or goes away)."""
        sel = selectors.DefaultSelector()
        sel.register(self.control, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        while True:
            self.reap(block=False)
            if self.kill or self.main_status != -1:
                return
            for key, _ in sel.select():
                if key.fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                else:
                    self.command(self.control.recv(64))

    def command(self, data: bytes) -> None:
        if not data:
            self.kill = True
        for c in data.decode("ascii", "replace"):
            if c == "K":
                self.kill = True
            elif c == "F":
                self.say("frozen" if proctree.stop_tree(os.getpid()) else "freeze-failed")
            elif c == "T":
                proctree.thaw_tree(os.getpid())
                self.say("thawed")

    def finish(self) -> None:
        """Kill what is left of the job, reap it all, report the end."""
        if self.args.cgroup:
            with (
                contextlib.suppress(OSError),
                open(Path(self.args.cgroup) / "cgroup.kill", "w") as fh,
            ):
                fh.write("1")
        proctree.kill_tree(os.getpid())
        self.reap(block=True)
        me = resource.getrusage(resource.RUSAGE_SELF)
        utime, stime = round(me.ru_utime * 1e6), round(me.ru_stime * 1e6)
        self.say(f"exit {self.main_status} {utime} {stime}")


def _on_signal(shim: _Shim, signum: int, frame: object) -> None:
    # SIGCHLD only wakes the loop (through the wakeup fd); the others stop the job.
    if signum != signal.SIGCHLD:
        shim.kill = True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    shim = _Shim(args)
    for sig in _HANDLED:
        signal.signal(sig, lambda signum, frame: _on_signal(shim, signum, frame))
    try:
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if shim.start():
            shim.serve()
    except BaseException as exc:  # report, and still clean up below
        shim.say(f"error shim {errno.EINVAL} {' '.join(repr(exc).split())}")
    finally:
        shim.finish()
    return 0


if __name__ == "__main__":
    # No interpreter teardown after the exit report: its CPU would count in
    # the shim's rusage but not in the RUSAGE_SELF the node subtracts.
    os._exit(main())
