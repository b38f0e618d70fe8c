"""cgroup v2 for the cgroup metering tier: the node's delegated cgroup and a leaf per job.

Why this exists: a cgroup counts the CPU of every process in it, however
they fork or daemonise, and can freeze or kill them all at once — the most
exact and cheapest meter there is, when the node may use one. This module
finds out whether it may and holds the file formats; ``metering.py``
decides the tier.

Finding the cgroup (:func:`locate`): the cgroup2 mount from
``/proc/self/mountinfo`` (filesystem type ``cgroup2``), the node's own
cgroup from the ``0::/path`` line of ``/proc/self/cgroup``. The node's
cgroup is the base, unless the node already sits in a leaf named
``daemon`` (systemd's ``DelegateSubgroup=daemon``, or a node that moved
itself there before): then its parent is. An operator may name the base
instead (``compute.cgroup``), and tests do.

Using it (:meth:`Delegation.setup`), the base counts as delegated when the
node can create a leaf in it that has ``cgroup.kill`` (Linux 5.14),
``cgroup.freeze`` (5.2) and ``cpu.stat``. A cgroup holding processes may not
give controllers to its children (the "no internal processes" rule), so when
the base is the node's own cgroup the node's processes move into the leaf
``<base>/daemon`` first — except at the root of a hierarchy, which is exempt
and whose processes are not the node's. Then the memory controller is
enabled for the leaves where the base offers it, so ``memory.peak`` is
there to read; without it (a stock Raspberry Pi kernel, a hybrid hierarchy
whose memory controller is on v1) peak memory is reported as None.

A job's leaf (:class:`Leaf`) is ``<base>/mycelia-job-<id>``; the job's
processes join it before they execute (``shim.py``), so all they ever use
is counted: ``cpu.stat`` ``usage_usec``, ``memory.peak``. Freezing writes
``cgroup.freeze`` and waits for ``frozen 1`` in ``cgroup.events``; killing
writes ``cgroup.kill``; the leaf is removed once ``populated 0``. Leaves a
crashed node left behind are killed and removed at setup.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DAEMON_LEAF",
    "JOB_PREFIX",
    "CgroupUnavailable",
    "Delegation",
    "Leaf",
    "cgroup2_mount",
    "locate",
    "own_cgroup_path",
]

#: Where the node's own processes go when the base is its cgroup.
DAEMON_LEAF = "daemon"
#: Job leaves' names start with this (and only they are cleaned up).
JOB_PREFIX = "mycelia-job-"
_PROBE_PREFIX = "mycelia-probe-"


class CgroupUnavailable(Exception):
    """The cgroup tier cannot be used here; the message says why."""


def cgroup2_mount(mountinfo: str) -> Path | None:
    """The mount point of the first cgroup2 filesystem in a
    ``/proc/self/mountinfo`` text whose root is the hierarchy's (``/``)."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype = right.split(" ", 1)[0]
        fields = left.split()
        if fstype == "cgroup2" and len(fields) >= 5 and fields[3] == "/":
            # Mount points escape spaces and the like as octal (\040).
            return Path(fields[4].encode().decode("unicode_escape"))
    return None


def own_cgroup_path(proc_cgroup: str) -> str | None:
    """The cgroup v2 path (``/a/b``) in a ``/proc/self/cgroup`` text, or None."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def locate(proc_self: Path = Path("/proc/self")) -> tuple[Path, Path]:
    """``(base, own)``: the cgroup directory jobs go under and the node's own
    cgroup directory. Raises :class:`CgroupUnavailable` without cgroup v2."""
    try:
        mountinfo = (proc_self / "mountinfo").read_text()
        cgroup = (proc_self / "cgroup").read_text()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read {proc_self}: {exc.strerror}") from None
    mount = cgroup2_mount(mountinfo)
    if mount is None:
        raise CgroupUnavailable("no cgroup v2 hierarchy is mounted")
    path = own_cgroup_path(cgroup)
    if path is None:
        raise CgroupUnavailable("the node is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")
    if path.startswith("/.."):
        raise CgroupUnavailable(f"the node's cgroup {path} is outside its cgroup namespace")
    own = mount / path.lstrip("/")
    base = own.parent if own.name == DAEMON_LEAF and own != mount else own
    return base, own


def _read(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as fh:
        return fh.read()


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(text)


def _keyed(text: str) -> dict[str, int]:
    """``key value`` lines (``cpu.stat``, ``cgroup.events``) as a mapping."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


@dataclass(frozen=True, slots=True)
class Leaf:
    """One job's cgroup."""

    path: Path

    def usage_usec(self) -> int:
        """CPU used by every process that was ever in the leaf, in µs."""
        return _keyed(_read(self.path / "cpu.stat")).get("usage_usec", 0)

    def peak_bytes(self) -> int | None:
        """The leaf's memory high-water mark, or None without the memory controller."""
        try:
            return int(_read(self.path / "memory.peak").strip())
        except (OSError, ValueError):
            return None

    def events(self) -> dict[str, int]:
        return _keyed(_read(self.path / "cgroup.events"))

    def populated(self) -> bool:
        return self.events().get("populated", 0) == 1

    def frozen(self) -> bool:
        return self.events().get("frozen", 0) == 1

    def freeze(self, frozen: bool = True) -> None:
        """Ask the kernel to freeze (or thaw) the leaf; :meth:`frozen` says when done."""
        _write(self.path / "cgroup.freeze", "1" if frozen else "0")

    def kill(self) -> None:
        """SIGKILL every process in the leaf (frozen ones too)."""
        with contextlib.suppress(FileNotFoundError):
            _write(self.path / "cgroup.kill", "1")

    def remove(self, *, timeout: float = 5.0) -> bool:
        """Kill what is left, wait until empty, remove. True if removed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError:  # EBUSY: processes still leaving
                if time.monotonic() > deadline:
                    return False
                self.kill()
                time.sleep(0.005)


@dataclass(frozen=True, slots=True)
class Delegation:
    """The base cgroup, checked usable; ``memory`` when leaves get ``memory.peak``."""

    base: Path
    memory: bool

    @classmethod
    def setup(cls, base: Path, own: Path | None = None) -> Delegation:
        """Check that jobs can have leaves under ``base`` and prepare it (see the
        module docstring). ``own`` is the node's own cgroup, when known: if it
        is ``base`` the node's processes move into ``base/daemon``."""
        if not (base / "cgroup.procs").is_file() or not (base / "cgroup.controllers").is_file():
            raise CgroupUnavailable(f"{base} is not a cgroup v2 directory")
        root = not (base / "cgroup.type").exists()  # only a hierarchy's root lacks it
        if own is not None and own == base and not root:
            cls._move_processes(base)
        cls._probe(base)
        memory = cls._enable_memory(base)
        delegation = cls(base=base, memory=memory)
        delegation.clean()
        return delegation

    @staticmethod
    def _move_processes(base: Path) -> None:
        daemon = base / DAEMON_LEAF
        try:
            daemon.mkdir(exist_ok=True)
            for _ in range(100):  # threads may spawn processes meanwhile
                pids = _read(base / "cgroup.procs").split()
                if not pids:
                    return
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        _write(daemon / "cgroup.procs", pid)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot move the node into {daemon}: {exc.strerror}") from None
        raise CgroupUnavailable(f"processes keep appearing in {base}")

    @staticmethod
    def _probe(base: Path) -> None:
        probe = base / f"{_PROBE_PREFIX}{os.getpid()}"
        try:
            probe.mkdir(exist_ok=True)
        except OSError as exc:
            raise CgroupUnavailable(
                f"cannot create a cgroup in {base}: {exc.strerror} (not delegated to the node)"
            ) from None
        try:
            for name, why in (
                ("cgroup.kill", "Linux 5.14 or later"),
                ("cgroup.freeze", "Linux 5.2 or later"),
                ("cpu.stat", "cpu.stat"),
            ):
                if not (probe / name).exists():
                    raise CgroupUnavailable(f"{name} missing in {base} (needs {why})")
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()

    @staticmethod
    def _enable_memory(base: Path) -> bool:
        try:
            if "memory" not in _read(base / "cgroup.controllers").split():
                return False
            if "memory" not in _read(base / "cgroup.subtree_control").split():
                _write(base / "cgroup.subtree_control", "+memory")
        except OSError:
            return False
        return True

    def leaf(self, job_id: str) -> Leaf:
        """Create the leaf for a job."""
        path = self.base / f"{JOB_PREFIX}{job_id}"
        path.mkdir()
        return Leaf(path)

    def clean(self) -> int:
        """Kill and remove job leaves left behind (by a node that crashed);
        how many were removed."""
        n = 0
        for child in self.base.iterdir():
            if child.name.startswith((JOB_PREFIX, _PROBE_PREFIX)) and child.is_dir():
                n += Leaf(child).remove()
        return n
