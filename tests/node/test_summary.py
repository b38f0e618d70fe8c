"""The per-economy summary (node/store/summary.py, docs/sync.md): its
heads digest is a set hash — the same for the same heads whatever the
order and batching they were reached in, different when any head differs —
the store keeps it in the apply transaction equal to one computed from
scratch, and the docs' vectors are what the code computes (the lanes
checked against a lane-by-lane reading of the definition)."""

from __future__ import annotations

import hashlib
import re
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mycelia.node import wire
from mycelia.node.store import Store, summary
from mycelia.node.store.summary import (
    LANES_BYTES,
    HeadsSum,
    Summary,
    fork_digest,
    head_lanes,
)
from mycelia.protocol import Certificate, Reason, Refused, codec
from mycelia.protocol.ledger import GapBuffer
from mycelia.testing.economies import sign_genesis
from tests.node.test_forks import fork_pair
from tests.node.test_sync import a_world

ROOT = Path(__file__).resolve().parents[2]
A, B = b"\x01" * 32, b"\x02" * 32

authors = st.binary(min_size=32, max_size=32)
heads_sets = st.dictionaries(authors, st.integers(1, 2**64 - 1), max_size=8)


def naive_state(heads: dict[bytes, int]) -> bytes:
    """The definition read literally: 1024 little-endian uint16 lanes per
    head, summed lane by lane mod 2^16."""
    lanes = [0] * 1024
    for author, seq in heads.items():
        xof = hashlib.shake_256(b"mycelia/heads/1\0" + author + struct.pack(">Q", seq))
        for i, lane in enumerate(struct.unpack("<1024H", xof.digest(2048))):
            lanes[i] = (lanes[i] + lane) % 65536
    return struct.pack("<1024H", *lanes)


@settings(max_examples=20)
@given(heads_sets)
def test_the_lanes_are_the_definition(heads: dict[bytes, int]) -> None:
    state = HeadsSum.of(heads.items())
    assert state.lanes == naive_state(heads)
    assert state.chains == len(heads)
    assert (
        state.digest()
        == hashlib.blake2b(b"mycelia/heads-sum/1\0" + naive_state(heads), digest_size=32).digest()
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[bytes, int], list[list[tuple[bytes, int, int]]]]:
    """Final heads, and one way to reach them: each chain's head moving up
    through some intermediate seqs, the moves of all chains interleaved in
    any order and cut into batches (in a batch, one move per chain, from
    its head before the batch to its head after, as the store does)."""
    final = draw(st.dictionaries(authors, st.integers(1, 40), min_size=1, max_size=6))
    steps = []
    for author, seq in final.items():
        stops = (
            sorted(draw(st.sets(st.integers(1, seq - 1), max_size=4)) | {seq}) if seq > 1 else [1]
        )
        steps += [(author, n) for n in stops]
    order = draw(st.permutations(steps))
    # a chain's own stops stay in seq order (a head only advances)
    by_author: dict[bytes, list[int]] = {}
    for author, n in steps:
        by_author.setdefault(author, []).append(n)
    seen: dict[bytes, int] = {}
    events = []
    for author, _ in order:
        events.append((author, by_author[author][seen.get(author, 0)]))
        seen[author] = seen.get(author, 0) + 1
    cuts = sorted(draw(st.sets(st.integers(1, len(events)), max_size=5)) | {len(events)})
    heads: dict[bytes, int] = {}
    batches, start = [], 0
    for cut in cuts:
        batch: dict[bytes, list[int]] = {}
        for author, n in events[start:cut]:
            batch.setdefault(author, [heads.get(author, 0), n])[1] = n
            heads[author] = n
        batches.append([(a, old, new) for a, (old, new) in batch.items()])
        start = cut
    return final, batches


@given(histories())
def test_any_order_and_batching_gives_the_state_of_the_final_heads(
    history: tuple[dict[bytes, int], list[list[tuple[bytes, int, int]]]],
) -> None:
    final, batches = history
    state = HeadsSum()
    for batch in batches:
        state = state.advance(batch)
    assert state == HeadsSum.of(final.items())
    assert state.chains == len(final)


@settings(max_examples=20)
@given(histories(), st.integers(1, 4))
def test_reducing_the_lane_sums_within_a_batch_changes_nothing(
    history: tuple[dict[bytes, int], list[list[tuple[bytes, int, int]]]], fold: int
) -> None:
    """``advance`` reduces its lane sums every ``_FOLD`` (2^15) heads; at
    any other period the result is the same."""
    moves = [m for batch in history[1] for m in batch]
    whole = HeadsSum().advance(moves)
    original = summary._FOLD
    summary._FOLD = fold
    try:
        assert HeadsSum().advance(moves) == whole
    finally:
        summary._FOLD = original


@given(heads_sets, st.data())
def test_any_different_head_gives_another_digest(
    heads: dict[bytes, int], data: st.DataObject
) -> None:
    changes = ["add"] + (["bump", "drop", "rename"] if heads else [])
    change = data.draw(st.sampled_from(changes))
    other = dict(heads)
    if change == "add":
        other[data.draw(authors.filter(lambda a: a not in heads))] = data.draw(
            st.integers(1, 2**64 - 1)
        )
    else:
        author = data.draw(st.sampled_from(sorted(heads)))
        seq = other.pop(author)
        if change == "bump":
            other[author] = data.draw(st.integers(1, 2**64 - 1).filter(lambda n: n != seq))
        elif change == "rename":
            other[data.draw(authors.filter(lambda a: a not in heads))] = seq
    assert HeadsSum.of(other.items()).digest() != HeadsSum.of(heads.items()).digest()
    # the same count of certified entries: the digest alone tells them apart
    ours = Summary.of(0, HeadsSum.of(heads.items()), [])
    theirs = Summary.of(0, HeadsSum.of(other.items()), [])
    assert not ours.same_heads(theirs)
    assert ours.same_forks(theirs)


# -- in the store: kept in the apply transaction -------------------------------------------------

WORLD, CERTS = a_world()


def _store_summary(path: Path, batches: list[list[Certificate]]) -> tuple[Summary, Summary]:
    """The summary a store keeps after applying ``batches`` (gaps parked
    across them), and the one computed from its heads from scratch."""
    store = Store(path, sync=False)
    try:
        store.add_economy_sync(sign_genesis(WORLD.genesis, WORLD.vkeys))
        buffer = GapBuffer()
        for batch in batches:
            store.apply_sync(WORLD.economy, buffer, batch)
        heads = HeadsSum.of(store.heads(WORLD.id).items())
        scratch = Summary.of(sum(store.heads(WORLD.id).values()), heads, store.fork_slots(WORLD.id))
        return store.summary_of(WORLD.id), scratch
    finally:
        store.close()


@st.composite
def deliveries(draw: st.DrawFn) -> list[list[Certificate]]:
    """The certificates in any order, cut into batches."""
    order = draw(st.permutations(CERTS))
    cuts = sorted(draw(st.sets(st.integers(1, len(order)), max_size=4)) | {len(order)})
    return [order[a:b] for a, b in zip([0, *cuts], cuts, strict=False) if order[a:b]]


@settings(max_examples=25)
@given(deliveries(), deliveries())
def test_two_stores_that_applied_in_other_orders_have_equal_summaries(
    one: list[list[Certificate]], two: list[list[Certificate]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kept_one, scratch_one = _store_summary(Path(tmp) / "one", one)
        kept_two, scratch_two = _store_summary(Path(tmp) / "two", two)
    assert kept_one == scratch_one
    assert kept_two == scratch_two
    assert kept_one == kept_two
    assert kept_one.certified == len(CERTS)


@settings(max_examples=25)
@given(deliveries(), st.sampled_from(CERTS))
def test_a_store_missing_any_certificate_has_another_summary(
    batches: list[list[Certificate]], missing: Certificate
) -> None:
    """Missing one certificate (and so, with a gap, every later one of its
    chain: parked, not applied) changes the heads part."""
    short = [[c for c in batch if c is not missing] for batch in batches]
    with tempfile.TemporaryDirectory() as tmp:
        full, _ = _store_summary(Path(tmp) / "full", batches)
        lacking, scratch = _store_summary(Path(tmp) / "lacking", short)
    assert lacking == scratch
    assert not lacking.same_heads(full)


def test_a_refused_certificate_leaves_the_heads_part_as_it_was(tmp_path: Path) -> None:
    """The second certificate for a slot is refused (``conflict``): the
    heads part does not move, the fork part records the slot."""
    x, y = fork_pair(WORLD)
    store = Store(tmp_path / "s", sync=False)
    try:
        store.add_economy_sync(sign_genesis(WORLD.genesis, WORLD.vkeys))
        store.apply_sync(WORLD.economy, GapBuffer(), [*CERTS, x])
        before = store.summary_of(WORLD.id)
        result = store.apply_sync(WORLD.economy, GapBuffer(), [y])
        assert [exc.reason for _, exc in result.refused] == [Reason.CONFLICT]
        after = store.summary_of(WORLD.id)
        assert after.same_heads(before)
        assert (before.forks, after.forks) == (0, 1)
        assert after.fork_digest == fork_digest([(x.entry.author, 1)])
    finally:
        store.close()


# -- values and records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        codec.encode(["summary", 1, 0, b"\x00" * (LANES_BYTES - 1)]),
        codec.encode(["summary", 1, 0, b"\x00" * (LANES_BYTES + 1)]),
        codec.encode(["summary", 2, 0, b"\x00" * LANES_BYTES]),
        codec.encode(["summary", 1, -1, b"\x00" * LANES_BYTES]),
        codec.encode(["sizes", 1, 0, b"\x00" * LANES_BYTES]),
        codec.encode(["summary", 1, 0]),
    ],
)
def test_a_bad_stored_summary_record_is_refused(raw: bytes) -> None:
    with pytest.raises(Refused) as info:
        HeadsSum.decode(raw)
    assert info.value.reason in (Reason.MALFORMED, Reason.TOO_LARGE)


def test_the_record_round_trips() -> None:
    state = HeadsSum.of([(A, 2), (B, 7)])
    assert HeadsSum.decode(state.encode()) == state
    assert len(state.encode()) == LANES_BYTES + 14


def test_values_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="lanes"):
        HeadsSum(0, b"\x00" * 10)
    with pytest.raises(ValueError, match="chains"):
        HeadsSum(-1)
    with pytest.raises(ValueError, match="advances"):
        HeadsSum().advance([(A, 3, 3)])
    with pytest.raises(ValueError, match="a head"):
        head_lanes(A, 0)
    with pytest.raises(ValueError, match="heads"):
        Summary(0, 0, b"\x00" * 31, 0, b"\x00" * 32)
    with pytest.raises(ValueError, match="forks"):
        Summary(0, 0, b"\x00" * 32, 2**64, b"\x00" * 32)


def docs_vectors() -> dict[str, str]:
    text = (ROOT / "docs" / "sync.md").read_text()
    section = text.split("### Vectors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| `([0-9a-f]+)` \|$", section, re.MULTILINE)
    assert len(rows) == 10, rows
    return dict(rows)


def test_the_docs_vectors_are_what_the_code_computes() -> None:
    v = docs_vectors()
    lanes = head_lanes(A, 1).to_bytes(LANES_BYTES, "little")
    two = HeadsSum.of([(A, 2), (B, 7)])
    assert v["`lanes(A, 1)`, first 16 bytes"] == lanes[:16].hex()
    assert v["`lanes(A, 1)`, last 16 bytes"] == lanes[-16:].hex()
    assert v["`heads_digest` of no heads"] == HeadsSum().digest().hex()
    assert v["`heads_digest` of `{(A, 1)}`"] == HeadsSum.of([(A, 1)]).digest().hex()
    assert v["`state` of `{(A, 2), (B, 7)}`, first 16 bytes"] == two.lanes[:16].hex()
    assert v["`heads_digest` of `{(A, 2), (B, 7)}`"] == two.digest().hex()
    assert v["`forks_digest` of no slots"] == fork_digest([]).hex()
    assert v["`forks_digest` of `[(A, 3)]`"] == fork_digest([(A, 3)]).hex()
    request = wire.encode_sync_request("summary", bytes(range(32)))
    assert v['request `["summary", 0x00 01 … 1f]`'] == request.hex()
    answer = wire.encode_summary(Summary.of(9, two, [(A, 3)]))
    assert v["answer: 9 certified, heads `{(A, 2), (B, 7)}`, slot `(A, 3)`"] == answer.hex()
    # and the lanes of the vectors are the definition's
    assert two.lanes == naive_state({A: 2, B: 7})
