"""Sensor ingest: the LAN-facing HTTP endpoint devices post signed readings to.

Why this exists: a host node is where its devices' readings enter the
system (DESIGN §5, docs/sensors.md "Ingest"). A device's signature is its
only credential, so every reading is checked before it is stored — with
the protocol's ``sensors.check_reading`` for everything that is a protocol
rule — and the node adds only I/O and policy: where the registration is,
the last counter accepted, the clock, size limits and rate limits.

The endpoint (``POST /v1/readings``, ``GET /v1/health``):

* Body: one ``signed-reading`` or an array of them, as canonical msgpack
  (``application/msgpack``: the signed-reading bytes, or an array of such
  arrays — each element is cut out of the body and decoded strictly on its
  own, so one non-canonical reading is refused alone) or JSON
  (``application/json``: an object or a list of objects with the reading's
  fields; the node re-encodes canonically and checks the signature over
  those bytes; integers beyond ±(2**53 - 1) are refused ``malformed``, as
  JSON libraries round them: such readings travel as msgpack).
* Answer (200, the request's content type): an array with one result per
  reading, in order — ``{"id", "status": "accepted"}`` or ``{"status":
  "refused", "reason", "detail"}`` (in msgpack a map, the id as bin). A
  body over ``max_body_bytes`` or with more than ``max_batch`` readings:
  413 ``too_large``; a body that does not parse: 400 ``malformed``;
  another content type: 415; the store failing to write: 503
  ``unavailable`` (nothing of the request stored); a body not all there
  within ``body_timeout_s``: 408 ``request_timeout``; each as one such
  result object.
* A JSON string that is not Unicode text (an escaped lone UTF-16
  surrogate, ``"\\ud800"``: valid JSON, but nothing UTF-8 can store or
  send back), in any field or member name of a reading, refuses that
  reading ``malformed``; the others of the batch are answered as usual.
* Connections (the ingest faces the LAN and needs no credential): at most
  ``max_connections`` open at once, ``max_connections_per_address`` from one
  IP address, counted from accept so that connections sending nothing count
  too; more are answered 503 ``too_many_connections`` (JSON) and closed.
  Headers must arrive within ``header_timeout_s`` (also the keep-alive
  idle time), the body within ``body_timeout_s`` after them. The serving
  machinery is the RPC's (``http.serve_http``).

Every reason an answer can carry is in :data:`READING_REASONS` (per
reading) and :data:`BODY_REFUSALS` (a whole request); ``docs/sensors.md``
("Ingest reasons") tells a device maker what to do about each, and tests
keep the three equal.

Per reading, cheapest first: strict decoding (``malformed``,
``non_canonical``, ``too_large``); the sender's address token bucket
(``rate_limited``, before any signature work); the device's registration in
a followed economy — the one the reading names, else any other, so a
reading signed for another economy is ``wrong_economy`` (none:
``unknown_device``); ``check_reading`` against the last accepted counter
(including earlier readings of the same batch) and the node's clock; then
the device's token bucket, spent by authentic readings only, so nobody can
use up a device's allowance by sending forgeries. Buckets hold
``max_batch`` readings and refill at ``rate_per_device`` /
``rate_per_address`` per second.

Durability: accepted readings from every concurrent request are written by
one group-commit task in one transaction (``Store.ingest_sync``, fsync), and
each request is answered only after its readings are committed. Nothing
refused is ever stored. Checks run one request at a time (a lock around the
check, not the write), so two requests cannot both accept one counter.

Threads (issue 15: one core verified while the machine had two): a
request is checked in three passes. ``_prepare`` (one worker thread,
serial) does everything before ``check_reading`` and guesses, per reading,
the last counter ``check_reading`` will be given — the device's previous
reading in the request, as if accepted. ``_verify`` runs
``check_reading`` with those guesses, the signature checks being nearly
all of the work, in parts of at least :data:`SPLIT_AT` readings on at
most :data:`VERIFY_THREADS` worker threads (one per core; a
``trio.CapacityLimiter`` owned by the ingest bounds them for all requests
together; each part is a task of the request's own nursery). ``_settle``
then walks the request in order with the real last counters: a reading
whose guess was right keeps its verdict (``check_reading`` is a function
of its inputs, and they were the same), any other is checked again there
(after a refused reading of the same device: at most one more
verification per forgery), and only then is the device's bucket spent.
So the answers are reading for reading those of the serial rule.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

import msgpack
import trio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from mycelia.api.codecs import Json
from mycelia.api.contract import (
    INGEST_ENDPOINT_FILE,
    INGEST_HEALTH_PATH,
    INGEST_PATH,
    JSON,
    MSGPACK,
    REQUEST_TIMEOUT,
    TOO_MANY_CONNECTIONS,
)
from mycelia.api.encoding import NOT_UNICODE, ParamError, hex_in, int_in, str_in
from mycelia.api.types import ReadingResult
from mycelia.node.applier import INLINE_SIGNATURES, ready_group, signature_work
from mycelia.node.config import SensorsConfig
from mycelia.node.http import (
    BodyTimeout,
    Gate,
    http_refusal,
    http_url,
    read_body,
    serve_http,
    write_private_file,
)
from mycelia.node.jsonrpc import encode, loads, lone_surrogate
from mycelia.node.metrics import Metrics
from mycelia.node.store import Accepted, StoreError
from mycelia.protocol import (
    DeviceRecord,
    Economy,
    Reading,
    Reason,
    Refused,
    SignedReading,
    check_reading,
    sensors,
)
from mycelia.protocol.economy import IMPACT

if TYPE_CHECKING:  # the daemon imports this module
    from mycelia.node.daemon import Node

__all__ = [
    "BODY_REFUSALS",
    "RATE_LIMITED",
    "READING_REASONS",
    "REQUEST_TIMEOUT",
    "TOO_MANY_CONNECTIONS",
    "UNAVAILABLE",
    "Ingest",
    "Result",
    "ingest_gate",
    "serve_ingest",
    "split_msgpack",
]

log = logging.getLogger("mycelia.ingest")

#: The node's own reasons: a policy, not a protocol rule; and a store that
#: could not write (full disk): nothing was stored, the device sends again.
RATE_LIMITED = "rate_limited"
UNAVAILABLE = "unavailable"
#: Whole requests the node cut off: a body too slow, too many connections
#: (REQUEST_TIMEOUT, TOO_MANY_CONNECTIONS: the RPC's reasons, docs/rpc.md).
INTERNAL_ERROR = "internal_error"
#: Every reason a reading's own result can carry: the protocol's (decoding
#: and ``check_reading``) and the node's ``rate_limited``.
READING_REASONS: frozenset[str] = frozenset(
    {r.value for r in sensors.READING_REASONS} | {RATE_LIMITED}
)
#: Every ``(HTTP status, reason)`` a whole request can be refused with.
BODY_REFUSALS: frozenset[tuple[int, str]] = frozenset(
    {
        (413, "too_large"),
        (400, "malformed"),
        (415, "malformed"),
        (503, UNAVAILABLE),
        (408, REQUEST_TIMEOUT),
        (503, TOO_MANY_CONNECTIONS),
        (500, INTERNAL_ERROR),
    }
)
#: Worker threads verifying readings' signatures at once, for the whole
#: ingest (one per core: the work is libsodium's and OpenSSL's, which
#: release the GIL), and the fewest readings worth a thread of their own.
VERIFY_THREADS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
SPLIT_AT = 32
#: Token buckets remembered per kind (least recently used forgotten first:
#: a forgotten bucket is a full one, which only errs towards accepting).
MAX_BUCKETS = 10_000
_JSON_FIELDS = frozenset(
    {"economy", "device", "counter", "ts_ms", "metric", "value", "exponent", "signature"}
)
#: The largest integer a JSON reading may carry (I-JSON, RFC 7493): most JSON
#: libraries (JavaScript, cJSON, ...) hold numbers as doubles, which round
#: integers above it, so the device would have signed another number than
#: the one that arrives. Refused as ``malformed`` saying so, not as a
#: puzzling ``bad_signature``: such readings travel as msgpack.
JSON_MAX_INT = (1 << 53) - 1


#: A request's readings: each signed reading's bytes (msgpack), or each
#: decoded JSON value (JSON; one not a reading object is refused alone).
Items = list[bytes] | list[object]


def _json_int(value: object, field: str, *, low: int = 0) -> int:
    if type(value) is int and not -JSON_MAX_INT <= value <= JSON_MAX_INT:
        detail = f"{value} is beyond ±(2**53 - 1), not exact in JSON: send it as msgpack"
        raise ParamError(field, detail)
    return int_in(value, field, low=max(low, -JSON_MAX_INT), high=JSON_MAX_INT)


def Result(*, id: bytes | None = None, reason: str = "", detail: str = "") -> ReadingResult:
    """One reading's outcome (``mycelia.api.types.ReadingResult``): accepted
    with its id, or refused with a reason."""
    return ReadingResult.accept(id) if id is not None else ReadingResult.refuse(reason, detail)


class _BodyError(Exception):
    """A whole request refused: HTTP status and result."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.result = Result(reason=reason, detail=detail)


def _refused(exc: Refused) -> ReadingResult:
    return Result(reason=exc.reason.value, detail=exc.detail)


K = TypeVar("K", bound=Hashable)


class _Buckets(Generic[K]):
    """Token buckets by key: ``rate`` tokens a second, holding ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._state: OrderedDict[K, tuple[float, float]] = OrderedDict()

    def take(self, key: K, now: float) -> bool:
        return self.take_many(key, now, 1) == 1

    def take_many(self, key: K, now: float, n: int) -> int:
        """Up to ``n`` tokens at once: how many were granted (the same as
        ``n`` calls of :meth:`take` at one ``now``, in one dictionary update)."""
        tokens, then = self._state.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        granted = min(n, int(tokens)) if tokens >= 1.0 else 0
        self._state[key] = (tokens - granted, now)
        if len(self._state) > MAX_BUCKETS:
            self._state.popitem(last=False)
        return granted


# -- parsing bodies (sans-IO) -------------------------------------------------------------


def split_msgpack(body: bytes, max_batch: int) -> list[bytes]:
    """The readings' bytes in a msgpack body: the body itself when it is one
    signed reading, else each element of the array it holds (undecoded: each
    is decoded strictly on its own). Raises :class:`_BodyError`."""
    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=max(1, len(body)))
    unpacker.feed(body)
    try:
        n = unpacker.read_array_header()
        if n == 0:
            items: list[bytes] = []
        else:
            start = unpacker.tell()
            first = unpacker.unpack()
            if first == b"signed-reading":
                return [body]  # one reading: decoded whole, strictly
            if n > max_batch:
                raise _BodyError(413, "too_large", f"{n} readings; at most {max_batch} a request")
            items = [body[start : unpacker.tell()]]
            for _ in range(n - 1):
                start = unpacker.tell()
                unpacker.skip()
                items.append(body[start : unpacker.tell()])
    except _BodyError:
        raise
    except Exception as exc:  # OutOfData, bad bytes, not an array, limits
        raise _BodyError(400, "malformed", f"not a msgpack reading or array: {exc!r}") from None
    if unpacker.tell() != len(body):
        raise _BodyError(400, "malformed", "bytes after the msgpack value")
    return items


def split_json(body: bytes, max_batch: int) -> list[object]:
    """The reading objects of a JSON body (an object or a list of them)."""
    try:
        value = loads(body)
    except (ValueError, RecursionError) as exc:
        raise _BodyError(400, "malformed", f"not JSON: {exc}") from None
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise _BodyError(400, "malformed", "expected a reading object or a list of them")
    if len(value) > max_batch:
        raise _BodyError(413, "too_large", f"{len(value)} readings; at most {max_batch} a request")
    return value


def reading_from_json(value: object) -> SignedReading:
    """A signed reading from its JSON object; ``malformed`` if it is not one."""
    try:
        if not isinstance(value, dict):
            raise ParamError("reading", "expected an object")
        # First: every detail below may name a field or quote a value.
        found = lone_surrogate(value)
        if found is not None:
            path, is_name = found
            name = path or "reading"
            raise ParamError(name, f"a member name is {NOT_UNICODE}" if is_name else NOT_UNICODE)
        missing = _JSON_FIELDS - value.keys()
        extra = value.keys() - _JSON_FIELDS
        if missing or extra:
            name = sorted(missing or extra)[0]
            raise ParamError(name, "missing" if missing else "unknown field")
        reading = Reading(
            hex_in(value["economy"], "economy", size=32),
            hex_in(value["device"], "device", size=32),
            _json_int(value["counter"], "counter"),
            _json_int(value["ts_ms"], "ts_ms"),
            str_in(value["metric"], "metric", max_bytes=32),
            _json_int(value["value"], "value", low=-JSON_MAX_INT),
            int_in(value["exponent"], "exponent", low=-18, high=18),
        )
        return SignedReading(reading, hex_in(value["signature"], "signature", size=64))
    except ParamError as exc:
        raise Refused(Reason.MALFORMED, str(exc)) from None


# -- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Check:
    """A reading that passed decoding and has a registration: what
    ``check_reading`` needs, and the last counter guessed for it."""

    index: int
    signed: SignedReading
    raw: bytes
    economy: bytes
    record: DeviceRecord
    guess: int | None


@dataclass(slots=True)
class _Plan:
    """One request between the passes: the clocks read once for all its
    readings, the results known so far (None: to be settled), the readings
    to check, and each device's last accepted counter before the request."""

    now: float
    now_ms: int
    size: int
    results: list[ReadingResult | None] = field(init=False)
    checks: list[_Check] = field(default_factory=list)
    before: dict[bytes, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.results = [None] * self.size


@dataclass
class _Write:
    accepted: list[Accepted]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class Ingest:
    """Checks and stores readings for ``node``; :meth:`serve` runs the HTTP
    endpoint and the group commit. ``clock`` (seconds, monotonic) drives the
    token buckets and ``wall_ms`` the skew check and received times; tests
    pass their own."""

    def __init__(
        self,
        node: Node,
        config: SensorsConfig,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.node = node
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._wall_ms = wall_ms
        burst = float(config.max_batch)
        self._by_device = _Buckets[bytes](
            config.rate_per_device, max(burst, config.rate_per_device)
        )
        self._by_address = _Buckets[str](
            config.rate_per_address, max(burst, config.rate_per_address)
        )
        self._check_lock = trio.Lock()
        self._threads = trio.CapacityLimiter(VERIFY_THREADS)
        #: device -> last accepted counter, including readings not yet committed
        self._last: dict[bytes, int] = {}
        #: (economy, device) -> registration; facts never change once certified
        self._registrations: dict[tuple[bytes, bytes], DeviceRecord] = {}
        self._send, self._recv = trio.open_memory_channel[_Write](256)
        #: plain counters (the metrics have them too, when given)
        self.accepted = 0
        self.refused: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route(INGEST_PATH, self._post_readings, methods=["POST"]),
                Route(INGEST_HEALTH_PATH, self._health, methods=["GET"]),
            ]
        )

    # -- running ----------------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The group commit and the HTTP endpoint, until cancelled; reports
        ``(host, port)`` once listening. Like the RPC's ``rpc.endpoint``, it
        writes ``DATADIR/ingest.endpoint`` (``{"http": URL}``, the address
        bound, so port 0 works) and sets ``node.listening.ingest`` once it
        listens; a stop removes both."""
        endpoint_path = self.node.datadir.absolute() / INGEST_ENDPOINT_FILE
        written = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._group_commit)
                host, port = await nursery.start(
                    lambda task_status: serve_http(
                        self.app,
                        self.config.host,
                        self.config.port,
                        what="ingest",
                        header_timeout_s=self.config.header_timeout_s,
                        gate=ingest_gate(self.config),
                        task_status=task_status,
                    )
                )
                url = http_url(host, port)
                written = True
                write_private_file(endpoint_path, json.dumps({"http": url}) + "\n")
                self.node.listening.ingest = url
                task_status.started((host, port))
        finally:
            self.node.listening.ingest = None
            if written:
                with contextlib.suppress(OSError):
                    endpoint_path.unlink(missing_ok=True)

    async def _group_commit(self) -> None:
        async for first in self._recv:
            group = ready_group(first, self._recv)
            accepted = [a for w in group for a in w.accepted]
            try:
                # Shielded: a transaction in a worker thread cannot be
                # abandoned halfway, and its requests must hear how it ended.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        self.node.store.ingest_sync, accepted, self._wall_ms()
                    )
            except Exception as exc:
                log.error("storing %d readings failed: %s", len(accepted), exc)
                for a in accepted:  # reload from the store next time
                    self._last.pop(a.device, None)
                for w in group:
                    w.error = exc
                    w.done.set()
                continue
            for w in group:
                w.done.set()
            self.node.attester.queued(len(accepted))

    # -- checking ---------------------------------------------------------------------

    def _registration(
        self, reading: Reading, economies: dict[bytes, Economy]
    ) -> tuple[bytes, DeviceRecord] | None:
        """The device's registration in a followed economy: the one the
        reading names first, else another (check_reading then says
        ``wrong_economy``)."""
        order = [reading.economy] if reading.economy in economies else []
        order += [
            e for e, econ in economies.items() if e != reading.economy and econ.kind == IMPACT
        ]
        for economy_id in order:
            cached = self._registrations.get((economy_id, reading.device))
            if cached is not None:
                return economy_id, cached
            raw = self.node.store.record(economy_id, DeviceRecord.key(reading.device))
            if raw is not None:
                record = DeviceRecord.decode(raw)
                if len(self._registrations) < MAX_BUCKETS:
                    self._registrations[(economy_id, reading.device)] = record
                return economy_id, record
        return None

    def _last_accepted(self, device: bytes) -> int | None:
        if device in self._last:
            return self._last[device]
        state = self.node.store.ingest_state(device)
        return None if state is None else state.last_accepted

    def _prepare(self, items: Items, address: str, economies: dict[bytes, Economy]) -> _Plan:
        """The serial first pass over a request (under the check lock, in a
        worker thread): the sender's bucket, strict decoding and the device's
        registration per reading — the refusals that need no signature —
        and, for the others, a guess of the last counter ``check_reading``
        will be given: the counter of the device's previous reading in the
        request (as if it were accepted), else the last one accepted before.
        The guess is only a guess: :meth:`_settle` checks again, in order,
        every reading whose real last counter turned out otherwise."""
        plan = _Plan(self._clock(), self._wall_ms(), len(items))
        guess: dict[bytes, int | None] = {}
        allowed = self._by_address.take_many(address, plan.now, len(items))
        for i, item in enumerate(items):
            if i >= allowed:
                plan.results[i] = Result(reason=RATE_LIMITED, detail="too many readings from here")
                continue
            try:
                if isinstance(item, bytes):
                    signed = SignedReading.decode(item)
                    raw = item  # decoded strictly: the bytes are its canonical form
                else:
                    signed = reading_from_json(item)
                    raw = signed.encode()
            except Refused as exc:
                plan.results[i] = _refused(exc)
                continue
            r = signed.reading
            found = self._registration(r, economies)
            if found is None:
                detail = "no followed economy registers this device"
                plan.results[i] = Result(reason=Reason.UNKNOWN_DEVICE.value, detail=detail)
                continue
            if r.device not in plan.before:
                plan.before[r.device] = guess[r.device] = self._last_accepted(r.device)
            economy_id, record = found
            plan.checks.append(_Check(i, signed, raw, economy_id, record, guess[r.device]))
            guess[r.device] = r.counter
        return plan

    def _check(self, c: _Check, last: int | None, now_ms: int) -> bytes | Refused:
        """The protocol's ``check_reading`` of one reading (its id, or why
        not), given the device's last accepted counter."""
        try:
            return check_reading(
                c.signed,
                c.record,
                economy=c.economy,
                host=self.node.key.public,
                last_counter=last,
                now_ms=now_ms,
                max_skew_ms=self.config.max_clock_skew_s * 1000,
            )
        except Refused as exc:
            return exc

    async def _verify(self, plan: _Plan) -> list[bytes | Refused]:
        """``check_reading`` of every reading of the plan with its guessed
        last counter — the signature checks, the bulk of the work — split
        across worker threads (libsodium and OpenSSL release the GIL), at
        most :data:`VERIFY_THREADS` at once for the whole ingest; a handful
        on the event loop, where a thread hop would cost more."""
        checks = plan.checks

        def run(part: list[_Check]) -> list[bytes | Refused]:
            return [self._check(c, c.guess, plan.now_ms) for c in part]

        if len(checks) <= INLINE_SIGNATURES:
            return run(checks)
        n = min(VERIFY_THREADS, -(-len(checks) // SPLIT_AT))
        size = -(-len(checks) // n)
        parts = [checks[i : i + size] for i in range(0, len(checks), size)]
        verdicts: list[list[bytes | Refused]] = [[] for _ in parts]

        async def one(k: int) -> None:
            verdicts[k] = await trio.to_thread.run_sync(run, parts[k], limiter=self._threads)

        async with trio.open_nursery() as nursery:
            for k in range(len(parts)):
                nursery.start_soon(one, k)
        return [v for part in verdicts for v in part]

    def _settle(
        self, plan: _Plan, verdicts: list[bytes | Refused]
    ) -> tuple[list[ReadingResult], list[Accepted], dict[bytes, int]]:
        """The serial last pass, in request order: each reading's verdict —
        the one computed with its guess when the guess was the real last
        counter (the same inputs, so the same answer), else ``check_reading``
        again with the real one — then the device's bucket, spent by
        authentic readings only. Returns the results, what to store and the
        devices' new last counters."""
        lasts = dict(plan.before)
        accepted: list[Accepted] = []
        for c, verdict in zip(plan.checks, verdicts, strict=True):
            r = c.signed.reading
            last = lasts[r.device]
            if last != c.guess:
                verdict = self._check(c, last, plan.now_ms)
            if isinstance(verdict, Refused):
                plan.results[c.index] = _refused(verdict)
            elif not self._by_device.take(r.device, plan.now):
                detail = "too many readings of device"
                plan.results[c.index] = Result(reason=RATE_LIMITED, detail=detail)
            else:
                lasts[r.device] = r.counter
                accepted.append(Accepted(c.economy, r.device, r.counter, c.raw))
                plan.results[c.index] = Result(id=verdict)
        results = [r for r in plan.results if r is not None]
        assert len(results) == len(plan.results), "a reading without a result"
        return results, accepted, {d: n for d, n in lasts.items() if n is not None}

    async def ingest(self, items: Items, address: str) -> list[ReadingResult]:
        """Check ``items`` (signed-reading bytes or JSON objects) sent from
        ``address``, store the accepted ones durably, return the results."""
        economies = dict(self.node.applier.economies)  # a snapshot for the worker thread
        async with self._check_lock:
            plan = await signature_work(
                lambda: self._prepare(items, address, economies), len(items)
            )
            verdicts = await self._verify(plan)
            results, accepted, lasts = self._settle(plan, verdicts)
            self._last.update(lasts)
        if accepted:
            write = _Write(accepted)
            await self._send.send(write)
            await write.done.wait()
            if write.error is not None:
                raise write.error
        self._count(results)
        return results

    def _count(self, results: list[ReadingResult]) -> None:
        reasons = Counter(r.reason or "" for r in results if not r.accepted)
        n = len(results) - sum(reasons.values())
        self.accepted += n
        self.refused.update(reasons)
        if self.metrics is not None:
            self.metrics.sensor_readings_accepted_total.inc(n)
            for reason, count in reasons.items():
                self.metrics.sensor_refused(reason, count)

    # -- HTTP -------------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return Response(b'{"ok":true}', media_type=JSON)

    async def _post_readings(self, request: Request) -> Response:
        started = time.perf_counter()
        ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        as_msgpack = ctype == MSGPACK
        try:
            if ctype not in (MSGPACK, JSON):
                raise _BodyError(415, "malformed", f"Content-Type must be {MSGPACK} or {JSON}")
            timeout = self.config.body_timeout_s
            try:
                body = await read_body(request, self.config.max_body_bytes, timeout)
            except ClientDisconnect:
                return Response(status_code=400)  # nobody reads it
            except BodyTimeout:
                detail = f"the body did not arrive within {timeout:g} s"
                raise _BodyError(408, REQUEST_TIMEOUT, detail) from None
            if body is None:
                limit = self.config.max_body_bytes
                raise _BodyError(413, "too_large", f"body over {limit} bytes")
            max_batch = self.config.max_batch
            items: Items
            if as_msgpack:
                items = list(split_msgpack(body, max_batch))
            else:
                items = split_json(body, max_batch)
            address = request.client.host if request.client else ""
            try:
                results = await self.ingest(items, address)
            except (StoreError, OSError) as exc:  # logged by the group commit
                raise _BodyError(503, UNAVAILABLE, f"not stored, send again: {exc}") from None
        except _BodyError as exc:
            self._count([exc.result])
            return self._error(exc, as_msgpack)
        except Exception:  # a bug: logged once, and no traceback for the device
            log.exception("ingest request failed")
            return self._error(_BodyError(500, INTERNAL_ERROR, "see the node's log"), as_msgpack)
        finally:
            if self.metrics is not None:
                self.metrics.sensor_ingest_seconds.observe(time.perf_counter() - started)
        return self._respond(results, as_msgpack)

    def _error(self, exc: _BodyError, as_msgpack: bool) -> Response:
        response = self._respond(exc.result, as_msgpack, exc.status)
        if exc.status == 408:  # the rest of the body is not waited for
            response.headers["connection"] = "close"
        return response

    @staticmethod
    def _respond(
        answer: list[ReadingResult] | ReadingResult, as_msgpack: bool, status: int = 200
    ) -> Response:
        """The results of a request (a list), or the one result of a request
        refused whole, in the request's content type."""
        if as_msgpack:
            packed = (
                [r.to_msgpack() for r in answer]
                if isinstance(answer, list)
                else answer.to_msgpack()
            )
            return Response(msgpack.packb(packed, use_bin_type=True), status, media_type=MSGPACK)
        value: Json = (
            [r.to_json() for r in answer] if isinstance(answer, list) else answer.to_json()
        )
        return Response(encode(value), status, media_type=JSON)


def ingest_gate(config: SensorsConfig) -> Gate:
    """The ingest's connection caps: every address is counted (devices are
    on the LAN; loopback is nobody special here)."""

    def refusal(limit: int, what: str) -> bytes:
        detail = f"{limit} connections {what}are open already; send again later"
        return http_refusal(encode(Result(reason=TOO_MANY_CONNECTIONS, detail=detail).to_json()))

    each = config.max_connections_per_address
    return Gate(
        config.max_connections,
        each,
        busy=refusal(config.max_connections, ""),
        crowded=refusal(each, "from this address "),
    )


async def serve_ingest(
    node: Node,
    config: SensorsConfig,
    metrics: Metrics | None = None,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``node``'s sensor ingest until cancelled; reports ``(host, port)``."""
    await Ingest(node, config, metrics).serve(task_status=task_status)
