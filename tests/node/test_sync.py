"""Sync (node/sync.py): its scheduling — a peer that (re)connects is synced
at once, whatever another peer's round is waiting on — and its rounds: a
round asks for the peer's summary first and skips the heads exchange when
the summaries are equal, falls back to heads when they differ and catches
up, and syncs a peer that predates ``summary`` (it answers ``error``)
through heads as before. Requests are counted at the requester, so each
test says exactly what crossed the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from mycelia.node import wire
from mycelia.node.applier import Applier
from mycelia.node.p2p import RequestTimeout
from mycelia.node.store import Store
from mycelia.node.store.summary import HeadsSum, Summary
from mycelia.node.sync import Sync
from mycelia.protocol import Certificate, Reason, Refused, codec
from mycelia.testing.economies import World, genesis, key, sign_genesis, validator_keys
from tests.node.test_forks import fork_pair

ECONOMY = bytes(range(32))
EMPTY = Summary.of(0, HeadsSum(), [])


class FakeP2P:
    """Answers ``summary`` with an empty economy's (as ``FakeStore``'s) and
    ``heads`` with nothing; requests to ``silent`` peers never return (a
    dead connection before its ping timeout finds it)."""

    def __init__(self, silent: set[str]) -> None:
        self.silent = silent
        self.asked: list[str] = []
        self.changed = trio.Event()

    def peers(self) -> list[str]:
        return []

    async def request(
        self, peer: str, protocol: str, payload: bytes, *, max_response_bytes: int | None = None
    ) -> bytes:
        self.asked.append(peer)
        self.changed.set()
        self.changed = trio.Event()
        if peer in self.silent:
            await trio.sleep_forever()
        op, _ = wire.decode_sync_request(payload)
        return wire.encode_summary(EMPTY) if op == "summary" else wire.encode_heads({})

    async def asked_of(self, peer: str, times: int = 1) -> None:
        while self.asked.count(peer) < times:
            await self.changed.wait()


class FakeStore:
    def heads(self, economy_id: bytes) -> dict[bytes, int]:
        return {}

    def summary_of(self, economy_id: bytes) -> Summary:
        return EMPTY


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
            # do not overlap (an idle round is one request: the summary).
            sync.peer_connected("silent")
            sync.peer_connected("back")
            await p2p.asked_of("back", 2)
            assert p2p.asked.count("silent") == 1
            nursery.cancel_scope.cancel()


# -- rounds between two real stores, without the network ------------------------------------------

#: What a node that predates ``summary`` answers it: its decoder did not know
#: the op (``decode_sync_request`` then), and ``Sync.handle`` answered so.
OLD_NODE_ANSWER = wire.encode_error(
    Reason.MALFORMED, "unknown sync request 'summary' with 1 arguments"
)


class Serving:
    """The serving side's requester: it never asks anything here."""

    def peers(self) -> list[str]:
        return []

    async def request(self, *args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("the serving node asked a peer")


class Loopback:
    """The requester of one node, wired to another node's ``Sync.handle``;
    counts every request by op. ``old``: the peer predates ``summary``."""

    def __init__(self, server: Sync, *, old: bool = False) -> None:
        self.server = server
        self.old = old
        self.asked: list[str] = []
        self.limits: dict[str, int | None] = {}

    def peers(self) -> list[str]:
        return ["peer"]

    async def request(
        self, peer: str, protocol: str, payload: bytes, *, max_response_bytes: int | None = None
    ) -> bytes:
        assert protocol == wire.SYNC_PROTOCOL
        op, _ = wire.decode_sync_request(payload)
        self.asked.append(op)
        self.limits[op] = max_response_bytes
        if self.old and op == "summary":
            return OLD_NODE_ANSWER
        return await self.server.handle("us", payload)

    def take(self) -> list[str]:
        asked, self.asked = self.asked, []
        return asked


def a_world() -> tuple[World, list[Certificate]]:
    """Five authors, three entries each, paying one another."""
    vk = validator_keys(4)
    w = World(genesis(validators=vk, default_limit=1_000), vk)
    people = [key(i, "sync") for i in range(5)]
    certs = [
        w.transfer(people[i], people[(i + 1) % 5], 1 + i + r, f"round {r}")
        for r in range(3)
        for i in range(5)
    ]
    return w, certs


@asynccontextmanager
async def node(path: Path, w: World, certs: list[Certificate]) -> AsyncIterator[Applier]:
    """A store holding ``certs`` (in the order given, gaps parked) and its
    applier, running."""
    store = Store(path, sync=False)
    try:
        applier = Applier(store)
        await applier.add_economy(sign_genesis(w.genesis, w.vkeys))
        if certs:
            store.apply_sync(applier.economies[w.id], applier.buffers[w.id], certs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(applier.run)
            yield applier
            nursery.cancel_scope.cancel()
    finally:
        store.close()


@asynccontextmanager
async def pair(
    tmp_path: Path,
    w: World,
    theirs: list[Certificate],
    ours: list[Certificate],
    *,
    old: bool = False,
) -> AsyncIterator[tuple[Sync, Loopback, Applier, Applier]]:
    """Our node (``ours``) syncing from a peer (``theirs``)."""
    async with node(tmp_path / "peer", w, theirs) as peer, node(tmp_path / "us", w, ours) as us:
        server = Sync(Serving(), peer.store, peer, follow={w.id})
        link = Loopback(server, old=old)
        yield Sync(link, us.store, us, follow={w.id}), link, us, peer


async def test_equal_summaries_make_no_heads_request(tmp_path: Path) -> None:
    """Both hold the same certificates, applied in other orders and
    batches (one side parked half of them first): one request a round."""
    w, certs = a_world()
    async with pair(tmp_path, w, certs, certs[::-1]) as (sync, link, us, peer):
        assert us.store.heads(w.id) == peer.store.heads(w.id)
        assert await sync.sync_with("peer") == 0
        assert link.take() == ["summary"]
        assert link.limits["summary"] == wire.MAX_SUMMARY_RESPONSE_BYTES
        assert sync.lag == 0
        assert await sync.sync_with("peer") == 0
        assert link.take() == ["summary"]


async def test_a_differing_summary_leads_to_the_heads_exchange_and_catches_up(
    tmp_path: Path,
) -> None:
    w, certs = a_world()
    async with pair(tmp_path, w, certs, certs[:6]) as (sync, link, us, peer):
        assert not us.store.summary_of(w.id).same_heads(peer.store.summary_of(w.id))
        assert await sync.sync_with("peer") == len(certs) - 6
        asked = link.take()
        assert asked[:2] == ["summary", "heads"]
        assert set(asked[2:]) == {"range"}  # fork parts equal (none): no ``forks``
        assert us.store.heads(w.id) == peer.store.heads(w.id)
        assert us.store.summary_of(w.id) == peer.store.summary_of(w.id)
        # caught up: the next round is idle
        assert await sync.sync_with("peer") == 0
        assert link.take() == ["summary"]


async def test_a_peer_ahead_of_us_in_forks_only_is_asked_for_forks_not_heads(
    tmp_path: Path,
) -> None:
    w, certs = a_world()
    x, y = fork_pair(w)  # a forked seq 1 of another author
    async with pair(tmp_path, w, [*certs, x, y], [*certs, x]) as (sync, link, us, peer):
        mine, theirs = us.store.summary_of(w.id), peer.store.summary_of(w.id)
        assert mine.same_heads(theirs)
        assert (mine.forks, theirs.forks) == (0, 1)
        await sync.sync_with("peer")
        assert link.take() == ["summary", "forks", "fork"]
        assert us.store.fork_slots(w.id) == peer.store.fork_slots(w.id)
        assert us.store.summary_of(w.id) == peer.store.summary_of(w.id)
        await sync.sync_with("peer")
        assert link.take() == ["summary"]


async def test_a_peer_that_predates_summary_is_synced_through_heads(tmp_path: Path) -> None:
    w, certs = a_world()
    async with pair(tmp_path, w, certs, certs[:3], old=True) as (sync, link, us, peer):
        assert await sync.sync_with("peer") == len(certs) - 3
        asked = link.take()
        assert asked[:2] == ["summary", "heads"]
        assert asked[-1] == "forks"  # as the old rounds did
        assert us.store.heads(w.id) == peer.store.heads(w.id)
        # Not asked for a summary again while it stays connected ...
        await sync.sync_with("peer")
        assert link.take() == ["heads", "forks"]
        # ... and asked again once it reconnects (it may have been upgraded).
        link.old = False
        sync.peer_connected("peer")
        await sync.sync_with("peer")
        assert link.take() == ["summary"]


async def test_a_summary_request_that_fails_fails_the_round_and_is_asked_again(
    tmp_path: Path,
) -> None:
    """A timeout is not an old peer: the round fails as a failed ``heads``
    did, nothing is applied, and the next round asks for the summary."""
    w, certs = a_world()
    async with pair(tmp_path, w, certs, certs[:3]) as (sync, link, us, _peer):
        answer = link.request

        async def timing_out(*args: Any, **kwargs: Any) -> bytes:
            link.asked.append("summary")
            raise RequestTimeout("no response within 10 s")

        link.request = timing_out  # type: ignore[method-assign]
        before = us.store.summary_of(w.id)
        assert await sync.sync_with("peer") == 0
        assert link.take() == ["summary"]
        assert us.store.summary_of(w.id) == before
        assert sync.no_summary == set()
        link.request = answer  # type: ignore[method-assign]
        assert await sync.sync_with("peer") == len(certs) - 3


@pytest.mark.parametrize(
    "answer",
    [
        codec.encode(["heads", []]),  # another op's answer
        codec.encode(["summary", [0, 0, b"\x00" * 31, 0, b"\x00" * 32]]),  # short digest
        codec.encode(["summary", [-1, 0, b"\x00" * 32, 0, b"\x00" * 32]]),
        codec.encode(["summary", [0, 0, b"\x00" * 32, 0]]),
        codec.encode(["summary", [0, 0, b"\x00" * 32, 0, b"\x00" * 32], 1]),
        codec.encode(["summary", [0, 0, b"\x00" * 32, 0, b"\x00" * 32]])[:-1],
        codec.encode(["summary", [0, 0, b"\x00" * 32, 0, b"\x00" * 2000]]),
        codec.encode(["error", "malformed", "x" * 5000]),
    ],
)
def test_a_bad_summary_answer_is_refused(answer: bytes) -> None:
    with pytest.raises(Refused) as info:
        wire.decode_summary(answer)
    assert info.value.reason in (Reason.MALFORMED, Reason.NON_CANONICAL, Reason.TOO_LARGE)


async def test_a_peer_answering_garbage_to_summary_is_synced_through_heads(
    tmp_path: Path,
) -> None:
    w, certs = a_world()
    async with pair(tmp_path, w, certs, []) as (sync, link, us, peer):
        served = link.request

        async def garbling(peer_id: str, protocol: str, payload: bytes, **kw: Any) -> bytes:
            reply = await served(peer_id, protocol, payload, **kw)
            return b"\xc1" if link.asked[-1] == "summary" else reply

        link.request = garbling  # type: ignore[method-assign]
        assert await sync.sync_with("peer") == len(certs)
        assert link.take()[:2] == ["summary", "heads"]
        assert us.store.heads(w.id) == peer.store.heads(w.id)
        assert sync.no_summary == {"peer"}


async def test_summary_requests_are_served_bounded(tmp_path: Path) -> None:
    w, certs = a_world()
    async with node(tmp_path / "n", w, certs) as n:
        sync = Sync(Serving(), n.store, n, follow={w.id})
        got = wire.decode_summary(await sync.handle("p", wire.encode_sync_request("summary", w.id)))
        assert got == n.store.summary_of(w.id)
        assert got.certified == len(certs) == sum(n.store.heads(w.id).values())
        assert got.chains == 5
        # An economy the node does not hold: the empty summary.
        unknown = wire.encode_sync_request("summary", b"\x09" * 32)
        assert wire.decode_summary(await sync.handle("p", unknown)) == EMPTY
        for bad in (
            wire.encode_sync_request("summary"),
            wire.encode_sync_request("summary", w.id, 1),
            wire.encode_sync_request("summary", b"short"),
        ):
            with pytest.raises(Refused) as info:
                wire.decode_summary(await sync.handle("p", bad))
            assert info.value.reason is Reason.MALFORMED


def test_the_summary_answer_fits_its_bound() -> None:
    """The largest summary (every count at 2^64 - 1) and the largest error
    answer (500 characters of 4-byte UTF-8) fit what the requester reads."""
    top = 2**64 - 1
    largest = Summary(top, top, b"\xff" * 32, top, b"\xff" * 32)
    assert len(wire.encode_summary(largest)) == 105
    assert wire.decode_summary(wire.encode_summary(largest)) == largest
    error = wire.encode_error(Reason.MALFORMED, "\U0001f344" * 1000)
    assert len(error) <= wire.MAX_SUMMARY_RESPONSE_BYTES
