"""``mycelia compute``: buy a job from a provider and see the economy's
compute market — offers, channels, jobs — through a running node's RPC.

Why this exists: buying compute is a wallet's act (the wallet signs every
voucher; the node only relays), so a member needs a command that does the
whole purchase safely and shows where the money is. Every check and every
signature is the client's (``mycelia.client.compute``); this module only
chooses, shows and settles.

How it works:

* ``offers`` — the economy's offers the node holds (each verified), one
  row per runtime: its limits and prices, in the economy's decimals.
* ``run`` — :meth:`~mycelia.client.Client.buy_compute`: the cheapest offer
  that has the runtime and fits ``--max-spend``, a channel of
  ``--max-spend`` to its provider, the job, paid as it runs. A progress line
  on stderr shows CPU seconds, running seconds, the price so far and the
  vouchers signed; the output goes to stdout (or ``--output``). Then it
  leaves the channel settled: it waits for the provider's ``channel.close``
  and, if the provider has not closed by the time a refund is valid
  (``refund_after_ms``), refunds the channel itself. ``--no-settle``
  returns once the job ended. A job that did not end with a result it
  accepted (the provider lied, or refused) is an error, after settling.
* ``channels`` — a wallet's channels, as consumer or provider: state
  (open, closed, refunded), escrow, paid.
* ``close`` — the provider's node closes each channel it was paid through
  by itself (``node/compute/closer.py``: once the job's final voucher came,
  and before the channel expires), and the RPC has no method to ask for it
  sooner; so ``close`` shows the channel and says so (``provider_closes``
  while it is open).
* ``refund`` — the consumer's ``channel.refund``: after the channel's
  ``refund_after_ms``, or at once with the provider's signed release
  (``--release``, its hex).
* ``jobs`` — what the node does for compute (``node_info``: the runtimes
  it runs, its metering tier, jobs running and relayed) and, for each job
  id given, its provider's newest answer (``compute_job_status``).

Amounts on the command line are minor units, as everywhere in the CLI;
displays show the economy's decimals (``cli/wallet.py``'s formatter).
``--json`` on each command prints stable keys instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table
from rich.text import Text

from mycelia.api.encoding import ParamError, hex_in, hex_out
from mycelia.api.types import ChannelView, ComputeAnswer, OfferView
from mycelia.cli.main import connect, json_option, rpc_options
from mycelia.cli.wallet import (
    SUFFIX,
    account_did,
    economy_id,
    economy_option,
    fail,
    format_amount,
    load_wallet,
    parse_amount,
    print_json,
    short,
    stderr,
    stdout,
    wallet_dir,
)
from mycelia.client import Client, ClientError
from mycelia.client.results import JobOutcome
from mycelia.protocol import Refused, SigningKey
from mycelia.protocol.channels import SignedRelease
from mycelia.protocol.compute import Failed, Pay, Stop
from mycelia.protocol.compute_frames import (
    MAX_INLINE_INPUT_BYTES,
    Answer,
    ResultFrame,
    UsageFrame,
)

__all__ = ["compute", "settle"]

#: Seconds between two reads of a channel while waiting for its settlement.
SETTLE_POLL_S = 1.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _hex_id(value: str, what: str) -> bytes:
    text = value.strip()
    try:
        return hex_in(text if text.startswith("0x") else "0x" + text, what, size=32)
    except ParamError as exc:
        raise fail("invalid_params", f"{what}: {exc.detail}") from None


def _default_wallet() -> str:
    """The one wallet in the wallet folder (``--wallet`` names it otherwise)."""
    folder = wallet_dir()
    names = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}"))
    if len(names) != 1:
        have = ", ".join(names) or "none"
        raise fail("invalid_params", f"--wallet: name the wallet that pays (in {folder}: {have})")
    return names[0]


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.3f}"


# -- offers --------------------------------------------------------------------------------------


def _offer_rows(view: OfferView, runtime: str | None) -> list[dict[str, Any]]:
    rows = []
    for rt in view.runtimes:
        if runtime is not None and rt.name != runtime:
            continue
        rows.append(
            {
                "offer": hex_out(view.id),
                "provider": view.provider,
                "runtime": rt.name,
                "expires_ms": view.expires_ms,
                "credit_window": view.credit_window,
                **{k: v for k, v in rt.to_json().items() if k != "name"},
            }
        )
    return rows


@click.group()
def compute() -> None:
    """Buy compute from the economy's providers, and see channels and jobs."""


@compute.command("offers")
@economy_option
@click.option("--runtime", default=None, help="Only offers of this runtime.")
@rpc_options
@json_option
@click.pass_context
def compute_offers(ctx: click.Context, economy: str, runtime: str | None, as_json: bool) -> None:
    """List the economy's compute offers the node holds (each verified)."""
    eid = economy_id(economy)
    with connect(ctx) as client:
        info = client.economy_get(eid)
        offers = client.compute_offers(eid)
    rows = [row for view in offers for row in _offer_rows(view, runtime)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        stdout().print(Text(f"no compute offers in {info.name} that this node knows of"))
        return
    d, sym = info.decimals, info.symbol
    table = Table(
        "offer", "provider", "runtime", "max cpu-s", "max wall-s", "MiB", "fee",
        "per cpu-s", "per wall-s", "per MiB-s",
        title=f"compute offers in {info.name} (prices in {sym})", title_justify="left",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            short(r["offer"]),
            r["provider"],
            r["runtime"],
            _seconds(r["max_cpu_ms"]),
            _seconds(r["max_wall_ms"]),
            str(r["reserved_mib"]),
            format_amount(int(r["fee"]), d),
            format_amount(int(r["per_cpu_ms"]) * 1000, d),
            format_amount(int(r["per_wall_s"]), d),
            format_amount(int(r["per_mib_s"]), d),
        )
    stdout().print(table)


# -- run -----------------------------------------------------------------------------------------


@dataclass
class _Meter:
    """What the progress line shows, from each answer the consumer accepted."""

    cpu_ms: int = 0
    wall_ms: int = 0
    price: int = 0
    vouchers: int = 0
    seen: list[str] = field(default_factory=list)

    def update(self, answer: Answer, decision: Pay | Stop | Failed | None) -> None:
        if isinstance(answer, UsageFrame | ResultFrame):
            r = answer.usage.report
            self.cpu_ms, self.wall_ms, self.price = r.usage.cpu_ms, r.usage.wall_ms, r.price
        if isinstance(decision, Pay):
            self.vouchers += 1
        self.seen.append(answer.tag)

    def line(self, decimals: int, symbol: str) -> str:
        return (
            f"cpu {self.cpu_ms / 1000:.3f} s  wall {self.wall_ms / 1000:.3f} s  "
            f"price {format_amount(self.price, decimals)} {symbol}  "
            f"vouchers {self.vouchers}"
        )


def settle(
    client: Client,
    key: SigningKey,
    channel: bytes,
    *,
    timeout_s: float,
    on_wait: Callable[[ChannelView], None] | None = None,
) -> ChannelView:
    """Wait for ``channel``'s settlement: the provider's close, or — once a
    refund is valid and the provider still has not closed — ``key``'s
    refund, certified. ``timeout_s`` bounds the wait past the refund time."""
    view = client.channel_get(channel)
    refunded = False
    while view.settled_by is None:
        now = _now_ms()
        if not refunded and now > view.refund_after_ms:
            status = client.wait(client.refund_channel(key, channel, ts_ms=now), timeout=60)
            if not status.certified and status.reason != "channel_settled":
                raise fail(status.reason or "refused", f"the refund: {status.detail}")
            refunded = True
        elif now > view.refund_after_ms + timeout_s * 1000:
            raise fail("timeout", f"channel {hex_out(channel)} was not settled in time")
        else:
            if on_wait is not None:
                on_wait(view)
            time.sleep(SETTLE_POLL_S)
        view = client.channel_get(channel)
    return view


def _outcome_json(outcome: JobOutcome, view: ChannelView | None, vouchers: int) -> dict[str, Any]:
    report = outcome.report
    result = outcome.result
    out: dict[str, Any] = {
        "job": hex_out(outcome.job.id),
        "offer": hex_out(outcome.offer.id),
        "channel": hex_out(outcome.channel),
        "ok": outcome.ok,
        "paid": str(outcome.paid),
        "price": str(outcome.price),
        "vouchers": vouchers,
        "cpu_ms": None if report is None else report.usage.cpu_ms,
        "wall_ms": None if report is None else report.usage.wall_ms,
        "mib_ms": None if report is None else report.usage.mib_ms,
        "outcome": None if result is None else result.outcome,
        "exit_status": None if result is None else result.exit_status,
        "output": None if result is None else hex_out(result.output),
        "stop": None if outcome.stop is None else outcome.stop.reason.value,
        "failed": None if outcome.failed is None else outcome.failed.code,
        "channel_state": None if view is None else _channel_json(view)["state"],
        "to_provider": None if view is None or view.to_provider is None else str(view.to_provider),
        "to_consumer": None if view is None or view.to_consumer is None else str(view.to_consumer),
    }
    return out


@dataclass(frozen=True, slots=True)
class _Problem:
    reason: str
    detail: str


def _why_not(outcome: JobOutcome) -> _Problem | None:
    """Why a job did not end with a result the wallet accepted (None: it did)."""
    if outcome.stop is not None:
        reason = outcome.stop.reason.value
        return _Problem(reason, f"stopped paying the provider: {outcome.stop.detail or reason}")
    if outcome.failed is not None:
        return _Problem(outcome.failed.code, f"the provider refused: {outcome.failed.detail}")
    if outcome.result is None:
        return _Problem("no_result", "the job ended without a result")
    return None


def _read_input(path: Path) -> bytes:
    """The job's input, at most what a job carries inline (read no further)."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_INLINE_INPUT_BYTES + 1)
        else:
            with path.open("rb") as fh:
                data = fh.read(MAX_INLINE_INPUT_BYTES + 1)
    except OSError as exc:
        raise fail("bad_input", f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INLINE_INPUT_BYTES:
        raise fail("too_large", f"{path}: a job's input is at most {MAX_INLINE_INPUT_BYTES} bytes")
    return data


@compute.command("run")
@economy_option
@click.option("--runtime", required=True, help="The runtime to run (see: compute offers).")
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="The job's input ('-': standard input).",
)
@click.option(
    "--max-spend",
    required=True,
    metavar="N",
    help="The most to pay, in minor units: the channel's escrow (the rest comes back).",
)
@click.option("--wallet", "wallet_name", default=None, help="The paying wallet.")
@click.option(
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the job's output here instead of standard output.",
)
@click.option(
    "--no-settle", is_flag=True, help="Return once the job ended; leave the channel to settle."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for each certificate, and past a channel's refund time.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.0, max=10.0),
    default=0.5,
    show_default=True,
    help="Seconds between two polls of the job.",
)
@rpc_options
@json_option
@click.pass_context
def compute_run(
    ctx: click.Context,
    economy: str,
    runtime: str,
    input_file: Path,
    max_spend: str,
    wallet_name: str | None,
    output_file: Path | None,
    no_settle: bool,
    timeout: float,
    poll: float,
    as_json: bool,
) -> None:
    """Run one job on the cheapest fitting offer, paid as it runs."""
    eid = economy_id(economy)
    spend = parse_amount(max_spend, "--max-spend")
    data = _read_input(input_file)
    key = load_wallet(wallet_name or _default_wallet())
    meter = _Meter()
    with connect(ctx) as client:
        info = client.economy_get(eid)
        d, sym = info.decimals, info.symbol
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=stderr(),
            transient=True,
        ) as progress:
            task = progress.add_task(f"{runtime}: starting", total=None)

            def on_answer(answer: Answer, decision: Pay | Stop | Failed | None) -> None:
                meter.update(answer, decision)
                progress.update(task, description=f"{runtime}: {meter.line(d, sym)}")

            outcome = client.buy_compute(
                key,
                eid,
                runtime,
                data,
                max_spend=spend,
                poll_s=poll,
                timeout_s=timeout,
                on_answer=on_answer,
            )
            view = None
            if not no_settle:

                def waiting(v: ChannelView) -> None:
                    progress.update(
                        task, description=f"{runtime}: done; waiting for the provider's close"
                    )

                view = settle(client, key, outcome.channel, timeout_s=timeout, on_wait=waiting)
    problem = _why_not(outcome)
    if as_json:
        print_json(_outcome_json(outcome, view, meter.vouchers))
        if problem is not None:
            raise fail(problem.reason, problem.detail)
        return
    if problem is not None:  # one line: what stopped it, what was paid, where
        where = "settled" if view is not None else "left to the provider to close"
        raise fail(
            problem.reason,
            f"{problem.detail} (paid {format_amount(outcome.paid, d)} {sym}; channel "
            f"{hex_out(outcome.channel)} {where})",
        )
    err = stderr()
    report = outcome.report
    if report is not None:
        err.print(
            Text(
                f"job {short(hex_out(outcome.job.id))}: cpu {report.usage.cpu_ms / 1000:.3f} s, "
                f"wall {report.usage.wall_ms / 1000:.3f} s, price "
                f"{format_amount(report.price, d)} {sym} ({report.price}), "
                f"{meter.vouchers} vouchers signed"
            )
        )
    if view is not None:
        err.print(Text(_settled_line(view, d, sym)))
    else:
        err.print(Text(f"channel {hex_out(outcome.channel)} left to the provider to close"))
    if output_file is not None:
        try:
            output_file.write_bytes(outcome.output)
        except OSError as exc:
            raise fail("bad_output", f"{output_file}: {exc.strerror or exc}") from None
        err.print(Text(f"output: {len(outcome.output)} bytes written to {output_file}"))
    else:
        sys.stdout.buffer.write(outcome.output)
        sys.stdout.buffer.flush()


def _settled_line(view: ChannelView, d: int, sym: str) -> str:
    what = {"channel.close": "closed by the provider", "channel.refund": "refunded"}
    how = what.get(view.settlement or "", view.settlement or "settled")
    return (
        f"channel {short(hex_out(view.id))} {how}: "
        f"{format_amount(view.to_provider or 0, d)} {sym} to the provider, "
        f"{format_amount(view.to_consumer or 0, d)} {sym} back"
    )


# -- channels, close, refund ---------------------------------------------------------------------


def _state(view: ChannelView) -> str:
    if view.settled_by is None:
        return "open"
    return {"channel.close": "closed", "channel.refund": "refunded"}.get(
        view.settlement or "", "settled"
    )


def _channel_json(view: ChannelView) -> dict[str, Any]:
    return {**view.to_json(), "state": _state(view)}


@compute.command("channels")
@click.argument("account")
@economy_option
@click.option("--limit", type=click.IntRange(1, 1000), default=None, help="At most this many.")
@rpc_options
@json_option
@click.pass_context
def compute_channels(
    ctx: click.Context, account: str, economy: str, limit: int | None, as_json: bool
) -> None:
    """List the channels ACCOUNT (a wallet or a did:key) pays or is paid by."""
    eid = economy_id(economy)
    did = account_did(account, "account")
    with connect(ctx) as client:
        info = client.economy_get(eid)
        views = client.channel_list(eid, did, limit=limit)
    if as_json:
        print_json([_channel_json(v) for v in views])
        return
    if not views:
        stdout().print(Text(f"no channels of {account} in {info.name}"))
        return
    d = info.decimals
    table = Table(
        "channel", "role", "counterparty", "state", "amount", "escrow", "paid", "back",
        "expires", title=f"channels of {account} in {info.name} ({info.symbol})",
        title_justify="left",
    )  # fmt: skip
    for v in views:
        mine = v.consumer == did
        table.add_row(
            hex_out(v.id),
            "consumer" if mine else "provider",
            v.provider if mine else v.consumer,
            _state(v),
            format_amount(v.amount, d),
            format_amount(v.escrow, d),
            "-" if v.to_provider is None else format_amount(v.to_provider, d),
            "-" if v.to_consumer is None else format_amount(v.to_consumer, d),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.expiry_ms / 1000)),
        )
    stdout().print(table)


@compute.command("close")
@click.argument("channel")
@rpc_options
@json_option
@click.pass_context
def compute_close(ctx: click.Context, channel: str, as_json: bool) -> None:
    """Show how CHANNEL settles (the provider's node closes it by itself)."""
    cid = _hex_id(channel, "channel")
    with connect(ctx) as client:
        view = client.channel_get(cid)
        info = client.economy_get(view.economy)
    if as_json:
        print_json(_channel_json(view))
    if view.settled_by is None:
        raise fail(
            "provider_closes",
            f"channel {hex_out(cid)} is open: the provider's node closes it by itself with the "
            "newest voucher once the job's final voucher came, before the channel expires "
            "(there is no RPC to ask it sooner); after "
            + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(view.refund_after_ms / 1000))
            + " the consumer may refund it (compute refund)",
        )
    if not as_json:
        stdout().print(Text(_settled_line(view, info.decimals, info.symbol)))


@compute.command("refund")
@click.argument("channel")
@click.option("--wallet", "wallet_name", default=None, help="The consumer's wallet.")
@click.option("--release", default=None, metavar="HEX", help="The provider's signed release (hex).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the certificate.",
)
@rpc_options
@json_option
@click.pass_context
def compute_refund(
    ctx: click.Context,
    channel: str,
    wallet_name: str | None,
    release: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Take back CHANNEL's escrow: after its refund time, or with a release."""
    cid = _hex_id(channel, "channel")
    signed_release = None
    if release is not None:
        try:
            signed_release = SignedRelease.decode(hex_in(release, "release"))
        except ParamError as exc:
            raise fail("invalid_params", f"--release: {exc.detail}") from None
        except Refused as exc:
            raise fail(exc.reason.value, f"--release: {exc.detail}") from None
    key = load_wallet(wallet_name or _default_wallet())
    with connect(ctx) as client:
        entry = client.refund_channel(key, cid, release=signed_release)
        status = client.wait(entry, timeout=timeout)
        if not status.certified:
            raise fail(status.reason or "refused", status.detail or "the refund was refused")
        view = client.channel_get(cid)
        info = client.economy_get(view.economy)
    if as_json:
        print_json({"refund": hex_out(entry), **_channel_json(view)})
        return
    stdout().print(hex_out(entry))
    stdout().print(Text(_settled_line(view, info.decimals, info.symbol), style="green"))


# -- jobs ----------------------------------------------------------------------------------------


def _answer_json(answer: ComputeAnswer) -> dict[str, Any]:
    out = answer.to_json()
    out.pop("frame", None)
    return out


@compute.command("jobs")
@click.argument("job_ids", nargs=-1, metavar="[JOB]...")
@rpc_options
@json_option
@click.pass_context
def compute_jobs(ctx: click.Context, job_ids: tuple[str, ...], as_json: bool) -> None:
    """What the node does for compute; with JOB ids, each relayed job's newest answer."""
    ids = [_hex_id(j, "job") for j in job_ids]
    answers: list[tuple[bytes, ComputeAnswer | ClientError]] = []
    with connect(ctx) as client:
        node = client.node_info()
        for job in ids:
            try:
                frame = client.compute_job_status(job)
                answers.append((job, ComputeAnswer.of(job, frame.encode())))
            except ClientError as exc:
                answers.append((job, exc))
    info = node.compute
    if as_json:
        print_json(
            {
                "compute": None if info is None else info.to_json(),
                "jobs": [
                    {"job": hex_out(j), "error": a.reason, "detail": a.detail}
                    if isinstance(a, ClientError)
                    else _answer_json(a)
                    for j, a in answers
                ],
            }
        )
    else:
        out = stdout()
        if info is None:
            out.print(Text("this node reports no compute"))
        else:
            runs = ", ".join(info.runtimes) if info.enabled and info.runtimes else "none"
            out.print(Text(f"runtimes      {runs}"))
            why = f"  ({info.metering_why})" if info.metering_why else ""
            out.print(Text(f"metering      {info.metering or 'none'}{why}"))
            out.print(Text(f"running here  {info.running}"))
            out.print(Text(f"relayed       {info.relayed}"))
        if answers:
            table = Table("job", "kind", "seq", "cpu-s", "wall-s", "price", "outcome / reason")
            for j, a in answers:
                if isinstance(a, ClientError):
                    table.add_row(hex_out(j), "-", "-", "-", "-", "-", a.reason)
                    continue
                table.add_row(
                    hex_out(j),
                    a.kind,
                    "-" if a.seq is None else str(a.seq),
                    _seconds(a.cpu_ms),
                    _seconds(a.wall_ms),
                    "-" if a.price is None else str(a.price),
                    a.outcome or a.reason or "",
                )
            out.print(table)
    failed = [(j, a) for j, a in answers if isinstance(a, ClientError)]
    if failed:
        j, a = failed[0]
        raise fail(a.reason, f"job {hex_out(j)}: {a.detail}")
