"""The fake node of the client and CLI tests cannot drift from the node:
it offers exactly the node's registered methods with the node's parameters,
every answer is checked against the registry's result schemas (a check
that itself catches what it should, and that the real node's answers pass),
and one story told to the fake and to a real node gets the same answers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from mycelia.api.encoding import hex_out
from mycelia.node.config import RpcConfig
from mycelia.node.daemon import Node
from mycelia.node.rpc import REGISTRY, openrpc_document, serve_rpc
from mycelia.protocol import ChannelOpen, Entry, SignedEntry, SigningKey, Transfer, Voucher
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.cluster import FAST
from mycelia.testing.economies import (
    T0,
    World,
    device_key,
    genesis,
    impact_genesis,
    key,
    sign_genesis,
)
from mycelia.testing.openrpc import SchemaError, problems, result_problems
from tests.cli.fakenode import COOKIE, FakeNode, drift, handler_name

SOLO = key(0, "fake-vs-real")
ALICE, BOB, CAROL = key(1), key(2), key(3)
DOCUMENT = openrpc_document()


def test_the_fake_answers_exactly_the_registered_methods() -> None:
    assert drift() == []
    fake = FakeNode()
    assert list(fake.registry.methods) == list(REGISTRY.methods)
    for name, declared in REGISTRY.methods.items():
        played = fake.registry.methods[name]
        # The node's declaration (params, their parsers, result codec and
        # errors: the API layer's spec itself), the fake's handler.
        assert played.spec is declared.spec
        assert played.handler is not declared.handler
        assert callable(getattr(fake, handler_name(name)))


def test_drift_names_a_missing_method_and_other_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(FakeNode, "m_entry_prepare")
    monkeypatch.setattr(FakeNode, "m_node_extra", lambda self: None, raising=False)
    monkeypatch.setattr(FakeNode, "m_account_get", lambda self, economy, who: None)
    found = drift()
    assert "FakeNode does not answer entry_prepare" in found
    assert "FakeNode.m_node_extra answers no method of the node" in found
    assert any(p.startswith("FakeNode.m_account_get") for p in found)
    with pytest.raises(TypeError, match="drifted"):
        FakeNode()


def test_the_schema_check_catches_what_the_node_could_not_answer() -> None:
    account = {
        "account": ALICE.did,
        "balance": "-5",
        "limit": "1000",
        "seq": 1,
        "head": "0x" + "ab" * 32,
        "ts_ms": T0,
        "member": True,
        "minted": "0",
        "burned": "0",
    }
    assert result_problems(DOCUMENT, "account_get", account) == []
    bad = [
        ({**account, "balance": -5}, "not of type string"),  # amounts are strings
        ({**account, "member": 1}, "not of type boolean"),
        ({**account, "seq": True}, "not of type integer"),
        ({**account, "head": "0x" + "ab" * 32 + "\n"}, "does not match"),
        ({**account, "limit": 1000}, "matches none of its oneOf"),
        ({**account, "extra": 1}, "'extra' is not declared"),
        ({k: v for k, v in account.items() if k != "burned"}, "'burned' is missing"),
        ({**account, "seq": -1}, "below the minimum"),
    ]
    for value, why in bad:
        found = result_problems(DOCUMENT, "account_get", value)
        assert len(found) == 1, (value, found)
        assert why in found[0], (value, found)
    assert result_problems(DOCUMENT, "unsubscribe", 1) == ["unsubscribe result: 1 is not True"]
    fork_page = {"forks": [], "next_cursor": None}
    assert result_problems(DOCUMENT, "economy_forks", fork_page) == []
    with pytest.raises(SchemaError, match="'format' is not understood"):
        problems({"type": "string", "format": "uri"}, "x", DOCUMENT)
    with pytest.raises(SchemaError, match="names nothing"):
        problems({"$ref": "#/components/schemas/Nope"}, "x", DOCUMENT)


def test_a_lie_the_node_could_not_give_fails_the_test() -> None:
    fake = FakeNode()
    fake.lie["node_peers"] = lambda params: [{"peer_id": 12}]
    with pytest.raises(pytest.fail.Exception, match=r"node_peers \(a lie\).*peer_id: 12"):
        fake.http(_body("node_peers"), _AUTH)
    assert len(fake.failures) == 1


# -- one story, told to the fake and to a real node -----------------------------------------

_AUTH = "Basic " + base64.b64encode(COOKIE.encode()).decode()


def _body(method: str, **params: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


def _transfer(
    economy: bytes, author: SigningKey, seq: int, prev: bytes, to: SigningKey, n: int
) -> tuple[Entry, SignedEntry]:
    """``author``'s entry ``seq`` (a wallet's, with a fixed clock), signed."""
    entry = Entry(economy, author.public, seq, prev, T0 + seq, Transfer(to.public, n, "story"))
    return entry, entry.sign(author)


@asynccontextmanager
async def real_node(tmp_path: Path, *worlds: World) -> AsyncIterator[Callable[..., Any]]:
    """A real node holding the worlds' economies (its key their only
    validator), serving its RPC; yields ``ask(method, **params)``: the
    response object."""
    async with trio.open_nursery() as nursery:
        node = Node(SOLO, tmp_path / "real", FAST)
        await nursery.start(node.run)
        for world in worlds:
            await node.add_economy(sign_genesis(world.genesis, [SOLO]))
        endpoints = await nursery.start(serve_rpc, node, RpcConfig(port=0))
        cookie = (node.datadir / ".cookie").read_text()
        transport = httpx.AsyncHTTPTransport(uds=str(endpoints.unix))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:

            async def ask(method: str, **params: Any) -> Any:
                response = await http.post(
                    "/", content=_body(method, **params), auth=tuple(cookie.split(":", 1))
                )
                return response.json()

            yield ask
        nursery.cancel_scope.cancel()


async def test_the_fake_and_a_real_node_answer_alike(tmp_path: Path) -> None:
    world = World(genesis(validators=[SOLO]), [SOLO])
    solar = World(impact_genesis(validators=[SOLO]), [SOLO])
    fake = FakeNode(world, solar, node_key=SOLO)
    fake.retry_deadline_s = FAST.retry_deadline_s
    eid = hex_out(world.id)
    compared: set[str] = set()

    async def from_fake(method: str, **params: Any) -> Any:
        return json.loads(fake.http(_body(method, **params), _AUTH)[1])

    async with real_node(tmp_path, world, solar) as from_real:

        async def same(method: str, **params: Any) -> Any:
            """Both answer ``method`` alike; the real answer fits its schema."""
            real, played = await from_real(method, **params), await from_fake(method, **params)
            assert played == real, (method, params)
            if "result" in real:
                assert result_problems(DOCUMENT, method, real["result"]) == [], method
            compared.add(method)
            return real.get("result", real.get("error"))

        async def submitted(entry: Entry, signed: SignedEntry) -> None:
            """Submitted to both; once the real node is done with it."""
            params = {"entry": hex_out(entry.encode()), "signature": hex_out(signed.signature)}
            assert (await same("entry_submit", **params))["id"] == hex_out(entry.id)
            with trio.fail_after(30):
                while True:
                    status = await from_real("entry_get", id=hex_out(entry.id))
                    if status["result"]["status"] != "pending":
                        return
                    await trio.sleep(0.05)

        await same("rpc.discover")
        await same("economy_list")
        await same("economy_get", economy=eid)
        await same("economy_forks", economy=eid)
        await same("gov_seals", economy=eid, proposal="0x" + "11" * 32)  # unknown_entry
        await same("account_get", economy=eid, account=ALICE.did)
        await same("economy_get", economy="0x" + "00" * 32)  # unknown_economy

        e1, s1 = _transfer(world.id, ALICE, 1, ZERO_ID, BOB, 30)
        e2, s2 = _transfer(world.id, ALICE, 2, e1.id, CAROL, 7)
        e3, s3 = _transfer(world.id, BOB, 1, ZERO_ID, CAROL, 5)
        for entry, signed in ((e1, s1), (e2, s2), (e3, s3)):
            await submitted(entry, signed)
            await same("entry_get", id=hex_out(entry.id))  # certified, the same certificate
        for who in (ALICE, BOB, CAROL, key(9)):
            await same("account_get", economy=eid, account=who.did)
        await same("economy_get", economy=eid)
        await same("economy_list")
        for limit in (1, 2, 50):
            # Cursors are opaque (the fake's differ): the same pages, walked each with its own.
            pages = []
            for ask in (from_real, from_fake):
                walked, cursor = [], None
                while True:
                    response = await ask(
                        "account_history",
                        economy=eid,
                        account=ALICE.did,
                        limit=limit,
                        cursor=cursor,
                    )
                    page = response["result"]
                    assert result_problems(DOCUMENT, "account_history", page) == []
                    walked.append(page["entries"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                pages.append(walked)
            assert pages[0] == pages[1]
            assert [len(p) for p in pages[0]] == {1: [1, 1], 2: [2], 50: [2]}[limit]
        compared.add("account_history")
        await same("account_history", economy=eid, account=ALICE.did, limit=501)  # page_too_large

        # A refusal that depends on state: final at once in the fake, after
        # the retry deadline in the node; then both say refused, retryable.
        short, bad = _transfer(world.id, CAROL, 1, ZERO_ID, ALICE, 5_000)
        await submitted(short, bad)
        refused = await same("entry_get", id=hex_out(short.id))
        assert (refused["status"], refused["retryable"]) == ("refused", True)

        await same("entry_get", id="0x" + "11" * 32)  # unknown_entry
        foreign, wrong = _transfer(b"\x01" * 32, ALICE, 1, ZERO_ID, BOB, 1)
        await same(
            "entry_submit", entry=hex_out(foreign.encode()), signature=hex_out(wrong.signature)
        )  # wrong_economy
        await same(
            "entry_prepare",
            economy=eid,
            author=ALICE.did,
            kind="transfer",
            body={"to": BOB.did, "amount": "4"},
            ts_ms=T0 + 99,
        )
        await same(
            "entry_prepare",
            economy=eid,
            author=BOB.did,
            kind="transfer",
            body={"to": BOB.did, "amount": "0"},  # invalid params, named
        )
        await same("entry_get", id="0xzz")  # invalid params

        signable = genesis(validators=[SOLO, key(4, "validator")], name="Next")
        await same("economy_signGenesis", genesis=hex_out(signable.encode()))
        others = genesis(validators=[key(4, "validator")], name="Not ours")
        await same("economy_signGenesis", genesis=hex_out(others.encode()))  # not_validator
        await same("sensor_devices", economy=eid)

        # Sensors: a device registered, hosted by this node; nothing read yet.
        sid = hex_out(solar.id)
        dev = device_key(1, "p256")
        registration = solar.entry(ALICE, solar.registration_body(ALICE, dev, SOLO))
        await submitted(registration.entry, registration)
        await same("entry_get", id=hex_out(registration.id))
        await same("sensor_devices", economy=sid)
        await same("sensor_claimable", economy=sid, device=hex_out(dev.device))
        await same("sensor_getReadings", economy=sid, device=hex_out(dev.device))
        await same("sensor_getReadings", economy=sid, device=hex_out(dev.device), limit=1_001)
        await same("economy_get", economy=sid)
        await same("sensor_claimable", economy=eid, device="0x" + "22" * 32)  # not_allowed
        await same("sensor_getReadings", economy=eid, device="0x" + "22" * 32)  # unknown_device
        await same("sensor_getAttestation", id="0x" + "33" * 32)  # unknown_attestation
        await same("sensor_getAttestation", id=hex_out(e1.id))  # not an attestation
        # Compute: a channel (certified on both), listed alike; no offers, no
        # relayed jobs, and each refusal alike.
        now = int(time.time() * 1000)  # the node's validator checks the expiry by its clock
        opening = Entry(
            world.id, CAROL.public, 1, ZERO_ID, now, ChannelOpen(BOB.public, 40, now + 3_600_000)
        )
        await submitted(opening, opening.sign(CAROL))
        await same("channel_get", channel=hex_out(opening.id))
        await same("channel_list", economy=eid, account=BOB.did)
        await same("compute_offers", economy=eid)
        await same("channel_get", channel="0x" + "55" * 32)  # unknown_channel
        await same("channel_list", economy=eid, account=CAROL.did)
        await same(
            "compute_job_start",
            offer="0x" + "66" * 32,
            channel="0x" + "77" * 32,
            runtime="python",
            input="0x00",
        )  # unknown_offer
        job = "0x" + "88" * 32
        voucher = hex_out(Voucher(world.id, b"\x77" * 32, 5).sign(CAROL).encode())
        await same("compute_job_voucher", job=job, voucher=voucher)  # unknown_job
        await same("compute_job_voucher", job=job, voucher="0x00")  # not a voucher
        for method in ("compute_job_status", "compute_job_result", "compute_job_cancel"):
            await same(method, job=job)  # unknown_job
        await same("subscribe", topic="entry", id=hex_out(e1.id))  # websocket_only
        await same("unsubscribe", subscription="s1")  # websocket_only
        await same("no_such_method")
        compared.discard("no_such_method")

        # What the node says of itself differs (its peer id, its ports), not its form.
        info = (await from_real("node_info"))["result"]
        assert result_problems(DOCUMENT, "node_info", info) == []
        assert info["did"] == (await from_fake("node_info"))["result"]["did"] == SOLO.did
        peers = (await from_real("node_peers"))["result"]
        assert result_problems(DOCUMENT, "node_peers", peers) == []
        compared |= {"node_info", "node_peers"}

        # economy_create and economy_follow change what the node holds: last.
        signed = sign_genesis(impact_genesis(validators=[SOLO], nonce=b"new"), [SOLO])
        await same("economy_create", genesis=hex_out(signed.encode()))
        await same("economy_follow", economy="0x" + "44" * 32)
        compared.add("economy_create")
    assert compared == set(REGISTRY.methods)  # every method was asked of both
