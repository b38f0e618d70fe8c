"""Build the compute protocol test vectors (``tests/vectors/compute.json``).

Run ``python -m tests.vectors.generate_compute`` only when an encoding
change is intended; ``tests/protocol/test_compute_vectors.py`` fails while
the file and the code disagree.

For implementers in another language (``docs/compute-protocol.md`` has the
rules): the provider's key comes from a fixed seed (``seed(label)`` =
BLAKE2b-256 of the label, as in ``generate.py``); the economy and channel
ids are BLAKE2b-256 of their labels too (any 32 bytes would do). Ed25519
signatures are deterministic, so they are vectors as well. The file gives:

* ``offer``: the fields, the canonical bytes, the id, the exact message
  signed, the signature and the signed offer's bytes;
* ``job``: an inline-input job's fields, bytes and id; a hashed input's
  digest;
* ``usage``: three reports of one job (the fee-only first one, one after a
  few seconds, the final one), each with its fields, bytes, id, message,
  signature and signed-report bytes;
* ``frames``: one of each frame type — the four requests, then the three
  answers: the payload and the length-prefixed bytes on the stream;
* ``offer_batch``: a gossip message with the offer, and its topic;
* ``pricing``: prices, counters and the exact price, including the
  rounding edges;
* ``consumer`` and ``provider``: decisions of the two rules on the reports
  above (pay an amount, or stop with a reason; continue, freeze or kill).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from mycelia.protocol import SigningKey
from mycelia.protocol.channels import Voucher
from mycelia.protocol.compute import consumer_decide, consumer_result, provider_decide
from mycelia.protocol.compute_frames import (
    CancelFrame,
    ErrorFrame,
    Frame,
    HashInput,
    InlineInput,
    Job,
    JobFrame,
    PollFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
    input_digest,
)
from mycelia.protocol.domains import COMPUTE_JOB, COMPUTE_JOB_INPUT, COMPUTE_OFFER, COMPUTE_USAGE
from mycelia.protocol.framing import frame
from mycelia.protocol.offer_book import encode_offer_batch, offers_topic
from mycelia.protocol.offers import Limits, Offer, Runtime
from mycelia.protocol.pricing import Prices, Usage, cost, price
from mycelia.protocol.reasons import Reason
from mycelia.protocol.usage import NO_PEAK, SignedUsage, UsageReport
from tests.vectors.generate import TS, seed

PATH = Path(__file__).with_name("compute.json")
PROVIDER_LABEL = "mycelia-vector/compute-provider"
ECONOMY_LABEL = "mycelia-vector/compute-economy"
CHANNEL_LABEL = "mycelia-vector/compute-channel"
PEER = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE"


def _limits(lim: Limits) -> dict[str, int]:
    return {
        "max_cpu_ms": lim.max_cpu_ms,
        "max_wall_ms": lim.max_wall_ms,
        "reserved_mib": lim.reserved_mib,
        "max_input_bytes": lim.max_input_bytes,
        "max_output_bytes": lim.max_output_bytes,
    }


def _prices(p: Prices) -> dict[str, int]:
    return {
        "fee": p.fee,
        "per_cpu_ms": p.per_cpu_ms,
        "per_mib_s": p.per_mib_s,
        "per_wall_s": p.per_wall_s,
    }


def _usage(u: Usage) -> dict[str, int]:
    return {"cpu_ms": u.cpu_ms, "wall_ms": u.wall_ms, "mib_ms": u.mib_ms}


def _offer_vector(o: Offer, key: SigningKey) -> dict[str, Any]:
    signed = o.sign(key)
    return {
        "fields": {
            "economy": o.economy.hex(),
            "provider": o.provider.hex(),
            "seq": o.seq,
            "issued_ms": o.issued_ms,
            "expires_ms": o.expires_ms,
            "peer": o.peer,
            "addrs": list(o.addrs),
            "runtimes": [
                {"name": r.name, "limits": _limits(r.limits), "prices": _prices(r.prices)}
                for r in o.runtimes
            ],
            "credit_window": o.credit_window,
            "grace_ms": o.grace_ms,
        },
        "bytes": o.encode().hex(),
        "id": o.id.hex(),
        "signed_message": COMPUTE_OFFER.message(o.id).hex(),
        "signature": signed.signature.hex(),
        "signed_offer": signed.encode().hex(),
    }


def _report_vector(signed: SignedUsage) -> dict[str, Any]:
    r = signed.report
    return {
        "fields": {
            "economy": r.economy.hex(),
            "provider": r.provider.hex(),
            "offer": r.offer.hex(),
            "job": r.job.hex(),
            "channel": r.channel.hex(),
            "seq": r.seq,
            **_usage(r.usage),
            "peak_bytes": r.peak_bytes,
            "price": r.price,
            "final": int(r.final),
        },
        "bytes": r.encode().hex(),
        "id": r.id.hex(),
        "signed_message": COMPUTE_USAGE.message(r.id).hex(),
        "signature": signed.signature.hex(),
        "signed_usage": signed.encode().hex(),
    }


def _frame_vector(f: Frame) -> dict[str, str]:
    payload = f.encode()
    return {"tag": f.tag, "payload": payload.hex(), "framed": frame(payload).hex()}


def build() -> dict[str, Any]:
    provider = SigningKey(seed(PROVIDER_LABEL))
    economy = seed(ECONOMY_LABEL)
    channel = seed(CHANNEL_LABEL)

    python = Runtime(
        "python3",
        Limits(
            max_cpu_ms=120_000,
            max_wall_ms=300_000,
            reserved_mib=512,
            max_input_bytes=1 << 20,
            max_output_bytes=1 << 16,
        ),
        Prices(fee=100, per_cpu_ms=2, per_mib_s=1, per_wall_s=5),
    )
    wasm = Runtime(
        "wasm-small",
        Limits(10_000, 20_000, 64, 65_536, 4_096),
        Prices(fee=0, per_cpu_ms=1, per_mib_s=0, per_wall_s=0),
    )
    offer = Offer(
        economy=economy,
        provider=provider.public,
        seq=1,
        issued_ms=TS,
        expires_ms=TS + 3_600_000,
        peer=PEER,
        addrs=("/ip4/192.0.2.10/tcp/4001", "/ip6/2001:db8::10/tcp/4001"),
        runtimes=(python, wasm),
        credit_window=20_000,
        grace_ms=10_000,
    )
    signed_offer = offer.sign(provider)

    job = Job(
        economy=economy,
        offer=offer.id,
        channel=channel,
        base=2_500,
        nonce=bytes(range(16)),
        runtime="python3",
        limits=Limits(60_000, 120_000, 256, 4_096, 4_096),
        input=InlineInput(b"print(6 * 7)\n"),
    )
    big_input = b"\x00" * 100_000
    hashed = HashInput(input_digest(big_input), len(big_input))

    def report(seq: int, usage: Usage, final: bool, peak: int) -> SignedUsage:
        return UsageReport(
            economy,
            provider.public,
            offer.id,
            job.id,
            channel,
            seq,
            usage,
            peak,
            price(offer, job.runtime, usage),
            final,
        ).sign(provider)

    reports = [
        report(1, Usage(), False, NO_PEAK),
        report(2, Usage(cpu_ms=1_480, wall_ms=2_001, mib_ms=256 * 2_001), False, 41_943_040),
        report(3, Usage(cpu_ms=2_950, wall_ms=3_400, mib_ms=256 * 3_400), True, 52_428_800),
    ]
    result = ResultFrame(0, "completed", b"42\n", reports[2])
    # The consumer's voucher for the final price (protocol/channels.py's bytes).
    consumer = SigningKey(seed("compute consumer"))
    voucher = Voucher(economy, channel, reports[2].report.price).sign(consumer).encode()

    frames: list[Frame] = [
        JobFrame(job),
        VoucherFrame(job.id, voucher),
        PollFrame(job.id),
        CancelFrame(job.id),
        UsageFrame(reports[1]),
        result,
        ErrorFrame.of(Reason.UNKNOWN_JOB, "no job here"),
    ]

    kw = {"escrow": 100_000, "max_spend": 50_000}
    consumer = [
        {
            "about": "the first report: pay base + fee",
            "previous": None,
            "report": 0,
            **kw,
            "decision": _decision(consumer_decide(offer, job, None, reports[0], **kw)),
        },
        {
            "about": "two seconds later",
            "previous": 0,
            "report": 1,
            **kw,
            "decision": _decision(consumer_decide(offer, job, reports[0].report, reports[1], **kw)),
        },
        {
            "about": "the final report, from the RESULT",
            "previous": 1,
            "report": 2,
            **kw,
            "decision": _decision(consumer_result(offer, job, reports[1].report, result, **kw)),
        },
        {
            "about": "the first report seen is seq 2 (the JOB's answer was lost): paid",
            "previous": None,
            "report": 1,
            **kw,
            "decision": _decision(consumer_decide(offer, job, None, reports[1], **kw)),
        },
        {
            "about": "the same report again: out of order",
            "previous": 1,
            "report": 1,
            **kw,
            "decision": _decision(consumer_decide(offer, job, reports[1].report, reports[1], **kw)),
        },
        {
            "about": "more than the consumer will spend",
            "previous": 0,
            "report": 1,
            "escrow": 100_000,
            "max_spend": 3_582,
            "decision": _decision(
                consumer_decide(
                    offer, job, reports[0].report, reports[1], escrow=100_000, max_spend=3_582
                )
            ),
        },
        {
            "about": "more than the channel holds (base 2500 + price)",
            "previous": 0,
            "report": 1,
            "escrow": 6_000,
            "max_spend": 50_000,
            "decision": _decision(
                consumer_decide(
                    offer, job, reports[0].report, reports[1], escrow=6_000, max_spend=50_000
                )
            ),
        },
    ]
    provider_cases = []
    for price_, voucher_amount, over_since, now in [
        (3_583, 2_500, None, TS),  # report 2's price, nothing paid: within the window
        (30_000, 2_500, None, TS),  # over the window: freeze, from now
        (30_000, 2_500, TS, TS + 9_999),  # still within the grace
        (30_000, 2_500, TS, TS + 10_000),  # the grace is over: kill
        (30_000, 20_000, TS, TS + 10_000),  # paid enough: continue
    ]:
        d = provider_decide(
            offer,
            price=price_,
            voucher=voucher_amount,
            base=job.base,
            over_since_ms=over_since,
            now_ms=now,
        )
        provider_cases.append(
            {
                "price": price_,
                "voucher": voucher_amount,
                "base": job.base,
                "over_since_ms": over_since,
                "now_ms": now,
                "decision": {
                    "action": d.action.value,
                    "unpaid": d.unpaid,
                    "over_since_ms": d.over_since_ms,
                },
            }
        )

    p = python.prices
    pricing = [
        {"prices": _prices(p), "usage": _usage(u), "price": cost(p, u)}
        for u in [
            Usage(),
            Usage(cpu_ms=1),
            Usage(wall_ms=1),
            Usage(wall_ms=200),
            Usage(wall_ms=201),
            Usage(wall_ms=100, mib_ms=500),
            Usage(cpu_ms=1_480, wall_ms=2_001, mib_ms=256 * 2_001),
            Usage(cpu_ms=120_000, wall_ms=300_000, mib_ms=512 * 300_000),
        ]
    ]
    big = Prices(fee=7, per_cpu_ms=3_000_000_000, per_mib_s=999_999_937, per_wall_s=1)
    pricing.append(
        {
            "prices": _prices(big),
            "usage": _usage(Usage(cpu_ms=1_000_000, wall_ms=999_999, mib_ms=1_048_576 * 999_999)),
            "price": cost(big, Usage(1_000_000, 999_999, 1_048_576 * 999_999)),
        }
    )

    return {
        "about": (
            "mycelia compute protocol test vectors; see tests/vectors/generate_compute.py and "
            "docs/compute-protocol.md. Hex strings are bytes; 'report' and 'previous' index "
            "usage.reports."
        ),
        "domains": {
            d.what: {"id_prefix": d.id_prefix.hex(), "sig_prefix": d.sig_prefix.hex()}
            for d in (COMPUTE_OFFER, COMPUTE_USAGE, COMPUTE_JOB, COMPUTE_JOB_INPUT)
        },
        "keys": {
            "provider": {
                "seed_label": PROVIDER_LABEL,
                "seed": provider.seed.hex(),
                "public": provider.public.hex(),
            }
        },
        "economy": {"label": ECONOMY_LABEL, "id": economy.hex()},
        "channel": {"label": CHANNEL_LABEL, "id": channel.hex()},
        "offer": _offer_vector(offer, provider),
        "job": {
            "fields": {
                "economy": job.economy.hex(),
                "offer": job.offer.hex(),
                "channel": job.channel.hex(),
                "base": job.base,
                "nonce": job.nonce.hex(),
                "runtime": job.runtime,
                "limits": _limits(job.limits),
                "input": {"inline": b"print(6 * 7)\n".hex()},
            },
            "bytes": job.encode().hex(),
            "id": job.id.hex(),
            "hashed_input": {
                "about": "100000 zero bytes, passed by hash",
                "digest": hashed.digest.hex(),
                "size": hashed.size,
                "wire": _hex_wire(hashed.to_wire()),
                "job_bytes": dataclasses.replace(job, input=hashed).encode().hex(),
            },
        },
        "usage": {"reports": [_report_vector(r) for r in reports]},
        "frames": [_frame_vector(f) for f in frames],
        "offer_batch": {
            "topic": offers_topic(economy),
            "bytes": encode_offer_batch([signed_offer]).hex(),
        },
        "pricing": pricing,
        "consumer": consumer,
        "provider": provider_cases,
    }


def _hex_wire(value: list[Any]) -> list[Any]:
    return [v.hex() if isinstance(v, bytes) else v for v in value]


def _decision(d: Any) -> dict[str, Any]:
    if hasattr(d, "amount"):
        return {"pay": d.amount}
    return {"stop": d.reason.value, "detail": d.detail}


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    PATH.write_text(render())
    print(f"wrote {PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
