"""The ``/mycelia/compute/1`` frames (``protocol/compute_frames.py``), the
usage report's bytes (``protocol/usage.py``) and the length-prefixed
framing (``protocol/framing.py``): exact round trips, every refusal with its
reason, and decoders that refuse anything else without crashing.
"""

from __future__ import annotations

import dataclasses
from hashlib import blake2b
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import codec, keys
from mycelia.protocol.channels import Voucher
from mycelia.protocol.compute_frames import (
    FRAME_TYPES,
    MAX_DETAIL_BYTES,
    MAX_FRAME_BYTES,
    MAX_INLINE_INPUT_BYTES,
    MAX_SIGNED_VOUCHER_BYTES,
    CancelFrame,
    ErrorFrame,
    Frame,
    HashInput,
    InlineInput,
    JobFrame,
    PollFrame,
    ResultFrame,
    UsageFrame,
    VoucherFrame,
    decode_frame,
    input_digest,
)
from mycelia.protocol.domains import COMPUTE_USAGE
from mycelia.protocol.framing import MAX_VARINT_BYTES, FrameReader, frame, uvarint
from mycelia.protocol.offers import MAX_OUTPUT_BYTES
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.schema import INT64_MAX
from mycelia.protocol.usage import (
    MAX_SIGNED_USAGE_BYTES,
    MAX_USAGE_BYTES,
    MAX_USAGE_SEQ,
    SignedUsage,
    UsageReport,
)
from tests.protocol.compute_world import CONSUMER, PROVIDER, job, mid, offer, report

AN_OFFER = offer()
J = job(AN_OFFER)
USAGE = report(AN_OFFER, J, 2, mid(3))
FINAL = report(AN_OFFER, J, 3, mid(4), final=True)
VOUCHER = Voucher(AN_OFFER.economy, J.channel, 1234).sign(CONSUMER).encode()

FRAMES: list[Frame] = [
    JobFrame(J),
    JobFrame(job(AN_OFFER, input=HashInput(input_digest(b"x" * 5000), 5000))),
    UsageFrame(USAGE),
    VoucherFrame(J.id, VOUCHER),
    PollFrame(J.id),
    ResultFrame(0, "completed", b"42\n", FINAL),
    ResultFrame(-9, "unpaid", b"", FINAL),
    CancelFrame(J.id),
    ErrorFrame.of(Reason.PRICE_MISMATCH, "price 5, the offer's price is 4"),
]


def refused(reason: Reason, action: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as info:
        action(*args, **kw)
    assert info.value.reason is reason, info.value
    return info.value


def _raw(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


@pytest.mark.parametrize("f", FRAMES, ids=lambda f: f.tag)
def test_frames_round_trip(f: Frame) -> None:
    data = f.encode()
    assert codec.decode(data)[:2] == [f.tag, 1]
    assert decode_frame(data) == f
    assert decode_frame(data).encode() == data


def test_every_frame_type_is_listed() -> None:
    assert set(FRAME_TYPES) == {"JOB", "VOUCHER", "POLL", "CANCEL", "USAGE", "RESULT", "ERROR"}
    assert {type(f).tag for f in FRAMES} == set(FRAME_TYPES)


def test_job_id_and_input_digest() -> None:
    data = J.encode()
    assert codec.decode(data)[:2] == ["job", 1]
    assert J.id == blake2b(b"mycelia/job/1\0" + data, digest_size=32).digest()
    assert input_digest(b"abc") == blake2b(b"mycelia/job-input/1\0abc", digest_size=32).digest()
    assert InlineInput(b"abc").digest == input_digest(b"abc")
    assert job(AN_OFFER, nonce=bytes(16)).id != J.id  # the nonce tells equal jobs apart


def test_usage_report_bytes_id_and_signature() -> None:
    r = USAGE.report
    data = r.encode()
    assert codec.decode(data)[:2] == ["usage", 1]
    assert UsageReport.decode(data) == r
    assert r.id == blake2b(b"mycelia/usage/1\0" + data, digest_size=32).digest()
    assert keys.verify(PROVIDER.public, COMPUTE_USAGE, r.id, USAGE.signature)
    assert SignedUsage.decode(USAGE.encode()) == USAGE
    assert USAGE.verify(PROVIDER.public) == r.id == USAGE.id
    with pytest.raises(ValueError, match="provider"):
        r.sign(keys.SigningKey(bytes(32)))


def test_usage_size_bounds_are_the_widest_encoding() -> None:
    I = INT64_MAX  # noqa: E741
    wide = ["usage", 1, *[b"\xff" * 32] * 5, MAX_USAGE_SEQ, I, I, I, I, I, 1]
    assert len(codec.encode(wide)) == MAX_USAGE_BYTES
    assert len(codec.encode(["signed-usage", 1, wide, bytes(64)])) == MAX_SIGNED_USAGE_BYTES
    assert UsageReport.from_wire(wide).final is True


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"seq": 0}, Reason.MALFORMED),
        ({"seq": MAX_USAGE_SEQ + 1}, Reason.MALFORMED),
        ({"peak_bytes": -2}, Reason.MALFORMED),
        ({"price": -1}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"price": INT64_MAX + 1}, Reason.AMOUNT_OUT_OF_RANGE),
        ({"final": 1}, Reason.MALFORMED),
        ({"job": bytes(31)}, Reason.MALFORMED),
        ({"usage": (1, 2, 3)}, Reason.MALFORMED),
    ],
)
def test_usage_report_fields_are_bounded(changes: dict[str, Any], reason: Reason) -> None:
    refused(reason, dataclasses.replace, USAGE.report, **changes)


def test_usage_report_wire_refusals() -> None:
    wire = USAGE.report.to_wire()
    for i, bad in [(13, 2), (8, -1), (11, -2)]:
        w = list(wire)
        w[i] = bad
        refused(Reason.MALFORMED, UsageReport.decode, codec.encode(w))
    w = list(wire)
    w[12] = 10.0
    refused(Reason.NON_CANONICAL, UsageReport.decode, _raw(w))
    refused(Reason.TOO_LARGE, SignedUsage.decode, b"\x00" * (MAX_SIGNED_USAGE_BYTES + 1))


def test_a_report_from_another_provider_or_forged_is_refused() -> None:
    other = keys.SigningKey(bytes(32))
    refused(Reason.WRONG_JOB, USAGE.verify, other.public)
    forged = report(AN_OFFER, J, 2, mid(3), signer=other)
    refused(Reason.USAGE_BAD_SIG, forged.verify, PROVIDER.public)
    small_order = bytes([1]) + bytes(31)
    odd = report(AN_OFFER, J, 2, mid(3), provider=small_order)
    refused(Reason.BAD_KEY, odd.verify, small_order)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (codec.encode(["PING", 1]), Reason.UNKNOWN_FRAME),
        (codec.encode(["poll", 1, J.id]), Reason.UNKNOWN_FRAME),  # tags are upper case
        (codec.encode(["OFFER", 1, b""]), Reason.UNKNOWN_FRAME),  # offers travel by gossip
        (codec.encode([]), Reason.MALFORMED),
        (codec.encode(5), Reason.MALFORMED),
        (codec.encode([1, 1]), Reason.MALFORMED),
        (codec.encode(["CANCEL", 2, J.id]), Reason.MALFORMED),
        (codec.encode(["CANCEL", 1, 0]), Reason.MALFORMED),
        (codec.encode(["CANCEL", 1]), Reason.MALFORMED),  # names its job
        (codec.encode(["CANCEL", 1, bytes(31)]), Reason.MALFORMED),
        (codec.encode(["POLL", 1, J.id, 0]), Reason.MALFORMED),
        (codec.encode(["POLL", 1, "job"]), Reason.MALFORMED),
        (_raw(["CANCEL", 1.0, J.id]), Reason.NON_CANONICAL),
        (_raw(["ERROR", 1, "malformed", None]), Reason.NON_CANONICAL),
        (_raw(["ERROR", 1, "malformed", True]), Reason.NON_CANONICAL),
        (_raw({"tag": "CANCEL"}), Reason.NON_CANONICAL),
        (codec.encode(["CANCEL", 1, J.id]) + b"\x00", Reason.NON_CANONICAL),
        (b"", Reason.NON_CANONICAL),
        (b"\x00" * (MAX_FRAME_BYTES + 1), Reason.TOO_LARGE),
        (codec.encode(["USAGE", 1, "not bytes"]), Reason.MALFORMED),
        (codec.encode(["USAGE", 1, b"\x00" * 5000]), Reason.TOO_LARGE),
        (codec.encode(["USAGE", 1, FINAL.encode()]), Reason.MALFORMED),  # final: in RESULT
        (codec.encode(["RESULT", 1, 0, "completed", b"", USAGE.encode()]), Reason.MALFORMED),
        (codec.encode(["RESULT", 1, 0, "fine", b"", FINAL.encode()]), Reason.MALFORMED),
        (codec.encode(["RESULT", 1, 256, "completed", b"", FINAL.encode()]), Reason.MALFORMED),
        (codec.encode(["RESULT", 1, -65, "completed", b"", FINAL.encode()]), Reason.MALFORMED),
        (codec.encode(["RESULT", 1, 0, "completed", "out", FINAL.encode()]), Reason.MALFORMED),
        (
            codec.encode(["RESULT", 1, 0, "limit", b"x" * (MAX_OUTPUT_BYTES + 1), FINAL.encode()]),
            Reason.TOO_LARGE,
        ),
        (codec.encode(["VOUCHER", 1, J.id, b""]), Reason.MALFORMED),
        (codec.encode(["VOUCHER", 1, J.id, 5]), Reason.MALFORMED),
        (codec.encode(["VOUCHER", 1, VOUCHER]), Reason.MALFORMED),  # names its job
        (codec.encode(["VOUCHER", 1, b"j", VOUCHER]), Reason.MALFORMED),
        (
            codec.encode(["VOUCHER", 1, J.id, b"v" * (MAX_SIGNED_VOUCHER_BYTES + 1)]),
            Reason.TOO_LARGE,
        ),
        (codec.encode(["ERROR", 1, "Bad-Code", ""]), Reason.MALFORMED),
        (codec.encode(["ERROR", 1, "", ""]), Reason.MALFORMED),
        (codec.encode(["ERROR", 1, "x" * 65, ""]), Reason.MALFORMED),
        (codec.encode(["ERROR", 1, "malformed", "d" * (MAX_DETAIL_BYTES + 1)]), Reason.MALFORMED),
    ],
)
def test_frame_refusals(data: bytes, reason: Reason) -> None:
    refused(reason, decode_frame, data)


def _job_wire(**changes: Any) -> bytes:
    wire = J.to_wire()
    for i, v in changes.items():
        wire[int(i[1:])] = v
    return codec.encode(["JOB", 1, wire])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_job_wire(i5=-1), Reason.AMOUNT_OUT_OF_RANGE),  # base
        (_job_wire(i6=bytes(15)), Reason.MALFORMED),  # nonce
        (_job_wire(i7="Python"), Reason.MALFORMED),  # runtime name
        (_job_wire(i8=[1, 1, 1, 1]), Reason.MALFORMED),  # limits
        (_job_wire(i8=[0, 1, 1, 0, 0]), Reason.MALFORMED),
        (_job_wire(i9=["file", "/etc/passwd"]), Reason.MALFORMED),  # no paths, ever
        (_job_wire(i9=["inline", "text"]), Reason.MALFORMED),
        (_job_wire(i9=["hash", bytes(31), 5]), Reason.MALFORMED),
        (_job_wire(i9=["hash", bytes(32), -1]), Reason.MALFORMED),
        (_job_wire(i9=["inline", b"x" * (MAX_INLINE_INPUT_BYTES + 1)]), Reason.TOO_LARGE),
        (_job_wire(i3=bytes(33)), Reason.MALFORMED),
    ],
)
def test_job_refusals(data: bytes, reason: Reason) -> None:
    refused(reason, decode_frame, data)


def test_frames_refuse_wrong_values_when_built() -> None:
    refused(Reason.MALFORMED, PollFrame, J.id[:31])
    refused(Reason.MALFORMED, CancelFrame, J)  # type: ignore[arg-type]
    refused(Reason.NON_CANONICAL, VoucherFrame, J.id, VOUCHER[:-1])
    refused(Reason.MALFORMED, JobFrame, J.to_wire())  # type: ignore[arg-type]
    refused(Reason.MALFORMED, UsageFrame, USAGE.report)  # type: ignore[arg-type]
    refused(Reason.MALFORMED, ResultFrame, 0, "completed", b"", FINAL.report)  # type: ignore[arg-type]
    refused(Reason.MALFORMED, SignedUsage, USAGE.encode(), USAGE.signature)  # type: ignore[arg-type]
    refused(Reason.MALFORMED, UsageFrame, FINAL)
    refused(Reason.MALFORMED, ResultFrame, 0, "completed", b"", USAGE)
    refused(Reason.TOO_LARGE, InlineInput, b"x" * (MAX_INLINE_INPUT_BYTES + 1))
    refused(Reason.MALFORMED, dataclasses.replace, J, input=b"raw")
    refused(Reason.MALFORMED, dataclasses.replace, J, limits=None)


def test_the_largest_frames_fit() -> None:
    big_job = JobFrame(job(AN_OFFER, input=InlineInput(b"x" * MAX_INLINE_INPUT_BYTES)))
    big_result = ResultFrame(255, "completed", b"y" * MAX_OUTPUT_BYTES, FINAL)
    for f in (big_job, big_result):
        assert len(f.encode()) <= MAX_FRAME_BYTES
        assert decode_frame(f.encode()) == f


def test_error_frames() -> None:
    e = ErrorFrame.of(Reason.OVER_ESCROW, "é" * MAX_DETAIL_BYTES)  # 2 bytes a character
    assert e.code == "over_escrow"
    assert e.reason is Reason.OVER_ESCROW
    assert len(e.detail.encode()) == MAX_DETAIL_BYTES
    newer = decode_frame(codec.encode(["ERROR", 1, "some_new_reason", "x"]))
    assert isinstance(newer, ErrorFrame)
    assert newer.code == "some_new_reason"
    assert newer.reason is None


def test_the_voucher_is_carried_as_its_bytes() -> None:
    f = decode_frame(VoucherFrame(J.id, VOUCHER).encode())
    assert isinstance(f, VoucherFrame)
    assert f.voucher == VOUCHER
    assert f.job == J.id


valid_payloads = st.sampled_from([f.encode() for f in FRAMES])


@given(valid_payloads, st.data())
def test_mutated_frames_are_refused_or_decoded_never_crash(
    payload: bytes, data: st.DataObject
) -> None:
    mutated = bytearray(payload)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(mutated) - 1))
        mutated[i] = data.draw(st.integers(0, 255))
    try:
        f = decode_frame(bytes(mutated))
    except Refused as exc:
        assert isinstance(exc.reason, Reason)
    else:
        assert f.encode() == bytes(mutated)  # accepted only in its one canonical form


@given(st.binary(max_size=300))
def test_random_bytes_are_refused_or_decoded_never_crash(data: bytes) -> None:
    try:
        f = decode_frame(data)
    except Refused as exc:
        assert isinstance(exc.reason, Reason)
    else:
        assert f.encode() == data


# -- framing ------------------------------------------------------------------------


@given(st.integers(0, (1 << 64) - 1))
def test_uvarint_is_minimal_leb128(n: int) -> None:
    enc = uvarint(n)
    assert sum((b & 0x7F) << (7 * i) for i, b in enumerate(enc)) == n
    assert all(b & 0x80 for b in enc[:-1])
    assert not enc[-1] & 0x80
    assert len(enc) == max(1, -(-n.bit_length() // 7))
    assert len(enc) <= MAX_VARINT_BYTES


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_frames_come_out_whole_whatever_the_chunking(
    payloads: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frame(p) for p in payloads)
    reader = FrameReader(300)
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        n = data.draw(st.integers(1, 64))
        reader.feed(stream[i : i + n])
        i += n
        while (p := reader.next_frame()) is not None:
            out.append(p)
    assert out == payloads
    reader.end()  # nothing left over
    assert reader.buffered == 0


def test_reading_exactly_what_is_wanted() -> None:
    stream = frame(b"hello") + frame(b"") + frame(b"x" * 200)
    reader = FrameReader(1000)
    out: list[bytes] = []
    i = 0
    while i < len(stream):
        n = reader.wanted()
        reader.feed(stream[i : i + n])
        i += n
        while (p := reader.next_frame()) is not None:
            out.append(p)
        assert reader.buffered <= 2 + 200  # never more than one frame in hand
    assert out == [b"hello", b"", b"x" * 200]


def test_an_oversize_length_is_refused_before_its_body() -> None:
    reader = FrameReader(1000)
    reader.feed(uvarint(1001)[:1])  # 0xe9: 105 so far, more to come
    assert reader.next_frame() is None
    reader.feed(uvarint(1001)[1:])
    refused(Reason.TOO_LARGE, reader.next_frame)
    refused(Reason.TOO_LARGE, reader.feed, b"more")  # broken for good
    early = FrameReader(100)
    early.feed(b"\xff")  # 127 + more to come: already past 100
    refused(Reason.TOO_LARGE, early.next_frame)


def test_a_broken_reader_stays_broken_and_bounds_are_checked() -> None:
    reader = FrameReader(10)
    reader.feed(b"\x0b")  # 11 > 10
    refused(Reason.TOO_LARGE, reader.next_frame)
    refused(Reason.TOO_LARGE, reader.next_frame)
    refused(Reason.TOO_LARGE, reader.wanted)
    refused(Reason.TOO_LARGE, reader.end)
    assert reader.buffered == 0
    with pytest.raises(ValueError, match="negative"):
        FrameReader(-1)
    with pytest.raises(ValueError, match="negative"):
        uvarint(-1)


def test_bad_prefixes() -> None:
    reader = FrameReader(1 << 30)
    reader.feed(b"\x85\x00")  # 5, padded
    refused(Reason.NON_CANONICAL, reader.next_frame)
    long = FrameReader(1 << 80)
    long.feed(b"\x80" * 10 + b"\x01")
    refused(Reason.NON_CANONICAL, long.next_frame)
    cut = FrameReader(100)
    cut.feed(frame(b"abc")[:-1])
    assert cut.next_frame() is None
    refused(Reason.MALFORMED, cut.end)
