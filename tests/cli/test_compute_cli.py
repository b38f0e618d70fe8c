"""``mycelia compute``: offers, a job bought and settled, channels, close,
refund and jobs, through a FakeNode served over a real unix socket, its
providers played by ``fakecompute`` (honest, lying, closing or not) — and
every refusal as one ``error: <reason>: ...`` line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mycelia.api.encoding import hex_in, hex_out
from mycelia.cli.wallet import format_amount
from mycelia.protocol import ChannelOpen, SigningKey
from mycelia.protocol.channels import ChannelClose, Release, SignedVoucher
from mycelia.protocol.compute_frames import MAX_INLINE_INPUT_BYTES, VoucherFrame
from mycelia.protocol.offers import Runtime
from mycelia.protocol.pricing import price
from mycelia.testing.economies import World, key
from tests.cli.conftest import new_wallet, ok, one_line_error, run
from tests.cli.fakecompute import LIMITS, PRICES, FakeProvider, inflate_price, now_ms
from tests.cli.fakenode import FakeNode, serve

MAX_SPEND = 500


@pytest.fixture
def node(home: Path) -> Iterator[tuple[FakeNode, World, SigningKey, FakeProvider]]:
    """A node following one economy, relaying to one honest provider with
    one offer, and the wallet 'alice'."""
    alice = new_wallet(home, "alice")
    world = World()
    fake = FakeNode(world)
    provider = fake.provider(FakeProvider(world))
    provider.offer()
    with serve(fake, home / "node"):
        yield fake, world, alice, provider


def input_file(home: Path, data: bytes = b"hello compute") -> Path:
    path = home / "input.bin"
    path.write_bytes(data)
    return path


def run_args(world: World, home: Path, *extra: str) -> list[str]:
    return [
        "compute", "run", "--economy", hex_out(world.id), "--runtime", "python",
        "--input", str(input_file(home)), "--max-spend", str(MAX_SPEND), "--poll", "0",
        *extra,
    ]  # fmt: skip


def close_when_read(fake: FakeNode, world: World, provider: FakeProvider) -> None:
    """The provider closes a channel with the newest voucher it was sent,
    once its job ended, the first time someone reads the channel after."""

    def closing(params: dict[str, Any]) -> Any:
        channel = hex_in(params["channel"], "channel", size=32)
        state = world.channel(channel)
        ended = [j for j in provider.jobs.values() if j.job.channel == channel and j.ended]
        sent = [
            SignedVoucher.decode(r.voucher)
            for r in provider.requests
            if isinstance(r, VoucherFrame) and provider.jobs[r.job].job.channel == channel
        ]
        if state.settlement is None and ended and sent:
            newest = max(sent, key=lambda v: v.voucher.cumulative)
            signed = world.entry(provider.key, ChannelClose.of(state, newest), ts_ms=now_ms())
            cert = world.certify(signed)
            world.ledger.apply(cert)
            fake.record(cert)
        return fake.answer("channel_get", params)

    fake.lie["channel_get"] = closing


# -- offers ------------------------------------------------------------------------------------


def test_offers_lists_each_runtime_with_its_prices(
    node: tuple[FakeNode, World, SigningKey, FakeProvider],
) -> None:
    _, world, _, provider = node
    other = provider.offer(Runtime("python", LIMITS, PRICES), Runtime("shell", LIMITS, PRICES))
    rows = json.loads(ok("compute", "offers", "--economy", hex_out(world.id), "--json").stdout)
    assert sorted((r["offer"], r["runtime"]) for r in rows) == sorted(
        [(hex_out(i), rt.name) for i, o in provider.offers.items() for rt in o.offer.runtimes]
    )
    row = next(r for r in rows if r["offer"] == hex_out(other.id) and r["runtime"] == "shell")
    assert (row["provider"], int(row["fee"]), int(row["per_cpu_ms"])) == (
        provider.key.did,
        PRICES.fee,
        PRICES.per_cpu_ms,
    )
    assert row["max_wall_ms"] == LIMITS.max_wall_ms
    only = json.loads(
        ok(
            "compute", "offers", "--economy", hex_out(world.id), "--runtime", "shell", "--json"
        ).stdout
    )
    assert [r["runtime"] for r in only] == ["shell"]
    text = ok("compute", "offers", "--economy", hex_out(world.id)).stdout
    decimals = world.genesis.decimals
    assert format_amount(PRICES.fee, decimals) in text  # in the economy's decimals
    assert format_amount(PRICES.per_cpu_ms * 1000, decimals) in text  # per CPU second
    assert "shell" in text


def test_offers_refuses_a_bad_economy_and_one_the_node_does_not_follow(
    node: tuple[FakeNode, World, SigningKey, FakeProvider],
) -> None:
    one_line_error(run("compute", "offers", "--economy", "xyz"), "invalid_params")
    one_line_error(run("compute", "offers", "--economy", "0x" + "ab" * 32), "unknown_economy")


# -- run ---------------------------------------------------------------------------------------


def test_run_prints_the_output_and_waits_for_the_providers_close(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, alice, provider = node
    close_when_read(fake, world, provider)
    result = ok(*run_args(world, home, "--wallet", "alice"))
    assert result.stdout == "hello compute"[::-1]  # the fake's job reverses its input
    (job,) = provider.jobs.values()
    final = job.result
    assert final is not None
    paid = final.usage.report.price
    assert paid == price(job.offer, "python", final.usage.report.usage) > 0
    assert "closed by the provider" in result.stderr
    assert f"{format_amount(MAX_SPEND - paid, world.genesis.decimals)} TVH back" in result.stderr
    assert f"price {format_amount(paid, world.genesis.decimals)} TVH ({paid})" in result.stderr
    assert world.balance(alice) == -paid  # the provider was paid exactly the price
    assert world.balance(provider.key) == paid
    assert world.channel(job.job.channel).settlement is not None


def test_run_json_and_output_file(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, _, provider = node
    close_when_read(fake, world, provider)
    out_path = home / "out.bin"
    result = ok(*run_args(world, home, "--wallet", "alice", "--output", str(out_path)))
    assert result.stdout == ""
    assert out_path.read_bytes() == b"hello compute"[::-1]
    summary = json.loads(ok(*run_args(world, home, "--json")).stdout)  # the only wallet pays
    assert summary["ok"] is True
    assert bytes.fromhex(summary["output"][2:]) == b"hello compute"[::-1]
    assert summary["channel_state"] == "closed"
    assert int(summary["paid"]) == int(summary["price"]) == int(summary["to_provider"])
    assert int(summary["to_consumer"]) == MAX_SPEND - int(summary["paid"])
    job = hex_in(summary["job"], "job", size=32)
    sent = [r for r in provider.requests if isinstance(r, VoucherFrame) and r.job == job]
    assert summary["vouchers"] == len(sent) > 0


def test_run_refunds_the_channel_when_the_provider_never_closed(
    node: tuple[FakeNode, World, SigningKey, FakeProvider],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider never closes: once a refund is valid (here: the clock
    moved past it), ``run`` refunds the whole escrow itself."""
    _, world, alice, _ = node
    import mycelia.cli.compute as cli_compute

    real = cli_compute._now_ms
    monkeypatch.setattr(cli_compute, "_now_ms", lambda: real() + 3 * 3_600_000)
    summary = json.loads(ok(*run_args(world, home, "--json")).stdout)
    assert summary["channel_state"] == "refunded"
    assert (int(summary["to_provider"]), int(summary["to_consumer"])) == (0, MAX_SPEND)
    assert world.balance(alice) == 0
    assert int(summary["paid"]) > 0  # vouchers it signed that the provider never cashed


def test_run_no_settle_leaves_the_channel_open(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    _, world, _, provider = node
    result = ok(*run_args(world, home, "--no-settle"))
    assert result.stdout == "hello compute"[::-1]
    (job,) = provider.jobs.values()
    assert world.channel(job.job.channel).settlement is None
    assert "left to the provider to close" in result.stderr


def test_run_refusals(node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path) -> None:
    _, world, _, provider = node
    econ = hex_out(world.id)
    base = ["compute", "run", "--economy", econ, "--input", str(input_file(home)), "--poll", "0"]
    one_line_error(run(*base, "--runtime", "java", "--max-spend", "500"), "no_offer")
    one_line_error(run(*base, "--runtime", "python", "--max-spend", "9"), "no_offer")  # < fee
    one_line_error(run(*base, "--runtime", "python", "--max-spend", "-3"), "invalid_params")
    one_line_error(
        run(*base, "--runtime", "python", "--max-spend", "500", "--wallet", "zed"),
        "unknown_wallet",
    )
    missing = ["--input", str(home / "nope"), "--runtime", "python", "--max-spend", "500"]
    one_line_error(run("compute", "run", "--economy", econ, *missing), "bad_input")
    big = home / "big.bin"
    big.write_bytes(b"x" * (MAX_INLINE_INPUT_BYTES + 1))
    too_big = ["--input", str(big), "--runtime", "python", "--max-spend", "500"]
    one_line_error(run("compute", "run", "--economy", econ, *too_big), "too_large")
    new_wallet(home, "bob")  # two wallets: which pays must be said
    one_line_error(run(*base, "--runtime", "python", "--max-spend", "500"), "invalid_params")
    assert provider.jobs == {}  # none of these started a job
    # A provider that bills more than its counters cost: payment stops, an error.
    provider.lie = inflate_price
    provider.steps = 5
    line = one_line_error(
        run(*base, "--runtime", "python", "--max-spend", "500", "--wallet", "alice", "--no-settle"),
        "price_mismatch",
    )
    assert "stopped paying" in line


# -- channels, close, refund -------------------------------------------------------------------


def open_channel(world: World, fake: FakeNode, alice: SigningKey, provider: FakeProvider,
                 amount: int = 300) -> bytes:  # fmt: skip
    body = ChannelOpen(provider.key.public, amount, now_ms() + 3_600_000, b"")
    signed = world.entry(alice, body, ts_ms=now_ms())
    cert = world.certify(signed)
    world.ledger.apply(cert)
    fake.record(cert)
    return cert.entry_id


def test_channels_lists_state_escrow_and_paid(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, alice, provider = node
    close_when_read(fake, world, provider)
    summary = json.loads(ok(*run_args(world, home, "--json")).stdout)
    still_open = open_channel(world, fake, alice, provider)
    rows = json.loads(
        ok("compute", "channels", "alice", "--economy", hex_out(world.id), "--json").stdout
    )
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {summary["channel"], hex_out(still_open)}
    closed = by_id[summary["channel"]]
    assert (closed["state"], closed["escrow"], closed["to_provider"]) == (
        "closed", "0", summary["paid"]
    )  # fmt: skip
    assert (by_id[hex_out(still_open)]["state"], by_id[hex_out(still_open)]["escrow"]) == (
        "open", "300"
    )  # fmt: skip
    # The provider's side, by its did.
    theirs = json.loads(
        ok("compute", "channels", provider.key.did, "--economy", hex_out(world.id), "--json").stdout
    )
    assert {r["id"] for r in theirs} == set(by_id)
    text = ok("compute", "channels", "alice", "--economy", hex_out(world.id)).stdout
    for word in ("closed", "open", "consumer"):
        assert word in text
    one_line_error(
        run("compute", "channels", "nobody", "--economy", hex_out(world.id)), "unknown_wallet"
    )


def test_close_explains_the_provider_closes_and_shows_a_settled_channel(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, alice, provider = node
    channel = open_channel(world, fake, alice, provider)
    line = one_line_error(run("compute", "close", hex_out(channel)), "provider_closes")
    assert "compute refund" in line
    assert world.channel(channel).settlement is None
    release = Release(world.id, channel, 100).sign(provider.key)
    ok("compute", "refund", hex_out(channel), "--release", hex_out(release.encode()))
    shown = ok("compute", "close", hex_out(channel)).stdout
    assert "refunded" in shown
    assert (
        json.loads(ok("compute", "close", hex_out(channel), "--json").stdout)["state"] == "refunded"
    )
    one_line_error(run("compute", "close", "0x1234"), "invalid_params")
    one_line_error(run("compute", "close", "0x" + "cd" * 32), "unknown_channel")


def test_refund_with_a_release_and_its_refusals(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, alice, provider = node
    channel = open_channel(world, fake, alice, provider)
    # Before its refund time and without a release: refused by the validators.
    one_line_error(run("compute", "refund", hex_out(channel)), "channel_not_expired")
    assert world.channel(channel).settlement is None
    one_line_error(
        run("compute", "refund", hex_out(channel), "--release", "0xzz"), "invalid_params"
    )
    forged = Release(world.id, channel, 100).sign(key(99, "not-the-provider"))
    one_line_error(
        run("compute", "refund", hex_out(channel), "--release", hex_out(forged.encode())),
        "release_bad_sig",
    )
    assert world.balance(alice) == -300
    release = Release(world.id, channel, 120).sign(provider.key)
    out = json.loads(
        ok(
            "compute", "refund", hex_out(channel), "--release", hex_out(release.encode()), "--json"
        ).stdout
    )
    assert (out["state"], out["to_provider"], out["to_consumer"]) == ("refunded", "120", "180")
    assert world.balance(alice) == -120
    one_line_error(run("compute", "refund", hex_out(channel)), "channel_settled")


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_shows_the_nodes_compute_and_each_jobs_newest_answer(
    node: tuple[FakeNode, World, SigningKey, FakeProvider], home: Path
) -> None:
    fake, world, _, provider = node
    ok(*run_args(world, home, "--no-settle"))
    (job,) = provider.jobs
    out = json.loads(ok("compute", "jobs", hex_out(job), "--json").stdout)
    (answer,) = out["jobs"]
    assert (answer["job"], answer["kind"], answer["outcome"]) == (
        hex_out(job),
        "result",
        "completed",
    )
    info = fake.answer("node_info")["compute"]
    assert out["compute"] == info
    text = ok("compute", "jobs", hex_out(job)).stdout
    assert "completed" in text
    assert "relayed" in text
    one_line_error(run("compute", "jobs", "0x" + "ef" * 32), "unknown_job")
    one_line_error(run("compute", "jobs", "nothex"), "invalid_params")
