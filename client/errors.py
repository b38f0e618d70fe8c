"""What can go wrong talking to a node: :class:`ClientError` and its kinds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from mycelia.api.codecs import Json
from mycelia.api.contract import STANDARD_REASONS
from mycelia.api.encoding import ParamError
from mycelia.protocol import Refused

T = TypeVar("T")

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
            reason = STANDARD_REASONS.get(code, "rpc_error")
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
