"""The sans-IO core: JSON-RPC framing, verification and the flows both clients drive."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from mycelia.api import methods as declared
from mycelia.api.bodies import Body
from mycelia.api.codecs import Json
from mycelia.api.encoding import ParamError, hex_out
from mycelia.api.methods import MethodSpec
from mycelia.api.types import CertifiedEntry, EconomyView, EntryView
from mycelia.client.endpoint import Endpoint
from mycelia.client.errors import (
    ClientError,
    RpcError,
    RpcUnavailable,
    T,
    VerifyError,
    _bad_response,
    _parsing,
    _refused,
)
from mycelia.client.results import (
    FAILED,
    UNATTESTED,
    VERIFIED,
    AccountInfo,
    AttestationCheck,
    AuditReport,
    Claimable,
    ClaimPlan,
    EconomyInfo,
    EntryStatus,
    Followed,
    ForkInfo,
    GenesisSignature,
    HistoryPage,
    HostedDevice,
    Prepared,
    ReadingCheck,
    ReadingsPage,
    StoredReading,
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
    credits_for,
    did_decode,
    did_encode,
    entry_accounts,
    next_entry,
)
from mycelia.protocol.domains import ENTRY, GENESIS
from mycelia.protocol.keys import verify as verify_signature
from mycelia.protocol.sensors import MAX_CLAIM_ATTESTATIONS

# -- the sans-IO core -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    method: MethodSpec[Any]
    params: dict[str, Json]


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


#: A flow yields calls (and sleeps) and is sent each call's JSON result.
Flow = Generator[_Call | _Sleep, Json, T]
B = TypeVar("B", bound=Body)


def parse_result(method: MethodSpec[T], raw: object) -> T:
    """``method``'s result from its JSON, as its declaration says
    (``mycelia.api.methods``: ``parse_result(declared.NODE_INFO, raw)`` is a
    ``NodeInfo``); ``bad_response`` naming the method if it is not what the
    contract says."""
    with _parsing(method.name):
        return method.result.load(raw, "")


def _entry_from_view(view: EntryView, entry_id: bytes, what: str) -> Entry:
    """The protocol entry an entry view describes; it must hash to ``entry_id``."""
    with _parsing(what):
        entry = view.to_entry()
    if entry.id != entry_id or view.id != entry_id:
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

    def _request(self, method: str, params: Mapping[str, Json] | None) -> dict[str, Json]:
        self._next_id += 1
        req: dict[str, Json] = {"jsonrpc": "2.0", "method": method, "id": self._next_id}
        if params:
            req["params"] = dict(params)
        return req

    def _decode_http(self, status: int, content: bytes) -> Json:
        """The JSON payload of an HTTP response, or the error it means."""
        if status == 401:
            raise _unauthorized(self.endpoint)
        if status == 204:
            return None
        try:
            payload: Json = json.loads(content)
        except ValueError:
            raise _bad_response(f"HTTP {status} from {self.endpoint.where}, not JSON") from None
        if status != 200 and not (isinstance(payload, dict) and "error" in payload):
            raise ClientError("http_error", f"HTTP {status} from {self.endpoint.where}")
        return payload

    @staticmethod
    def _outcome(response: Json, expected_id: Json) -> Json:
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
        result: Json = response["result"]
        return result

    def _results(self, requests: list[dict[str, Json]], payload: Json) -> list[Json | RpcError]:
        """A batch's results in request order; an error is an RpcError value."""
        if isinstance(payload, dict) and "error" in payload:
            self._outcome(payload, None)  # the whole batch was refused: raises
        if not isinstance(payload, list):
            raise _bad_response("a batch was not answered with an array")
        by_id = {r.get("id"): r for r in payload if isinstance(r, dict)}
        out: list[Json | RpcError] = []
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

    def _economy_info(self, economy_id: bytes, raw: Json) -> EconomyInfo:
        view = parse_result(declared.ECONOMY_GET, raw)
        signed = view.genesis
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
        expected = EconomyView.of(signed, view.accounts, view.certificates)
        wrong = sorted(
            f.json
            for f in EconomyView.fields()
            if getattr(view, f.name) != getattr(expected, f.name)
        )
        if wrong:
            raise VerifyError(
                "malformed",
                f"economy_get {hex_out(economy_id)}: {', '.join(wrong)} disagree with the genesis",
            )
        self._economies[economy_id] = economy
        return EconomyInfo(signed, economy, view.accounts, view.certificates)

    @staticmethod
    def _verify(
        economy: Economy, cert: Certificate, what: str, view: EntryView | None = None
    ) -> Certificate:
        """Verify a certificate against the economy; a view shown with it must match."""
        try:
            cert.verify(economy)
        except Refused as exc:
            raise VerifyError(
                exc.reason.value,
                f"{what}: certificate for {hex_out(cert.entry_id)} does not verify "
                f"against the genesis of {hex_out(economy.id)}: {exc.detail}",
            ) from None
        if view is not None and view.view() != EntryView.of(cert.entry, cert.entry_id):
            raise VerifyError("malformed", f"{what}: the entry view disagrees with its certificate")
        return cert

    # -- flows ------------------------------------------------------------------------------

    def _economy_get_flow(self, economy_id: bytes) -> Flow[EconomyInfo]:
        raw = yield _Call(declared.ECONOMY_GET, {"economy": hex_out(economy_id)})
        return self._economy_info(economy_id, raw)

    def _economy_flow(self, economy_id: bytes) -> Flow[Economy]:
        cached = self._economies.get(economy_id)
        if cached is not None:
            return cached
        info = yield from self._economy_get_flow(economy_id)
        return info.economy

    def _entry_status_flow(self, entry_id: bytes, raw: Json) -> Flow[EntryStatus]:
        what = f"entry {hex_out(entry_id)}"
        with _parsing(what):
            status = declared.ENTRY_GET.result.load(raw, "")
            if status.id != entry_id:
                raise ParamError("id", "not the entry asked for")
        certificate = status.certificate
        if status.certified and certificate is None:
            raise _bad_response(f"{what}: certified without a certificate")
        if certificate is not None:
            if certificate.entry_id != entry_id:
                raise VerifyError("malformed", f"{what}: the certificate is for another entry")
            # The entry id asked for fixes the economy, and the economy id the genesis.
            economy = yield from self._economy_flow(certificate.entry.economy)
            self._verify(economy, certificate, what, status.view)
        elif status.view is not None:
            _entry_from_view(status.view, entry_id, what)
        return status

    def _entry_get_flow(self, entry_id: bytes) -> Flow[EntryStatus]:
        raw = yield _Call(declared.ENTRY_GET, {"id": hex_out(entry_id)})
        return (yield from self._entry_status_flow(entry_id, raw))

    def _account_certificate(
        self, economy: Economy, account: str, item: CertifiedEntry | Json
    ) -> Certificate:
        """One ``account`` history item or notification (its JSON), verified."""
        what = f"history of {account}"
        if not isinstance(item, CertifiedEntry):
            with _parsing(what):
                item = CertifiedEntry.from_json(item)
        cert = self._verify(economy, item.certificate, what, item)
        if not _relevant(cert.entry, _account_key(account)):
            raise VerifyError("malformed", f"{what}: lists an entry that does not concern it")
        return cert

    def _history_flow(
        self, economy_id: bytes, account: str, cursor: str | None, limit: int | None
    ) -> Flow[HistoryPage]:
        _account_key(account)
        params: dict[str, Json] = {"economy": hex_out(economy_id), "account": account}
        if cursor is not None:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = limit
        raw = yield _Call(declared.ACCOUNT_HISTORY, params)
        economy = yield from self._economy_flow(economy_id)
        page = parse_result(declared.ACCOUNT_HISTORY, raw)
        certs = tuple(self._account_certificate(economy, account, item) for item in page.entries)
        return HistoryPage(certs, page.next_cursor)

    def _fork(self, economy: Economy, shown: ForkInfo | Json, what: str) -> ForkInfo:
        """One fork the node shows (or its JSON), verified from its evidence alone."""
        if not isinstance(shown, ForkInfo):
            with _parsing(what):
                shown = ForkInfo.from_json(shown)
        evidence = shown.evidence
        try:
            guilty = evidence.verify(economy)
        except Refused as exc:
            raise VerifyError(
                exc.reason.value,
                f"{what}: the evidence does not prove a fork in {hex_out(economy.id)}: "
                f"{exc.detail}",
            ) from None
        expected = ForkInfo.of(economy, evidence)
        if shown != expected or expected.guilty != tuple(did_encode(k) for k in guilty):
            raise VerifyError("malformed", f"{what}: the view disagrees with its evidence")
        return expected

    def _forks_flow(self, economy_id: bytes) -> Flow[list[ForkInfo]]:
        """Every page of ``economy_forks``, each fork verified."""
        economy = yield from self._economy_flow(economy_id)
        out: list[ForkInfo] = []
        cursor = None
        while True:
            params: dict[str, Json] = {"economy": hex_out(economy_id)}
            if cursor is not None:
                params["cursor"] = cursor
            raw = yield _Call(declared.ECONOMY_FORKS, params)
            page = parse_result(declared.ECONOMY_FORKS, raw)
            cursor = page.next_cursor
            out.extend(self._fork(economy, item, "economy_forks") for item in page.forks)
            if cursor is None or not page.forks:
                return out

    def _account_flow(self, economy_id: bytes, account: str) -> Flow[AccountInfo]:
        _account_key(account)
        raw = yield _Call(
            declared.ACCOUNT_GET, {"economy": hex_out(economy_id), "account": account}
        )
        info: AccountInfo = parse_result(declared.ACCOUNT_GET, raw)
        if info.account != account:
            raise _bad_response(f"account_get answered for {info.account}, not {account}")
        return info

    def _prepare_flow(self, params: dict[str, Json]) -> Flow[Prepared]:
        raw = yield _Call(declared.ENTRY_PREPARE, params)
        prepared: Prepared = parse_result(declared.ENTRY_PREPARE, raw)
        entry_id = prepared.id
        if prepared.entry.id != entry_id or prepared.signing_message != ENTRY.message(entry_id):
            raise VerifyError("malformed", "entry_prepare: the id or message is not the entry's")
        if prepared.view != EntryView.of(prepared.entry, entry_id):
            raise VerifyError("malformed", "entry_prepare: the view is not the entry's")
        return prepared

    def _sign_genesis_flow(self, genesis_bytes: bytes) -> Flow[GenesisSignature]:
        raw = yield _Call(declared.ECONOMY_SIGN_GENESIS, {"genesis": hex_out(genesis_bytes)})
        answer: GenesisSignature = parse_result(declared.ECONOMY_SIGN_GENESIS, raw)
        with _parsing("economy_signGenesis"):
            genesis_id = Genesis.decode(genesis_bytes).id
        if not verify_signature(
            did_decode(answer.validator), GENESIS, genesis_id, answer.signature
        ):
            raise VerifyError(
                "bad_signature", f"{answer.validator}'s genesis signature does not verify"
            )
        return answer

    def _submit_flow(
        self, key: SigningKey, economy_id: bytes, body: Body, ts_ms: int | None
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
            declared.ENTRY_SUBMIT,
            {"entry": hex_out(entry.encode()), "signature": hex_out(signature)},
        )
        if parse_result(declared.ENTRY_SUBMIT, raw).id != entry.id:
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
        raw = yield _Call(declared.SENSOR_GET_READINGS, params)
        page: ReadingsPage = parse_result(declared.SENSOR_GET_READINGS, raw)
        return page

    def _attestation_flow(
        self, attestation_id: bytes, economy_id: bytes | None
    ) -> Flow[Certificate]:
        """A certified ``sensor.attest``, verified against its economy's genesis."""
        what = f"attestation {hex_out(attestation_id)}"
        raw = yield _Call(declared.SENSOR_GET_ATTESTATION, {"id": hex_out(attestation_id)})
        shown = parse_result(declared.SENSOR_GET_ATTESTATION, raw)
        cert, view = shown.certificate, shown.view
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
            declared.SENSOR_CLAIMABLE, {"economy": hex_out(economy_id), "device": hex_out(device)}
        )
        claimable: Claimable = parse_result(declared.SENSOR_CLAIMABLE, raw)
        return claimable

    def _devices_flow(self, economy_id: bytes) -> Flow[list[HostedDevice]]:
        raw = yield _Call(declared.SENSOR_DEVICES, {"economy": hex_out(economy_id)})
        devices = parse_result(declared.SENSOR_DEVICES, raw)
        return list(devices)

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


def _params(**params: Json) -> dict[str, Json]:
    return {k: v for k, v in params.items() if v is not None}


def _body(make: Callable[[], B]) -> B:
    try:
        return make()
    except Refused as exc:
        raise _refused(exc) from None


def _transfer_body(to: str, amount: int, memo: str) -> Transfer:
    return _body(lambda: Transfer(did_decode(to), amount, memo))


def _mint_body(to: str, amount: int, memo: str) -> Mint:
    return _body(lambda: Mint(did_decode(to), amount, memo))


def _burn_body(amount: int) -> Burn:
    return _body(lambda: Burn(amount))


def _admit_body(member: str) -> MemberAdmit:
    return _body(lambda: MemberAdmit(did_decode(member)))


def _credit_body(member: str, limit: int) -> CreditSet:
    return _body(lambda: CreditSet(did_decode(member), limit))


def _register_body(
    key: SigningKey,
    economy: bytes,
    device_key: DeviceKey,
    device_kind: str,
    host: str,
    metrics: Sequence[Metric],
) -> DeviceRegister:
    return _body(
        lambda: DeviceRegister.make(
            device_key, economy, key.public, device_kind, did_decode(host), metrics
        )
    )


def peer_ids(result: Json) -> list[str]:
    """The peer ids in a ``node_peers`` result."""
    return [p.peer_id for p in parse_result(declared.NODE_PEERS, result)]


def _created(signed: SignedGenesis, result: Json) -> bytes:
    economy_id: bytes = parse_result(declared.ECONOMY_CREATE, result).id
    if economy_id != signed.genesis.id:
        raise VerifyError("wrong_economy", "economy_create returned another economy's id")
    return economy_id


def _followed(economy: bytes, result: Json) -> Followed:
    followed: Followed = parse_result(declared.ECONOMY_FOLLOW, result)
    if followed.id != economy:
        raise _bad_response("economy_follow: id: not the economy asked for")
    return followed


def _submitted(entry: Entry, result: Json) -> bytes:
    if parse_result(declared.ENTRY_SUBMIT, result).id != entry.id:
        raise _bad_response("entry_submit: id: not the submitted entry's id")
    return entry.id
