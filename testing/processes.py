"""``mycelia`` as separate processes: run a CLI command, or start a
``mycelia node run`` and know when it serves.

Why this exists: the process tests, the devnet benchmark and ``mycelia
devnet`` all start real node processes and must know when each is ready and
at which addresses (the kernel picks every port). One launcher,
:class:`Proc`, serves all three; they differ only in options:

* where the node's log goes — captured from its stderr (``log_file=None``:
  tests and benchmarks read it back from :meth:`Proc.stop`), or appended to
  a file (the devnet's ``node.log``, which outlives the devnet command);
* ``detach`` — the node runs in its own session with stdin closed, so a
  Ctrl-C in the starting terminal does not reach it and it outlives the
  process that started it (the devnet stops it later, with SIGTERM, by pid);
* ``tuning`` — the timing settings (:data:`FAST`, the tests'; the devnet
  and the benchmark pass their own), and ``sets``, any other ``--set``
  overrides, applied last (a later ``--set`` of a key wins).

Readiness is read from what the node logs, never guessed: the constructor
returns once the node has logged its p2p address, its metrics and its RPC
(``rpc.endpoint`` is written by then), and with ``ingest=True`` its sensor
ingest — or raises :class:`ProcError` if the process exits first (quoting
the log's tail) or takes longer than ``timeout``; a process that failed to
become ready is stopped before the error is raised.
"""

from __future__ import annotations

import contextlib
import functools
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FAST", "LOOPBACK", "Proc", "ProcError", "mycelia"]

#: Every listener on loopback, on a port the kernel picks.
LOOPBACK = (
    "p2p.listen=/ip4/127.0.0.1/tcp/0",
    "metrics.port=0",
    "rpc.port=0",
)
#: The tests' timings: quick sync rounds, gossip and request timeouts.
FAST = (
    "sync.interval_s=1",
    "p2p.gossip_flush_ms=100",
    "p2p.request_timeout_s=5",
)

_P2P = re.compile(r"p2p listening on (\S+?)(,|$)")
_METRICS = re.compile(r"metrics at http://127\.0\.0\.1:(\d+)/metrics")
_RPC = re.compile(r"rpc at (.+?)\s*$")
_INGEST = re.compile(r"sensor ingest at (http://\S+?)/v1/readings")
#: How much of the log an error quotes.
_TAIL = 2000


def mycelia(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``mycelia ARGS`` (this interpreter's), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "mycelia.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ProcError(Exception):
    """A node process that exited or did not become ready in time."""


class Proc:
    """One ``mycelia node run`` process for the data directory ``datadir``
    (made by ``mycelia init``: its config is ``datadir/mycelia.toml``), with
    the p2p addresses ``bootstrap`` to dial. Ready when constructed:
    :attr:`address` (its p2p multiaddr), :attr:`metrics_port`, :attr:`rpc`
    (the RPC's addresses as it logged them) and, with ``ingest``,
    :attr:`ingest` (the sensor ingest's base URL)."""

    def __init__(
        self,
        datadir: Path,
        bootstrap: Iterable[str] = (),
        sets: Iterable[str] = (),
        *,
        tuning: Iterable[str] = FAST,
        log_file: Path | None = None,
        detach: bool = False,
        ingest: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.datadir = datadir
        self.log_file = log_file
        #: what the node logged so far (captured stderr, or the log file's
        #: lines since the start), as far as it has been read
        self.log: list[str] = []
        peers = list(bootstrap)
        overrides = [*LOOPBACK, *tuning]
        if peers:
            overrides.append("p2p.bootstrap=" + ",".join(peers))
        overrides.extend(sets)
        argv = [sys.executable, "-m", "mycelia.cli", "--config", str(datadir / "mycelia.toml")]
        for s in overrides:
            argv += ["--set", s]
        argv += ["node", "run"]
        # Detached: no terminal's stdin, and its own session (no terminal's signals).
        stdin = subprocess.DEVNULL if detach else None
        self._more = threading.Condition()
        self._ended = False
        if log_file is None:
            self.popen: subprocess.Popen[str] = subprocess.Popen(
                argv, stdin=stdin, stderr=subprocess.PIPE, text=True, start_new_session=detach
            )
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()
        else:
            self._since = log_file.stat().st_size if log_file.exists() else 0
            self._partial = ""
            log = open(log_file, "ab")  # noqa: SIM115 - handed to the child
            try:
                self.popen = subprocess.Popen(
                    argv, stdin=stdin, stdout=log, stderr=log, text=True, start_new_session=detach
                )
            finally:
                log.close()
        patterns = {"p2p": _P2P, "metrics": _METRICS, "rpc": _RPC}
        if ingest:
            patterns["ingest"] = _INGEST
        try:
            found = self._wait_for(patterns, timeout)
        except BaseException:
            self._kill()
            raise
        self.address = found["p2p"]
        self.metrics_port = int(found["metrics"])
        self.rpc = found["rpc"]
        self.ingest: str | None = found.get("ingest")

    @property
    def pid(self) -> int:
        return self.popen.pid

    # -- reading the log ---------------------------------------------------------------

    def _drain(self) -> None:
        """The captured stderr, read as it comes (so the node never blocks
        on a full pipe), into :attr:`log`."""
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            with self._more:
                self.log.append(line)
                self._more.notify_all()
        with self._more:
            self._ended = True
            self._more.notify_all()

    def _read_file(self) -> bool:
        """Append the log file's new complete lines to :attr:`log`; whether
        the process has exited (and all it wrote has been read)."""
        assert self.log_file is not None
        exited = self.popen.poll() is not None
        with open(self.log_file, "rb") as fh:
            fh.seek(self._since)
            data = fh.read()
        self._since += len(data)
        text = self._partial + data.decode(errors="replace")
        *lines, self._partial = text.split("\n")
        self.log.extend(line + "\n" for line in lines)
        if exited and self._partial:
            self.log.append(self._partial)
            self._partial = ""
        return exited

    def _grown(self, n: int) -> bool:
        """Whether the log holds more than ``n`` lines, or the process ended."""
        return len(self.log) > n or self._ended

    def _wait_for(self, patterns: dict[str, re.Pattern[str]], timeout: float) -> dict[str, str]:
        found: dict[str, str] = {}
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            if self.log_file is None:
                with self._more:
                    self._more.wait_for(
                        functools.partial(self._grown, seen),
                        timeout=max(0.0, deadline - time.monotonic()),
                    )
                    ended, lines = self._ended, self.log[seen:]
            else:
                ended = self._read_file()
                lines = self.log[seen:]
            seen += len(lines)
            for line in lines:
                for name, pattern in patterns.items():
                    m = pattern.search(line)
                    if m is not None and name not in found:
                        found[name] = m.group(1)
            if len(found) == len(patterns):
                return found
            if ended:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=10)
                code = self.popen.returncode
                raise ProcError(f"node in {self.datadir} exited with {code}:\n{self._tail()}")
            if time.monotonic() >= deadline:
                raise ProcError(f"node in {self.datadir} did not become ready in {timeout:.0f} s")
            if self.log_file is not None and not lines:
                time.sleep(0.1)

    def _tail(self) -> str:
        return "".join(self.log)[-_TAIL:]

    # -- stopping ------------------------------------------------------------------------

    def _kill(self) -> None:
        """Stop a process that failed to become ready (SIGTERM, then SIGKILL)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._finish()

    def _finish(self) -> None:
        if self.log_file is None:
            self._reader.join(timeout=10)
        else:
            self._read_file()

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM (a clean stop), wait; its exit code and everything it logged."""
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=timeout)
        self._finish()
        return code, "".join(self.log)

    def rss_bytes(self) -> int:
        """Resident memory of the process now (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")
