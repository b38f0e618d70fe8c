"""The ingest verifies a batch's signatures in worker threads, in parts,
with a guessed last counter per reading (``node/ingest.py``: ``_prepare``,
``_verify``, ``_settle``); these tests hold its answers to the serial rule —
``check_reading`` on each reading in request order, given the last counter
accepted before it — reading by reading (reason, detail and id), and the
store to exactly the readings that rule accepts, for batches that mix
forgeries, high-S signatures, replays, counters out of order and readings
refused before any signature is checked."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mycelia.node import ingest as ingest_mod
from mycelia.node.ingest import _Buckets
from mycelia.protocol import DeviceKey, DeviceRecord, Refused, SignedReading, check_reading
from mycelia.protocol.sensors import P256_N
from tests.node.test_sensors import (
    CONFIG,
    ECON,
    ED,
    P2,
    SOLO,
    STRANGER,
    Host,
    batch,
    now_ms,
    reading,
    register,
    solo_host,
)

NOW_MS = now_ms()
SKEW_MS = 300_000
#: The token buckets out of the way: the rule is what is compared here.
UNLIMITED = replace(CONFIG, rate_per_device=1e9, rate_per_address=1e9)
assert UNLIMITED.max_clock_skew_s * 1000 == SKEW_MS


def forged(r: SignedReading) -> SignedReading:
    return SignedReading(r.reading, bytes([r.signature[0] ^ 1]) + r.signature[1:])


def high_s(r: SignedReading) -> SignedReading:
    s = int.from_bytes(r.signature[32:], "big")
    return SignedReading(r.reading, r.signature[:32] + (P256_N - s).to_bytes(32, "big"))


def mixed_batch(rnd: random.Random, n: int, start: dict[bytes, int]) -> list[SignedReading]:
    """``n`` readings of ED and P2: mostly good with increasing counters,
    and among them forgeries, high S, replays, a counter going back, values
    out of range, a clock ahead, and an unregistered device."""
    out: list[SignedReading] = []
    counter = dict(start)
    for _ in range(n):
        dev: DeviceKey = rnd.choice([ED, ED, P2])
        counter[dev.device] += rnd.choice([1, 1, 1, 2, 5])
        c = counter[dev.device]
        roll = rnd.random()
        if roll < 0.12:
            out.append(forged(reading(dev, c, ts_ms=NOW_MS)))  # a forgery with the next counter
        elif roll < 0.17 and dev is P2:
            out.append(high_s(reading(dev, c, ts_ms=NOW_MS)))
        elif roll < 0.24:
            out.append(reading(dev, max(0, c - rnd.choice([1, 3])), ts_ms=NOW_MS))  # back
        elif roll < 0.27:
            out.append(reading(dev, c, 2_000_000, ts_ms=NOW_MS))  # out of range
        elif roll < 0.30:
            out.append(reading(dev, c, ts_ms=NOW_MS + 2 * SKEW_MS))  # clock ahead
        elif roll < 0.32:
            out.append(reading(STRANGER, c, ts_ms=NOW_MS))
        else:
            out.append(reading(dev, c, ts_ms=NOW_MS))
    return out


def serial_answers(
    h: Host, readings: list[SignedReading], last: dict[bytes, int | None]
) -> list[dict[str, Any]]:
    """What the serial rule answers, reading by reading, updating ``last``."""
    records: dict[bytes, DeviceRecord] = {}
    for dev in (ED, P2):
        raw = h.node.store.record(ECON, DeviceRecord.key(dev.device))
        assert raw is not None
        records[dev.device] = DeviceRecord.decode(raw)
    out: list[dict[str, Any]] = []
    for s in readings:
        d = s.reading.device
        if d not in records:
            out.append({"status": "refused", "reason": "unknown_device"})
            continue
        try:
            id_ = check_reading(
                s,
                records[d],
                economy=ECON,
                host=SOLO.public,
                last_counter=last[d],
                now_ms=NOW_MS,
                max_skew_ms=SKEW_MS,
            )
        except Refused as exc:
            out.append({"status": "refused", "reason": exc.reason.value, "detail": exc.detail})
            continue
        last[d] = s.reading.counter
        out.append({"status": "accepted", "id": id_})
    return out


@pytest.mark.parametrize("threads", [2, 4])
async def test_a_mixed_batch_gets_the_serial_verdicts_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    monkeypatch.setattr(ingest_mod, "VERIFY_THREADS", threads)
    async with solo_host(tmp_path, UNLIMITED, wall_ms=lambda: NOW_MS) as h:
        await register(h.node, ED)
        await register(h.node, P2)
        rnd = random.Random(threads)
        last: dict[bytes, int | None] = {ED.device: None, P2.device: None}
        start = {ED.device: 0, P2.device: 0}
        reasons: set[str] = set()
        kept: dict[bytes, dict[int, bytes]] = {ED.device: {}, P2.device: {}}
        for size in (256, 256, 3, 100):
            readings = mixed_batch(rnd, size, start)
            start = {d: max(start[d], *(r.reading.counter for r in readings)) for d in start}
            expected = serial_answers(h, readings, last)
            answers = await h.post(batch(readings))
            assert len(answers) == size
            for i, (got, want) in enumerate(zip(answers, expected, strict=True)):
                if "detail" in want or want["status"] == "accepted":
                    assert got == want, (i, got, want)
                else:  # the ingest's own refusal (unknown_device): its detail is its own
                    assert (got["status"], got["reason"]) == ("refused", want["reason"]), i
            reasons |= {a["reason"] for a in answers if a["status"] == "refused"}
            # The store holds exactly the accepted readings, byte for byte.
            for s, want in zip(readings, expected, strict=True):
                if want["status"] == "accepted":
                    kept[s.reading.device][s.reading.counter] = s.encode()
            for dev in (ED, P2):
                held, _ = h.node.store.readings(ECON, dev.device, 0, 1 << 60, 1000)
                assert {c: r.signed for c, r in held} == kept[dev.device]
                state = h.node.store.ingest_state(dev.device)
                assert (state.last_accepted if state else None) == last[dev.device]
        # The batches exercised every refusal they were built to hold.
        assert reasons >= {
            "bad_signature",
            "high_s",
            "replayed_counter",
            "out_of_range",
            "clock_skew",
            "unknown_device",
        }


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 1e4),
    burst=st.integers(1, 300),
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(0, 400)), min_size=1, max_size=8),
)
def test_taking_many_tokens_is_taking_them_one_by_one(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """The sender's bucket is spent per request (``take_many``): granted
    and left exactly as that many single takes at one instant."""
    many = _Buckets[str](rate, float(burst))
    one = _Buckets[str](rate, float(burst))
    now = 0.0
    for dt, n in steps:
        now += dt
        granted = many.take_many("a", now, n)
        singles = [one.take("a", now) for _ in range(n)]
        assert granted == sum(singles)
        assert singles == [True] * granted + [False] * (n - granted)
    assert many.take_many("a", now, 1 << 20) == sum(one.take("a", now) for _ in range(burst + 1))
