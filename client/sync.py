"""The blocking client (``httpx.Client``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypedDict

import httpx

from mycelia.api import methods as declared
from mycelia.api.bodies import Body
from mycelia.api.codecs import Json
from mycelia.api.encoding import hex_out
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
    _transfer_body,
    parse_result,
    peer_ids,
)
from mycelia.client.endpoint import Endpoint
from mycelia.client.errors import ClientError, RpcError, RpcUnavailable, T
from mycelia.client.results import (
    AccountInfo,
    AuditReport,
    ChannelView,
    Claimable,
    ClaimPlan,
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

# -- the sync client ----------------------------------------------------------------------


def _transport_error(endpoint: Endpoint, exc: httpx.TransportError) -> ClientError:
    if isinstance(exc, httpx.ConnectError):
        return RpcUnavailable(
            "node_not_running", f"cannot connect to {endpoint.where}: is the node running?"
        )
    if isinstance(exc, httpx.TimeoutException):
        return RpcUnavailable("timeout", f"{endpoint.where} did not answer in time")
    return RpcUnavailable("connection_failed", f"{endpoint.where}: {exc}")


class _HttpOptions(TypedDict):
    """The keyword arguments both clients give httpx."""

    base_url: str
    headers: dict[str, str]
    timeout: float
    trust_env: bool


def _http_options(endpoint: Endpoint, timeout: float) -> _HttpOptions:
    auth = endpoint.authorization
    base_url = endpoint.http if endpoint.unix is None else "http://localhost"
    assert base_url is not None  # an endpoint has a URL or a socket (Endpoint.__post_init__)
    return {
        "base_url": base_url,
        "headers": {} if auth is None else {"Authorization": auth},
        "timeout": timeout,
        # Never route the local RPC through an HTTP(S)_PROXY from the environment.
        "trust_env": False,
    }


class Client(_Core):
    """A blocking client (``httpx.Client``). Use as a context manager, or
    call :meth:`close`. ``transport`` replaces the network (tests)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(endpoint)
        if transport is None and endpoint.unix is not None:
            transport = httpx.HTTPTransport(uds=endpoint.unix)
        self._http = httpx.Client(transport=transport, **_http_options(endpoint, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport and driver ------------------------------------------------------------

    def _post(self, body: Mapping[str, Json] | Sequence[Mapping[str, Json]]) -> Json:
        """POST a request or a batch; the answer's JSON."""
        try:
            response = self._http.post("/", json=body)
        except httpx.TransportError as exc:
            raise _transport_error(self.endpoint, exc) from None
        return self._decode_http(response.status_code, response.content)

    def call(self, method: str, **params: Json) -> Json:
        """One JSON-RPC call; its raw JSON result (params by name)."""
        req = self._request(method, params)
        return self._outcome(self._post(req), req["id"])

    def batch(self, calls: Sequence[tuple[str, Mapping[str, Json]]]) -> list[Json | RpcError]:
        """Several calls in one request; results in order, where a call that
        failed has its :class:`RpcError` (returned, not raised)."""
        requests = [self._request(m, p) for m, p in calls]
        return self._results(requests, self._post(requests))

    def _drive(self, flow: Flow[T]) -> T:
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
                time.sleep(step.seconds)
                continue
            try:
                send = self.call(step.method.name, **step.params)
            except RpcError as exc:
                error = exc

    # -- typed methods (docs/rpc.md) ---------------------------------------------------------

    def node_info(self) -> NodeInfo:
        return parse_result(declared.NODE_INFO, self.call("node_info"))

    def node_peers(self) -> list[str]:
        """The connected peers' ids."""
        return peer_ids(self.call("node_peers"))

    def economy_list(self) -> list[EconomySummary]:
        economies = parse_result(declared.ECONOMY_LIST, self.call("economy_list"))
        return list(economies)

    def economy_get(self, economy: bytes) -> EconomyInfo:
        """The economy, its genesis verified against ``economy`` (the id)."""
        return self._drive(self._economy_get_flow(economy))

    def economy(self, economy: bytes) -> Economy:
        """The verified :class:`Economy` (fetched once, then cached)."""
        return self._drive(self._economy_flow(economy))

    def economy_sign_genesis(self, genesis: bytes) -> GenesisSignature:
        """Ask the node's key to sign an unsigned genesis (``Genesis.encode()``)."""
        return self._drive(self._sign_genesis_flow(genesis))

    def economy_create(self, signed: SignedGenesis) -> bytes:
        result = self.call("economy_create", genesis=hex_out(signed.encode()))
        return _created(signed, result)

    def economy_follow(self, economy: bytes) -> Followed:
        return _followed(economy, self.call("economy_follow", economy=hex_out(economy)))

    def economy_forks(self, economy: bytes) -> list[ForkInfo]:
        """Every fork the node holds evidence of, each verified here."""
        return self._drive(self._forks_flow(economy))

    def account_get(self, economy: bytes, account: str) -> AccountInfo:
        return self._drive(self._account_flow(economy, account))

    def account_history(
        self, economy: bytes, account: str, *, cursor: str | None = None, limit: int | None = None
    ) -> HistoryPage:
        return self._drive(self._history_flow(economy, account, cursor, limit))

    def entry_prepare(
        self, economy: bytes, author: str, kind: str, body: Json, **opt: Json
    ) -> Prepared:
        """``opt``: ``seq``, ``prev`` (0x), ``ts_ms``."""
        params = _params(economy=hex_out(economy), author=author, kind=kind, body=body, **opt)
        return self._drive(self._prepare_flow(params))

    def entry_submit(self, entry: Entry, signature: bytes) -> bytes:
        result = self.call(
            "entry_submit", entry=hex_out(entry.encode()), signature=hex_out(signature)
        )
        return _submitted(entry, result)

    def entry_get(self, entry_id: bytes) -> EntryStatus:
        return self._drive(self._entry_get_flow(entry_id))

    def discover(self) -> Json:
        """The OpenRPC document (``rpc.discover``)."""
        return self.call("rpc.discover")

    # -- wallet-side signing --------------------------------------------------------------------

    def submit(
        self, key: SigningKey, economy: bytes, body: Body, *, ts_ms: int | None = None
    ) -> bytes:
        """Build ``key``'s next entry with ``body``, sign it locally, submit
        it; returns its id (the entry is durable on the node, not yet final)."""
        return self._drive(self._submit_flow(key, economy, body, ts_ms))

    def transfer(
        self, key: SigningKey, economy: bytes, to: str, amount: int, memo: str = ""
    ) -> bytes:
        return self.submit(key, economy, _transfer_body(to, amount, memo))

    def mint(self, key: SigningKey, economy: bytes, to: str, amount: int, memo: str = "") -> bytes:
        return self.submit(key, economy, _mint_body(to, amount, memo))

    def burn(self, key: SigningKey, economy: bytes, amount: int) -> bytes:
        return self.submit(key, economy, _burn_body(amount))

    def admit(self, key: SigningKey, economy: bytes, member: str) -> bytes:
        return self.submit(key, economy, _admit_body(member))

    def set_credit(self, key: SigningKey, economy: bytes, member: str, limit: int) -> bytes:
        return self.submit(key, economy, _credit_body(member, limit))

    def register_device(
        self,
        key: SigningKey,
        economy: bytes,
        device_key: DeviceKey,
        device_kind: str,
        host: str,
        metrics: Sequence[Metric],
    ) -> bytes:
        """Submit ``key``'s ``device.register`` of ``device_key`` (its proof
        of possession signed here by the device key), hosted by the node
        ``host`` (a did:key); returns the entry id."""
        body = _register_body(key, economy, device_key, device_kind, host, metrics)
        return self.submit(key, economy, body)

    # -- sensors (docs/sensors.md) --------------------------------------------------------------

    def sensor_get_readings(
        self,
        economy: bytes,
        device: bytes,
        *,
        first: int | None = None,
        last: int | None = None,
        limit: int | None = None,
    ) -> ReadingsPage:
        """One page of a device's readings, as relayed (unverified: use :meth:`audit`)."""
        return self._drive(self._readings_flow(economy, device, first, last, limit))

    def sensor_get_attestation(
        self, attestation: bytes, *, economy: bytes | None = None
    ) -> Certificate:
        """A certified ``sensor.attest``, verified against the genesis."""
        return self._drive(self._attestation_flow(attestation, economy))

    def sensor_claimable(self, economy: bytes, device: bytes) -> Claimable:
        return self._drive(self._claimable_flow(economy, device))

    def sensor_devices(self, economy: bytes) -> list[HostedDevice]:
        """The devices this node hosts in ``economy``."""
        return self._drive(self._devices_flow(economy))

    def audit(
        self, economy: bytes, device: bytes, first: int | None = None, last: int | None = None
    ) -> AuditReport:
        """Fetch ``device``'s readings in ``first…last`` (through this node,
        which asks the host) and verify each one end to end."""
        return self._drive(self._audit_flow(economy, device, first, last))

    def prepare_claim(self, economy: bytes, device: bytes) -> ClaimPlan | None:
        """The next ``impact.claim`` of ``device`` (see :class:`ClaimPlan`);
        None when nothing certified is left to claim. Submit its ``body``."""
        return self._drive(self._claim_flow(economy, device))

    # -- compute (docs/compute.md) --------------------------------------------------------------

    def compute_offers(self, economy: bytes) -> list[OfferView]:
        """The economy's compute offers the node holds, each verified."""
        return self._drive(compute.offers_flow(self, economy))

    def channel_get(self, channel: bytes) -> ChannelView:
        """A payment channel, checked against its certified open (and settlement)."""
        return self._drive(compute.channel_flow(self, channel))

    def channel_list(
        self, economy: bytes, account: str, *, limit: int | None = None
    ) -> list[ChannelView]:
        """The channels ``account`` pays or is paid by (a listing)."""
        return self._drive(compute.channels_flow(self, economy, account, limit))

    def compute_job_start(
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
        return self._drive(compute.start_flow(self, offer, channel, runtime, input, limits, base))

    def compute_job_voucher(self, job: bytes, voucher: SignedVoucher) -> Answer:
        """Relay a voucher (signed here, by the caller); the provider's answer."""
        return self._drive(compute.voucher_flow(self, job, voucher))

    def compute_job_status(self, job: bytes) -> Answer:
        return self._drive(compute.status_flow(self, job))

    def compute_job_result(self, job: bytes) -> Answer:
        return self._drive(compute.result_flow(self, job))

    def compute_job_cancel(self, job: bytes) -> Answer:
        return self._drive(compute.cancel_flow(self, job))

    def open_channel(
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
        return self._drive(
            compute.open_channel_flow(self, key, economy, provider_key, amount, expiry_ms, offer)
        )

    def refund_channel(
        self,
        key: SigningKey,
        channel: bytes,
        *,
        release: SignedRelease | None = None,
        ts_ms: int | None = None,
    ) -> bytes:
        """Submit ``key``'s ``channel.refund`` of ``channel`` (after its
        expiry, or with the provider's ``release``); the entry id."""
        return self._drive(compute.refund_flow(self, key, channel, release, ts_ms))

    def run_job(
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
        return self._drive(
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

    def buy_compute(
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
        return self._drive(
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

    def wait(
        self,
        entry_id: bytes,
        *,
        timeout: float = 60.0,
        on_status: Callable[[EntryStatus], None] | None = None,
    ) -> EntryStatus:
        """Poll ``entry_get`` until the entry is certified or refused (its
        final status; a refusal is returned, not raised); ``timeout`` raises
        ``ClientError("timeout")``. ``on_status`` sees every status read."""
        return self._drive(self._wait_flow(entry_id, timeout, on_status))
