"""Devnet benchmark: 4 validator processes + 1 follower on loopback.

Run by hand: ``python -m bench.devnet`` (several minutes; ``--quick`` for a
short run). Prints, each with its limit measured in the same run:

* sustained certified transfers per second under saturation;
* submit-to-certified latency p50/p99 at 100 transfers/s offered;
* follower lag (certificates behind at the end of load, and seconds to
  catch up);
* RSS per node process, idle and after load;
* the cluster's cryptographic bound: Ed25519 operations a transfer costs
  across all nodes × the libsodium rate measured here × cores, and the
  ratio of the sustained rate to it;
* a fresh node syncing ``--sync-certs`` certificates (50,000 by default)
  from a serving process, in certificates per second;
* the CPU each role spends per certified transfer during the throughput
  phase — each validator process, the follower process (their own
  ``/proc/<pid>/stat`` utime + stime before and after) and the in-process
  gateway (this process: the gateway node and the wallets that sign the
  transfers) — against that role's own cryptographic work, timed with
  libsodium in the same run: a validator's author verification and vote
  signature (and, in brackets, with the 4 verifications of the
  certificate gossip brings it); the follower's certificate verification
  (author + 3 votes); the gateway's 5 verifications (below) and the
  wallet's signature. A ratio of 1.0 would mean the role does nothing but
  its cryptography. CPU time, unlike a rate, hardly moves when other work
  shares the cores, so these figures survive a busy machine; the load
  average is printed with them.

Load comes from an in-process *gateway* node (not a validator) that submits
signed transfers as the RPC will in the next issue; it competes for the
same two cores, as a wallet-facing node would.

Cryptographic cost per transfer (counted from the code paths):
each of the 4 validators verifies the author's signature in ``check`` and
signs a vote (2 ops, a sign costing about as much as a verify), then
verifies the certificate when it arrives by gossip (4: 3 votes + author);
the follower verifies the certificate (4); the gateway verifies the author
at submit (1) and each of 3-4 votes (4). That is 4 × 6 + 4 + 5 = 33.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import trio
from nacl.bindings import crypto_sign, crypto_sign_open

from mycelia.client.keyfile import read_key
from mycelia.node.daemon import Node, NodeSettings
from mycelia.node.store import Store
from mycelia.node.submitter import CERTIFIED
from mycelia.protocol import Certificate, Entry, Transfer, Vote
from mycelia.protocol.domains import VOTE
from mycelia.protocol.ledger import GapBuffer
from mycelia.protocol.quorum import make_bitmap
from mycelia.testing.cluster import Wallet
from mycelia.testing.economies import T0, genesis, key, sign_genesis
from mycelia.testing.processes import Proc, mycelia

OPS_PER_TRANSFER = 33


def libsodium_rate(seconds: float = 1.0) -> float:
    k = key(0, "bench")
    msg = VOTE.message(bytes(32))
    smsg = crypto_sign(msg, k._secret)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            crypto_sign_open(smsg, k.public)
        n += 200
    return n / (time.perf_counter() - t0)


def libsodium_sign_rate(seconds: float = 0.5) -> float:
    k = key(0, "bench")
    msg = VOTE.message(bytes(32))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            crypto_sign(msg, k._secret)
        n += 200
    return n / (time.perf_counter() - t0)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far, all threads (``/proc/<pid>/stat``
    utime + stime; the fields after the command name, which may hold
    spaces, so counted from its closing parenthesis)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def setup(root: Path, n: int, label: str) -> list[Path]:
    dirs = [root / f"{label}{i}" for i in range(n)]
    for d in dirs:
        r = mycelia("init", "--datadir", str(d))
        assert r.returncode == 0, r.stderr
    return dirs


def import_economy(dirs: list[Path], genesis_file: Path) -> None:
    for d in dirs:
        r = mycelia(
            "--config", str(d / "mycelia.toml"), "node", "import-economy", str(genesis_file)
        )
        assert r.returncode == 0, r.stderr


#: Production settings where the test helpers use fast ones.
PRODUCTION = ("sync.interval_s=30", "p2p.gossip_flush_ms=250")


async def start_procs(dirs: list[Path], bootstrap: list[str]) -> list[Proc]:
    procs: list[Proc] = []
    for d in dirs:
        peers = bootstrap + [p.address for p in procs]
        procs.append(await trio.to_thread.run_sync(Proc, d, peers, PRODUCTION))
    return procs


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def load(
    node: Node, economy: bytes, wallets: list[Wallet], seconds: float, rate: float | None
) -> tuple[int, list[float], int]:
    """Submit transfers for ``seconds``: at ``rate`` per second (None: as
    fast as the wallets' chains allow). Returns (certified, latencies,
    offers that found no idle wallet)."""
    idle = list(wallets)
    random.shuffle(idle)
    latencies: list[float] = []
    certified = 0
    skipped = 0
    rnd = random.Random(5)

    async def one(w: Wallet) -> None:
        nonlocal certified
        to = rnd.choice(wallets).key.public
        if to == w.key.public:
            to = wallets[0].key.public if w is not wallets[0] else wallets[1].key.public
        signed = w.transfer(economy, to, 1)
        t0 = time.monotonic()
        status = await node.submitter.wait(await node.submit(signed))
        if status.state == CERTIFIED:
            latencies.append(time.monotonic() - t0)
            certified += 1
            w.certified(signed)
        idle.append(w)

    deadline = time.monotonic() + seconds
    async with trio.open_nursery() as nursery:
        if rate is None:
            while time.monotonic() < deadline:
                while idle:
                    nursery.start_soon(one, idle.pop())
                await trio.sleep(0.005)
        else:
            interval = 1 / rate
            next_at = time.monotonic()
            while next_at < deadline:
                if idle:
                    nursery.start_soon(one, idle.pop())
                else:
                    skipped += 1
                next_at += interval
                await trio.sleep(max(0, next_at - time.monotonic()))
    return certified, latencies, skipped


def count_certs(datadir: Path, economy: bytes) -> int:
    store = Store(datadir / "store")
    try:
        return sum(store.heads(economy).values())
    finally:
        store.close()


def prebuilt_certificates(vkeys, economy: bytes, n: int, accounts: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    """``n`` certificates made directly (sign, vote, bitmap) without the
    ledger's checks: fast, and valid since amounts stay inside the limits."""
    wallets = [Wallet(key(i, "sync")) for i in range(accounts)]
    out = []
    for i in range(n):
        w = wallets[i % accounts]
        to = wallets[(i + 1) % accounts].key.public
        w.clock = max(w.clock, T0) + 1
        e = Entry(economy, w.key.public, w.seq + 1, w.head, w.clock, Transfer(to, 1))
        signed = e.sign(w.key)
        sigs = tuple(Vote.make(v, economy, 0, signed.id).signature for v in vkeys[:3])
        cert = Certificate(e, signed.signature, 0, make_bitmap(range(3), len(vkeys)), sigs)
        out.append(cert.encode())
        w.certified(signed)
    return out


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mycelia-devnet-"))
    print(f"devnet in {root}")
    vdirs = setup(root, 4, "validator")
    [fdir] = setup(root, 1, "follower")
    vkeys = [read_key(d / "node.key") for d in vdirs]
    signed = sign_genesis(genesis(validators=vkeys, default_limit=10**9), vkeys)
    gfile = root / "economy.genesis"
    gfile.write_bytes(signed.encode())
    import_economy([*vdirs, fdir], gfile)
    economy = signed.genesis.id

    load_before = os.getloadavg()
    sodium = libsodium_rate()
    signs = libsodium_sign_rate()
    cores = len(os.sched_getaffinity(0))
    bound = sodium * cores / OPS_PER_TRANSFER

    validators = await start_procs(vdirs, [])
    [follower] = await start_procs([fdir], [p.address for p in validators])
    procs = [*validators, follower]
    try:
        await trio.sleep(3)
        idle_rss = [p.rss_bytes() for p in procs]
        gateway = Node(
            key(0, "gateway"),
            root / "gateway",
            NodeSettings(request_timeout_s=10, fsync=True),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            await gateway.add_economy(signed)
            for p in validators:
                await gateway.p2p.connect(p.address)
            await trio.sleep(2)
            wallets = [Wallet(key(i, "devnet")) for i in range(args.wallets)]

            print(
                f"latency phase: 100 transfers/s offered for {args.seconds:.0f} s ...", flush=True
            )
            done, lat, skipped = await load(gateway, economy, wallets, args.seconds, 100.0)
            p50, p99 = percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000

            print(f"throughput phase: saturating for {args.seconds:.0f} s ...", flush=True)
            pids = [p.pid for p in procs] + [os.getpid()]
            cpu0 = [cpu_seconds(pid) for pid in pids]
            t0 = time.monotonic()
            sat_done, sat_lat, _ = await load(gateway, economy, wallets, args.seconds, None)
            sustained = sat_done / (time.monotonic() - t0)
            cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]

            total = sum(gateway.store.heads(economy).values())
            behind = total - count_certs(fdir, economy)
            t1 = time.monotonic()
            while count_certs(fdir, economy) < total and time.monotonic() - t1 < 60:
                await trio.sleep(0.2)
            catch_up = time.monotonic() - t1
            load_rss = [p.rss_bytes() for p in procs]
            nursery.cancel_scope.cancel()
    finally:
        logs = [p.stop()[1] for p in procs]
    for log in logs[:1]:
        for line in log.splitlines():
            if "served" in line or "gossip:" in line:
                print("validator0:", line.split(": ", 1)[-1])

    sync_rate = None
    sync_cpu = 0.0
    if args.sync_certs:
        print(f"sync phase: building {args.sync_certs} certificates ...", flush=True)
        [sdir] = setup(root, 1, "server")
        import_economy([sdir], gfile)
        blobs = prebuilt_certificates(vkeys, economy, args.sync_certs, 100)
        store = Store(sdir / "store")
        econ = store.add_economy_sync(signed)
        buf = GapBuffer()
        for i in range(0, len(blobs), 2000):
            store.apply_sync(econ, buf, [Certificate.decode(b) for b in blobs[i : i + 2000]])
        store.close()
        [server] = await start_procs([sdir], [])
        try:
            fresh = Node(
                key(1, "fresh"),
                root / "fresh",
                NodeSettings(bootstrap=(server.address,), follow=frozenset({economy})),
            )
            async with trio.open_nursery() as nursery:
                t0 = time.monotonic()
                c0 = time.process_time()
                await nursery.start(fresh.run)
                while sum(fresh.store.heads(economy).values()) < args.sync_certs:
                    await trio.sleep(0.1)
                    if time.monotonic() - t0 > 600:
                        break
                elapsed = time.monotonic() - t0
                got = sum(fresh.store.heads(economy).values())
                sync_rate = got / elapsed
                sync_cpu = (time.process_time() - c0) / max(got, 1)
                nursery.cancel_scope.cancel()
        finally:
            server.stop()

    mib = 1 << 20
    print()
    print(f"libsodium Ed25519 verifications/s (one core, this run): {sodium:,.0f}; cores: {cores}")
    print(
        f"cryptographic bound: {sodium:,.0f} × {cores} ÷ {OPS_PER_TRANSFER} ops/transfer = "
        f"{bound:,.0f} transfers/s"
    )
    print(
        f"sustained certified transfers/s: {sustained:,.0f} "
        f"(ratio to bound {sustained / bound:.2f}; target ≥ 300/s: "
        f"{'met' if sustained >= 300 else 'NOT met'}); "
        f"p50 under saturation {statistics.median(sat_lat) * 1000:.0f} ms"
    )
    print(
        f"at 100/s offered: {done} certified, {skipped} offers found no idle wallet; "
        f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms (targets 100 / 500 ms)"
    )
    print(
        f"follower: {behind} certificates behind at the end of load, caught up in {catch_up:.1f} s"
    )
    verify_s, sign_s = 1 / sodium, 1 / signs
    print(
        f"libsodium Ed25519 signatures/s (one core, this run): {signs:,.0f}; "
        f"load average before {load_before[0]:.2f}, now {os.getloadavg()[0]:.2f} "
        f"(1 min; {cores} cores shared with other work)"
    )
    roles = [
        *[(f"validator{i}", verify_s + sign_s, 5 * verify_s + sign_s) for i in range(4)],
        ("follower", 4 * verify_s, None),
        ("gateway+wallets", 5 * verify_s + sign_s, None),
    ]
    for (role, crypto, with_gossip), used in zip(roles, cpu, strict=True):
        per = used / max(sat_done, 1)
        extra = (
            ""
            if with_gossip is None
            else f" [with the gossiped certificate's 4 verifications: {with_gossip / per:.2f}]"
        )
        print(
            f"CPU per certified transfer, {role}: {per * 1e6:,.0f} µs; its cryptography "
            f"{crypto * 1e6:,.0f} µs; ratio {crypto / per:.2f}{extra}"
        )
    names = ["validator0", "validator1", "validator2", "validator3", "follower"]
    for name, a, b in zip(names, idle_rss, load_rss, strict=True):
        print(
            f"RSS {name}: idle {a / mib:.0f} MiB, after load {b / mib:.0f} MiB "
            f"(target idle ≤ 130 MiB)"
        )
    if sync_rate is not None:
        print(
            f"fresh node sync: {sync_rate:,.0f} certificates/s over {args.sync_certs} "
            f"(target ≥ 1,000/s); bound at 4 verifications each on {cores} cores: "
            f"{sodium * cores / 4:,.0f}/s, ratio {sync_rate / (sodium * cores / 4):.2f}"
        )
        # CPU time, unlike the rate, hardly moves when other work shares the cores
        crypto = 4 / sodium
        print(
            f"fresh node CPU per synced certificate: {sync_cpu * 1e6:,.0f} µs; its 4 "
            f"verifications alone: {crypto * 1e6:,.0f} µs; ratio {crypto / sync_cpu:.2f}"
        )


def cli() -> None:
    parser = argparse.ArgumentParser(description="devnet benchmark (run by hand)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--wallets", type=int, default=600)
    parser.add_argument("--sync-certs", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.wallets, args.sync_certs = 8, 200, 5_000
    trio.run(main, args)


if __name__ == "__main__":
    cli()
