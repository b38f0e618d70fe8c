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
* Every answer is parsed with its method's declaration in ``mycelia.api``
  (:func:`parse_result`): the same types the node writes, so nothing here
  restates the contract. An answer that is not what the contract says is
  ``bad_response``; one that parses but does not verify is a
  :class:`VerifyError`. This package imports ``mycelia.api`` and
  ``mycelia.protocol`` only — none of the daemon (``mycelia.node``, libp2p,
  lmdb, hypercorn, starlette) — so a wallet installs the base distribution.
  Modules: ``errors``, ``endpoint``, ``results`` (the verified values; the
  API's types re-exported), ``core`` (the flows), ``sync``, ``aio``,
  ``ingest`` and ``keyfile`` (the key file format of wallet and node keys).
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

Compute (``docs/compute.md``, "Buying compute through a node"): the node
only relays a job's requests to the provider; the wallet applies the
consumer's rule to every answer and signs every voucher here
(:meth:`Client.buy_compute`, :meth:`Client.run_job`: ``compute.py``), so a
lying provider — or node — gets nothing it did not sign for, and the
wallet stops paying and cancels at the first report that breaks the rule.
:meth:`Client.refund_channel` takes back an escrow the provider never
closed.

Entries built here use the wallet's clock for ``ts_ms``, never earlier than
the author's previous entry (the chain's timestamps may not go back), and
build on the author's *certified* head (``account_get``): a wallet sends one
entry at a time per account, or waits in between.
"""

from mycelia.client.aio import AsyncClient, Subscription
from mycelia.client.core import parse_result, peer_ids
from mycelia.client.endpoint import ENV_COOKIE, ENV_URL, Endpoint, read_cookie
from mycelia.client.errors import ClientError, RpcError, RpcUnavailable, VerifyError
from mycelia.client.ingest import Ingest, IngestResult, ingest_url
from mycelia.client.results import (
    FAILED,
    FINAL,
    UNATTESTED,
    VERIFIED,
    AccountInfo,
    AttestationCheck,
    AuditReport,
    ChannelView,
    Claimable,
    ClaimableAttestation,
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
    ReadingCheck,
    ReadingsPage,
    StoredReading,
)
from mycelia.client.sync import Client

__all__ = [
    "ENV_COOKIE",
    "ENV_URL",
    "FAILED",
    "FINAL",
    "UNATTESTED",
    "VERIFIED",
    "AccountInfo",
    "AsyncClient",
    "AttestationCheck",
    "AuditReport",
    "ChannelView",
    "ClaimPlan",
    "Claimable",
    "ClaimableAttestation",
    "Client",
    "ClientError",
    "ComputeAnswer",
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
    "JobOutcome",
    "NodeInfo",
    "OfferView",
    "Prepared",
    "ReadingCheck",
    "ReadingsPage",
    "RpcError",
    "RpcUnavailable",
    "StoredReading",
    "Subscription",
    "VerifyError",
    "ingest_url",
    "parse_result",
    "peer_ids",
    "read_cookie",
]
