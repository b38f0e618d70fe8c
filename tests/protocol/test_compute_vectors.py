"""The checked-in compute vectors (``tests/vectors/compute.json``) agree with
the code byte for byte, and each stands on its own: bytes decode to the
fields listed, ids and messages recompute with ``hashlib`` from the
documented prefixes, signatures verify with libsodium directly, frames
re-frame with a hand-written varint, prices recompute from the formula, and
the rules' decisions recompute from the vectors' own data.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from hashlib import blake2b
from typing import Any

from nacl.signing import VerifyKey

from mycelia.protocol import SigningKey, codec
from mycelia.protocol.channels import SignedVoucher
from mycelia.protocol.compute import consumer_decide, consumer_result, provider_decide
from mycelia.protocol.compute_frames import Job, ResultFrame, decode_frame
from mycelia.protocol.offer_book import decode_offer_batch
from mycelia.protocol.offers import SignedOffer
from mycelia.protocol.pricing import Prices, Usage, cost
from mycelia.protocol.usage import SignedUsage
from tests.vectors.generate import seed
from tests.vectors.generate_compute import PATH, render

V = json.loads(PATH.read_text())
LIMIT_FIELDS = ("max_cpu_ms", "max_wall_ms", "reserved_mib", "max_input_bytes", "max_output_bytes")
H = bytes.fromhex


def b2b(data: bytes) -> bytes:
    return blake2b(data, digest_size=32).digest()


def test_file_matches_the_code() -> None:
    # If this fails after an intended encoding change, run
    # `python -m tests.vectors.generate_compute`.
    assert PATH.read_text() == render()


def test_domains_are_the_documented_prefixes() -> None:
    for what in ("offer", "usage", "job", "job-input"):
        d = V["domains"][what]
        assert H(d["id_prefix"]) == f"mycelia/{what}/1\0".encode()
        assert H(d["sig_prefix"]) == f"mycelia/sig/{what}/1\0".encode()


def test_the_provider_key_derives_from_its_label() -> None:
    k = V["keys"]["provider"]
    assert H(k["seed"]) == seed(k["seed_label"])
    assert SigningKey(H(k["seed"])).public == H(k["public"])
    assert H(V["economy"]["id"]) == seed(V["economy"]["label"])
    assert H(V["channel"]["id"]) == seed(V["channel"]["label"])


def _signed(vector: dict[str, Any], what: str) -> None:
    """id, message and signature of a vector, from its bytes alone."""
    data = H(vector["bytes"])
    assert H(vector["id"]) == b2b(f"mycelia/{what}/1\0".encode() + data)
    message = f"mycelia/sig/{what}/1\0".encode() + H(vector["id"])
    assert H(vector["signed_message"]) == message
    VerifyKey(H(V["keys"]["provider"]["public"])).verify(message, H(vector["signature"]))


def test_the_offer() -> None:
    v = V["offer"]
    _signed(v, "offer")
    signed = SignedOffer.decode(H(v["signed_offer"]))
    assert signed.verify() == H(v["id"])
    o = signed.offer
    assert o.encode() == H(v["bytes"])
    f = v["fields"]
    assert [o.economy.hex(), o.provider.hex(), o.seq, o.issued_ms, o.expires_ms] == [
        f["economy"],
        f["provider"],
        f["seq"],
        f["issued_ms"],
        f["expires_ms"],
    ]
    assert (o.peer, list(o.addrs), o.credit_window, o.grace_ms) == (
        f["peer"],
        f["addrs"],
        f["credit_window"],
        f["grace_ms"],
    )
    for r, rf in zip(o.runtimes, f["runtimes"], strict=True):
        assert r.name == rf["name"]
        assert r.limits.to_wire() == [rf["limits"][k] for k in LIMIT_FIELDS]
        p = rf["prices"]
        assert r.prices.to_wire() == [p["fee"], p["per_cpu_ms"], p["per_mib_s"], p["per_wall_s"]]
    # The signed offer is the documented array around the offer's bytes.
    assert codec.decode(H(v["signed_offer"])) == [
        "signed-offer",
        1,
        codec.decode(H(v["bytes"])),
        H(v["signature"]),
    ]


def test_the_job() -> None:
    v = V["job"]
    data = H(v["bytes"])
    assert H(v["id"]) == b2b(b"mycelia/job/1\0" + data)
    job = Job.from_wire(codec.decode(data))
    assert job.encode() == data
    assert job.id == H(v["id"])
    assert job.base == v["fields"]["base"]
    assert job.input.to_wire() == ["inline", H(v["fields"]["input"]["inline"])]
    h = v["hashed_input"]
    assert H(h["digest"]) == b2b(b"mycelia/job-input/1\0" + b"\x00" * h["size"])
    hashed = Job.from_wire(codec.decode(H(h["job_bytes"])))
    assert hashed.input.to_wire() == ["hash", H(h["digest"]), h["size"]]


def test_the_usage_reports() -> None:
    for v in V["usage"]["reports"]:
        _signed(v, "usage")
        signed = SignedUsage.decode(H(v["signed_usage"]))
        assert signed.verify(H(V["keys"]["provider"]["public"])) == H(v["id"])
        r = signed.report
        f = v["fields"]
        assert r.to_wire()[2:] == [
            H(f["economy"]),
            H(f["provider"]),
            H(f["offer"]),
            H(f["job"]),
            H(f["channel"]),
            f["seq"],
            f["cpu_ms"],
            f["wall_ms"],
            f["mib_ms"],
            f["peak_bytes"],
            f["price"],
            f["final"],
        ]
        assert H(f["offer"]) == H(V["offer"]["id"])
        assert H(f["job"]) == H(V["job"]["id"])


def _uvarint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def test_the_frames() -> None:
    assert [f["tag"] for f in V["frames"]] == [
        "JOB",
        "VOUCHER",
        "POLL",
        "CANCEL",
        "USAGE",
        "RESULT",
        "ERROR",
    ]
    for v in V["frames"]:
        payload = H(v["payload"])
        assert H(v["framed"]) == _uvarint(len(payload)) + payload
        f = decode_frame(payload)
        assert f.tag == v["tag"]
        assert f.encode() == payload
        assert codec.decode(payload)[:2] == [v["tag"], 1]
    job_id = H(V["job"]["id"])
    job_frame, voucher, poll, cancel = (codec.decode(H(v["payload"])) for v in V["frames"][:4])
    assert job_frame == ["JOB", 1, codec.decode(H(V["job"]["bytes"]))]
    assert voucher[2] == poll[2] == cancel[2] == job_id  # every later request names its job
    assert SignedVoucher.decode(voucher[3]).voucher.channel == H(V["channel"]["id"])


def test_the_offer_batch() -> None:
    b = V["offer_batch"]
    assert b["topic"] == "/mycelia/offers/1/" + V["economy"]["id"]
    assert codec.decode(H(b["bytes"])) == ["offers", 1, [H(V["offer"]["signed_offer"])]]
    (only,) = decode_offer_batch(H(b["bytes"]))
    assert only.encode() == H(V["offer"]["signed_offer"])


def test_the_prices_follow_the_formula() -> None:
    for case in V["pricing"]:
        p, u = case["prices"], case["usage"]
        exact = (
            p["fee"]
            + u["cpu_ms"] * p["per_cpu_ms"]
            + Fraction(u["mib_ms"] * p["per_mib_s"] + u["wall_ms"] * p["per_wall_s"], 1000)
        )
        assert case["price"] == math.ceil(exact)
        prices = Prices(p["fee"], p["per_cpu_ms"], p["per_mib_s"], p["per_wall_s"])
        assert cost(prices, Usage(u["cpu_ms"], u["wall_ms"], u["mib_ms"])) == case["price"]
    # The last case's products pass 64 bits before the division: an
    # implementation needs wider (128-bit) intermediates.
    last = V["pricing"][-1]
    assert last["usage"]["mib_ms"] * last["prices"]["per_mib_s"] >= 1 << 64


def test_the_rules_decide_as_recorded() -> None:
    offer = SignedOffer.decode(H(V["offer"]["signed_offer"])).offer
    job = Job.from_wire(codec.decode(H(V["job"]["bytes"])))
    reports = [SignedUsage.decode(H(r["signed_usage"])) for r in V["usage"]["reports"]]
    result = decode_frame(H(V["frames"][5]["payload"]))
    assert isinstance(result, ResultFrame)
    for case in V["consumer"]:
        previous = None if case["previous"] is None else reports[case["previous"]].report
        new = reports[case["report"]]
        kw = {"escrow": case["escrow"], "max_spend": case["max_spend"]}
        if new.report.final:
            assert result.usage == new
            d: Any = consumer_result(offer, job, previous, result, **kw)
        else:
            d = consumer_decide(offer, job, previous, new, **kw)
        expected = case["decision"]
        if "pay" in expected:
            assert d.amount == expected["pay"] == job.base + new.report.price
        else:
            assert (d.reason.value, d.detail) == (expected["stop"], expected["detail"])
    for case in V["provider"]:
        d = provider_decide(
            offer,
            price=case["price"],
            voucher=case["voucher"],
            base=case["base"],
            over_since_ms=case["over_since_ms"],
            now_ms=case["now_ms"],
        )
        assert {
            "action": d.action.value,
            "unpaid": d.unpaid,
            "over_since_ms": d.over_since_ms,
        } == case["decision"]
        assert d.unpaid == case["base"] + case["price"] - case["voucher"]
