"""The canonical codec and the wire form of every signed type (DESIGN §3).

The oracle here is :func:`pack`, a small msgpack writer written for these
tests (it does not use msgpack-python) that can write every value in every
width msgpack allows. Its shortest choice must equal ``codec.encode``; every
other choice must be refused as ``non_canonical``. The typed decoders
(entries, votes, certificates, geneses, accounts) are then held to exact
round trips and exact refusal reasons.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mycelia.protocol import (
    Account,
    Burn,
    Certificate,
    CreditSet,
    Entry,
    Genesis,
    MemberAdmit,
    Mint,
    Reason,
    Refused,
    SignedEntry,
    SignedGenesis,
    SigningKey,
    Transfer,
    Vote,
    codec,
)
from mycelia.protocol.economy import ImpactPolicy, IssuedPolicy, MutualCreditPolicy, Validator
from mycelia.protocol.schema import INT64_MAX, INT64_MIN, UINT64_MAX
from mycelia.protocol.sensors import (
    Aggregate,
    AttestedDevice,
    DeviceRecord,
    DeviceRegister,
    ImpactClaim,
    Metric,
    Reading,
    SensorAttest,
    SignedReading,
)
from mycelia.protocol.state import ZERO_ID
from mycelia.testing.economies import T0, World, genesis, key, sign_genesis, validator_keys

# -- a reference msgpack writer ---------------------------------------------------

Pick = Callable[[Sequence[bytes]], bytes]

_INT_WIDTHS = (
    (0xCC, ">B", 0, 0xFF),
    (0xCD, ">H", 0, 0xFFFF),
    (0xCE, ">I", 0, 0xFFFF_FFFF),
    (0xCF, ">Q", 0, UINT64_MAX),
    (0xD0, ">b", -(1 << 7), (1 << 7) - 1),
    (0xD1, ">h", -(1 << 15), (1 << 15) - 1),
    (0xD2, ">i", -(1 << 31), (1 << 31) - 1),
    (0xD3, ">q", INT64_MIN, INT64_MAX),
)


def int_forms(n: int) -> list[bytes]:
    """Every msgpack encoding of ``n``; the first is the shortest (canonical)."""
    forms = []
    if 0 <= n <= 0x7F:
        forms.append(bytes([n]))
    if -32 <= n < 0:
        forms.append(bytes([n & 0xFF]))
    for tag, fmt, lo, hi in _INT_WIDTHS:
        if lo <= n <= hi:
            forms.append(bytes([tag]) + struct.pack(fmt, n))
    return forms


def _sized(n: int, fix: int | None, fix_max: int, tags: tuple[int, int, int]) -> list[bytes]:
    """Headers for a length ``n``: fix form (if any), then 8/16/32-bit forms."""
    forms = []
    if fix is not None and n <= fix_max:
        forms.append(bytes([fix | n]))
    t8, t16, t32 = tags
    if t8 and n <= 0xFF:
        forms.append(bytes([t8, n]))
    if n <= 0xFFFF:
        forms.append(bytes([t16]) + struct.pack(">H", n))
    forms.append(bytes([t32]) + struct.pack(">I", n))
    return forms


def str_headers(n: int) -> list[bytes]:
    return _sized(n, 0xA0, 31, (0xD9, 0xDA, 0xDB))


def bin_headers(n: int) -> list[bytes]:
    return _sized(n, None, -1, (0xC4, 0xC5, 0xC6))


def array_headers(n: int) -> list[bytes]:
    return _sized(n, 0x90, 15, (0, 0xDC, 0xDD))


def _first(forms: Sequence[bytes]) -> bytes:
    return forms[0]


def pack(value: Any, pick: Pick = _first) -> bytes:
    """msgpack ``value``; ``pick`` chooses among the valid encodings of each
    int and each length header (default: the shortest, i.e. canonical)."""
    t = type(value)
    if t is bool:
        return b"\xc3" if value else b"\xc2"
    if value is None:
        return b"\xc0"
    if t is float:
        return b"\xcb" + struct.pack(">d", value)
    if t is int:
        return pick(int_forms(value))
    if t is str:
        raw = value.encode()
        return pick(str_headers(len(raw))) + raw
    if t is bytes:
        return pick(bin_headers(len(value))) + value
    if t is list or t is tuple:
        return pick(array_headers(len(value))) + b"".join(pack(v, pick) for v in value)
    raise TypeError(t)


def normalize(value: Any) -> Any:
    """What decode returns: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def reason_of(fn: Callable[[], object]) -> Reason:
    with pytest.raises(Refused) as info:
        fn()
    return info.value.reason


# -- strategies ---------------------------------------------------------------------

_BOUNDARY_INTS = [
    0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32,
    INT64_MAX, INT64_MAX + 1, UINT64_MAX,
    -1, -31, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, INT64_MIN,
]  # fmt: skip
_BOUNDARY_LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256]

ints = st.one_of(st.integers(INT64_MIN, UINT64_MAX), st.sampled_from(_BOUNDARY_INTS))
blobs = st.one_of(
    st.binary(max_size=40), st.sampled_from(_BOUNDARY_LENGTHS).map(lambda n: b"\xab" * n)
)
texts = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(_BOUNDARY_LENGTHS).map(lambda n: "a" * n),
)
leaves = st.one_of(ints, blobs, texts)


def nested(depth: int) -> st.SearchStrategy[Any]:
    """Canonical values with at most ``depth`` levels of arrays."""
    if depth == 0:
        return leaves
    inner = nested(depth - 1)
    return st.one_of(
        leaves,
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.lists(leaves, min_size=14, max_size=18),  # fixarray / array16 boundary
    )


values = nested(4)
arrays = st.lists(nested(3), min_size=1, max_size=5)

POOL = [key(i) for i in range(10)]
VPOOL = validator_keys(10)
BY_PUBLIC = {k.public: k for k in POOL + VPOOL}

id32 = st.binary(min_size=32, max_size=32)
sig64 = st.binary(min_size=64, max_size=64)
amounts = st.one_of(st.integers(1, INT64_MAX), st.sampled_from([1, INT64_MAX]))
memos = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=64),  # at most 256 bytes
    st.just("m" * 256),
)
uint64s = st.integers(0, UINT64_MAX)
int64s = st.integers(INT64_MIN, INT64_MAX)
nonneg64 = st.integers(0, INT64_MAX)
#: 1-32 bytes of UTF-8 (metric names, device kinds).
names32 = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=8),
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=32),
)
exponents = st.integers(-18, 18)


@st.composite
def metric_decls(draw: st.DrawFn, name: st.SearchStrategy[str] = names32) -> Metric:
    lo, hi = sorted(draw(st.lists(int64s, min_size=2, max_size=2)))
    unit = draw(st.text(st.characters(codec="utf-8"), max_size=4))
    return Metric(draw(name), unit, draw(exponents), lo, hi)


@st.composite
def registrations(draw: st.DrawFn) -> DeviceRegister:
    key_type = draw(st.sampled_from(["ed25519", "p256"]))
    size = 32 if key_type == "ed25519" else 33
    metrics = draw(st.lists(metric_decls(), min_size=1, max_size=16, unique_by=lambda m: m.name))
    return DeviceRegister(
        key_type,
        draw(st.binary(min_size=size, max_size=size)),
        draw(names32),
        draw(id32),
        tuple(metrics),
        draw(sig64),
    )


@st.composite
def aggregates(draw: st.DrawFn, metric: str) -> Aggregate:
    lo, hi = sorted(draw(st.lists(int64s, min_size=2, max_size=2)))
    return Aggregate(metric, draw(int64s), lo, hi)


@st.composite
def attested_devices(draw: st.DrawFn, device: bytes) -> AttestedDevice:
    first = draw(uint64s)
    last = draw(st.integers(first, min(UINT64_MAX, first + 10**6)))
    count = draw(st.integers(1, min(last - first + 1, 1_000)))
    metrics = draw(st.lists(names32, unique_by=str.encode, min_size=1, max_size=min(4, count)))
    aggs = tuple(draw(aggregates(m)) for m in sorted(metrics, key=str.encode))
    return AttestedDevice(device, draw(id32), first, last, count, aggs)


@st.composite
def attestations(draw: st.DrawFn) -> SensorAttest:
    devices = sorted(draw(st.lists(id32, unique=True, min_size=1, max_size=4)))
    rows = tuple(draw(attested_devices(d)) for d in devices)
    return SensorAttest(draw(id32), sum(r.count for r in rows), rows)


@st.composite
def claims(draw: st.DrawFn) -> ImpactClaim:
    first = draw(uint64s)
    last = draw(st.integers(first, UINT64_MAX))
    atts = tuple(draw(st.lists(id32, unique=True, min_size=1, max_size=16)))
    return ImpactClaim(draw(id32), first, last, atts, draw(int64s))


BODIES: dict[str, st.SearchStrategy[Any]] = {
    "device.register": registrations(),
    "sensor.attest": attestations(),
    "impact.claim": claims(),
    "transfer": st.builds(Transfer, id32, amounts, memos),
    "mint": st.builds(Mint, id32, amounts, memos),
    "burn": st.builds(Burn, amounts),
    "member.admit": st.builds(MemberAdmit, id32),
    "credit.set": st.builds(CreditSet, id32, st.one_of(nonneg64, st.just(0))),
}
bodies = st.one_of(*BODIES.values())


@st.composite
def entries(draw: st.DrawFn, body: st.SearchStrategy[Any] = bodies) -> Entry:
    seq = draw(st.one_of(st.just(1), st.integers(1, INT64_MAX)))
    return Entry(
        economy=draw(id32),
        author=draw(st.sampled_from(POOL)).public,
        seq=seq,
        prev=ZERO_ID if seq == 1 else draw(id32),
        ts_ms=draw(nonneg64),
        body=draw(body),
    )


def signed(e: Entry) -> SignedEntry:
    return e.sign(BY_PUBLIC[e.author])


@st.composite
def geneses(draw: st.DrawFn) -> Genesis:
    kind = draw(st.sampled_from(["mutual_credit", "issued", "impact"]))
    membership = draw(st.sampled_from(["open", "approved"]))
    stewards = tuple(
        k.public
        for k in draw(
            st.lists(
                st.sampled_from(POOL),
                unique=True,
                min_size=1 if membership == "approved" else 0,
                max_size=4,
            )
        )
    )
    policy: MutualCreditPolicy | IssuedPolicy | ImpactPolicy
    if kind == "mutual_credit":
        policy = MutualCreditPolicy(membership, stewards, draw(nonneg64))
    elif kind == "impact":
        policy = ImpactPolicy(
            membership,
            stewards,
            draw(names32),
            draw(st.integers(-18, 18)),
            draw(st.integers(1, INT64_MAX)),
            tuple(draw(st.lists(names32, unique=True, min_size=1, max_size=16))),
        )
    else:
        issuers = draw(st.lists(st.sampled_from(POOL), unique=True, min_size=1, max_size=4))
        budget, caps = INT64_MAX, []
        for i in range(len(issuers)):
            cap = draw(st.integers(1, budget - (len(issuers) - i - 1)))
            caps.append(cap)
            budget -= cap
        pairs = tuple(zip((k.public for k in issuers), caps, strict=True))
        policy = IssuedPolicy(membership, stewards, pairs)
    vkeys = draw(st.lists(st.sampled_from(VPOOL), unique=True, min_size=1, max_size=7))
    weights = draw(st.lists(st.integers(1, 2**32), min_size=len(vkeys), max_size=len(vkeys)))
    total = sum(weights)
    return Genesis(
        name=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=16)),
        symbol=draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=3)),
        decimals=draw(st.integers(0, 18)),
        kind=kind,
        policy=policy,
        validators=tuple(Validator(k.public, w) for k, w in zip(vkeys, weights, strict=True)),
        quorum=draw(st.integers(total * 2 // 3 + 1, total)),
        ts_ms=draw(nonneg64),
        nonce=draw(st.binary(max_size=32)),
    )


@st.composite
def signed_geneses(draw: st.DrawFn) -> SignedGenesis:
    g = draw(geneses())
    vkeys = [BY_PUBLIC[v.key] for v in g.validators]
    signers = draw(st.lists(st.sampled_from(vkeys), unique=True, max_size=len(vkeys)))
    return sign_genesis(g, signers)


votes = st.builds(Vote, id32, uint64s, id32, id32, sig64)
certificates = st.builds(
    Certificate,
    entries(),
    sig64,
    uint64s,
    st.binary(max_size=8),
    st.lists(sig64, max_size=8).map(tuple),
)
accounts = st.builds(
    Account,
    seq=nonneg64,
    head=id32,
    ts_ms=int64s,
    balance=int64s,
    admitted=st.one_of(st.just(b""), id32, st.binary(max_size=32)),
    limit_set=st.one_of(st.none(), st.tuples(int64s, id32, int64s)),
    minted=nonneg64,
    burned=nonneg64,
)

#: (strategy, type) for every signed or stored wire type.
WIRE_TYPES: dict[str, tuple[st.SearchStrategy[Any], Any]] = {
    "genesis": (geneses(), Genesis),
    "signed-genesis": (signed_geneses(), SignedGenesis),
    "entry": (entries(), Entry),
    "signed-entry": (entries().map(signed), SignedEntry),
    "vote": (votes, Vote),
    "cert": (certificates, Certificate),
    "account": (accounts, Account),
}
wire_objects = st.sampled_from(sorted(WIRE_TYPES)).flatmap(
    lambda name: WIRE_TYPES[name][0].map(lambda obj: (WIRE_TYPES[name][1], obj))
)


# -- the codec: round trips -----------------------------------------------------------


@given(values)
def test_round_trip_and_canonical_form(v: Any) -> None:
    data = codec.encode(v)
    assert data == pack(v)  # the independent writer agrees on every byte
    assert codec.decode(data) == normalize(v)
    assert codec.encode(normalize(v)) == data  # tuple and list encode alike
    assert codec.encode(codec.decode(data)) == data


@given(values)
def test_encode_is_deterministic(v: Any) -> None:
    assert codec.encode(v) == codec.encode(v) == codec.encode_trusted(v)


@given(ints)
def test_every_int_in_range_round_trips(n: int) -> None:
    data = codec.encode(n)
    assert data == int_forms(n)[0]
    assert codec.decode(data) == n
    assert type(codec.decode(data)) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (256, b"\xcd\x01\x00"),
        (65536, b"\xce\x00\x01\x00\x00"),
        (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
        (UINT64_MAX, b"\xcf" + b"\xff" * 8),
        (-1, b"\xff"),
        (-32, b"\xe0"),
        (-33, b"\xd0\xdf"),
        (-129, b"\xd1\xff\x7f"),
        (INT64_MIN, b"\xd3\x80" + bytes(7)),
        (b"", b"\xc4\x00"),
        (b"abc", b"\xc4\x03abc"),
        ("", b"\xa0"),
        ("a" * 31, b"\xbf" + b"a" * 31),
        ("a" * 32, b"\xd9\x20" + b"a" * 32),
        ("é", b"\xa2\xc3\xa9"),
        ([], b"\x90"),
        ([1, "a", b"b"], b"\x93\x01\xa1a\xc4\x01b"),
        ([0] * 16, b"\xdc\x00\x10" + bytes(16)),
    ],
)
def test_known_encodings(value: Any, expected: bytes) -> None:
    assert codec.encode(value) == expected
    assert codec.decode(expected) == value


def test_large_lengths_use_16_and_32_bit_headers() -> None:
    for n, head in [(0xFFFF, b"\xc5\xff\xff"), (0x10000, b"\xc6\x00\x01\x00\x00")]:
        data = codec.encode(b"\x01" * n)
        assert data == head + b"\x01" * n
        assert codec.decode(data) == b"\x01" * n
    for n, head in [(0xFFFF, b"\xda\xff\xff"), (0x10000, b"\xdb\x00\x01\x00\x00")]:
        data = codec.encode("z" * n)
        assert data == head + b"z" * n
        assert codec.decode(data) == "z" * n
    data = codec.encode([0] * 0xFFFF)
    assert data[:3] == b"\xdc\xff\xff"
    assert codec.decode(data) == [0] * 0xFFFF


def test_decode_accepts_bytes_like_input() -> None:
    data = codec.encode([1, b"x", "y"])
    assert codec.decode(bytearray(data)) == [1, b"x", "y"]
    assert codec.decode(memoryview(data)) == [1, b"x", "y"]


# -- the codec: refusals ---------------------------------------------------------------


@given(st.data(), values)
def test_every_non_shortest_form_is_refused(data: st.DataObject, v: Any) -> None:
    """Write ``v`` with a random (often non-shortest) width for every int and
    header: the decoder accepts exactly the canonical choice."""
    chosen = pack(v, lambda forms: data.draw(st.sampled_from(forms)))
    if chosen == pack(v):
        assert codec.decode(chosen) == normalize(v)
    else:
        assert reason_of(lambda: codec.decode(chosen)) is Reason.NON_CANONICAL


@given(st.data(), st.sampled_from(_BOUNDARY_INTS) | ints)
def test_every_wider_int_form_is_refused(data: st.DataObject, n: int) -> None:
    forms = int_forms(n)
    for form in forms[1:]:
        assert reason_of(lambda f=form: codec.decode(f)) is Reason.NON_CANONICAL
    wrapped = [b"\x92" + forms[0] + f for f in forms[1:]]  # inside an array too
    for w in wrapped:
        assert reason_of(lambda w=w: codec.decode(w)) is Reason.NON_CANONICAL


NON_CANONICAL_BYTES = {
    # ints in a wider width
    "5 as uint8": b"\xcc\x05",
    "5 as uint16": b"\xcd\x00\x05",
    "5 as uint32": b"\xce\x00\x00\x00\x05",
    "5 as uint64": b"\xcf" + bytes(7) + b"\x05",
    "5 as int8": b"\xd0\x05",
    "5 as int16": b"\xd1\x00\x05",
    "5 as int64": b"\xd3" + bytes(7) + b"\x05",
    "200 as uint16": b"\xcd\x00\xc8",
    "200 as int16": b"\xd1\x00\xc8",
    "-1 as int8": b"\xd0\xff",
    "-100 as int16": b"\xd1\xff\x9c",
    "-100 as int64": b"\xd3" + b"\xff" * 7 + b"\x9c",
    "2**32 as int64": b"\xd3\x00\x00\x00\x01\x00\x00\x00\x00",
    "0 as uint8": b"\xcc\x00",
    # strings, bins and arrays with a non-shortest length header
    "3-byte str as str8": b"\xd9\x03abc",
    "3-byte str as str16": b"\xda\x00\x03abc",
    "3-byte str as str32": b"\xdb\x00\x00\x00\x03abc",
    "40-byte str as str16": b"\xda\x00\x28" + b"a" * 40,
    "empty str as str8": b"\xd9\x00",
    "3-byte bin as bin16": b"\xc5\x00\x03abc",
    "3-byte bin as bin32": b"\xc6\x00\x00\x00\x03abc",
    "empty array as array16": b"\xdc\x00\x00",
    "2-array as array16": b"\xdc\x00\x02\x01\x02",
    "2-array as array32": b"\xdd\x00\x00\x00\x02\x01\x02",
    "16-array as array32": b"\xdd\x00\x00\x00\x10" + bytes(16),
    "non-shortest int inside an array": b"\x92\x01\xcc\x02",
    # types outside the canonical set
    "empty fixmap": b"\x80",
    "fixmap": b"\x81\xa1a\x01",
    "fixmap with int key": b"\x81\x01\x02",
    "map16": b"\xde\x00\x01\xa1a\x01",
    "map32": b"\xdf\x00\x00\x00\x01\xa1a\x01",
    "map inside an array": b"\x92\x01\x81\xa1a\x01",
    "float32": b"\xca\x3f\x80\x00\x00",
    "float64": b"\xcb\x3f\xf0" + bytes(6),
    "float64 zero": b"\xcb" + bytes(8),
    "float inside an array": b"\x91\xcb" + bytes(8),
    "nil": b"\xc0",
    "nil inside an array": b"\x92\x01\xc0",
    "false": b"\xc2",
    "true": b"\xc3",
    "true inside an array": b"\x91\xc3",
    "fixext1": b"\xd4\x01\x00",
    "fixext4": b"\xd6\x05\x00\x00\x00\x00",
    "fixext16": b"\xd8\x05" + bytes(16),
    "ext8": b"\xc7\x01\x05\x00",
    "ext16": b"\xc8\x00\x01\x05\x00",
    "timestamp ext (-1)": b"\xd6\xff\x00\x00\x00\x00",
    "reserved 0xc1": b"\xc1",
    # invalid UTF-8 in a str
    "invalid utf-8 continuation": b"\xa2\xff\xfe",
    "utf-8 surrogate": b"\xa3\xed\xa0\x80",
    "overlong utf-8": b"\xa2\xc0\x80",
    "truncated utf-8": b"\xa1\xc3",
    "invalid utf-8 in str8": b"\xd9\x20" + b"\xff" * 32,
    # trailing bytes and truncation
    "trailing zero": b"\x01\x00",
    "two values": b"\x01\x02",
    "trailing after array": b"\x91\x01\x01",
    "empty input": b"",
    "array missing its item": b"\x91",
    "bin missing its data": b"\xc4\x03ab",
    "str missing its data": b"\xa3ab",
    "uint16 missing a byte": b"\xcd\x01",
    "bin32 claiming 4 GiB": b"\xc6\xff\xff\xff\xff",
    "array32 claiming 4G items": b"\xdd\xff\xff\xff\xff",
}


@pytest.mark.parametrize("data", NON_CANONICAL_BYTES.values(), ids=NON_CANONICAL_BYTES.keys())
def test_hand_written_non_canonical_bytes_are_refused(data: bytes) -> None:
    assert reason_of(lambda: codec.decode(data)) is Reason.NON_CANONICAL


def test_str_and_bin_headers_decode_to_their_own_type() -> None:
    """bin/str swapped is not a codec error when the bytes re-encode the same
    (the value changes type); the typed decoders refuse it (see below). When
    the swap is visible in the bytes it is non-canonical."""
    assert codec.decode(b"\xa3abc") == "abc"
    assert codec.decode(b"\xc4\x03abc") == b"abc"
    assert type(codec.decode(b"\xc4\x03abc")) is bytes
    # a str header over bytes that are not UTF-8
    assert reason_of(lambda: codec.decode(b"\xa2\xff\x00")) is Reason.NON_CANONICAL
    # a bin whose length fits a fixstr, written with a str8 header
    assert reason_of(lambda: codec.decode(b"\xd9\x03abc")) is Reason.NON_CANONICAL


@given(arrays, st.data())
def test_every_truncation_is_refused(v: list[Any], data: st.DataObject) -> None:
    full = codec.encode(v)
    cut = data.draw(st.integers(0, len(full) - 1))
    assert reason_of(lambda: codec.decode(full[:cut])) is Reason.NON_CANONICAL


@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(v: Any, tail: bytes) -> None:
    data = codec.encode(v) + tail
    assert reason_of(lambda: codec.decode(data)) is Reason.NON_CANONICAL


@given(st.binary(max_size=64))
def test_random_bytes_are_refused_or_canonical(data: bytes) -> None:
    try:
        v = codec.decode(data)
    except Refused as exc:
        assert exc.reason in (Reason.NON_CANONICAL, Reason.TOO_LARGE)
    else:
        assert codec.encode(v) == data


@given(values, st.data())
def test_mutated_encodings_are_refused_or_canonical(v: Any, data: st.DataObject) -> None:
    original = codec.encode(v)
    i = data.draw(st.integers(0, len(original)))
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = bytes([data.draw(st.integers(0, 255))])
    if op == "replace" and i < len(original):
        mutated = original[:i] + byte + original[i + 1 :]
    elif op == "delete" and i < len(original):
        mutated = original[:i] + original[i + 1 :]
    else:
        mutated = original[:i] + byte + original[i:]
    try:
        decoded = codec.decode(mutated)
    except Refused as exc:
        assert exc.reason in (Reason.NON_CANONICAL, Reason.TOO_LARGE)
    else:
        assert codec.encode(decoded) == mutated


def test_size_bound_is_checked_before_parsing() -> None:
    data = codec.encode([b"x" * 100, "y" * 100])
    assert codec.decode(data, max_size=len(data)) == [b"x" * 100, "y" * 100]
    assert reason_of(lambda: codec.decode(data, max_size=len(data) - 1)) is Reason.TOO_LARGE
    # garbage over the bound is too_large, not non_canonical: nothing was parsed
    assert reason_of(lambda: codec.decode(b"\xc1" * 11, max_size=10)) is Reason.TOO_LARGE
    big = codec.encode(b"\x00" * codec.MAX_SIZE)
    assert len(big) > codec.MAX_SIZE
    assert reason_of(lambda: codec.decode(big)) is Reason.TOO_LARGE


def _nest(depth: int) -> bytes:
    """``depth`` arrays, each holding the next; the innermost is empty."""
    return b"\x91" * (depth - 1) + b"\x90"


def test_depth_bound() -> None:
    assert codec.MAX_DEPTH == 8
    deepest = codec.decode(_nest(codec.MAX_DEPTH))
    for _ in range(codec.MAX_DEPTH - 1):
        assert len(deepest) == 1
        deepest = deepest[0]
    assert deepest == []
    for depth in (codec.MAX_DEPTH + 1, 100, 5000):
        assert reason_of(lambda d=depth: codec.decode(_nest(d))) is Reason.TOO_LARGE
    assert reason_of(lambda: codec.decode(_nest(3), max_depth=2)) is Reason.TOO_LARGE
    assert codec.decode(_nest(2), max_depth=2) == [[]]


def test_item_count_bound() -> None:
    assert len(codec.decode(codec.encode([0] * (codec.MAX_ITEMS - 1)))) == codec.MAX_ITEMS - 1
    data = codec.encode([0] * (codec.MAX_ITEMS + 10))  # canonical array32
    assert data[0] == 0xDD
    assert reason_of(lambda: codec.decode(data)) is Reason.TOO_LARGE


# -- encode: programming errors ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [1.0, 0.0, None, True, False, {}, {"a": 1}, bytearray(b"x"), {1, 2}, [1, None], [[2.5]],
     (b"x", False), [{"k": b"v"}]],
    ids=repr,
)  # fmt: skip
def test_encode_rejects_types_outside_the_canonical_set(value: Any) -> None:
    with pytest.raises(TypeError):
        codec.encode(value)


@pytest.mark.parametrize("value", [UINT64_MAX + 1, INT64_MIN - 1, [1, 2**70]])
def test_encode_rejects_ints_out_of_range(value: Any) -> None:
    with pytest.raises(OverflowError):
        codec.encode(value)


def test_encode_rejects_nesting_decode_would_refuse() -> None:
    ok: list[Any] = []
    for _ in range(codec.MAX_DEPTH - 1):
        ok = [ok]
    assert codec.decode(codec.encode(ok)) == ok
    with pytest.raises(ValueError, match="nested too deeply"):
        codec.encode([ok])


# -- wire types: round trips ---------------------------------------------------------


def _check_round_trip(cls: Any, obj: Any) -> None:
    data = obj.encode()
    decoded = cls.decode(data)
    assert decoded == obj
    assert type(decoded) is type(obj)
    assert decoded.encode() == data
    assert data == pack(obj.to_wire())


@given(geneses())
def test_genesis_round_trip(g: Genesis) -> None:
    _check_round_trip(Genesis, g)
    assert Genesis.decode(g.encode()).id == g.id
    assert g.checked() == g


@given(signed_geneses())
def test_signed_genesis_round_trip(sg: SignedGenesis) -> None:
    _check_round_trip(SignedGenesis, sg)


@pytest.mark.parametrize("kind", ["mutual_credit", "issued"])
def test_factory_genesis_round_trip(kind: str) -> None:
    g = genesis(kind=kind, membership="approved", stewards=[key(1)], issuers=[(key(2), 10**9)])
    _check_round_trip(Genesis, g)
    _check_round_trip(SignedGenesis, sign_genesis(g, validator_keys(4)))


@given(entries())
def test_entry_round_trip(e: Entry) -> None:
    _check_round_trip(Entry, e)
    assert Entry.decode(e.encode()).id == e.id


@pytest.mark.parametrize("kind", sorted(BODIES))
@given(data=st.data())
def test_every_body_kind_round_trips(kind: str, data: st.DataObject) -> None:
    e = data.draw(entries(BODIES[kind]))
    assert e.kind == kind
    _check_round_trip(Entry, e)
    se = signed(e)
    _check_round_trip(SignedEntry, se)
    assert SignedEntry.decode(se.encode()).verify() == e.id


@given(entries())
def test_signed_entry_round_trip(e: Entry) -> None:
    se = signed(e)
    _check_round_trip(SignedEntry, se)
    assert SignedEntry.decode(se.encode()).id == e.id


@given(votes)
def test_vote_round_trip(v: Vote) -> None:
    _check_round_trip(Vote, v)


@given(id32, uint64s, id32, st.sampled_from(VPOOL))
def test_made_vote_round_trip(economy: bytes, epoch: int, entry_id: bytes, k: SigningKey) -> None:
    _check_round_trip(Vote, Vote.make(k, economy, epoch, entry_id))


@given(certificates)
def test_certificate_round_trip(c: Certificate) -> None:
    _check_round_trip(Certificate, c)
    assert Certificate.decode(c.encode()).entry_id == c.entry.id


def test_real_certificate_round_trip() -> None:
    w = World()
    alice, bob = key(1), key(2)
    cert = w.transfer(alice, bob, 250, "bread")
    _check_round_trip(Certificate, cert)
    decoded = Certificate.decode(cert.encode())
    assert decoded.entry_id == cert.entry_id == cert.entry.id
    decoded.verify(w.economy)  # still verifies after the round trip
    assert w.balance(bob) == 250


@given(accounts)
def test_account_round_trip(a: Account) -> None:
    _check_round_trip(Account, a)


def test_default_account_round_trip() -> None:
    _check_round_trip(Account, Account())


@given(wire_objects, st.data())
def test_wire_types_refuse_non_shortest_forms(pair: tuple[Any, Any], data: st.DataObject) -> None:
    cls, obj = pair
    chosen = pack(obj.to_wire(), lambda forms: data.draw(st.sampled_from(forms)))
    if chosen == obj.encode():
        assert cls.decode(chosen) == obj
    else:
        assert reason_of(lambda: cls.decode(chosen)) is Reason.NON_CANONICAL


@given(wire_objects, st.data())
def test_wire_types_refuse_truncation_and_trailing_bytes(
    pair: tuple[Any, Any], data: st.DataObject
) -> None:
    cls, obj = pair
    full = obj.encode()
    cut = data.draw(st.integers(0, len(full) - 1))
    assert reason_of(lambda: cls.decode(full[:cut])) is Reason.NON_CANONICAL
    assert reason_of(lambda: cls.decode(full + b"\x00")) is Reason.NON_CANONICAL


@pytest.mark.parametrize(
    ("cls", "limit"),
    [
        (Vote, 256),
        (Entry, 2048),
        (SignedEntry, 2048 + 128),
        (Account, 512),
        (Genesis, 16 * 1024),
        (Reading, 140),
        (SignedReading, 223),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_wire_types_bound_their_size(cls: Any, limit: int) -> None:
    # a canonical value just over the type's bound is refused before parsing
    blob = codec.encode([b"\x00" * limit])
    assert len(blob) > limit
    assert reason_of(lambda: cls.decode(blob)) is Reason.TOO_LARGE


# -- wire types: structural refusals -----------------------------------------------

ECON = bytes(range(32))
ALICE = key(1).public
BOB = key(2).public
SIG = bytes(range(64))


def vote_wire() -> list[Any]:
    return ["vote", 1, ECON, 0, bytes(32), ALICE, SIG]


def entry_wire(kind: str = "transfer", body: Any = None) -> list[Any]:
    body = [BOB, 5, "hi"] if body is None else body
    return ["entry", 1, ECON, ALICE, 1, ZERO_ID, T0, kind, body]


def signed_entry_wire() -> list[Any]:
    return ["signed-entry", 1, entry_wire(), SIG]


def cert_wire() -> list[Any]:
    return ["cert", 1, entry_wire(), SIG, 0, b"\x0f", [SIG] * 4]


def genesis_wire() -> list[Any]:
    return genesis().to_wire()


def account_wire() -> list[Any]:
    return Account(seq=3, head=ECON, ts_ms=T0, balance=-7, limit_set=(T0, ECON, 50)).to_wire()


def reading_wire() -> list[Any]:
    return Reading(ECON, bytes(32), 7, T0, "energy_wh", -5, -3).to_wire()


def signed_reading_wire() -> list[Any]:
    return ["signed-reading", 1, reading_wire(), SIG]


def device_record_wire() -> list[Any]:
    body = DeviceRegister("ed25519", BOB, "solar-meter", ALICE, (Metric("e", "Wh", 0, 0, 9),), SIG)
    return DeviceRecord(ECON, ALICE, body).to_wire()


def _set(path: Sequence[int], value: Any) -> Callable[[list[Any]], list[Any]]:
    def mutate(wire: list[Any]) -> list[Any]:
        node = wire
        for i in path[:-1]:
            node = node[i]
        node[path[-1]] = value
        return wire

    return mutate


def _resize(n: int) -> Callable[[list[Any]], list[Any]]:
    return lambda wire: (wire + [0] * n) if n > 0 else wire[:n]


def _replace_all(value: Any) -> Callable[[list[Any]], Any]:
    return lambda _wire: value


WIRES: dict[str, tuple[Callable[[], list[Any]], Any]] = {
    "vote": (vote_wire, Vote),
    "entry": (entry_wire, Entry),
    "signed-entry": (signed_entry_wire, SignedEntry),
    "cert": (cert_wire, Certificate),
    "genesis": (genesis_wire, Genesis),
    "account": (account_wire, Account),
    "reading": (reading_wire, Reading),
    "signed-reading": (signed_reading_wire, SignedReading),
    "device-record": (device_record_wire, DeviceRecord),
}

M, MB, AR, UK = (
    Reason.MALFORMED,
    Reason.MALFORMED_BODY,
    Reason.AMOUNT_OUT_OF_RANGE,
    Reason.UNKNOWN_KIND,
)

# (wire name, mutation, expected reason)
STRUCTURAL: dict[str, tuple[str, Callable[[list[Any]], Any], Reason]] = {}
for _name in WIRES:
    _other = "cert" if _name != "cert" else "vote"
    STRUCTURAL |= {
        f"{_name}: not an array": (_name, _replace_all(5), M),
        f"{_name}: bytes, not an array": (_name, _replace_all(b"\x01"), M),
        f"{_name}: empty array": (_name, _replace_all([]), M),
        f"{_name}: wrong tag": (_name, _set([0], "xyz"), M),
        f"{_name}: tag as bytes": (_name, _set([0], _name.encode()), M),
        f"{_name}: tag of another type": (_name, _set([0], _other), M),
        f"{_name}: version 2": (_name, _set([1], 2), M),
        f"{_name}: version 0": (_name, _set([1], 0), M),
        f"{_name}: version as str": (_name, _set([1], "1"), M),
        f"{_name}: one field too many": (_name, _resize(1), M),
        f"{_name}: one field too few": (_name, _resize(-1), M),
    }  # fmt: skip
STRUCTURAL |= {
    # readings
    "reading: 31-byte economy": ("reading", _set([2], ECON[:31]), M),
    "reading: 33-byte device": ("reading", _set([3], ECON + b"\x00"), M),
    "reading: negative counter": ("reading", _set([4], -1), M),
    "reading: counter as bytes": ("reading", _set([4], b"\x07"), M),
    "reading: negative ts": ("reading", _set([5], -1), M),
    "reading: ts 2**63": ("reading", _set([5], 2**63), M),
    "reading: empty metric": ("reading", _set([6], ""), M),
    "reading: 33-byte metric": ("reading", _set([6], "m" * 33), M),
    "reading: metric as bytes": ("reading", _set([6], b"energy_wh"), M),
    "reading: value 2**63": ("reading", _set([7], 2**63), M),
    "reading: exponent 19": ("reading", _set([8], 19), M),
    "reading: exponent -19": ("reading", _set([8], -19), M),
    "signed-reading: 63-byte signature": ("signed-reading", _set([3], SIG[:63]), M),
    "signed-reading: reading of another tag": ("signed-reading", _set([2, 0], "vote"), M),
    "device-record: 31-byte registration": ("device-record", _set([2], ECON[:31]), M),
    "device-record: unknown key type": ("device-record", _set([4, 0], "rsa"), MB),
    "device-record: p256 key of 32 bytes": ("device-record", _set([4, 0], "p256"), MB),
    "device-record: min above max": ("device-record", _set([4, 4, 0, 3], 10), MB),
    "device-record: duplicate metric": (
        "device-record", _set([4, 4], [["e", "", 0, 0, 1], ["e", "", 0, 0, 1]]), MB),
    "device-record: no metrics": ("device-record", _set([4, 4], []), MB),
    "device-record: 63-byte pop": ("device-record", _set([4, 5], SIG[:63]), MB),
    # vote
    "vote: epoch as str": ("vote", _set([3], "0"), M),
    "vote: epoch as bytes": ("vote", _set([3], b"\x00"), M),
    "vote: negative epoch": ("vote", _set([3], -1), M),
    "vote: 31-byte economy": ("vote", _set([2], ECON[:31]), M),
    "vote: 33-byte economy": ("vote", _set([2], ECON + b"\x00"), M),
    "vote: economy as str": ("vote", _set([2], "e" * 32), M),
    "vote: 31-byte entry id": ("vote", _set([4], bytes(31)), M),
    "vote: 63-byte signature": ("vote", _set([6], SIG[:63]), M),
    "vote: validator as array": ("vote", _set([5], [ALICE]), M),
    # entry envelope
    "entry: 31-byte economy id": ("entry", _set([2], ECON[:31]), M),
    "entry: economy as str": ("entry", _set([2], "e" * 32), M),
    "entry: 33-byte author": ("entry", _set([3], ALICE + b"\x00"), M),
    "entry: seq 0": ("entry", _set([4], 0), M),
    "entry: seq as str": ("entry", _set([4], "1"), M),
    "entry: seq 2**63": ("entry", _set([4], 2**63), M),
    "entry: 31-byte prev": ("entry", _set([5], bytes(31)), M),
    "entry: negative ts": ("entry", _set([6], -1), M),
    "entry: ts as bytes": ("entry", _set([6], b"\x01"), M),
    "entry: first entry with a non-zero prev": ("entry", _set([5], ECON), Reason.PREV_MISMATCH),
    # kind
    "entry: unknown kind": ("entry", _set([7], "transfer2"), UK),
    "entry: kind with wrong case": ("entry", _set([7], "Transfer"), UK),
    "entry: empty kind": ("entry", _set([7], ""), UK),
    "entry: kind as bytes": ("entry", _set([7], b"transfer"), M),
    "entry: kind as int": ("entry", _set([7], 1), M),
    # bodies
    "transfer: body not an array": ("entry", _set([8], b""), MB),
    "transfer: body with 2 fields": ("entry", _set([8], [BOB, 5]), MB),
    "transfer: body with 4 fields": ("entry", _set([8], [BOB, 5, "", 0]), MB),
    "transfer: amount 0": ("entry", _set([8, 1], 0), AR),
    "transfer: amount -1": ("entry", _set([8, 1], -1), AR),
    "transfer: amount -2**63": ("entry", _set([8, 1], INT64_MIN), AR),
    "transfer: amount 2**63": ("entry", _set([8, 1], 2**63), AR),
    "transfer: amount 2**64-1": ("entry", _set([8, 1], UINT64_MAX), AR),
    "transfer: amount as str": ("entry", _set([8, 1], "5"), MB),
    "transfer: amount as bytes": ("entry", _set([8, 1], b"\x05"), MB),
    "transfer: memo of 257 bytes": ("entry", _set([8, 2], "m" * 257), MB),
    "transfer: memo of 129 two-byte chars": ("entry", _set([8, 2], "é" * 129), MB),
    "transfer: memo as bytes": ("entry", _set([8, 2], b"hi"), MB),
    "transfer: 31-byte recipient": ("entry", _set([8, 0], BOB[:31]), MB),
    "transfer: recipient as str": ("entry", _set([8, 0], "b" * 32), MB),
    "mint: body with 2 fields": ("entry", lambda w: entry_wire("mint", [BOB, 5]), MB),
    "mint: amount 0": ("entry", lambda w: entry_wire("mint", [BOB, 0, ""]), AR),
    "mint: amount -5": ("entry", lambda w: entry_wire("mint", [BOB, -5, ""]), AR),
    "mint: memo of 257 bytes": ("entry", lambda w: entry_wire("mint", [BOB, 5, "x" * 257]), MB),
    "burn: empty body": ("entry", lambda w: entry_wire("burn", []), MB),
    "burn: body with 2 fields": ("entry", lambda w: entry_wire("burn", [5, 5]), MB),
    "burn: amount 0": ("entry", lambda w: entry_wire("burn", [0]), AR),
    "burn: amount as str": ("entry", lambda w: entry_wire("burn", ["1"]), MB),
    "member.admit: body with 2 fields": (
        "entry", lambda w: entry_wire("member.admit", [BOB, BOB]), MB),
    "member.admit: 33-byte member": (
        "entry", lambda w: entry_wire("member.admit", [BOB + b"\x00"]), MB),
    "credit.set: body with 1 field": ("entry", lambda w: entry_wire("credit.set", [BOB]), MB),
    "credit.set: body with 3 fields": (
        "entry", lambda w: entry_wire("credit.set", [BOB, 1, 1]), MB),
    "credit.set: limit -1": ("entry", lambda w: entry_wire("credit.set", [BOB, -1]), AR),
    "credit.set: limit 2**63": ("entry", lambda w: entry_wire("credit.set", [BOB, 2**63]), AR),
    "credit.set: limit as str": ("entry", lambda w: entry_wire("credit.set", [BOB, "0"]), MB),
    # signed entry
    "signed-entry: 63-byte signature": ("signed-entry", _set([3], SIG[:63]), M),
    "signed-entry: 65-byte signature": ("signed-entry", _set([3], SIG + b"\x00"), M),
    "signed-entry: signature as str": ("signed-entry", _set([3], "s" * 64), M),
    "signed-entry: entry not an array": ("signed-entry", _set([2], b"entry"), M),
    "signed-entry: unknown kind inside": ("signed-entry", _set([2, 7], "pay"), UK),
    "signed-entry: amount 0 inside": ("signed-entry", _set([2, 8, 1], 0), AR),
    # certificate
    "cert: negative epoch": ("cert", _set([4], -1), M),
    "cert: epoch as str": ("cert", _set([4], "0"), M),
    "cert: 9-byte bitmap": ("cert", _set([5], bytes(9)), M),
    "cert: bitmap as str": ("cert", _set([5], "\x0f"), M),
    "cert: 65-byte author signature": ("cert", _set([3], SIG + b"\x00"), M),
    "cert: signatures not an array": ("cert", _set([6], SIG), M),
    "cert: a 63-byte signature": ("cert", _set([6, 2], SIG[:63]), M),
    "cert: 65 signatures": ("cert", _set([6], [SIG] * 65), M),
    "cert: 31-byte economy inside": ("cert", _set([2, 2], ECON[:31]), M),
    "cert: unknown kind inside": ("cert", _set([2, 7], "gift"), UK),
    "cert: memo too long inside": ("cert", _set([2, 8, 2], "m" * 257), MB),
    # genesis
    "genesis: empty name": ("genesis", _set([2], ""), M),
    "genesis: 65-byte name": ("genesis", _set([2], "n" * 65), M),
    "genesis: name as bytes": ("genesis", _set([2], b"name"), M),
    "genesis: 13-byte symbol": ("genesis", _set([3], "S" * 13), M),
    "genesis: decimals 19": ("genesis", _set([4], 19), M),
    "genesis: decimals -1": ("genesis", _set([4], -1), M),
    "genesis: decimals as str": ("genesis", _set([4], "2"), M),
    "genesis: policy with 2 fields": ("genesis", _set([6], ["open", []]), M),
    "genesis: 31-byte validator key": ("genesis", _set([7, 0, 0], bytes(31)), M),
    "genesis: validator weight 0": ("genesis", _set([7, 0, 1], 0), M),
    "genesis: validator weight as str": ("genesis", _set([7, 0, 1], "1"), M),
    "genesis: no validators": ("genesis", _set([7], []), M),
    "genesis: quorum as bytes": ("genesis", _set([8], b"\x03"), M),
    "genesis: ts as str": ("genesis", _set([9], "0"), M),
    "genesis: 33-byte nonce": ("genesis", _set([10], bytes(33)), M),
    "genesis: nonce as str": ("genesis", _set([10], ""), M),
    "genesis: unknown kind": ("genesis", _set([5], "lottery"), Reason.BAD_GENESIS),
    "genesis: impact kind with a 3-field policy": ("genesis", _set([5], "impact"), M),
    "genesis: quorum of 2/3": ("genesis", _set([8], 2), Reason.BAD_GENESIS),
    "genesis: quorum over total": ("genesis", _set([8], 5), Reason.BAD_GENESIS),
    "genesis: identity-point validator": (
        "genesis", _set([7, 0, 0], b"\x01" + bytes(31)), Reason.BAD_KEY),
    # account
    "account: 31-byte head": ("account", _set([3], bytes(31)), M),
    "account: negative seq": ("account", _set([2], -1), M),
    "account: balance as str": ("account", _set([5], "-7"), M),
    "account: balance 2**63": ("account", _set([5], 2**63), M),
    "account: 33-byte admitted": ("account", _set([6], bytes(33)), M),
    "account: limit_set with 2 fields": ("account", _set([7], [T0, ECON]), M),
    "account: limit_set with 4 fields": ("account", _set([7], [T0, ECON, 1, 1]), M),
    "account: limit id as str": ("account", _set([7, 1], "x" * 32), M),
    "account: negative minted": ("account", _set([8], -1), M),
}  # fmt: skip


@pytest.mark.parametrize(("name", "mutate", "reason"), STRUCTURAL.values(), ids=STRUCTURAL.keys())
def test_structural_refusals(name: str, mutate: Callable[[list[Any]], Any], reason: Reason) -> None:
    build, cls = WIRES[name]
    assert cls.decode(codec.encode(build())) is not None  # the base wire is valid
    data = codec.encode(mutate(build()))
    assert reason_of(lambda: cls.decode(data)) is reason


@pytest.mark.parametrize("name", sorted(WIRES))
def test_base_wires_round_trip(name: str) -> None:
    build, cls = WIRES[name]
    data = codec.encode(build())
    assert cls.decode(data).encode() == data


def test_memo_bounds_are_in_utf8_bytes() -> None:
    for memo in ["m" * 256, "é" * 128, "😀" * 64]:
        e = Entry.decode(codec.encode(entry_wire(body=[BOB, 5, memo])))
        assert e.body.memo == memo
    for memo in ["m" * 257, "é" * 128 + "m", "😀" * 64 + "m"]:
        data = codec.encode(entry_wire(body=[BOB, 5, memo]))
        assert reason_of(lambda d=data: Entry.decode(d)) is Reason.MALFORMED_BODY


def test_amount_bounds_are_inclusive() -> None:
    for amount in (1, INT64_MAX):
        e = Entry.decode(codec.encode(entry_wire(body=[BOB, amount, ""])))
        assert e.body.amount == amount
    assert Entry.decode(codec.encode(entry_wire("credit.set", [BOB, 0]))).body.limit == 0


BOOL_LIKE: dict[str, tuple[Callable[[], list[Any]], Any, Sequence[int], Reason]] = {
    "vote version": (vote_wire, Vote, [1], M),
    "vote epoch": (vote_wire, Vote, [3], M),
    "entry seq": (entry_wire, Entry, [4], M),
    "entry ts": (entry_wire, Entry, [6], M),
    "transfer amount": (entry_wire, Entry, [8, 1], MB),
    "cert epoch": (cert_wire, Certificate, [4], M),
    "genesis decimals": (genesis_wire, Genesis, [4], M),
}


@pytest.mark.parametrize(("build", "cls", "path", "reason"), BOOL_LIKE.values(), ids=BOOL_LIKE)
def test_bool_where_an_int_is_expected(
    build: Callable[[], list[Any]], cls: Any, path: Sequence[int], reason: Reason
) -> None:
    # from a decoded value (a bool never gets past the codec, but from_wire
    # must not take True for 1 either) ...
    for flag in (True, False):
        wire = _set(path, flag)(build())
        assert reason_of(lambda w=wire: cls.from_wire(w)) is reason
    # ... and on the wire, where the codec refuses 0xc3 / 0xc2 first
    data = pack(_set(path, True)(build()))
    assert reason_of(lambda: cls.decode(data)) is Reason.NON_CANONICAL


def test_str_bin_swap_is_refused_by_the_typed_decoders() -> None:
    """The bytes of a str field written with a bin header (and vice versa)
    are canonical msgpack of a different value; the schema refuses them."""
    wire = entry_wire()
    swapped = pack(_set([8, 2], b"hi")(entry_wire()))  # memo as bin
    assert swapped != pack(wire)
    assert codec.decode(swapped)[8][2] == b"hi"
    assert reason_of(lambda: Entry.decode(swapped)) is Reason.MALFORMED_BODY
    swapped = pack(_set([2], ECON.decode("latin-1"))(entry_wire()))  # economy as str
    assert reason_of(lambda: Entry.decode(swapped)) is Reason.MALFORMED
    swapped = pack(_set([0], b"entry")(entry_wire()))  # tag as bin
    assert reason_of(lambda: Entry.decode(swapped)) is Reason.MALFORMED


def test_item_bound_counts_each_value_once() -> None:
    # 1 outer array + 40,000 empty arrays = 40,001 values, under MAX_ITEMS.
    assert len(codec.decode(codec.encode([[]] * 40_000))) == 40_000
    over = [[]] * codec.MAX_ITEMS  # MAX_ITEMS + 1 values with the outer array
    with pytest.raises(Refused) as info:
        codec.decode(codec.encode(over))
    assert info.value.reason is Reason.TOO_LARGE
