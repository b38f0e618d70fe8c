"""The Python client of the node's wallet RPC (``docs/rpc.md``): endpoint
discovery, a sync and an async client, wallet-side signing, and verification
of every certificate a node hands back.

Why this exists: a wallet must not have to trust the node it talks to. The
node is a convenience (it stores, gossips and collects votes); the truth is
the economy's genesis and the certificates its validators sign. So this
client

* builds and signs entries itself — the wallet's key never leaves the
  process, and no request carries it (``entry_submit`` takes the unsigned
  entry bytes and the signature);
* checks every certificate a node returns against the genesis of its
  economy, fetched once per economy and checked against the economy id the
  caller asked for (the id is the hash of the genesis, so it is the trust
  anchor: a node cannot substitute another genesis);
* checks that what the node *says* about a certified entry (the entry view)
  is what the certificate says.

How it works:

* :class:`Endpoint` says where the node listens and holds its cookie.
  :meth:`Endpoint.discover` looks, in order, at explicit values (``--rpc``,
  ``--cookie``), the environment (``MYCELIA_RPC_URL``, ``MYCELIA_RPC_COOKIE``)
  and the node's data directory (``rpc.endpoint`` and ``.cookie``, written by
  the running node); the URL and the cookie are looked up independently. A
  data directory without ``.cookie`` means a node running with ``rpc.auth =
  false`` (it removes the file): requests then carry no credential. The
  unix socket is preferred when the node has one: it needs no port and its
  file mode keeps other users out.
* Everything that talks to the node is written once, sans-IO, as generator
  *flows* on :class:`_Core`: a flow yields :class:`_Call` (one JSON-RPC call)
  or :class:`_Sleep` and receives the call's result (or has the call's
  :class:`RpcError` thrown into it). :class:`Client` (``httpx.Client``) and
  :class:`AsyncClient` (``httpx.AsyncClient``; runs under trio through
  anyio) only drive flows, so the sync and async clients cannot disagree on
  what a method checks. Their typed methods are one line each.
* Every failure is a :class:`ClientError` with a stable ``reason`` and a
  human ``detail`` — :class:`RpcError` for a JSON-RPC error (``reason`` is
  ``data.reason``), :class:`RpcUnavailable` when the node cannot be reached
  or refuses the cookie, :class:`VerifyError` when the node returns
  something that does not verify — so a CLI prints ``reason: detail`` and
  a program branches on ``reason``.
* :meth:`AsyncClient.subscribe` opens the WebSocket ``/ws`` with
  trio_websocket (so it needs trio) and yields verified payloads.

Forks (``docs/rpc.md``, "Forks"): :meth:`Client.economy_forks` (and a
``forks`` subscription) returns :class:`ForkInfo` only after checking the
evidence itself against the genesis (``ForkEvidence.verify``): both
certificates valid, one slot, two entries; the guilty validators are
computed here, not taken from the node, and the node's view must agree.

Sensors (``docs/sensors.md``): the four ``sensor_*`` methods are typed
here like the others, and what they return is checked the same way — an
attestation certificate against the genesis; a relayed reading (the node
may have asked another node, the device's host) only counts once
:meth:`Client.audit` has checked it with the protocol's
``AttestationAudit``: the device's signature under its *certified*
registration, the Merkle proof up to the *certified* attestation's root.
:meth:`Client.prepare_claim` builds an ``impact.claim`` from certified
attestations only (the node's listing says which; the certificates say
what). :class:`Ingest` is the device side: ``POST /v1/readings`` of a host's
ingest port, in the canonical msgpack a device sends.

Entries built here use the wallet's clock for ``ts_ms``, never earlier than
the author's previous entry (the chain's timestamps may not go back), and
build on the author's *certified* head (``account_get``): a wallet sends one
entry at a time per account, or waits in between.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgpack

from mycelia.node.views import (
    ParamError,
    amount_in,
    body_in,
    certificate_view,
    did_in,
    economy_view,
    entry_view,
    fork_view,
    hex_in,
    hex_out,
    int64_in,
    int_in,
    str_in,
)
from mycelia.protocol import (
    AttestationAudit,
    AttestedDevice,
    Burn,
    Certificate,
    CreditSet,
    DeviceKey,
    DeviceRecord,
    DeviceRegister,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    ImpactClaim,
    MemberAdmit,
    MerkleProof,
    Metric,
    Mint,
    Refused,
    SensorAttest,
    SignedGenesis,
    SignedReading,
    SigningKey,
    Transfer,
    codec,
    credits_for,
    did_decode,
    did_encode,
    entry_accounts,
    next_entry,
)
from mycelia.protocol.domains import ENTRY, GENESIS
from mycelia.protocol.keys import verify as verify_signature
from mycelia.protocol.sensors import MAX_CLAIM_ATTESTATIONS, MAX_SIGNED_READING_BYTES

__all__ = [
    "COOKIE_FILE",
    "ENDPOINT_FILE",
    "ENV_COOKIE",
    "ENV_URL",
    "FAILED",
    "UNATTESTED",
    "VERIFIED",
    "AccountInfo",
    "AsyncClient",
    "AttestationCheck",
    "AuditReport",
    "ClaimPlan",
    "Claimable",
    "ClaimableAttestation",
    "Client",
    "ClientError",
    "EconomyInfo",
    "EconomySummary",
    "Endpoint",
    "EntryStatus",
    "Followed",
    "ForkInfo",
    "GenesisSignature",
    "HistoryPage",
    "HostedDevice",
    "Ingest",
    "IngestResult",
    "NodeInfo",
    "Prepared",
    "ReadingCheck",
    "ReadingsPage",
    "RpcError",
    "RpcUnavailable",
    "StoredReading",
    "Subscription",
    "VerifyError",
    "ingest_url",
    "read_cookie",
]

ENV_URL = "MYCELIA_RPC_URL"
ENV_COOKIE = "MYCELIA_RPC_COOKIE"
#: Written into the datadir by the running node (``docs/rpc.md``).
ENDPOINT_FILE = "rpc.endpoint"
COOKIE_FILE = ".cookie"
COOKIE_USER = "__cookie__"
_COOKIE = re.compile(rf"{COOKIE_USER}:[0-9a-fA-F]{{16,128}}")
#: The JSON-RPC standard codes, for errors that carry no ``data.reason``.
_STANDARD_REASONS = {
    -32700: "parse_error",
    -32600: "invalid_request",
    -32601: "method_not_found",
    -32602: "invalid_params",
    -32603: "internal_error",
}
#: Entry statuses after which nothing changes.
FINAL = frozenset({"certified", "refused"})

T = TypeVar("T")
Json = Any


# -- errors ---------------------------------------------------------------------------


class ClientError(Exception):
    """Anything that went wrong talking to a node: a stable ``reason`` code
    and a ``detail`` for humans. ``str()`` is ``"reason: detail"``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RpcUnavailable(ClientError):
    """The node cannot be reached, is not running, or refused the cookie."""


class RpcError(ClientError):
    """A JSON-RPC error response. ``reason`` is ``data["reason"]`` when the
    node gave one, else a name for the standard code (``method_not_found``…)."""

    def __init__(self, code: int, message: str, data: Json = None) -> None:
        info = data if isinstance(data, dict) else {}
        reason = info.get("reason")
        if not isinstance(reason, str) or not reason:
            reason = _STANDARD_REASONS.get(code, "rpc_error")
        detail = info.get("detail")
        if not isinstance(detail, str) or not detail:
            detail = message
        if isinstance(info.get("field"), str) and info["field"] not in detail:
            detail = f"{info['field']}: {detail}"
        super().__init__(reason, detail)
        self.code = code
        self.message = message
        self.data = data


class VerifyError(ClientError):
    """The node returned something that does not verify (a certificate, a
    genesis, an entry view). ``reason`` is always ``verification_failed``;
    ``cause`` is the protocol's reason (``bad_signature``, ``wrong_economy``…)."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__("verification_failed", f"{detail} ({cause})")
        self.cause = cause


def _bad_response(detail: str) -> ClientError:
    return ClientError("bad_response", detail)


@contextmanager
def _parsing(what: str) -> Iterator[None]:
    """Turn a malformed result into ``bad_response`` naming the method."""
    try:
        yield
    except ParamError as exc:
        raise _bad_response(f"{what}: {exc.field}: {exc.detail}") from None
    except Refused as exc:
        raise _bad_response(f"{what}: {exc.reason.value}: {exc.detail}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad_response(f"{what}: unexpected result ({type(exc).__name__}: {exc})") from None


def _refused(exc: Refused) -> ClientError:
    """A protocol refusal of the caller's own input (a bad did, a zero amount)."""
    return ClientError(exc.reason.value, exc.detail or exc.reason.value)


# -- endpoint discovery -----------------------------------------------------------------


def read_cookie(path: Path | str) -> str:
    """The credential in a node's cookie file: ``__cookie__:<hex>``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise RpcUnavailable("no_cookie", f"{path} not found") from None
    except PermissionError:
        raise RpcUnavailable(
            "no_cookie", f"cannot read {path}: permission denied (run as the node's user)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RpcUnavailable("no_cookie", f"cannot read {path}: {exc}") from None
    if not _COOKIE.fullmatch(text):
        raise RpcUnavailable("bad_cookie", f"{path} does not hold a {COOKIE_USER}:<hex> cookie")
    return text


def _parse_url(url: str, what: str) -> tuple[str | None, str | None]:
    """``(http, unix)`` from ``http://HOST:PORT`` or ``unix:/path/rpc.sock``."""
    if url.startswith("unix:"):
        path = url[len("unix:") :]
        if not path:
            raise RpcUnavailable("bad_endpoint", f"{what}: unix: needs a socket path")
        return None, str(Path(path).expanduser())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RpcUnavailable(
            "bad_endpoint", f"{what}: {url!r} is not http://HOST:PORT or unix:/path/to/rpc.sock"
        )
    return url.rstrip("/"), None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a node's RPC listens, and the cookie it wants.

    ``unix`` (a socket path) is used when set, else ``http`` (a base URL).
    ``cookie`` is the whole ``__cookie__:<hex>`` credential (None: the node
    runs without auth); it is never shown in a ``repr``.
    """

    http: str | None
    unix: str | None
    cookie: str | None = field(repr=False)

    def __post_init__(self) -> None:
        if self.http is None and self.unix is None:
            raise ValueError("an endpoint needs an http URL or a unix socket path")

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header value (HTTP Basic, as ``curl -u``)."""
        if self.cookie is None:
            return None
        return "Basic " + base64.b64encode(self.cookie.encode("ascii")).decode("ascii")

    @property
    def where(self) -> str:
        """The address for messages: ``unix:/path`` or the URL."""
        return f"unix:{self.unix}" if self.unix is not None else str(self.http)

    @classmethod
    def from_url(cls, url: str, cookie_file: Path | str) -> Endpoint:
        """An explicit address (``http://HOST:PORT`` or ``unix:/path``) and cookie file."""
        http, unix = _parse_url(url, "rpc URL")
        return cls(http, unix, read_cookie(cookie_file))

    @classmethod
    def from_datadir(cls, datadir: Path | str) -> Endpoint:
        """The endpoint a running node wrote into its data directory."""
        datadir = Path(datadir).expanduser()
        http, unix = _read_endpoint_file(datadir / ENDPOINT_FILE)
        return cls(http, unix, _datadir_cookie(datadir))

    @classmethod
    def from_node_spec(cls, spec: str) -> Endpoint:
        """A node named on the command line: its data directory, or
        ``URL#COOKIEFILE``."""
        url, hash_, cookie_file = spec.partition("#")
        if hash_:
            if not cookie_file:
                raise RpcUnavailable("bad_endpoint", f"{spec!r}: expected URL#COOKIEFILE")
            return cls.from_url(url, Path(cookie_file).expanduser())
        if Path(spec).expanduser().is_dir():
            return cls.from_datadir(spec)
        raise RpcUnavailable(
            "bad_endpoint", f"{spec!r} is neither a node data directory nor URL#COOKIEFILE"
        )

    @classmethod
    def discover(
        cls,
        *,
        rpc: str | None = None,
        cookie: Path | str | None = None,
        datadir: Path | Callable[[], Path] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """The endpoint from, in order: ``rpc``/``cookie``, the environment
        (``MYCELIA_RPC_URL``, ``MYCELIA_RPC_COOKIE``), then ``datadir``
        (``rpc.endpoint``, ``.cookie``). ``datadir`` may be a callable, called
        only if needed (the CLI loads its config only then)."""
        env = os.environ if env is None else env
        url = rpc or env.get(ENV_URL) or None
        cookie_file = cookie or env.get(ENV_COOKIE) or None
        http: str | None
        unix: str | None
        folder: Path | None = None
        if url is None or cookie_file is None:
            if datadir is None:
                raise RpcUnavailable(
                    "node_not_running",
                    "no node to talk to: pass --rpc URL --cookie FILE or a data directory",
                )
            folder = Path(datadir() if callable(datadir) else datadir).expanduser()
        if url is not None:
            http, unix = _parse_url(url, ENV_URL if not rpc else "--rpc")
        else:
            assert folder is not None
            http, unix = _read_endpoint_file(folder / ENDPOINT_FILE)
        if cookie_file is None:
            assert folder is not None
            return cls(http, unix, _datadir_cookie(folder))
        return cls(http, unix, read_cookie(Path(cookie_file).expanduser()))


def _datadir_cookie(datadir: Path) -> str | None:
    """The cookie a running node wrote; None if it wrote none (no auth)."""
    path = datadir / COOKIE_FILE
    return read_cookie(path) if os.path.lexists(path) else None


def _read_endpoint_file(path: Path) -> tuple[str | None, str | None]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RpcUnavailable(
            "node_not_running",
            f"{path} not found: the node is not running (start it with: mycelia node run)",
        ) from None
    except OSError as exc:
        raise RpcUnavailable("bad_endpoint", f"cannot read {path}: {exc}") from None
    try:
        doc = json.loads(raw)
        http, unix = doc.get("http"), doc.get("unix")
    except (ValueError, AttributeError):
        raise RpcUnavailable("bad_endpoint", f"{path} is not an endpoint JSON object") from None
    if not (http is None or isinstance(http, str)) or not (unix is None or isinstance(unix, str)):
        raise RpcUnavailable("bad_endpoint", f"{path}: http and unix must be strings or null")
    # Prefer the socket when it is there; a stale path (the node stopped
    # uncleanly) falls back to TCP, whose failure then says "not running".
    if unix is not None and os.path.exists(unix):
        return None, unix
    if http is None:
        if unix is not None:
            return None, unix  # the connection error will name the missing socket
        raise RpcUnavailable("bad_endpoint", f"{path} names no address")
    _parse_url(http, str(path))
    return http.rstrip("/"), None


# -- values ------------------------------------------------------------------------------


def _int(value: Any, what: str) -> int:
    return int_in(value, what)


def _id(value: Any, what: str) -> bytes:
    return hex_in(value, what, size=32)


def _did(value: Any, what: str) -> str:
    did_in(value, what)
    return str(value)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """``node_info``: ``validator`` when the node votes where its key is a
    validator; ``economies`` it follows; ``pending`` submissions awaiting
    certification; ``sync_lag`` certificates peers hold that it lacks.
    Where it listens, as bound: ``addresses`` (libp2p), ``rpc`` (HTTP URLs),
    ``rpc_unix``, ``metrics`` and ``ingest`` (None when off; also from a
    node too old to report them)."""

    did: str
    peer_id: str
    version: str
    addresses: tuple[str, ...]
    validator: bool
    economies: tuple[bytes, ...]
    pending: int
    sync_lag: int
    rpc: tuple[str, ...] = ()
    rpc_unix: str | None = None
    metrics: str | None = None
    ingest: str | None = None

    @classmethod
    def from_json(cls, v: Any) -> NodeInfo:
        with _parsing("node_info"):
            if type(v["validator"]) is not bool:
                raise ParamError("validator", "expected a boolean")

            def address(name: str) -> str | None:
                raw = v.get(name)
                return None if raw is None else str_in(raw, name, max_bytes=1024)

            return cls(
                did=_did(v["did"], "did"),
                peer_id=str_in(v["peer_id"], "peer_id"),
                version=str_in(v["version"], "version"),
                addresses=tuple(str_in(a, "addresses", max_bytes=1024) for a in v["addresses"]),
                validator=v["validator"],
                economies=tuple(_id(e, "economies") for e in v["economies"]),
                pending=_int(v["pending"], "pending"),
                sync_lag=_int(v["sync_lag"], "sync_lag"),
                rpc=tuple(str_in(a, "rpc", max_bytes=1024) for a in v.get("rpc", ())),
                rpc_unix=address("rpc_unix"),
                metrics=address("metrics"),
                ingest=address("ingest"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "did": self.did,
            "peer_id": self.peer_id,
            "version": self.version,
            "addresses": list(self.addresses),
            "rpc": list(self.rpc),
            "rpc_unix": self.rpc_unix,
            "metrics": self.metrics,
            "ingest": self.ingest,
            "validator": self.validator,
            "economies": [hex_out(e) for e in self.economies],
            "pending": self.pending,
            "sync_lag": self.sync_lag,
        }


@dataclass(frozen=True, slots=True)
class EconomySummary:
    """One item of ``economy_list`` (unverified: a listing, not a genesis)."""

    id: bytes
    name: str
    symbol: str
    decimals: int
    kind: str
    quorum: int
    validators: tuple[str, ...]
    certificates: int
    #: chain slots the node holds fork evidence for (0 from nodes that predate it)
    forks: int = 0

    @classmethod
    def from_json(cls, v: Any) -> EconomySummary:
        with _parsing("economy_list"):
            return cls(
                id=_id(v["id"], "id"),
                name=str_in(v["name"], "name"),
                symbol=str_in(v["symbol"], "symbol"),
                decimals=_int(v["decimals"], "decimals"),
                kind=str_in(v["kind"], "kind"),
                quorum=_int(v["quorum"], "quorum"),
                validators=tuple(_did(d, "validators") for d in v["validators"]),
                certificates=_int(v["certificates"], "certificates"),
                forks=_int(v.get("forks", 0), "forks"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "id": hex_out(self.id),
            "name": self.name,
            "symbol": self.symbol,
            "decimals": self.decimals,
            "kind": self.kind,
            "quorum": self.quorum,
            "validators": list(self.validators),
            "certificates": self.certificates,
            "forks": self.forks,
        }


@dataclass(frozen=True, slots=True)
class ForkInfo:
    """One fork, verified: ``evidence`` holds two valid certificates for the
    author's ``seq`` in this economy; ``guilty`` (did:key) signed both."""

    economy: bytes
    evidence: ForkEvidence
    guilty: tuple[str, ...]

    @property
    def author(self) -> str:
        return did_encode(self.evidence.author)

    @property
    def seq(self) -> int:
        return self.evidence.seq

    def to_json(self) -> dict[str, Json]:
        a, b = self.evidence.first, self.evidence.second
        return {
            "economy": hex_out(self.economy),
            "author": self.author,
            "seq": self.seq,
            "entries": [entry_view(a.entry, a.entry_id), entry_view(b.entry, b.entry_id)],
            "guilty": list(self.guilty),
            "evidence": hex_out(self.evidence.encode()),
        }


@dataclass(frozen=True, slots=True)
class EconomyInfo:
    """``economy_get``, verified: ``signed`` is the genesis whose id is the
    economy asked for, signed by a quorum of its validators."""

    signed: SignedGenesis
    economy: Economy
    accounts: int
    certificates: int

    @property
    def id(self) -> bytes:
        return self.economy.id

    @property
    def name(self) -> str:
        return self.signed.genesis.name

    @property
    def symbol(self) -> str:
        return self.signed.genesis.symbol

    @property
    def decimals(self) -> int:
        return self.signed.genesis.decimals

    def to_json(self) -> dict[str, Json]:
        """The contract's view, rebuilt from the verified genesis."""
        return {
            **economy_view(self.signed),
            "accounts": self.accounts,
            "certificates": self.certificates,
        }


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """``account_get``; amounts in minor units."""

    account: str
    balance: int
    limit: int | None
    seq: int
    head: bytes
    member: bool
    minted: int
    burned: int
    #: the head entry's timestamp: the next entry may not be earlier
    ts_ms: int = 0

    @classmethod
    def from_json(cls, v: Any) -> AccountInfo:
        with _parsing("account_get"):
            if type(v["member"]) is not bool:
                raise ParamError("member", "expected a boolean")
            return cls(
                account=_did(v["account"], "account"),
                balance=amount_in(v["balance"], "balance", negative=True),
                limit=None if v["limit"] is None else amount_in(v["limit"], "limit", negative=True),
                seq=_int(v["seq"], "seq"),
                head=_id(v["head"], "head"),
                member=v["member"],
                minted=amount_in(v["minted"], "minted", negative=True),
                burned=amount_in(v["burned"], "burned", negative=True),
                ts_ms=_int(v["ts_ms"], "ts_ms"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "account": self.account,
            "balance": str(self.balance),
            "limit": None if self.limit is None else str(self.limit),
            "seq": self.seq,
            "head": hex_out(self.head),
            "member": self.member,
            "minted": str(self.minted),
            "burned": str(self.burned),
            "ts_ms": self.ts_ms,
        }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """``account_history``: verified certificates, newest first."""

    entries: tuple[Certificate, ...]
    next_cursor: str | None

    def to_json(self) -> dict[str, Json]:
        return {
            "entries": [certificate_view(c) for c in self.entries],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class EntryStatus:
    """``entry_get`` (or an ``entry`` notification). ``certificate`` is
    verified against the economy's genesis; ``entry`` is checked to have the
    id asked for."""

    id: bytes
    status: str
    reason: str | None = None
    detail: str | None = None
    waiting_on: Json = None
    entry: Entry | None = None
    certificate: Certificate | None = None
    #: refused only: the refusal depended on the validators' state and the
    #: node gave up at its deadline; the entry may still be certified
    retryable: bool | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    @property
    def certified(self) -> bool:
        return self.status == "certified"

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {"id": hex_out(self.id), "status": self.status}
        for name in ("reason", "detail", "waiting_on", "retryable"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.certificate is not None:
            out["certificate"] = hex_out(self.certificate.encode())
        if self.entry is not None:
            out["view"] = entry_view(self.entry, self.id)
        return out


@dataclass(frozen=True, slots=True)
class Prepared:
    """``entry_prepare``: an unsigned entry, checked to hash to its id, and
    the message to sign (checked to be the entry domain's message for it)."""

    id: bytes
    entry: Entry
    signing_message: bytes


@dataclass(frozen=True, slots=True)
class GenesisSignature:
    """``economy_signGenesis``: a validator's signature, checked."""

    validator: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Followed:
    """``economy_follow``: ``known`` when the node already had the genesis."""

    id: bytes
    known: bool


# -- sensors: results ---------------------------------------------------------------------


def _counter(value: Any, what: str, *, none: bool = False, low: int = 0) -> Any:
    """A device counter (uint64); ``None`` allowed where the contract says null."""
    if value is None and none:
        return None
    return int_in(value, what, low=low, high=(1 << 64) - 1)


def _opt_hex(value: Any, what: str, size: int | None = None) -> bytes | None:
    return None if value is None else hex_in(value, what, size=size)


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One item of ``sensor_getReadings``, as relayed: nothing here is
    verified (:meth:`Client.audit` verifies). ``attestation`` and ``proof``
    are None for a reading not attested yet."""

    data: bytes
    attestation: bytes | None
    proof: bytes | None

    def to_json(self) -> dict[str, Json]:
        return {
            "reading": hex_out(self.data),
            "attestation": None if self.attestation is None else hex_out(self.attestation),
            "proof": None if self.proof is None else hex_out(self.proof),
        }


@dataclass(frozen=True, slots=True)
class ReadingsPage:
    """``sensor_getReadings``: readings by counter, and the counter to ask
    from next (None: no more)."""

    readings: tuple[StoredReading, ...]
    next: int | None

    @classmethod
    def from_json(cls, v: Any) -> ReadingsPage:
        with _parsing("sensor_getReadings"):
            items = v["readings"]
            if not isinstance(items, list):
                raise ParamError("readings", "expected an array")
            readings = tuple(
                StoredReading(
                    hex_in(r["reading"], "reading", max_size=MAX_SIGNED_READING_BYTES),
                    _opt_hex(r.get("attestation"), "attestation", 32),
                    _opt_hex(r.get("proof"), "proof"),
                )
                for r in items
            )
            return cls(readings, _counter(v.get("next"), "next", none=True))


@dataclass(frozen=True, slots=True)
class ClaimableAttestation:
    """One certified attestation of a device not claimed yet, as the node lists it."""

    id: bytes
    first: int
    last: int
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class Claimable:
    """``sensor_claimable``: the owner's claim cursor (the last counter
    claimed, -1 for none), the carried remainder, and the attestations
    after the cursor, in order. A listing, unverified."""

    cursor: int
    carry: int
    attestations: tuple[ClaimableAttestation, ...]

    @classmethod
    def from_json(cls, v: Any) -> Claimable:
        with _parsing("sensor_claimable"):
            items = v["attestations"]
            if not isinstance(items, list):
                raise ParamError("attestations", "expected an array")
            return cls(
                cursor=_counter(v["cursor"], "cursor", low=-1),
                carry=int64_in(v["carry"], "carry"),
                attestations=tuple(
                    ClaimableAttestation(
                        _id(a["id"], "id"),
                        _counter(a["first"], "first"),
                        _counter(a["last"], "last"),
                        _int(a["count"], "count"),
                        int64_in(a["total"], "total"),
                    )
                    for a in items
                ),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "cursor": self.cursor,
            "carry": str(self.carry),
            "attestations": [
                {
                    "id": hex_out(a.id),
                    "first": a.first,
                    "last": a.last,
                    "count": a.count,
                    "total": str(a.total),
                }
                for a in self.attestations
            ],
        }


@dataclass(frozen=True, slots=True)
class HostedDevice:
    """One item of ``sensor_devices``: a device the node hosts."""

    device: bytes
    owner: str
    kind: str
    last_accepted: int | None
    last_attested: int | None
    readings: int

    @classmethod
    def from_json(cls, v: Any) -> HostedDevice:
        with _parsing("sensor_devices"):
            return cls(
                device=_id(v["device"], "device"),
                owner=_did(v["owner"], "owner"),
                kind=str_in(v["kind"], "kind"),
                last_accepted=_counter(v.get("last_accepted"), "last_accepted", none=True),
                last_attested=_counter(v.get("last_attested"), "last_attested", none=True),
                readings=_int(v["readings"], "readings"),
            )

    def to_json(self) -> dict[str, Json]:
        return {
            "device": hex_out(self.device),
            "owner": self.owner,
            "kind": self.kind,
            "last_accepted": self.last_accepted,
            "last_attested": self.last_attested,
            "readings": self.readings,
        }


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    """An ``impact.claim`` built from certified attestations (each verified
    against the genesis; ``body`` takes its range and total from their rows,
    not from the node's listing) and what it will mint: ``minted`` credits
    and ``carry`` to the next claim, from the cursor's ``carry_before``."""

    body: ImpactClaim
    attestations: tuple[Certificate, ...]
    cursor: int
    carry_before: int
    minted: int
    carry: int

    def to_json(self) -> dict[str, Json]:
        b = self.body
        return {
            "device": hex_out(b.device),
            "first_counter": b.first_counter,
            "last_counter": b.last_counter,
            "attestations": [hex_out(a) for a in b.attestations],
            "total": str(b.total),
            "carry_before": str(self.carry_before),
            "minted": str(self.minted),
            "carry": str(self.carry),
        }


#: Statuses of an audited reading.
VERIFIED = "verified"
UNATTESTED = "unattested"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReadingCheck:
    """What the audit found for one relayed reading: ``verified`` (signed by
    the registered key, within its certified attestation's row, its proof
    leads to the certified root), ``unattested`` (no attestation yet: nothing
    to verify it against) or ``failed`` with a ``reason`` code."""

    counter: int | None
    id: bytes | None
    attestation: bytes | None
    status: str
    reason: str | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Json]:
        return {
            "counter": self.counter,
            "id": None if self.id is None else hex_out(self.id),
            "attestation": None if self.attestation is None else hex_out(self.attestation),
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class AttestationCheck:
    """One attestation the audited readings name: its certificate and the
    device's registration certificate verified against the genesis, and how
    many of its row's readings the host returned (``seen`` of ``count``)."""

    id: bytes
    status: str
    reason: str | None = None
    detail: str | None = None
    host: str | None = None
    registration: bytes | None = None
    first: int | None = None
    last: int | None = None
    count: int | None = None
    seen: int = 0

    def to_json(self) -> dict[str, Json]:
        return {
            "id": hex_out(self.id),
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "host": self.host,
            "registration": None if self.registration is None else hex_out(self.registration),
            "first": self.first,
            "last": self.last,
            "count": self.count,
            "seen": self.seen,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    """:meth:`Client.audit`: every reading of ``device`` in ``first…last``
    the node relayed, each checked end to end. ``ok`` when nothing failed
    (readings not attested yet are listed, not failures)."""

    economy: bytes
    device: bytes
    first: int | None
    last: int | None
    attestations: tuple[AttestationCheck, ...]
    readings: tuple[ReadingCheck, ...]

    @property
    def failures(self) -> list[AttestationCheck | ReadingCheck]:
        return [c for c in (*self.attestations, *self.readings) if c.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.readings)

    def to_json(self) -> dict[str, Json]:
        return {
            "economy": hex_out(self.economy),
            "device": hex_out(self.device),
            "first": self.first,
            "last": self.last,
            "ok": self.ok,
            "verified": self.count(VERIFIED),
            "unattested": self.count(UNATTESTED),
            "failed": self.count(FAILED),
            "attestations": [a.to_json() for a in self.attestations],
            "readings": [r.to_json() for r in self.readings],
        }


# -- the sans-IO core -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


Flow = Generator[_Call | _Sleep, Any, T]


def _entry_from_view(view: Any, entry_id: bytes, what: str) -> Entry:
    """The protocol entry an entry view describes; it must hash to ``entry_id``."""
    with _parsing(what):
        entry = Entry(
            _id(view["economy"], "economy"),
            did_in(view["author"], "author"),
            _int(view["seq"], "seq"),
            _id(view["prev"], "prev"),
            _int(view["ts_ms"], "ts_ms"),
            body_in(view["kind"], view["body"]),
        )
    if entry.id != entry_id:
        raise VerifyError(
            "malformed", f"{what}: the entry view does not hash to {hex_out(entry_id)}"
        )
    return entry


def _account_key(account: str) -> bytes:
    """The key of an account the caller names; ``bad_key`` if it is no did:key."""
    try:
        return did_decode(account)
    except Refused as exc:
        raise _refused(exc) from None


def _relevant(entry: Entry, account: bytes) -> bool:
    """Whether ``entry`` changed ``account`` (what account_history lists)."""
    return account in entry_accounts(entry)


class _Core:
    """Request encoding, response decoding and the flows, shared by both clients."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._economies: dict[bytes, Economy] = {}
        self._next_id = 0

    # -- JSON-RPC framing -------------------------------------------------------------

    def _request(self, method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
        self._next_id += 1
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._next_id}
        if params:
            req["params"] = dict(params)
        return req

    def _decode_http(self, status: int, content: bytes) -> Any:
        """The JSON payload of an HTTP response, or the error it means."""
        if status == 401:
            raise _unauthorized(self.endpoint)
        if status == 204:
            return None
        try:
            payload = json.loads(content)
        except ValueError:
            raise _bad_response(f"HTTP {status} from {self.endpoint.where}, not JSON") from None
        if status != 200 and not (isinstance(payload, dict) and "error" in payload):
            raise ClientError("http_error", f"HTTP {status} from {self.endpoint.where}")
        return payload

    @staticmethod
    def _outcome(response: Any, expected_id: Any) -> Any:
        """The result of one response, or its error raised as RpcError."""
        if not isinstance(response, dict) or response.get("jsonrpc") != "2.0":
            raise _bad_response("not a JSON-RPC 2.0 response")
        error = response.get("error")
        if error is not None:
            # An error may have id null (parse error, an oversized request).
            if not isinstance(error, dict) or type(error.get("code")) is not int:
                raise _bad_response("malformed JSON-RPC error")
            raise RpcError(error["code"], str(error.get("message", "")), error.get("data"))
        if response.get("id") != expected_id or "result" not in response:
            raise _bad_response("response does not answer the request")
        return response["result"]

    def _results(self, requests: list[dict[str, Any]], payload: Any) -> list[Any]:
        """A batch's results in request order; an error is an RpcError value."""
        if isinstance(payload, dict) and "error" in payload:
            self._outcome(payload, None)  # the whole batch was refused: raises
        if not isinstance(payload, list):
            raise _bad_response("a batch was not answered with an array")
        by_id = {r.get("id"): r for r in payload if isinstance(r, dict)}
        out: list[Any] = []
        for req in requests:
            response = by_id.get(req["id"])
            if response is None:
                raise _bad_response(f"no response to batch item {req['method']}")
            try:
                out.append(self._outcome(response, req["id"]))
            except RpcError as exc:
                out.append(exc)
        return out

    # -- verification ---------------------------------------------------------------------

    def _economy_info(self, economy_id: bytes, raw: Any) -> EconomyInfo:
        with _parsing("economy_get"):
            signed = SignedGenesis.decode(hex_in(raw["genesis"], "genesis"))
            accounts = _int(raw.get("accounts", 0), "accounts")
            certificates = _int(raw.get("certificates", 0), "certificates")
        if signed.genesis.id != economy_id:
            raise VerifyError(
                "wrong_economy",
                f"the node returned the genesis of {hex_out(signed.genesis.id)} "
                f"for economy {hex_out(economy_id)}",
            )
        try:
            economy = Economy.from_signed(signed)
        except Refused as exc:
            raise VerifyError(
                exc.reason.value, f"the genesis of {hex_out(economy_id)}: {exc.detail}"
            ) from None
        view = economy_view(signed)
        wrong = sorted(k for k in view if k in raw and raw[k] != view[k])
        if wrong:
            raise VerifyError(
                "malformed",
                f"economy_get {hex_out(economy_id)}: {', '.join(wrong)} disagree with the genesis",
            )
        self._economies[economy_id] = economy
        return EconomyInfo(signed, economy, accounts, certificates)

    @staticmethod
    def _decode_certificate(data: Any, what: str) -> Certificate:
        with _parsing(what):
            return Certificate.decode(hex_in(data, "certificate"))

    @staticmethod
    def _verify(economy: Economy, cert: Certificate, what: str, view: Any = None) -> Certificate:
        """Verify a certificate against the economy; a view shown with it must match."""
        try:
            cert.verify(economy)
        except Refused as exc:
            raise VerifyError(
                exc.reason.value,
                f"{what}: certificate for {hex_out(cert.entry_id)} does not verify "
                f"against the genesis of {hex_out(economy.id)}: {exc.detail}",
            ) from None
        if view is not None:
            expected = entry_view(cert.entry, cert.entry_id)
            shown = {k: view.get(k) for k in expected} if isinstance(view, dict) else view
            if shown != expected:
                raise VerifyError(
                    "malformed", f"{what}: the entry view disagrees with its certificate"
                )
        return cert

    # -- flows ------------------------------------------------------------------------------

    def _economy_get_flow(self, economy_id: bytes) -> Flow[EconomyInfo]:
        raw = yield _Call("economy_get", {"economy": hex_out(economy_id)})
        return self._economy_info(economy_id, raw)

    def _economy_flow(self, economy_id: bytes) -> Flow[Economy]:
        cached = self._economies.get(economy_id)
        if cached is not None:
            return cached
        info = yield from self._economy_get_flow(economy_id)
        return info.economy

    def _entry_status_flow(self, entry_id: bytes, raw: Any) -> Flow[EntryStatus]:
        what = f"entry {hex_out(entry_id)}"
        with _parsing(what):
            if _id(raw["id"], "id") != entry_id:
                raise ParamError("id", "not the entry asked for")
            status = str_in(raw["status"], "status")
            reason = raw.get("reason")
            detail = raw.get("detail")
            view = raw.get("view")
            cert_hex = raw.get("certificate")
        if status == "certified" and cert_hex is None:
            raise _bad_response(f"{what}: certified without a certificate")
        certificate = None
        entry = None
        if cert_hex is not None:
            certificate = self._decode_certificate(cert_hex, what)
            if certificate.entry_id != entry_id:
                raise VerifyError("malformed", f"{what}: the certificate is for another entry")
            # The entry id asked for fixes the economy, and the economy id the genesis.
            economy = yield from self._economy_flow(certificate.entry.economy)
            self._verify(economy, certificate, what, view)
            entry = certificate.entry
        elif view is not None:
            entry = _entry_from_view(view, entry_id, what)
        return EntryStatus(
            id=entry_id,
            status=status,
            reason=reason if isinstance(reason, str) else None,
            detail=detail if isinstance(detail, str) else None,
            waiting_on=raw.get("waiting_on"),
            entry=entry,
            certificate=certificate,
            retryable=raw["retryable"] if isinstance(raw.get("retryable"), bool) else None,
        )

    def _entry_get_flow(self, entry_id: bytes) -> Flow[EntryStatus]:
        raw = yield _Call("entry_get", {"id": hex_out(entry_id)})
        return (yield from self._entry_status_flow(entry_id, raw))

    def _account_certificate(self, economy: Economy, account: str, item: Any) -> Certificate:
        """One ``account`` history item or notification, verified."""
        what = f"history of {account}"
        with _parsing(what):
            cert_hex = item["certificate"]
        cert = self._verify(economy, self._decode_certificate(cert_hex, what), what, item)
        if not _relevant(cert.entry, _account_key(account)):
            raise VerifyError("malformed", f"{what}: lists an entry that does not concern it")
        return cert

    def _history_flow(
        self, economy_id: bytes, account: str, cursor: str | None, limit: int | None
    ) -> Flow[HistoryPage]:
        _account_key(account)
        params: dict[str, Any] = {"economy": hex_out(economy_id), "account": account}
        if cursor is not None:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = limit
        raw = yield _Call("account_history", params)
        economy = yield from self._economy_flow(economy_id)
        with _parsing("account_history"):
            items = raw["entries"]
            if not isinstance(items, list):
                raise ParamError("entries", "expected an array")
            next_cursor = raw.get("next_cursor")
            if next_cursor is not None:
                str_in(next_cursor, "next_cursor", max_bytes=1024)
        certs = tuple(self._account_certificate(economy, account, item) for item in items)
        return HistoryPage(certs, next_cursor)

    def _fork(self, economy: Economy, raw: Any, what: str) -> ForkInfo:
        """One fork the node shows, verified from its evidence alone."""
        with _parsing(what):
            evidence = ForkEvidence.decode(hex_in(raw["evidence"], "evidence"))
        try:
            guilty = evidence.verify(economy)
        except Refused as exc:
            raise VerifyError(
                exc.reason.value,
                f"{what}: the evidence does not prove a fork in {hex_out(economy.id)}: "
                f"{exc.detail}",
            ) from None
        expected = fork_view(economy, evidence)
        if {k: raw.get(k) for k in expected} != expected:
            raise VerifyError("malformed", f"{what}: the view disagrees with its evidence")
        return ForkInfo(economy.id, evidence, tuple(did_encode(k) for k in guilty))

    def _forks_flow(self, economy_id: bytes) -> Flow[list[ForkInfo]]:
        """Every page of ``economy_forks``, each fork verified."""
        economy = yield from self._economy_flow(economy_id)
        out: list[ForkInfo] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"economy": hex_out(economy_id)}
            if cursor is not None:
                params["cursor"] = cursor
            raw = yield _Call("economy_forks", params)
            with _parsing("economy_forks"):
                items = raw["forks"]
                if not isinstance(items, list):
                    raise ParamError("forks", "expected an array")
                cursor = raw.get("next_cursor")
                if cursor is not None:
                    str_in(cursor, "next_cursor", max_bytes=128)
            out.extend(self._fork(economy, item, "economy_forks") for item in items)
            if cursor is None or not items:
                return out

    def _account_flow(self, economy_id: bytes, account: str) -> Flow[AccountInfo]:
        _account_key(account)
        raw = yield _Call("account_get", {"economy": hex_out(economy_id), "account": account})
        info = AccountInfo.from_json(raw)
        if info.account != account:
            raise _bad_response(f"account_get answered for {info.account}, not {account}")
        return info

    def _prepare_flow(self, params: dict[str, Any]) -> Flow[Prepared]:
        raw = yield _Call("entry_prepare", params)
        with _parsing("entry_prepare"):
            entry = Entry.decode(hex_in(raw["entry"], "entry"))
            entry_id = _id(raw["id"], "id")
            message = hex_in(raw["signing_message"], "signing_message")
        if entry.id != entry_id or message != ENTRY.message(entry_id):
            raise VerifyError("malformed", "entry_prepare: the id or message is not the entry's")
        return Prepared(entry_id, entry, message)

    def _sign_genesis_flow(self, genesis_bytes: bytes) -> Flow[GenesisSignature]:
        raw = yield _Call("economy_signGenesis", {"genesis": hex_out(genesis_bytes)})
        with _parsing("economy_signGenesis"):
            validator = _did(raw["validator"], "validator")
            signature = hex_in(raw["signature"], "signature", size=64)
            genesis_id = Genesis.decode(genesis_bytes).id
        if not verify_signature(did_decode(validator), GENESIS, genesis_id, signature):
            raise VerifyError("bad_signature", f"{validator}'s genesis signature does not verify")
        return GenesisSignature(validator, signature)

    def _submit_flow(
        self, key: SigningKey, economy_id: bytes, body: Any, ts_ms: int | None
    ) -> Flow[bytes]:
        """Build the author's next entry, sign it here, submit it; its id."""
        acct = yield from self._account_flow(economy_id, key.did)
        try:
            if ts_ms is None:  # never before the head's timestamp
                entry = next_entry(economy_id, key.public, acct, body, int(time.time() * 1000))
            else:
                entry = Entry(economy_id, key.public, acct.seq + 1, acct.head, ts_ms, body)
        except Refused as exc:
            raise _refused(exc) from None
        signature = entry.sign(key).signature
        raw = yield _Call(
            "entry_submit", {"entry": hex_out(entry.encode()), "signature": hex_out(signature)}
        )
        with _parsing("entry_submit"):
            returned = _id(raw["id"], "id")
        if returned != entry.id:
            raise VerifyError("malformed", "entry_submit returned another entry's id")
        return entry.id

    def _wait_flow(
        self,
        entry_id: bytes,
        timeout: float,
        on_status: Callable[[EntryStatus], None] | None,
    ) -> Flow[EntryStatus]:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            status = yield from self._entry_get_flow(entry_id)
            if on_status is not None:
                on_status(status)
            if status.final:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timeout(entry_id, timeout)
            yield _Sleep(min(delay, left))
            delay = min(delay * 2, 1.0)

    # -- sensors -------------------------------------------------------------------------------

    def _readings_flow(
        self,
        economy_id: bytes,
        device: bytes,
        first: int | None,
        last: int | None,
        limit: int | None,
    ) -> Flow[ReadingsPage]:
        params = _params(
            economy=hex_out(economy_id), device=hex_out(device), first=first, last=last, limit=limit
        )
        raw = yield _Call("sensor_getReadings", params)
        return ReadingsPage.from_json(raw)

    def _attestation_flow(
        self, attestation_id: bytes, economy_id: bytes | None
    ) -> Flow[Certificate]:
        """A certified ``sensor.attest``, verified against its economy's genesis."""
        what = f"attestation {hex_out(attestation_id)}"
        raw = yield _Call("sensor_getAttestation", {"id": hex_out(attestation_id)})
        with _parsing("sensor_getAttestation"):
            cert_hex = raw["certificate"]
            view = raw.get("view")
        cert = self._decode_certificate(cert_hex, what)
        if cert.entry_id != attestation_id:
            raise VerifyError("malformed", f"{what}: the certificate is for another entry")
        if cert.entry.kind != SensorAttest.kind:
            raise VerifyError("malformed", f"{what}: a {cert.entry.kind} certificate")
        if economy_id is not None and cert.entry.economy != economy_id:
            raise VerifyError(
                "wrong_economy", f"{what} is in economy {hex_out(cert.entry.economy)}"
            )
        economy = yield from self._economy_flow(cert.entry.economy)
        return self._verify(economy, cert, what, view)

    def _registration_flow(self, registration_id: bytes, economy_id: bytes) -> Flow[DeviceRecord]:
        """A device's certified ``device.register`` (``entry_get``, verified)."""
        what = f"registration {hex_out(registration_id)}"
        status = yield from self._entry_get_flow(registration_id)
        cert = status.certificate
        if cert is None:
            raise VerifyError("missing", f"{what} is {status.status} on this node, not certified")
        if cert.entry.kind != DeviceRegister.kind or cert.entry.economy != economy_id:
            raise VerifyError("malformed", f"{what}: not a device.register of this economy")
        return DeviceRecord.from_certificate(cert)

    def _claimable_flow(self, economy_id: bytes, device: bytes) -> Flow[Claimable]:
        raw = yield _Call(
            "sensor_claimable", {"economy": hex_out(economy_id), "device": hex_out(device)}
        )
        return Claimable.from_json(raw)

    def _devices_flow(self, economy_id: bytes) -> Flow[list[HostedDevice]]:
        raw = yield _Call("sensor_devices", {"economy": hex_out(economy_id)})
        with _parsing("sensor_devices"):
            if not isinstance(raw, list):
                raise ParamError("result", "expected an array")
        return [HostedDevice.from_json(d) for d in raw]

    def _claim_flow(self, economy_id: bytes, device: bytes) -> Flow[ClaimPlan | None]:
        """The claim of every certified attestation of ``device`` after the
        owner's cursor (at most 16, the most one claim names); None if there
        is none. Range and total come from the verified certificates."""
        economy = yield from self._economy_flow(economy_id)
        try:
            policy = economy.impact
        except Refused as exc:
            raise _refused(exc) from None
        claimable = yield from self._claimable_flow(economy_id, device)
        listed = claimable.attestations[:MAX_CLAIM_ATTESTATIONS]
        if not listed:
            return None
        certs: list[Certificate] = []
        rows: list[AttestedDevice] = []
        for item in listed:
            cert = yield from self._attestation_flow(item.id, economy_id)
            row = cert.entry.body.row(device)
            if row is None:
                raise VerifyError(
                    "not_attested", f"attestation {hex_out(item.id)} has no row for the device"
                )
            if rows and row.first <= rows[-1].last:
                raise VerifyError("malformed", "sensor_claimable: attestations out of order")
            certs.append(cert)
            rows.append(row)
        total = sum(a.sum for row in rows if (a := row.aggregate(policy.metric)) is not None)
        body = _body(
            lambda: ImpactClaim(
                device, rows[0].first, rows[-1].last, tuple(c.entry_id for c in certs), total
            )
        )
        minted, carry = credits_for(claimable.carry, total, policy.units_per_credit)
        return ClaimPlan(body, tuple(certs), claimable.cursor, claimable.carry, minted, carry)

    def _audit_flow(
        self, economy_id: bytes, device: bytes, first: int | None, last: int | None
    ) -> Flow[AuditReport]:
        """Every reading of ``device`` in ``first…last`` that the node
        relays, checked with the protocol's ``AttestationAudit`` against its
        attestation's certificate and the device's registration certificate,
        both verified against the genesis (see :class:`AuditReport`)."""
        economy = yield from self._economy_flow(economy_id)
        relayed: list[StoredReading] = []
        cursor = first
        while True:
            page = yield from self._readings_flow(economy_id, device, cursor, last, None)
            relayed.extend(page.readings)
            if page.next is None or (last is not None and page.next > last):
                break
            if not page.readings or (cursor is not None and page.next <= cursor):
                raise _bad_response("sensor_getReadings: a next page that does not move forward")
            cursor = page.next
        audits: dict[bytes, AttestationAudit | AttestationCheck] = {}
        registrations: dict[bytes, DeviceRecord] = {}
        for item in relayed:
            if item.attestation is not None and item.attestation not in audits:
                audits[item.attestation] = yield from self._attestation_audit_flow(
                    economy, item.attestation, device, registrations
                )
        readings: list[ReadingCheck] = []
        previous = -1
        for item in relayed:
            check = _check_relayed(item, device, first, last, previous, audits)
            if check.counter is not None:
                previous = max(previous, check.counter)
            readings.append(check)
        attestations = [
            _attestation_check(att, audit, device, first, last, relayed)
            for att, audit in audits.items()
        ]
        return AuditReport(economy_id, device, first, last, tuple(attestations), tuple(readings))

    def _attestation_audit_flow(
        self,
        economy: Economy,
        attestation_id: bytes,
        device: bytes,
        registrations: dict[bytes, DeviceRecord],
    ) -> Flow[AttestationAudit | AttestationCheck]:
        """An auditor for one attestation, or why there can be none."""
        try:
            cert = yield from self._attestation_flow(attestation_id, economy.id)
            row = cert.entry.body.row(device)
            if row is None:
                return AttestationCheck(
                    attestation_id, FAILED, "not_attested", "it has no row for the device"
                )
            record = registrations.get(row.registration)
            if record is None:
                record = yield from self._registration_flow(row.registration, economy.id)
                registrations[row.registration] = record
            return AttestationAudit(economy, cert, [record])
        except RpcUnavailable:
            raise
        except VerifyError as exc:
            return AttestationCheck(attestation_id, FAILED, exc.cause, exc.detail)
        except ClientError as exc:
            return AttestationCheck(attestation_id, FAILED, exc.reason, exc.detail)
        except Refused as exc:
            return AttestationCheck(attestation_id, FAILED, exc.reason.value, exc.detail)


def _check_relayed(
    item: StoredReading,
    device: bytes,
    first: int | None,
    last: int | None,
    previous: int,
    audits: Mapping[bytes, AttestationAudit | AttestationCheck],
) -> ReadingCheck:
    """One relayed reading, checked (see :class:`ReadingCheck`)."""
    try:
        signed = SignedReading.decode(item.data)
    except Refused as exc:
        return ReadingCheck(None, None, item.attestation, FAILED, exc.reason.value, exc.detail)
    r = signed.reading
    fail = partial(ReadingCheck, r.counter, signed.id, item.attestation, FAILED)
    if r.device != device:
        return fail("wrong_device", f"a reading of device {hex_out(r.device)}")
    if (first is not None and r.counter < first) or (last is not None and r.counter > last):
        return fail("not_requested", f"counter {r.counter} is outside the range asked for")
    if r.counter <= previous:
        return fail("out_of_order", f"counter {r.counter} after {previous}")
    if item.attestation is None:
        return ReadingCheck(r.counter, signed.id, None, UNATTESTED)
    audit = audits[item.attestation]
    if isinstance(audit, AttestationCheck):
        return fail("unverified_attestation", f"its attestation: {audit.reason}: {audit.detail}")
    if item.proof is None:
        return fail("bad_proof", "the node gave no proof")
    try:
        verdict = audit.verdict(item.data, MerkleProof.decode(item.proof))
    except Refused as exc:
        return fail("bad_proof", f"the proof does not decode: {exc.reason.value}: {exc.detail}")
    if not verdict.ok:
        reason = verdict.reason.value if verdict.reason is not None else "refused"
        return fail(reason, verdict.detail)
    return ReadingCheck(r.counter, signed.id, item.attestation, VERIFIED)


def _attestation_check(
    attestation_id: bytes,
    audit: AttestationAudit | AttestationCheck,
    device: bytes,
    first: int | None,
    last: int | None,
    relayed: Sequence[StoredReading],
) -> AttestationCheck:
    """An attestation's summary; ``incomplete`` when the host returned fewer
    of its readings than its row counts, though the range asked covers it."""
    if isinstance(audit, AttestationCheck):
        return audit
    row = audit.rows[device]
    seen = sum(item.attestation == attestation_id for item in relayed)
    covered = (first is None or first <= row.first) and (last is None or row.last <= last)
    status, reason, detail = VERIFIED, None, None
    if covered and seen != row.count:
        status, reason = FAILED, "incomplete"
        detail = f"the host returned {seen} of its {row.count} readings of the device"
    return AttestationCheck(
        attestation_id,
        status,
        reason,
        detail,
        host=did_encode(audit.attestation.entry.author),
        registration=row.registration,
        first=row.first,
        last=row.last,
        count=row.count,
        seen=seen,
    )


def _unauthorized(endpoint: Endpoint) -> RpcUnavailable:
    if endpoint.cookie is None:
        return RpcUnavailable(
            "unauthorized", f"{endpoint.where} wants a cookie and none was found (--cookie FILE)"
        )
    return RpcUnavailable(
        "unauthorized",
        f"{endpoint.where} refused the cookie (the node writes a new one at every start)",
    )


def _timeout(entry_id: bytes, timeout: float) -> ClientError:
    return ClientError(
        "timeout",
        f"entry {hex_out(entry_id)} still pending after {timeout:g}s; it may yet be certified",
    )


def _params(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _body(make: Callable[[], Any]) -> Any:
    try:
        return make()
    except Refused as exc:
        raise _refused(exc) from None


def _transfer_body(to: str, amount: int, memo: str) -> Any:
    return _body(lambda: Transfer(did_decode(to), amount, memo))


def _mint_body(to: str, amount: int, memo: str) -> Any:
    return _body(lambda: Mint(did_decode(to), amount, memo))


def _burn_body(amount: int) -> Any:
    return _body(lambda: Burn(amount))


def _admit_body(member: str) -> Any:
    return _body(lambda: MemberAdmit(did_decode(member)))


def _credit_body(member: str, limit: int) -> Any:
    return _body(lambda: CreditSet(did_decode(member), limit))


def _register_body(
    key: SigningKey,
    economy: bytes,
    device_key: DeviceKey,
    device_kind: str,
    host: str,
    metrics: Sequence[Metric],
) -> Any:
    return _body(
        lambda: DeviceRegister.make(
            device_key, economy, key.public, device_kind, did_decode(host), metrics
        )
    )


# -- the sync client ----------------------------------------------------------------------


def _transport_error(endpoint: Endpoint, exc: httpx.TransportError) -> ClientError:
    if isinstance(exc, httpx.ConnectError):
        return RpcUnavailable(
            "node_not_running", f"cannot connect to {endpoint.where}: is the node running?"
        )
    if isinstance(exc, httpx.TimeoutException):
        return RpcUnavailable("timeout", f"{endpoint.where} did not answer in time")
    return RpcUnavailable("connection_failed", f"{endpoint.where}: {exc}")


def _http_options(endpoint: Endpoint, timeout: float) -> dict[str, Any]:
    auth = endpoint.authorization
    return {
        "base_url": endpoint.http if endpoint.unix is None else "http://localhost",
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

    def _post(self, body: Any) -> Any:
        try:
            response = self._http.post("/", json=body)
        except httpx.TransportError as exc:
            raise _transport_error(self.endpoint, exc) from None
        return self._decode_http(response.status_code, response.content)

    def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call; its raw JSON result (params by name)."""
        req = self._request(method, params)
        return self._outcome(self._post(req), req["id"])

    def batch(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        """Several calls in one request; results in order, where a call that
        failed has its :class:`RpcError` (returned, not raised)."""
        requests = [self._request(m, p) for m, p in calls]
        return self._results(requests, self._post(requests))

    def _drive(self, flow: Flow[T]) -> T:
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, error = None, None
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
                continue
            try:
                send = self.call(step.method, **step.params)
            except RpcError as exc:
                error = exc

    # -- typed methods (docs/rpc.md) ---------------------------------------------------------

    def node_info(self) -> NodeInfo:
        return NodeInfo.from_json(self.call("node_info"))

    def node_peers(self) -> list[str]:
        """The connected peers' ids."""
        return peer_ids(self.call("node_peers"))

    def economy_list(self) -> list[EconomySummary]:
        return [EconomySummary.from_json(e) for e in self.call("economy_list")]

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
        self, economy: bytes, author: str, kind: str, body: Any, **opt: Any
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

    def discover(self) -> Any:
        """The OpenRPC document (``rpc.discover``)."""
        return self.call("rpc.discover")

    # -- wallet-side signing --------------------------------------------------------------------

    def submit(
        self, key: SigningKey, economy: bytes, body: Any, *, ts_ms: int | None = None
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


def peer_ids(result: Any) -> list[str]:
    with _parsing("node_peers"):
        return [str_in(p["peer_id"], "peer_id") for p in result]


def _created(signed: SignedGenesis, result: Any) -> bytes:
    with _parsing("economy_create"):
        economy_id = _id(result["id"], "id")
    if economy_id != signed.genesis.id:
        raise VerifyError("wrong_economy", "economy_create returned another economy's id")
    return economy_id


def _followed(economy: bytes, result: Any) -> Followed:
    with _parsing("economy_follow"):
        if _id(result["id"], "id") != economy or type(result["known"]) is not bool:
            raise ParamError("id", "not the economy asked for")
        return Followed(economy, result["known"])


def _submitted(entry: Entry, result: Any) -> bytes:
    with _parsing("entry_submit"):
        if _id(result["id"], "id") != entry.id:
            raise ParamError("id", "not the submitted entry's id")
    return entry.id


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

    async def _post(self, body: Any) -> Any:
        try:
            response = await self._http.post("/", json=body)
        except httpx.TransportError as exc:
            raise _transport_error(self.endpoint, exc) from None
        return self._decode_http(response.status_code, response.content)

    async def call(self, method: str, **params: Any) -> Any:
        req = self._request(method, params)
        return self._outcome(await self._post(req), req["id"])

    async def batch(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any]:
        requests = [self._request(m, p) for m, p in calls]
        return self._results(requests, await self._post(requests))

    async def _drive(self, flow: Flow[T]) -> T:
        import anyio

        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = flow.throw(error) if error is not None else flow.send(send)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            send, error = None, None
            if isinstance(step, _Sleep):
                await anyio.sleep(step.seconds)
                continue
            try:
                send = await self.call(step.method, **step.params)
            except RpcError as exc:
                error = exc

    # -- typed methods: as Client's ------------------------------------------------------------

    async def node_info(self) -> NodeInfo:
        return NodeInfo.from_json(await self.call("node_info"))

    async def node_peers(self) -> list[str]:
        return peer_ids(await self.call("node_peers"))

    async def economy_list(self) -> list[EconomySummary]:
        return [EconomySummary.from_json(e) for e in await self.call("economy_list")]

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
        self, economy: bytes, author: str, kind: str, body: Any, **opt: Any
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

    async def discover(self) -> Any:
        return await self.call("rpc.discover")

    async def submit(
        self, key: SigningKey, economy: bytes, body: Any, *, ts_ms: int | None = None
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

    async def wait(self, entry_id: bytes, *, timeout: float = 60.0) -> EntryStatus:
        """The entry's final status, from an ``entry`` subscription (the node
        sends the status at once if it is already final)."""
        import trio

        with trio.move_on_after(timeout):
            async with self.subscribe("entry", id=hex_out(entry_id)) as sub:
                async for status in sub:
                    if status.final:
                        return status  # type: ignore[no-any-return]
            raise RpcUnavailable(
                "connection_closed", "the subscription ended before a final status"
            )
        raise _timeout(entry_id, timeout)

    # -- subscriptions ---------------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, topic: str, **params: Any) -> AsyncIterator[Subscription]:
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

    def __init__(self, client: AsyncClient, ws: Any, topic: str, params: dict[str, Any]) -> None:
        self._client = client
        self._ws = ws
        self.topic = topic
        self._params = params
        self.id: str | None = None
        self._early: list[Any] = []  # notifications that overtook the subscribe response
        self._economy: Economy | None = None

    async def _receive(self) -> Any:
        import trio_websocket as tw

        try:
            text = await self._ws.get_message()
        except tw.ConnectionClosed:
            raise RpcUnavailable("connection_closed", "the node closed the subscription") from None
        try:
            return json.loads(text)
        except ValueError:
            raise _bad_response("a WebSocket message that is not JSON") from None

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

    async def __anext__(self) -> Any:
        while True:
            message = self._early.pop(0) if self._early else await self._receive()
            if not isinstance(message, dict) or message.get("method") != "subscription":
                continue  # e.g. the answer to a request of ours
            params = message.get("params")
            if not isinstance(params, dict) or params.get("subscription") != self.id:
                continue
            return await self._payload(params.get("result"))

    async def _payload(self, result: Any) -> Any:
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
        return result


# -- the ingest port (a device's side) ------------------------------------------------------------

INGEST_PATH = "/v1/readings"
MSGPACK = "application/msgpack"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """A host's answer about one reading: ``accepted`` with its id, or
    ``refused`` with a reason code (``docs/sensors.md``, "Reason codes")."""

    status: str
    id: bytes | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @classmethod
    def from_answer(cls, v: Any) -> IngestResult:
        with _parsing("POST /v1/readings"):
            if not isinstance(v, dict):
                raise ParamError("result", "expected an object per reading")
            status = str_in(v["status"], "status")
            raw_id = v.get("id")
            # A msgpack answer carries the id as bytes, a JSON one as 0x hex.
            reading_id = raw_id if isinstance(raw_id, bytes) else _opt_hex(raw_id, "id", 32)
            reason, detail = v.get("reason"), v.get("detail")
            return cls(
                status,
                reading_id,
                reason if isinstance(reason, str) else None,
                None if detail is None else str(detail),
            )

    def to_json(self) -> dict[str, Json]:
        out: dict[str, Json] = {"status": self.status}
        if self.id is not None:
            out["id"] = hex_out(self.id)
        if self.reason is not None:
            out["reason"] = self.reason
        if self.detail is not None:
            out["detail"] = self.detail
        return out


def ingest_url(url: str) -> str:
    """The readings endpoint of a host's ingest port given as
    ``http://HOST:PORT`` (the path is added) or the full URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError("bad_endpoint", f"{url!r} is not http://HOST:PORT of a host's ingest")
    if parts.path.rstrip("/") in ("", INGEST_PATH):
        return f"{parts.scheme}://{parts.netloc}{INGEST_PATH}"
    return url


def _ingest_payload(response: httpx.Response, url: str) -> Any:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            return json.loads(response.content)
        return msgpack.unpackb(response.content, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise _bad_response(f"HTTP {response.status_code} from {url}: {exc}") from None


class Ingest:
    """``POST /v1/readings`` of a host's ingest port, as a device does: the
    canonical msgpack bytes of its signed readings (``docs/sensors.md``).
    One reading travels as its ``signed-reading`` bytes, several as one
    array. ``transport`` replaces the network (tests)."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.url = ingest_url(url)
        # No proxy from the environment: the host is on the device's LAN.
        self._http = httpx.Client(transport=transport, timeout=timeout, trust_env=False)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def post(self, readings: Sequence[SignedReading]) -> list[IngestResult]:
        """The host's answer per reading, in order. A refusal of the whole
        request (``too_large``, ``malformed``…) raises :class:`ClientError`."""
        if not readings:
            return []
        if len(readings) == 1:
            body = readings[0].encode()
        else:
            body = codec.encode_trusted([r.to_wire() for r in readings])
        try:
            response = self._http.post(self.url, content=body, headers={"content-type": MSGPACK})
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError):
                raise RpcUnavailable(
                    "host_unreachable", f"cannot connect to {self.url}: is the host's ingest on?"
                ) from None
            raise RpcUnavailable("connection_failed", f"{self.url}: {exc}") from None
        payload = _ingest_payload(response, self.url)
        if response.status_code != 200:
            answer = payload[0] if isinstance(payload, list) and payload else payload
            info = answer if isinstance(answer, dict) else {}
            reason = info.get("reason") or f"http_{response.status_code}"
            detail = info.get("detail") or f"HTTP {response.status_code} from {self.url}"
            raise ClientError(str(reason), str(detail))
        answers = payload if isinstance(payload, list) else [payload]
        if len(answers) != len(readings):
            raise _bad_response(f"{self.url} answered {len(answers)} results for {len(readings)}")
        return [IngestResult.from_answer(a) for a in answers]
