"""AsyncClient under trio: the same flows as Client over httpx.AsyncClient,
and subscriptions over a WebSocket played by a small trio_websocket server."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket as tw

from mycelia.api.encoding import hex_in, hex_out
from mycelia.api.types import CertifiedEntry
from mycelia.client import AsyncClient, Endpoint, EntryStatus, RpcUnavailable, VerifyError
from mycelia.protocol import Certificate, Entry, SignedEntry
from mycelia.testing.economies import World, key
from tests.cli.fakenode import COOKIE, FakeNode

ALICE, BOB, CAROL = key(1), key(2), key(3)
AUTH = "Basic " + base64.b64encode(COOKIE.encode()).decode()


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def fake(world: World) -> FakeNode:
    node = FakeNode(world)
    node.record(world.transfer(ALICE, CAROL, 50, "seed"))
    return node


def notification(sub: str, result: Any) -> str:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"subscription": sub, "result": result},
        }
    )


@dataclasses.dataclass
class WsLog:
    auth: list[str | None] = dataclasses.field(default_factory=list)
    received: list[Any] = dataclasses.field(default_factory=list)


@asynccontextmanager
async def ws_node(
    fake: FakeNode, payloads: Callable[[dict[str, Any]], list[Any]]
) -> AsyncIterator[tuple[AsyncClient, WsLog]]:
    """A client whose HTTP goes to ``fake`` and whose /ws answers a subscribe
    with id "s1", then sends ``payloads(params)`` as notifications (after
    one for a subscription that is not the client's)."""
    log = WsLog()

    async def handler(request: tw.WebSocketRequest) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        log.auth.append(headers.get("authorization"))
        if headers.get("authorization") != AUTH or request.path != "/ws":
            await request.reject(401)
            return
        ws = await request.accept()
        try:
            msg = json.loads(await ws.get_message())
            log.received.append(msg)
            await ws.send_message(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": "s1"}))
            await ws.send_message(notification("s0", {"not": "ours"}))
            for payload in payloads(msg["params"]):
                await ws.send_message(notification("s1", payload))
            while True:
                log.received.append(json.loads(await ws.get_message()))
        except tw.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(tw.serve_websocket, handler, "127.0.0.1", 0, None)
        endpoint = Endpoint(f"http://127.0.0.1:{server.port}", None, COOKIE)
        async with AsyncClient(endpoint, transport=fake.transport()) as client:
            yield client, log
        nursery.cancel_scope.cancel()


async def test_async_transfer_and_history(fake: FakeNode, world: World) -> None:
    endpoint = Endpoint("http://127.0.0.1:1", None, COOKIE)
    async with AsyncClient(endpoint, transport=fake.transport()) as client:
        entry_id = await client.transfer(CAROL, world.id, BOB.did, 20)
        status = await client.entry_get(entry_id)
        page = await client.account_history(world.id, BOB.did)
        info = await client.node_info()
    assert status.certified
    assert status.certificate is not None
    assert [c.entry_id for c in page.entries] == [entry_id]
    assert info.did == fake.key.did
    assert world.balance(BOB) == 20
    assert all(CAROL.seed.hex() not in raw.decode() for raw in fake.raw)


async def test_wait_uses_the_entry_subscription(fake: FakeNode, world: World) -> None:
    fake.hold = True
    endpoint = Endpoint("http://127.0.0.1:1", None, COOKIE)
    async with AsyncClient(endpoint, transport=fake.transport()) as submitter:
        entry_id = await submitter.transfer(CAROL, world.id, BOB.did, 5)
    pending = fake.statuses[entry_id]
    signed = fake.bodies[-1]["params"]
    entry = Entry.decode(hex_in(signed["entry"], "entry"))
    cert = world.certify(SignedEntry(entry, hex_in(signed["signature"], "sig")))
    final = {
        "id": hex_out(entry_id),
        "status": "certified",
        "certificate": hex_out(cert.encode()),
    }
    async with ws_node(fake, lambda p: [pending, final]) as (client, log):
        status = await client.wait(entry_id, timeout=10)
    assert isinstance(status, EntryStatus)
    assert status.certified
    assert status.certificate == cert
    assert log.auth == [AUTH]
    subscribe, unsubscribe = log.received
    assert subscribe["method"] == "subscribe"
    assert subscribe["params"] == {"topic": "entry", "id": hex_out(entry_id)}
    assert unsubscribe["method"] == "unsubscribe"
    assert unsubscribe["params"] == {"subscription": "s1"}


async def test_account_notifications_are_verified(fake: FakeNode, world: World) -> None:
    good = world.transfer(CAROL, BOB, 2)
    sigs = list(good.signatures)
    sigs[1] = bytes(64)
    forged = dataclasses.replace(world.transfer(CAROL, BOB, 3), signatures=tuple(sigs))
    views = [
        CertifiedEntry.of_certificate(good).to_json(),
        CertifiedEntry.of_certificate(forged).to_json(),
    ]
    async with (
        ws_node(fake, lambda p: views) as (client, _),
        client.subscribe("account", economy=hex_out(world.id), account=BOB.did) as sub,
    ):
        first = await sub.__anext__()
        assert isinstance(first, Certificate)
        assert first.entry_id == good.entry_id
        with pytest.raises(VerifyError):
            await sub.__anext__()


async def test_wrong_cookie_on_the_websocket(fake: FakeNode) -> None:
    async with ws_node(fake, lambda p: []) as (client, log):
        bad = AsyncClient(
            dataclasses.replace(client.endpoint, cookie="__cookie__:" + "00" * 32),
            transport=fake.transport(),
        )
        with pytest.raises(RpcUnavailable) as info:
            async with bad.subscribe("entry", id="0x" + "00" * 32):
                pass
        await bad.aclose()
    assert info.value.reason == "unauthorized"
    assert log.auth == ["Basic " + base64.b64encode(b"__cookie__:" + b"00" * 32).decode()]


async def test_an_error_in_the_body_comes_out_as_itself(fake: FakeNode) -> None:
    async with ws_node(fake, lambda p: []) as (client, log):

        async def failing_body() -> None:
            async with client.subscribe("other", x=1) as sub:
                assert sub.id == "s1"
                raise KeyError("mine")

        with pytest.raises(KeyError, match="mine"):
            await failing_body()
    assert [m["method"] for m in log.received] == ["subscribe", "unsubscribe"]


async def test_websocket_node_not_running() -> None:
    endpoint = Endpoint("http://127.0.0.1:1", None, COOKIE)
    async with AsyncClient(endpoint) as client:
        with pytest.raises(RpcUnavailable) as info:
            async with client.subscribe("entry", id="0x" + "00" * 32):
                pass
    assert info.value.reason == "node_not_running"
