"""The epoch handover: lock snapshots, and seeding the next committee's locks.

Why this exists: safety without consensus rests on locks (``locks.py``): an
honest validator never votes for two entries that consume one resource, and
two quorums share an honest validator. When the committee changes, the new
validators hold none of the old ones' locks, and a new quorum need not
contain anyone who voted before — an entry certified in epoch *e* could be
contradicted in *e + 1*. The handover closes that gap (DESIGN §7):

1. a validator of epoch *e* that applies the enactment of *e + 1* stops
   voting in *e* and signs a **snapshot** of everything it holds: its lock
   table (``resource -> entry id``) and the ballots it voted for or
   inherited (``seals.Held``, so seals of the new epoch still list ballots
   cast in the old one). A snapshot is a seal of epoch *e*, in parts
   (bounded decoding; a validator's snapshot counts only with all its
   parts)::

       part = ["lock-snapshot", 1, economy, epoch, part, parts,
               [[resource, entry id], ...],      # ascending resources
               [held ballot, ...]]               # ascending ballot ids
       signed with the domain ``lock-snapshot`` over its id; carried as
       ["signed-lock-snapshot", 1, <the part's fields>, validator, signature]

2. every validator of *e + 1* — new or staying — sets its lock table and
   held ballots to :func:`seed` of complete snapshots from validators of
   *e* weighing at least *e*'s quorum, then votes in *e + 1*.

The seed rule (:func:`seed`), per ``(resource, entry)`` pair and per held
ballot in the union of the snapshots:

* **kept** iff the weight of the snapshots holding it, plus the weight of
  *e*'s validators with no snapshot, plus the Byzantine bound ``f``, reaches
  *e*'s quorum — otherwise the entry cannot have been certified in *e*
  (each certifying quorum would need more honest holders), nor later in
  *e* (honest validators stopped voting there before snapshotting);
* **dropped** if its entry also holds ``("epoch", e + 1)`` and is not the
  enactment that created *e + 1*: that entry lost the race and can never be
  certified, so its other locks (its ``gov.outcome``) must not outlive it;
* a resource kept for two different entries is **split**: locked to
  :data:`SPLIT`, which no entry's id is, so neither can be voted for again
  (at most one of them was certified, and it is final already).

Why it is safe: an entry certified in *e* had a quorum's votes; its honest
voters in any quorum of snapshots hold its locks and ballots (they voted
before they snapshotted), so it is kept, and every honest validator of
*e + 1* holds it: no conflicting entry gets an honest vote in *e + 1*, and
the seals of *e + 1* list every ballot certified in *e*. The property tests
(``tests/protocol/test_gov_properties.py``) replace up to the whole
committee with Byzantine validators in both epochs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, keys, schema
from mycelia.protocol.domains import ID_SIZE, LOCK_SNAPSHOT
from mycelia.protocol.economy import Economy
from mycelia.protocol.locks import resource_key
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.seals import Held

__all__ = [
    "MAX_PART_BALLOTS",
    "MAX_PART_LOCKS",
    "SPLIT",
    "LockSnapshot",
    "Seeded",
    "seed",
    "snapshot",
]

#: Bounds of one snapshot part (a part decodes within ``codec.MAX_ITEMS``).
MAX_PART_LOCKS = 8192
MAX_PART_BALLOTS = 2048
MAX_PARTS = 1 << 20
MAX_PART_BYTES = 256 + MAX_PART_LOCKS * (2 * (ID_SIZE + 2) + 1) + MAX_PART_BALLOTS * 96
#: The lock of a split resource: no entry id (a BLAKE2b output) is 32 bytes of 0xff.
SPLIT = b"\xff" * ID_SIZE


@dataclass(frozen=True, slots=True)
class LockSnapshot:
    """One signed part of a validator's snapshot at the end of ``epoch``."""

    economy: bytes
    epoch: int
    part: int
    parts: int
    locks: tuple[tuple[bytes, bytes], ...]
    ballots: tuple[Held, ...]
    validator: bytes
    signature: bytes

    def __post_init__(self) -> None:
        schema.bytes_(self.economy, "economy", ID_SIZE)
        schema.int_(self.epoch, "epoch", 0, schema.UINT64_MAX)
        schema.int_(self.parts, "parts", 1, MAX_PARTS)
        schema.int_(self.part, "part", 0, self.parts - 1)
        if len(self.locks) > MAX_PART_LOCKS or len(self.ballots) > MAX_PART_BALLOTS:
            raise Refused(Reason.TOO_LARGE, "snapshot part over its bounds")
        for resource, entry in self.locks:
            schema.bytes_(resource, "resource", ID_SIZE)
            schema.bytes_(entry, "entry id", ID_SIZE)
        resources = [r for r, _ in self.locks]
        if resources != sorted(set(resources)):
            raise Refused(Reason.MALFORMED, "snapshot locks: one per resource, ascending")
        ids = [h.ballot for h in self.ballots]
        if ids != sorted(set(ids)):
            raise Refused(Reason.MALFORMED, "snapshot ballots: distinct and ascending")
        schema.bytes_(self.validator, "validator", keys.PUBLIC_KEY_SIZE)
        schema.bytes_(self.signature, "signature", keys.SIGNATURE_SIZE)

    def content(self) -> list[Any]:
        return [
            "lock-snapshot",
            1,
            self.economy,
            self.epoch,
            self.part,
            self.parts,
            [[r, e] for r, e in self.locks],
            [h.to_wire() for h in self.ballots],
        ]

    @property
    def id(self) -> bytes:
        return LOCK_SNAPSHOT.id(codec.encode_trusted(self.content()))

    def verify(self, economy: Economy) -> int:
        """The signer's index in its epoch's committee (``bad_seal`` if it
        is not a validator of it or the signature does not verify)."""
        if self.economy != economy.id:
            raise Refused(Reason.WRONG_ECONOMY, "snapshot is for another economy")
        committee = economy.committee(self.epoch)
        if self.validator not in committee.keys:
            raise Refused(Reason.BAD_SEAL, f"snapshot signer is not a validator of {self.epoch}")
        if not keys.verify(self.validator, LOCK_SNAPSHOT, self.id, self.signature):
            raise Refused(Reason.BAD_SEAL, "snapshot signature does not verify")
        return committee.keys.index(self.validator)

    def to_wire(self) -> list[Any]:
        c = self.content()
        return ["signed-lock-snapshot", 1, *c[2:], self.validator, self.signature]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> LockSnapshot:
        value = codec.decode(data, max_size=MAX_PART_BYTES)
        f = schema.array(value, "signed-lock-snapshot", 1, 10, "lock snapshot")
        raw_locks = schema.list_(f[6], "locks", max_len=MAX_PART_LOCKS)
        locks = []
        for pair in raw_locks:
            p = schema.list_(pair, "lock", min_len=2, max_len=2)
            locks.append((p[0], p[1]))
        raw_ballots = schema.list_(f[7], "ballots", max_len=MAX_PART_BALLOTS)
        held = tuple(Held.from_wire(h) for h in raw_ballots)
        return cls(f[2], f[3], f[4], f[5], tuple(locks), held, f[8], f[9])


def snapshot(
    key: keys.SigningKey,
    economy: Economy,
    locks: Mapping[bytes, bytes],
    held: Iterable[Held],
    *,
    part_locks: int = MAX_PART_LOCKS,
    part_ballots: int = MAX_PART_BALLOTS,
) -> list[LockSnapshot]:
    """``key``'s snapshot of its ``locks`` and ``held`` ballots at the end
    of ``economy``'s current epoch, in signed parts."""
    pairs = sorted(locks.items())
    ballots = sorted({h.ballot: h for h in held}.values(), key=lambda h: h.ballot)
    n = max(1, -(-len(pairs) // part_locks), -(-len(ballots) // part_ballots))
    out = []
    for i in range(n):
        unsigned = LockSnapshot(
            economy.id,
            economy.epoch,
            i,
            n,
            tuple(pairs[i * part_locks : (i + 1) * part_locks]),
            tuple(ballots[i * part_ballots : (i + 1) * part_ballots]),
            key.public,
            bytes(keys.SIGNATURE_SIZE),
        )
        sig = keys.sign(key, LOCK_SNAPSHOT, unsigned.id)
        out.append(
            LockSnapshot(
                unsigned.economy,
                unsigned.epoch,
                i,
                n,
                unsigned.locks,
                unsigned.ballots,
                key.public,
                sig,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Seeded:
    """What a validator of the new epoch starts from."""

    locks: dict[bytes, bytes]
    held: tuple[Held, ...]


def seed(economy: Economy, epoch: int, parts: Iterable[LockSnapshot]) -> Seeded:
    """The locks and held ballots of every validator of ``epoch + 1``, from
    snapshot ``parts`` of ``epoch``'s validators (module docstring).
    ``economy`` must know ``epoch + 1`` (the enactment that created it).
    Parts of other epochs or that do not verify are refused; a validator
    whose parts disagree or are incomplete does not count;
    ``quorum_not_reached`` unless the complete snapshots weigh a quorum."""
    committee = economy.committee(epoch)
    winner = economy.committee(epoch + 1).enact
    by_signer: dict[int, dict[int, LockSnapshot]] = {}
    for part in parts:
        if part.epoch != epoch:
            raise Refused(Reason.WRONG_EPOCH, f"a snapshot of epoch {part.epoch}, not {epoch}")
        index = part.verify(economy)
        by_signer.setdefault(index, {})[part.part] = part
    complete: dict[int, list[LockSnapshot]] = {}
    for index, got in by_signer.items():
        counts = {p.parts for p in got.values()}
        if len(counts) == 1 and set(got) == set(range(counts.pop())):
            complete[index] = [got[i] for i in sorted(got)]
    snapped = committee.weight_of(complete)
    if snapped < committee.quorum:
        raise Refused(
            Reason.QUORUM_NOT_REACHED,
            f"complete snapshots weigh {snapped} < quorum {committee.quorum} of epoch {epoch}",
        )
    floor = committee.quorum - (committee.total_weight - snapped) - committee.byzantine_bound

    lock_weight: dict[tuple[bytes, bytes], int] = {}
    held_weight: dict[Held, int] = {}
    for index, snapshot_parts in complete.items():
        w = committee.weights[index]
        for part in snapshot_parts:
            for pair in part.locks:
                lock_weight[pair] = lock_weight.get(pair, 0) + w
            for h in part.ballots:
                held_weight[h] = held_weight.get(h, 0) + w
    epoch_lock = resource_key("epoch", economy.id, epoch + 1)
    dead = {e for (r, e) in lock_weight if r == epoch_lock and e != winner}
    locks: dict[bytes, bytes] = {}
    for (resource, entry), weight in sorted(lock_weight.items()):
        if weight < floor or entry in dead:
            continue
        held_by = locks.get(resource)
        locks[resource] = entry if held_by is None or held_by == entry else SPLIT
    held = tuple(
        sorted(
            (h for h, weight in held_weight.items() if weight >= floor and h.ballot not in dead),
            key=lambda h: (h.ballot, h.to_wire()),
        )
    )
    return Seeded(locks, held)
