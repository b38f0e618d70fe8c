"""Process trees from /proc: parsing, summing a tree's CPU, signals that do not
hit a process that merely reuses a pid."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mycelia.node.compute import proctree
from mycelia.node.compute.proctree import ProcStat, parse_stat


def stat_line(pid: int, ppid: int, state: str, ticks: tuple[int, int, int, int], comm: str) -> str:
    utime, stime, cutime, cstime = ticks
    # Fields 3.. of /proc/<pid>/stat; 22 is the start time.
    rest = [state, str(ppid), "0", "0", "0", "0", "0", "0", "0", "0", "0"]
    rest += [str(utime), str(stime), str(cutime), str(cstime), "20", "0", "1", "0", "4242"]
    rest += ["0"] * 30
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def fake_proc(root: Path, lines: dict[int, str]) -> Path:
    for pid, line in lines.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(line)
    (root / "self").mkdir()  # not a pid: ignored
    return root


def test_parse_stat_survives_any_command_name() -> None:
    st = parse_stat(stat_line(7, 1, "S", (1, 2, 3, 4), "a) (b) c"))
    assert st == ProcStat(7, 1, "S", 1, 2, 3, 4, 4242)
    with pytest.raises(ValueError, match="not a /proc"):
        parse_stat("7 no parenthesis")
    with pytest.raises(ValueError, match="not a /proc"):
        parse_stat("7 (short) S 1")


def test_tree_cpu_counts_every_process_once(tmp_path: Path) -> None:
    # 10 is the shim: its own CPU does not count, what it reaped does.
    # 11 is the runtime, 12 a worker of it, 13 a reparented daemon (a zombie
    # now), 20 a stranger outside the tree.
    proc = fake_proc(
        tmp_path,
        {
            10: stat_line(10, 1, "S", (500, 500, 7, 3), "python3"),
            11: stat_line(11, 10, "S", (100, 20, 5, 5), "job"),
            12: stat_line(12, 11, "R", (30, 0, 0, 0), "worker"),
            13: stat_line(13, 10, "Z", (40, 2, 0, 0), "daemon"),
            20: stat_line(20, 1, "R", (999, 999, 0, 0), "other"),
        },
    )
    table = proctree.snapshot(proc)
    assert set(table) == {10, 11, 12, 13, 20}
    assert {st.pid for st in proctree.descendants(10, table)} == {11, 12, 13}
    expected = (7 + 3) + (100 + 20 + 5 + 5) + 30 + (40 + 2)
    assert proctree.tree_cpu_ticks(10, proc) == expected
    assert proctree.tree_cpu_ticks(99, proc) is None
    assert proctree.ticks_to_us(proctree.CLK_TCK) == 1_000_000


def test_send_refuses_a_process_that_only_shares_the_pid() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        st = proctree.read_stat(child.pid)
        assert st is not None
        impostor = dataclasses.replace(st, starttime=st.starttime + 1)
        assert not proctree.send(impostor, signal.SIGTERM)
        assert child.poll() is None  # untouched
        assert proctree.send(st, signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
        assert not proctree.send(st, signal.SIGTERM)  # gone now
    finally:
        child.kill()
        child.wait()


def test_stop_thaw_and_kill_a_tree() -> None:
    # A shell with two sleeping children; the shell is the tree's root.
    root = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 30
        while len(list(proctree.descendants(root.pid, proctree.snapshot()))) < 2:
            assert time.monotonic() < deadline, "the children never started"
            time.sleep(0.01)
        kids = list(proctree.descendants(root.pid, proctree.snapshot()))
        assert proctree.stop_tree(root.pid)
        states = {proctree.read_stat(k.pid).state for k in kids}  # type: ignore[union-attr]
        assert states == {"T"}
        proctree.thaw_tree(root.pid)
        states = {proctree.read_stat(k.pid).state for k in kids}  # type: ignore[union-attr]
        assert "T" not in states
        assert proctree.kill_tree(root.pid)
        assert root.wait(timeout=30) == 0  # its children died; its wait returned
        assert all(proctree.read_stat(k.pid) is None for k in kids)
    finally:
        root.kill()
        root.wait()
