"""The RPC's methods: their declarations and handlers."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mycelia.api.bodies import body_in
from mycelia.api.encoding import ParamError, did_in, did_out, hex_in, hex_out, int_in, str_in
from mycelia.node import wire
from mycelia.node.config import RpcConfig
from mycelia.node.jsonrpc import (
    LIMIT,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    REFUSED,
    UNAVAILABLE,
    Param,
    Registry,
    RpcError,
)
from mycelia.node.p2p import P2PError
from mycelia.node.submitter import CERTIFIED, PENDING, UNKNOWN, Status
from mycelia.node.submitter import REFUSED as REFUSED_STATE
from mycelia.node.validator import StoreView
from mycelia.node.views import (
    account_view,
    certificate_view,
    claimable_view,
    economy_view,
    entry_view,
    fork_view,
)
from mycelia.protocol import (
    ZERO_ID,
    Certificate,
    ClaimCursor,
    DeviceRecord,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    Refused,
    SensorAttest,
    SignedEntry,
    SignedGenesis,
    impact,
    next_entry,
    schema,
)
from mycelia.protocol.domains import ENTRY
from mycelia.protocol.economy import MAX_GENESIS_BYTES, MAX_SIGNED_GENESIS_BYTES
from mycelia.protocol.entries import MAX_ENTRY_BYTES
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain

if TYPE_CHECKING:  # the daemon imports the RPC
    from mycelia.node.daemon import Node
    from mycelia.node.rpc.hub import Hub, Session

try:
    VERSION = importlib.metadata.version("mycelia")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    VERSION = "0+unknown"


# -- JSON schemas shared by the method declarations ------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str] | None, optional: dict[str, Any] | None = None, **props: Any) -> dict:
    """An object schema: ``props`` (all required when ``required`` is None)
    and ``optional`` ones; no other member."""
    return {
        "type": "object",
        "required": list(props) if required is None else required,
        "properties": {**props, **(optional or {})},
        "additionalProperties": False,
    }


_PAYMENT = _obj(["to", "amount"], to=_ref("Did"), amount=_ref("Amount"), memo={"type": "string"})
_ENTRY_FIELDS = {
    "id": _ref("Id"),
    "economy": _ref("Id"),
    "author": _ref("Did"),
    "seq": {"type": "integer", "minimum": 1},
    "prev": _ref("Id"),
    "ts_ms": {"type": "integer", "minimum": 0},
    "kind": _ref("Kind"),
    "body": _ref("Body"),
}
_INT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Hex": {
        "type": "string",
        "pattern": "^0x([0-9a-fA-F]{2})*$",
        "description": "bytes as 0x-prefixed hex (lowercase in answers)",
    },
    "Id": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$", "description": "a 32-byte id"},
    "Signature": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{128}$",
        "description": "a 64-byte Ed25519 signature",
    },
    "Did": {
        "type": "string",
        "pattern": "^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]+$",
        "description": "an Ed25519 did:key",
    },
    "Amount": {
        "type": "string",
        "pattern": "^[1-9][0-9]{0,18}$",
        "description": "a positive amount as a decimal string (never a JSON number)",
    },
    "SignedAmount": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a balance or limit as a decimal string, may be negative",
    },
    "Kind": {
        "enum": [
            "transfer",
            "mint",
            "burn",
            "member.admit",
            "credit.set",
            "device.register",
            "sensor.attest",
            "impact.claim",
        ]
    },
    "Body": {
        "description": "by kind: transfer/mint {to, amount, memo?}; burn {amount}; "
        "member.admit {member}; credit.set {member, limit}; device.register, sensor.attest, "
        "impact.claim: docs/sensors.md (counters are integers, metric values decimal strings)",
        "oneOf": [
            _PAYMENT,
            _obj(["amount"], amount=_ref("Amount")),
            _obj(["member"], member=_ref("Did")),
            _obj(["member", "limit"], member=_ref("Did"), limit=_ref("SignedAmount")),
            _ref("DeviceRegisterBody"),
            _ref("SensorAttestBody"),
            _ref("ImpactClaimBody"),
        ],
    },
    "Counter": {"type": "integer", "minimum": 0, "maximum": (1 << 64) - 1},
    "Int64": {
        "type": "string",
        "pattern": "^(0|-?[1-9][0-9]{0,18})$",
        "description": "a signed 64-bit value of a metric as a decimal string",
    },
    "DeviceRegisterBody": _obj(
        ["key_type", "public_key", "device_kind", "host", "metrics", "pop"],
        {"device": {**_ref("Id"), "description": "the device id (derived from the key)"}},
        key_type={"enum": ["ed25519", "p256"]},
        public_key=_ref("Hex"),
        device_kind={"type": "string"},
        host=_ref("Did"),
        metrics={
            "type": "array",
            "items": _obj(
                None,
                name={"type": "string"},
                unit={"type": "string"},
                exponent={"type": "integer", "minimum": -18, "maximum": 18},
                min=_ref("Int64"),
                max=_ref("Int64"),
            ),
        },
        pop={**_ref("Hex"), "description": "the device key's proof of possession"},
    ),
    "SensorAttestBody": _obj(
        None,
        root=_ref("Id"),
        count={"type": "integer", "minimum": 1},
        devices={
            "type": "array",
            "items": _obj(
                None,
                device=_ref("Id"),
                registration=_ref("Id"),
                first=_ref("Counter"),
                last=_ref("Counter"),
                count={"type": "integer", "minimum": 1},
                aggregates={
                    "type": "array",
                    "items": _obj(
                        None,
                        metric={"type": "string"},
                        sum=_ref("Int64"),
                        min=_ref("Int64"),
                        max=_ref("Int64"),
                    ),
                },
            ),
        },
    ),
    "ImpactClaimBody": _obj(
        None,
        device=_ref("Id"),
        first_counter=_ref("Counter"),
        last_counter=_ref("Counter"),
        attestations={"type": "array", "items": _ref("Id")},
        total=_ref("Int64"),
    ),
    "EntryView": _obj(list(_ENTRY_FIELDS), **_ENTRY_FIELDS),
    "CertifiedEntry": _obj(
        [*_ENTRY_FIELDS, "certificate"],
        **_ENTRY_FIELDS,
        certificate={**_ref("Hex"), "description": "the certificate's bytes"},
    ),
    "EntryStatus": _obj(
        ["id", "status"],
        {
            "reason": {
                "type": "string",
                "description": "refused: the protocol reason; pending: the refusal (depending "
                "on the validators' state) that is being asked again",
            },
            "detail": {"type": "string"},
            "retryable": {
                "type": "boolean",
                "description": "refused: true when the reason depended on what the validators "
                "had seen (the node gave up at its deadline): the same entry may still be "
                "certified, e.g. submitted again",
            },
            "waiting_on": {**_INT, "description": "pending: validators found unreachable"},
            "certificate": _ref("Hex"),
            "view": _ref("EntryView"),
        },
        id=_ref("Id"),
        status={"enum": [PENDING, CERTIFIED, REFUSED_STATE]},
    ),
    "Account": _obj(
        None,
        account=_ref("Did"),
        balance=_ref("SignedAmount"),
        limit={
            "oneOf": [_ref("SignedAmount"), {"type": "null"}],
            "description": "the credit limit in force (mutual credit); null in issued",
        },
        seq=_INT,
        head=_ref("Id"),
        ts_ms={**_INT, "description": "the head entry's timestamp (0 before the first entry)"},
        member={"type": "boolean"},
        minted=_ref("SignedAmount"),
        burned=_ref("SignedAmount"),
    ),
    "EconomySummary": _obj(
        None,
        id=_ref("Id"),
        name={"type": "string"},
        symbol={"type": "string"},
        decimals=_INT,
        kind={"enum": ["mutual_credit", "issued", "impact"]},
        quorum=_INT,
        validators={"type": "array", "items": _ref("Did")},
        certificates={**_INT, "description": "certified entries this node holds"},
        forks={**_INT, "description": "chain slots this node holds fork evidence for"},
    ),
    "Economy": _obj(
        None,
        id=_ref("Id"),
        name={"type": "string"},
        symbol={"type": "string"},
        decimals=_INT,
        kind={"enum": ["mutual_credit", "issued", "impact"]},
        membership={"enum": ["open", "approved"]},
        stewards={"type": "array", "items": _ref("Did")},
        default_limit={"oneOf": [_ref("SignedAmount"), {"type": "null"}]},
        issuers={
            "type": "array",
            "items": _obj(["account", "cap"], account=_ref("Did"), cap=_ref("Amount")),
        },
        impact={
            "oneOf": [
                _obj(
                    None,
                    metric={"type": "string"},
                    exponent={"type": "integer"},
                    units_per_credit=_ref("Amount"),
                    device_kinds={"type": "array", "items": {"type": "string"}},
                ),
                {"type": "null"},
            ],
            "description": "an impact economy's policy; null in other kinds",
        },
        validators={
            "type": "array",
            "items": _obj(["did", "weight"], did=_ref("Did"), weight=_INT),
        },
        quorum=_INT,
        ts_ms=_INT,
        nonce=_ref("Hex"),
        genesis={**_ref("Hex"), "description": "the signed genesis' bytes"},
        accounts={**_INT, "description": "accounts with any state on this node"},
        certificates={**_INT, "description": "certified entries this node holds"},
    ),
    "Fork": _obj(
        None,
        economy=_ref("Id"),
        author={**_ref("Did"), "description": "the author whose chain forked"},
        seq={"type": "integer", "minimum": 1, "description": "the slot with two certificates"},
        entries={
            "type": "array",
            "items": _ref("EntryView"),
            "minItems": 2,
            "maxItems": 2,
            "description": "the two certified entries, in the evidence's order",
        },
        guilty={
            "type": "array",
            "items": _ref("Did"),
            "description": "the validators that signed both certificates",
        },
        evidence={
            **_ref("Hex"),
            "description": 'the evidence\'s bytes, ["fork", 1, cert, cert]: proves the rest',
        },
    ),
    "NodeInfo": _obj(
        None,
        did=_ref("Did"),
        peer_id={"type": "string"},
        version={"type": "string"},
        addresses={
            "type": "array",
            "items": {"type": "string"},
            "description": "libp2p listen multiaddrs",
        },
        rpc={
            "type": "array",
            "items": {"type": "string"},
            "description": "the RPC's HTTP URLs as bound: rpc.host:rpc.port, then rpc.extra_bind",
        },
        rpc_unix={
            "type": ["string", "null"],
            "description": "the RPC's unix socket (absolute path); null without one",
        },
        metrics={
            "type": ["string", "null"],
            "description": "the Prometheus endpoint (http://HOST:PORT/metrics); null when off",
        },
        ingest={
            "type": ["string", "null"],
            "description": "the sensor ingest's base URL (POST /v1/readings); null when off",
        },
        validator={"type": "boolean", "description": "votes where its key is a validator"},
        economies={
            "type": "array",
            "items": _ref("Id"),
            "description": "ids of the economies this node follows",
        },
        pending={**_INT, "description": "submissions awaiting certification"},
        sync_lag={**_INT, "description": "certificates peers hold that this node lacks"},
    ),
}


# -- param parsers (views.py does the work; these only fix the options) ---------------


def _id_in(value: Any, field: str) -> bytes:
    return hex_in(value, field, size=32)


def _cursor_in(value: Any, field: str) -> int:
    text = str_in(value, field, max_bytes=19)
    if not text.isascii() or not text.isdigit() or text.startswith("0"):
        raise ParamError(field, "expected a cursor from a previous page (a decimal string)")
    return int(text)


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def parse(value: Any, field: str) -> str:
        if value not in choices or type(value) is not str:
            raise ParamError(field, f"one of {', '.join(choices)}")
        return value

    return parse


def _economy_param(description: str = "the economy id") -> Param:
    return Param("economy", _ref("Id"), description, _id_in)


def _account_param(name: str = "account", description: str = "the account") -> Param:
    return Param(name, _ref("Did"), description, did_in)


# -- the methods -----------------------------------------------------------------------

REGISTRY = Registry(schemas=SCHEMAS)
method = REGISTRY.method


@dataclass(slots=True)
class Api:
    """What every method handler gets first: the node and the RPC settings."""

    node: Node
    config: RpcConfig
    hub: Hub
    openrpc: dict[str, Any] = field(default_factory=dict)

    def economy(self, economy_id: bytes) -> Economy:
        economy = self.node.applier.economies.get(economy_id)
        if economy is None:
            detail = f"this node does not know economy {hex_out(economy_id)}"
            raise RpcError(NOT_FOUND, "unknown_economy", detail)
        return economy

    def certificates(self, economy_id: bytes) -> tuple[int, int]:
        """(accounts with state, certified entries) of an economy on this node."""
        accounts = self.node.store.accounts(economy_id)
        return len(accounts), sum(a.seq for a in accounts.values())


def _ws_only(session: Session | None, name: str) -> Session:
    if session is None:
        raise RpcError(
            METHOD_NOT_FOUND, "websocket_only", f"{name} works over the WebSocket (/ws) only"
        )
    return session


@method(
    "node_info",
    "This node: its key, peer id, every address it listens on, and load.",
    result=_ref("NodeInfo"),
)
async def node_info(api: Api, session: Session | None) -> dict[str, Any]:
    node = api.node
    listening = node.listening
    return {
        "did": node.key.did,
        "peer_id": node.p2p.peer_id,
        "version": VERSION,
        "addresses": node.addresses,
        "rpc": list(listening.rpc),
        "rpc_unix": listening.rpc_unix,
        "metrics": listening.metrics,
        "ingest": listening.ingest,
        "validator": node.settings.validator,
        "economies": sorted(hex_out(e) for e in node.follow),
        "pending": node.submitter.pending_count,
        "sync_lag": node.sync.lag,
    }


@method(
    "node_peers",
    "The libp2p peers this node is connected to.",
    result={"type": "array", "items": _obj(["peer_id"], peer_id={"type": "string"})},
)
async def node_peers(api: Api, session: Session | None) -> list[dict[str, Any]]:
    return [{"peer_id": peer} for peer in api.node.p2p.peers()]


@method(
    "economy_list",
    "The economies this node holds a genesis for.",
    result={"type": "array", "items": _ref("EconomySummary")},
)
async def economy_list(api: Api, session: Session | None) -> list[dict[str, Any]]:
    out = []
    for economy in api.node.applier.economies.values():
        g = economy.genesis
        out.append(
            {
                "id": hex_out(economy.id),
                "name": g.name,
                "symbol": g.symbol,
                "decimals": g.decimals,
                "kind": g.kind,
                "quorum": g.quorum,
                "validators": [did_out(k) for k in economy.validators],
                "certificates": api.certificates(economy.id)[1],
                "forks": api.node.forks.count(economy.id),
            }
        )
    return out


@method(
    "economy_get",
    "One economy: its genesis, policy, validators and size on this node.",
    _economy_param(),
    result=_ref("Economy"),
    errors=(NOT_FOUND,),
)
async def economy_get(api: Api, session: Session | None, economy: bytes) -> dict[str, Any]:
    api.economy(economy)
    signed = api.node.store.economy(economy)
    if signed is None:  # known to the applier, so stored; a race with nothing
        raise RpcError(NOT_FOUND, "unknown_economy", "no stored genesis")
    view = economy_view(signed)
    view["accounts"], view["certificates"] = api.certificates(economy)
    return view


@method(
    "economy_signGenesis",
    "Sign an unsigned genesis with this node's key, if it names it as a validator.",
    Param(
        "genesis",
        _ref("Hex"),
        "the unsigned genesis' canonical bytes",
        lambda v, f: hex_in(v, f, max_size=MAX_GENESIS_BYTES),
    ),
    result=_obj(["validator", "signature"], validator=_ref("Did"), signature=_ref("Signature")),
    description="Refused with not_validator (-32004) unless this node's key is a validator "
    "of the genesis; a genesis that breaks the protocol's rules is refused (-32001).",
    errors=(REFUSED, UNAVAILABLE),
)
async def economy_sign_genesis(api: Api, session: Session | None, genesis: bytes) -> dict[str, Any]:
    g = Genesis.decode(genesis)
    key = api.node.key
    if all(v.key != key.public for v in g.validators):
        raise RpcError(
            UNAVAILABLE, "not_validator", f"this node's key {key.did} is not a validator of it"
        )
    return {"validator": key.did, "signature": hex_out(g.sign(key))}


@method(
    "economy_create",
    "Store, follow and serve a signed genesis (idempotent).",
    Param(
        "genesis",
        _ref("Hex"),
        "the signed genesis' canonical bytes (with a quorum of validator signatures)",
        lambda v, f: hex_in(v, f, max_size=MAX_SIGNED_GENESIS_BYTES),
    ),
    result=_obj(["id"], id=_ref("Id")),
    description="A genesis without a quorum of valid signatures is refused (bad_genesis).",
    errors=(REFUSED,),
)
async def economy_create(api: Api, session: Session | None, genesis: bytes) -> dict[str, Any]:
    economy = await api.node.add_economy(SignedGenesis.decode(genesis))
    return {"id": hex_out(economy.id)}


@method(
    "economy_follow",
    "Follow an economy by id; its genesis is fetched from peers if unknown.",
    _economy_param(),
    result=_obj(
        ["id", "known"],
        id=_ref("Id"),
        known={"type": "boolean", "description": "whether this node already holds its genesis"},
    ),
)
async def economy_follow(api: Api, session: Session | None, economy: bytes) -> dict[str, Any]:
    known = economy in api.node.applier.economies
    await api.node.follow_economy(economy)
    return {"id": hex_out(economy), "known": known}


def _fork_cursor_in(value: Any, field: str) -> bytes:
    return hex_in(value, field, size=40)


@method(
    "economy_forks",
    "Forks in an economy: two certificates for one chain slot, and who signed both.",
    _economy_param(),
    Param(
        "cursor",
        {"type": ["string", "null"]},
        "next_cursor of the previous page; absent or null for the first page",
        _fork_cursor_in,
        required=False,
    ),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 50},
        "most forks in the page (default 50 or rpc.max_page if lower; at most rpc.max_page)",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["forks", "next_cursor"],
        forks={"type": "array", "items": _ref("Fork")},
        next_cursor={"type": ["string", "null"], "description": "null on the last page"},
    ),
    description="In (author, seq) order. Each fork's evidence proves, offline and against "
    "the genesis alone, that the validators in guilty signed two entries for one slot; this "
    "node applies nothing of that author at or past seq (docs/rpc.md, Forks). Subscribe to "
    "topic forks for new ones.",
    errors=(NOT_FOUND, LIMIT),
)
async def economy_forks(
    api: Api,
    session: Session | None,
    economy: bytes,
    cursor: bytes | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    if limit is None:
        limit = min(50, api.config.max_page)
    elif limit > api.config.max_page:
        raise RpcError(
            LIMIT,
            "page_too_large",
            f"limit {limit} is above rpc.max_page ({api.config.max_page})",
            limit=api.config.max_page,
        )
    econ = api.economy(economy)
    store = api.node.store
    slots = [a + n.to_bytes(8, "big") for a, n in store.fork_slots(economy)]
    if cursor is not None:
        slots = [k for k in slots if k > cursor]
    out = []
    for k in slots[:limit]:
        raw = store.fork(economy, k[:32], int.from_bytes(k[32:], "big"))
        if raw is not None:
            out.append(fork_view(econ, ForkEvidence.decode(raw)))
    more = len(slots) > limit
    return {"forks": out, "next_cursor": hex_out(slots[limit - 1]) if more else None}


@method(
    "account_get",
    "An account's state in an economy.",
    _economy_param(),
    _account_param(),
    result=_ref("Account"),
    errors=(NOT_FOUND,),
)
async def account_get(
    api: Api, session: Session | None, economy: bytes, account: bytes
) -> dict[str, Any]:
    econ = api.economy(economy)
    return account_view(econ, account, api.node.store.account(economy, account))


@method(
    "account_history",
    "Certified entries that changed an account, newest first, a page at a time.",
    _economy_param(),
    _account_param(),
    Param(
        "cursor",
        {"type": ["string", "null"]},
        "next_cursor of the previous page; absent or null for the newest page",
        _cursor_in,
        required=False,
    ),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 50},
        "most entries in the page (default 50, at most rpc.max_page)",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["entries", "next_cursor"],
        entries={"type": "array", "items": _ref("CertifiedEntry")},
        next_cursor={"type": ["string", "null"], "description": "null on the last page"},
    ),
    errors=(NOT_FOUND, LIMIT),
)
async def account_history(
    api: Api,
    session: Session | None,
    economy: bytes,
    account: bytes,
    cursor: int | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    if limit > api.config.max_page:
        raise RpcError(
            LIMIT,
            "page_too_large",
            f"limit {limit} is above rpc.max_page ({api.config.max_page})",
            limit=api.config.max_page,
        )
    api.economy(economy)
    # One more than asked tells whether a next page exists.
    items = api.node.store.history(economy, account, cursor, limit + 1)
    page = items[:limit]
    entries = [certificate_view(Certificate.decode(data), data) for _, data in page]
    more = len(items) > limit
    return {"entries": entries, "next_cursor": str(page[-1][0]) if more else None}


@method(
    "entry_prepare",
    "Build an unsigned entry: its id, canonical bytes and the message to sign.",
    _economy_param(),
    _account_param("author", "the author (who signs it)"),
    Param("kind", _ref("Kind"), "the entry kind", lambda v, f: str_in(v, f, max_bytes=32)),
    Param("body", _ref("Body"), "the body, in the JSON view of its kind"),
    Param(
        "seq",
        {"type": "integer", "minimum": 1},
        "default: the author's next seq in this node's store",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    Param(
        "prev",
        _ref("Id"),
        "default: the id of the author's entry at seq - 1, from this node's store",
        _id_in,
        required=False,
    ),
    Param("ts_ms", {"type": "integer", "minimum": 0}, "default: now", int_in, required=False),
    result=_obj(
        ["id", "entry", "signing_message", "view"],
        id=_ref("Id"),
        entry={**_ref("Hex"), "description": "the canonical unsigned entry bytes"},
        signing_message={**_ref("Hex"), "description": "sign these bytes with Ed25519"},
        view=_ref("EntryView"),
    ),
    errors=(REFUSED, NOT_FOUND),
)
async def entry_prepare(
    api: Api,
    session: Session | None,
    economy: bytes,
    author: bytes,
    kind: str,
    body: Any,
    seq: int | None = None,
    prev: bytes | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    api.economy(economy)
    parsed = body_in(kind, body)
    store = api.node.store
    acct = store.account(economy, author)
    now_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    if seq is None and prev is None and ts_ms is None:
        return _prepared(next_entry(economy, author, acct, parsed, now_ms))
    if seq is None:
        seq = acct.seq + 1
    if prev is None:
        if seq == acct.seq + 1:
            prev = acct.head
        elif seq == 1:
            prev = ZERO_ID
        else:
            found = store.chain_range(economy, author, seq - 1, 1)
            if not found:
                raise ParamError("prev", f"this node does not hold the author's entry {seq - 1}")
            prev = Certificate.decode(found[0]).entry_id
    if ts_ms is None:  # never before the head's: check would refuse ts_regression
        ts_ms = max(now_ms, acct.ts_ms) if seq == acct.seq + 1 else now_ms
    return _prepared(Entry(economy, author, seq, prev, ts_ms, parsed))


def _prepared(entry: Entry) -> dict[str, Any]:
    entry_id = entry.id
    return {
        "id": hex_out(entry_id),
        "entry": hex_out(entry.encode()),
        "signing_message": hex_out(ENTRY.message(entry_id)),
        "view": entry_view(entry, entry_id),
    }


@method(
    "entry_submit",
    "Submit a signed entry for certification; returns once it is durable.",
    Param(
        "entry",
        _ref("Hex"),
        "the unsigned entry bytes (entry_prepare's entry)",
        lambda v, f: hex_in(v, f, max_size=MAX_ENTRY_BYTES),
    ),
    Param(
        "signature",
        _ref("Signature"),
        "the author's Ed25519 signature of signing_message",
        lambda v, f: hex_in(v, f, size=64),
    ),
    result=_obj(["id"], id=_ref("Id")),
    description="Returns before certification: follow it with entry_get or an entry "
    "subscription. Refused (-32001) for a bad signature or an economy this node does not "
    "follow; everything else is the validators' to decide.",
    errors=(REFUSED,),
)
async def entry_submit(
    api: Api, session: Session | None, entry: bytes, signature: bytes
) -> dict[str, Any]:
    signed = SignedEntry(Entry.decode(entry), signature)
    return {"id": hex_out(await api.node.submit(signed))}


def status_view(status: Status) -> dict[str, Any]:
    """The ``entry_get`` result (and an ``entry`` notification) for a status."""
    out: dict[str, Any] = {"id": hex_out(status.entry_id), "status": status.state}
    if status.state == PENDING:
        out["waiting_on"] = status.waiting_on
        if status.reason is not None:
            out["reason"] = status.reason.value
            out["detail"] = status.detail
    elif status.state == REFUSED_STATE:
        out["reason"] = status.reason.value if status.reason else ""
        out["detail"] = status.detail
        out["retryable"] = not status.final
    elif status.certificate is not None:
        cert = status.certificate
        out["certificate"] = hex_out(cert.encode())
        out["view"] = entry_view(cert.entry, cert.entry_id)
    return out


def _known_status(api: Api, entry_id: bytes) -> Status:
    status = api.node.submitter.status(entry_id)
    if status.state == UNKNOWN:
        raise RpcError(NOT_FOUND, "unknown_entry", f"this node knows no entry {hex_out(entry_id)}")
    return status


@method(
    "entry_get",
    "An entry's status: pending, certified (with its certificate) or refused.",
    Param("id", _ref("Id"), "the entry id", _id_in),
    result=_ref("EntryStatus"),
    errors=(NOT_FOUND,),
)
async def entry_get(api: Api, session: Session | None, id: bytes) -> dict[str, Any]:
    return status_view(_known_status(api, id))


@method(
    "subscribe",
    "Subscribe to an account's certified entries, an entry's status or an economy's forks "
    "(WebSocket only).",
    Param(
        "topic",
        {"enum": ["account", "entry", "forks"]},
        "account, entry or forks",
        _choice("account", "entry", "forks"),
    ),
    Param(
        "economy", _ref("Id"), "topics account and forks: the economy id", _id_in, required=False
    ),
    Param("account", _ref("Did"), "topic account: the account", did_in, required=False),
    Param("id", _ref("Id"), "topic entry: the entry id", _id_in, required=False),
    result={"type": "string", "description": "the subscription id"},
    description="Notifications: {jsonrpc, method: 'subscription', params: {subscription, "
    "result}}. account: a CertifiedEntry for every certificate applied that changed the "
    "account. entry: the entry_get result at every status change (at once if already final); "
    "an entry subscription ends after its final status. forks: a Fork (as economy_forks "
    "lists) for every fork this node newly finds evidence of in the economy; economy_forks "
    "lists those found before. By position: [topic, economy, account], [topic, null, null, "
    "id] or [topic, economy].",
    errors=(NOT_FOUND, LIMIT),
)
async def subscribe(
    api: Api,
    session: Session | None,
    topic: str,
    economy: bytes | None = None,
    account: bytes | None = None,
    id: bytes | None = None,
) -> str:
    ws = _ws_only(session, "subscribe")
    needed = {"account": ("economy", "account"), "entry": ("id",), "forks": ("economy",)}[topic]
    given = {"economy": economy, "account": account, "id": id}
    for name, value in given.items():
        if name in needed and value is None:
            raise ParamError(name, f"missing (topic {topic})")
        if name not in needed and value is not None:
            raise ParamError(name, f"not a parameter of topic {topic}")
    if len(ws.subscriptions) >= api.config.max_subscriptions:
        raise RpcError(
            LIMIT,
            "too_many_subscriptions",
            f"this WebSocket holds {len(ws.subscriptions)} subscriptions already "
            f"(rpc.max_subscriptions)",
            limit=api.config.max_subscriptions,
        )
    if topic == "account":
        assert economy is not None and account is not None
        api.economy(economy)
        return api.hub.watch_account(ws, economy, account).id
    if topic == "forks":
        assert economy is not None
        api.economy(economy)
        return api.hub.watch_forks(ws, economy).id
    assert id is not None
    status = _known_status(api, id)
    if status.state == PENDING:
        return api.hub.watch_entry(ws, id).id
    # Final already: one notification, after the response that names it.
    sub = ws.new_subscription("entry")
    ws.notify(sub.id, status_view(status))
    ws.end(sub)
    return sub.id


@method(
    "unsubscribe",
    "End a subscription of this WebSocket.",
    Param("subscription", {"type": "string"}, "the subscription id", str_in),
    result={"const": True},
)
async def unsubscribe(api: Api, session: Session | None, subscription: str) -> bool:
    ws = _ws_only(session, "unsubscribe")
    if not ws.issued(subscription):
        raise ParamError("subscription", "not a subscription of this WebSocket")
    sub = ws.subscriptions.get(subscription)
    if sub is not None:
        api.hub.forget(sub)
    return True


# -- sensors (docs/sensors.md, "Node interfaces") ----------------------------------------

#: Most attestations one sensor_claimable answer lists (a claim names at most 16).
MAX_CLAIMABLE = 1024


def _counter_param(name: str, description: str) -> Param:
    return Param(
        name,
        _ref("Counter"),
        description,
        lambda v, f: int_in(v, f, high=schema.UINT64_MAX),
        required=False,
    )


def _registration(api: Api, economy: bytes, device: bytes) -> DeviceRecord:
    raw = api.node.store.record(economy, DeviceRecord.key(device))
    if raw is None:
        raise RpcError(
            NOT_FOUND, "unknown_device", f"device {hex_out(device)} is not registered there"
        )
    return DeviceRecord.decode(raw)


def _hex_or_null(data: bytes) -> str | None:
    return hex_out(data) if data else None


@method(
    "sensor_getReadings",
    "A device's readings, each with its attestation and Merkle proof once attested.",
    _economy_param(),
    Param("device", _ref("Id"), "the device id", _id_in),
    _counter_param("first", "the lowest counter (default 0)"),
    _counter_param("last", "the highest counter (default 2^64 - 1)"),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": 100},
        f"most readings (default 100 or rpc.max_page if lower; at most rpc.max_page and "
        f"{wire.MAX_AUDIT_READINGS})",
        lambda v, f: int_in(v, f, low=1),
        required=False,
    ),
    result=_obj(
        ["readings", "next"],
        readings={
            "type": "array",
            "items": _obj(
                None,
                reading={**_ref("Hex"), "description": "the signed-reading bytes"},
                attestation={"oneOf": [_ref("Id"), {"type": "null"}]},
                proof={
                    "oneOf": [_ref("Hex"), {"type": "null"}],
                    "description": "the MerkleProof bytes",
                },
            ),
        },
        next={
            "oneOf": [_ref("Counter"), {"type": "null"}],
            "description": "pass as first for the next page; null on the last page",
        },
    ),
    description="Answered from this node's store when it hosts the device; otherwise asked "
    "of the device's host over /mycelia/audit/1 and relayed unverified (verify each reading "
    "with the attestation certificate: sensor_getAttestation). Errors: unknown_device "
    "(-32002), host_unreachable (-32004).",
    errors=(NOT_FOUND, LIMIT, UNAVAILABLE),
)
async def sensor_get_readings(
    api: Api,
    session: Session | None,
    economy: bytes,
    device: bytes,
    first: int = 0,
    last: int = schema.UINT64_MAX,
    limit: int | None = None,
) -> dict[str, Any]:
    most = min(api.config.max_page, wire.MAX_AUDIT_READINGS)
    if limit is None:
        limit = min(100, most)
    elif limit > most:
        raise RpcError(
            LIMIT, "page_too_large", f"limit {limit} is above {most} (rpc.max_page)", limit=most
        )
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
                "host_unreachable",
                f"the device's host {did_out(record.host)} did not answer: {exc}",
            ) from None
    return {
        "readings": [
            {
                "reading": hex_out(i.signed),
                "attestation": _hex_or_null(i.attestation),
                "proof": _hex_or_null(i.proof),
            }
            for i in items
        ],
        "next": next_counter,
    }


@method(
    "sensor_getAttestation",
    "A certified sensor.attest: its certificate and entry view.",
    Param("id", _ref("Id"), "the attestation's entry id", _id_in),
    result=_obj(["certificate", "view"], certificate=_ref("Hex"), view=_ref("EntryView")),
    description="From this node's store, else fetched by id from its peers (and verified). "
    "unknown_attestation (-32002) if nobody has it or it is not a sensor.attest.",
    errors=(NOT_FOUND,),
)
async def sensor_get_attestation(api: Api, session: Session | None, id: bytes) -> dict[str, Any]:
    data = api.node.store.certificate_bytes(id)
    cert = Certificate.decode(data) if data is not None else None
    if cert is None:
        cert = await api.node.audit.fetch_certificate(id)
    if cert is None or cert.entry.kind != SensorAttest.kind:
        what = "no certified entry" if cert is None else f"a {cert.entry.kind}, not an attestation"
        raise RpcError(NOT_FOUND, "unknown_attestation", f"{hex_out(id)}: {what}")
    return {"certificate": hex_out(cert.encode()), "view": entry_view(cert.entry, cert.entry_id)}


@method(
    "sensor_claimable",
    "A device's certified attestations after its owner's claim cursor: what to claim next.",
    _economy_param(),
    Param("device", _ref("Id"), "the device id", _id_in),
    result=_obj(
        ["cursor", "carry", "attestations"],
        cursor={"type": "integer", "description": "the last counter claimed; -1: none"},
        carry={**_ref("Int64"), "description": "units carried to the next claim"},
        attestations={
            "type": "array",
            "items": _obj(
                None,
                id=_ref("Id"),
                first=_ref("Counter"),
                last=_ref("Counter"),
                count={"type": "integer", "minimum": 1},
                total={**_ref("Int64"), "description": "the economy metric's sum in the row"},
            ),
        },
    ),
    description="In counter order, at most 1024. An impact.claim names 1-16 of them from the "
    "first, in order, with total = the sum of their totals.",
    errors=(NOT_FOUND, REFUSED),
)
async def sensor_claimable(
    api: Api, session: Session | None, economy: bytes, device: bytes
) -> dict[str, Any]:
    econ = api.economy(economy)
    _ = econ.impact  # not_allowed outside impact economies (before unknown_device)
    record = _registration(api, economy, device)
    store = api.node.store
    view = StoreView(store, economy)
    raw = store.record(economy, ClaimCursor.key(record.owner, device))
    after = (ClaimCursor() if raw is None else ClaimCursor.decode(raw)).last
    candidates = store.attestations_of(economy, device, after, MAX_CLAIMABLE)
    return claimable_view(impact.claimable(econ, view, device, candidates))


@method(
    "sensor_devices",
    "The devices this node hosts in an economy, with its ingest state of each.",
    _economy_param(),
    result={
        "type": "array",
        "items": _obj(
            None,
            device=_ref("Id"),
            owner=_ref("Did"),
            kind={"type": "string", "description": "the device_kind"},
            last_accepted={
                "oneOf": [_ref("Counter"), {"type": "null"}],
                "description": "the last counter ingest accepted; null: none yet",
            },
            last_attested={
                "oneOf": [_ref("Counter"), {"type": "null"}],
                "description": "the last counter certified in an attestation; null: none",
            },
            readings={**_INT, "description": "readings this node stores"},
        ),
    },
    errors=(NOT_FOUND,),
)
async def sensor_devices(api: Api, session: Session | None, economy: bytes) -> list[dict[str, Any]]:
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
            {
                "device": hex_out(record.device),
                "owner": did_out(record.owner),
                "kind": record.body.device_kind,
                "last_accepted": None if state is None else state.last_accepted,
                "last_attested": store.last_attested(economy, record.device),
                "readings": 0 if state is None else state.readings,
            }
        )
    return out


@method(
    "rpc.discover",
    "This API's OpenRPC 1.2.6 document.",
    result={"type": "object", "description": "an OpenRPC 1.2.6 document"},
    result_name="OpenRPC",
)
async def rpc_discover(api: Api, session: Session | None) -> dict[str, Any]:
    return api.openrpc


def openrpc_document() -> dict[str, Any]:
    return REGISTRY.openrpc(
        {
            "title": "mycelia node",
            "version": VERSION,
            "description": "The wallet RPC of a mycelia node. Transport, auth, encoding "
            "rules, error codes and subscriptions: docs/rpc.md.",
        }
    )


def _needs_view(need: Need) -> dict[str, Any]:
    if isinstance(need, NeedChain):
        return {
            "type": "chain",
            "author": did_out(need.author),
            "after_seq": need.after_seq,
            "through": hex_out(need.through),
        }
    if isinstance(need, NeedAdmission):
        return {"type": "admission", "account": did_out(need.account)}
    assert isinstance(need, NeedCertificate)
    return {"type": "certificate", "id": hex_out(need.id)}


def translate(exc: Exception) -> RpcError | None:
    """A protocol refusal is -32001 with its reason (and needs)."""
    if isinstance(exc, Refused):
        extra = {"needs": [_needs_view(n) for n in exc.needs]} if exc.needs else {}
        return RpcError(REFUSED, exc.reason.value, exc.detail, **extra)
    return None
