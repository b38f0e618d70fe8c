"""A device's side of a host's ingest port: ``POST /v1/readings`` (``docs/sensors.md``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx
import msgpack

from mycelia.api.contract import INGEST_PATH, JSON, MSGPACK
from mycelia.api.types import ReadingResult
from mycelia.client.errors import ClientError, RpcUnavailable, _bad_response, _parsing
from mycelia.protocol import (
    SignedReading,
    codec,
)

# -- the ingest port (a device's side) ------------------------------------------------------------


#: A host's answer about one reading (``mycelia.api.types.ReadingResult``).
IngestResult = ReadingResult


def _result(value: object) -> IngestResult:
    """One answer, msgpack (the id as bin) or JSON (the id as 0x hex)."""
    with _parsing("POST /v1/readings"):
        return ReadingResult.from_msgpack(value)


def ingest_url(url: str) -> str:
    """The readings endpoint of a host's ingest port given as
    ``http://HOST:PORT`` (the path is added) or the full URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError("bad_endpoint", f"{url!r} is not http://HOST:PORT of a host's ingest")
    if parts.path.rstrip("/") in ("", INGEST_PATH):
        return f"{parts.scheme}://{parts.netloc}{INGEST_PATH}"
    return url


def _ingest_payload(response: httpx.Response, url: str) -> object:
    """The answer decoded as its content type says: JSON, else msgpack."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == JSON:
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
        return [_result(a) for a in answers]
