"""Ingest benchmark: signed readings accepted per second, against the
signature verification rates measured in the same run.

Run by hand: ``python -m bench.ingest`` (about a minute; ``--quick`` for a
short run). Prints, each with its limit measured in the same run:

* the verification rates: Ed25519 (libsodium through PyNaCl,
  ``crypto_sign_open``, as ``protocol/keys.py`` calls it) and P-256 (OpenSSL through
  ``cryptography``), on one thread and on one thread per core at once
  (both libraries release the GIL, so the second figure is what the
  machine can verify);
* readings accepted per second through the HTTP batch endpoint in msgpack
  (batches of ``--batch``, ``--connections`` keep-alive connections at
  once), the same in JSON, and through the internal path
  (``Ingest.ingest``, what the HTTP handler calls, with as many concurrent
  callers); each as a ratio to the one-core and the all-cores Ed25519 rate;
* P-256 readings through the HTTP msgpack endpoint, against the P-256
  rates.

Targets (issue 15): HTTP msgpack ≥ 12,000 readings/s on one node on a
2-core machine and ≥ 0.4 of the all-cores Ed25519 rate; JSON ≥ 2,000/s.

Set-up: one in-process node (fsync on, as in production), the only
validator of an impact economy, hosting ``--devices`` Ed25519 and
``--p256`` P-256 devices, each registered (certified) by its own owner.
Limits raised so that they are not what is measured: ``rate_per_device``
and ``rate_per_address`` 10⁹ readings/s (every connection comes from
127.0.0.1), ``max_connections_per_address`` 64; the batch and body limits
are the defaults (256 readings, 256 KiB). The attester keeps its
production setting (a round as soon as 4,096 readings wait): attesting is
part of what a host does per reading, so it runs during the timed phases
(its interval timer is set to an hour, so only the count starts a
round). Every reading is
signed before the clock starts; each connection owns a disjoint set of
devices, so concurrent requests never race for a counter, and the bench
checks that every reading it sent was accepted.

The HTTP client runs in another process (``multiprocessing``, spawned),
one thread per connection with ``http.client``: its CPU is on the same two
cores, as a LAN gateway's would not be, so the HTTP figures are a floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from nacl.bindings import crypto_sign_open

from mycelia.node.config import SensorsConfig
from mycelia.node.daemon import Node, NodeSettings
from mycelia.node.ingest import Ingest
from mycelia.node.submitter import CERTIFIED
from mycelia.protocol import P256, DeviceKey, DeviceRegister, Entry, Reading, SigningKey, codec
from mycelia.protocol.domains import READING
from mycelia.testing.economies import ENERGY, device_key, impact_genesis, key, sign_genesis

MSGPACK, JSON = "application/msgpack", "application/json"
CORES = len(os.sched_getaffinity(0))


# -- the limits: verification rates ------------------------------------------------------------


def _rate(fn: Callable[[], object], seconds: float, threads: int) -> float:
    """Calls of ``fn`` per second, on ``threads`` threads at once."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def loop(i: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline:
            for _ in range(50):
                fn()
            n += 50
        counts[i] = n

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def verification_rates(seconds: float) -> dict[str, float]:
    """Ed25519 and P-256 verifications per second, on one thread and on
    one per core, over a 54-byte message (a reading's signing message)."""
    ed = device_key(0)
    p2 = device_key(0, P256)
    r = Reading(bytes(32), ed.device, 1, 1_600_000_000_000, "energy_wh", 1, 0)
    message = r.message
    ed_sig = ed.sign(READING, r.id)
    p2_sig = p2.sign(READING, r.id)
    p2_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p2.public)
    der = encode_dss_signature(
        int.from_bytes(p2_sig[:32], "big"), int.from_bytes(p2_sig[32:], "big")
    )
    ecdsa = ec.ECDSA(hashes.SHA256())

    signed = ed_sig + message  # the protocol verifies with crypto_sign_open

    def ed_verify() -> object:
        return crypto_sign_open(signed, ed.public)

    def p2_verify() -> object:
        p2_pub.verify(der, message, ecdsa)
        return None

    return {
        "ed25519/1": _rate(ed_verify, seconds, 1),
        f"ed25519/{CORES}": _rate(ed_verify, seconds, CORES),
        "p256/1": _rate(p2_verify, seconds, 1),
        f"p256/{CORES}": _rate(p2_verify, seconds, CORES),
    }


# -- the node ----------------------------------------------------------------------------------

HOST = key(0, "ingest-bench-host")


async def register(node: Node, owner: SigningKey, economy: bytes, dev: DeviceKey) -> None:
    body = DeviceRegister.make(dev, economy, owner.public, "solar-meter", HOST.public, (ENERGY,))
    acct = node.store.account(economy, owner.public)
    ts = max(int(time.time() * 1000), acct.ts_ms)
    signed = Entry(economy, owner.public, acct.seq + 1, acct.head, ts, body).sign(owner)
    await node.submit(signed)
    with trio.fail_after(60):
        status = await node.submitter.wait(signed.id)
    assert status.state == CERTIFIED, status


class Devices:
    """The registered devices and the next counter of each."""

    def __init__(self, economy: bytes, keys: list[DeviceKey]) -> None:
        self.economy = economy
        self.keys = keys
        self.next = {k.device: 1 for k in keys}

    def batches(self, owned: list[DeviceKey], n: int, size: int) -> list[list[Any]]:
        """``n`` batches of ``size`` signed readings (wire arrays) of the
        devices ``owned``, round robin, counters increasing."""
        out = []
        ts = int(time.time() * 1000)
        i = 0
        for _ in range(n):
            batch = []
            for _ in range(size):
                dev = owned[i % len(owned)]
                i += 1
                c = self.next[dev.device]
                self.next[dev.device] = c + 1
                r = Reading(self.economy, dev.device, c, ts, "energy_wh", c % 1000, 0)
                batch.append(r.sign(dev))
            out.append(batch)
        return out


def as_msgpack(batch: list[Any]) -> bytes:
    return codec.encode_trusted([r.to_wire() for r in batch])


def as_json(batch: list[Any]) -> bytes:
    def one(s: Any) -> dict[str, Any]:
        x = s.reading
        return {
            "economy": "0x" + x.economy.hex(),
            "device": "0x" + x.device.hex(),
            "counter": x.counter,
            "ts_ms": x.ts_ms,
            "metric": x.metric,
            "value": x.value,
            "exponent": x.exponent,
            "signature": "0x" + s.signature.hex(),
        }

    return json.dumps([one(s) for s in batch]).encode()


def split(keys: list[DeviceKey], parts: int) -> list[list[DeviceKey]]:
    return [keys[i::parts] for i in range(parts)]


# -- the HTTP client (another process) ---------------------------------------------------------


def _client(host: str, port: int, ctype: str, bodies: list[list[bytes]], out: Any, go: Any) -> None:
    """One thread per connection, each posting its bodies in order over one
    keep-alive connection; puts ``(seconds, accepted, refusals)`` on ``out``."""
    counts: list[Counter[str]] = [Counter() for _ in bodies]
    conns = [http.client.HTTPConnection(host, port, timeout=60) for _ in bodies]
    for c in conns:
        c.connect()

    def run(i: int) -> None:
        for body in bodies[i]:
            conns[i].request("POST", "/v1/readings", body, {"content-type": ctype})
            response = conns[i].getresponse()
            raw = response.read()
            if response.status != 200:
                counts[i][f"http {response.status}"] += 1
                continue
            results = msgpack.unpackb(raw) if ctype == MSGPACK else json.loads(raw)
            for r in results:
                counts[i][r["status"] if r["status"] == "accepted" else r["reason"]] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total: Counter[str] = sum(counts, Counter())
    out.put((elapsed, total.pop("accepted", 0), dict(total)))
    for c in conns:
        c.close()


async def http_phase(
    host: str, port: int, ctype: str, bodies: list[list[bytes]]
) -> tuple[float, int, dict[str, int]]:
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_client, args=(host, port, ctype, bodies, out, go))
    proc.start()
    try:
        await trio.sleep(1.5)  # the client process imports and connects
        go.set()
        while out.empty():
            await trio.sleep(0.02)
        result: tuple[float, int, dict[str, int]] = out.get()
        return result
    finally:
        await trio.to_thread.run_sync(proc.join, 30)


async def internal_phase(
    ingest: Ingest, batches: list[list[list[bytes]]]
) -> tuple[float, int, dict[str, int]]:
    """``Ingest.ingest`` called by one task per connection's worth of batches."""
    counts: Counter[str] = Counter()

    async def one(own: list[list[bytes]]) -> None:
        for items in own:
            for r in await ingest.ingest(list(items), "127.0.0.1"):
                counts["accepted" if r.accepted else r.reason or ""] += 1

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for own in batches:
            nursery.start_soon(one, own)
    elapsed = time.perf_counter() - t0
    accepted = counts.pop("accepted", 0)
    return elapsed, accepted, dict(counts)


# -- the run -----------------------------------------------------------------------------------


def report(
    name: str, elapsed: float, accepted: int, refused: dict[str, int], sent: int, limits: str
) -> float:
    rate = accepted / elapsed
    problem = "" if accepted == sent and not refused else f"  (!! sent {sent}, refused {refused})"
    print(f"{name}: {accepted:,} readings in {elapsed:.2f} s = {rate:,.0f}/s; {limits}{problem}")
    return rate


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mycelia-ingest-"))
    print(f"ingest bench in {root}; {CORES} cores; load average {os.getloadavg()}")
    rates = verification_rates(args.verify_seconds)
    ed1, edn = rates["ed25519/1"], rates[f"ed25519/{CORES}"]
    p1, pn = rates["p256/1"], rates[f"p256/{CORES}"]

    genesis = sign_genesis(impact_genesis(validators=[HOST]), [HOST])
    economy = genesis.genesis.id
    settings = NodeSettings(fsync=True, attest_interval_s=3600.0)
    config = SensorsConfig(
        enabled=True,
        host="127.0.0.1",
        port=0,
        rate_per_device=1e9,
        rate_per_address=1e9,
        max_connections_per_address=64,
    )
    ed_keys = [device_key(i) for i in range(args.devices)]
    p2_keys = [device_key(i, P256) for i in range(args.p256)]
    devices = Devices(economy, ed_keys + p2_keys)
    conns, size = args.connections, args.batch

    async with trio.open_nursery() as nursery:
        node = Node(HOST, root / "host", settings)
        await nursery.start(node.run)
        await node.add_economy(genesis)
        print(f"registering {len(devices.keys)} devices ...", flush=True)
        async with trio.open_nursery() as reg:
            for i, dev in enumerate(devices.keys):
                reg.start_soon(register, node, key(i, "ingest-bench-owner"), economy, dev)
        ingest = Ingest(node, config)
        host, port = await nursery.start(ingest.serve)

        def signed_bodies(
            keys: list[DeviceKey], n: int, encode: Callable[[list[Any]], bytes], parts: int = conns
        ) -> list[list[bytes]]:
            return [
                [encode(b) for b in devices.batches(own, n, size)] for own in split(keys, parts)
            ]

        print("signing readings ...", flush=True)
        n = args.batches
        warm = signed_bodies(ed_keys, 2, as_msgpack)
        one_conn = signed_bodies(ed_keys, n, as_msgpack, parts=1)
        mp = signed_bodies(ed_keys, n, as_msgpack)
        js = signed_bodies(ed_keys, max(1, n // 4), as_json)
        internal = [
            [[codec.encode_trusted(r.to_wire()) for r in b] for b in devices.batches(own, n, size)]
            for own in split(ed_keys, conns)
        ]
        pp = signed_bodies(p2_keys, max(1, n // 2), as_msgpack)

        def sent(bodies: list[list[Any]]) -> int:
            return sum(len(b) for b in bodies) * size

        async def phase(
            name: str, run: Any, bodies: list[list[Any]], one: float, every: float, what: str
        ) -> float:
            """Run one phase; print its rate against the verification rates
            ``one`` (one core) and ``every`` (all cores) of ``what``, and the
            node process's CPU per reading against the verification it needs
            (the HTTP client's CPU is its own process's, not counted)."""
            print(f"{name} ...", flush=True)
            cpu0 = time.process_time()
            elapsed, accepted, refused = await run
            cpu = (time.process_time() - cpu0) / max(1, accepted)
            rate = accepted / elapsed
            limits = (
                f"ratio {rate / one:.2f} of one core's {what} rate, "
                f"{rate / every:.2f} of {CORES} cores'"
            )
            report(name, elapsed, accepted, refused, sent(bodies), limits)
            verify_s = 1 / one
            print(
                f"    node CPU per reading {cpu * 1e6:,.0f} µs; its verification alone "
                f"{verify_s * 1e6:,.0f} µs; ratio {verify_s / cpu:.2f}"
            )
            return rate

        await http_phase(host, port, MSGPACK, warm)
        batches = f"batches of {size}"
        rates = {
            "msgpack1": await phase(
                f"HTTP msgpack, 1 connection, {batches}",
                http_phase(host, port, MSGPACK, one_conn),
                one_conn,
                ed1,
                edn,
                "Ed25519",
            ),
            "msgpack": await phase(
                f"HTTP msgpack, {conns} connections, {batches}",
                http_phase(host, port, MSGPACK, mp),
                mp,
                ed1,
                edn,
                "Ed25519",
            ),
            "json": await phase(
                f"HTTP JSON, {conns} connections, {batches}",
                http_phase(host, port, JSON, js),
                js,
                ed1,
                edn,
                "Ed25519",
            ),
            "internal": await phase(
                f"internal (Ingest.ingest), {conns} callers, {batches}",
                internal_phase(ingest, internal),
                internal,
                ed1,
                edn,
                "Ed25519",
            ),
        }
        p_rate = await phase(
            f"HTTP msgpack P-256, {conns} connections, {batches}",
            http_phase(host, port, MSGPACK, pp),
            pp,
            p1,
            pn,
            "P-256",
        )
        nursery.cancel_scope.cancel()

    print()
    print(f"Ed25519 verifications/s (libsodium): one thread {ed1:,.0f}, {CORES} threads {edn:,.0f}")
    print(f"P-256 verifications/s (OpenSSL):     one thread {p1:,.0f}, {CORES} threads {pn:,.0f}")
    http_rate, json_rate = rates["msgpack"], rates["json"]
    met = http_rate >= 12_000 and http_rate >= 0.4 * edn
    print(
        f"HTTP msgpack {http_rate:,.0f}/s: {'met' if met else 'NOT met'} "
        f"(≥ 12,000/s and ≥ {0.4 * edn:,.0f}/s = 0.4 × {CORES} cores; one connection "
        f"{rates['msgpack1']:,.0f}/s); "
        f"JSON {json_rate:,.0f}/s: {'met' if json_rate >= 2_000 else 'NOT met'} (≥ 2,000/s); "
        f"internal {rates['internal']:,.0f}/s; P-256 {p_rate:,.0f}/s"
    )
    print(f"load average at the end: {os.getloadavg()}")


def cli() -> None:
    parser = argparse.ArgumentParser(description="ingest benchmark (run by hand)")
    parser.add_argument("--devices", type=int, default=64, help="registered Ed25519 devices")
    parser.add_argument("--p256", type=int, default=16, help="registered P-256 devices")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=40, help="msgpack batches per connection")
    parser.add_argument("--verify-seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.devices, args.p256 = 10, 32, 8
    trio.run(main, args)


if __name__ == "__main__":
    cli()
