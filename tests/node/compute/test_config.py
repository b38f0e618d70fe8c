"""The [compute] section: defaults, runtimes as [compute.runtimes.NAME] tables,
and every refusal naming the key inside the runtime's table."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mycelia.node.config import (
    ComputeConfig,
    ConfigError,
    RuntimeConfig,
    default_toml,
    load_config,
)


def load(tmp_path: Path, text: str) -> ComputeConfig:
    p = tmp_path / "mycelia.toml"
    p.write_text(text)
    return load_config(p, env={}).compute


def refusal(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return exc.value


def test_defaults() -> None:
    c = load_config(None, env={}).compute
    assert (c.enabled, c.user, c.work_dir, c.metering, c.cgroup) == (
        False,
        "nobody",
        None,
        "auto",
        None,
    )
    assert (c.max_jobs, c.poll_interval_s, c.runtimes) == (1, 0.25, ())
    assert c == ComputeConfig()
    assert c.runtime("anything") is None


def test_runtimes_from_the_file(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        """
[compute]
enabled = true
user = "mycelia-jobs"
work_dir = "jobs"
metering = "SHIM"
cgroup = "/sys/fs/cgroup/mycelia.service"
max_jobs = 3
poll_interval_s = 1
[compute.runtimes.python]
command = ["/usr/bin/python3", "-I", "-"]
env = { LANG = "C.UTF-8", PYTHONHASHSEED = "0" }
max_cpu_s = 2.5
max_wall_s = 10
memory_mib = 512
max_input_bytes = 1000
max_output_bytes = 2000
max_stderr_bytes = 300
max_file_bytes = 4096
[compute.runtimes."wasm.v1"]
command = ["/usr/local/bin/wasmtime", "run", "job.wasm"]
input = "file"
input_file = "job.wasm"
output = "file"
output_file = "result.bin"
""",
    )
    assert (c.enabled, c.user, c.metering, c.max_jobs, c.poll_interval_s) == (
        True,
        "mycelia-jobs",
        "shim",
        3,
        1.0,
    )
    assert c.work_dir == tmp_path / "jobs"  # relative: next to the config file
    assert c.cgroup == Path("/sys/fs/cgroup/mycelia.service")
    py = c.runtime("python")
    assert py is not None
    assert py.command == ("/usr/bin/python3", "-I", "-")
    assert py.env == (("LANG", "C.UTF-8"), ("PYTHONHASHSEED", "0"))
    assert (py.max_cpu_s, py.max_cpu_ms, py.max_wall_s, py.max_wall_ms) == (2.5, 2500, 10.0, 10000)
    assert (py.memory_mib, py.max_input_bytes, py.max_output_bytes) == (512, 1000, 2000)
    assert (py.max_stderr_bytes, py.max_file_bytes) == (300, 4096)
    assert (py.input, py.output) == ("stdin", "stdout")
    wasm = c.runtime("wasm.v1")
    assert wasm is not None
    assert (wasm.input, wasm.input_file, wasm.output, wasm.output_file) == (
        "file",
        "job.wasm",
        "file",
        "result.bin",
    )
    assert (wasm.max_cpu_s, wasm.max_wall_s, wasm.memory_mib) == (60.0, 300.0, 256)
    assert [rt.name for rt in c.runtimes] == ["python", "wasm.v1"]


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        (
            "command = \"/usr/bin/python3 -c 'print(1)'\"",
            "compute.runtimes.py.command",
            "expected an argv list such as",
        ),
        ('command = ["python3", "-I"]', "compute.runtimes.py.command", "an absolute path"),
        ("command = []", "compute.runtimes.py.command", "never a shell string"),
        ('command = ["/bin/cat", 1]', "compute.runtimes.py.command", "got 1"),
        ("max_cpu_s = 2", "compute.runtimes.py.command", "got nothing"),
        ('command = ["/bin/cat"]\nmax_cpu_s = 0', "compute.runtimes.py.max_cpu_s", "seconds"),
        ('command = ["/bin/cat"]\nmax_wall_s = -1', "compute.runtimes.py.max_wall_s", "seconds"),
        ('command = ["/bin/cat"]\nmemory_mib = 0', "compute.runtimes.py.memory_mib", "integer"),
        (
            'command = ["/bin/cat"]\nmax_input_bytes = 2.5',
            "compute.runtimes.py.max_input_bytes",
            "integer",
        ),
        ('command = ["/bin/cat"]\ninput = "argv"', "compute.runtimes.py.input", "stdin, file"),
        ('command = ["/bin/cat"]\noutput = "stdin"', "compute.runtimes.py.output", "stdout"),
        (
            'command = ["/bin/cat"]\ninput = "file"\ninput_file = "../etc/passwd"',
            "compute.runtimes.py.input_file",
            "a plain file name",
        ),
        (
            'command = ["/bin/cat"]\ninput = "file"\noutput = "file"\n'
            'input_file = "x"\noutput_file = "x"',
            "compute.runtimes.py.output_file",
            "a name other than input_file's",
        ),
        (
            'command = ["/bin/cat"]\nenv = { "BAD NAME" = "1" }',
            "compute.runtimes.py.env",
            "environment variable names",
        ),
        ('command = ["/bin/cat"]\nenv = { A = 1 }', "compute.runtimes.py.env", "string values"),
    ],
)
def test_bad_runtimes_name_the_key(tmp_path: Path, toml: str, key: str, expected: str) -> None:
    exc = refusal(tmp_path, f"[compute.runtimes.py]\n{toml}\n")
    assert exc.key == key
    assert str(exc).startswith(f"{key}: ")
    assert expected in str(exc)
    assert str(tmp_path / "mycelia.toml") in str(exc)


def test_unknown_runtime_keys_and_names(tmp_path: Path) -> None:
    exc = refusal(tmp_path, '[compute.runtimes.py]\ncommand = ["/bin/cat"]\ncomand = 1\n')
    assert exc.key == "compute.runtimes.py.comand"
    assert str(exc).startswith("unknown key compute.runtimes.py.comand in ")
    assert "did you mean compute.runtimes.py.command?" in str(exc)
    exc = refusal(tmp_path, '[compute.runtimes.Python]\ncommand = ["/bin/cat"]\n')
    assert exc.key == "compute.runtimes.Python"
    assert "runtime name" in str(exc)
    exc = refusal(tmp_path, "[compute]\nruntimes = { py = 3 }\n")
    assert exc.key == "compute.runtimes.py"


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ('user = "root"', "compute.user", "jobs never run as root"),
        ("user = 0", "compute.user", "jobs never run as root"),
        ('user = "a b"', "compute.user", "a user name or numeric uid"),
        ('metering = "proc"', "compute.metering", "one of auto, cgroup, shim"),
        ("max_jobs = 0", "compute.max_jobs", "an integer 1..1024"),
        ("poll_interval_s = 0.001", "compute.poll_interval_s", "seconds 0.01..10"),
        ("enabled = 1", "compute.enabled", "a boolean"),
    ],
)
def test_bad_compute_settings(tmp_path: Path, toml: str, key: str, expected: str) -> None:
    exc = refusal(tmp_path, f"[compute]\n{toml}\n")
    assert exc.key == key
    assert expected in str(exc)


def test_runtimes_from_the_environment_and_the_command_line() -> None:
    env = {"MYCELIA_COMPUTE__RUNTIMES": '{ cat = { command = ["/bin/cat"], max_cpu_s = 1 } }'}
    c = load_config(None, env=env).compute
    assert [rt.name for rt in c.runtimes] == ["cat"]
    assert c.runtimes[0].max_cpu_s == 1.0
    c = load_config(None, env={}, overrides={"compute.user": "65534"}).compute
    assert c.user == "65534"
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={"MYCELIA_COMPUTE__RUNTIMES": '{ cat = { command = ["cat"] } }'})
    assert exc.value.key == "compute.runtimes.cat.command"
    assert "MYCELIA_COMPUTE__RUNTIMES" in str(exc.value)
    assert load_config(None, env={"MYCELIA_COMPUTE__RUNTIMES": ""}).compute.runtimes == ()


def test_runtime_built_in_code_is_validated() -> None:
    rt = RuntimeConfig(name="cat", command=("/bin/cat",), env=(("B", "2"), ("A", "1")))
    assert rt.env == (("A", "1"), ("B", "2"))
    with pytest.raises(ValueError, match="command: expected an argv list"):
        RuntimeConfig(name="cat", command="/bin/cat -n")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name: expected a runtime name"):
        RuntimeConfig(name="no/slash", command=("/bin/cat",))
    with pytest.raises(ValueError, match="max_output_bytes"):
        RuntimeConfig(name="cat", command=("/bin/cat",), max_output_bytes=-1)


def test_the_default_file_shows_a_runtime_table_in_comments() -> None:
    text = default_toml()
    doc = tomllib.loads(text)
    assert doc["compute"]["runtimes"] == {}
    section = text[text.index("[compute]") :]
    assert "# [compute.runtimes.NAME]" in section
    for key in ("command", "max_cpu_s", "max_wall_s", "memory_mib", "input", "output_file"):
        assert f"#   {key} = " in section


REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("doc", ["docs/compute-runner.md", "configs/README.md"])
def test_the_documented_compute_examples_load(tmp_path: Path, doc: str) -> None:
    text = (REPO / doc).read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml")[1:]]
    blocks = [b for b in blocks if "[compute" in b]
    assert blocks
    for block in blocks:
        c = load(tmp_path, block)
        assert c.enabled
        assert c.runtimes


# -- the provider's terms (node/compute/service.py, docs/compute.md) ----------------------------


def test_the_provider_terms_and_prices(tmp_path: Path) -> None:
    c = load(
        tmp_path,
        """
[compute]
credit_window = 5000
grace_s = 2.5
offer_ttl_s = 120
offer_interval_s = 30
close_margin_s = 60
final_voucher_s = 1
max_jobs_per_peer = 2
max_relayed_jobs = 8
[compute.runtimes.py]
command = ["/bin/cat"]
fee = 100
per_cpu_ms = 2
per_mib_s = 1
per_wall_s = 5
""",
    )
    assert (c.credit_window, c.grace_s, c.offer_ttl_s, c.offer_interval_s) == (5000, 2.5, 120, 30)
    assert (c.close_margin_s, c.final_voucher_s, c.max_jobs_per_peer, c.max_relayed_jobs) == (
        60,
        1,
        2,
        8,
    )
    (rt,) = c.runtimes
    assert (rt.fee, rt.per_cpu_ms, rt.per_mib_s, rt.per_wall_s) == (100, 2, 1, 5)
    d = ComputeConfig()
    defaults = (d.credit_window, d.grace_s, d.max_jobs_per_peer, d.max_relayed_jobs)
    assert defaults == (1000, 10, 1, 64)
    assert RuntimeConfig(name="x", command=("/bin/cat",)).fee == 0


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("[compute]\ncredit_window = -1", "compute.credit_window", "integer"),
        ("[compute]\ngrace_s = 301", "compute.grace_s", "seconds"),
        ("[compute]\noffer_ttl_s = 90000", "compute.offer_ttl_s", "seconds"),
        (
            "[compute]\noffer_ttl_s = 100\noffer_interval_s = 100",
            "compute.offer_interval_s",
            "less than compute.offer_ttl_s",
        ),
        ("[compute]\nmax_jobs_per_peer = 0", "compute.max_jobs_per_peer", "integer"),
        (
            '[compute.runtimes.py]\ncommand = ["/bin/cat"]\nfee = -5',
            "compute.runtimes.py.fee",
            "integer",
        ),
        (
            '[compute.runtimes.py]\ncommand = ["/bin/cat"]\nper_cpu_ms = 1.5',
            "compute.runtimes.py.per_cpu_ms",
            "integer",
        ),
        (
            f'[compute.runtimes.{"a" * 33}]\ncommand = ["/bin/cat"]',
            f"compute.runtimes.{'a' * 33}",
            "at most 32",
        ),
    ],
)
def test_bad_provider_terms_name_the_key(
    tmp_path: Path, toml: str, key: str, expected: str
) -> None:
    exc = refusal(tmp_path, toml + "\n")
    assert exc.key == key
    assert expected in str(exc)


def test_a_runtime_the_protocol_cannot_offer_is_refused_naming_it() -> None:
    from mycelia.node.compute.market import Market, runtime_of
    from mycelia.node.p2p import P2P
    from mycelia.testing.economies import key

    costly = RuntimeConfig(name="big", command=("/bin/cat",), per_cpu_ms=(1 << 63) - 1)
    with pytest.raises(ConfigError) as exc:
        runtime_of(costly)
    assert exc.value.key == "compute.runtimes.big"
    assert "amount_out_of_range" in str(exc.value)
    cheap = RuntimeConfig(name="cat", command=("/bin/cat",), fee=3, max_output_bytes=1 << 30)
    offered = runtime_of(cheap)
    assert offered.limits.max_output_bytes == 1 << 20  # the protocol's bound: output is inline
    assert offered.prices.fee == 3
    many = tuple(RuntimeConfig(name=f"r{i:02}", command=("/bin/cat",)) for i in range(17))
    k = key(1, "provider")
    with pytest.raises(ConfigError) as exc:
        Market(k, P2P(k.seed), ComputeConfig(enabled=True, runtimes=many), addresses=lambda: ())
    assert exc.value.key == "compute.runtimes"
