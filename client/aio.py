"""The async client (``httpx.AsyncClient``) and WebSocket subscriptions (trio)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import httpx

from mycelia.api import methods as declared
from mycelia.api.bodies import Body
from mycelia.api.codecs import Json
from mycelia.api.encoding import hex_in, hex_out
from mycelia.client import compute
from mycelia.client.core import (
    Flow,
    _account_key,
    _admit_body,
    _burn_body,
    _Core,
    _created,
    _credit_body,
    _followed,
    _mint_body,
    _params,
    _register_body,
    _Sleep,
    _submitted,
    _timeout,
    _transfer_body,
    _unauthorized,
    parse_result,
    peer_ids,
)
from mycelia.client.endpoint import Endpoint
from mycelia.client.errors import RpcError, RpcUnavailable, T, _bad_response, _parsing
from mycelia.client.results import (
    AccountInfo,
    AuditReport,
    ChannelView,
    Claimable,
    ClaimPlan,
    ComputeAnswer,
    EconomyInfo,
    EconomySummary,
    EntryStatus,
    Followed,
    ForkInfo,
    GenesisSignature,
    HistoryPage,
    HostedDevice,
    JobOutcome,
    NodeInfo,
    OfferView,
    Prepared,
    ReadingsPage,
)
from mycelia.client.sync import _http_options, _transport_error
from mycelia.protocol import (
    Certificate,
    DeviceKey,
    Economy,
    Entry,
    Metric,
    SignedGenesis,
    SigningKey,
)
from mycelia.protocol.channels import SignedRelease, SignedVoucher
from mycelia.protocol.compute_frames import Answer, Job
from mycelia.protocol.offers import Limits, Offer

if TYPE_CHECKING:  # trio is imported where a subscription needs it
    from trio_websocket import WebSocketConnection

#: What a subscription yields, by topic: an :class:`EntryStatus` (``entry``),
#: a verified :class:`Certificate` (``account``), a verified
#: :class:`ForkInfo` (``forks``), the provider's answer frame, checked
#: against the node's view of it (``job``), the raw JSON (any other topic).
Payload: TypeAlias = "EntryStatus | Certificate | ForkInfo | Answer | Json"

# -- the async client ----------------------------------------------------------------------


class AsyncClient(_Core):
    """The same client for async code (``httpx.AsyncClient``, under trio or
    asyncio); :meth:`subscribe` and :meth:`wait` need trio (WebSocket)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint)
        if transport is None and endpoint.unix is not None:
            transport = httpx.AsyncHTTPTransport(uds=endpoint.unix)
        self._http = httpx.AsyncClient(transport=transport, **_http_options(endpoint, timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, body: Mapping[str, Json] | Sequence[Mapping[str, Json]]) -> Json:
        """POST a request or a batch; the answer's JSON."""
        try:
            response = await self._http.post("/", json=body)
        except httpx.TransportError as exc:
            raise _transport_error(self.endpoint, exc) from None
        return self._decode_http(response.status_code, response.content)

    async def call(self, method: str, **params: Json) -> Json:
        req = self._request(method, params)
        return self._outcome(await self._post(req), req["id"])

    async def batch(self, calls: Sequence[tuple[str, Mapping[str, Json]]]) -> list[Json | RpcError]:
        requests = [self._request(m, p) for m, p in calls]
        return self._results(requests, await self._post(requests))

    async def _drive(self, flow: Flow[T]) -> T:
        import anyio

        send: Json = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                result: T = stop.value  # what the flow returned (a Flow[T])
                return result
            send, error = None, None
            if isinstance(step, _Sleep):
                await anyio.sleep(step.seconds)
                continue
            try:
                send = await self.call(step.method.name, **step.params)
            except RpcError as exc:
                error = exc

    # -- typed methods: as Client's ------------------------------------------------------------

    async def node_info(self) -> NodeInfo:
        return parse_result(declared.NODE_INFO, await self.call("node_info"))

    async def node_peers(self) -> list[str]:
        return peer_ids(await self.call("node_peers"))

    async def economy_list(self) -> list[EconomySummary]:
        economies = parse_result(declared.ECONOMY_LIST, await self.call("economy_list"))
        return list(economies)

    async def economy_get(self, economy: bytes) -> EconomyInfo:
        return await self._drive(self._economy_get_flow(economy))

    async def economy(self, economy: bytes) -> Economy:
        return await self._drive(self._economy_flow(economy))

    async def economy_sign_genesis(self, genesis: bytes) -> GenesisSignature:
        return await self._drive(self._sign_genesis_flow(genesis))

    async def economy_create(self, signed: SignedGenesis) -> bytes:
        return _created(signed, await self.call("economy_create", genesis=hex_out(signed.encode())))

    async def economy_forks(self, economy: bytes) -> list[ForkInfo]:
        return await self._drive(self._forks_flow(economy))

    async def economy_follow(self, economy: bytes) -> Followed:
        return _followed(economy, await self.call("economy_follow", economy=hex_out(economy)))

    async def account_get(self, economy: bytes, account: str) -> AccountInfo:
        return await self._drive(self._account_flow(economy, account))

    async def account_history(
        self, economy: bytes, account: str, *, cursor: str | None = None, limit: int | None = None
    ) -> HistoryPage:
        return await self._drive(self._history_flow(economy, account, cursor, limit))

    async def entry_prepare(
        self, economy: bytes, author: str, kind: str, body: Json, **opt: Json
    ) -> Prepared:
        params = _params(economy=hex_out(economy), author=author, kind=kind, body=body, **opt)
        return await self._drive(self._prepare_flow(params))

    async def entry_submit(self, entry: Entry, signature: bytes) -> bytes:
        result = await self.call(
            "entry_submit", entry=hex_out(entry.encode()), signature=hex_out(signature)
        )
        return _submitted(entry, result)

    async def entry_get(self, entry_id: bytes) -> EntryStatus:
        return await self._drive(self._entry_get_flow(entry_id))

    async def discover(self) -> Json:
        return await self.call("rpc.discover")

    async def submit(
        self, key: SigningKey, economy: bytes, body: Body, *, ts_ms: int | None = None
    ) -> bytes:
        return await self._drive(self._submit_flow(key, economy, body, ts_ms))

    async def transfer(
        self, key: SigningKey, economy: bytes, to: str, amount: int, memo: str = ""
    ) -> bytes:
        return await self.submit(key, economy, _transfer_body(to, amount, memo))

    async def mint(
        self, key: SigningKey, economy: bytes, to: str, amount: int, memo: str = ""
    ) -> bytes:
        return await self.submit(key, economy, _mint_body(to, amount, memo))

    async def burn(self, key: SigningKey, economy: bytes, amount: int) -> bytes:
        return await self.submit(key, economy, _burn_body(amount))

    async def admit(self, key: SigningKey, economy: bytes, member: str) -> bytes:
        return await self.submit(key, economy, _admit_body(member))

    async def set_credit(self, key: SigningKey, economy: bytes, member: str, limit: int) -> bytes:
        return await self.submit(key, economy, _credit_body(member, limit))

    async def register_device(
        self,
        key: SigningKey,
        economy: bytes,
        device_key: DeviceKey,
        device_kind: str,
        host: str,
        metrics: Sequence[Metric],
    ) -> bytes:
        body = _register_body(key, economy, device_key, device_kind, host, metrics)
        return await self.submit(key, economy, body)

    async def sensor_get_readings(
        self,
        economy: bytes,
        device: bytes,
        *,
        first: int | None = None,
        last: int | None = None,
        limit: int | None = None,
    ) -> ReadingsPage:
        return await self._drive(self._readings_flow(economy, device, first, last, limit))

    async def sensor_get_attestation(
        self, attestation: bytes, *, economy: bytes | None = None
    ) -> Certificate:
        return await self._drive(self._attestation_flow(attestation, economy))

    async def sensor_claimable(self, economy: bytes, device: bytes) -> Claimable:
        return await self._drive(self._claimable_flow(economy, device))

    async def sensor_devices(self, economy: bytes) -> list[HostedDevice]:
        return await self._drive(self._devices_flow(economy))

    async def audit(
        self, economy: bytes, device: bytes, first: int | None = None, last: int | None = None
    ) -> AuditReport:
        return await self._drive(self._audit_flow(economy, device, first, last))

    async def prepare_claim(self, economy: bytes, device: bytes) -> ClaimPlan | None:
        return await self._drive(self._claim_flow(economy, device))

    # -- compute (docs/compute.md) --------------------------------------------------------------

    async def compute_offers(self, economy: bytes) -> list[OfferView]:
        """The economy's compute offers the node holds, each verified."""
        return await self._drive(compute.offers_flow(self, economy))

    async def channel_get(self, channel: bytes) -> ChannelView:
        """A payment channel, checked against its certified open (and settlement)."""
        return await self._drive(compute.channel_flow(self, channel))

    async def channel_list(
        self, economy: bytes, account: str, *, limit: int | None = None
    ) -> list[ChannelView]:
        """The channels ``account`` pays or is paid by (a listing)."""
        return await self._drive(compute.channels_flow(self, economy, account, limit))

    async def compute_job_start(
        self,
        offer: Offer,
        channel: bytes,
        runtime: str,
        input: bytes,
        *,
        limits: Limits | None = None,
        base: int = 0,
    ) -> tuple[Job, Answer]:
        """Start a job through the node (it dials the provider); the job it
        built (checked to be the one asked for) and the provider's answer."""
        flow = compute.start_flow(self, offer, channel, runtime, input, limits, base)
        return await self._drive(flow)

    async def compute_job_voucher(self, job: bytes, voucher: SignedVoucher) -> Answer:
        """Relay a voucher (signed here, by the caller); the provider's answer."""
        return await self._drive(compute.voucher_flow(self, job, voucher))

    async def compute_job_status(self, job: bytes) -> Answer:
        return await self._drive(compute.status_flow(self, job))

    async def compute_job_result(self, job: bytes) -> Answer:
        return await self._drive(compute.result_flow(self, job))

    async def compute_job_cancel(self, job: bytes) -> Answer:
        return await self._drive(compute.cancel_flow(self, job))

    async def open_channel(
        self,
        key: SigningKey,
        economy: bytes,
        provider: str,
        amount: int,
        expiry_ms: int,
        *,
        offer: bytes = b"",
    ) -> bytes:
        """Submit ``key``'s ``channel.open`` to ``provider`` (a did:key); the
        channel id (its entry id: wait for its certificate)."""
        provider_key = _account_key(provider)
        return await self._drive(
            compute.open_channel_flow(self, key, economy, provider_key, amount, expiry_ms, offer)
        )

    async def refund_channel(
        self,
        key: SigningKey,
        channel: bytes,
        *,
        release: SignedRelease | None = None,
        ts_ms: int | None = None,
    ) -> bytes:
        """Submit ``key``'s ``channel.refund`` of ``channel`` (after its
        expiry, or with the provider's ``release``); the entry id."""
        return await self._drive(compute.refund_flow(self, key, channel, release, ts_ms))

    async def run_job(
        self,
        key: SigningKey,
        offer: Offer,
        job: Job,
        first: Answer,
        *,
        escrow: int,
        max_spend: int,
        poll_s: float = 1.0,
        on_answer: compute.OnAnswer | None = None,
    ) -> JobOutcome:
        """Run the consumer's side of a started job: check each answer,
        sign and send the vouchers, stop paying and cancel on a bad report."""
        return await self._drive(
            compute.run_job_flow(
                self,
                key,
                offer,
                job,
                first,
                escrow=escrow,
                max_spend=max_spend,
                poll_s=poll_s,
                on_answer=on_answer,
            )
        )

    async def buy_compute(
        self,
        key: SigningKey,
        economy: bytes,
        runtime: str,
        input: bytes,
        *,
        max_spend: int,
        limits: Limits | None = None,
        expiry_margin_ms: int = compute.DEFAULT_EXPIRY_MARGIN_MS,
        poll_s: float = 1.0,
        timeout_s: float = 60.0,
        on_answer: compute.OnAnswer | None = None,
    ) -> JobOutcome:
        """Buy one job: the cheapest fitting offer, a channel of
        ``max_spend``, the job, paid as it runs; its outcome."""
        return await self._drive(
            compute.buy_flow(
                self,
                key,
                economy,
                runtime,
                input,
                max_spend=max_spend,
                limits=limits,
                expiry_margin_ms=expiry_margin_ms,
                poll_s=poll_s,
                timeout_s=timeout_s,
                on_answer=on_answer,
            )
        )

    async def wait(self, entry_id: bytes, *, timeout: float = 60.0) -> EntryStatus:
        """The entry's final status, from an ``entry`` subscription (the node
        sends the status at once if it is already final)."""
        import trio

        with trio.move_on_after(timeout):
            async with self.subscribe("entry", id=hex_out(entry_id)) as sub:
                async for status in sub:
                    # An entry subscription's payloads are statuses.
                    if isinstance(status, EntryStatus) and status.final:
                        return status
            raise RpcUnavailable(
                "connection_closed", "the subscription ended before a final status"
            )
        raise _timeout(entry_id, timeout)

    # -- subscriptions ---------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, topic: str, **params: Json) -> AsyncIterator[Subscription]:
        """Subscribe over the WebSocket ``/ws``; iterate the result for the
        payloads: :class:`EntryStatus` for ``entry`` (``id``), a verified
        :class:`Certificate` for ``account`` (``economy``, ``account``), a
        verified :class:`ForkInfo` for ``forks`` (``economy``), the raw JSON
        for any other topic. Unsubscribes and closes on exit."""
        import trio
        import trio_websocket as tw

        auth = self.endpoint.authorization
        headers = [] if auth is None else [(b"authorization", auth.encode("ascii"))]
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if self.endpoint.unix is not None:
                        stream = await trio.open_unix_socket(self.endpoint.unix)
                        host = "localhost"
                    else:
                        parts = urlsplit(str(self.endpoint.http))
                        if parts.scheme == "https":
                            raise RpcUnavailable(
                                "bad_endpoint", "subscriptions over https are not supported"
                            )
                        port = parts.port or 80
                        stream = await trio.open_tcp_stream(parts.hostname or "", port)
                        host = f"{parts.hostname}:{port}"
                    ws = await tw.wrap_client_stream(
                        nursery, stream, host, "/ws", extra_headers=headers
                    )
                except OSError:
                    raise RpcUnavailable(
                        "node_not_running",
                        f"cannot connect to {self.endpoint.where}: is the node running?",
                    ) from None
                sub = Subscription(self, ws, topic, params)
                try:
                    await sub._open()
                    yield sub
                finally:
                    with trio.move_on_after(2) as scope:
                        scope.shield = True
                        await sub._close()
        except BaseExceptionGroup as group:
            raise _unwrap(group, self.endpoint) from None


def _unwrap(group: BaseExceptionGroup, endpoint: Endpoint) -> BaseException:
    """The one error that matters in a subscription's nursery group: the
    caller's own, else the WebSocket's, as a ClientError."""
    import trio
    import trio_websocket as tw

    socket_errors = (tw.HandshakeError, tw.ConnectionClosed, OSError)
    errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    own = [e for e in errors if not isinstance(e, socket_errors)]
    exc = (own or errors or list(group.exceptions))[0]
    if isinstance(exc, BaseExceptionGroup):
        return _unwrap(exc, endpoint)
    if isinstance(exc, tw.ConnectionRejected):
        if exc.status_code == 401:
            return _unauthorized(endpoint)
        return RpcUnavailable("connection_failed", f"/ws refused: HTTP {exc.status_code}")
    if isinstance(exc, socket_errors):
        return RpcUnavailable("connection_failed", f"/ws: {type(exc).__name__}: {exc}")
    return exc


class Subscription:
    """An open subscription; ``async for payload in sub``."""

    def __init__(
        self, client: AsyncClient, ws: WebSocketConnection, topic: str, params: dict[str, Json]
    ) -> None:
        self._client = client
        self._ws = ws
        self.topic = topic
        self._params = params
        self.id: str | None = None
        self._early: list[Json] = []  # notifications that overtook the subscribe response
        self._economy: Economy | None = None

    async def _receive(self) -> Json:
        import trio_websocket as tw

        try:
            text = await self._ws.get_message()
        except tw.ConnectionClosed:
            raise RpcUnavailable("connection_closed", "the node closed the subscription") from None
        try:
            message: Json = json.loads(text)
        except ValueError:
            raise _bad_response("a WebSocket message that is not JSON") from None
        return message

    async def _open(self) -> None:
        if self.topic in ("account", "forks"):
            economy_id = hex_in(self._params.get("economy"), "economy", size=32)
            self._economy = await self._client.economy(economy_id)
        req = self._client._request("subscribe", {"topic": self.topic, **self._params})
        await self._ws.send_message(json.dumps(req))
        while True:
            message = await self._receive()
            if isinstance(message, dict) and message.get("method") == "subscription":
                self._early.append(message)
                continue
            result = self._client._outcome(message, req["id"])
            if not isinstance(result, str):
                raise _bad_response("subscribe did not return a subscription id")
            self.id = result
            return

    async def _close(self) -> None:
        import trio_websocket as tw

        try:
            if self.id is not None and not self._ws.closed:
                req = self._client._request("unsubscribe", {"subscription": self.id})
                await self._ws.send_message(json.dumps(req))
        except tw.ConnectionClosed:
            pass
        await self._ws.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Payload:
        while True:
            message = self._early.pop(0) if self._early else await self._receive()
            if not isinstance(message, dict) or message.get("method") != "subscription":
                continue  # e.g. the answer to a request of ours
            params = message.get("params")
            if not isinstance(params, dict) or params.get("subscription") != self.id:
                continue
            return await self._payload(params.get("result"))

    async def _payload(self, result: Json) -> Payload:
        if self.topic == "entry":
            entry_id = hex_in(self._params.get("id"), "id", size=32)
            return await self._client._drive(self._client._entry_status_flow(entry_id, result))
        if self.topic == "account":
            assert self._economy is not None
            return self._client._account_certificate(
                self._economy, str(self._params.get("account")), result
            )
        if self.topic == "forks":
            assert self._economy is not None
            return self._client._fork(self._economy, result, "forks notification")
        if self.topic == "job":
            job = hex_in(self._params.get("job"), "job", size=32)
            with _parsing("job notification"):
                shown = ComputeAnswer.from_json(result)
            return compute.check_answer(job, shown)
        return result
