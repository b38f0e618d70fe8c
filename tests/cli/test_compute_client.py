"""The client's compute flows (``mycelia.client.compute``) against ``FakeNode``
and its in-memory providers: a job bought and paid to the minor unit, the
consumer's rule stopping payment (and cancelling) on a lying provider, a
lying node caught, offer choice, and the refund of a channel the provider
never closed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mycelia.client import Client, ClientError, Endpoint, VerifyError
from mycelia.protocol import Reason
from mycelia.protocol.channels import REFUND_SKEW_MS, Release
from mycelia.protocol.compute import Pay
from mycelia.protocol.compute_frames import CancelFrame, ErrorFrame, UsageFrame, VoucherFrame
from mycelia.protocol.offers import Runtime
from mycelia.protocol.pricing import Prices, price
from mycelia.testing.economies import World, key
from tests.cli.fakecompute import (
    LIMITS,
    PRICES,
    FakeProvider,
    inflate_price,
    now_ms,
    regress_counters,
)
from tests.cli.fakenode import COOKIE, FakeNode

ALICE = key(1)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def fake(world: World) -> FakeNode:
    return FakeNode(world)


@pytest.fixture
def client(fake: FakeNode) -> Client:
    return Client(Endpoint("http://127.0.0.1:8645", None, COOKIE), transport=fake.transport())


def vouchers(provider: FakeProvider) -> list[int]:
    from mycelia.protocol.channels import SignedVoucher

    return [
        SignedVoucher.decode(r.voucher).voucher.cumulative
        for r in provider.requests
        if isinstance(r, VoucherFrame)
    ]


def test_a_job_bought_end_to_end_is_paid_its_metered_price(
    world: World, fake: FakeNode, client: Client
) -> None:
    provider = fake.provider(FakeProvider(world))
    offer = provider.offer()
    seen: list[Any] = []
    outcome = client.buy_compute(
        ALICE,
        world.id,
        "python",
        b"hello",
        max_spend=500,
        poll_s=0,
        on_answer=lambda a, d: seen.append(d),
    )
    assert outcome.ok
    assert outcome.output == b"olleh"
    assert outcome.offer == offer.offer
    result = outcome.result
    assert result is not None
    final = result.usage.report
    assert final.final
    assert final.price == price(offer.offer, "python", final.usage) == outcome.price
    assert outcome.paid == final.price
    # Every voucher paid a report the provider signed, in order, the last the final.
    paid = vouchers(provider)
    assert paid == sorted(paid)
    assert paid[0] == PRICES.fee
    assert paid[-1] == final.price
    assert [d.amount for d in seen if isinstance(d, Pay)] == paid
    # The channel: opened by the wallet for max_spend, to the offer's provider.
    channel = client.channel_get(outcome.channel)
    assert channel.amount == 500
    assert channel.provider == provider.key.did
    assert channel.consumer == ALICE.did
    assert channel.offer == offer.id
    assert channel.settled_by is None  # the provider closes; this one does not
    job = provider.jobs[outcome.job.id]
    assert job.held == final.price  # it holds the final voucher


@pytest.mark.parametrize(
    ("lie", "reason"),
    [(inflate_price, Reason.PRICE_MISMATCH), (regress_counters, Reason.USAGE_REGRESSED)],
)
def test_the_consumer_stops_paying_and_cancels_when_the_provider_lies(
    world: World, fake: FakeNode, client: Client, lie: Any, reason: Reason
) -> None:
    provider = fake.provider(FakeProvider(world, steps=5, lie=lie))
    provider.offer()
    outcome = client.buy_compute(ALICE, world.id, "python", b"data", max_spend=500, poll_s=0)
    assert not outcome.ok
    assert outcome.stop is not None
    assert outcome.stop.reason is reason
    assert outcome.result is None
    paid = vouchers(provider)
    assert paid  # the honest reports before the lie were paid ...
    report = outcome.report
    assert report is not None
    assert outcome.paid == paid[-1] == report.price  # ... exactly, the last accepted one
    assert report.price == price(outcome.offer, "python", report.usage)  # an honest report
    # ... and nothing after the lie came back: the one request left is CANCEL.
    requests = provider.requests
    last = max(i for i, r in enumerate(requests) if isinstance(r, VoucherFrame))
    assert requests[last + 1 :] == [CancelFrame(outcome.job.id)]
    assert provider.jobs[outcome.job.id].ended  # cancelled


def test_a_consumer_never_pays_past_its_max_spend(
    world: World, fake: FakeNode, client: Client
) -> None:
    provider = fake.provider(FakeProvider(world, steps=50))
    provider.offer()
    outcome = client.buy_compute(ALICE, world.id, "python", b"x", max_spend=300, poll_s=0)
    assert outcome.stop is not None
    assert outcome.stop.reason in (Reason.OVER_MAX_SPEND, Reason.OVER_ESCROW)
    assert 0 < outcome.paid <= 300
    assert max(vouchers(provider)) <= 300


def test_the_cheapest_fitting_offer_is_chosen(world: World, fake: FakeNode, client: Client) -> None:
    dear = fake.provider(FakeProvider(world, key=key(31, "dear")))
    cheap = fake.provider(FakeProvider(world, key=key(32, "cheap")))
    small = fake.provider(FakeProvider(world, key=key(33, "small")))
    dear.offer(Runtime("python", LIMITS, dataclasses.replace(PRICES, per_cpu_ms=5)))
    chosen = cheap.offer(Runtime("python", LIMITS, PRICES))
    tight = dataclasses.replace(LIMITS, max_wall_ms=1_000)
    small.offer(Runtime("python", tight, Prices(0, 0, 0, 0)))  # too short for the job
    outcome = client.buy_compute(
        ALICE, world.id, "python", b"x", max_spend=500, limits=LIMITS, poll_s=0
    )
    assert outcome.offer == chosen.offer
    assert not dear.jobs
    assert not small.jobs
    with pytest.raises(ClientError) as exc:
        client.buy_compute(ALICE, world.id, "java", b"x", max_spend=500, poll_s=0)
    assert exc.value.reason == "no_offer"
    with pytest.raises(ClientError) as exc:
        client.buy_compute(
            ALICE, world.id, "python", b"x", max_spend=PRICES.fee - 1, limits=LIMITS, poll_s=0
        )
    assert exc.value.reason == "no_offer"  # not even the fee


def test_a_node_that_lies_about_offers_jobs_or_answers_is_caught(
    world: World, fake: FakeNode, client: Client
) -> None:
    provider = fake.provider(FakeProvider(world))
    offer = provider.offer()
    # An offer whose view is not its signed bytes.
    fake.lie["compute_offers"] = lambda p: [
        {**fake.answer("compute_offers", p)[0], "credit_window": "999999"}
    ]
    with pytest.raises(VerifyError):
        client.compute_offers(world.id)
    del fake.lie["compute_offers"]
    assert [o.id for o in client.compute_offers(world.id)] == [offer.id]
    channel = client.open_channel(ALICE, world.id, provider.key.did, 400, now_ms() + 3_600_000)
    # A job other than the one asked for (another runtime's limits).
    honest_start = fake.m_compute_job_start

    def other_job(p: dict[str, Any]) -> Any:
        answer = honest_start(
            bytes.fromhex(p["offer"][2:]),
            bytes.fromhex(p["channel"][2:]),
            p["runtime"],
            bytes.fromhex(p["input"][2:]) + b"!",
        )
        return answer

    fake.lie["compute_job_start"] = other_job
    with pytest.raises(VerifyError):
        client.compute_job_start(offer.offer, channel, "python", b"in")
    del fake.lie["compute_job_start"]
    job, first = client.compute_job_start(offer.offer, channel, "python", b"in")
    assert isinstance(first, UsageFrame)
    # An answer whose view says another price than its frame.
    fake.lie["compute_job_status"] = lambda p: {
        **fake.answer("compute_job_status", p),
        "price": "1",
    }
    with pytest.raises(VerifyError):
        client.compute_job_status(job.id)


def test_a_channel_the_provider_never_closed_is_refunded_after_expiry(
    world: World, fake: FakeNode, client: Client
) -> None:
    provider = fake.provider(FakeProvider(world))
    provider.offer()
    expiry = now_ms() + 60_000
    channel = client.open_channel(ALICE, world.id, provider.key.did, 400, expiry)
    assert client.wait(channel).certified
    assert client.account_get(world.id, ALICE.did).balance == -400
    # Before expiry plus the skew margin: refused, not final (the clock moves).
    early = client.refund_channel(ALICE, channel, ts_ms=expiry + REFUND_SKEW_MS)
    status = client.wait(early)
    assert (status.status, status.reason, status.retryable) == (
        "refused",
        "channel_not_expired",
        True,
    )
    assert client.channel_get(channel).escrow == 400
    late = client.refund_channel(ALICE, channel, ts_ms=expiry + REFUND_SKEW_MS + 1)
    assert client.wait(late).certified
    view = client.channel_get(channel)
    assert (view.settled_by, view.settlement, view.to_consumer) == (late, "channel.refund", 400)
    assert client.account_get(world.id, ALICE.did).balance == 0
    with pytest.raises(ClientError) as exc:
        client.refund_channel(ALICE, channel)
    assert exc.value.reason == "channel_settled"


def test_a_release_refunds_at_once(world: World, fake: FakeNode, client: Client) -> None:
    provider = fake.provider(FakeProvider(world))
    channel = client.open_channel(ALICE, world.id, provider.key.did, 300, now_ms() + 3_600_000)
    assert client.wait(channel).certified
    release = Release(world.id, channel, 120).sign(provider.key)
    refund = client.refund_channel(ALICE, channel, release=release)
    assert client.wait(refund).certified
    view = client.channel_get(channel)
    assert (view.to_provider, view.to_consumer) == (120, 180)
    # A settled channel pays for no job: the provider refuses it.
    offer = provider.offer()
    _, answer = client.compute_job_start(offer.offer, channel, "python", b"x")
    assert isinstance(answer, ErrorFrame)
    assert answer.code == "channel_settled"
