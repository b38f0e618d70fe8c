"""Sensor readings: the bytes a device builds and signs, and the check a
host runs on each before it stores one.

Why this exists: a reading is what a microcontroller builds, so its bytes
are fixed here to the last byte (and in ``tests/vectors/sensors.json``),
and what a host accepts (:func:`check_reading`) and what an auditor accepts
(``audit.py``) are the same bounds, from :func:`_check_declared`. The keys
that sign readings are ``devices.py``; the registration a reading is
checked against is ``sensor_bodies.py``.

Readings — the bytes a device builds
------------------------------------

A reading is the canonical msgpack array (DESIGN §3: shortest ints and
length headers, ``bin`` for bytes, ``str`` for text)::

    reading = ["reading", 1, economy, device, counter, ts_ms, metric, value, exponent]

byte by byte::

    99                      array of 9
    a7 72 65 61 64 69 6e 67 "reading"
    01                      version 1
    c4 20 <32 bytes>        economy id (bin 8)
    c4 20 <32 bytes>        device id (bin 8)
    <uint>                  counter, shortest form (a uint64 on the wire; accepted
                            0 … MAX_COUNTER = 2**53-1, see "Bounds" below):
                            00-7f | cc XX | cd XXXX | ce XXXXXXXX | cf XXXXXXXXXXXXXXXX
    <uint>                  ts_ms, the device clock (ms since the epoch; 0 … 2**63-1
                            on the wire, accepted from MIN_READING_TS_MS = 2020-01-01)
    <str>                   metric, 1-32 bytes UTF-8: a0|len (len <= 31) or d9 20 (32)
    <int>                   value, signed 64-bit, shortest form (e0-ff for -32…-1,
                            d0/d1/d2/d3 for wider negatives, as counter for >= 0)
    <int>                   exponent, -18 … 18 (one byte: 00-12 or ee-ff)

``value × 10^exponent`` is the quantity, in the metric's declared unit; the
exponent must be the one declared for the metric at registration. At most
:data:`MAX_READING_BYTES` (140) bytes. Then::

    reading_id = BLAKE2b-256("mycelia/reading/1\\0" || reading)
    message    = "mycelia/sig/reading/1\\0" || reading_id          (54 bytes)
    signature  = sign(device key, message)                          (64 bytes)

and the device sends the signed reading::

    signed-reading = ["signed-reading", 1, reading, signature]
    = 94 ae 73 69 67 6e 65 64 2d 72 65 61 64 69 6e 67 01 <reading> c4 40 <signature>

at most :data:`MAX_SIGNED_READING_BYTES` (223) bytes. The same bytes are the
Merkle leaves of an attested batch. ``counter`` must strictly increase per
device (the host refuses replays); the economy id inside means a reading
counts in one economy only.

Bounds (the rule :func:`check_reading` and :class:`AttestationAudit` share,
so a host and an auditor agree; the encoding is unchanged):

* ``counter <= MAX_COUNTER = 2**53 - 1``, else ``counter_out_of_range``.
  Counters only grow, so one accepted reading with a huge counter would
  leave its device nothing to send next, ever: ``2**64 - 1`` is what erased
  flash (all ``0xff``) or ``-1`` sent as unsigned reads as. ``2**53`` still
  lasts 285,000 years at 1,000 readings a second, holds a counter taken
  from the clock (``ts_ms`` until the year 287,000, microseconds until
  2255), and is exact in every JSON and JavaScript number. A device whose
  counter truly reaches it gets a new key (a new device id) and starts
  again at 0. A jump is otherwise free: gaps are allowed (lost readings,
  counters reserved in blocks before a reboot), so no step limit — it
  would strand a device that was offline long with a clock counter.
* ``ts_ms >= MIN_READING_TS_MS`` (2020-01-01T00:00:00Z), else
  ``clock_skew``: a real-time clock that lost power restarts at 0 (1970)
  or at its chip's epoch (2000), and such a reading says nothing about
  when it was measured. Ahead of the host's clock by more than its
  tolerance is ``clock_skew`` too (the ingest only: an auditor has no
  receive time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, schema
from mycelia.protocol.devices import SIGNATURE_SIZE, DeviceKey, verify_device_signature
from mycelia.protocol.domains import ID_SIZE, READING
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.sensor_bodies import DeviceRecord, DeviceRegister, _exponent, _metric_name

__all__ = [
    "MAX_COUNTER",
    "MAX_READING_BYTES",
    "MAX_READING_SKEW_MS",
    "MAX_SIGNED_READING_BYTES",
    "MIN_READING_TS_MS",
    "READING_REASONS",
    "Reading",
    "SignedReading",
    "check_reading",
]

#: The longest canonical reading (every field at its widest) and signed reading.
MAX_READING_BYTES = 140
MAX_SIGNED_READING_BYTES = 223
#: Default tolerance for a reading's timestamp ahead of the host's clock.
MAX_READING_SKEW_MS = 120_000
#: The highest counter a reading may carry, and the earliest timestamp (see
#: "Bounds" in the module docstring for why these).
MAX_COUNTER = (1 << 53) - 1
MIN_READING_TS_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z

_M = Reason.MALFORMED


# -- readings -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement, as the device signs it. Validates on construction
    (``malformed``); see the module docstring for the bytes."""

    economy: bytes
    device: bytes
    counter: int
    ts_ms: int
    metric: str
    value: int
    exponent: int

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.bytes_(self.device, "device", ID_SIZE)
        schema.int_(self.counter, "counter", 0, schema.UINT64_MAX)
        schema.int_(self.ts_ms, "ts_ms", 0, schema.INT64_MAX)
        _metric_name(self.metric, "metric", _M)
        schema.int_(self.value, "value")
        _exponent(self.exponent, "exponent", _M)

    def to_wire(self) -> list[Any]:
        return [
            "reading",
            1,
            self.economy,
            self.device,
            self.counter,
            self.ts_ms,
            self.metric,
            self.value,
            self.exponent,
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @property
    def id(self) -> bytes:
        return READING.id(self.encode())

    @property
    def message(self) -> bytes:
        """The exact bytes the device signs."""
        return READING.message(self.id)

    def sign(self, key: DeviceKey) -> SignedReading:
        if key.device != self.device:
            raise ValueError("a reading is signed by its own device's key")
        return SignedReading(self, key.sign(READING, self.id))

    @classmethod
    def decode(cls, data: bytes) -> Reading:
        return cls.from_wire(codec.decode(data, max_size=MAX_READING_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> Reading:
        f = schema.array(value, "reading", 1, 9, "reading")
        return cls(f[2], f[3], f[4], f[5], f[6], f[7], f[8])


@dataclass(frozen=True, slots=True)
class SignedReading:
    """A reading and its device's signature: what a device sends, what a
    host stores, and a Merkle leaf (its :meth:`encode` bytes)."""

    reading: Reading
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.reading) is not Reading:
            raise Refused(_M, "signed reading: expected a Reading")
        schema.bytes_(self.signature, "signature", SIGNATURE_SIZE)

    @property
    def id(self) -> bytes:
        return self.reading.id

    def to_wire(self) -> list[Any]:
        return ["signed-reading", 1, self.reading.to_wire(), self.signature]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    def verify(self, key_type: str, public_key: bytes) -> bytes:
        """Return the reading id if the signature is the device key's, else
        raise (``bad_signature``, ``high_s``, ``bad_key``)."""
        id_ = self.reading.id
        verify_device_signature(key_type, public_key, READING, id_, self.signature)
        return id_

    @classmethod
    def decode(cls, data: bytes) -> SignedReading:
        """Strict decode: at most :data:`MAX_SIGNED_READING_BYTES` bytes
        (``too_large``), canonical (``non_canonical``), exact shape
        (``malformed``)."""
        return cls.from_wire(codec.decode(data, max_size=MAX_SIGNED_READING_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> SignedReading:
        f = schema.array(value, "signed-reading", 1, 4, "signed reading")
        return cls(Reading.from_wire(f[2]), f[3])


# -- ingest: is this reading acceptable for this host? ------------------------------


def _check_declared(r: Reading, body: DeviceRegister) -> None:
    """The rules a reading obeys by itself and against its registration,
    shared by the host's :func:`check_reading` and the auditor's
    :meth:`AttestationAudit.check`: the bounds (``counter_out_of_range``,
    ``clock_skew`` before the floor), the declared metric and exponent
    (``unknown_metric``) and value (``out_of_range``)."""
    if r.counter > MAX_COUNTER:
        raise Refused(
            Reason.COUNTER_OUT_OF_RANGE,
            f"counter {r.counter} is above {MAX_COUNTER} (2**53 - 1), the highest a device uses",
        )
    if r.ts_ms < MIN_READING_TS_MS:
        raise Refused(
            Reason.CLOCK_SKEW,
            f"ts {r.ts_ms} is before {MIN_READING_TS_MS} (2020-01-01): the device clock is not set",
        )
    declared = body.metric(r.metric)
    if declared is None:
        raise Refused(Reason.UNKNOWN_METRIC, f"metric {r.metric!r} was not declared")
    if declared.exponent != r.exponent:
        raise Refused(
            Reason.UNKNOWN_METRIC,
            f"metric {r.metric!r} is declared with exponent {declared.exponent}, not {r.exponent}",
        )
    if not declared.min <= r.value <= declared.max:
        raise Refused(
            Reason.OUT_OF_RANGE,
            f"{r.metric} value {r.value} not in [{declared.min}, {declared.max}]",
        )


def check_reading(
    signed: SignedReading,
    device: DeviceRecord,
    *,
    economy: bytes,
    host: bytes,
    last_counter: int | None,
    now_ms: int | None,
    max_skew_ms: int = MAX_READING_SKEW_MS,
) -> bytes:
    """What a host runs on each reading before storing it (sans-IO: the node
    looks up ``device`` — unknown is its ``unknown_device`` — and its last
    accepted counter, and passes its clock). Returns the reading id.

    Refuses, cheapest first: ``wrong_economy``; ``unknown_device`` (the
    record is another device's); ``not_host`` (``host`` is not the device's
    host); ``counter_out_of_range`` (above :data:`MAX_COUNTER`);
    ``clock_skew`` (ts before :data:`MIN_READING_TS_MS`); ``unknown_metric``
    (metric not declared, or another exponent); ``out_of_range`` (value
    outside the declared bounds); ``replayed_counter`` (counter not above
    ``last_counter``); ``clock_skew`` (ts more than ``max_skew_ms`` ahead of
    ``now_ms``); ``bad_signature`` / ``high_s``. With the strict decoding's
    ``non_canonical`` / ``too_large`` / ``malformed`` these are
    :data:`READING_REASONS`."""
    r = signed.reading
    if r.economy != economy:
        raise Refused(Reason.WRONG_ECONOMY, "the reading is signed for another economy")
    if r.device != device.device:
        raise Refused(Reason.UNKNOWN_DEVICE, "the registration given is another device's")
    if device.host != host:
        raise Refused(Reason.NOT_HOST, "this node is not the device's registered host")
    _check_declared(r, device.body)
    if last_counter is not None and r.counter <= last_counter:
        raise Refused(Reason.REPLAYED_COUNTER, f"counter {r.counter} is not above {last_counter}")
    if now_ms is not None and r.ts_ms > now_ms + max_skew_ms:
        raise Refused(
            Reason.CLOCK_SKEW, f"ts {r.ts_ms} is ahead of {now_ms} by more than {max_skew_ms} ms"
        )
    return signed.verify(device.body.key_type, device.body.public_key)


#: Every reason :meth:`SignedReading.decode` and :func:`check_reading` can
#: give a reading (for a registration the ledger accepted, whose key is
#: valid): what a host's ingest answers per reading, besides its own
#: policy. ``docs/sensors.md`` lists them for device makers (a test keeps
#: the two equal).
READING_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.NON_CANONICAL,
        Reason.TOO_LARGE,
        Reason.MALFORMED,
        Reason.WRONG_ECONOMY,
        Reason.UNKNOWN_DEVICE,
        Reason.NOT_HOST,
        Reason.COUNTER_OUT_OF_RANGE,
        Reason.CLOCK_SKEW,
        Reason.UNKNOWN_METRIC,
        Reason.OUT_OF_RANGE,
        Reason.REPLAYED_COUNTER,
        Reason.BAD_SIGNATURE,
        Reason.HIGH_S,
    }
)
