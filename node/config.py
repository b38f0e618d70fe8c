"""The node's configuration: one loader, four layers, errors that name the key.

Why this exists: an operator configures a node in a TOML file, a container or
systemd unit tweaks a setting through the environment, and a developer tries
a value on the command line. All three must agree on key names, types and
limits, and a typo must fail loudly instead of being silently ignored (a
misspelt ``lisen`` that leaves the node on its default port is a bad
afternoon). So every setting is declared once, here, with its default, its
type, its limits and a one-line description; parsing, validation, error
messages and the commented default file (:func:`default_toml`) all derive from
that declaration.

Layers and precedence (later wins, key by key)::

    defaults  <  TOML file  <  environment  <  command-line overrides

* **defaults** are the dataclass field defaults below.
* **file**: ``load_config(path)`` reads TOML with :mod:`tomllib`. Values keep
  their TOML types (a list is a TOML array, a bool is ``true``/``false``).
* **environment**: ``MYCELIA_<SECTION>__<KEY>`` (``MYCELIA_P2P__LISTEN``,
  ``MYCELIA_METRICS__PORT``). Any ``MYCELIA_`` variable containing ``__``
  must name a known setting, so a misspelt variable is an error too. Other
  ``MYCELIA_`` variables (such as ``MYCELIA_CONFIG``, the CLI's config path)
  are left alone.
* **overrides**: a mapping ``{"section.key": "value"}`` (the CLI's
  ``--set section.key=value``).

Environment and override values are strings parsed per the field's type:
booleans accept ``true/false/1/0/yes/no``; lists accept a comma-separated
string or a TOML array literal (``'["/ip4/0.0.0.0/tcp/4101"]'``); an empty
string is an empty list, or "unset" for an optional path.

Every layer is validated as it is read, so a bad value in the file is an
error even if the environment overrides it: a broken file should not lurk
until the day the override is removed.

Paths: ``~`` is expanded. A relative ``node.datadir`` or
``node.passphrase_file`` is resolved against the folder of the config file it
appears in (against the working directory when it comes from the environment
or the command line, or when there is no file). A relative ``node.key_file``
is inside the datadir. A loaded :class:`Config` holds absolute paths only.

Sizes: ``store.map_size_mb`` is capped at 1024 so the initial LMDB map is
valid on 32-bit systems (where a map must stay below about 2 GB);
``store.max_map_size_mb`` defaults to 1536 for the same reason and may be set
larger only on a 64-bit Python.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_FILE_NAME",
    "DEFAULTS",
    "DEFAULT_DATADIR",
    "ComputeConfig",
    "Config",
    "ConfigError",
    "EconomiesConfig",
    "MetricsConfig",
    "NodeConfig",
    "P2PConfig",
    "RpcConfig",
    "RuntimeConfig",
    "SensorsConfig",
    "StoreConfig",
    "SubmitConfig",
    "SyncConfig",
    "ValidatorConfig",
    "check_rpc",
    "default_config_path",
    "default_toml",
    "env_var_name",
    "load_config",
    "split_host_port",
]

#: The default data directory, before ``~`` expansion.
DEFAULT_DATADIR = "~/.local/share/mycelia"
#: The name ``mycelia init`` gives the config file it writes into the datadir.
CONFIG_FILE_NAME = "mycelia.toml"
ENV_PREFIX = "MYCELIA_"

KiB = 1024
MiB = 1024 * KiB

# lmdb on a 32-bit system cannot map much more than ~2 GB of address space,
# so both map sizes stay below that there. On 64-bit the maximum may be raised
# explicitly (up to 1 TiB here, far beyond a community node's needs).
_IS_64BIT = sys.maxsize > 2**32
_MAP_MB_CAP_32BIT = 1536
_MAX_MAP_MB_LIMIT = 1024 * 1024 if _IS_64BIT else _MAP_MB_CAP_32BIT


class ConfigError(Exception):
    """A config problem, with a message fit to show an operator as is.

    ``key`` is the ``section.key`` concerned, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# -- value kinds ------------------------------------------------------------------
#
# A kind turns a TOML value or an environment/CLI string into the typed value,
# or raises _Bad; the loader adds the key, the expectation and the source to
# the message. ``expected`` completes "expected ...".


class _Bad(Exception):
    """A value did not parse; ``got`` (if set) is the offending part.

    A table-valued setting (``compute.runtimes``) names the part inside it in
    ``at`` (``".py.command"``), so the error names the whole key; ``unknown``
    (a did-you-mean hint, possibly empty) says ``at`` is a key that does not
    exist, and ``missing`` that a required key is absent.
    """

    def __init__(
        self,
        got: object = MISSING,
        expected: str | None = None,
        *,
        at: str = "",
        unknown: str | None = None,
        missing: bool = False,
    ) -> None:
        super().__init__()
        self.got = got
        self.expected = expected
        self.at = at
        self.unknown = unknown
        self.missing = missing


class _Kind:
    expected: str = "a value"

    def from_toml(self, value: object) -> Any:
        raise NotImplementedError

    def from_text(self, text: str) -> Any:
        # By default a string is parsed as the TOML value would be.
        return self.from_toml(text)

    def render(self, value: Any) -> str:
        """The TOML literal for ``value``."""
        return _toml_str(str(value))


class _Bool(_Kind):
    expected = "a boolean (true/false/1/0/yes/no)"
    _TRUE = frozenset({"true", "1", "yes"})
    _FALSE = frozenset({"false", "0", "no"})

    def from_toml(self, value: object) -> bool:
        if type(value) is not bool:
            raise _Bad
        return value

    def from_text(self, text: str) -> bool:
        t = text.strip().lower()
        if t in self._TRUE:
            return True
        if t in self._FALSE:
            return False
        raise _Bad

    def render(self, value: Any) -> str:
        return "true" if value else "false"


class _Int(_Kind):
    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.expected = f"an integer {lo}..{hi}"

    def from_toml(self, value: object) -> int:
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise _Bad
        return value

    def from_text(self, text: str) -> int:
        try:
            n = int(text.strip(), 10)  # also takes TOML-style 262_144
        except ValueError:
            raise _Bad from None
        return self.from_toml(n)

    def render(self, value: Any) -> str:
        return str(value)


class _Positive(_Kind):
    expected = "a number > 0"

    def from_toml(self, value: object) -> float:
        if type(value) is not int and type(value) is not float:
            raise _Bad
        x = float(value)
        if not math.isfinite(x) or x <= 0:
            raise _Bad
        return x

    def from_text(self, text: str) -> float:
        try:
            x = float(text.strip())
        except ValueError:
            raise _Bad from None
        return self.from_toml(x)

    def render(self, value: Any) -> str:
        return repr(float(value))


class _Seconds(_Positive):
    """A duration in seconds within ``lo..hi`` (a heartbeat of a millisecond
    or a ping timeout of a year is a typo, not a setting)."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self.expected = f"a number of seconds {lo:g}..{hi:g}"

    def from_toml(self, value: object) -> float:
        x = super().from_toml(value)
        if not self.lo <= x <= self.hi:
            raise _Bad
        return x


class _Choice(_Kind):
    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def from_toml(self, value: object) -> str:
        if type(value) is not str or value.strip().lower() not in self.choices:
            raise _Bad
        return value.strip().lower()


class _Host(_Kind):
    expected = "a host name or IP address"
    _RE = re.compile(r"^[A-Za-z0-9.:_-]+$")

    def from_toml(self, value: object) -> str:
        if type(value) is not str or not self._RE.match(value.strip()):
            raise _Bad
        return value.strip()


class _Path(_Kind):
    def __init__(self, *, optional: bool = False) -> None:
        self.optional = optional
        self.expected = "a path (empty for none)" if optional else "a path"

    def from_toml(self, value: object) -> Path | None:
        if type(value) is not str or "\0" in value:
            raise _Bad
        if not value.strip():
            if self.optional:
                return None
            raise _Bad
        return Path(value).expanduser()

    def render(self, value: Any) -> str:
        return _toml_str("" if value is None else str(value))


class _HexId(_Kind):
    expected = "a 64-character hex economy id"
    _RE = re.compile(r"^[0-9a-fA-F]{64}$")

    def from_toml(self, value: object) -> str:
        if type(value) is not str or not self._RE.match(value.strip()):
            raise _Bad
        return value.strip().lower()


# Multiaddr protocols this node understands, with a check of their value (None:
# the protocol takes no value). Parsed here, textually, so that loading a config
# does not import libp2p; the p2p module parses them again for real.
_B58_RE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,128}$")
_DNS_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


def _is_ip(v: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(v).version == version
    except ValueError:
        return False


def _is_ip4(v: str) -> bool:
    return _is_ip(v, 4)


def _is_ip6(v: str) -> bool:
    return _is_ip(v, 6)


def _is_port(v: str) -> bool:
    return v.isdigit() and int(v) <= 65535


_MA_PROTOCOLS: dict[str, Any] = {
    "ip4": _is_ip4,
    "ip6": _is_ip6,
    "dns": _DNS_RE.match,
    "dns4": _DNS_RE.match,
    "dns6": _DNS_RE.match,
    "dnsaddr": _DNS_RE.match,
    "tcp": _is_port,
    "udp": _is_port,
    "p2p": _B58_RE.match,
    "ipfs": _B58_RE.match,
    "quic": None,
    "quic-v1": None,
    "ws": None,
    "wss": None,
    "tls": None,
    "noise": None,
    "p2p-circuit": None,
}
_MA_HOSTS = frozenset({"ip4", "ip6", "dns", "dns4", "dns6", "dnsaddr"})


def _parse_multiaddr(text: str) -> list[tuple[str, str | None]]:
    """``/ip4/1.2.3.4/tcp/1`` -> ``[("ip4", "1.2.3.4"), ("tcp", "1")]``."""
    if not text.startswith("/") or text.endswith("/"):
        raise ValueError
    parts = text[1:].split("/")
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(parts):
        proto = parts[i]
        if proto not in _MA_PROTOCOLS:
            raise ValueError
        check = _MA_PROTOCOLS[proto]
        if check is None:
            out.append((proto, None))
            i += 1
            continue
        if i + 1 >= len(parts) or not check(parts[i + 1]):
            raise ValueError
        out.append((proto, parts[i + 1]))
        i += 2
    return out


class _ListenAddr(_Kind):
    expected = "a TCP multiaddr such as /ip4/0.0.0.0/tcp/4101"

    def from_toml(self, value: object) -> str:
        if type(value) is not str:
            raise _Bad
        try:
            parts = _parse_multiaddr(value.strip())
        except ValueError:
            raise _Bad(value) from None
        protos = [p for p, _ in parts]
        if protos[0] not in _MA_HOSTS or "tcp" not in protos or "p2p" in protos:
            raise _Bad(value)
        return value.strip()


class _PeerAddr(_Kind):
    expected = (
        "a multiaddr ending in /p2p/<peer id>, such as /ip4/203.0.113.5/tcp/4101/p2p/12D3KooW..."
    )

    def from_toml(self, value: object) -> str:
        if type(value) is not str:
            raise _Bad
        try:
            parts = _parse_multiaddr(value.strip())
        except ValueError:
            raise _Bad(value) from None
        if parts[0][0] not in _MA_HOSTS or parts[-1][0] not in ("p2p", "ipfs"):
            raise _Bad(value)
        return value.strip()


class _HostPort(_Kind):
    """``host:port``, IPv6 hosts in brackets (``[::1]:8645``); port 0 picks one."""

    expected = 'a "host:port" address such as 127.0.0.1:8646 or [::1]:8646'

    def from_toml(self, value: object) -> str:
        if type(value) is not str:
            raise _Bad
        host, sep, port = value.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            if not _is_ip6(host[1:-1]):
                raise _Bad(value)
        elif not host or ":" in host or not _Host._RE.match(host):
            raise _Bad(value)
        if not sep or not _is_port(port):
            raise _Bad(value)
        return f"{host}:{int(port)}"


def split_host_port(address: str) -> tuple[str, int]:
    """``"[::1]:8645"`` -> ``("::1", 8645)``, for a value :class:`_HostPort` accepted."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _List(_Kind):
    """A list of ``item``; duplicates are dropped (first one kept), so a
    repeated address or economy is not dialled or subscribed twice."""

    def __init__(self, item: _Kind, what: str) -> None:
        self.item = item
        self.expected = f"a list of {what}"

    def from_toml(self, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Bad
        out: list[Any] = []
        for v in value:
            try:
                parsed = self.item.from_toml(v)
            except _Bad as exc:
                raise _Bad(v if exc.got is MISSING else exc.got, self.item.expected) from None
            if parsed not in out:
                out.append(parsed)
        return tuple(out)

    def from_text(self, text: str) -> tuple[Any, ...]:
        t = text.strip()
        if t.startswith("["):
            try:
                value = tomllib.loads(f"v = {t}")["v"]
            except tomllib.TOMLDecodeError:
                raise _Bad from None
            return self.from_toml(value)
        return self.from_toml([p.strip() for p in t.split(",") if p.strip()])

    def render(self, value: Any) -> str:
        return "[" + ", ".join(self.item.render(v) for v in value) + "]"


def _toml_str(s: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(s, ensure_ascii=False)


# -- the settings -------------------------------------------------------------------


def _meta(kind: _Kind, doc: str, *, relative_to_source: bool = False) -> dict[str, Any]:
    """A setting's declaration: its kind, its one-line doc, and whether a
    relative path is resolved against the folder of the file it comes from."""
    return {"kind": kind, "doc": doc, "relative_to_source": relative_to_source}


def _setting(default: Any, kind: _Kind, doc: str) -> Any:
    """A dataclass field for an immutable default (str, int, float, bool, tuple)."""
    return field(default=default, metadata=_meta(kind, doc))


def _absolute(p: Path) -> Path:
    p = p.expanduser()
    return p if p.is_absolute() else Path.cwd() / p


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """[node]: where the node keeps its data and key, and how much it logs."""

    datadir: Path = field(
        default=Path(DEFAULT_DATADIR),
        metadata=_meta(
            _Path(),
            "where the node keeps its key, store and state (relative: next to this file)",
            relative_to_source=True,
        ),
    )
    log_level: str = _setting(
        "info", _Choice("debug", "info", "warning", "error"), "debug, info, warning or error"
    )
    key_file: Path = field(
        default=Path("node.key"),
        metadata=_meta(_Path(), "the node's Ed25519 key file (relative: inside datadir)"),
    )
    passphrase_file: Path | None = field(
        default=None,
        metadata=_meta(
            _Path(optional=True),
            'file holding the node key\'s passphrase; "" = the key is not encrypted',
            relative_to_source=True,
        ),
    )

    def __post_init__(self) -> None:
        # Normalise to absolute paths so every consumer sees the same files
        # whatever the working directory later becomes.
        datadir = _absolute(self.datadir)
        object.__setattr__(self, "datadir", datadir)
        # An absolute key_file stays as is: datadir / "/abs" == "/abs".
        object.__setattr__(self, "key_file", datadir / self.key_file.expanduser())
        if self.passphrase_file is not None:
            object.__setattr__(self, "passphrase_file", _absolute(self.passphrase_file))


@dataclass(frozen=True, slots=True)
class P2PConfig:
    """[p2p]: libp2p addresses, discovery and gossip batching."""

    listen: tuple[str, ...] = _setting(
        ("/ip4/0.0.0.0/tcp/4101",), _List(_ListenAddr(), "TCP multiaddrs"), "addresses to listen on"
    )
    bootstrap: tuple[str, ...] = _setting(
        (),
        _List(_PeerAddr(), "multiaddrs ending in /p2p/<peer id>"),
        "peers to dial at start, as multiaddrs ending in /p2p/<peer id>",
    )
    mdns: bool = _setting(False, _Bool(), "discover peers on the local network with mDNS")
    # 250 ms, not "a few tens": certification does not wait for gossip (the
    # submitter holds the certificate first), but every gossip message costs
    # each peer milliseconds of CPU per copy received, in a full mesh up to
    # one copy per peer. Measured on the devnet bench (6 processes, 2 cores):
    # 25 ms -> 150 certified/s, 250 ms -> 220/s; followers lag ~0.5 s.
    gossip_flush_ms: int = _setting(
        250,
        _Int(1, 1000),
        "send a gossip batch at most this many milliseconds after its first item",
    )
    gossip_max_batch_bytes: int = _setting(
        256 * KiB,
        _Int(1 * KiB, 1 * MiB),
        "send a gossip batch once it holds this many bytes (1 KiB..1 MiB)",
    )
    max_frame_bytes: int = _setting(
        4 * MiB,
        _Int(64 * KiB, 64 * MiB),
        "largest stream-protocol frame accepted or sent, in bytes (64 KiB..64 MiB)",
    )
    request_timeout_s: float = _setting(
        10.0, _Positive(), "seconds to wait for a reply on a stream protocol (and for a dial)"
    )
    announce: tuple[str, ...] = _setting(
        (),
        _List(_ListenAddr(), "TCP multiaddrs"),
        "addresses peers should dial instead of the listen addresses (a port forward, a proxy); "
        "empty: the listen addresses",
    )
    heartbeat_interval_s: float = _setting(
        1.0,
        _Seconds(0.1, 60.0),
        "gossipsub heartbeat: mesh upkeep and IHAVE gossip to peers outside the mesh",
    )
    # A network cut leaves TCP connections "established" for minutes; only a
    # ping that goes unanswered shows one is dead (p2p.py, bug 22).
    ping_interval_s: float = _setting(
        5.0, _Seconds(0.1, 3600.0), "seconds between pings on each peer connection"
    )
    ping_timeout_s: float = _setting(
        10.0,
        _Seconds(0.1, 3600.0),
        "a connection that answers no ping for this long is closed and redialled",
    )
    redial_max_backoff_s: float = _setting(
        10.0,
        _Seconds(0.1, 3600.0),
        "longest wait between dials of an unreachable peer (the wait doubles from 1 s)",
    )


@dataclass(frozen=True, slots=True)
class ValidatorConfig:
    """[validator]: whether this node votes."""

    enabled: bool = _setting(
        True,
        _Bool(),
        "vote for every followed economy whose genesis names this node's key as a validator",
    )


@dataclass(frozen=True, slots=True)
class SubmitConfig:
    """[submit]: how this node gathers votes for the entries wallets submit."""

    retry_deadline_s: float = _setting(
        60.0,
        _Positive(),
        "seconds to keep asking again after refusals that depend on the validators' state "
        "(missing, insufficient_balance, not_member, clock_skew) before refusing as not final",
    )


@dataclass(frozen=True, slots=True)
class EconomiesConfig:
    """[economies]: which economies this node stores and gossips."""

    follow: tuple[str, ...] = _setting(
        (),
        _List(_HexId(), "64-character hex economy ids"),
        "economy ids (64 hex characters) to follow",
    )


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """[sync]: catching up with peers."""

    interval_s: float = _setting(30.0, _Positive(), "seconds between head exchanges with peers")
    batch: int = _setting(512, _Int(1, 65536), "certificates per sync response")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """[store]: the LMDB store."""

    map_size_mb: int = _setting(
        64, _Int(1, 1024), "initial LMDB map size in MiB (at most 1024, valid on 32-bit systems)"
    )
    max_map_size_mb: int = _setting(
        _MAP_MB_CAP_32BIT,
        _Int(1, _MAX_MAP_MB_LIMIT),
        "the map grows on demand up to this many MiB (at most 1536 on 32-bit systems)",
    )
    sync: bool = _setting(True, _Bool(), "fsync on every commit (keep true unless testing)")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint."""

    enabled: bool = _setting(True, _Bool(), "serve Prometheus metrics at http://host:port/metrics")
    host: str = _setting("127.0.0.1", _Host(), "address the metrics endpoint listens on")
    port: int = _setting(9464, _Int(0, 65535), "port of the metrics endpoint (0: any free port)")


@dataclass(frozen=True, slots=True)
class RpcConfig:
    """[rpc]: the local JSON-RPC API for wallets (docs/rpc.md)."""

    enabled: bool = _setting(
        True, _Bool(), "serve the JSON-RPC API (HTTP POST / and WebSocket /ws)"
    )
    host: str = _setting("127.0.0.1", _Host(), "address the JSON-RPC API listens on")
    port: int = _setting(8645, _Int(0, 65535), "port of the JSON-RPC API (0: any free port)")
    unix_socket: bool = _setting(
        True, _Bool(), "also listen on the unix socket <datadir>/rpc.sock (mode 0600)"
    )
    extra_bind: tuple[str, ...] = _setting(
        (),
        _List(_HostPort(), '"host:port" addresses'),
        'more "host:port" addresses to listen on ("[::1]:8645" for IPv6); needs rpc.auth',
    )
    auth: bool = _setting(
        True,
        _Bool(),
        "require the cookie in <datadir>/.cookie on every request (false: loopback use only)",
    )
    max_request_bytes: int = _setting(
        1 * MiB,
        _Int(1 * KiB, 64 * MiB),
        "largest request body or WebSocket message, in bytes (1 KiB..64 MiB)",
    )
    max_batch: int = _setting(100, _Int(1, 10_000), "most requests in one JSON-RPC batch")
    max_page: int = _setting(
        500, _Int(1, 100_000), "most items one account_history call returns (its limit)"
    )
    max_connections: int = _setting(
        64,
        _Int(1, 65_536),
        "most HTTP requests being served plus WebSockets open at once; more get HTTP 503",
    )
    unix_reserve: int = _setting(
        8,
        _Int(0, 65_536),
        "more of them kept for the unix socket, so a local wallet is answered while TCP "
        "clients hold all max_connections",
    )
    max_connections_per_address: int = _setting(
        16,
        _Int(1, 65_536),
        "most TCP connections (idle ones too) open at once from one address other than "
        "loopback; more are answered HTTP 503 and closed",
    )
    header_timeout_s: float = _setting(
        5.0,
        _Positive(),
        "seconds a connection may take to send a request's headers; also how long an idle "
        "keep-alive connection stays open",
    )
    body_timeout_s: float = _setting(
        10.0,
        _Positive(),
        "seconds a request body may take to arrive once its headers have; then HTTP 408",
    )
    ws_idle_timeout_s: float = _setting(
        60.0,
        _Positive(),
        "a WebSocket without subscriptions that sends no message for this many seconds is closed",
    )
    max_subscriptions: int = _setting(
        256, _Int(1, 1_000_000), "most subscriptions one WebSocket may hold at once"
    )


@dataclass(frozen=True, slots=True)
class SensorsConfig:
    """[sensors]: device readings: the LAN-facing ingest and their attestation (docs/sensors.md)."""

    enabled: bool = _setting(
        False,
        _Bool(),
        "accept signed readings from devices this node hosts (HTTP POST /v1/readings)",
    )
    host: str = _setting(
        "0.0.0.0", _Host(), "address the ingest listens on (devices on the LAN reach it)"
    )
    port: int = _setting(8647, _Int(0, 65535), "port of the ingest (0: any free port)")
    max_clock_skew_s: int = _setting(
        300,
        _Int(1, 7 * 86_400),
        "refuse a reading timestamped more than this many seconds ahead of this node's clock",
    )
    max_batch: int = _setting(256, _Int(1, 65_536), "most readings in one request")
    max_body_bytes: int = _setting(
        256 * KiB, _Int(1 * KiB, 64 * MiB), "largest request body, in bytes (1 KiB..64 MiB)"
    )
    max_connections: int = _setting(
        64,
        _Int(1, 65_536),
        "most connections (idle ones too) open at once; more are answered HTTP 503 and closed",
    )
    max_connections_per_address: int = _setting(
        8,
        _Int(1, 65_536),
        "most connections open at once from one IP address; more are answered HTTP 503 and closed",
    )
    header_timeout_s: float = _setting(
        5.0,
        _Positive(),
        "seconds a connection may take to send a request's headers; also how long an idle "
        "keep-alive connection stays open",
    )
    body_timeout_s: float = _setting(
        10.0,
        _Positive(),
        "seconds a request body may take to arrive once its headers have; then HTTP 408",
    )
    rate_per_device: float = _setting(
        10.0,
        _Positive(),
        "readings per second one device may send (a token bucket holding max_batch readings)",
    )
    rate_per_address: float = _setting(
        200.0,
        _Positive(),
        "readings per second one IP address may send (a token bucket holding max_batch readings)",
    )
    attest_interval_s: float = _setting(
        60.0, _Positive(), "seconds between attestations of the readings received"
    )
    attest_max_readings: int = _setting(
        4096,
        _Int(1, 60_000),
        "attest as soon as this many readings wait, and at most this many per batch",
    )
    retention_days: int = _setting(
        30,
        _Int(1, 36_500),
        "delete readings received more than this many days ago (attestations stay)",
    )


# -- [compute]: the job runner (node/compute/, docs/compute-runner.md) ------------------------
#
# A runtime is a table of its own ([compute.runtimes.NAME]), so the setting
# ``compute.runtimes`` is a table of tables: _Runtimes parses each runtime's
# keys with the kinds declared on RuntimeConfig's fields, naming the key
# inside the table in errors (``compute.runtimes.py.command: ...``).

# At most 32 bytes: the name goes into signed offers (protocol/offers.py).
_RUNTIME_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
#: A ledger amount, in an economy's minor units (prices, the credit window).
_AMOUNT = _Int(0, (1 << 63) - 1)
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_USER_RE = re.compile(r"^([a-z_][a-z0-9_-]{0,31}\$?|[0-9]{1,10})$")


class _Argv(_Kind):
    """A command as an argv list whose first item is an absolute path: never
    a shell string (nothing is ever parsed by a shell), and no PATH lookup
    (the operator names exactly which program runs)."""

    expected = 'an argv list such as ["/usr/bin/python3", "-I", "job.py"] (never a shell string)'

    def from_toml(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not value:
            raise _Bad
        for v in value:
            if type(v) is not str or not v or "\0" in v:
                raise _Bad(v)
        if not value[0].startswith("/"):
            raise _Bad(value[0], "an absolute path as the argv's first item (no PATH lookup)")
        return tuple(value)

    def render(self, value: Any) -> str:
        return "[" + ", ".join(_toml_str(v) for v in value) + "]"


class _Env(_Kind):
    """Environment variables a runtime adds to the job's minimal environment."""

    expected = 'a table of environment variables such as { LANG = "C.UTF-8" }'

    def from_toml(self, value: object) -> tuple[tuple[str, str], ...]:
        if isinstance(value, dict):
            pairs: list[object] = list(value.items())
        elif isinstance(value, tuple):  # the parsed form, when built in code
            pairs = list(value)
        else:
            raise _Bad
        out: dict[str, str] = {}
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise _Bad
            k, v = pair
            if type(k) is not str or not _ENV_NAME_RE.match(k):
                raise _Bad(k, "environment variable names of letters, digits and _")
            if type(v) is not str or "\0" in v:
                raise _Bad(v, "string values")
            out[k] = v
        return tuple(sorted(out.items()))

    def render(self, value: Any) -> str:
        return "{" + ", ".join(f"{k} = {_toml_str(v)}" for k, v in value) + "}"


class _FileName(_Kind):
    expected = "a plain file name (letters, digits, . _ -; no /)"

    def from_toml(self, value: object) -> str:
        if type(value) is not str or not _FILE_NAME_RE.match(value):
            raise _Bad
        return value


class _User(_Kind):
    expected = "a user name or numeric uid other than root"

    def from_toml(self, value: object) -> str:
        if type(value) is int and not isinstance(value, bool):
            value = str(value)
        if type(value) is not str or not _USER_RE.match(value.strip()):
            raise _Bad
        name = value.strip()
        if name == "root" or (name.isdigit() and int(name) == 0):
            raise _Bad(value, "a user other than root (jobs never run as root)")
        return name


class _RuntimeError(ValueError):
    """A :class:`RuntimeConfig` field that is not valid: which, what it held
    and what was expected."""

    def __init__(self, name: str, got: object, expected: str) -> None:
        super().__init__(f"{name}: expected {expected}, got {_short(got)}")
        self.name, self.got, self.expected = name, got, expected


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """[compute.runtimes.NAME]: one runtime this node offers: the command it
    runs, its limits and how a job's input and output pass.

    A consumer names the runtime and sends bounded input bytes; nothing else
    it sends reaches the command line or the environment.
    """

    name: str
    command: tuple[str, ...] = field(
        metadata=_meta(_Argv(), "the program and its arguments, as an argv list (required)")
    )
    env: tuple[tuple[str, str], ...] = _setting(
        (), _Env(), "environment variables added to the job's minimal environment"
    )
    max_cpu_s: float = _setting(
        60.0, _Seconds(0.001, 30 * 86_400.0), "CPU seconds a job may use (all its processes)"
    )
    max_wall_s: float = _setting(
        300.0, _Seconds(0.001, 30 * 86_400.0), "seconds a job may run (time frozen not counted)"
    )
    memory_mib: int = _setting(
        256, _Int(1, 1 << 20), "memory reserved for a job, in MiB (billed as MiB x wall time)"
    )
    max_input_bytes: int = _setting(
        1 * MiB, _Int(0, 1024 * MiB), "largest input a job accepts, in bytes"
    )
    max_output_bytes: int = _setting(
        1 * MiB, _Int(0, 1024 * MiB), "output kept, in bytes; more is cut off and flagged"
    )
    max_stderr_bytes: int = _setting(
        64 * KiB, _Int(0, 64 * MiB), "standard error kept, in bytes; more is cut off and flagged"
    )
    max_file_bytes: int = _setting(
        64 * MiB,
        _Int(1 * KiB, 1024 * 1024 * MiB),
        "largest file a job's process may write (RLIMIT_FSIZE), in bytes",
    )
    input: str = _setting(
        "stdin", _Choice("stdin", "file"), "how the input passes: stdin, or file (input_file)"
    )
    output: str = _setting(
        "stdout",
        _Choice("stdout", "file"),
        "where the output is read: stdout, or file (output_file)",
    )
    input_file: str = _setting(
        "input", _FileName(), "with input = file: its name in the job's work directory"
    )
    output_file: str = _setting(
        "output", _FileName(), "with output = file: its name in the job's work directory"
    )
    # The prices in offers (protocol/pricing.py), in the minor units of the
    # economy the offer is for: a provider offers every followed economy the
    # same integers.
    fee: int = _setting(0, _AMOUNT, "price of a job, charged once at its start (minor units)")
    per_cpu_ms: int = _setting(0, _AMOUNT, "price of a CPU millisecond (minor units)")
    per_mib_s: int = _setting(0, _AMOUNT, "price of a reserved MiB for a second (minor units)")
    per_wall_s: int = _setting(0, _AMOUNT, "price of a second of running time (minor units)")

    def __post_init__(self) -> None:
        # Validated when built, in code as from a file: the loader names the
        # whole key, code gets a _RuntimeError (a ValueError) naming the field.
        if type(self.name) is not str or not _RUNTIME_NAME_RE.match(self.name):
            raise _RuntimeError("name", self.name, _Runtimes.name_expected)
        for f in fields(self):
            kind = f.metadata.get("kind")
            if kind is None:
                continue
            try:
                value = kind.from_toml(getattr(self, f.name))
            except _Bad as exc:
                got = getattr(self, f.name) if exc.got is MISSING else exc.got
                raise _RuntimeError(f.name, got, exc.expected or kind.expected) from None
            object.__setattr__(self, f.name, value)
        if self.input == "file" and self.output == "file" and self.input_file == self.output_file:
            raise _RuntimeError("output_file", self.output_file, "a name other than input_file's")

    @property
    def max_cpu_ms(self) -> int:
        return max(1, round(self.max_cpu_s * 1000))

    @property
    def max_wall_ms(self) -> int:
        return max(1, round(self.max_wall_s * 1000))


_RUNTIME_FIELDS = {f.name: f for f in fields(RuntimeConfig) if "kind" in f.metadata}


class _Runtimes(_Kind):
    """``compute.runtimes``: a table of runtime tables, keyed by name."""

    expected = "a table of runtimes, [compute.runtimes.NAME] with at least command"
    name_expected = "a runtime name of lowercase letters, digits, . _ - (at most 32)"

    def from_toml(self, value: object) -> tuple[RuntimeConfig, ...]:
        if not isinstance(value, dict):
            raise _Bad
        out: list[RuntimeConfig] = []
        for name, table in value.items():
            if not _RUNTIME_NAME_RE.match(name):
                raise _Bad(name, self.name_expected, at=f".{name}")
            if not isinstance(table, dict):
                raise _Bad(table, "a table [compute.runtimes.NAME]", at=f".{name}")
            kwargs: dict[str, Any] = {}
            for key, raw in table.items():
                f = _RUNTIME_FIELDS.get(key)
                at = f".{name}.{key}"
                if f is None:
                    close = difflib.get_close_matches(key, list(_RUNTIME_FIELDS), n=1, cutoff=0.6)
                    hint = f" (did you mean compute.runtimes.{name}.{close[0]}?)" if close else ""
                    raise _Bad(at=at, unknown=hint)
                kind: _Kind = f.metadata["kind"]
                try:
                    kwargs[key] = kind.from_toml(raw)
                except _Bad as exc:
                    got = raw if exc.got is MISSING else exc.got
                    raise _Bad(got, exc.expected or kind.expected, at=at) from None
            if "command" not in kwargs:
                raise _Bad(expected=_Argv.expected, at=f".{name}.command", missing=True)
            try:
                out.append(RuntimeConfig(name=name, **kwargs))
            except _RuntimeError as exc:  # a rule relating two keys
                raise _Bad(exc.got, exc.expected, at=f".{name}.{exc.name}") from None
        return tuple(out)

    def from_text(self, text: str) -> tuple[RuntimeConfig, ...]:
        # The environment and --set give a TOML inline table:
        # '{ py = { command = ["/usr/bin/python3", "-I", "-"] } }'
        if not text.strip():
            return ()
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise _Bad from None
        return self.from_toml(value)

    def render(self, value: Any) -> str:
        tables = []
        for rt in value:
            items = [
                f"{key} = {f.metadata['kind'].render(getattr(rt, key))}"
                for key, f in _RUNTIME_FIELDS.items()
            ]
            tables.append(f"{rt.name} = {{ {', '.join(items)} }}")
        return "{" + ", ".join(tables) + "}"


@dataclass(frozen=True, slots=True)
class ComputeConfig:
    """[compute]: jobs this node runs for others, metered from the OS (docs/compute-runner.md)."""

    enabled: bool = _setting(False, _Bool(), "run compute jobs for consumers")
    user: str = _setting(
        "nobody",
        _User(),
        "user jobs run as when the node runs as root (never root); a node not running as "
        "root runs jobs as itself, and then this must name the node's own user",
    )
    work_dir: Path | None = field(
        default=None,
        metadata=_meta(
            _Path(optional=True),
            'where each job gets its private directory (removed after); "" = a fresh '
            "directory under the system's temporary directory",
            relative_to_source=True,
        ),
    )
    metering: str = _setting(
        "auto",
        _Choice("auto", "cgroup", "shim"),
        "auto (cgroup when a writable cgroup v2 is delegated to the node, else shim), "
        "cgroup or shim",
    )
    cgroup: Path | None = field(
        default=None,
        metadata=_meta(
            _Path(optional=True),
            'the cgroup v2 directory delegated to the node; "" = the node\'s own cgroup',
        ),
    )
    # 1: jobs running at once share the job user, so they could see each
    # other's files and processes (docs/compute-runner.md, "Isolation").
    max_jobs: int = _setting(
        1,
        _Int(1, 1024),
        "most jobs running at once; more are refused (jobs at once share the job user)",
    )
    poll_interval_s: float = _setting(
        0.25,
        _Seconds(0.01, 10.0),
        "seconds between reads of a running job's usage (to enforce its CPU limit)",
    )
    runtimes: tuple[RuntimeConfig, ...] = _setting(
        (),
        _Runtimes(),
        "runtimes offered: write them as [compute.runtimes.NAME] tables instead of this line "
        "(keys below; configs/README.md)",
    )
    # The provider's offers and terms (node/compute/service.py, docs/compute.md).
    credit_window: int = _setting(
        1000,
        _AMOUNT,
        "most unpaid value (minor units) a job may run up before it is frozen until paid",
    )
    grace_s: float = _setting(
        10.0, _Seconds(0.001, 300.0), "seconds a frozen job waits for payment before it is killed"
    )
    offer_ttl_s: float = _setting(
        3600.0, _Seconds(60.0, 86_400.0), "seconds an offer is valid from when it is signed"
    )
    offer_interval_s: float = _setting(
        600.0,
        _Seconds(0.1, 86_400.0),
        "seconds between two gossips of this node's offers (less than offer_ttl_s)",
    )
    close_margin_s: float = _setting(
        300.0,
        _Seconds(1.0, 86_400.0),
        "seconds a channel must outlast a job's wall limit for this node to take the job "
        "(time to close it before it expires)",
    )
    final_voucher_s: float = _setting(
        10.0,
        _Seconds(0.001, 3600.0),
        "seconds to wait after a job ended for the consumer's final voucher before closing",
    )
    max_jobs_per_peer: int = _setting(
        1, _Int(1, 1024), "most jobs one peer may have running here at once"
    )
    max_relayed_jobs: int = _setting(
        64,
        _Int(1, 4096),
        "most jobs this node relays for its wallets at once (compute_job_start); "
        "relaying needs no runtime and works with enabled = false",
    )

    def __post_init__(self) -> None:
        if self.work_dir is not None:
            object.__setattr__(self, "work_dir", _absolute(self.work_dir))
        if self.cgroup is not None:
            object.__setattr__(self, "cgroup", _absolute(self.cgroup))

    def runtime(self, name: str) -> RuntimeConfig | None:
        """The runtime called ``name``, or None."""
        for rt in self.runtimes:
            if rt.name == name:
                return rt
        return None

    @staticmethod
    def example() -> str:
        """The commented runtime table the default file shows after [compute]."""
        lines = [
            "# A runtime (repeat per runtime; NAME: lowercase letters, digits, . _ -):",
            "# [compute.runtimes.NAME]",
        ]
        for key, f in _RUNTIME_FIELDS.items():
            value = ("/usr/bin/python3", "-I", "-") if f.default is MISSING else f.default
            lines.append(f"#   # {f.metadata['doc']}")
            lines.append(f"#   {key} = {f.metadata['kind'].render(value)}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole node configuration; every path in it is absolute.

    ``source`` is the file it was loaded from (not part of equality).
    """

    node: NodeConfig = field(default_factory=NodeConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    submit: SubmitConfig = field(default_factory=SubmitConfig)
    economies: EconomiesConfig = field(default_factory=EconomiesConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    source: Path | None = field(default=None, compare=False)


def _sections() -> dict[str, type]:
    out: dict[str, type] = {}
    for f in fields(Config):
        if f.default_factory is not MISSING:
            assert isinstance(f.default_factory, type)  # every section's dataclass
            out[f.name] = f.default_factory
    return out


# Section name -> dataclass, in file order.
_SECTIONS = _sections()

#: Every setting's default, declared once (above, in each section's
#: ``_setting``): the daemon's ``NodeSettings`` and the services' own keyword
#: defaults read them here, so a measured default (say the 250 ms gossip
#: flush) changes in one place.
DEFAULTS = Config()
_FIELDS: dict[str, dict[str, Any]] = {
    name: {f.name: f for f in fields(cls)} for name, cls in _SECTIONS.items()
}
_ALL_KEYS = [f"{s}.{k}" for s, keys in _FIELDS.items() for k in keys]


def env_var_name(key: str) -> str:
    """``"p2p.listen"`` -> ``"MYCELIA_P2P__LISTEN"``."""
    section, _, name = key.partition(".")
    return f"{ENV_PREFIX}{section.upper()}__{name.upper()}"


def default_config_path() -> Path:
    """Where ``mycelia init`` puts the config by default (inside the default
    datadir); the CLI reads it when no ``--config`` is given and it exists."""
    return Path(DEFAULT_DATADIR).expanduser() / CONFIG_FILE_NAME


# -- loading --------------------------------------------------------------------------


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _short(value: object) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


class _Layer:
    """One source of values: how to name it in errors and where relative
    paths from it are resolved."""

    def __init__(self, where: str, base: Path) -> None:
        self.where = where  # completes "... (in X)" / "... (from X)"
        self.base = base


def _put(
    values: dict[str, dict[str, Any]],
    section: str,
    key: str,
    raw: object,
    layer: _Layer,
    *,
    text: bool,
) -> None:
    f = _FIELDS[section][key]
    kind: _Kind = f.metadata["kind"]
    try:
        # Text (the environment, --set) is a str; TOML is whatever the file holds.
        value = kind.from_text(raw) if text and isinstance(raw, str) else kind.from_toml(raw)
    except _Bad as exc:
        name = f"{section}.{key}{exc.at}"
        if exc.unknown is not None:
            raise ConfigError(f"unknown key {name} {layer.where}{exc.unknown}", key=name) from None
        got = raw if exc.got is MISSING else exc.got
        expected = exc.expected or kind.expected
        said = "nothing" if exc.missing else _short(got)
        raise ConfigError(
            f"{name}: expected {expected}, got {said} ({layer.where})", key=name
        ) from None
    if f.metadata["relative_to_source"] and isinstance(value, Path) and not value.is_absolute():
        value = layer.base / value
    values[section][key] = value


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except PermissionError:
        raise ConfigError(f"cannot read config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot parse config file {path}: not UTF-8 text") from None


def _apply_file(doc: dict[str, Any], path: Path, values: dict[str, dict[str, Any]]) -> None:
    layer = _Layer(f"in {path}", path.parent)
    for section, table in doc.items():
        if section not in _SECTIONS:
            if not isinstance(table, dict):
                raise ConfigError(
                    f"unknown key {section} in {path}: settings belong in a section "
                    f"such as [node]{_did_you_mean(section, _ALL_KEYS)}",
                    key=section,
                )
            close = difflib.get_close_matches(section, list(_SECTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean [{close[0]}]?)" if close else ""
            raise ConfigError(f"unknown section [{section}] in {path}{hint}", key=section)
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table [{section}] in {path}", key=section)
        for key, raw in table.items():
            if key not in _FIELDS[section]:
                name = f"{section}.{key}"
                hint = _did_you_mean(name, _ALL_KEYS)
                raise ConfigError(f"unknown key {name} in {path}{hint}", key=name)
            _put(values, section, key, raw, layer, text=False)


def _apply_env(env: Mapping[str, str], values: dict[str, dict[str, Any]]) -> None:
    layer_base = Path.cwd()
    known = {env_var_name(k): k for k in _ALL_KEYS}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        key = known.get(var.upper())
        if key is None:
            hint = _did_you_mean(var.upper(), list(known))
            raise ConfigError(f"unknown environment variable {var}{hint}", key=var)
        section, _, name = key.partition(".")
        _put(values, section, name, env[var], _Layer(f"from {var}", layer_base), text=True)


def _apply_overrides(overrides: Mapping[str, str], values: dict[str, dict[str, Any]]) -> None:
    layer = _Layer("from --set", Path.cwd())
    for name, raw in overrides.items():
        section, dot, key = name.strip().partition(".")
        if not dot or not section or not key:
            raise ConfigError(f"bad override {name!r}: expected section.key=value", key=name)
        if section not in _FIELDS or key not in _FIELDS[section]:
            full = f"{section}.{key}"
            hint = _did_you_mean(full, _ALL_KEYS)
            raise ConfigError(f"unknown key {full} in --set{hint}", key=full)
        if not isinstance(raw, str):
            raise ConfigError(f"{name}: override values are strings, got {_short(raw)}", key=name)
        _put(values, section, key, raw, layer, text=True)


def _check_together(cfg: Config) -> None:
    """Rules that relate two settings."""
    if cfg.store.map_size_mb > cfg.store.max_map_size_mb:
        raise ConfigError(
            f"store.map_size_mb: expected at most store.max_map_size_mb "
            f"({cfg.store.max_map_size_mb}), got {cfg.store.map_size_mb}",
            key="store.map_size_mb",
        )
    # A gossip batch is also what a sync response or a re-sent batch may carry
    # over a stream, so it must fit in one frame.
    if cfg.p2p.gossip_max_batch_bytes > cfg.p2p.max_frame_bytes:
        raise ConfigError(
            f"p2p.gossip_max_batch_bytes: expected at most p2p.max_frame_bytes "
            f"({cfg.p2p.max_frame_bytes}), got {cfg.p2p.gossip_max_batch_bytes}",
            key="p2p.gossip_max_batch_bytes",
        )
    if cfg.compute.offer_interval_s >= cfg.compute.offer_ttl_s:
        raise ConfigError(
            f"compute.offer_interval_s: expected less than compute.offer_ttl_s "
            f"({cfg.compute.offer_ttl_s:g}), got {cfg.compute.offer_interval_s:g}",
            key="compute.offer_interval_s",
        )
    check_rpc(cfg.rpc)


def check_rpc(rpc: RpcConfig) -> None:
    """Refuse an RPC open beyond this machine without auth: anyone who can
    reach an extra address could spend from nothing less than the node's API.
    (Also called by the RPC server, for a config built in code.)"""
    if rpc.extra_bind and not rpc.auth:
        raise ConfigError(
            f"rpc.extra_bind: listening on {', '.join(rpc.extra_bind)} needs rpc.auth = true "
            "(the cookie); set rpc.auth = true or remove rpc.extra_bind",
            key="rpc.extra_bind",
        )


def load_config(
    path: Path | str | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Load the configuration: defaults < ``path`` (TOML) < ``env`` < ``overrides``.

    ``path`` None means no file. ``env`` None means ``os.environ``; pass ``{}``
    to ignore the environment. ``overrides`` maps ``"section.key"`` to a
    string value. Raises :class:`ConfigError` naming the key on any unknown
    key or bad value.
    """
    values: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    source: Path | None = None
    if path is not None:
        source = Path(path).expanduser().absolute()
        _apply_file(_read_file(source), source, values)
    _apply_env(os.environ if env is None else env, values)
    _apply_overrides(overrides or {}, values)
    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    cfg = Config(**sections, source=source)
    _check_together(cfg)
    return cfg


# -- the commented default file -----------------------------------------------------------

_HEADER = """\
# mycelia node configuration.
#
# Every key is listed with its default. Any key can also be set by an
# environment variable MYCELIA_<SECTION>__<KEY> (e.g. MYCELIA_P2P__LISTEN) or
# on the command line with --set section.key=value. Precedence:
#   defaults < this file < environment < command line.
# An unknown key or a bad value is an error that names it.
"""


def default_toml(
    *, datadir: Path | str | None = None, passphrase_file: Path | str | None = None
) -> str:
    """A commented config with every key at its default (``load_config`` of
    it equals the defaults), optionally with ``node.datadir`` and
    ``node.passphrase_file`` filled in, as ``mycelia init`` writes it."""
    given: dict[str, Any] = {
        "node.datadir": None if datadir is None else Path(datadir),
        "node.passphrase_file": None if passphrase_file is None else Path(passphrase_file),
    }
    lines = [_HEADER]
    for section, cls in _SECTIONS.items():
        # The class docstring's first line is "[section]: what it is for."
        summary = (cls.__doc__ or "").strip().splitlines()[0].partition(": ")[2]
        lines.append(f"# {summary}")
        lines.append(f"[{section}]")
        for key, f in _FIELDS[section].items():
            value = given.get(f"{section}.{key}")
            if value is None:
                value = f.default
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{key} = {f.metadata['kind'].render(value)}")
        if cls is ComputeConfig:
            lines.append(ComputeConfig.example())
        lines.append("")
    return "\n".join(lines)
