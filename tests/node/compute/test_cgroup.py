"""cgroup v2: finding the node's cgroup, reading a leaf's files, the daemon
leaf, leftovers of a crashed node."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mycelia.node.compute.cgroup import (
    DAEMON_LEAF,
    JOB_PREFIX,
    CgroupUnavailable,
    Delegation,
    Leaf,
    cgroup2_mount,
    locate,
    own_cgroup_path,
)
from tests.node.compute.conftest import alive, cgroup_base

# This machine's kind: a hybrid hierarchy, cgroup2 at /sys/fs/cgroup/unified.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A unified hierarchy; a bind mount of a sub-cgroup elsewhere is not the hierarchy.
UNIFIED = """\
25 22 0:23 /sub /mnt/sub rw - cgroup2 cgroup2 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""


def test_finding_the_cgroup2_mount() -> None:
    assert cgroup2_mount(HYBRID) == Path("/sys/fs/cgroup/unified")
    assert cgroup2_mount(UNIFIED) == Path("/sys/fs/cgroup")
    assert cgroup2_mount("36 25 0:30 / /my\\040cg rw - cgroup2 cgroup2 rw\n") == Path("/my cg")
    assert cgroup2_mount(HYBRID.replace("cgroup2", "cgroup")) is None


def test_the_nodes_own_cgroup() -> None:
    assert own_cgroup_path("4:memory:/x\n0::/system.slice/mycelia.service\n") == (
        "/system.slice/mycelia.service"
    )
    assert own_cgroup_path("0::/\n") == "/"
    assert own_cgroup_path("1:cpu:/\n") is None


def fake_self(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    d = tmp_path / "self"
    d.mkdir(parents=True)
    (d / "mountinfo").write_text(mountinfo)
    (d / "cgroup").write_text(cgroup)
    return d


def test_locate(tmp_path: Path) -> None:
    unit = "0::/system.slice/mycelia.service\n"
    assert locate(fake_self(tmp_path / "a", UNIFIED, unit)) == (
        Path("/sys/fs/cgroup/system.slice/mycelia.service"),
        Path("/sys/fs/cgroup/system.slice/mycelia.service"),
    )
    # Already in the daemon leaf (DelegateSubgroup=daemon, or moved before):
    # the jobs go beside it.
    moved = "0::/system.slice/mycelia.service/daemon\n"
    assert locate(fake_self(tmp_path / "b", UNIFIED, moved)) == (
        Path("/sys/fs/cgroup/system.slice/mycelia.service"),
        Path("/sys/fs/cgroup/system.slice/mycelia.service/daemon"),
    )
    assert locate(fake_self(tmp_path / "c", HYBRID, "0::/\n")) == (
        Path("/sys/fs/cgroup/unified"),
        Path("/sys/fs/cgroup/unified"),
    )
    for name, mountinfo, cgroup, why in [
        ("d", HYBRID.replace("cgroup2", "cgroup"), unit, "no cgroup v2 hierarchy"),
        ("e", UNIFIED, "1:cpu:/\n", "no 0:: line"),
        ("f", UNIFIED, "0::/../elsewhere\n", "outside its cgroup namespace"),
    ]:
        with pytest.raises(CgroupUnavailable, match=why):
            locate(fake_self(tmp_path / name, mountinfo, cgroup))
    with pytest.raises(CgroupUnavailable, match="cannot read"):
        locate(tmp_path / "nowhere")


def test_a_leaf_s_files(tmp_path: Path) -> None:
    leaf = Leaf(tmp_path)
    (tmp_path / "cpu.stat").write_text("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 3\n")
    (tmp_path / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert leaf.usage_usec() == 1234567
    assert leaf.peak_bytes() is None  # no memory controller
    (tmp_path / "memory.peak").write_text("7340032\n")
    assert leaf.peak_bytes() == 7340032
    assert (leaf.populated(), leaf.frozen()) == (True, False)


def test_a_directory_that_is_no_cgroup(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable, match="not a cgroup v2 directory"):
        Delegation.setup(tmp_path)


def cgroup_of(pid: int) -> str:
    return own_cgroup_path(Path(f"/proc/{pid}/cgroup").read_text()) or ""


def test_the_node_moves_into_its_daemon_leaf_and_leftovers_are_removed() -> None:
    with cgroup_base() as base:
        # A "node" in the base (as under systemd), and a job leaf a crashed
        # node left behind with a process still in it.
        node = subprocess.Popen(["sleep", "60"])
        stale = subprocess.Popen(["sleep", "60"])
        try:
            (base / "cgroup.procs").write_text(str(node.pid))
            leftover = base / f"{JOB_PREFIX}dead"
            leftover.mkdir()
            (leftover / "cgroup.procs").write_text(str(stale.pid))
            delegation = Delegation.setup(base, own=base)
            assert cgroup_of(node.pid).endswith(f"/{base.name}/{DAEMON_LEAF}")
            assert (base / "cgroup.procs").read_text().split() == []
            assert not leftover.exists()
            assert stale.wait(timeout=30) < 0  # killed
            leaf = delegation.leaf("abc")
            assert leaf.path == base / f"{JOB_PREFIX}abc"
            assert leaf.usage_usec() == 0
            assert not leaf.populated()
            assert leaf.remove()
            assert not leaf.path.exists()
        finally:
            for p in (node, stale):
                p.kill()
                p.wait()


def test_a_leaf_freezes_kills_and_goes() -> None:
    with cgroup_base() as base:
        delegation = Delegation.setup(base)
        leaf = delegation.leaf("one")
        p = subprocess.Popen(["sleep", "60"])
        try:
            (leaf.path / "cgroup.procs").write_text(str(p.pid))
            assert leaf.populated()
            leaf.freeze()
            deadline = time.monotonic() + 30
            while not leaf.frozen():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            leaf.kill()
            assert p.wait(timeout=30) < 0
            assert leaf.remove()
            assert not alive(p.pid)
        finally:
            p.kill()
            p.wait()
