"""A job's process tree, read from ``/proc``, and signals sent to it without pid races.

Why this exists: the shim tier (``metering.py``) knows a job only as the
tree of processes under its shim. A job may fork, daemonise (double fork and
``setsid``), and leave its parent; because the shim is a child subreaper
(``shim.py``) every orphan is reparented to it, so the parent links in
``/proc/<pid>/stat`` always lead back to the shim. This module reads those
links to sum the tree's CPU while it runs and to stop, continue or kill
every process in it. Standard library only: the shim imports it too.

CPU of a tree (:func:`tree_cpu_ticks`): the shim's ``cutime + cstime``
(every descendant it reaped, with everything those had reaped) plus, for
every process still in the tree (zombies included), ``utime + stime +
cutime + cstime``. A process counts exactly once: while it lives (or is a
zombie) through its own fields, after it is reaped through its reaper's
``cutime``. A process reaped between the reads of its own line and its
parent's may be counted twice or not at all for that one read; callers keep
the figure monotonic and take the final figure from ``wait4``.

Signals without pid reuse races (:func:`send`): a pid read from ``/proc``
may belong to another process by the time it is signalled. So the process
is opened as a pidfd, its start time is read again and compared with the one
seen in the walk, and the signal goes through the pidfd: it reaches the
process that was walked, or nobody.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "PROC",
    "ProcStat",
    "descendants",
    "kill_tree",
    "parse_stat",
    "read_stat",
    "send",
    "snapshot",
    "stop_tree",
    "thaw_tree",
    "ticks_to_us",
    "tree_cpu_ticks",
]

PROC = Path("/proc")
#: Clock ticks per second, the unit of the CPU fields of ``/proc/<pid>/stat``.
CLK_TCK = os.sysconf("SC_CLK_TCK")

# States that no signal changes: zombie, dead.
_GONE = frozenset("ZXx")
# States of a process that is stopped (by a signal, or under a tracer).
_STOPPED = frozenset("Tt")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of one ``/proc/<pid>/stat`` line this module uses (CPU in ticks)."""

    pid: int
    ppid: int
    state: str
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int

    @property
    def gone(self) -> bool:
        """A zombie or dead process: signals no longer matter to it."""
        return self.state in _GONE

    @property
    def stopped(self) -> bool:
        return self.state in _STOPPED


def parse_stat(text: str) -> ProcStat:
    """Parse a ``/proc/<pid>/stat`` line. The command name (field 2) may hold
    spaces and parentheses, so the fields after it are found from the last
    ``)``. Raises ValueError on a line that is not one."""
    pid_text, _, rest = text.partition(" (")
    _, close, after = rest.rpartition(")")
    if not close:
        raise ValueError("not a /proc/<pid>/stat line")
    f = after.split()
    # f[0] is field 3 (state): field n is f[n - 3].
    if len(f) < 20:
        raise ValueError("not a /proc/<pid>/stat line")
    return ProcStat(
        pid=int(pid_text),
        ppid=int(f[1]),
        state=f[0],
        utime=int(f[11]),
        stime=int(f[12]),
        cutime=int(f[13]),
        cstime=int(f[14]),
        starttime=int(f[19]),
    )


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The process ``pid`` now, or None if there is none."""
    try:
        with open(proc / str(pid) / "stat", encoding="utf-8", errors="replace") as fh:
            return parse_stat(fh.read())
    except (OSError, ValueError):
        return None


def snapshot(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process visible in ``proc``, by pid."""
    out: dict[int, ProcStat] = {}
    with os.scandir(proc) as it:
        for entry in it:
            if entry.name.isdigit():
                st = read_stat(int(entry.name), proc)
                if st is not None:
                    out[st.pid] = st
    return out


def descendants(root: int, table: dict[int, ProcStat]) -> Iterator[ProcStat]:
    """The processes under ``root`` in ``table`` (not ``root`` itself), parents first."""
    children: dict[int, list[ProcStat]] = {}
    for st in table.values():
        children.setdefault(st.ppid, []).append(st)
    todo = list(children.get(root, ()))
    while todo:
        st = todo.pop()
        yield st
        todo.extend(children.get(st.pid, ()))


def tree_cpu_ticks(root: int, proc: Path = PROC) -> int | None:
    """CPU ticks used by everything under ``root`` so far, living and reaped
    (not ``root``'s own; see the module docstring), or None when ``root``
    is gone."""
    table = snapshot(proc)
    top = table.get(root)
    if top is None:
        return None
    total = top.cutime + top.cstime
    for st in descendants(root, table):
        total += st.utime + st.stime + st.cutime + st.cstime
    return total


def ticks_to_us(ticks: int) -> int:
    return ticks * 1_000_000 // CLK_TCK


def send(st: ProcStat, sig: int, proc: Path = PROC) -> bool:
    """Send ``sig`` to the process ``st`` describes, if it is still that one
    (same pid and start time). True if sent."""
    try:
        fd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        return False
    except OSError:  # no pidfds (Linux < 5.3): check, then signal by pid
        again = read_stat(st.pid, proc)
        if again is None or again.starttime != st.starttime:
            return False
        try:
            os.kill(st.pid, sig)
        except ProcessLookupError:
            return False
        return True
    try:
        again = read_stat(st.pid, proc)
        if again is None or again.starttime != st.starttime:
            return False
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _pause() -> None:
    # Between rounds over the tree: long enough for the signals just sent
    # to be delivered, short enough that stopping a tree is quick.
    time.sleep(0.002)


def kill_tree(root: int, *, timeout: float = 5.0, proc: Path = PROC) -> bool:
    """SIGKILL every process under ``root`` until none is left alive (zombies
    are left for their reaper). Round after round, since a process may fork
    until its SIGKILL lands. True if the tree emptied within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [st for st in descendants(root, snapshot(proc)) if not st.gone]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        for st in alive:
            send(st, signal.SIGKILL, proc)
        _pause()


def stop_tree(root: int, *, timeout: float = 2.0, proc: Path = PROC) -> bool:
    """SIGSTOP every process under ``root`` until all are stopped (a process
    may fork until its SIGSTOP lands; the new child is stopped in the next
    round). True once no process under ``root`` runs, False if that did not
    happen within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        running = [st for st in descendants(root, snapshot(proc)) if not (st.gone or st.stopped)]
        if not running:
            return True
        if time.monotonic() > deadline:
            return False
        for st in running:
            send(st, signal.SIGSTOP, proc)
        _pause()


def thaw_tree(root: int, proc: Path = PROC) -> None:
    """SIGCONT every stopped process under ``root``. One round: while the
    tree is stopped nothing in it can fork."""
    for st in descendants(root, snapshot(proc)):
        if st.stopped:
            with contextlib.suppress(OSError):
                send(st, signal.SIGCONT, proc)
