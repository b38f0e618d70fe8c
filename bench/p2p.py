"""p2p benchmark: the latencies the p2p tests used to assert, measured here.

Run by hand: ``python -m bench.p2p [--requests N]``. Prints, each with its
limit measured in the same run:

* stream request round trip (``/mycelia``-style framed request/response on
  one libp2p connection over loopback), p50 and p99, against a raw trio TCP
  echo round trip on the same machine (the floor: no Noise, no yamux, no
  multistream);
* a handler slower than the request timeout: how long after the timeout
  the caller gets ``RequestTimeout``, as a ratio to the timeout;
* host start-up with mDNS on, against the same start with mDNS off
  (zeroconf's 1.6 s name probe must not be waited for);
* 20 gossip messages over 2 hops (a - b - c), paced 10 ms apart, against
  the pacing itself (200 ms).

No timing is asserted in the test suite; these figures are what
``tests/node/test_p2p.py`` checks only as behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import trio

from mycelia.node.p2p import P2P, RequestTimeout


def seed() -> bytes:
    return os.urandom(32)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def tcp_floor(n: int) -> list[float]:
    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, echo, 0)
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await stream.send_all(b"x" * 200)
            got = 0
            while got < 200:
                got += len(await stream.receive_some(4096))
            times.append(time.perf_counter() - t0)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return times


async def requests(n: int) -> tuple[list[float], float]:
    a, b = P2P(seed()), P2P(seed())

    async def echo(peer: str, data: bytes) -> bytes:
        return data

    async def slow(peer: str, data: bytes) -> bytes:
        await trio.sleep(5)
        return data

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        b.set_handler("/bench/echo/1", echo)
        b.set_handler("/bench/slow/1", slow)
        await a.connect(b.listen_addrs[0])
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await a.request(b.peer_id, "/bench/echo/1", b"x" * 200)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with contextlib.suppress(RequestTimeout):
            await a.request(b.peer_id, "/bench/slow/1", b"z", timeout_s=0.3)
        timeout_after = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return times, timeout_after


async def start_time(mdns: bool) -> float:
    node = P2P(seed(), mdns=mdns)
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        await nursery.start(node.run)
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return elapsed


class _Inbox:
    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.changed = trio.Event()

    async def __call__(self, origin: str, data: bytes) -> None:
        self.items.append(data)
        self.changed.set()
        self.changed = trio.Event()


async def two_hops() -> float:
    a, b, c = P2P(seed()), P2P(seed()), P2P(seed())
    async with trio.open_nursery() as nursery:
        for node in (a, b, c):
            await nursery.start(node.run)
        await a.connect(b.listen_addrs[0])
        await c.connect(b.listen_addrs[0])
        inbox = _Inbox()
        for node in (a, b):
            await node.subscribe("t", _Inbox())
        await c.subscribe("t", inbox)
        with trio.fail_after(30):  # until the mesh carries a probe to c
            while b"probe" not in inbox.items:
                await a.publish("t", b"probe")
                with trio.move_on_after(0.5):
                    await inbox.changed.wait()
        t0 = time.perf_counter()
        for i in range(20):
            await a.publish("t", b"msg-%02d" % i)
            await trio.sleep(0.01)
        with trio.fail_after(30):
            while sum(x.startswith(b"msg-") for x in inbox.items) < 20:
                await inbox.changed.wait()
        elapsed = time.perf_counter() - t0
        nursery.cancel_scope.cancel()
    return elapsed


async def main(n: int) -> None:
    floor = await tcp_floor(n)
    times, timeout_after = await requests(n)
    p50, p99, f50 = pct(times, 0.5), pct(times, 0.99), statistics.median(floor)
    print(f"request round trip: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms over {n}")
    print(f"  raw TCP echo p50 {f50 * 1e3:.3f} ms; ratio p50 / raw {p50 / f50:.1f}")
    print(
        f"request timeout 0.3 s: RequestTimeout after {timeout_after:.3f} s "
        f"(ratio {timeout_after / 0.3:.2f})"
    )
    off = min([await start_time(False) for _ in range(3)])
    on = min([await start_time(True) for _ in range(3)])
    print(
        f"host start: mDNS on {on:.3f} s, off {off:.3f} s (ratio {on / off:.2f}; "
        "zeroconf's probe is 1.6 s)"
    )
    hops = await two_hops()
    print(
        f"20 gossip messages over 2 hops: {hops:.3f} s (ratio to the 0.2 s pacing {hops / 0.2:.2f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    trio.run(main, parser.parse_args().requests)
