"""The RPC's handlers: one per method declared in ``mycelia.api.methods``.

Each handler gets the parsed params (the declaration's parsers ran) and
returns the API value its declaration names (``mycelia.api.types``), which
the dispatcher writes; a protocol refusal is translated to -32001 with its
reason by :func:`translate`. The handlers only read the node's state and
call its API (``Node.submit``, ``Node.add_economy``, the store's readers);
every rule stays in ``protocol/``.

:data:`REGISTRY` binds every declaration to its handler; importing this
module fails if one is missing, so the server cannot offer less than the
contract declares, nor more.
"""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mycelia.api import contract, types
from mycelia.api import methods as declared
from mycelia.api.bodies import body_in
from mycelia.api.codecs import Json
from mycelia.api.encoding import ParamError, did_out, hex_out
from mycelia.api.methods import COMPONENTS, MAX_CLAIMABLE, METHODS
from mycelia.node import wire
from mycelia.node.compute.relay import RelayError
from mycelia.node.config import RpcConfig
from mycelia.node.jsonrpc import (
    LIMIT,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    REFUSED,
    UNAVAILABLE,
    Registry,
    RpcError,
)
from mycelia.node.p2p import P2PError
from mycelia.node.submitter import PENDING, UNKNOWN, Status
from mycelia.node.validator import StoreView
from mycelia.node.views import status_view
from mycelia.protocol import (
    Certificate,
    ClaimCursor,
    DeviceRecord,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    Reason,
    Refused,
    SensorAttest,
    SignedEntry,
    SignedGenesis,
    entry_for,
    impact,
    schema,
)
from mycelia.protocol.channels import ChannelRecord, ChannelState, SignedVoucher, channel_state
from mycelia.protocol.domains import ENTRY
from mycelia.protocol.governance import PROPOSAL_FACT
from mycelia.protocol.offers import Limits
from mycelia.protocol.state import fact_key

if TYPE_CHECKING:  # the daemon imports the RPC
    from mycelia.node.daemon import Node
    from mycelia.node.rpc.hub import Hub, Session

__all__ = ["MAX_CLAIMABLE", "REGISTRY", "VERSION", "Api", "openrpc_document", "translate"]

try:
    VERSION = importlib.metadata.version("mycelia")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"

REGISTRY = Registry(schemas=COMPONENTS)
#: ``@implement(declared.NAME)``: the handler of a declared method, which
#: must return the declaration's result type.
implement = REGISTRY.implement


@dataclass(slots=True)
class Api:
    """What every method handler gets first: the node and the RPC settings."""

    node: Node
    config: RpcConfig
    hub: Hub
    openrpc: dict[str, Json] = field(default_factory=dict)

    def economy(self, economy_id: bytes) -> Economy:
        economy = self.node.applier.economies.get(economy_id)
        if economy is None:
            detail = f"this node does not know economy {hex_out(economy_id)}"
            raise RpcError(NOT_FOUND, contract.UNKNOWN_ECONOMY, detail)
        return economy

    def certificates(self, economy_id: bytes) -> tuple[int, int]:
        """(accounts with state, certified entries) of an economy on this
        node: counters the store keeps with every batch, not a scan."""
        return self.node.store.sizes_of(economy_id)


def _page_too_large(limit: int, most: int, what: str | None = None) -> RpcError:
    what = f"rpc.max_page ({most})" if what is None else what
    return RpcError(LIMIT, contract.PAGE_TOO_LARGE, f"limit {limit} is above {what}", limit=most)


def _ws_only(session: Session | None, name: str) -> Session:
    if session is None:
        raise RpcError(
            METHOD_NOT_FOUND,
            contract.WEBSOCKET_ONLY,
            f"{name} works over the WebSocket ({contract.WS_PATH}) only",
        )
    return session


# -- the node ---------------------------------------------------------------------------


@implement(declared.NODE_INFO)
async def node_info(api: Api, session: Session | None) -> types.NodeInfo:
    node = api.node
    listening = node.listening
    return types.NodeInfo(
        did=node.key.did,
        peer_id=node.p2p.peer_id,
        version=VERSION,
        addresses=tuple(node.addresses),
        rpc=tuple(listening.rpc),
        rpc_unix=listening.rpc_unix,
        metrics=listening.metrics,
        ingest=listening.ingest,
        validator=node.settings.validator,
        economies=tuple(sorted(node.follow)),
        pending=node.submitter.pending_count,
        sync_lag=node.sync.lag,
        compute=_compute_info(node),
    )


def _compute_info(node: Node) -> types.ComputeInfo:
    status = node.compute.status()
    return types.ComputeInfo(
        enabled=status.enabled,
        runtimes=status.runtimes,
        metering=status.tier,
        metering_why=status.why,
        running=status.running,
        relayed=status.relayed,
    )


@implement(declared.NODE_PEERS)
async def node_peers(api: Api, session: Session | None) -> tuple[types.Peer, ...]:
    return tuple(types.Peer(peer_id=peer) for peer in api.node.p2p.peers())


# -- economies ---------------------------------------------------------------------------


@implement(declared.ECONOMY_LIST)
async def economy_list(api: Api, session: Session | None) -> tuple[types.EconomySummary, ...]:
    out = []
    for economy in api.node.applier.economies.values():
        g = economy.genesis
        out.append(
            types.EconomySummary(
                id=economy.id,
                name=g.name,
                symbol=g.symbol,
                decimals=g.decimals,
                kind=g.kind,
                quorum=g.quorum,
                validators=tuple(did_out(k) for k in economy.validators),
                certificates=api.certificates(economy.id)[1],
                forks=api.node.forks.count(economy.id),
            )
        )
    return tuple(out)


@implement(declared.ECONOMY_GET)
async def economy_get(api: Api, session: Session | None, economy: bytes) -> types.EconomyView:
    api.economy(economy)
    signed = api.node.store.economy(economy)
    if signed is None:  # known to the applier, so stored; a race with nothing
        raise RpcError(NOT_FOUND, contract.UNKNOWN_ECONOMY, "no stored genesis")
    accounts, certificates = api.certificates(economy)
    return types.EconomyView.of(signed, accounts, certificates, api.economy(economy))


@implement(declared.GOV_SEALS)
async def gov_seals(
    api: Api, session: Session | None, economy: bytes, proposal: bytes
) -> types.SealsView:
    econ = api.economy(economy)
    if api.node.store.record(economy, fact_key(PROPOSAL_FACT, proposal)) is None:
        raise RpcError(NOT_FOUND, contract.UNKNOWN_ENTRY, "no certified proposal of that id here")
    seals = await api.node.gather_seals(econ, proposal)
    return types.SealsView(
        epoch=econ.epoch,
        seals=tuple(s.encode() for s in seals),
        weight=econ.weight(econ.index[s.validator] for s in seals),
        quorum=econ.quorum,
    )


@implement(declared.ECONOMY_SIGN_GENESIS)
async def economy_sign_genesis(
    api: Api, session: Session | None, genesis: bytes
) -> types.GenesisSignature:
    g = Genesis.decode(genesis)
    key = api.node.key
    if all(v.key != key.public for v in g.validators):
        detail = f"this node's key {key.did} is not a validator of it"
        raise RpcError(UNAVAILABLE, contract.NOT_VALIDATOR, detail)
    return types.GenesisSignature(validator=key.did, signature=g.sign(key))


@implement(declared.ECONOMY_CREATE)
async def economy_create(api: Api, session: Session | None, genesis: bytes) -> types.Created:
    economy = await api.node.add_economy(SignedGenesis.decode(genesis))
    return types.Created(id=economy.id)


@implement(declared.ECONOMY_FOLLOW)
async def economy_follow(api: Api, session: Session | None, economy: bytes) -> types.Followed:
    known = economy in api.node.applier.economies
    await api.node.follow_economy(economy)
    return types.Followed(id=economy, known=known)


@implement(declared.ECONOMY_FORKS)
async def economy_forks(
    api: Api,
    session: Session | None,
    economy: bytes,
    cursor: bytes | None = None,
    limit: int | None = None,
) -> types.ForksPage:
    if limit is None:
        limit = min(50, api.config.max_page)
    elif limit > api.config.max_page:
        raise _page_too_large(limit, api.config.max_page)
    econ = api.economy(economy)
    store = api.node.store
    slots = [a + n.to_bytes(8, "big") for a, n in store.fork_slots(economy)]
    if cursor is not None:
        slots = [k for k in slots if k > cursor]
    out = []
    for k in slots[:limit]:
        raw = store.fork(economy, k[:32], int.from_bytes(k[32:], "big"))
        if raw is not None:
            out.append(types.Fork.of(econ, ForkEvidence.decode(raw)))
    more = len(slots) > limit
    return types.ForksPage(
        forks=tuple(out), next_cursor=hex_out(slots[limit - 1]) if more else None
    )


# -- accounts ----------------------------------------------------------------------------


@implement(declared.ACCOUNT_GET)
async def account_get(
    api: Api, session: Session | None, economy: bytes, account: bytes
) -> types.AccountInfo:
    econ = api.economy(economy)
    return types.AccountInfo.of(econ, account, api.node.store.account(economy, account))


@implement(declared.ACCOUNT_HISTORY)
async def account_history(
    api: Api,
    session: Session | None,
    economy: bytes,
    account: bytes,
    cursor: int | None = None,
    limit: int = 50,
) -> types.AccountHistory:
    if limit > api.config.max_page:
        raise _page_too_large(limit, api.config.max_page)
    api.economy(economy)
    # One more than asked tells whether a next page exists.
    items = api.node.store.history(economy, account, cursor, limit + 1)
    page = items[:limit]
    entries = tuple(types.CertifiedEntry.of_certificate(Certificate.decode(d)) for _, d in page)
    more = len(items) > limit
    return types.AccountHistory(entries=entries, next_cursor=str(page[-1][0]) if more else None)


# -- entries -----------------------------------------------------------------------------


@implement(declared.ENTRY_PREPARE)
async def entry_prepare(
    api: Api,
    session: Session | None,
    economy: bytes,
    author: bytes,
    kind: str,
    body: object,
    seq: int | None = None,
    prev: bytes | None = None,
    ts_ms: int | None = None,
) -> types.Prepared:
    api.economy(economy)
    parsed = body_in(kind, body)
    store = api.node.store
    acct = store.account(economy, author)

    try:
        entry = entry_for(
            economy,
            author,
            acct,
            parsed,
            int(time.time() * 1000),
            seq=seq,
            prev=prev,
            ts_ms=ts_ms,
            id_at=lambda at: store.chain_entry(economy, author, at),
        )
    except Refused as exc:
        if exc.reason is not Reason.MISSING:
            raise
        raise ParamError("prev", exc.detail) from None
    return _prepared(entry)


def _prepared(entry: Entry) -> types.Prepared:
    entry_id = entry.id
    return types.Prepared(
        id=entry_id,
        entry=entry,
        signing_message=ENTRY.message(entry_id),
        view=types.EntryView.of(entry, entry_id),
    )


@implement(declared.ENTRY_SUBMIT)
async def entry_submit(
    api: Api, session: Session | None, entry: bytes, signature: bytes
) -> types.Submitted:
    signed = SignedEntry(Entry.decode(entry), signature)
    return types.Submitted(id=await api.node.submit(signed))


def _known_status(api: Api, entry_id: bytes) -> Status:
    status = api.node.submitter.status(entry_id)
    if status.state == UNKNOWN:
        detail = f"this node knows no entry {hex_out(entry_id)}"
        raise RpcError(NOT_FOUND, contract.UNKNOWN_ENTRY, detail)
    return status


@implement(declared.ENTRY_GET)
async def entry_get(api: Api, session: Session | None, id: bytes) -> types.EntryStatus:
    return status_view(_known_status(api, id))


# -- subscriptions -----------------------------------------------------------------------


@implement(declared.SUBSCRIBE)
async def subscribe(
    api: Api,
    session: Session | None,
    topic: str,
    economy: bytes | None = None,
    account: bytes | None = None,
    id: bytes | None = None,
    job: bytes | None = None,
) -> str:
    ws = _ws_only(session, "subscribe")
    needed = declared.TOPICS[topic]
    given = {"economy": economy, "account": account, "id": id, "job": job}
    for name, value in given.items():
        if name in needed and value is None:
            raise ParamError(name, f"missing (topic {topic})")
        if name not in needed and value is not None:
            raise ParamError(name, f"not a parameter of topic {topic}")
    if len(ws.subscriptions) >= api.config.max_subscriptions:
        raise RpcError(
            LIMIT,
            contract.TOO_MANY_SUBSCRIPTIONS,
            f"this WebSocket holds {len(ws.subscriptions)} subscriptions already "
            f"(rpc.max_subscriptions)",
            limit=api.config.max_subscriptions,
        )
    if topic == "account":
        assert economy is not None
        assert account is not None
        api.economy(economy)
        return api.hub.watch_account(ws, economy, account).id
    if topic == "forks":
        assert economy is not None
        api.economy(economy)
        return api.hub.watch_forks(ws, economy).id
    if topic == "job":
        assert job is not None
        try:
            return api.hub.watch_job(ws, job).id
        except RelayError as exc:
            raise _relay_error(exc) from None
    assert id is not None
    status = _known_status(api, id)
    if status.state == PENDING:
        return api.hub.watch_entry(ws, id).id
    # Final already: one notification, after the response that names it.
    sub = ws.new_subscription("entry")
    ws.notify(sub.id, status_view(status).to_json())
    ws.end(sub)
    return sub.id


@implement(declared.UNSUBSCRIBE)
async def unsubscribe(api: Api, session: Session | None, subscription: str) -> bool:
    ws = _ws_only(session, "unsubscribe")
    if not ws.issued(subscription):
        raise ParamError("subscription", "not a subscription of this WebSocket")
    sub = ws.subscriptions.get(subscription)
    if sub is not None:
        api.hub.forget(sub)
    return True


# -- sensors (docs/sensors.md, "Node interfaces") ----------------------------------------


def _registration(api: Api, economy: bytes, device: bytes) -> DeviceRecord:
    raw = api.node.store.record(economy, DeviceRecord.key(device))
    if raw is None:
        detail = f"device {hex_out(device)} is not registered there"
        raise RpcError(NOT_FOUND, contract.UNKNOWN_DEVICE, detail)
    return DeviceRecord.decode(raw)


@implement(declared.SENSOR_GET_READINGS)
async def sensor_get_readings(
    api: Api,
    session: Session | None,
    economy: bytes,
    device: bytes,
    first: int = 0,
    last: int = schema.UINT64_MAX,
    limit: int | None = None,
) -> types.ReadingsPage:
    most = min(api.config.max_page, wire.MAX_AUDIT_READINGS)
    if limit is None:
        limit = min(100, most)
    elif limit > most:
        raise _page_too_large(limit, most, f"{most} (rpc.max_page)")
    api.economy(economy)
    record = _registration(api, economy, device)
    request = wire.AuditRequest(economy, device, first, last, limit)
    node = api.node
    if record.host == node.key.public:
        items, next_counter = await node.audit.readings(request)
    else:
        try:
            items, next_counter = await node.audit.ask(record.host, request)
        except (P2PError, Refused) as exc:
            raise RpcError(
                UNAVAILABLE,
                contract.HOST_UNREACHABLE,
                f"the device's host {did_out(record.host)} did not answer: {exc}",
            ) from None
    return types.ReadingsPage(
        readings=tuple(
            types.StoredReading(
                data=i.signed, attestation=i.attestation or None, proof=i.proof or None
            )
            for i in items
        ),
        next=next_counter,
    )


@implement(declared.SENSOR_GET_ATTESTATION)
async def sensor_get_attestation(api: Api, session: Session | None, id: bytes) -> types.Attestation:
    data = api.node.store.certificate_bytes(id)
    cert = Certificate.decode(data) if data is not None else None
    if cert is None:
        cert = await api.node.audit.fetch_certificate(id)
    if cert is None or cert.entry.kind != SensorAttest.kind:
        what = "no certified entry" if cert is None else f"a {cert.entry.kind}, not an attestation"
        raise RpcError(NOT_FOUND, contract.UNKNOWN_ATTESTATION, f"{hex_out(id)}: {what}")
    return types.Attestation.of(cert)


@implement(declared.SENSOR_CLAIMABLE)
async def sensor_claimable(
    api: Api, session: Session | None, economy: bytes, device: bytes
) -> types.Claimable:
    econ = api.economy(economy)
    _ = econ.impact  # not_allowed outside impact economies (before unknown_device)
    record = _registration(api, economy, device)
    store = api.node.store
    view = StoreView(store, economy)
    raw = store.record(economy, ClaimCursor.key(record.owner, device))
    after = (ClaimCursor() if raw is None else ClaimCursor.decode(raw)).last
    candidates = store.attestations_of(economy, device, after, MAX_CLAIMABLE)
    return types.Claimable.of(impact.claimable(econ, view, device, candidates))


@implement(declared.SENSOR_DEVICES)
async def sensor_devices(
    api: Api, session: Session | None, economy: bytes
) -> tuple[types.HostedDevice, ...]:
    api.economy(economy)
    store = api.node.store
    me = api.node.key.public
    out = []
    for raw in store.records(economy, DeviceRecord.key(b"")).values():
        record = DeviceRecord.decode(raw)
        if record.host != me:
            continue
        state = store.ingest_state(record.device)
        if state is not None and state.economy != economy:
            state = None
        out.append(
            types.HostedDevice(
                device=record.device,
                owner=did_out(record.owner),
                kind=record.body.device_kind,
                last_accepted=None if state is None else state.last_accepted,
                last_attested=store.last_attested(economy, record.device),
                readings=0 if state is None else state.readings,
            )
        )
    return tuple(out)


# -- compute (docs/compute.md) -----------------------------------------------------------

#: A relay's refusal as the RPC's error code.
_RELAY_CODES = {
    contract.UNKNOWN_OFFER: NOT_FOUND,
    contract.UNKNOWN_JOB: NOT_FOUND,
    contract.TOO_MANY_JOBS: LIMIT,
    contract.PROVIDER_UNREACHABLE: UNAVAILABLE,
}


def _relay_error(exc: RelayError) -> RpcError:
    return RpcError(_RELAY_CODES.get(exc.reason, UNAVAILABLE), exc.reason, exc.detail)


def _answer(job: bytes, frame: bytes) -> types.ComputeAnswer:
    return types.ComputeAnswer.of(job, frame)


@implement(declared.COMPUTE_OFFERS)
async def compute_offers(
    api: Api, session: Session | None, economy: bytes
) -> tuple[types.OfferView, ...]:
    api.economy(economy)
    return tuple(types.OfferView.of(o) for o in api.node.compute.market.offers(economy))


def _channel(api: Api, economy: bytes, channel: bytes) -> ChannelState | None:
    store = api.node.store
    return channel_state(lambda k: store.record(economy, k), channel)


@implement(declared.CHANNEL_GET)
async def channel_get(api: Api, session: Session | None, channel: bytes) -> types.ChannelView:
    for economy in sorted(api.node.applier.economies):
        state = _channel(api, economy, channel)
        if state is not None:
            return types.ChannelView.of(economy, state)
    detail = f"no economy this node follows has a channel {hex_out(channel)}"
    raise RpcError(NOT_FOUND, contract.UNKNOWN_CHANNEL, detail)


@implement(declared.CHANNEL_LIST)
async def channel_list(
    api: Api, session: Session | None, economy: bytes, account: bytes, limit: int | None = None
) -> tuple[types.ChannelView, ...]:
    most = api.config.max_page
    if limit is None:
        limit = min(100, most)
    elif limit > most:
        raise _page_too_large(limit, most)
    api.economy(economy)
    found = []
    for key, raw in api.node.store.records(economy, ChannelRecord.key(b"")).items():
        record = ChannelRecord.decode(raw)
        if account in (record.consumer, record.provider):
            state = _channel(api, economy, key.removeprefix(ChannelRecord.key(b"")))
            if state is not None:
                found.append(state)
    found.sort(key=lambda c: (-c.expiry_ms, c.id))
    return tuple(types.ChannelView.of(economy, c) for c in found[:limit])


@implement(declared.COMPUTE_JOB_START)
async def compute_job_start(
    api: Api,
    session: Session | None,
    offer: bytes,
    channel: bytes,
    runtime: str,
    input: bytes,
    limits: Limits | None = None,
    base: int = 0,
) -> types.JobStarted:
    try:
        relayed = await api.node.compute.relay.start(
            offer, channel, runtime, input, limits=limits, base=base
        )
    except RelayError as exc:
        raise _relay_error(exc) from None
    job = relayed.job
    return types.JobStarted(id=job.id, job=job.encode(), answer=_answer(job.id, relayed.answer))


@implement(declared.COMPUTE_JOB_VOUCHER)
async def compute_job_voucher(
    api: Api, session: Session | None, job: bytes, voucher: bytes
) -> types.ComputeAnswer:
    SignedVoucher.decode(voucher)  # refused here (its reason) if it is none
    try:
        return _answer(job, await api.node.compute.relay.voucher(job, voucher))
    except RelayError as exc:
        raise _relay_error(exc) from None


@implement(declared.COMPUTE_JOB_STATUS)
async def compute_job_status(api: Api, session: Session | None, job: bytes) -> types.ComputeAnswer:
    try:
        return _answer(job, await api.node.compute.relay.poll(job))
    except RelayError as exc:
        raise _relay_error(exc) from None


@implement(declared.COMPUTE_JOB_RESULT)
async def compute_job_result(api: Api, session: Session | None, job: bytes) -> types.ComputeAnswer:
    answer = await compute_job_status(api, session, job)
    if answer.kind == "usage":
        raise RpcError(
            UNAVAILABLE, contract.JOB_RUNNING, f"job {hex_out(job)} runs (seq {answer.seq})"
        )
    return answer


@implement(declared.COMPUTE_JOB_CANCEL)
async def compute_job_cancel(api: Api, session: Session | None, job: bytes) -> types.ComputeAnswer:
    try:
        return _answer(job, await api.node.compute.relay.cancel(job))
    except RelayError as exc:
        raise _relay_error(exc) from None


@implement(declared.RPC_DISCOVER)
async def rpc_discover(api: Api, session: Session | None) -> Json:
    return api.openrpc


def openrpc_document() -> dict[str, Json]:
    """The document ``rpc.discover`` returns: made from the registry, which
    holds exactly the declared methods."""
    document = declared.openrpc_document(VERSION)
    info = document["info"]
    assert isinstance(info, dict)
    assert document == REGISTRY.openrpc(info)
    return document


# -- errors ------------------------------------------------------------------------------


def translate(exc: Exception) -> RpcError | None:
    """A protocol refusal is -32001 with its reason (and needs)."""
    if isinstance(exc, Refused):
        extra: dict[str, Json] = (
            {"needs": [types.need_json(n) for n in exc.needs]} if exc.needs else {}
        )
        return RpcError(REFUSED, exc.reason.value, exc.detail, **extra)
    return None


_missing = set(METHODS) - set(REGISTRY.methods)
if _missing:  # pragma: no cover - caught by importing this module at all
    raise RuntimeError(f"declared methods without a handler: {sorted(_missing)}")
