"""Kill -9 loop: random SIGKILLs of validators and of the submitting node
under load with double-spend attempts (issue 9, "How it will be checked").

Run by hand: ``python -m bench.killloop`` (``--kills N``, default 60;
``--quick``, 6 kills; ``--seed S``). Restarts set the pace (a process needs
4-9 s of imports before it serves): 60 kills took 9-12 minutes, ``--quick``
about 2, on a loaded 2-core machine. Everything runs on 127.0.0.1 in a
temporary directory that is kept (its path is printed) for inspection: each
process's stderr, one file per incarnation, under ``logs/``; ``kills.txt``,
the kill timeline; ``entries.txt``, every entry with every status reported
and where each store holds it.

Setup, as ``bench/devnet.py`` does it: four validator ``mycelia node run``
processes and one non-validator *gateway* process, a mutual-credit economy
imported into all five with ``mycelia node import-economy``.

Load: ``--wallets`` wallets (8) submit transfers through the RPC
(``AsyncClient.entry_submit``) of a random node, the gateway most often, and
poll ``entry_get`` until the entry is final. When the node they use is down
(or dies under them, or an entry stays pending too long there) they submit
the SAME signed entry to another node. Now and then a wallet signs two
different entries for the same seq and submits them to two different nodes
at once (a double spend); once both are final it learns from
``account_get`` (seq, head) which one, if any, got the slot and continues
from the chain head. A slot neither entry got (the validators' votes split)
is dead for good (FastPay): that wallet retires and a fresh one takes over.

The killer SIGKILLs a random process (validators and the gateway) 1–3 s
after the previous victim serves again and restarts it 0.5–2 s later on the
same data directory and the same p2p port, bootstrapping to all the others;
never more than one process is down, so the three other validators can
always make a quorum of 3.

At the end the load stops, every process is stopped cleanly and started
again, they are given a bounded time to converge (over the RPC), every node
is asked ``entry_get`` for every entry ever submitted, then they are stopped
cleanly and every store is opened offline and checked:

1. for each (author, seq) at most one entry id across all stores
   (applied chains, certificates and parked certificates);
2. every entry any node ever reported ``certified`` is in every store;
3. every store holds the same accounts (balance, seq, head, …) and chains
   (and the balances sum to zero, as mutual credit must);
4. no entry reported ``certified`` was ever reported ``refused`` by any
   node, during the run or in the final sweep;
5. no process logged a Python traceback (each incarnation's stderr);
6. every clean stop (SIGTERM) exited 0.

Prints the figures and PASS/FAIL per check; exits 1 on any FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import trio

from mycelia.client import AsyncClient, ClientError, Endpoint, EntryStatus, RpcError
from mycelia.client.keyfile import read_key
from mycelia.node.p2p import peer_id_of
from mycelia.node.store import Store
from mycelia.protocol import Certificate, Entry, SignedEntry, SigningKey, Transfer
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import genesis, key, sign_genesis
from mycelia.testing.processes import Proc, ProcError

from .devnet import import_economy, setup

#: Settings for every process, after mycelia.testing.processes' fast ones:
#: loopback only, no LAN ingest, no mDNS.
EXTRA = ("sensors.enabled=false", "p2p.mdns=false", "metrics.host=127.0.0.1", "rpc.host=127.0.0.1")
#: A process that has not logged "rpc at" this long after its start is killed.
START_TIMEOUT_S = 60.0
#: A pending entry is submitted to another node after this long on one node.
STALL_S = 30.0
#: A wallet gives an entry up (and retires) after this long without a final status.
GIVE_UP_S = 150.0
#: Polling interval of entry_get.
POLL_S = 0.1
#: Refused-retryable entries are submitted again this many times.
RETRYABLE_RESUBMITS = 3
#: Weight of the gateway when a wallet picks a node (each validator: 1).
GATEWAY_WEIGHT = 4


def now_s() -> float:
    return time.monotonic()


def short(b: bytes) -> str:
    return b.hex()[:12]


# -- processes ----------------------------------------------------------------------------


class BenchProc:
    """One node process on :class:`mycelia.testing.processes.Proc` (its log
    appended to a file as it runs, so a chatty node never blocks on a pipe;
    ready — RPC served — when constructed, within ``START_TIMEOUT_S``),
    registered for the final clean-up."""

    registry: ClassVar[list[subprocess.Popen[str]]] = []

    def __init__(
        self, datadir: Path, bootstrap: list[str], extra: tuple[str, ...], log_path: Path
    ) -> None:
        self.log_path = log_path
        self._proc: Proc | None = None
        try:
            self._proc = Proc(datadir, bootstrap, extra, log_file=log_path, timeout=START_TIMEOUT_S)
        except ProcError:  # the launcher stopped it; its log says why
            self.ready = False
            return
        self.ready = True
        BenchProc.registry.append(self._proc.popen)

    @property
    def proc(self) -> subprocess.Popen[str]:
        assert self._proc is not None, "the process did not start"
        return self._proc.popen

    def alive(self) -> bool:
        return self._proc is not None and self._proc.popen.poll() is None

    @property
    def address(self) -> str:
        """The p2p address the node logged."""
        assert self._proc is not None, "the process did not start"
        return self._proc.address

    def wait_rpc(self) -> bool:
        """Whether the process served its RPC (the launcher waited for it)."""
        return self.ready

    def kill9(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def terminate(self) -> int:
        """SIGTERM and wait (SIGKILL after 30 s); the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -999


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    """One of the five processes, across its incarnations. Its p2p port is
    chosen before the first start and kept at every restart, so its address
    (with the peer id of its node key) is known to all from the outset."""

    name: str
    datadir: Path
    validator: bool
    logs: Path
    port: int
    peer_id: str
    proc: BenchProc | None = None
    up: bool = False
    incarnation: int = 0
    client: AsyncClient | None = None
    clients: list[AsyncClient] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    async def start(self, bootstrap: list[str]) -> None:
        self.incarnation += 1
        log_path = self.logs / f"{self.name}.{self.incarnation:03d}.log"
        self.log_files.append(log_path)
        extra = (*EXTRA, f"p2p.listen=/ip4/127.0.0.1/tcp/{self.port}")
        proc = await trio.to_thread.run_sync(BenchProc, self.datadir, bootstrap, extra, log_path)
        self.proc = proc
        if not await trio.to_thread.run_sync(proc.wait_rpc):
            raise RuntimeError(f"{self.name} did not serve its RPC; see {log_path}")
        if proc.address != self.address:
            raise RuntimeError(f"{self.name} listens on {proc.address}, not {self.address}")
        self.client = AsyncClient(Endpoint.from_datadir(self.datadir), timeout=10)
        self.clients.append(self.client)
        self.up = True

    async def kill9(self) -> None:
        assert self.proc is not None
        self.up = False
        await trio.to_thread.run_sync(self.proc.kill9)

    async def terminate(self) -> int:
        assert self.proc is not None
        self.up = False
        return await trio.to_thread.run_sync(self.proc.terminate)


def kill_everything() -> None:
    for p in BenchProc.registry:
        if p.poll() is None:
            p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


# -- what the run saw ------------------------------------------------------------------------


@dataclass
class Seen:
    """Every status any node reported, and the run's counters."""

    t0: float
    entries: dict[bytes, SignedEntry] = field(default_factory=dict)
    #: entry id -> [(seconds since start, node, status, reason, retryable)]
    statuses: dict[bytes, list[tuple[float, str, str, str | None, bool | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    certified: dict[bytes, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: entry id -> the wallet's last outcome when it was refused: (reason, retryable)
    refused_outcome: dict[bytes, tuple[str, bool]] = field(default_factory=dict)
    refusal_reports: Counter[tuple[str, bool]] = field(default_factory=Counter)
    pending_reasons: Counter[str] = field(default_factory=Counter)
    resubmissions: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)
    #: (author, seq, id A, id B, winner id or None, how it ended)
    double_spends: list[tuple[bytes, int, bytes, bytes, bytes | None, str]] = field(
        default_factory=list
    )
    retired: list[tuple[str, str]] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    restart_failures: list[str] = field(default_factory=list)
    #: (victim, killed at, restart begun at, serving again at), seconds since start
    timeline: list[tuple[str, float, float, float]] = field(default_factory=list)
    clean_stops: list[tuple[str, int]] = field(default_factory=list)
    sweep: dict[bytes, dict[str, tuple[str, str | None, bool | None]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    submitted_at: dict[bytes, float] = field(default_factory=dict)
    first_node: dict[bytes, str] = field(default_factory=dict)
    #: entries submitted again to another node
    resubmitted: set[bytes] = field(default_factory=set)

    t0_wall: float = field(default_factory=time.time)

    def t(self) -> float:
        return now_s() - self.t0

    def record(self, node: str, st: EntryStatus) -> None:
        self.statuses[st.id].append((self.t(), node, st.status, st.reason, st.retryable))
        if st.status == "certified":
            self.certified[st.id].add(node)
        elif st.status == "refused":
            self.refusal_reports[(st.reason or "", bool(st.retryable))] += 1
        elif st.reason:
            self.pending_reasons[st.reason] += 1

    def anomaly(self, text: str) -> None:
        self.anomalies.append(f"[{self.t():7.1f}s] {text}")
        print("ANOMALY:", text, flush=True)


# -- wallets ---------------------------------------------------------------------------------


class Unavailable(Exception):
    pass


@dataclass
class WalletState:
    name: str
    key: SigningKey
    seq: int = 0
    head: bytes = ZERO_ID
    ts: int = 0
    retired: bool = False
    #: in a round (an entry in flight): its view may be behind the stores
    busy: bool = False


class Load:
    def __init__(
        self,
        members: list[Member],
        economy: bytes,
        seen: Seen,
        rng: random.Random,
        wallets: int,
        ds_rate: float,
    ) -> None:
        self.members = members
        self.economy = economy
        self.seen = seen
        self.rng = rng
        self.ds_rate = ds_rate
        self.stop = False
        self.next_key = 0
        self.wallets: list[WalletState] = [self.new_wallet() for _ in range(wallets)]
        self.all_wallets: list[WalletState] = list(self.wallets)
        self.submitted = 0

    def new_wallet(self) -> WalletState:
        k = key(self.next_key, "killloop")
        self.next_key += 1
        return WalletState(f"w{self.next_key - 1}", k)

    # -- nodes --

    def pick(self, exclude: tuple[Member, ...] = ()) -> Member | None:
        live = [m for m in self.members if m.up and m not in exclude]
        if not live:
            return None
        weights = [1 if m.validator else GATEWAY_WEIGHT for m in live]
        return self.rng.choices(live, weights)[0]

    async def pick_wait(self, exclude: tuple[Member, ...] = ()) -> Member:
        while True:
            m = self.pick(exclude) or self.pick()
            if m is not None:
                return m
            await trio.sleep(0.1)

    # -- one entry to a final status --

    async def submit(self, m: Member, signed: SignedEntry) -> None:
        client = m.client
        if not m.up or client is None:
            raise Unavailable(f"{m.name} down")
        try:
            await client.entry_submit(signed.entry, signed.signature)
        except ClientError as exc:
            raise Unavailable(f"{m.name}: {exc}") from None

    async def get(self, m: Member, entry_id: bytes) -> EntryStatus | None:
        """The status on ``m``; None if ``m`` does not know the entry."""
        client = m.client
        if not m.up or client is None:
            raise Unavailable(f"{m.name} down")
        try:
            st = await client.entry_get(entry_id)
        except RpcError as exc:
            if exc.reason == "unknown_entry":
                return None
            raise Unavailable(f"{m.name}: {exc}") from None
        except ClientError as exc:
            raise Unavailable(f"{m.name}: {exc}") from None
        self.seen.record(m.name, st)
        return st

    async def drive(self, signed: SignedEntry, first: Member) -> tuple[EntryStatus | None, Member]:
        """Submit ``signed`` to ``first`` and poll until final; on a node
        that is down, dies, forgets the entry or keeps it pending too long,
        submit the same entry elsewhere. None: given up."""
        seen = self.seen
        entry_id = signed.id
        if entry_id not in seen.entries:
            seen.entries[entry_id] = signed
            self.submitted += 1
            seen.submitted_at[entry_id] = seen.t()
            seen.first_node[entry_id] = first.name
        node = first
        start = now_s()
        retryable_left = RETRYABLE_RESUBMITS
        while True:
            if now_s() - start > GIVE_UP_S:
                return None, node
            try:
                await self.submit(node, signed)
            except Unavailable:
                seen.resubmissions["submit failed (node down or dying)"] += 1
                seen.resubmitted.add(entry_id)
                node = await self.pick_wait((node,))
                await trio.sleep(0.05)
                continue
            on_node = now_s()
            while True:
                try:
                    st = await self.get(node, entry_id)
                except Unavailable:
                    seen.resubmissions["node died while polling"] += 1
                    seen.resubmitted.add(entry_id)
                    node = await self.pick_wait((node,))
                    break
                if st is None:
                    seen.anomaly(
                        f"{node.name} answered unknown_entry for {short(entry_id)} after "
                        "accepting its submission"
                    )
                    seen.resubmissions["unknown after submit"] += 1
                    seen.resubmitted.add(entry_id)
                    break
                if st.status == "refused" and st.retryable and retryable_left > 0:
                    retryable_left -= 1
                    seen.resubmissions["refused retryable"] += 1
                    seen.resubmitted.add(entry_id)
                    node = await self.pick_wait((node,))
                    break
                if st.final:
                    return st, node
                if now_s() - on_node > STALL_S:
                    seen.resubmissions[f"pending > {STALL_S:.0f} s"] += 1
                    seen.resubmitted.add(entry_id)
                    node = await self.pick_wait((node,))
                    break
                if now_s() - start > GIVE_UP_S:
                    return None, node
                await trio.sleep(POLL_S)

    # -- building entries --

    def sign(self, w: WalletState, amount: int, to: WalletState | None = None) -> SignedEntry:
        if to is None:
            others = [x for x in self.wallets if x is not w]
            to = self.rng.choice(others)
        ts = max(int(time.time() * 1000), w.ts)
        entry = Entry(
            self.economy, w.key.public, w.seq + 1, w.head, ts, Transfer(to.key.public, amount, "")
        )
        return entry.sign(w.key)

    def adopt(self, w: WalletState, signed: SignedEntry) -> None:
        w.seq, w.head, w.ts = signed.entry.seq, signed.id, signed.entry.ts_ms

    async def account(self, w: WalletState) -> list[tuple[str, int, bytes]]:
        """(node, seq, head) of ``w`` on every live node that answers."""
        out = []
        for m in list(self.members):
            if not m.up or m.client is None:
                continue
            try:
                info = await m.client.account_get(self.economy, w.key.did)
            except ClientError:
                continue
            out.append((m.name, info.seq, info.head))
        return out

    async def learn(self, w: WalletState, candidates: list[SignedEntry]) -> SignedEntry | None:
        """Which of ``candidates`` (all for slot w.seq + 1) holds the slot,
        from account_get on the live nodes; None if no node shows the slot
        taken within a few seconds."""
        slot = w.seq + 1
        by_id = {c.id: c for c in candidates}
        deadline = now_s() + 10
        while now_s() < deadline:
            for node, seq, head in await self.account(w):
                if seq > slot:
                    self.seen.anomaly(f"{w.name}: {node} shows seq {seq} > slot {slot}")
                if seq == slot:
                    if head not in by_id:
                        self.seen.anomaly(
                            f"{w.name}: {node} shows slot {slot} held by {short(head)}, "
                            "none of the wallet's entries"
                        )
                        return None
                    return by_id[head]
            await trio.sleep(0.25)
        return None

    def retire(self, w: WalletState, why: str) -> None:
        w.retired = True
        self.seen.retired.append((w.name, why))
        fresh = self.new_wallet()
        self.wallets[self.wallets.index(w)] = fresh
        self.all_wallets.append(fresh)

    # -- the rounds --

    async def normal(self, w: WalletState) -> None:
        signed = self.sign(w, self.rng.randint(1, 20))
        st, node = await self.drive(signed, await self.pick_wait())
        if st is None:
            self.retire(w, f"entry {short(signed.id)} not final after {GIVE_UP_S:.0f} s")
            self.seen.anomaly(f"{w.name}: entry {short(signed.id)} never final (last {node.name})")
            return
        if st.certified:
            self.adopt(w, signed)
            return
        self.seen.refused_outcome[signed.id] = (st.reason or "", bool(st.retryable))
        # A refusal of a plain (non-conflicting) transfer: see whether it got
        # the slot after all, else give the wallet up.
        won = await self.learn(w, [signed])
        if won is not None:
            self.seen.anomaly(
                f"{w.name}: entry {short(signed.id)} refused ({st.reason}) by {node.name} but "
                "holds its slot"
            )
            self.adopt(w, won)
            return
        if not st.retryable:
            self.seen.anomaly(
                f"{w.name}: plain entry {short(signed.id)} refused as final by {node.name}: "
                f"{st.reason}: {st.detail}"
            )
        self.retire(w, f"entry {short(signed.id)} refused: {st.reason}")

    async def double_spend(self, w: WalletState) -> None:
        others = [x for x in self.wallets if x is not w]
        to_a, to_b = self.rng.sample(others, 2)
        a = self.sign(w, self.rng.randint(1, 20), to_a)
        b = self.sign(w, self.rng.randint(21, 40), to_b)
        n1 = await self.pick_wait()
        n2 = await self.pick_wait((n1,))
        results: dict[bytes, EntryStatus | None] = {}

        async def one(signed: SignedEntry, node: Member) -> None:
            results[signed.id], _ = await self.drive(signed, node)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, a, n1)
            nursery.start_soon(one, b, n2)
        certified = [s for s in (a, b) if (st := results[s.id]) is not None and st.certified]
        for s in (a, b):
            st = results[s.id]
            if st is not None and st.status == "refused":
                self.seen.refused_outcome[s.id] = (st.reason or "", bool(st.retryable))
        slot = w.seq + 1
        if len(certified) == 2:
            self.seen.anomaly(
                f"{w.name}: BOTH {short(a.id)} and {short(b.id)} reported certified for slot {slot}"
            )
        won = await self.learn(w, [a, b])
        if certified and won is None:
            self.seen.anomaly(
                f"{w.name}: {short(certified[0].id)} certified but no live node shows it at "
                f"slot {slot} within 10 s"
            )
            won = certified[0]
        if won is not None and certified and won.id != certified[0].id:
            self.seen.anomaly(
                f"{w.name}: slot {slot} reported certified for {short(certified[0].id)} but "
                f"account_get shows {short(won.id)}"
            )
        if won is not None and not certified:
            self.seen.anomaly(
                f"{w.name}: slot {slot} held by {short(won.id)} although neither entry was "
                "reported certified"
            )
        how = "won" if won is not None else "slot lost (votes split)"
        if any(results[s.id] is None for s in (a, b)):
            how += ", one never final"
        self.seen.double_spends.append(
            (w.key.public, slot, a.id, b.id, None if won is None else won.id, how)
        )
        if won is not None:
            self.adopt(w, won)
        else:
            self.retire(w, f"double spend at slot {slot}: {how}")

    async def wallet_loop(self, index: int) -> None:
        while not self.stop:
            w = self.wallets[index]
            w.busy = True
            if self.rng.random() < self.ds_rate and w.seq > 0:
                await self.double_spend(w)
            else:
                await self.normal(w)
            w.busy = False
            await trio.sleep(self.rng.uniform(0, 0.05))


# -- the run ---------------------------------------------------------------------------------


async def killer(
    members: list[Member], seen: Seen, rng: random.Random, kills: int, done: trio.Event
) -> None:
    for i in range(kills):
        # 1-3 s after the previous victim serves its RPC again: a restart
        # takes seconds (imports), so "one down at a time" rules the pace.
        await trio.sleep(rng.uniform(1, 3))
        victim = rng.choice(members)
        killed_at = seen.t()
        await victim.kill9()
        seen.kills[victim.name] += 1
        down = rng.uniform(0.5, 2)
        await trio.sleep(down)
        begun_at = seen.t()
        others = [m.address for m in members if m is not victim]
        for attempt in range(3):
            try:
                await victim.start(others)
                break
            except (RuntimeError, AssertionError) as exc:
                tail = "".join(victim.log_files[-1].read_text().splitlines(True)[-5:])
                seen.restart_failures.append(f"{victim.name} attempt {attempt + 1}: {exc}\n{tail}")
                print(f"restart of {victim.name} failed: {exc}", flush=True)
                if victim.proc is not None and victim.proc.alive():
                    await trio.to_thread.run_sync(victim.proc.kill9)
                if attempt == 1:  # the port may have been taken meanwhile
                    victim.port = free_port()
                await trio.sleep(1)
        else:
            raise RuntimeError(f"{victim.name} could not be restarted")
        seen.timeline.append((victim.name, killed_at, begun_at, seen.t()))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1} kills, t={seen.t():.0f} s", flush=True)
    done.set()


async def snapshot(members: list[Member], economy: bytes, wallets: list[WalletState]) -> list[Any]:
    """What each node says over the RPC: certificates held and every wallet's account."""
    out = []
    for m in members:
        assert m.client is not None
        try:
            [summary] = [e for e in await m.client.economy_list() if e.id == economy]
            accounts = []
            for w in wallets:
                info = await m.client.account_get(economy, w.key.did)
                accounts.append((info.balance, info.seq, info.head))
            out.append((summary.certificates, accounts))
        except ClientError as exc:
            out.append(("error", str(exc)))
    return out


async def converge(
    members: list[Member], economy: bytes, wallets: list[WalletState], timeout: float
) -> tuple[bool, float, list[Any]]:
    t0 = now_s()
    snap: list[Any] = []
    while now_s() - t0 < timeout:
        snap = await snapshot(members, economy, wallets)
        if snap[0][0] != "error" and all(s == snap[0] for s in snap):
            return True, now_s() - t0, snap
        await trio.sleep(0.5)
    return False, now_s() - t0, snap


async def sweep(members: list[Member], seen: Seen) -> None:
    """entry_get of every entry ever submitted, on every node (JSON-RPC
    batches; the statuses only — the stores are audited offline)."""
    ids = list(seen.entries)

    async def one(m: Member) -> None:
        assert m.client is not None
        for k in range(0, len(ids), 100):
            chunk = ids[k : k + 100]
            calls = [("entry_get", {"id": "0x" + i.hex()}) for i in chunk]
            try:
                answers = await m.client.batch(calls)
            except ClientError as exc:
                answers = [exc] * len(chunk)
            for entry_id, a in zip(chunk, answers, strict=True):
                if isinstance(a, RpcError) and a.reason == "unknown_entry":
                    seen.sweep[entry_id][m.name] = ("unknown", None, None)
                elif isinstance(a, Exception):
                    seen.sweep[entry_id][m.name] = (f"error: {a}", None, None)
                else:
                    seen.sweep[entry_id][m.name] = (
                        a["status"],
                        a.get("reason"),
                        a.get("retryable"),
                    )

    async with trio.open_nursery() as nursery:
        for m in members:
            nursery.start_soon(one, m)


async def start_all(members: list[Member]) -> None:
    """Start every process at once, each bootstrapping to all the others."""
    async with trio.open_nursery() as nursery:
        for m in members:
            nursery.start_soon(m.start, [o.address for o in members if o is not m])


async def stop_all(members: list[Member], seen: Seen, phase: str) -> None:
    for m in members:
        if m.proc is not None and m.proc.alive():
            code = await m.terminate()
            seen.clean_stops.append((f"{m.name} ({phase})", code))


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    # The killer has its own generator: the victims and their timings depend
    # on the seed only, not on how the wallets' rounds interleave.
    rng = random.Random(args.seed)
    kill_rng = random.Random(f"kill/{args.seed}")
    logs = root / "logs"
    logs.mkdir()
    vdirs = setup(root, 4, "validator")
    [gdir] = setup(root, 1, "gateway")
    vkeys = [read_key(d / "node.key") for d in vdirs]
    signed = sign_genesis(genesis(validators=vkeys, default_limit=10**9), vkeys)
    gfile = root / "economy.genesis"
    gfile.write_bytes(signed.encode())
    import_economy([*vdirs, gdir], gfile)
    economy = signed.genesis.id
    members = [
        Member(
            name,
            d,
            name != "gateway",
            logs,
            free_port(),
            peer_id_of(read_key(d / "node.key").public),
        )
        for name, d in [*((f"validator{i}", d) for i, d in enumerate(vdirs)), ("gateway", gdir)]
    ]

    seen = Seen(now_s())
    await start_all(members)
    print(f"5 processes up in {seen.t():.1f} s; economy 0x{economy.hex()}", flush=True)
    await trio.sleep(2)

    load = Load(members, economy, seen, rng, args.wallets, args.double_spend_rate)
    kills_done = trio.Event()
    t_load = now_s()
    async with trio.open_nursery() as nursery:
        for i in range(args.wallets):
            nursery.start_soon(load.wallet_loop, i)
        await killer(members, seen, kill_rng, args.kills, kills_done)
        # Let the last restart settle under load, then stop the load: wallets
        # finish the entry they are on (bounded), the rest is cancelled.
        await trio.sleep(2)
        load.stop = True
        print(f"kills done at t={seen.t():.0f} s; stopping the load ...", flush=True)
        with trio.move_on_after(GIVE_UP_S + 30):
            while any(t for t in nursery.child_tasks):
                await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    load_s = now_s() - t_load

    # Everything stopped cleanly and started again, then converged.
    for c in (c for m in members for c in m.clients):
        await c.aclose()
    for m in members:
        m.clients.clear()
    await stop_all(members, seen, "after load")
    await start_all(members)
    ok, conv_s, snap = await converge(members, economy, load.all_wallets, args.converge_s)
    print(
        f"converged over the RPC: {ok} in {conv_s:.1f} s; sweeping entry statuses ...", flush=True
    )
    await sweep(members, seen)
    for c in (c for m in members for c in m.clients):
        await c.aclose()
    await stop_all(members, seen, "final")
    return {
        "members": members,
        "economy": economy,
        "seen": seen,
        "load": load,
        "load_s": load_s,
        "converged": (ok, conv_s, snap),
        "root": root,
    }


# -- offline checks --------------------------------------------------------------------------


@dataclass
class StoreView:
    name: str
    chains: dict[tuple[bytes, int], bytes]
    certs: dict[bytes, tuple[bytes, int]]  # id -> (author, seq), applied certificates
    parked: dict[bytes, tuple[bytes, int]]
    accounts: dict[bytes, Any]
    refusals: dict[bytes, Any]


def read_store(name: str, datadir: Path, economy: bytes, ids: list[bytes]) -> StoreView:
    store = Store(datadir / "store")
    try:
        chains = store.chain_ids(economy)
        certs: dict[bytes, tuple[bytes, int]] = {}
        # Every applied certificate is indexed in its chain: read each back
        # and check it is the entry at that slot.
        for entry_id in chains.values():
            raw = store.certificate_bytes(entry_id)
            if raw is not None:
                c = Certificate.decode(raw)
                certs[entry_id] = (c.entry.author, c.entry.seq)
        parked = {c.entry_id: (c.entry.author, c.entry.seq) for c in store.parked(economy)}
        refusals = {i: r for i in ids if (r := store.refusal(i)) is not None}
        return StoreView(name, chains, certs, parked, store.accounts(economy), refusals)
    finally:
        store.close()


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


@dataclass
class LoggedTraceback:
    path: Path
    line: int  # 1-based, of "Traceback (most recent call last):"
    logged_by: str  # the log line the traceback belongs to
    exception: str  # its last line: "module.Error: text"
    after_sigterm: bool
    text: str

    def summary(self) -> str:
        when = "during the clean stop" if self.after_sigterm else "while running"
        return (
            f"{self.path.name}:{self.line} ({when}): {self.logged_by.strip()} -> {self.exception}"
        )


def tracebacks(path: Path) -> list[LoggedTraceback]:
    """Every Python traceback in a process's stderr, with the log line it
    follows and the exception it ends with."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    out = []
    stopping = False
    for n, line in enumerate(lines):
        stopping = stopping or "received SIGTERM" in line
        if not line.startswith("Traceback"):
            continue
        logged_by = next((x for x in reversed(lines[:n]) if _STAMP.match(x)), "")
        end = n + 1
        while end < len(lines) and (lines[end].startswith(" ") or not lines[end]):
            end += 1
        exception = lines[end] if end < len(lines) else "?"
        text = "\n".join(lines[n : end + 1])
        out.append(LoggedTraceback(path, n + 1, logged_by, exception, stopping, text))
    return out


def error_lines(members: list[Member]) -> Counter[str]:
    """ERROR / CRITICAL log lines per logger, over every incarnation."""
    out: Counter[str] = Counter()
    for m in members:
        for path in m.log_files:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split(" ", 4)
                if _STAMP.match(line) and len(parts) > 3 and parts[2] in ("ERROR", "CRITICAL"):
                    out[f"{parts[2]} {parts[3].rstrip(':')}"] += 1
    return out


def check(result: dict[str, Any]) -> list[tuple[str, bool, list[str]]]:
    members: list[Member] = result["members"]
    seen: Seen = result["seen"]
    economy: bytes = result["economy"]
    ids = list(seen.entries)
    views = [read_store(m.name, m.datadir, economy, ids) for m in members]
    out: list[tuple[str, bool, list[str]]] = []

    # 1. one entry id per (author, seq) across all stores
    slots: dict[tuple[bytes, int], dict[bytes, list[str]]] = defaultdict(lambda: defaultdict(list))
    for v in views:
        for slot, i in v.chains.items():
            slots[slot][i].append(f"{v.name}:chain")
        for i, slot in v.certs.items():
            slots[slot][i].append(f"{v.name}:cert")
        for i, slot in v.parked.items():
            slots[slot][i].append(f"{v.name}:parked")
    bad = []
    for (author, seq), found in slots.items():
        if len(found) > 1:
            where = "; ".join(f"{short(i)} in {','.join(w)}" for i, w in found.items())
            bad.append(f"author {short(author)} seq {seq}: {where}")
    out.append(("1. at most one entry id per (author, seq) across all stores", not bad, bad))

    # 2. every entry reported certified is in every store
    bad = []
    for i, nodes in seen.certified.items():
        for v in views:
            if i not in v.certs:
                e = seen.entries[i].entry if i in seen.entries else None
                slot = (e.author, e.seq) if e else None
                held = v.chains.get(slot) if slot else None
                bad.append(
                    f"{short(i)} (reported certified by {','.join(sorted(nodes))}) missing in "
                    f"{v.name}: parked={i in v.parked}, its slot holds "
                    f"{short(held) if held else 'nothing'}, refusal={v.refusals.get(i)}"
                )
    out.append(("2. every entry reported certified is in every store", not bad, bad))

    # 3. identical accounts and chains; balances sum to zero
    bad = []
    ref = views[0]
    for v in views[1:]:
        if v.accounts != ref.accounts:
            for acct in sorted(set(v.accounts) | set(ref.accounts)):
                a, b = ref.accounts.get(acct), v.accounts.get(acct)
                if a != b:
                    bad.append(f"account {short(acct)}: {ref.name} {a} vs {v.name} {b}")
        if v.chains != ref.chains:
            for slot in sorted(set(v.chains) | set(ref.chains)):
                a2, b2 = ref.chains.get(slot), v.chains.get(slot)
                if a2 != b2:
                    bad.append(
                        f"chain {short(slot[0])}#{slot[1]}: {ref.name} "
                        f"{short(a2) if a2 else None} vs {v.name} {short(b2) if b2 else None}"
                    )
    load: Load = result["load"]
    for w in load.all_wallets:
        acct = ref.accounts.get(w.key.public)
        stored = (acct.seq, acct.head) if acct is not None else (0, ZERO_ID)
        if not w.busy and stored != (w.seq, w.head):
            bad.append(
                f"wallet {w.name} holds seq {w.seq} head {short(w.head)}, the stores seq "
                f"{stored[0]} head {short(stored[1])}"
            )
    for v in views:
        total = sum(a.balance for a in v.accounts.values())
        if total != 0:
            bad.append(f"{v.name}: balances sum to {total}, not 0")
        if v.parked:
            bad.append(f"{v.name}: {len(v.parked)} certificates still parked")
    out.append(
        (
            "3. identical accounts (balance, seq, head) and chains in every store, as each "
            "wallet saw its own chain",
            not bad,
            bad,
        )
    )

    # 4. certified never later refused (during the run, or in the final sweep)
    bad = []
    for i in seen.certified:
        reports = seen.statuses[i]
        first = min(t for t, _, s, _, _ in reports if s == "certified")
        for t, node, s, reason, retryable in reports:
            if s == "refused" and t > first:
                bad.append(
                    f"{short(i)} certified at {first:.1f} s, refused by {node} at {t:.1f} s "
                    f"({reason}, retryable={retryable})"
                )
    for i, answers in seen.sweep.items():
        stored = any(i in v.certs for v in views)
        for node, (s, reason, _) in answers.items():
            if (i in seen.certified or stored) and s != "certified":
                bad.append(f"sweep: {short(i)} is certified but {node} says {s} ({reason})")
            if s == "certified" and not stored:
                bad.append(f"sweep: {node} says {short(i)} certified, in no store")
    out.append(("4. no entry reported certified was reported refused", not bad, bad))

    # 5. no traceback in any process's stderr
    bad = [tb.summary() for m in members for path in m.log_files for tb in tracebacks(path)]
    out.append(("5. no Python traceback in any process's stderr", not bad, bad))

    # 6. clean stops exit 0
    bad = [f"{name}: exit code {code}" for name, code in seen.clean_stops if code != 0]
    out.append(("6. every clean stop (SIGTERM) exited 0", not bad, bad))
    dump(result["root"], seen, views)
    return out


def dump(root: Path, seen: Seen, views: list[StoreView]) -> None:
    """entries.txt: every entry submitted, with every status reported and
    where each store holds it (for investigating a failure)."""
    with (root / "kills.txt").open("w") as f:
        f.write(f"# seconds since start; start (wall clock) {seen.t0_wall:.3f}\n")
        f.write("# victim      killed   restart  serving  down(s)\n")
        for name, killed, begun, serving in seen.timeline:
            f.write(
                f"{name:11} {killed:8.2f} {begun:8.2f} {serving:8.2f} {serving - killed:6.2f}\n"
            )
    names = {}
    with (root / "entries.txt").open("w") as f:
        for i, signed in sorted(
            seen.entries.items(), key=lambda kv: (kv[1].entry.author, kv[1].entry.seq)
        ):
            e = signed.entry
            author = names.setdefault(e.author, f"a{len(names)}")
            f.write(
                f"{i.hex()} author {author}={e.author.hex()[:16]} seq {e.seq} "
                f"submitted at {seen.submitted_at.get(i, -1):.2f}s\n"
            )
            for t, node, st, reason, retryable in seen.statuses.get(i, []):
                if st != "pending" or reason:
                    f.write(f"    {t:8.2f}s {node:10} {st} {reason or ''} {retryable}\n")
            for node, answer in sorted(seen.sweep.get(i, {}).items()):
                f.write(f"    sweep     {node:10} {answer}\n")
            for v in views:
                where = (
                    "chain"
                    if v.chains.get((e.author, e.seq)) == i
                    else "parked"
                    if i in v.parked
                    else "absent"
                )
                refusal = v.refusals.get(i)
                f.write(f"    store     {v.name:10} {where} refusal={refusal}\n")


def report(result: dict[str, Any], checks: list[tuple[str, bool, list[str]]], t: float) -> None:
    seen: Seen = result["seen"]
    load: Load = result["load"]
    ok, conv_s, _ = result["converged"]
    certified = set(seen.certified)
    refused = Counter(seen.refused_outcome[i] for i in seen.refused_outcome if i not in certified)
    ds = seen.double_spends
    ds_won = sum(1 for d in ds if d[4] is not None)
    slot_certs = [sum(1 for i in (d[2], d[3]) if i in certified) for d in ds]
    print()
    per = ", ".join(f"{k} {v}" for k, v in sorted(seen.kills.items()))
    print(f"kills: {sum(seen.kills.values())} ({per})")
    if seen.timeline:
        starts = sorted(serving - begun for _, _, begun, serving in seen.timeline)
        downs = sorted(serving - killed for _, killed, _, serving in seen.timeline)
        print(
            f"restart (spawn to serving RPC): p50 {starts[len(starts) // 2]:.1f} s, max "
            f"{starts[-1]:.1f} s; down per kill: p50 {downs[len(downs) // 2]:.1f} s, max "
            f"{downs[-1]:.1f} s (timeline: {result['root'] / 'kills.txt'})"
        )
    print(f"restart failures: {len(seen.restart_failures)}")
    for f in seen.restart_failures:
        print("   ", f.replace("\n", "\n    "))
    print(f"entries submitted (distinct signed entries): {load.submitted}")
    print(f"certified (reported by some node): {len(certified)}")
    print(
        "refused (the wallet's outcome, not certified later), by reason: "
        + (
            ", ".join(
                f"{r} ({'retryable' if x else 'final'}) {n}"
                for (r, x), n in sorted(refused.items())
            )
            or "none"
        )
    )
    print(
        "refusal reports (every entry_get that said refused): "
        + (
            ", ".join(
                f"{r} ({'retryable' if x else 'final'}) {n}"
                for (r, x), n in sorted(seen.refusal_reports.items())
            )
            or "none"
        )
    )
    print(
        "pending-with-reason reports: "
        + (", ".join(f"{r} {n}" for r, n in sorted(seen.pending_reasons.items())) or "none")
    )
    print(
        f"double-spend attempts: {len(ds)}; slot won by one entry: {ds_won}; slot lost "
        f"(votes split): {len(ds) - ds_won}; most certificates per slot: "
        f"{max(slot_certs, default=0)} (must be ≤ 1)"
    )
    print(
        f"resubmissions of the same entry: {sum(seen.resubmissions.values())} ("
        + ", ".join(f"{k}: {v}" for k, v in sorted(seen.resubmissions.items()))
        + ")"
    )
    again = seen.resubmitted
    print(
        f"entries submitted again: {len(again)}; of them certified {len(again & certified)}, "
        f"refused {len([i for i in again - certified if i in seen.refused_outcome])}"
    )
    took = {
        i: min(t for t, _, st, _, _ in seen.statuses[i] if st == "certified") - seen.submitted_at[i]
        for i in certified
        if i in seen.submitted_at
    }
    latency = sorted(took.values())
    slow = sorted((i for i in took if took[i] > 20), key=lambda i: -took[i])
    if latency:
        p50 = latency[len(latency) // 2]
        p99 = latency[min(len(latency) - 1, int(0.99 * len(latency)))]
        print(
            f"submit to first 'certified' seen (polled every {POLL_S:g} s): p50 {p50:.2f} s, "
            f"p99 {p99:.2f} s, max {latency[-1]:.2f} s; "
            f"{len(certified) / result['load_s']:.1f} certified/s"
        )
    print(
        f"entries certified more than 10 s after submission: "
        f"{sum(1 for x in latency if x > 10)}; more than 20 s: {len(slow)}"
    )
    for i in slow[:8]:
        t0 = seen.submitted_at[i]
        t1 = t0 + took[i]
        kills = [
            f"{name} {killed:.0f}-{serving:.0f}"
            for name, killed, _, serving in seen.timeline
            if serving >= t0 - 10 and killed <= t1
        ]
        print(
            f"    {short(i)} submitted to {seen.first_node[i]} at {t0:.1f} s, certified at "
            f"{t1:.1f} s; down meanwhile: {', '.join(kills) or 'none'}"
        )
    print(f"wallets used: {len(load.all_wallets)}; retired: {len(seen.retired)}")
    for name, why in seen.retired:
        if "votes split" not in why:
            print(f"    {name}: {why}")
    print(f"anomalies seen by the wallets: {len(seen.anomalies)}")
    for a in seen.anomalies[:30]:
        print("   ", a)
    print(f"load phase: {result['load_s']:.0f} s; after a full restart, converged: {ok}", end="")
    print(f" in {conv_s:.1f} s")
    errors = error_lines(result["members"])
    print(
        "ERROR log lines (libp2p logs failed dials at ERROR): "
        + (", ".join(f"{k} {v}" for k, v in errors.most_common()) or "none")
    )
    print(f"total time: {t:.0f} s")
    print()
    kinds: dict[str, LoggedTraceback] = {}
    for m in result["members"]:
        for path in m.log_files:
            for tb in tracebacks(path):
                kinds.setdefault(tb.exception, tb)
    for tb in kinds.values():
        print(f"first traceback ending in {tb.exception!r}, {tb.path.name}:{tb.line}:")
        print("    " + tb.logged_by.strip())
        print("    " + tb.text.replace("\n", "\n    "))
    print(f"per-entry record: {result['root'] / 'entries.txt'}")
    print()
    for name, passed, details in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
        for d in details[:20]:
            print("      ", d)
        if len(details) > 20:
            print(f"       … and {len(details) - 20} more")


def cli() -> None:
    parser = argparse.ArgumentParser(description="kill -9 loop under load (run by hand)")
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wallets", type=int, default=8)
    parser.add_argument("--double-spend-rate", type=float, default=0.08)
    parser.add_argument("--converge-s", type=float, default=90)
    parser.add_argument("--quick", action="store_true", help="a short run: 6 kills")
    args = parser.parse_args()
    if args.quick:
        args.kills, args.converge_s = 6, 60
    root = Path(tempfile.mkdtemp(prefix="mycelia-killloop-"))
    print(f"kill loop in {root} (seed {args.seed}, {args.kills} kills)", flush=True)
    t0 = now_s()
    try:
        result = trio.run(run, args, root)
    finally:
        kill_everything()
    checks = check(result)
    report(result, checks, now_s() - t0)
    sys.exit(0 if all(passed for _, passed, _ in checks) else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli()
