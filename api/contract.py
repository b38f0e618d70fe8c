"""The contract's constants (``docs/rpc.md``), each written once: where a
running node leaves its endpoints and cookie, the paths it serves, the
JSON-RPC error codes and the reason codes the RPC itself answers with
(a protocol refusal's reason is the protocol's ``Reason``)."""

from __future__ import annotations

__all__ = [
    "BATCH_TOO_LARGE",
    "COOKIE_FILE",
    "COOKIE_USER",
    "HOST_UNREACHABLE",
    "INGEST_ENDPOINT_FILE",
    "INGEST_HEALTH_PATH",
    "INGEST_PATH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JOB_RUNNING",
    "JSON",
    "LIMIT",
    "MESSAGES",
    "METHOD_NOT_FOUND",
    "MSGPACK",
    "NOT_FOUND",
    "NOT_VALIDATOR",
    "PAGE_TOO_LARGE",
    "PARSE_ERROR",
    "PROVIDER_UNREACHABLE",
    "REFUSED",
    "REQUEST_TIMEOUT",
    "REQUEST_TOO_LARGE",
    "RPC_ENDPOINT_FILE",
    "SOCKET_FILE",
    "STANDARD_REASONS",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_JOBS",
    "TOO_MANY_SUBSCRIPTIONS",
    "UNAVAILABLE",
    "UNKNOWN_ATTESTATION",
    "UNKNOWN_CHANNEL",
    "UNKNOWN_DEVICE",
    "UNKNOWN_ECONOMY",
    "UNKNOWN_ENTRY",
    "UNKNOWN_JOB",
    "UNKNOWN_OFFER",
    "WEBSOCKET_ONLY",
    "WS_PATH",
    "error_name",
]

# -- files a running node keeps in its data directory ---------------------------------------

#: The RPC's credential, ``__cookie__:<64 hex>``, new at every start (0600).
COOKIE_FILE = ".cookie"
COOKIE_USER = "__cookie__"
#: The RPC's unix socket (0600).
SOCKET_FILE = "rpc.sock"
#: ``{"http": "http://HOST:PORT", "unix": "/abs/rpc.sock" | null}``: the RPC as bound.
RPC_ENDPOINT_FILE = "rpc.endpoint"
#: ``{"http": "http://HOST:PORT"}``: the sensor ingest as bound (0600).
INGEST_ENDPOINT_FILE = "ingest.endpoint"

# -- paths ---------------------------------------------------------------------------------

#: The RPC's WebSocket (``POST /`` is its HTTP transport).
WS_PATH = "/ws"
#: The sensor ingest (``docs/sensors.md``, "Ingest").
INGEST_PATH = "/v1/readings"
INGEST_HEALTH_PATH = "/v1/health"
MSGPACK = "application/msgpack"
JSON = "application/json"

# -- error codes (docs/rpc.md, "Errors") -------------------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: refused by the protocol; data.reason is the protocol's Reason
REFUSED = -32001
#: an economy or entry this node does not know
NOT_FOUND = -32002
#: a limit of this server (size, batch, page, connections, subscriptions)
LIMIT = -32003
#: the node cannot do this now (not a validator, not ready)
UNAVAILABLE = -32004

#: Each code's ``message``.
MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    REFUSED: "Refused",
    NOT_FOUND: "Not found",
    LIMIT: "Limit exceeded",
    UNAVAILABLE: "Unavailable",
}
#: ``data.reason`` of the standard codes (for an error that carries none).
STANDARD_REASONS = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
}


def error_name(code: int) -> str:
    """``-32602`` -> ``"InvalidParams"``: its key in the OpenRPC components."""
    return MESSAGES[code].title().replace(" ", "")


# -- the RPC's own reasons (data.reason) ------------------------------------------------------

# -32002
UNKNOWN_ECONOMY = "unknown_economy"
UNKNOWN_ENTRY = "unknown_entry"
UNKNOWN_DEVICE = "unknown_device"
UNKNOWN_ATTESTATION = "unknown_attestation"
UNKNOWN_CHANNEL = "unknown_channel"
#: an offer or a relayed job this node does not hold (the protocol's codes)
UNKNOWN_OFFER = "unknown_offer"
UNKNOWN_JOB = "unknown_job"
# -32003
REQUEST_TOO_LARGE = "request_too_large"
BATCH_TOO_LARGE = "batch_too_large"
PAGE_TOO_LARGE = "page_too_large"
TOO_MANY_CONNECTIONS = "too_many_connections"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
REQUEST_TIMEOUT = "request_timeout"
TOO_MANY_JOBS = "too_many_jobs"
# -32004
NOT_VALIDATOR = "not_validator"
HOST_UNREACHABLE = "host_unreachable"
PROVIDER_UNREACHABLE = "provider_unreachable"
JOB_RUNNING = "job_running"
# -32601, for subscribe and unsubscribe over HTTP
WEBSOCKET_ONLY = "websocket_only"
