"""The RPC client without a node: endpoint discovery, auth, JSON-RPC error
mapping, wallet-side signing and certificate verification, against
``FakeNode`` through ``httpx.MockTransport``."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mycelia.api.encoding import hex_in, hex_out
from mycelia.api.types import CertifiedEntry
from mycelia.client import (
    Client,
    ClientError,
    Endpoint,
    RpcError,
    RpcUnavailable,
    VerifyError,
)
from mycelia.protocol import Entry, SignedEntry, Transfer
from mycelia.protocol.quorum import make_bitmap
from mycelia.testing.economies import World, genesis, key, validator_keys
from tests.cli.fakenode import COOKIE, FakeNode, serve, write_private

ALICE, BOB, CAROL = key(1), key(2), key(3)


def endpoint() -> Endpoint:
    return Endpoint("http://127.0.0.1:8645", None, COOKIE)


def client_for(fake: FakeNode) -> Client:
    return Client(endpoint(), transport=fake.transport())


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def fake(world: World) -> FakeNode:
    node = FakeNode(world)
    # Carol is in credit, so the story has something to verify from the start.
    node.record(world.transfer(ALICE, CAROL, 50, "seed"))
    return node


# -- endpoint discovery ---------------------------------------------------------------------


def node_dir(tmp_path: Path, endpoint: dict[str, Any] | str, cookie: str = COOKIE) -> Path:
    d = tmp_path / "node"
    d.mkdir()
    text = endpoint if isinstance(endpoint, str) else json.dumps(endpoint)
    write_private(d / "rpc.endpoint", text)
    write_private(d / ".cookie", cookie + "\n")
    return d


def test_discover_from_datadir_prefers_an_existing_socket(tmp_path: Path) -> None:
    sock = tmp_path / "rpc.sock"
    sock.touch()
    d = node_dir(tmp_path, {"http": "http://127.0.0.1:7000", "unix": str(sock)})
    ep = Endpoint.discover(datadir=d, env={})
    assert (ep.unix, ep.http, ep.cookie) == (str(sock), None, COOKIE)
    sock.unlink()  # a stale socket path (unclean stop): TCP instead
    ep = Endpoint.discover(datadir=d, env={})
    assert (ep.unix, ep.http) == (None, "http://127.0.0.1:7000")


def test_discover_env_then_flags_win_over_the_datadir(tmp_path: Path) -> None:
    env_cookie = tmp_path / "env.cookie"
    write_private(env_cookie, "__cookie__:" + "11" * 32)
    flag_cookie = tmp_path / "flag.cookie"
    write_private(flag_cookie, "__cookie__:" + "22" * 32)
    env = {"MYCELIA_RPC_URL": "http://10.0.0.1:1", "MYCELIA_RPC_COOKIE": str(env_cookie)}

    def no_datadir() -> Path:
        raise AssertionError("the datadir is not needed when URL and cookie are given")

    ep = Endpoint.discover(env=env, datadir=no_datadir)
    assert (ep.http, ep.cookie) == ("http://10.0.0.1:1", "__cookie__:" + "11" * 32)
    ep = Endpoint.discover(rpc="unix:/run/x.sock", cookie=flag_cookie, env=env, datadir=no_datadir)
    assert (ep.unix, ep.http, ep.cookie) == ("/run/x.sock", None, "__cookie__:" + "22" * 32)


def test_discover_url_flag_with_the_datadir_cookie(tmp_path: Path) -> None:
    d = node_dir(tmp_path, {"http": "http://127.0.0.1:7000", "unix": None})
    ep = Endpoint.discover(rpc="http://127.0.0.1:9999/", env={}, datadir=lambda: d)
    assert (ep.http, ep.cookie) == ("http://127.0.0.1:9999", COOKIE)


@pytest.mark.parametrize(
    ("setup", "reason", "text"),
    [
        ("no_endpoint", "node_not_running", "rpc.endpoint not found"),
        ("no_cookie", "no_cookie", "gone.cookie not found"),
        ("bad_cookie", "bad_cookie", "__cookie__:<hex>"),
        ("bad_json", "bad_endpoint", "not an endpoint JSON object"),
        ("no_address", "bad_endpoint", "names no address"),
    ],
)
def test_discover_failures_have_stable_reasons(
    tmp_path: Path, setup: str, reason: str, text: str
) -> None:
    d = node_dir(tmp_path, {"http": "http://127.0.0.1:7000", "unix": None})
    if setup == "no_endpoint":
        (d / "rpc.endpoint").unlink()
    elif setup == "bad_cookie":
        write_private(d / ".cookie", "hunter2")
    elif setup == "bad_json":
        write_private(d / "rpc.endpoint", "[1, 2")
    elif setup == "no_address":
        write_private(d / "rpc.endpoint", json.dumps({"http": None, "unix": None}))
    env = {"MYCELIA_RPC_COOKIE": str(tmp_path / "gone.cookie")} if setup == "no_cookie" else {}
    with pytest.raises(RpcUnavailable) as info:
        Endpoint.discover(datadir=d, env=env)
    assert info.value.reason == reason
    assert text in info.value.detail
    assert "\n" not in str(info.value)


def test_a_node_without_auth_gets_no_credential(tmp_path: Path) -> None:
    # A node with rpc.auth = false writes no .cookie (and removes a stale one).
    d = node_dir(tmp_path, {"http": "http://127.0.0.1:7000", "unix": None})
    (d / ".cookie").unlink()
    ep = Endpoint.discover(datadir=d, env={})
    assert ep.cookie is None
    assert ep.authorization is None
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401)

    with pytest.raises(RpcUnavailable) as info:
        Client(ep, transport=httpx.MockTransport(handle)).call("node_info")
    assert "authorization" not in seen[0].headers
    assert info.value.reason == "unauthorized"
    assert "--cookie" in info.value.detail


def test_bad_urls_and_node_specs(tmp_path: Path) -> None:
    cookie = tmp_path / "c"
    write_private(cookie, COOKIE)
    for bad in ("ftp://x", "localhost:8645", "unix:"):
        with pytest.raises(RpcUnavailable) as info:
            Endpoint.discover(rpc=bad, cookie=cookie, env={})
        assert info.value.reason == "bad_endpoint"
    with pytest.raises(RpcUnavailable, match="no node to talk to"):
        Endpoint.discover(env={})
    assert Endpoint.from_node_spec(f"http://127.0.0.1:1#{cookie}").http == "http://127.0.0.1:1"
    d = node_dir(tmp_path, {"http": "http://127.0.0.1:2", "unix": None})
    assert Endpoint.from_node_spec(str(d)).http == "http://127.0.0.1:2"
    with pytest.raises(RpcUnavailable) as info:
        Endpoint.from_node_spec(str(tmp_path / "nowhere"))
    assert info.value.reason == "bad_endpoint"


def test_endpoint_repr_hides_the_cookie() -> None:
    assert "5a5a" not in repr(endpoint())


# -- transport, auth and errors ----------------------------------------------------------------


def answering(*responses: tuple[int, Any]) -> tuple[Client, list[httpx.Request]]:
    """A client whose node answers each request with the next (status, body);
    a dict body without an id gets the request's id."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = queue.pop(0)
        if isinstance(body, dict) and "id" not in body:
            body = {**body, "id": json.loads(request.content)["id"]}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content)

    return Client(endpoint(), transport=httpx.MockTransport(handle)), seen


def test_requests_carry_the_cookie_as_basic_auth() -> None:
    client, seen = answering((200, {"jsonrpc": "2.0", "result": 7}))
    assert client.call("anything", x=1) == 7
    (request,) = seen
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == COOKIE
    body = json.loads(request.content)
    assert body == {"jsonrpc": "2.0", "method": "anything", "params": {"x": 1}, "id": body["id"]}
    assert request.url.path == "/"
    assert request.method == "POST"


def test_rpc_errors_map_to_reason_and_detail() -> None:
    refused = {
        "code": -32001,
        "message": "refused",
        "data": {"reason": "insufficient_balance", "detail": "balance 0 - 5 < -0"},
    }
    bad_param = {
        "code": -32602,
        "message": "invalid params",
        "data": {"reason": "invalid_params", "detail": "not hex", "field": "economy"},
    }
    client, _ = answering(
        (200, {"jsonrpc": "2.0", "error": refused}),
        (200, {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}),
        (200, {"jsonrpc": "2.0", "error": bad_param}),
        (
            413,
            {
                "jsonrpc": "2.0",
                "id": None,
                "error": {
                    "code": -32003,
                    "message": "too large",
                    "data": {"reason": "request_too_large", "detail": "over 1 MiB"},
                },
            },
        ),
    )
    with pytest.raises(RpcError) as info:
        client.call("entry_submit")
    assert (info.value.code, info.value.reason) == (-32001, "insufficient_balance")
    assert info.value.data == refused["data"]
    assert str(info.value) == "insufficient_balance: balance 0 - 5 < -0"
    with pytest.raises(RpcError) as info:
        client.call("nope")
    assert (info.value.reason, info.value.detail) == ("method_not_found", "Method not found")
    with pytest.raises(RpcError) as info:
        client.call("economy_get", economy="zz")
    assert info.value.reason == "invalid_params"
    assert info.value.detail == "economy: not hex"
    with pytest.raises(RpcError) as info:
        client.call("big")
    assert (info.value.code, info.value.reason) == (-32003, "request_too_large")


def test_http_failures_map_to_client_errors() -> None:
    client, _ = answering(
        (401, b""),
        (500, b"<html>oops</html>"),
        (200, {"jsonrpc": "2.0", "id": 999, "result": 1}),
        (200, {"result": 1}),
    )
    with pytest.raises(RpcUnavailable) as info:
        client.call("node_info")
    assert info.value.reason == "unauthorized"
    assert "cookie" in info.value.detail
    for _ in range(3):
        with pytest.raises(ClientError) as info:
            client.call("node_info")
        assert info.value.reason == "bad_response"


def test_node_not_running_is_one_clear_error(tmp_path: Path) -> None:
    gone = Endpoint(None, str(tmp_path / "rpc.sock"), COOKIE)
    with Client(gone) as client, pytest.raises(RpcUnavailable) as info:
        client.node_info()
    assert info.value.reason == "node_not_running"
    assert str(tmp_path / "rpc.sock") in info.value.detail


def test_real_http_over_unix_socket_and_tcp(fake: FakeNode, tmp_path: Path) -> None:
    for unix in (True, False):
        with serve(fake, tmp_path / f"d{unix}", unix=unix) as d:
            ep = Endpoint.from_datadir(d)
            assert (ep.unix is not None) == unix
            with Client(ep) as client:
                assert client.node_info().did == fake.key.did


def test_batch_returns_results_in_order_with_errors_in_place(fake: FakeNode) -> None:
    client = client_for(fake)
    results = client.batch(
        [("node_peers", {}), ("entry_get", {"id": "0x" + "00" * 32}), ("node_info", {})]
    )
    assert [p["peer_id"] for p in results[0]] == ["12D3KooWPeerOne", "12D3KooWPeerTwo"]
    assert isinstance(results[1], RpcError)
    assert results[1].reason == "unknown_entry"
    assert results[2]["did"] == fake.key.did
    assert len(fake.raw) == 1  # one HTTP request


# -- wallet-side signing -----------------------------------------------------------------------


def submitted(fake: FakeNode) -> list[tuple[Entry, bytes]]:
    out = []
    for body in fake.bodies:
        if body["method"] == "entry_submit":
            p = body["params"]
            assert set(p) == {"entry", "signature"}
            out.append((Entry.decode(hex_in(p["entry"], "entry")), hex_in(p["signature"], "sig")))
    return out


def test_transfer_is_built_and_signed_locally(fake: FakeNode, world: World) -> None:
    client = client_for(fake)
    first = client.transfer(CAROL, world.id, BOB.did, 20, "lunch")
    second = client.transfer(CAROL, world.id, ALICE.did, 5)
    (e1, s1), (e2, s2) = submitted(fake)
    assert [e1.id, e2.id] == [first, second]
    assert (e1.economy, e1.author, e1.seq, e1.body) == (
        world.id,
        CAROL.public,
        1,
        Transfer(BOB.public, 20, "lunch"),
    )
    assert (e2.seq, e2.prev) == (2, first)  # built on the certified head
    assert e2.ts_ms >= e1.ts_ms
    SignedEntry(e1, s1).verify()
    SignedEntry(e2, s2).verify()
    assert world.balance(CAROL) == 25
    assert world.balance(BOB) == 20
    # The key never leaves the process: no request body holds its seed or secret.
    for raw in fake.raw:
        for secret in (CAROL.seed, CAROL._secret):
            assert secret.hex() not in raw.decode()
            assert secret not in raw


def test_wait_returns_the_verified_final_status(fake: FakeNode, world: World) -> None:
    client = client_for(fake)
    entry_id = client.transfer(CAROL, world.id, BOB.did, 10)
    status = client.wait(entry_id, timeout=5)
    assert status.certified
    assert status.certificate is not None
    assert status.certificate.entry_id == entry_id
    assert status.entry is not None
    assert status.entry.body.amount == 10
    refused_id = client.transfer(BOB, world.id, CAROL.did, 10_000)
    refused = client.wait(refused_id, timeout=5)
    assert (refused.status, refused.reason) == ("refused", "insufficient_balance")
    # As the node answers (status_view): no view with a refusal, and this
    # one depended on the validators' state, so it is not final.
    assert refused.entry is None
    assert refused.certificate is None
    assert refused.retryable is True
    assert refused.id == refused_id


def test_wait_times_out_on_a_pending_entry(fake: FakeNode, world: World) -> None:
    fake.hold = True
    client = client_for(fake)
    entry_id = client.transfer(CAROL, world.id, BOB.did, 1)
    seen: list[str] = []
    with pytest.raises(ClientError) as info:
        client.wait(entry_id, timeout=0.2, on_status=lambda s: seen.append(s.status))
    assert info.value.reason == "timeout"
    assert hex_out(entry_id) in info.value.detail
    assert seen
    assert set(seen) == {"pending"}


def test_bad_input_is_refused_before_any_request(fake: FakeNode, world: World) -> None:
    client = client_for(fake)
    with pytest.raises(ClientError) as info:
        client.transfer(CAROL, world.id, "did:key:zNotAKey", 1)
    assert info.value.reason == "bad_key"
    with pytest.raises(ClientError) as info:
        client.transfer(CAROL, world.id, BOB.did, 0)
    assert info.value.reason == "amount_out_of_range"
    assert fake.raw == []


def test_a_lying_submit_is_caught(fake: FakeNode, world: World) -> None:
    fake.lie["entry_submit"] = lambda p: {"id": "0x" + "ab" * 32}
    with pytest.raises(VerifyError):
        client_for(fake).transfer(CAROL, world.id, BOB.did, 1)


# -- certificate verification ---------------------------------------------------------------------


def test_history_is_verified_and_economy_fetched_once(fake: FakeNode, world: World) -> None:
    fake.record(world.transfer(CAROL, BOB, 7))
    client = client_for(fake)
    page = client.account_history(world.id, CAROL.did)
    assert [c.entry.body.amount for c in page.entries] == [7, 50]
    client.account_history(world.id, BOB.did)
    client.entry_get(page.entries[0].entry_id)
    assert fake.methods().count("economy_get") == 1


def other_world() -> World:
    vkeys = validator_keys(4)
    return World(genesis(validators=vkeys, name="Elsewhere", nonce=b"x"), vkeys)


def test_a_certificate_from_another_economy_is_refused(fake: FakeNode, world: World) -> None:
    elsewhere = other_world()
    foreign = elsewhere.transfer(CAROL, BOB, 3)
    fake.lie["account_history"] = lambda p: {
        "entries": [CertifiedEntry.of_certificate(foreign).to_json()],
        "next_cursor": None,
    }
    with pytest.raises(VerifyError) as info:
        client_for(fake).account_history(world.id, CAROL.did)
    assert info.value.reason == "verification_failed"
    assert info.value.cause == "wrong_economy"


def test_a_forged_validator_signature_is_refused(fake: FakeNode, world: World) -> None:
    cert = world.transfer(CAROL, BOB, 3)
    sigs = list(cert.signatures)
    sigs[0] = bytes([sigs[0][0] ^ 1]) + sigs[0][1:]
    forged = dataclasses.replace(cert, signatures=tuple(sigs))
    fake.record(forged)
    with pytest.raises(VerifyError) as info:
        client_for(fake).entry_get(cert.entry_id)
    assert info.value.cause == "bad_signature"
    assert "does not verify" in str(info.value)


def test_too_few_validator_signatures_are_refused(fake: FakeNode, world: World) -> None:
    full = world.certify(world.entry(CAROL, Transfer(BOB.public, 1, "")))
    cert = fake.record(
        dataclasses.replace(full, bitmap=make_bitmap([0, 1], 4), signatures=full.signatures[:2])
    )
    with pytest.raises(VerifyError) as info:
        client_for(fake).entry_get(cert.entry_id)
    assert info.value.cause == "quorum_not_reached"


def test_a_substituted_genesis_is_refused(fake: FakeNode, world: World) -> None:
    elsewhere = FakeNode(other_world())
    fake.lie["economy_get"] = lambda p: elsewhere.answer(
        "economy_get", {"economy": hex_out(next(iter(elsewhere.worlds)))}
    )
    with pytest.raises(VerifyError) as info:
        client_for(fake).economy_get(world.id)
    assert info.value.cause == "wrong_economy"


def test_an_unsigned_genesis_is_refused(fake: FakeNode, world: World) -> None:
    signed = fake.signed[world.id]
    fake.signed[world.id] = dataclasses.replace(
        signed, bitmap=b"\x01", signatures=signed.signatures[:1]
    )
    with pytest.raises(VerifyError) as info:
        client_for(fake).economy_get(world.id)
    assert info.value.cause == "bad_genesis"


def test_a_view_that_disagrees_with_its_certificate_is_refused(
    fake: FakeNode, world: World
) -> None:
    cert = fake.record(world.transfer(CAROL, BOB, 3))
    fake.statuses[cert.entry_id]["view"]["body"]["amount"] = "3000"
    with pytest.raises(VerifyError, match="disagrees"):
        client_for(fake).entry_get(cert.entry_id)


def test_a_certificate_for_another_entry_is_refused(fake: FakeNode, world: World) -> None:
    cert = fake.record(world.transfer(CAROL, BOB, 3))
    other = fake.record(world.transfer(CAROL, BOB, 4))
    fake.statuses[cert.entry_id] = {**fake.statuses[other.entry_id], "id": hex_out(cert.entry_id)}
    with pytest.raises(VerifyError, match="another entry"):
        client_for(fake).entry_get(cert.entry_id)


def test_economy_get_and_list(fake: FakeNode, world: World) -> None:
    client = client_for(fake)
    info = client.economy_get(world.id)
    assert (info.id, info.name, info.decimals) == (world.id, "Test Valley Hours", 2)
    assert info.to_json()["genesis"] == hex_out(fake.signed[world.id].encode())
    (summary,) = client.economy_list()
    assert summary.id == world.id
    assert summary.certificates == 1
    acct = client.account_get(world.id, CAROL.did)
    assert (acct.balance, acct.seq, acct.limit, acct.member) == (50, 0, 1000, True)


def test_sign_genesis_checks_the_signature(fake: FakeNode) -> None:
    g = genesis(validators=[fake.key, *validator_keys(3)])
    client = client_for(fake)
    sig = client.economy_sign_genesis(g.encode())
    assert sig.validator == fake.key.did
    fake.lie["economy_signGenesis"] = lambda p: {
        "validator": fake.key.did,
        "signature": hex_out(g.sign(key(5))),
    }
    with pytest.raises(VerifyError):
        client.economy_sign_genesis(g.encode())
