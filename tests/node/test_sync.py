"""Sync's scheduling: a peer that (re)connects is synced at once, whatever
another peer's round is waiting on (node/sync.py)."""

from __future__ import annotations

from typing import Any

import trio

from mycelia.node import wire
from mycelia.node.sync import Sync

ECONOMY = bytes(range(32))


class FakeP2P:
    """Answers ``heads`` with nothing; requests to ``silent`` peers never
    return (a dead connection before its ping timeout finds it)."""

    def __init__(self, silent: set[str]) -> None:
        self.silent = silent
        self.asked: list[str] = []
        self.changed = trio.Event()

    def peers(self) -> list[str]:
        return []

    async def request(self, peer: str, protocol: str, payload: bytes) -> bytes:
        self.asked.append(peer)
        self.changed.set()
        self.changed = trio.Event()
        if peer in self.silent:
            await trio.sleep_forever()
        return wire.encode_heads({})

    async def asked_of(self, peer: str, times: int = 1) -> None:
        while self.asked.count(peer) < times:
            await self.changed.wait()


class FakeStore:
    def heads(self, economy_id: bytes) -> dict[bytes, int]:
        return {}


class FakeApplier:
    economies: dict[bytes, Any] = {ECONOMY: None}


async def test_a_reconnected_peer_is_synced_while_another_round_hangs() -> None:
    p2p = FakeP2P(silent={"silent"})
    sync = Sync(p2p, FakeStore(), FakeApplier(), follow={ECONOMY}, interval_s=600)  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(sync.run)
            sync.peer_connected("silent")
            await p2p.asked_of("silent")
            sync.peer_connected("back")  # reconnected after a cut
            await p2p.asked_of("back")
            # A kick during a round is not lost, and rounds with one peer
            # do not overlap.
            sync.peer_connected("silent")
            sync.peer_connected("back")
            await p2p.asked_of("back", 2)
            assert p2p.asked.count("silent") == 1
            nursery.cancel_scope.cancel()
