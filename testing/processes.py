"""``mycelia`` CLI processes for tests and benchmarks: run a command, or
keep a ``mycelia node run`` process and read what it logs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def mycelia(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mycelia.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


class Proc:
    """One ``mycelia node run`` process and what it logged."""

    def __init__(self, datadir: Path, bootstrap: list[str], extra: tuple[str, ...] = ()) -> None:
        self.datadir = datadir
        sets = [
            "p2p.listen=/ip4/127.0.0.1/tcp/0",
            "metrics.port=0",
            "rpc.port=0",
            "sync.interval_s=1",
            "p2p.gossip_flush_ms=100",
            "p2p.request_timeout_s=5",
        ]
        if bootstrap:
            sets.append("p2p.bootstrap=" + ",".join(bootstrap))
        sets.extend(extra)
        argv = [sys.executable, "-m", "mycelia.cli", "--config", str(datadir / "mycelia.toml")]
        for s in sets:
            argv += ["--set", s]
        self.proc = subprocess.Popen(
            [*argv, "node", "run"], stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.log: list[str] = []
        self.address = self._wait_for(r"p2p listening on (\S+?)(,|$)")
        self.metrics_port = int(self._wait_for(r"metrics at http://127\.0\.0\.1:(\d+)/metrics"))

    def _wait_for(self, pattern: str) -> str:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(pattern, line)
            if m:
                return m.group(1)
        raise AssertionError("process exited early:\n" + "".join(self.log))

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, "".join(self.log) + err

    def rss_bytes(self) -> int:
        """Resident memory of the process now (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")
