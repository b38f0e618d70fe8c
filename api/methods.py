"""The RPC's methods, declared once: name, summary, params (each with its
schema, description and parser), result (a codec: an API type, a list of
them, a scalar), the application errors it may answer — and the OpenRPC
1.2.6 document made from the declarations and the types' schemas.

The node's server binds a handler to each declaration (``node/rpc/``);
the client parses each method's result with the declaration's codec
(``mycelia.client``); ``rpc.discover`` returns :func:`openrpc_document`.
None of the three says anything the others could contradict.

Params: a JSON ``null`` for an optional param means "absent"; by position,
params bind in the declared order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar, overload

from mycelia.api import bodies, scalars, types
from mycelia.api.codecs import AnyJson, Codec, Const, Json, ListOf, Record, Schema, ref
from mycelia.api.contract import (
    INVALID_PARAMS,
    LIMIT,
    MESSAGES,
    NOT_FOUND,
    REFUSED,
    UNAVAILABLE,
    error_name,
)
from mycelia.api.encoding import (
    UINT64_MAX,
    ParamError,
    did_in,
    hex_in,
    int_in,
    str_in,
)
from mycelia.api.scalars import UNITS, Text
from mycelia.protocol.channels import MAX_SIGNED_VOUCHER_BYTES
from mycelia.protocol.compute_frames import MAX_INLINE_INPUT_BYTES
from mycelia.protocol.economy import MAX_GENESIS_BYTES, MAX_SIGNED_GENESIS_BYTES
from mycelia.protocol.entries import MAX_ENTRY_BYTES
from mycelia.protocol.offers import MAX_RUNTIME_NAME_BYTES, Limits
from mycelia.protocol.reasons import Refused

__all__ = [
    "ACCOUNT_GET",
    "ACCOUNT_HISTORY",
    "CHANNEL_GET",
    "CHANNEL_LIST",
    "COMPONENTS",
    "COMPUTE_JOB_CANCEL",
    "COMPUTE_JOB_RESULT",
    "COMPUTE_JOB_START",
    "COMPUTE_JOB_STATUS",
    "COMPUTE_JOB_VOUCHER",
    "COMPUTE_OFFERS",
    "ECONOMY_CREATE",
    "ECONOMY_FOLLOW",
    "ECONOMY_FORKS",
    "ECONOMY_GET",
    "ECONOMY_LIST",
    "ECONOMY_SIGN_GENESIS",
    "ENTRY_GET",
    "ENTRY_PREPARE",
    "ENTRY_SUBMIT",
    "MAX_CLAIMABLE",
    "MAX_READINGS_PAGE",
    "METHODS",
    "NODE_INFO",
    "NODE_PEERS",
    "RPC_DISCOVER",
    "SENSOR_CLAIMABLE",
    "SENSOR_DEVICES",
    "SENSOR_GET_ATTESTATION",
    "SENSOR_GET_READINGS",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "MethodSpec",
    "Param",
    "Parser",
    "openrpc",
    "openrpc_document",
]

#: ``parse(value, field)``: the handler's argument from the param's JSON
#: value (anything a JSON decoder made), or ``ParamError``.
Parser = Callable[[object, str], object]
T = TypeVar("T")
RecordT = TypeVar("RecordT", bound=Record)
#: Most readings one sensor_getReadings answer holds (also the audit protocol's limit).
MAX_READINGS_PAGE = 1000
#: Most attestations one sensor_claimable answer lists (a claim names at most 16).
MAX_CLAIMABLE = 1024


def _as_is(value: object, field: str) -> object:
    return value


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: how it is documented and how its JSON value is parsed
    (``parse(value, field_name)``, raising ``ParamError``)."""

    name: str
    schema: Schema
    description: str
    parse: Parser = _as_is
    required: bool = True


@dataclass(frozen=True, slots=True)
class MethodSpec(Generic[T]):
    """A method as the contract declares it (no handler: that is the
    server's), typed by its result: a handler bound to it returns a ``T``,
    a client reading its answer gets a ``T``."""

    name: str
    summary: str
    params: tuple[Param, ...]
    #: how the result is written and read; its schema is the document's
    result: Codec[T]
    result_name: str = "result"
    description: str = ""
    #: application error codes this method may answer, besides the standard ones
    errors: tuple[int, ...] = ()

    def describe(self) -> dict[str, Json]:
        """The OpenRPC method object."""
        out: dict[str, Json] = {
            "name": self.name,
            "summary": self.summary,
            "paramStructure": "either",
            "params": [
                {
                    "name": p.name,
                    "description": p.description,
                    "required": p.required,
                    "schema": p.schema,
                }
                for p in self.params
            ],
            "result": {"name": self.result_name, "schema": self.result.schema},
        }
        if self.description:
            out["description"] = self.description
        codes = [INVALID_PARAMS, *self.errors] if self.params else list(self.errors)
        if codes:
            out["errors"] = [{"$ref": f"#/components/errors/{error_name(c)}"} for c in codes]
        return out


def openrpc(
    info: dict[str, Json], methods: Iterable[MethodSpec[Any]], schemas: dict[str, Schema]
) -> dict[str, Json]:
    """An OpenRPC 1.2.6 document describing ``methods``; ``schemas`` are the
    components their schemas refer to."""
    methods = list(methods)
    used = sorted({c for m in methods for c in m.errors})
    return {
        "openrpc": "1.2.6",
        "info": info,
        "methods": [m.describe() for m in methods],
        "components": {
            "schemas": schemas,
            "errors": {
                error_name(c): {"code": c, "message": MESSAGES[c]} for c in [INVALID_PARAMS, *used]
            },
        },
    }


# -- the components: every named schema the methods refer to --------------------------------

#: The records that are components of the document, in its order.
RECORDS: tuple[type[Record], ...] = (
    types.EntryView,
    types.CertifiedEntry,
    types.EntryStatus,
    types.AccountInfo,
    types.EconomySummary,
    types.EconomyView,
    types.Fork,
    types.ComputeInfo,
    types.NodeInfo,
    types.OfferView,
    types.ChannelView,
    types.ComputeAnswer,
)

COMPONENTS: dict[str, Schema] = {
    **scalars.SCHEMAS,
    **bodies.schemas(),
    **scalars.LATE_SCHEMAS,
    **bodies.body_components(),
    **{r.COMPONENT: r.schema() for r in RECORDS if r.COMPONENT},
}


# -- param parsers ---------------------------------------------------------------------------


def _id_in(value: object, field: str) -> bytes:
    return hex_in(value, field, size=32)


def _cursor_in(value: object, field: str) -> int:
    text = str_in(value, field, max_bytes=19)
    if not text.isascii() or not text.isdigit() or text.startswith("0"):
        raise ParamError(field, "expected a cursor from a previous page (a decimal string)")
    return int(text)


def _fork_cursor_in(value: object, field: str) -> bytes:
    return hex_in(value, field, size=40)


def _choice(*choices: str) -> Parser:
    def parse(value: object, field: str) -> str:
        if value not in choices or type(value) is not str:
            raise ParamError(field, f"one of {', '.join(choices)}")
        return value

    return parse


def _economy_param(description: str = "the economy id") -> Param:
    return Param("economy", ref("Id"), description, _id_in)


def _account_param(name: str = "account", description: str = "the account") -> Param:
    return Param(name, ref("Did"), description, did_in)


def _counter_param(name: str, description: str) -> Param:
    return Param(
        name, ref("Counter"), description, partial(int_in, high=UINT64_MAX), required=False
    )


def _limit_param(description: str, default: int) -> Param:
    return Param(
        "limit",
        {"type": "integer", "minimum": 1, "default": default},
        description,
        partial(int_in, low=1),
        required=False,
    )


# -- the methods ---------------------------------------------------------------------------------

#: Every method by name (the server's dispatch; each is also a constant
#: below, typed by its result).
METHODS: dict[str, MethodSpec[Any]] = {}


@overload
def _declare(
    name: str,
    summary: str,
    *params: Param,
    result: type[RecordT],
    result_name: str = ...,
    description: str = ...,
    errors: tuple[int, ...] = ...,
) -> MethodSpec[RecordT]: ...
@overload
def _declare(
    name: str,
    summary: str,
    *params: Param,
    result: Codec[T],
    result_name: str = ...,
    description: str = ...,
    errors: tuple[int, ...] = ...,
) -> MethodSpec[T]: ...
def _declare(
    name: str,
    summary: str,
    *params: Param,
    result: Codec[Any] | type[Record],
    result_name: str = "result",
    description: str = "",
    errors: tuple[int, ...] = (),
) -> MethodSpec[Any]:
    codec: Codec[Any] = result.codec() if isinstance(result, type) else result
    spec = MethodSpec(name, summary, params, codec, result_name, description, errors)
    if name in METHODS:
        raise ValueError(f"method {name} declared twice")
    METHODS[name] = spec
    return spec


NODE_INFO = _declare(
    "node_info",
    "This node: its key, peer id, every address it listens on, and load.",
    result=types.NodeInfo,
)
NODE_PEERS = _declare(
    "node_peers",
    "The libp2p peers this node is connected to.",
    result=ListOf(types.Peer.codec()),
)
ECONOMY_LIST = _declare(
    "economy_list",
    "The economies this node holds a genesis for.",
    result=ListOf(types.EconomySummary.codec()),
)
ECONOMY_GET = _declare(
    "economy_get",
    "One economy: its genesis, policy, validators and size on this node.",
    _economy_param(),
    result=types.EconomyView,
    description="The policy, validators and quorum are those of the epoch in force on this "
    "node (epoch), history lists every epoch after the genesis's (docs/governance.md).",
    errors=(NOT_FOUND,),
)
GOV_SEALS = _declare(
    "gov_seals",
    "The seals of a closed proposal by the committee in force, gathered from its validators.",
    _economy_param(),
    Param("proposal", ref("Id"), "the gov.propose entry id", _id_in),
    result=types.SealsView,
    description="Each validator of the epoch in force this node reaches signs its seal "
    "(after the close by its clock); a client builds gov.enact from a quorum of them "
    "(docs/governance.md, Seals). Validators that refuse or cannot be reached are left out.",
    errors=(NOT_FOUND,),
)
ECONOMY_SIGN_GENESIS = _declare(
    "economy_signGenesis",
    "Sign an unsigned genesis with this node's key, if it names it as a validator.",
    Param(
        "genesis",
        ref("Hex"),
        "the unsigned genesis' canonical bytes",
        partial(hex_in, max_size=MAX_GENESIS_BYTES),
    ),
    result=types.GenesisSignature,
    description="Refused with not_validator (-32004) unless this node's key is a validator "
    "of the genesis; a genesis that breaks the protocol's rules is refused (-32001).",
    errors=(REFUSED, UNAVAILABLE),
)
ECONOMY_CREATE = _declare(
    "economy_create",
    "Store, follow and serve a signed genesis (idempotent).",
    Param(
        "genesis",
        ref("Hex"),
        "the signed genesis' canonical bytes (with a quorum of validator signatures)",
        partial(hex_in, max_size=MAX_SIGNED_GENESIS_BYTES),
    ),
    result=types.Created,
    description="A genesis without a quorum of valid signatures is refused (bad_genesis).",
    errors=(REFUSED,),
)
ECONOMY_FOLLOW = _declare(
    "economy_follow",
    "Follow an economy by id; its genesis is fetched from peers if unknown.",
    _economy_param(),
    result=types.Followed,
)
ECONOMY_FORKS = _declare(
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
    _limit_param(
        "most forks in the page (default 50 or rpc.max_page if lower; at most rpc.max_page)", 50
    ),
    result=types.ForksPage,
    description="In (author, seq) order. Each fork's evidence proves, offline and against "
    "the genesis alone, that the validators in guilty signed two entries for one slot; this "
    "node applies nothing of that author at or past seq (docs/rpc.md, Forks). Subscribe to "
    "topic forks for new ones.",
    errors=(NOT_FOUND, LIMIT),
)
ACCOUNT_GET = _declare(
    "account_get",
    "An account's state in an economy.",
    _economy_param(),
    _account_param(),
    result=types.AccountInfo,
    errors=(NOT_FOUND,),
)
ACCOUNT_HISTORY = _declare(
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
    _limit_param("most entries in the page (default 50, at most rpc.max_page)", 50),
    result=types.AccountHistory,
    errors=(NOT_FOUND, LIMIT),
)
ENTRY_PREPARE = _declare(
    "entry_prepare",
    "Build an unsigned entry: its id, canonical bytes and the message to sign.",
    _economy_param(),
    _account_param("author", "the author (who signs it)"),
    Param("kind", ref("Kind"), "the entry kind", partial(str_in, max_bytes=32)),
    Param("body", ref("Body"), "the body, in the JSON view of its kind"),
    Param(
        "seq",
        {"type": "integer", "minimum": 1},
        "default: the author's next seq in this node's store",
        partial(int_in, low=1),
        required=False,
    ),
    Param(
        "prev",
        ref("Id"),
        "default: the id of the author's entry at seq - 1, from this node's store",
        _id_in,
        required=False,
    ),
    Param("ts_ms", {"type": "integer", "minimum": 0}, "default: now", int_in, required=False),
    result=types.Prepared,
    errors=(REFUSED, NOT_FOUND),
)
ENTRY_SUBMIT = _declare(
    "entry_submit",
    "Submit a signed entry for certification; returns once it is durable.",
    Param(
        "entry",
        ref("Hex"),
        "the unsigned entry bytes (entry_prepare's entry)",
        partial(hex_in, max_size=MAX_ENTRY_BYTES),
    ),
    Param(
        "signature",
        ref("Signature"),
        "the author's Ed25519 signature of signing_message",
        partial(hex_in, size=64),
    ),
    result=types.Submitted,
    description="Returns before certification: follow it with entry_get or an entry "
    "subscription. Refused (-32001) for a bad signature or an economy this node does not "
    "follow; everything else is the validators' to decide.",
    errors=(REFUSED,),
)
ENTRY_GET = _declare(
    "entry_get",
    "An entry's status: pending, certified (with its certificate) or refused.",
    Param("id", ref("Id"), "the entry id", _id_in),
    result=types.EntryStatus,
    errors=(NOT_FOUND,),
)
#: Subscription topics and the params each takes (besides ``topic``).
TOPICS = {
    "account": ("economy", "account"),
    "entry": ("id",),
    "forks": ("economy",),
    "job": ("job",),
}
SUBSCRIBE = _declare(
    "subscribe",
    "Subscribe to an account's certified entries, an entry's status, an economy's forks or "
    "a relayed compute job's answers (WebSocket only).",
    Param(
        "topic",
        {"enum": ["account", "entry", "forks", "job"]},
        "account, entry, forks or job",
        _choice(*TOPICS),
    ),
    Param("economy", ref("Id"), "topics account and forks: the economy id", _id_in, required=False),
    Param("account", ref("Did"), "topic account: the account", did_in, required=False),
    Param("id", ref("Id"), "topic entry: the entry id", _id_in, required=False),
    Param("job", ref("Id"), "topic job: the job id", _id_in, required=False),
    result=Text(64, {"type": "string", "description": "the subscription id"}),
    description="Notifications: {jsonrpc, method: 'subscription', params: {subscription, "
    "result}}. account: a CertifiedEntry for every certificate applied that changed the "
    "account. entry: the entry_get result at every status change (at once if already final); "
    "an entry subscription ends after its final status. forks: a Fork (as economy_forks "
    "lists) for every fork this node newly finds evidence of in the economy; economy_forks "
    "lists those found before. job: a ComputeAnswer for each new answer of the provider "
    "about a job this node relays (it asks about once a second while someone watches); it "
    "ends after the RESULT, or when the provider no longer holds the job. By position: "
    "[topic, economy, account], [topic, null, null, id], [topic, economy] or [topic, null, "
    "null, null, job].",
    errors=(NOT_FOUND, LIMIT),
)
UNSUBSCRIBE = _declare(
    "unsubscribe",
    "End a subscription of this WebSocket.",
    Param("subscription", {"type": "string"}, "the subscription id", str_in),
    result=Const(True),
)

# -- sensors (docs/sensors.md, "Node interfaces") ----------------------------------------------

SENSOR_GET_READINGS = _declare(
    "sensor_getReadings",
    "A device's readings, each with its attestation and Merkle proof once attested.",
    _economy_param(),
    Param("device", ref("Id"), "the device id", _id_in),
    _counter_param("first", "the lowest counter (default 0)"),
    _counter_param("last", "the highest counter (default 2^64 - 1)"),
    _limit_param(
        f"most readings (default 100 or rpc.max_page if lower; at most rpc.max_page and "
        f"{MAX_READINGS_PAGE})",
        100,
    ),
    result=types.ReadingsPage,
    description="Answered from this node's store when it hosts the device; otherwise asked "
    "of the device's host over /mycelia/audit/1 and relayed unverified (verify each reading "
    "with the attestation certificate: sensor_getAttestation). Errors: unknown_device "
    "(-32002), host_unreachable (-32004).",
    errors=(NOT_FOUND, LIMIT, UNAVAILABLE),
)
SENSOR_GET_ATTESTATION = _declare(
    "sensor_getAttestation",
    "A certified sensor.attest: its certificate and entry view.",
    Param("id", ref("Id"), "the attestation's entry id", _id_in),
    result=types.Attestation,
    description="From this node's store, else fetched by id from its peers (and verified). "
    "unknown_attestation (-32002) if nobody has it or it is not a sensor.attest.",
    errors=(NOT_FOUND,),
)
SENSOR_CLAIMABLE = _declare(
    "sensor_claimable",
    "A device's certified attestations after its owner's claim cursor: what to claim next.",
    _economy_param(),
    Param("device", ref("Id"), "the device id", _id_in),
    result=types.Claimable,
    description=f"In counter order, at most {MAX_CLAIMABLE}. An impact.claim names 1-16 of "
    "them from the first, in order, with total = the sum of their totals.",
    errors=(NOT_FOUND, REFUSED),
)
SENSOR_DEVICES = _declare(
    "sensor_devices",
    "The devices this node hosts in an economy, with its ingest state of each.",
    _economy_param(),
    result=ListOf(types.HostedDevice.codec()),
    errors=(NOT_FOUND,),
)
# -- compute (docs/compute.md, "Buying compute through a node") -----------------------------


def _limits_in(value: object, field: str) -> Limits:
    """A job's limits: an object of the five limits (integers)."""
    if type(value) is not dict:
        raise ParamError(field, "expected an object of the five limits")
    names = ("max_cpu_ms", "max_wall_ms", "reserved_mib", "max_input_bytes", "max_output_bytes")
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ParamError(f"{field}.{unknown[0]}", "not a limit")
    got = {n: int_in(value.get(n), f"{field}.{n}") for n in names}
    try:
        return Limits(**got)
    except Refused as exc:
        raise ParamError(field, exc.detail) from None


def _job_param() -> Param:
    return Param("job", ref("Id"), "the job id (compute_job_start's id)", _id_in)


LIMITS_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        n: {"type": "integer", "minimum": 0}
        for n in (
            "max_cpu_ms",
            "max_wall_ms",
            "reserved_mib",
            "max_input_bytes",
            "max_output_bytes",
        )
    },
    "required": [
        "max_cpu_ms",
        "max_wall_ms",
        "reserved_mib",
        "max_input_bytes",
        "max_output_bytes",
    ],
    "additionalProperties": False,
}

COMPUTE_OFFERS = _declare(
    "compute_offers",
    "The unexpired compute offers this node holds in an economy (from gossip; its own too).",
    _economy_param(),
    result=ListOf(types.OfferView.codec()),
    description="A listing: verify each offer's signature (signed) before you rely on it.",
    errors=(NOT_FOUND,),
)
CHANNEL_GET = _declare(
    "channel_get",
    "A payment channel as this node's ledger holds it: the open, its escrow, its settlement.",
    Param("channel", ref("Id"), "the channel id (the channel.open entry's id)", _id_in),
    result=types.ChannelView,
    description="unknown_channel (-32002) if no economy this node follows has it.",
    errors=(NOT_FOUND,),
)
CHANNEL_LIST = _declare(
    "channel_list",
    "The channels an account pays or is paid by in an economy, the latest expiry first.",
    _economy_param(),
    _account_param("account", "the consumer or the provider"),
    _limit_param("most channels (default 100, at most rpc.max_page)", 100),
    result=ListOf(types.ChannelView.codec()),
    errors=(NOT_FOUND, LIMIT),
)
COMPUTE_JOB_START = _declare(
    "compute_job_start",
    "Start a job on a provider's offer, paid by a channel: the node builds the job, dials "
    "the provider and relays its answer.",
    Param("offer", ref("Id"), "the offer id (compute_offers)", _id_in),
    Param("channel", ref("Id"), "the channel.open that pays (its provider the offer's)", _id_in),
    Param(
        "runtime",
        {"type": "string"},
        "a runtime the offer lists",
        partial(str_in, max_bytes=MAX_RUNTIME_NAME_BYTES),
    ),
    Param(
        "input",
        ref("Hex"),
        f"the job's input (at most {MAX_INLINE_INPUT_BYTES} bytes)",
        partial(hex_in, max_size=MAX_INLINE_INPUT_BYTES),
    ),
    Param(
        "limits",
        LIMITS_SCHEMA,
        "the job's own limits, each at most the runtime's; default: the runtime's",
        _limits_in,
        required=False,
    ),
    Param(
        "base",
        ref("Units"),
        "the channel's newest voucher amount before this job (default 0: a fresh channel)",
        UNITS.load,
        required=False,
    ),
    result=types.JobStarted,
    description="The answer is the provider's, relayed (answer.frame: verify it): USAGE seq 1 "
    "when the job started (pay its fee with compute_job_voucher), else an ERROR with the "
    "provider's reason. unknown_offer (-32002), too_many_jobs (-32003), provider_unreachable "
    "(-32004); a job the protocol refuses to build is -32001 with its reason.",
    errors=(REFUSED, NOT_FOUND, LIMIT, UNAVAILABLE),
)
COMPUTE_JOB_VOUCHER = _declare(
    "compute_job_voucher",
    "Pay for a job: relay the consumer's signed voucher; the provider's newest answer.",
    _job_param(),
    Param(
        "voucher",
        ref("Hex"),
        "the signed voucher's canonical bytes (signed by the wallet, never the node)",
        partial(hex_in, max_size=MAX_SIGNED_VOUCHER_BYTES),
    ),
    result=types.ComputeAnswer,
    description="The answer is the provider's: its newest USAGE, its RESULT, or an ERROR "
    "refusing the voucher. unknown_job (-32002), provider_unreachable (-32004).",
    errors=(REFUSED, NOT_FOUND, UNAVAILABLE),
)
COMPUTE_JOB_STATUS = _declare(
    "compute_job_status",
    "How a job goes: the provider's newest answer (its USAGE, or its RESULT once it ended).",
    _job_param(),
    result=types.ComputeAnswer,
    errors=(NOT_FOUND, UNAVAILABLE),
)
COMPUTE_JOB_RESULT = _declare(
    "compute_job_result",
    "A job's RESULT: exit status, outcome, output and its final usage report.",
    _job_param(),
    result=types.ComputeAnswer,
    description="job_running (-32004) while it runs; an ERROR answer if the provider no "
    "longer holds the job.",
    errors=(NOT_FOUND, UNAVAILABLE),
)
COMPUTE_JOB_CANCEL = _declare(
    "compute_job_cancel",
    "Ask the provider to stop a job; its answer (the RESULT once the job ended).",
    _job_param(),
    result=types.ComputeAnswer,
    errors=(NOT_FOUND, UNAVAILABLE),
)
RPC_DISCOVER = _declare(
    "rpc.discover",
    "This API's OpenRPC 1.2.6 document.",
    result=AnyJson({"type": "object", "description": "an OpenRPC 1.2.6 document"}),
    result_name="OpenRPC",
)


def openrpc_document(version: str) -> dict[str, Json]:
    """The document ``rpc.discover`` returns (``version``: the node's)."""
    return openrpc(
        {
            "title": "mycelia node",
            "version": version,
            "description": "The wallet RPC of a mycelia node. Transport, auth, encoding "
            "rules, error codes and subscriptions: docs/rpc.md.",
        },
        METHODS.values(),
        COMPONENTS,
    )
