"""Metering a job from the OS: the two tiers, the choice between them, the usage figures.

Why this exists: a consumer pays for what its job used, so the figure must
count every process the job ran — a daemonised grandchild included — and
must come from the kernel, not from the job. Two tiers do that; which one a
node uses is decided once, at start, and reported (:class:`Tier`, for
``mycelia status``).

``cgroup`` (preferred): a cgroup v2 leaf per job under the node's delegated
cgroup (``cgroup.py``). CPU is the leaf's ``cpu.stat`` ``usage_usec``, live
and final, to the microsecond; the peak is ``memory.peak`` where the memory
controller is enabled, else None. Freeze and kill are the kernel's
(``cgroup.freeze``, ``cgroup.kill``).

``shim`` (everywhere else: containers without delegation, a kernel without
``cgroup.kill``): the job's processes are the tree under its shim, a child
subreaper (``shim.py``). Live CPU is summed over that tree from
``/proc/<pid>/stat`` (``proctree.py``; clock ticks, 10 ms on most kernels);
the final figure is the shim's ``wait4`` rusage — which holds every process
the shim reaped, and it reaps them all — minus the shim's own CPU, which it
reports. Peak memory is None: no tree-wide figure exists without a cgroup
(a sum of sampled RSS would both miss peaks and double-count shared pages).

``auto`` picks ``cgroup`` when a writable cgroup v2 is delegated to the
node, else ``shim``; ``cgroup`` asked for and not available is an error.

Usage (:class:`Usage`) is cumulative and never goes back: CPU in ms,
running wall time in ms (since the runtime started, less the time it was
frozen: ``protocol/pricing.py`` bills no frozen time), reserved memory in
MiB (billed as MiB x running wall time: ``mib_ms``, exact integers), and
the peak in bytes or None. :meth:`Usage.counters` gives the protocol's
counters, which usage reports carry and prices are computed from.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mycelia.node.compute import proctree
from mycelia.node.compute.cgroup import CgroupUnavailable, Delegation, Leaf, locate
from mycelia.node.config import ConfigError
from mycelia.protocol import pricing

__all__ = ["CgroupMeter", "Meter", "Tier", "TreeMeter", "Usage", "choose_tier"]

CGROUP = "cgroup"
SHIM = "shim"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a job used so far (or in all, once it ended)."""

    cpu_ms: int
    wall_ms: int
    reserved_mib: int
    peak_memory_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("cpu_ms", "wall_ms", "reserved_mib"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        peak = self.peak_memory_bytes
        if peak is not None and (type(peak) is not int or peak < 0):
            raise ValueError(f"peak_memory_bytes: expected None or an integer >= 0, got {peak!r}")

    @property
    def mib_ms(self) -> int:
        """Reserved memory times wall time, in MiB·ms (MiB·s is this / 1000)."""
        return self.reserved_mib * self.wall_ms

    def counters(self) -> pricing.Usage:
        """The counters a usage report carries and ``pricing.price`` reads."""
        return pricing.Usage(cpu_ms=self.cpu_ms, wall_ms=self.wall_ms, mib_ms=self.mib_ms)


@dataclass(frozen=True, slots=True)
class Tier:
    """The metering tier in use: ``name`` (``cgroup`` or ``shim``) and ``why``
    it was chosen, as an operator should read it; ``delegation`` in the
    cgroup tier."""

    name: str
    why: str
    delegation: Delegation | None = None

    def __post_init__(self) -> None:
        if self.name not in (CGROUP, SHIM) or (self.name == CGROUP) != (
            self.delegation is not None
        ):
            raise ValueError(f"not a metering tier: {self.name!r}")


def choose_tier(
    mode: str, cgroup: Path | None = None, *, proc_self: Path = Path("/proc/self")
) -> Tier:
    """The tier for ``compute.metering`` = ``mode`` (``auto``, ``cgroup`` or
    ``shim``), with ``cgroup`` the configured base (None: the node's own
    cgroup). Sets the cgroup up when it is chosen. Raises
    :class:`ConfigError` when no tier can work, or ``cgroup`` was asked for
    and cannot."""
    if not sys.platform.startswith("linux"):
        raise ConfigError("compute: jobs run on Linux only", key="compute.enabled")
    if mode == SHIM:
        return Tier(SHIM, "compute.metering = shim")
    try:
        if cgroup is not None:
            base, own = cgroup, None
            with contextlib.suppress(CgroupUnavailable):
                own = locate(proc_self)[1]
        else:
            base, own = locate(proc_self)
        delegation = Delegation.setup(base, own)
    except CgroupUnavailable as exc:
        if mode == CGROUP:
            raise ConfigError(
                f"compute.metering = cgroup, but {exc}", key="compute.metering"
            ) from None
        return Tier(SHIM, f"no usable cgroup v2: {exc}")
    peak = (
        "memory peak reported" if delegation.memory else "no memory controller: peak not reported"
    )
    return Tier(
        CGROUP, f"cgroup v2 {delegation.base} is delegated and writable ({peak})", delegation
    )


class Meter(Protocol):
    """One job's meter, as the runner reads it."""

    def cpu_us(self) -> int | None:
        """CPU used so far by the job, in µs; None if it cannot be read now."""

    def peak_bytes(self) -> int | None: ...

    def final_cpu_us(self, shim_total_us: int, shim_self_us: int | None) -> int:
        """The job's CPU once everything in it was reaped, given the shim's
        ``wait4`` rusage and the shim's own CPU (None if it did not report)."""


@dataclass(frozen=True, slots=True)
class CgroupMeter:
    leaf: Leaf

    def cpu_us(self) -> int | None:
        try:
            return self.leaf.usage_usec()
        except OSError:
            return None

    def peak_bytes(self) -> int | None:
        return self.leaf.peak_bytes()

    def final_cpu_us(self, shim_total_us: int, shim_self_us: int | None) -> int:
        # The shim is not in the leaf: the leaf holds the job's CPU alone.
        return self.cpu_us() or 0


@dataclass(frozen=True, slots=True)
class TreeMeter:
    shim_pid: int

    def cpu_us(self) -> int | None:
        ticks = proctree.tree_cpu_ticks(self.shim_pid)
        return None if ticks is None else proctree.ticks_to_us(ticks)

    def peak_bytes(self) -> int | None:
        return None

    def final_cpu_us(self, shim_total_us: int, shim_self_us: int | None) -> int:
        if shim_self_us is None:  # the shim died before reporting: bill all of it
            return shim_total_us
        return max(0, shim_total_us - shim_self_us)
