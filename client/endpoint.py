"""Where a node's RPC listens and the cookie it wants (``docs/rpc.md``, "Transport", "Auth")."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mycelia.api.contract import COOKIE_FILE, COOKIE_USER, RPC_ENDPOINT_FILE
from mycelia.client.errors import RpcUnavailable

__all__ = ["ENV_COOKIE", "ENV_URL", "Endpoint", "read_cookie"]

ENV_URL = "MYCELIA_RPC_URL"
ENV_COOKIE = "MYCELIA_RPC_COOKIE"
_COOKIE = re.compile(rf"{COOKIE_USER}:[0-9a-fA-F]{{16,128}}")

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
        http, unix = _read_endpoint_file(datadir / RPC_ENDPOINT_FILE)
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
            http, unix = _read_endpoint_file(folder / RPC_ENDPOINT_FILE)
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
