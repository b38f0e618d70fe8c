"""A node's wallet RPC played in memory, for client and CLI tests, that
answers through the node's own method registry.

Why a fake at all: client and CLI tests need a node that lies (forged
certificates, a substituted genesis, tampered readings), holds entries
pending, or shows fork evidence on demand — which a real node will not do —
and they must run fast, without trio. Why through the registry: a fake that
answers by hand drifts from the node, and then a client is tested against
answers no node gives. So :class:`FakeNode` serves the real
``mycelia.node.rpc.REGISTRY``'s declarations through the real JSON-RPC
:class:`~mycelia.node.jsonrpc.Dispatcher`: request validation, batches,
param parsing (the same parsers, defaults and ``-32602`` errors), error
objects, and the translation of protocol refusals are the node's own. Only
the handlers are the fake's, one ``m_<name>`` per registered method taking
the same parameters with the same defaults as the node's handler
(:func:`drift` lists any difference, and a FakeNode will not start with
one), and every answer it gives — honest or a lie — is checked against the
method's declared result schema (:mod:`mycelia.testing.openrpc`): an answer
the node could not give fails the test. ``tests/cli/test_fakenode.py``
also runs one story against the fake and a real node and compares the
answers.

The handlers answer from :class:`~mycelia.testing.economies.World`
ledgers: a submitted entry is checked by the protocol and, unless ``hold``
is set, certified at once by the world's validator keys; a refusal comes
at once, in the words the node uses once it stops retrying. Statuses are
built with the node's ``status_view``. It records every request body and
header, so tests can assert on exactly what a client sent, and ``lie``
replaces any method's answer (given the request's JSON params) to play a
dishonest node; :meth:`FakeNode.answer` is the honest answer, for a lie to
start from.

It is reachable two ways: :meth:`FakeNode.transport` (an
``httpx.MockTransport`` for a client built in the test) and :func:`serve`
(a real HTTP server on a unix socket or TCP, in a thread, with
``rpc.endpoint`` and ``.cookie`` written into a data directory as the real
node does, so the CLI's endpoint discovery runs for real).

Sensors: a :class:`FakeHost` given to the node plays a device's host — it
keeps readings, attests them in the world (its key authors the
``sensor.attest``, the world's validators certify it) and the ``sensor_*``
methods answer from that; :func:`serve_ingest` is its
``POST /v1/readings`` over real HTTP, checking each reading with the
protocol's ``check_reading`` as a host does.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import os
import socketserver
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn

import httpx
import msgpack
import pytest

from mycelia.api.bodies import body_in
from mycelia.api.encoding import ParamError, did_out, hex_out
from mycelia.api.types import (
    AccountInfo,
    CertifiedEntry,
    ChannelView,
    Claimable,
    ComputeAnswer,
    EconomyView,
    EntryView,
    Fork,
    OfferView,
)
from mycelia.node import wire
from mycelia.node.config import RpcConfig, SubmitConfig
from mycelia.node.jsonrpc import (
    LIMIT,
    NOT_FOUND,
    UNAVAILABLE,
    Dispatcher,
    Method,
    Registry,
    RpcError,
)
from mycelia.node.rpc.methods import REGISTRY, openrpc_document, translate
from mycelia.node.submitter import CERTIFIED, PENDING, REFUSED, Status
from mycelia.node.views import status_view
from mycelia.protocol import (
    Certificate,
    DeviceRecord,
    Economy,
    Entry,
    ForkEvidence,
    Genesis,
    MerkleProof,
    Reason,
    Refused,
    SensorAttest,
    SignedEntry,
    SignedGenesis,
    SignedReading,
    SigningKey,
    check_reading,
    codec,
    entry_accounts,
    entry_for,
    schema,
)
from mycelia.protocol.channels import ChannelRecord, SignedVoucher, channel_state
from mycelia.protocol.compute_frames import (
    CancelFrame,
    ErrorFrame,
    InlineInput,
    Job,
    JobFrame,
    PollFrame,
    VoucherFrame,
    decode_answer,
)
from mycelia.protocol.domains import ENTRY
from mycelia.protocol.impact import claimable
from mycelia.protocol.offers import Limits, SignedOffer
from mycelia.protocol.reasons import is_final
from mycelia.testing.economies import World, key, sign_genesis
from mycelia.testing.openrpc import result_problems
from tests.cli.fakecompute import FakeProvider

COOKIE = "__cookie__:" + "5a" * 32
#: The node's OpenRPC document: what every answer is checked against.
DOCUMENT = openrpc_document()
#: What a handler raises for an error answer, as the node's handlers do.
FakeError = RpcError


def _status_json(status: Status) -> dict[str, Any]:
    return status_view(status).to_json()


def handler_name(method: str) -> str:
    """The FakeNode method that answers ``method`` (``rpc.discover``:
    ``m_rpc_discover``)."""
    return "m_" + method.replace(".", "_")


def _params(fn: Callable[..., Any], skip: int) -> list[tuple[str, Any]]:
    """(name, default) of ``fn``'s parameters after the first ``skip``."""
    return [(p.name, p.default) for p in list(inspect.signature(fn).parameters.values())[skip:]]


def drift() -> list[str]:
    """How :class:`FakeNode` differs from the node's registry: methods it
    lacks or has beyond it, and handlers whose parameters (names, order,
    defaults) differ from the node's handler's. Empty when they agree."""
    played = {name for name in dir(FakeNode) if name.startswith("m_")}
    wanted = {handler_name(name): name for name in REGISTRY.methods}
    out = [f"FakeNode does not answer {wanted[h]}" for h in sorted(wanted.keys() - played)]
    out += [f"FakeNode.{h} answers no method of the node" for h in sorted(played - wanted.keys())]
    for h, name in sorted(wanted.items()):
        if h not in played:
            continue
        declared = REGISTRY.methods[name]
        real = _params(declared.handler, 2)  # after (api, session)
        fake = _params(getattr(FakeNode, h), 1)  # after self
        if fake != real:
            out.append(f"FakeNode.{h}{fake} takes other parameters than the node's {name}{real}")
        if [n for n, _ in real] != [p.name for p in declared.params]:
            out.append(f"the node's {name} handler does not take its declared params")
    return out


def _now(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (the dispatcher over the fake's
    handlers) to its end, in any thread, inside trio or not."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("an RPC handler of the fake waited for something")


class _Registry(Registry):
    """The node's declarations with the fake's handlers; remembers the JSON
    params of the request being answered (what a lie is given)."""

    given: dict[str, Any]

    def bind(self, method: Method, params: Any) -> dict[str, Any]:
        if isinstance(params, list):
            self.given = {p.name: v for p, v in zip(method.params, params, strict=False)}
        else:
            self.given = dict(params or {})
        return Registry.bind(self, method, params)


def _relevant(cert: Certificate, public: bytes) -> bool:
    return public in entry_accounts(cert.entry)


def _slot(evidence: ForkEvidence) -> bytes:
    """A fork's place in ``economy_forks``' order, as the node's cursor."""
    return evidence.author + evidence.seq.to_bytes(8, "big")


class FakeNode:
    def __init__(self, *worlds: World, node_key: SigningKey | None = None) -> None:
        #: what node_info says of the node's own compute, over the defaults (a
        #: node that runs no jobs)
        self.compute_info: dict[str, Any] = {}
        problems = drift()
        if problems:
            raise TypeError("FakeNode has drifted from the node's registry: " + "; ".join(problems))
        self.key = node_key if node_key is not None else key(7, "fake-node")
        #: the node's RPC settings (page limits, batch size), as ``rpc.*`` would set them
        self.config = RpcConfig()
        #: ``submit.retry_deadline_s``, as a refusal that depends on state quotes it
        self.retry_deadline_s = SubmitConfig().retry_deadline_s
        self.worlds: dict[bytes, World] = {w.id: w for w in worlds}
        self.signed: dict[bytes, SignedGenesis] = {
            w.id: sign_genesis(w.genesis, w.vkeys) for w in worlds
        }
        self.certs: dict[bytes, list[Certificate]] = {w.id: [] for w in worlds}
        self.statuses: dict[bytes, dict[str, Any]] = {}
        self.created: list[SignedGenesis] = []
        self.followed: list[bytes] = []
        self.bodies: list[Any] = []  # every request body, parsed
        self.raw: list[bytes] = []  # every request body, as sent
        self.auth: list[str | None] = []  # every Authorization header
        self.hold = False  # True: submitted entries stay pending
        self.lie: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.host: FakeHost | None = None  # the sensor side, when given
        #: the compute providers it relays to (by their key) and the jobs it relays
        self.providers: dict[bytes, FakeProvider] = {}
        self.relayed: dict[bytes, tuple[FakeProvider, bytes]] = {}
        #: fork evidence the node shows, per economy (``economy_forks``)
        self.forks: dict[bytes, list[ForkEvidence]] = {w.id: [] for w in worlds}
        #: answers that broke their method's result schema (each also fails the test)
        self.failures: list[str] = []
        self.registry = _Registry(schemas=REGISTRY.schemas)
        for declared in REGISTRY.methods.values():
            self.registry.add(dataclasses.replace(declared, handler=self._answerer(declared)))

    # -- state ------------------------------------------------------------------------

    def record(self, cert: Certificate) -> Certificate:
        """A certificate the node holds (applied to its world already)."""
        self.certs[cert.entry.economy].append(cert)
        self.statuses[cert.entry_id] = _status_json(
            Status(cert.entry_id, CERTIFIED, certificate=cert)
        )
        return cert

    def methods(self) -> list[str]:
        return [b["method"] for b in self.bodies if isinstance(b, dict)]

    # -- answering ----------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """The honest answer to ``method`` with JSON ``params`` (parsed by the
        node's registry), what a lie may start from."""
        kwargs = REGISTRY.bind(REGISTRY.methods[method], params)
        return getattr(self, handler_name(method))(**kwargs)

    def _answerer(self, declared: Method) -> Callable[..., Any]:
        name = declared.name
        honest = getattr(self, handler_name(name))

        async def answer(context: Any, session: Any, **params: Any) -> Any:
            lie = self.lie.get(name)
            which = "a lie" if lie is not None else "honest"
            try:
                result = lie(self.registry.given) if lie is not None else honest(**params)
            except (RpcError, ParamError, Refused):
                raise  # an error answer, as the node's handlers raise them
            except Exception as exc:  # a bug of the fake or of a lie: not the node's -32603
                self._fail(f"answering {name} ({which}) raised {exc!r}")
            problems = result_problems(DOCUMENT, name, result)
            if problems:
                self._fail(
                    f"the fake's answer to {name} ({which}) is not one the node's registry "
                    "declares: " + "; ".join(problems)
                )
            # The dispatcher writes the method's API value: read the fake's
            # JSON back into it (which checks it as a client would).
            return declared.codec.load(result, "result")

        return answer

    def _fail(self, failure: str) -> NoReturn:
        """Fail the test: ``pytest.fail`` is no ``Exception``, so neither the
        dispatcher nor a client turns it into an answer."""
        self.failures.append(failure)
        pytest.fail(failure, pytrace=False)

    def _world(self, economy: bytes) -> World:
        world = self.worlds.get(economy)
        if world is None:
            detail = f"this node does not know economy {hex_out(economy)}"
            raise RpcError(NOT_FOUND, "unknown_economy", detail)
        return world

    def _page_limit(self, limit: int) -> None:
        most = self.config.max_page
        if limit > most:
            detail = f"limit {limit} is above rpc.max_page ({most})"
            raise RpcError(LIMIT, "page_too_large", detail, limit=most)

    # -- methods: node and economies ------------------------------------------------------

    def m_node_info(self) -> Any:
        return {
            "did": self.key.did,
            "peer_id": "12D3KooWFake",
            "version": "0.1.0",
            "addresses": ["/ip4/127.0.0.1/tcp/4101"],
            "rpc": ["http://127.0.0.1:8645"],
            "rpc_unix": None,
            "metrics": "http://127.0.0.1:9464/metrics",
            "ingest": None,
            "validator": True,
            "economies": sorted(hex_out(e) for e in {*self.worlds, *self.followed}),
            "pending": sum(s["status"] == PENDING for s in self.statuses.values()),
            "sync_lag": 0,
            "compute": {
                "enabled": False,
                "runtimes": [],
                "metering": None,
                "metering_why": None,
                "running": 0,
                **self.compute_info,
                "relayed": len(self.relayed),
            },
        }

    def m_node_peers(self) -> Any:
        return [{"peer_id": "12D3KooWPeerOne"}, {"peer_id": "12D3KooWPeerTwo"}]

    def m_economy_list(self) -> Any:
        out = []
        for eid, w in self.worlds.items():
            g = w.genesis
            out.append(
                {
                    "id": hex_out(eid),
                    "name": g.name,
                    "symbol": g.symbol,
                    "decimals": g.decimals,
                    "kind": g.kind,
                    "quorum": g.quorum,
                    "validators": [did_out(k) for k in w.economy.validators],
                    "certificates": len(self.certs[eid]),
                    "forks": len(self.forks[eid]),
                }
            )
        return out

    def m_economy_get(self, economy: bytes) -> Any:
        world = self._world(economy)
        return {
            **EconomyView.of(self.signed[world.id]).to_json(),
            "accounts": len(world.ledger.state.accounts),  # type: ignore[attr-defined]
            "certificates": len(self.certs[world.id]),
        }

    def m_gov_seals(self, economy: bytes, proposal: bytes) -> Any:
        # The fake holds no proposals (the node's own tests gather real
        # seals: tests/node/test_gov_cluster.py).
        self._world(economy)
        raise RpcError(NOT_FOUND, "unknown_entry", "no certified proposal of that id here")

    def m_economy_signGenesis(self, genesis: bytes) -> Any:
        g = Genesis.decode(genesis)
        if all(v.key != self.key.public for v in g.validators):
            raise RpcError(
                UNAVAILABLE,
                "not_validator",
                f"this node's key {self.key.did} is not a validator of it",
            )
        return {"validator": self.key.did, "signature": hex_out(g.sign(self.key))}

    def m_economy_create(self, genesis: bytes) -> Any:
        signed = SignedGenesis.decode(genesis)
        economy = Economy.from_signed(signed)
        self.created.append(signed)
        return {"id": hex_out(economy.id)}

    def m_economy_follow(self, economy: bytes) -> Any:
        self.followed.append(economy)
        return {"id": hex_out(economy), "known": economy in self.worlds}

    def m_economy_forks(
        self, economy: bytes, cursor: bytes | None = None, limit: int | None = None
    ) -> Any:
        if limit is None:
            limit = min(50, self.config.max_page)
        self._page_limit(limit)
        world = self._world(economy)
        found = sorted(self.forks[world.id], key=_slot)
        if cursor is not None:
            found = [e for e in found if _slot(e) > cursor]
        page, more = found[:limit], len(found) > limit
        return {
            "forks": [Fork.of(world.economy, e).to_json() for e in page],
            "next_cursor": hex_out(_slot(page[-1])) if more else None,
        }

    # -- methods: accounts and entries ----------------------------------------------------

    def m_account_get(self, economy: bytes, account: bytes) -> Any:
        world = self._world(economy)
        return AccountInfo.of(world.economy, account, world.ledger.account(account)).to_json()

    def m_account_history(
        self, economy: bytes, account: bytes, cursor: int | None = None, limit: int = 50
    ) -> Any:
        self._page_limit(limit)
        world = self._world(economy)
        mine = [c for c in reversed(self.certs[world.id]) if _relevant(c, account)]
        start = cursor or 0  # the fake's cursor: how many entries came before
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return {
            "entries": [CertifiedEntry.of_certificate(c).to_json() for c in page],
            "next_cursor": str(start + limit) if more else None,
        }

    def m_entry_prepare(
        self,
        economy: bytes,
        author: bytes,
        kind: str,
        body: Any,
        seq: int | None = None,
        prev: bytes | None = None,
        ts_ms: int | None = None,
    ) -> Any:
        world = self._world(economy)
        parsed = body_in(kind, body)
        acct = world.ledger.account(author)

        def id_at(at: int) -> bytes | None:
            ids = [
                c.entry_id
                for c in self.certs[world.id]
                if (c.entry.author, c.entry.seq) == (author, at)
            ]
            return ids[0] if ids else None

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
                id_at=id_at,
            )
        except Refused as exc:
            if exc.reason is not Reason.MISSING:
                raise
            raise ParamError("prev", exc.detail) from None
        return _prepared(entry)

    def m_entry_submit(self, entry: bytes, signature: bytes) -> Any:
        signed = SignedEntry(Entry.decode(entry), signature)
        world = self.worlds.get(signed.entry.economy)
        if world is None:
            raise Refused(Reason.WRONG_ECONOMY, "this node does not follow that economy")
        entry_id = signed.verify()
        known = self.statuses.get(entry_id)
        if known is not None and known["status"] in (PENDING, CERTIFIED):
            return {"id": hex_out(entry_id)}
        if self.hold:
            self.statuses[entry_id] = _status_json(Status(entry_id, PENDING))
            return {"id": hex_out(entry_id)}
        verdict = world.ledger.check(signed)
        if verdict.reason is not None:
            reason, detail = verdict.reason, verdict.detail
            if not is_final(reason):  # the node's submitter gave up at its deadline
                detail = (
                    f"{detail} (not certified within {self.retry_deadline_s:g} s; this refusal "
                    "depends on what the validators had seen and is not final: the same entry "
                    "may still be certified, e.g. submitted again)"
                )
            self.statuses[entry_id] = _status_json(
                Status(entry_id, REFUSED, reason, detail, final=is_final(reason))
            )
        else:
            cert = world.certify(signed)
            world.ledger.apply(cert)
            self.record(cert)
        return {"id": hex_out(entry_id)}

    def m_entry_get(self, id: bytes) -> Any:
        status = self.statuses.get(id)
        if status is None:
            raise RpcError(NOT_FOUND, "unknown_entry", f"this node knows no entry {hex_out(id)}")
        return status

    def m_subscribe(
        self,
        topic: str,
        economy: bytes | None = None,
        account: bytes | None = None,
        id: bytes | None = None,
        job: bytes | None = None,
    ) -> Any:
        # Over HTTP (all the fake serves) the node answers websocket_only
        # before it looks at anything: the node's own handler says so.
        handler = REGISTRY.methods["subscribe"].handler
        return _now(
            handler(None, None, topic=topic, economy=economy, account=account, id=id, job=job)
        )

    def m_unsubscribe(self, subscription: str) -> Any:
        handler = REGISTRY.methods["unsubscribe"].handler
        return _now(handler(None, None, subscription=subscription))

    def m_rpc_discover(self) -> Any:
        return DOCUMENT

    # -- methods: compute (a FakeProvider plays each provider) ----------------------------------

    def provider(self, provider: FakeProvider) -> FakeProvider:
        """Relay jobs to ``provider`` (its offers are this node's listing)."""
        self.providers[provider.key.public] = provider
        return provider

    def _offers(self) -> dict[bytes, SignedOffer]:
        return {i: o for p in self.providers.values() for i, o in p.offers.items()}

    def m_compute_offers(self, economy: bytes) -> Any:
        self._world(economy)
        return [
            OfferView.of(o).to_json() for o in self._offers().values() if o.offer.economy == economy
        ]

    def m_channel_get(self, channel: bytes) -> Any:
        for eid, world in self.worlds.items():
            state = channel_state(world.ledger.state, channel)
            if state is not None:
                return ChannelView.of(eid, state).to_json()
        detail = f"no economy this node follows has a channel {hex_out(channel)}"
        raise RpcError(NOT_FOUND, "unknown_channel", detail)

    def m_channel_list(self, economy: bytes, account: bytes, limit: int | None = None) -> Any:
        world = self._world(economy)
        if limit is not None:
            self._page_limit(limit)
        prefix = ChannelRecord.key(b"")
        found = []
        records = world.ledger.state.records  # type: ignore[attr-defined]
        for k, raw in sorted((k, v) for k, v in records.items() if k.startswith(prefix)):
            record = ChannelRecord.decode(raw)
            if account in (record.consumer, record.provider):
                state = channel_state(world.ledger.state, k.removeprefix(prefix))
                assert state is not None
                found.append(state)
        found.sort(key=lambda c: (-c.expiry_ms, c.id))
        most = min(100, self.config.max_page) if limit is None else limit
        return [ChannelView.of(economy, c).to_json() for c in found[:most]]

    def m_compute_job_start(
        self,
        offer: bytes,
        channel: bytes,
        runtime: str,
        input: bytes,
        limits: Limits | None = None,
        base: int = 0,
    ) -> Any:
        signed = self._offers().get(offer)
        if signed is None:
            detail = f"no unexpired offer {offer.hex()} is known here"
            raise RpcError(NOT_FOUND, "unknown_offer", detail)
        provider = self.providers[signed.offer.provider]
        o = signed.offer
        job = Job(
            economy=o.economy,
            offer=o.id,
            channel=channel,
            base=base,
            nonce=len(self.relayed).to_bytes(16, "big"),
            runtime=runtime,
            limits=limits if limits is not None else o.runtime(runtime).limits,
            input=InlineInput(input),
        )
        answer = provider.handle(JobFrame(job).encode())
        if not isinstance(decode_answer(answer), ErrorFrame):
            self.relayed[job.id] = (provider, answer)
        view = ComputeAnswer.of(job.id, answer)
        return {"id": hex_out(job.id), "job": hex_out(job.encode()), "answer": view.to_json()}

    def _relay(self, job: bytes, request: Any) -> Any:
        held = self.relayed.get(job)
        if held is None:
            raise RpcError(NOT_FOUND, "unknown_job", f"this node relays no job {job.hex()}")
        answer = held[0].handle(request.encode())
        return ComputeAnswer.of(job, answer).to_json()

    def m_compute_job_voucher(self, job: bytes, voucher: bytes) -> Any:
        SignedVoucher.decode(voucher)
        return self._relay(job, VoucherFrame(job, voucher))

    def m_compute_job_status(self, job: bytes) -> Any:
        return self._relay(job, PollFrame(job))

    def m_compute_job_result(self, job: bytes) -> Any:
        answer = self._relay(job, PollFrame(job))
        if answer["kind"] == "usage":
            raise RpcError(UNAVAILABLE, "job_running", f"job {hex_out(job)} runs")
        return answer

    def m_compute_job_cancel(self, job: bytes) -> Any:
        return self._relay(job, CancelFrame(job))

    # -- methods: sensors -------------------------------------------------------------------

    def _registration(self, world: World, device: bytes) -> DeviceRecord:
        raw = world.ledger.state.get_record(DeviceRecord.key(device))  # type: ignore[attr-defined]
        if raw is None:
            raise RpcError(
                NOT_FOUND, "unknown_device", f"device {hex_out(device)} is not registered there"
            )
        return DeviceRecord.decode(raw)

    def _hosting(self) -> bytes:
        """The key devices name as their host when this node hosts them."""
        return self.key.public if self.host is None else self.host.key.public

    def m_sensor_getReadings(
        self,
        economy: bytes,
        device: bytes,
        first: int = 0,
        last: int = schema.UINT64_MAX,
        limit: int | None = None,
    ) -> Any:
        most = min(self.config.max_page, wire.MAX_AUDIT_READINGS)
        if limit is None:
            limit = min(100, most)
        elif limit > most:
            detail = f"limit {limit} is above {most} (rpc.max_page)"
            raise RpcError(LIMIT, "page_too_large", detail, limit=most)
        world = self._world(economy)
        record = self._registration(world, device)
        if record.host != self._hosting():  # the node would ask that host; none is played
            raise RpcError(
                UNAVAILABLE,
                "host_unreachable",
                f"the device's host {did_out(record.host)} did not answer: not played here",
            )
        held = [] if self.host is None else self.host.readings.get(device, [])
        items = [r for r in held if first <= r[0].reading.counter <= last]
        page, more = items[:limit], items[limit:]
        return {
            "readings": [
                {
                    "reading": hex_out(signed.encode()),
                    "attestation": None if att is None else hex_out(att),
                    "proof": None if proof is None else hex_out(proof.encode()),
                }
                for signed, att, proof in page
            ],
            "next": more[0][0].reading.counter if more else None,
        }

    def m_sensor_getAttestation(self, id: bytes) -> Any:
        found = [c for certs in self.certs.values() for c in certs if c.entry_id == id]
        cert = found[0] if found else None
        if cert is None or cert.entry.kind != SensorAttest.kind:
            what = (
                "no certified entry" if cert is None else f"a {cert.entry.kind}, not an attestation"
            )
            raise RpcError(NOT_FOUND, "unknown_attestation", f"{hex_out(id)}: {what}")
        return {
            "certificate": hex_out(cert.encode()),
            "view": EntryView.of(cert.entry, id).to_json(),
        }

    def m_sensor_claimable(self, economy: bytes, device: bytes) -> Any:
        world = self._world(economy)
        _ = world.economy.impact  # not_allowed outside impact economies (before unknown_device)
        self._registration(world, device)
        rows = [
            (row.last, c.entry_id)
            for c in self.certs[world.id]
            if c.entry.kind == SensorAttest.kind and (row := c.entry.body.row(device)) is not None  # type: ignore[attr-defined]
        ]
        candidates = [entry_id for _, entry_id in sorted(rows)]
        return Claimable.of(
            claimable(world.economy, world.ledger.state, device, candidates)
        ).to_json()

    def m_sensor_devices(self, economy: bytes) -> Any:
        world = self._world(economy)
        prefix = DeviceRecord.key(b"")
        records = world.ledger.state.records  # type: ignore[attr-defined]
        out = []
        for k in sorted(records):
            if not k.startswith(prefix):
                continue
            record = DeviceRecord.decode(records[k])
            if record.host != self._hosting():
                continue
            items = [] if self.host is None else self.host.readings.get(record.device, [])
            attested = [r[0].reading.counter for r in items if r[1] is not None]
            out.append(
                {
                    "device": hex_out(record.device),
                    "owner": did_out(record.owner),
                    "kind": record.body.device_kind,
                    "last_accepted": items[-1][0].reading.counter if items else None,
                    "last_attested": max(attested) if attested else None,
                    "readings": len(items),
                }
            )
        return out

    # -- JSON-RPC over HTTP ---------------------------------------------------------------

    def http(self, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        """One ``POST /``: (status, body), as the node's server answers it."""
        self.raw.append(body)
        self.auth.append(authorization)
        expected = "Basic " + base64.b64encode(COOKIE.encode()).decode()
        if authorization != expected:
            return 401, b""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None  # the dispatcher answers it
        self.bodies.extend(payload if isinstance(payload, list) else [payload])
        dispatcher = Dispatcher(self.registry, None, self.config.max_batch, translate)
        reply = _now(dispatcher.handle(body, None))
        if reply is None:
            return 204, b""
        return 200, reply.encode()

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            status, content = self.http(request.content, request.headers.get("authorization"))
            return httpx.Response(
                status, content=content, headers={"content-type": "application/json"}
            )

        return httpx.MockTransport(handle)


def _prepared(entry: Entry) -> dict[str, Any]:
    """``entry_prepare``'s answer for ``entry`` (as the node's ``_prepared``)."""
    entry_id = entry.id
    return {
        "id": hex_out(entry_id),
        "entry": hex_out(entry.encode()),
        "signing_message": hex_out(ENTRY.message(entry_id)),
        "view": EntryView.of(entry, entry_id).to_json(),
    }


class FakeHost:
    """A device host inside a FakeNode: the readings it accepted (each with
    its attestation id and proof once attested) and its attestations."""

    def __init__(self, node: FakeNode, world: World, host_key: SigningKey) -> None:
        self.node = node
        self.world = world
        self.key = host_key
        self.readings: dict[
            bytes, list[tuple[SignedReading, bytes | None, MerkleProof | None]]
        ] = {}
        self.attestations: dict[bytes, Certificate] = {}
        node.host = self

    def record(self, device: bytes) -> DeviceRecord:
        raw = self.world.ledger.state.get_record(DeviceRecord.key(device))  # type: ignore[attr-defined]
        if raw is None:
            raise Refused(Reason.UNKNOWN_DEVICE, "not registered")
        return DeviceRecord.decode(raw)

    def accept(self, signed: SignedReading) -> bytes:
        """The host's ingest check, then store (``Refused`` if refused)."""
        device = signed.reading.device
        items = self.readings.get(device, [])
        reading_id = check_reading(
            signed,
            self.record(device),
            economy=self.world.id,
            host=self.key.public,
            last_counter=items[-1][0].reading.counter if items else None,
            now_ms=None,
        )
        self.readings.setdefault(device, []).append((signed, None, None))
        return reading_id

    def attest(self) -> Certificate:
        """Attest every reading not attested yet (certified, applied, recorded)."""
        pending = [r[0] for items in self.readings.values() for r in items if r[1] is None]
        body, tree, ordered = self.world.attest_body(pending)
        cert = self.node.record(self.world.commit(self.key, body))
        proofs = {s.id: (cert.entry_id, tree.proof(i)) for i, s in enumerate(ordered)}
        for device, items in self.readings.items():
            self.readings[device] = [
                (s, *proofs[s.id]) if att is None and s.id in proofs else (s, att, proof)
                for s, att, proof in items
            ]
        self.attestations[cert.entry_id] = cert
        return cert


class _Handler(BaseHTTPRequestHandler):
    fake: FakeNode

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            status, content = self.fake.http(body, self.headers.get("authorization"))
        except BaseException as exc:  # a failed test (an undeclared answer): serve() raises it
            status, content = 500, str(exc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        if content:
            self.wfile.write(content)

    def address_string(self) -> str:  # a unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Quiet:
    """No traceback on stderr when a client hangs up early: CliRunner
    captures sys.stderr process-wide, so it would land in a CLI's output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _UnixServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TcpServer(_Quiet, ThreadingHTTPServer):
    daemon_threads = True


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@contextmanager
def serve(fake: FakeNode, datadir: Path, *, unix: bool = True) -> Iterator[Path]:
    """Serve ``fake`` as a running node whose data directory is ``datadir``."""
    datadir.mkdir(parents=True, exist_ok=True)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server: socketserver.BaseServer
    if unix:
        sock = datadir / "rpc.sock"
        server = _UnixServer(str(sock), handler)
        endpoint = {"http": "http://127.0.0.1:9", "unix": str(sock)}  # the socket wins
    else:
        server = _TcpServer(("127.0.0.1", 0), handler)
        endpoint = {"http": f"http://127.0.0.1:{server.server_address[1]}", "unix": None}
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    write_private(datadir / "rpc.endpoint", json.dumps(endpoint))
    write_private(datadir / ".cookie", COOKIE)
    try:
        yield datadir
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        (datadir / "rpc.endpoint").unlink(missing_ok=True)
        if unix:
            (datadir / "rpc.sock").unlink(missing_ok=True)
    if fake.failures:  # answered 500 in the server's thread; the test fails here
        pytest.fail(fake.failures[0], pytrace=False)


# -- the ingest port ------------------------------------------------------------------------


class FakeIngest:
    """``POST /v1/readings``: records each request; answers per reading from
    ``host`` (its ingest check) or, without a host, accepts everything —
    ``refuse`` maps a counter to a reason to answer instead."""

    def __init__(self, host: FakeHost | None = None) -> None:
        self.host = host
        self.requests: list[tuple[str, bytes]] = []  # (content type, body)
        self.received: list[SignedReading] = []
        self.refuse: dict[int, str] = {}
        self.status = 200  # another status answers the whole request with a refusal

    def answer(self, content_type: str, body: bytes) -> tuple[int, bytes]:
        self.requests.append((content_type, body))
        if self.status != 200:
            return self.status, msgpack.packb({"status": "refused", "reason": "too_large"})
        try:
            batch, single = [SignedReading.decode(body)], True
        except Refused:
            batch, single = [SignedReading.from_wire(w) for w in codec.decode(body)], False
        out: list[dict[str, Any]] = []
        for signed in batch:
            self.received.append(signed)
            reason = self.refuse.get(signed.reading.counter)
            try:
                if reason is not None:
                    raise Refused(Reason(reason), "told to refuse it")
                reading_id = self.host.accept(signed) if self.host is not None else signed.id
                out.append({"id": reading_id, "status": "accepted"})
            except Refused as exc:
                out.append({"status": "refused", "reason": exc.reason.value, "detail": exc.detail})
        return 200, msgpack.packb(out[0] if single else out)


class _IngestHandler(BaseHTTPRequestHandler):
    ingest: FakeIngest

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        status, content = self.ingest.answer(self.headers.get("content-type", ""), body)
        self.send_response(status)
        self.send_header("content-type", "application/msgpack")
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_ingest(ingest: FakeIngest) -> Iterator[str]:
    """Serve ``ingest`` on loopback; yields its base URL."""
    handler = type("IngestHandler", (_IngestHandler,), {"ingest": ingest})
    server = _TcpServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
