"""Config loading: defaults, layering, parsing, and errors that name the key."""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from pathlib import Path

import pytest

from mycelia.node.config import (
    Config,
    ConfigError,
    NodeConfig,
    default_toml,
    env_var_name,
    load_config,
)

REPO = Path(__file__).resolve().parents[2]
PEER = "12D3KooWAtKrXBFKRNE4pQnnjUNod1zaePLMyWHSiWu2GNmvW2YL"
ECON = "ab" * 32


def write(tmp_path: Path, text: str, name: str = "mycelia.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load(path: Path | None = None, env: dict[str, str] | None = None, **overrides: str) -> Config:
    return load_config(
        path, env=env or {}, overrides={k.replace("__", "."): v for k, v in overrides.items()}
    )


def error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as exc:
        load(*args, **kwargs)
    return str(exc.value)


# -- defaults ----------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load()
    home = tmp_path
    assert cfg.node.datadir == home / ".local/share/mycelia"
    assert cfg.node.key_file == home / ".local/share/mycelia/node.key"
    assert cfg.node.passphrase_file is None
    assert cfg.node.log_level == "info"
    assert cfg.p2p.listen == ("/ip4/0.0.0.0/tcp/4101",)
    assert cfg.p2p.bootstrap == ()
    assert cfg.p2p.mdns is False
    assert cfg.p2p.gossip_flush_ms == 250
    assert cfg.p2p.gossip_max_batch_bytes == 256 * 1024
    assert cfg.p2p.max_frame_bytes == 4 * 1024 * 1024
    assert cfg.p2p.request_timeout_s == 10.0
    assert cfg.p2p.announce == ()
    assert cfg.p2p.heartbeat_interval_s == 1.0
    assert (cfg.p2p.ping_interval_s, cfg.p2p.ping_timeout_s) == (5.0, 10.0)
    assert cfg.p2p.redial_max_backoff_s == 10.0
    assert cfg.validator.enabled is True
    assert cfg.economies.follow == ()
    assert cfg.sync.interval_s == 30.0
    assert cfg.sync.batch == 512
    assert cfg.store.map_size_mb == 64
    assert cfg.store.max_map_size_mb == 1536
    assert cfg.store.sync is True
    assert (cfg.metrics.enabled, cfg.metrics.host, cfg.metrics.port) == (True, "127.0.0.1", 9464)
    assert (cfg.rpc.host, cfg.rpc.port) == ("127.0.0.1", 8645)
    rpc = cfg.rpc
    assert (rpc.enabled, rpc.unix_socket, rpc.extra_bind, rpc.auth) == (True, True, (), True)
    assert (rpc.max_request_bytes, rpc.max_batch, rpc.max_page) == (1024 * 1024, 100, 500)
    assert (rpc.max_connections, rpc.max_subscriptions) == (64, 256)
    assert cfg == Config()
    assert cfg.source is None


def test_config_is_frozen_and_slotted() -> None:
    cfg = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.p2p.mdns = True  # type: ignore[misc]
    assert not hasattr(cfg.p2p, "__dict__")


def test_env_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYCELIA_SYNC__BATCH", "7")
    assert load_config(None).sync.batch == 7


# -- layering ---------------------------------------------------------------------------------


def test_precedence_file_env_cli(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "[metrics]\nport = 1111\nhost = '10.0.0.1'\n[sync]\nbatch = 100\ninterval_s = 2\n",
    )
    env = {"MYCELIA_METRICS__PORT": "2222", "MYCELIA_SYNC__BATCH": "200"}
    cfg = load_config(p, env=env, overrides={"metrics.port": "3333"})
    assert cfg.metrics.port == 3333  # CLI beats env and file
    assert cfg.sync.batch == 200  # env beats file
    assert cfg.metrics.host == "10.0.0.1"  # file beats default
    assert cfg.sync.interval_s == 2.0
    assert cfg.p2p.gossip_flush_ms == 250  # default where nobody says otherwise
    assert cfg.source == p


def test_bad_value_in_file_is_an_error_even_if_overridden(tmp_path: Path) -> None:
    p = write(tmp_path, "[metrics]\nport = 'x'\n")
    msg = error(p, metrics__port="9")
    assert msg.startswith("metrics.port: expected an integer 0..65535, got 'x'")
    assert str(p) in msg


def test_missing_and_unparsable_file(tmp_path: Path) -> None:
    assert "config file not found" in error(tmp_path / "nope.toml")
    p = write(tmp_path, "[p2p\nlisten = 1\n")
    assert error(p).startswith(f"cannot parse config file {p}")


# -- parsing per type -------------------------------------------------------------------------


def test_every_type_from_file(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        f"""
[node]
datadir = "data"
log_level = "DEBUG"
key_file = "keys/me.key"
passphrase_file = "secret/pass"
[p2p]
listen = ["/ip4/127.0.0.1/tcp/4102", "/ip6/::1/tcp/4102", "/ip4/127.0.0.1/tcp/4102"]
bootstrap = ["/dns4/boot.example.org/tcp/4101/p2p/{PEER}"]
mdns = true
gossip_flush_ms = 1000
gossip_max_batch_bytes = 1024
max_frame_bytes = 65_536
request_timeout_s = 2
[validator]
enabled = false
[economies]
follow = ["{ECON.upper()}"]
[sync]
interval_s = 0.5
batch = 1
[store]
map_size_mb = 1024
max_map_size_mb = 1024
sync = false
[metrics]
enabled = false
host = "::1"
port = 0
[rpc]
host = "localhost"
port = 65535
""",
    )
    cfg = load(p)
    assert cfg.node.datadir == tmp_path / "data"  # relative to the file's folder
    assert cfg.node.key_file == tmp_path / "data/keys/me.key"  # relative to datadir
    assert cfg.node.passphrase_file == tmp_path / "secret/pass"
    assert cfg.node.log_level == "debug"
    assert cfg.p2p.listen == ("/ip4/127.0.0.1/tcp/4102", "/ip6/::1/tcp/4102")  # deduplicated
    assert cfg.p2p.bootstrap == (f"/dns4/boot.example.org/tcp/4101/p2p/{PEER}",)
    assert cfg.p2p.mdns is True
    assert cfg.p2p.gossip_flush_ms == 1000
    assert cfg.p2p.gossip_max_batch_bytes == 1024
    assert cfg.p2p.max_frame_bytes == 65536
    assert cfg.p2p.request_timeout_s == 2.0
    assert isinstance(cfg.p2p.request_timeout_s, float)
    assert cfg.validator.enabled is False
    assert cfg.economies.follow == (ECON,)  # normalised to lowercase
    assert (cfg.sync.interval_s, cfg.sync.batch) == (0.5, 1)
    assert (cfg.store.map_size_mb, cfg.store.max_map_size_mb, cfg.store.sync) == (1024, 1024, False)
    assert (cfg.metrics.enabled, cfg.metrics.host, cfg.metrics.port) == (False, "::1", 0)
    assert (cfg.rpc.host, cfg.rpc.port) == ("localhost", 65535)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("false", False),
        ("0", False),
        ("no", False),
        (" No ", False),
    ],
)
def test_bool_from_string(text: str, value: bool) -> None:
    assert load(env={"MYCELIA_P2P__MDNS": text}).p2p.mdns is value
    assert load(p2p__mdns=text).p2p.mdns is value


def test_lists_from_string_comma_separated_or_toml_array() -> None:
    a, b = "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"
    assert load(p2p__listen=f"{a}, {b}").p2p.listen == (a, b)
    assert load(p2p__listen=f'["{a}", "{b}"]').p2p.listen == (a, b)
    assert load(env={"MYCELIA_P2P__LISTEN": a}).p2p.listen == (a,)
    assert load(p2p__listen="").p2p.listen == ()
    follow = load(env={"MYCELIA_ECONOMIES__FOLLOW": f"{ECON},{'cd' * 32}"}).economies.follow
    assert follow == (ECON, "cd" * 32)


def test_numbers_and_strings_from_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load(
        p2p__gossip_flush_ms="1",
        p2p__gossip_max_batch_bytes="1_048_576",
        p2p__request_timeout_s="0.25",
        p2p__heartbeat_interval_s="0.5",
        p2p__announce="/ip4/203.0.113.5/tcp/4101",
        sync__interval_s="1e2",
        node__log_level="warning",
        node__datadir="rel/dir",
        node__passphrase_file="pass.txt",
        metrics__host="0.0.0.0",
    )
    assert cfg.p2p.gossip_flush_ms == 1
    assert cfg.p2p.gossip_max_batch_bytes == 1024 * 1024
    assert cfg.p2p.request_timeout_s == 0.25
    assert cfg.p2p.heartbeat_interval_s == 0.5
    assert cfg.p2p.announce == ("/ip4/203.0.113.5/tcp/4101",)
    assert cfg.sync.interval_s == 100.0
    assert cfg.node.log_level == "warning"
    # From the command line or environment, relative means the working directory.
    assert cfg.node.datadir == tmp_path / "rel/dir"
    assert cfg.node.key_file == tmp_path / "rel/dir/node.key"
    assert cfg.node.passphrase_file == tmp_path / "pass.txt"
    assert cfg.metrics.host == "0.0.0.0"


def test_paths_expand_home_and_absolute_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load(
        node__datadir="~/d", node__key_file="/etc/mycelia/node.key", node__passphrase_file=""
    )
    assert cfg.node.datadir == tmp_path / "d"
    assert cfg.node.key_file == Path("/etc/mycelia/node.key")
    assert cfg.node.passphrase_file is None


def test_node_config_direct_construction_is_normalised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    n = NodeConfig(datadir=Path("x"), key_file=Path("k"))
    assert n.datadir == tmp_path / "x"
    assert n.key_file == tmp_path / "x/k"


# -- unknown names ------------------------------------------------------------------------------


def test_unknown_key_in_file_names_it_and_suggests(tmp_path: Path) -> None:
    p = write(tmp_path, "[p2p]\nlisen = ['/ip4/0.0.0.0/tcp/1']\n")
    msg = error(p)
    assert msg.startswith("unknown key p2p.lisen")
    assert "did you mean p2p.listen?" in msg
    assert str(p) in msg


def test_unknown_section_in_file(tmp_path: Path) -> None:
    msg = error(write(tmp_path, "[metric]\nport = 1\n"))
    assert msg.startswith("unknown section [metric]")
    assert "did you mean [metrics]?" in msg
    assert error(write(tmp_path, "[gizmo]\n", "b.toml")).startswith("unknown section [gizmo]")


def test_top_level_key_and_non_table_section(tmp_path: Path) -> None:
    assert error(write(tmp_path, "port = 1\n")).startswith("unknown key port")
    assert error(write(tmp_path, "p2p = 1\n", "b.toml")).startswith("p2p: expected a table")


def test_unknown_env_var_names_it() -> None:
    msg = error(env={"MYCELIA_P2P__LISEN": "x"})
    assert msg.startswith("unknown environment variable MYCELIA_P2P__LISEN")
    assert "did you mean MYCELIA_P2P__LISTEN?" in msg
    assert error(env={"MYCELIA_NOPE__X": "1"}).startswith(
        "unknown environment variable MYCELIA_NOPE__X"
    )


def test_unrelated_env_vars_are_ignored() -> None:
    env = {"MYCELIA_CONFIG": "/x.toml", "MYCELIA_P2P_LISTEN": "junk", "OTHER__X": "1"}
    assert load(env=env) == Config()


def test_unknown_override_names_it() -> None:
    msg = error(**{"p2p__lisen": "x"})
    assert msg.startswith("unknown key p2p.lisen")
    assert "did you mean p2p.listen?" in msg
    with pytest.raises(ConfigError, match=r"expected section\.key"):
        load_config(None, env={}, overrides={"listen": "x"})


def test_env_var_name() -> None:
    assert env_var_name("p2p.gossip_flush_ms") == "MYCELIA_P2P__GOSSIP_FLUSH_MS"


# -- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "p2p.gossip_flush_ms",
            "fast",
            "p2p.gossip_flush_ms: expected an integer 1..1000, got 'fast'",
        ),
        ("p2p.gossip_flush_ms", "0", "p2p.gossip_flush_ms: expected an integer 1..1000, got '0'"),
        ("p2p.gossip_flush_ms", "1001", "expected an integer 1..1000"),
        (
            "p2p.gossip_max_batch_bytes",
            "1023",
            "p2p.gossip_max_batch_bytes: expected an integer 1024..1048576",
        ),
        ("p2p.gossip_max_batch_bytes", "1048577", "expected an integer 1024..1048576"),
        ("p2p.request_timeout_s", "0", "p2p.request_timeout_s: expected a number > 0, got '0'"),
        ("p2p.request_timeout_s", "-1", "expected a number > 0"),
        ("p2p.request_timeout_s", "nan", "expected a number > 0"),
        ("sync.interval_s", "soon", "sync.interval_s: expected a number > 0, got 'soon'"),
        (
            "p2p.heartbeat_interval_s",
            "0.01",
            "p2p.heartbeat_interval_s: expected a number of seconds 0.1..60, got '0.01'",
        ),
        ("p2p.ping_timeout_s", "0", "expected a number of seconds 0.1..3600"),
        ("p2p.redial_max_backoff_s", "1e9", "expected a number of seconds 0.1..3600"),
        ("p2p.announce", "/ip4/203.0.113.5/udp/4101", "p2p.announce: expected a TCP multiaddr"),
        ("sync.batch", "0", "sync.batch: expected an integer"),
        ("p2p.mdns", "maybe", "p2p.mdns: expected a boolean (true/false/1/0/yes/no), got 'maybe'"),
        ("node.log_level", "loud", "node.log_level: expected one of debug, info, warning, error"),
        ("node.datadir", "", "node.datadir: expected a path"),
        ("metrics.port", "65536", "metrics.port: expected an integer 0..65535"),
        ("metrics.host", "a b", "metrics.host: expected a host name or IP address"),
        ("rpc.port", "-1", "rpc.port: expected an integer 0..65535"),
        ("rpc.max_batch", "0", "rpc.max_batch: expected an integer 1..10000"),
        ("rpc.max_request_bytes", "100", "rpc.max_request_bytes: expected an integer 1024.."),
        ("rpc.auth", "off", "rpc.auth: expected a boolean"),
        ("rpc.extra_bind", "10.0.0.1", 'rpc.extra_bind: expected a "host:port" address'),
        ("rpc.extra_bind", "10.0.0.1:99999", "got '10.0.0.1:99999'"),
        ("rpc.extra_bind", "::1:8645", "got '::1:8645'"),
        ("rpc.extra_bind", "[nope]:8645", "got '[nope]:8645'"),
        ("rpc.extra_bind", "a b:1", "got 'a b:1'"),
        ("store.map_size_mb", "1025", "store.map_size_mb: expected an integer 1..1024, got '1025'"),
        ("store.sync", "fsync", "store.sync: expected a boolean"),
        ("validator.enabled", "2", "validator.enabled: expected a boolean"),
        (
            "economies.follow",
            "abc",
            "economies.follow: expected a 64-character hex economy id, got 'abc'",
        ),
        ("economies.follow", "zz" * 32, "expected a 64-character hex economy id"),
        (
            "p2p.listen",
            "/ip4/1.2.3/tcp/1",
            "p2p.listen: expected a TCP multiaddr such as /ip4/0.0.0.0/tcp/4101, "
            "got '/ip4/1.2.3/tcp/1'",
        ),
        ("p2p.listen", "/ip4/1.2.3.4/udp/1", "p2p.listen: expected a TCP multiaddr"),
        ("p2p.listen", "/ip4/1.2.3.4/tcp/70000", "p2p.listen: expected a TCP multiaddr"),
        ("p2p.listen", "localhost:4101", "p2p.listen: expected a TCP multiaddr"),
        ("p2p.listen", "[1, 2", "p2p.listen: expected a list of TCP multiaddrs"),
        (
            "p2p.bootstrap",
            "/ip4/1.2.3.4/tcp/1",
            "p2p.bootstrap: expected a multiaddr ending in /p2p/<peer id>",
        ),
        ("p2p.bootstrap", "/ip4/1.2.3.4/tcp/1/p2p/0OIl", "got '/ip4/1.2.3.4/tcp/1/p2p/0OIl'"),
    ],
)
def test_bad_values_name_the_key_and_the_expectation(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={}, overrides={key: value})
    assert expected in str(exc.value)
    assert str(exc.value).startswith(key + ":")
    assert exc.value.key == key
    # The same value from the environment fails the same way, naming the variable.
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={env_var_name(key): value})
    assert expected in str(exc.value)
    assert env_var_name(key) in str(exc.value)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[p2p]\nmdns = 'yes'", "p2p.mdns: expected a boolean (true/false/1/0/yes/no), got 'yes'"),
        (
            "[p2p]\ngossip_flush_ms = true",
            "p2p.gossip_flush_ms: expected an integer 1..1000, got True",
        ),
        ("[p2p]\ngossip_flush_ms = 2.5", "got 2.5"),
        ("[p2p]\nlisten = '/ip4/0.0.0.0/tcp/1'", "p2p.listen: expected a list of TCP multiaddrs"),
        (
            "[p2p]\nlisten = [1]",
            "p2p.listen: expected a TCP multiaddr such as /ip4/0.0.0.0/tcp/4101, got 1",
        ),
        ("[sync]\ninterval_s = 'x'", "sync.interval_s: expected a number > 0, got 'x'"),
        ("[sync]\ninterval_s = inf", "sync.interval_s: expected a number > 0, got inf"),
        ("[node]\ndatadir = 5", "node.datadir: expected a path, got 5"),
        ("[metrics]\nport = '9464'", "metrics.port: expected an integer 0..65535, got '9464'"),
    ],
)
def test_bad_typed_values_in_file(tmp_path: Path, toml: str, expected: str) -> None:
    p = write(tmp_path, toml + "\n")
    msg = error(p)
    assert expected in msg
    assert str(p) in msg


def test_cross_field_rules() -> None:
    msg = error(store__map_size_mb="512", store__max_map_size_mb="256")
    assert msg.startswith("store.map_size_mb: expected at most store.max_map_size_mb (256)")
    msg = error(p2p__gossip_max_batch_bytes="1048576", p2p__max_frame_bytes="65536")
    assert msg.startswith("p2p.gossip_max_batch_bytes: expected at most p2p.max_frame_bytes")


def test_rpc_extra_bind() -> None:
    cfg = load(rpc__extra_bind="10.0.0.5:8646, [::1]:0,node.lan:9000, 10.0.0.5:8646")
    assert cfg.rpc.extra_bind == ("10.0.0.5:8646", "[::1]:0", "node.lan:9000")
    # Reaching beyond this machine without the cookie is refused, naming the keys.
    message = error(rpc__extra_bind="10.0.0.5:8646", rpc__auth="false")
    assert message.startswith("rpc.extra_bind:")
    assert "rpc.auth" in message
    assert load(rpc__auth="false").rpc.auth is False  # loopback only: allowed


def test_slow_client_limits() -> None:
    rpc, sensors = load().rpc, load().sensors
    assert (rpc.header_timeout_s, rpc.body_timeout_s, rpc.ws_idle_timeout_s) == (5.0, 10.0, 60.0)
    assert (rpc.max_connections, rpc.unix_reserve, rpc.max_connections_per_address) == (64, 8, 16)
    assert (sensors.max_connections, sensors.max_connections_per_address) == (64, 8)
    assert (sensors.header_timeout_s, sensors.body_timeout_s) == (5.0, 10.0)
    cfg = load(
        env={"MYCELIA_RPC__BODY_TIMEOUT_S": "2.5", "MYCELIA_SENSORS__MAX_CONNECTIONS": "10"},
        rpc__unix_reserve="0",
        sensors__max_connections_per_address="3",
    )
    assert (cfg.rpc.body_timeout_s, cfg.rpc.unix_reserve) == (2.5, 0)
    assert (cfg.sensors.max_connections, cfg.sensors.max_connections_per_address) == (10, 3)
    assert "rpc.header_timeout_s: expected a number > 0" in error(rpc__header_timeout_s="0")
    assert "rpc.ws_idle_timeout_s: expected a number > 0" in error(rpc__ws_idle_timeout_s="-1")
    assert "sensors.body_timeout_s: expected a number > 0" in error(sensors__body_timeout_s="inf")
    assert "sensors.max_connections: expected an integer" in error(sensors__max_connections="0")
    assert "rpc.unix_reserve: expected an integer" in error(rpc__unix_reserve="-1")
    pi = load(REPO / "configs/raspberry-pi.toml")
    assert pi.sensors.max_connections_per_address < sensors.max_connections_per_address
    assert pi.rpc.unix_reserve >= 1
    server = load(REPO / "configs/server.toml")
    assert server.rpc.max_connections_per_address > rpc.max_connections_per_address


def test_max_map_size_beyond_32bit_limit_only_on_64bit() -> None:
    if sys.maxsize > 2**32:
        assert load(store__max_map_size_mb="16384").store.max_map_size_mb == 16384
    else:
        assert "store.max_map_size_mb" in error(store__max_map_size_mb="16384")


# -- the default file and the examples ----------------------------------------------------------


def test_default_toml_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    text = default_toml()
    p = write(tmp_path, text)
    assert load(p) == load() == Config()
    doc = tomllib.loads(text)
    # Every key is present, each preceded by a comment.
    for f in dataclasses.fields(Config):
        if f.name == "source":
            continue
        section = getattr(Config(), f.name)
        assert set(doc[f.name]) == {x.name for x in dataclasses.fields(section)}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), line


def test_default_toml_with_datadir_and_passphrase(tmp_path: Path) -> None:
    datadir = tmp_path / 'odd "dir"'
    text = default_toml(datadir=datadir, passphrase_file=tmp_path / "pass")
    cfg = load(write(tmp_path, text))
    assert cfg.node.datadir == datadir
    assert cfg.node.key_file == datadir / "node.key"
    assert cfg.node.passphrase_file == tmp_path / "pass"


@pytest.mark.parametrize(
    "name", ["single-node.toml", "devnet-member.toml", "raspberry-pi.toml", "server.toml"]
)
def test_example_configs_load(name: str) -> None:
    cfg = load(REPO / "configs" / name)
    assert cfg.metrics.enabled is True
    assert cfg.store.map_size_mb <= 1024
    assert cfg != Config()


def test_example_config_specifics() -> None:
    pi = load(REPO / "configs/raspberry-pi.toml")
    assert pi.store.map_size_mb < Config().store.map_size_mb
    assert pi.store.max_map_size_mb <= 1536
    assert pi.p2p.gossip_flush_ms > Config().p2p.gossip_flush_ms
    assert pi.store.sync is True
    assert pi.p2p.ping_timeout_s > Config().p2p.ping_timeout_s
    member = load(REPO / "configs/devnet-member.toml")
    assert len(member.p2p.bootstrap) == 1
    assert member.p2p.bootstrap[0].endswith(PEER)
    assert member.p2p.redial_max_backoff_s < Config().p2p.redial_max_backoff_s
    single = load(REPO / "configs/single-node.toml")
    assert single.p2p.listen == ("/ip4/127.0.0.1/tcp/4101",)
    server = load(REPO / "configs/server.toml")
    assert server.node.passphrase_file is not None
    assert len(server.p2p.listen) == 2
    assert server.p2p.heartbeat_interval_s == 1.0


def test_the_sensors_section(tmp_path: Path) -> None:
    defaults = load().sensors
    assert (defaults.enabled, defaults.host, defaults.port) == (False, "0.0.0.0", 8647)
    assert (defaults.max_clock_skew_s, defaults.max_batch, defaults.max_body_bytes) == (
        300,
        256,
        256 * 1024,
    )
    assert (defaults.rate_per_device, defaults.rate_per_address) == (10.0, 200.0)
    assert (defaults.attest_interval_s, defaults.attest_max_readings) == (60.0, 4096)
    assert defaults.retention_days == 30
    p = write(
        tmp_path,
        "[sensors]\nenabled = true\nhost = '127.0.0.1'\nport = 0\nrate_per_device = 2\n"
        "attest_interval_s = 5\nretention_days = 7\n",
    )
    cfg = load(p, env={"MYCELIA_SENSORS__MAX_BATCH": "16"}, sensors__rate_per_address="50")
    s = cfg.sensors
    assert (s.enabled, s.host, s.port, s.max_batch) == (True, "127.0.0.1", 0, 16)
    assert (s.rate_per_device, s.rate_per_address, s.attest_interval_s) == (2.0, 50.0, 5.0)
    assert s.retention_days == 7
    assert "sensors.port: expected an integer 0..65535" in error(sensors__port="70000")
    assert "sensors.rate_per_device: expected a number > 0" in error(sensors__rate_per_device="0")
    assert "sensors.retention_days" in error(sensors__retention_days="0")
    assert "did you mean sensors.max_batch" in error(write(tmp_path, "[sensors]\nmax_bath = 1\n"))
    pi = load(REPO / "configs/raspberry-pi.toml").sensors
    assert pi.enabled is True
    assert pi.retention_days < defaults.retention_days


def test_every_default_is_the_config_files() -> None:
    """Defaults are declared once, in config.py: an in-process node's
    settings are the config file's but for its loopback listen address, and
    the services' own keyword defaults are the config's (the gossip flush
    was 25 ms in the service while the measured, configured one is 250)."""
    import dataclasses
    import inspect

    from mycelia.node.config import DEFAULTS
    from mycelia.node.daemon import NodeSettings
    from mycelia.node.gossip import Gossip
    from mycelia.node.p2p import P2P
    from mycelia.node.submitter import Submitter
    from mycelia.node.sync import Sync

    ours, theirs = NodeSettings(), NodeSettings.from_config(Config())
    differ = {
        f.name for f in dataclasses.fields(ours) if getattr(ours, f.name) != getattr(theirs, f.name)
    }
    assert differ == {"listen"}

    def default(cls: type, name: str) -> object:
        return inspect.signature(cls).parameters[name].default

    assert default(Gossip, "flush_ms") == DEFAULTS.p2p.gossip_flush_ms == 250
    assert default(Gossip, "max_batch_bytes") == DEFAULTS.p2p.gossip_max_batch_bytes
    assert default(Sync, "interval_s") == DEFAULTS.sync.interval_s
    assert default(Sync, "batch") == DEFAULTS.sync.batch
    assert default(Submitter, "retry_deadline_s") == DEFAULTS.submit.retry_deadline_s
    for name in ("max_frame_bytes", "request_timeout_s", "heartbeat_interval_s", "ping_timeout_s"):
        assert default(P2P, name) == getattr(DEFAULTS.p2p, name)
