"""Sync benchmark: the cost of an idle sync round, by summary and by heads.

Run by hand: ``python -m bench.sync_rounds [--authors 10000 100000]``.

Two nodes hold the same economy with ``--authors`` chains of one
certificate each (one store built, its file copied), connected over
loopback libp2p; one asks the other for a round (``Sync.sync_with``), as
every ``sync.interval_s`` for every peer and economy. Nothing differs, so
nothing is fetched: the round is pure overhead. Measured, both sides in
this one process (so the time is the CPU of both plus the loopback):

* by summary: the peer answers ``summary`` (docs/sync.md) and the round
  ends there — one request of 43 bytes, an answer of at most 105;
* by heads: the peer predates ``summary`` (answers it ``error``, as an
  old node does), so the round is what every round was before: ``heads``
  (both sides list every chain: O(authors)) and ``forks``;
* what the summary costs where it is kept: its upkeep per head moved in
  the apply transaction, against ``apply_sync``'s time per certificate
  (which includes it) while building the store.

Each figure is the median of ``--rounds`` rounds (fewer for heads at the
larger sizes: ``--heads-rounds``). Printed with each: the ratio of the
heads round to the summary round, and the summary round's ratio to the
floor measured in the same run, a bare request round trip of the same size
on the same connection (1.0 would mean the round costs nothing beyond the
one request it makes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import trio

from bench.devnet import prebuilt_certificates
from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.p2p import P2P
from mycelia.node.store import Store
from mycelia.node.store.summary import HeadsSum
from mycelia.node.sync import Sync
from mycelia.protocol import Certificate, Reason
from mycelia.protocol.ledger import GapBuffer
from mycelia.testing.economies import genesis, sign_genesis, validator_keys

#: What a node that predates ``summary`` answers it (its decoder's refusal).
OLD_ANSWER = wire.encode_error(Reason.MALFORMED, "unknown sync request 'summary' with 1 arguments")


def build(root: Path, authors: int) -> tuple[bytes, Path, Path, float]:
    """One store with ``authors`` chains of one certificate, a copy, and
    the seconds ``apply_sync`` took per certificate."""
    vkeys = validator_keys(4)
    signed = sign_genesis(genesis(validators=vkeys, default_limit=10**9), vkeys)
    economy = signed.genesis.id
    blobs = prebuilt_certificates(vkeys, economy, authors, authors)
    one, two = root / f"a-{authors}", root / f"b-{authors}"
    store = Store(one, sync=False, max_map_size_mb=8192)
    econ = store.add_economy_sync(signed)
    buffer = GapBuffer()
    applying = 0.0
    for i in range(0, len(blobs), 2000):
        certs = [Certificate.decode(b) for b in blobs[i : i + 2000]]
        t0 = time.perf_counter()
        assert store.apply_sync(econ, buffer, certs).refused == ()
        applying += time.perf_counter() - t0
    assert store.summary_of(economy).chains == authors
    store.close()
    shutil.copytree(one, two)
    return economy, one, two, applying / authors


def upkeep(moves: int = 2000, rounds: int = 5) -> float:
    """Seconds per head moved of the summary's upkeep in the apply
    transaction (``HeadsSum.advance`` of a batch of existing chains, each
    moved by one: the worst case, one certificate per author), the best of
    ``rounds``."""
    heads = [(i.to_bytes(32, "big"), 1) for i in range(moves)]
    state = HeadsSum.of(heads)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        state.advance((author, 1, 2) for author, _ in heads)
        best = min(best, time.perf_counter() - t0)
    return best / moves


class Peer:
    """The serving node's sync handler, answering ``summary`` as an old
    node does while ``old`` is set."""

    def __init__(self, sync: Sync) -> None:
        self.sync = sync
        self.old = False

    async def handle(self, peer: str, data: bytes) -> bytes:
        op, _ = wire.decode_sync_request(data)
        if self.old and op == "summary":
            return OLD_ANSWER
        return await self.sync.handle(peer, data)


async def rounds(
    economy: bytes, ours: Path, theirs: Path, n: int, n_heads: int
) -> dict[str, float]:
    a_store, b_store = Store(ours, sync=False), Store(theirs, sync=False)
    a, b = P2P(os.urandom(32), request_timeout_s=120), P2P(os.urandom(32), request_timeout_s=120)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            await nursery.start(b.run)
            us = Sync(a, a_store, Applier(a_store), follow={economy})
            peer = Peer(Sync(b, b_store, Applier(b_store), follow={economy}))
            b.set_handler(wire.SYNC_PROTOCOL, peer.handle)

            answer = wire.encode_summary(b_store.summary_of(economy))

            async def echo(_peer: str, data: bytes) -> bytes:
                return answer  # the same bytes as a summary, nothing read

            b.set_handler("/bench/echo/1", echo)
            await a.connect(b.listen_addrs[0])
            request = wire.encode_sync_request("summary", economy)
            for _ in range(5):  # warm the connection and the caches
                await a.request(b.peer_id, "/bench/echo/1", request)
                assert await us.sync_with(b.peer_id) == 0

            floor, by_summary = [], []
            for _ in range(n):  # alternated, so a noisy neighbour hurts both alike
                t0 = time.perf_counter()
                await a.request(b.peer_id, "/bench/echo/1", request)
                t1 = time.perf_counter()
                assert await us.sync_with(b.peer_id) == 0
                by_summary.append(time.perf_counter() - t1)
                floor.append(t1 - t0)
            peer.old = True
            us.peer_connected(b.peer_id)  # forget it answered summaries
            assert await us.sync_with(b.peer_id) == 0  # learns it is "old"
            assert b.peer_id in us.no_summary
            by_heads = []
            for _ in range(n_heads):
                t0 = time.perf_counter()
                assert await us.sync_with(b.peer_id) == 0
                by_heads.append(time.perf_counter() - t0)
            assert us.lag == 0
            heads_bytes = len(wire.encode_heads(b_store.heads(economy)))
            nursery.cancel_scope.cancel()
    finally:
        a_store.close()
        b_store.close()
    return {
        "floor": statistics.median(floor),
        "summary": statistics.median(by_summary),
        "heads": statistics.median(by_heads),
        "heads_bytes": float(heads_bytes),
    }


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mycelia-sync-rounds-"))
    try:
        for authors in args.authors:
            print(f"{authors:,} authors: building the store ...", flush=True)
            t0 = time.perf_counter()
            economy, ours, theirs, per_cert = await trio.to_thread.run_sync(build, root, authors)
            print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
            kept = upkeep()
            print(
                f"  summary upkeep: {kept * 1e6:.1f} µs per head moved; apply_sync "
                f"{per_cert * 1e6:.1f} µs per certificate with it (ratio {kept / per_cert:.2f})"
            )
            n_heads = args.heads_rounds if authors > 20_000 else args.rounds
            r = await rounds(economy, ours, theirs, args.rounds, n_heads)
            print(
                f"  idle round by summary: {r['summary'] * 1e3:.2f} ms "
                f"(bare request round trip {r['floor'] * 1e3:.2f} ms, "
                f"ratio {r['summary'] / r['floor']:.2f})"
            )
            print(
                f"  idle round by heads:   {r['heads'] * 1e3:.2f} ms "
                f"({r['heads_bytes'] / 1e6:.1f} MB of heads; "
                f"ratio heads / summary {r['heads'] / r['summary']:.0f})",
                flush=True,
            )
            shutil.rmtree(ours)
            shutil.rmtree(theirs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--authors", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--heads-rounds", type=int, default=5)
    trio.run(main, parser.parse_args())


if __name__ == "__main__":
    cli()
