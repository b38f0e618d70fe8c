"""Fork evidence: two certificates for one chain slot, who signed both, and
what a node does once it holds them.

Why this exists: the lock rule (``locks.py``) makes two certificates for one
``(economy, author, seq)`` impossible while the faulty validators weigh less
than ``2q - T``. Beyond that bound (two of four validators ignoring their
locks) an author can get two certified entries into one slot, and different
nodes then hold different ones. Nothing in the protocol can say which one is
right, but the pair itself is *proof* that validators misbehaved, checkable
offline by anyone holding the genesis. So a node keeps it, reports it, hands
it to its peers, and stops building on the contested chain.

What counts as evidence (:meth:`ForkEvidence.verify`), in this order:

1. the two certificates name the same slot — the same economy, author and
   seq — else ``not_a_fork``;
2. they are for different entries (entry ids), else ``not_a_fork`` (one
   entry certified twice, e.g. by different quorums, is no conflict);
3. each certificate is valid for the economy (``Certificate.verify``): a
   forged one is refused with its own reason (``bad_signature``,
   ``quorum_not_reached``, ``bad_bitmap``, ``wrong_economy``,
   ``wrong_epoch``). The cheap structural checks come first so a pair that
   could never be evidence costs no signature check.

Different ``prev`` values do not matter: a slot is ``(author, seq)``, the
resource every validator locks (``locks.resources``). So two certificates
at ``seq + 1`` built on the two branches of a fork at ``seq`` are evidence
too, of a fork at ``seq + 1``.

Who is guilty (:meth:`ForkEvidence.guilty`): the validators whose signatures
are in *both* certificates. An honest validator durably locks the slot to
one entry before it votes and never votes for another entry there, so a
signature on each of two different entries of one slot is a broken lock,
whatever the order or the network did. Validators in only one certificate
are not implicated (an honest validator's vote is in one of them). Two
quorums overlap by at least ``2q - T`` of the weight, so the guilty weigh at
least that (property-tested). Validators that equivocated but whose votes
were not used in these two certificates are not named: the evidence proves
no more than it shows.

The rule after a fork (applied by ``ledger.Ledger`` and ``ledger.check``
through :func:`forked`): once a node holds evidence for ``(author, seq)``,
it applies and votes for **nothing of that author at or past ``seq``** that
it has not applied already (reason ``forked``). What it applied stays:

* the branch a node already applied at the fork (and anything after it that
  it applied before learning of the fork) is final on that node — the
  certificates are valid, other authors' chains may already build on what
  they credited (a recipient spent the money on its own chain), and undoing
  that would be a cross-author, non-monotonic rollback the commutativity
  rule (DESIGN §4) forbids; a node that applied neither keeps the slot
  empty (a certificate waiting in the gap buffer is dropped);
* nothing past the fork is applied, so the equivocating author cannot keep
  spending on both branches, and nodes that applied different branches stop
  diverging further. Reconciling the branches (an epoch change that
  replaces the guilty validators, a steward's decision) is outside this
  model: the evidence is what that decision starts from.

Other authors are unaffected: their chains never read the forked author's
non-monotonic state.

Wire form (the canonical array; certificates as their own canonical bytes,
as gossip carries them, so a node serves them straight from its store and
the nesting stays within the codec's depth bound)::

    evidence = ["fork", 1, certificate_bytes, certificate_bytes]

the two in increasing entry-id order, so a pair has exactly one byte form
and one id (``FORK`` domain). At most :data:`MAX_EVIDENCE_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, schema
from mycelia.protocol.certificates import MAX_CERT_BYTES, Certificate
from mycelia.protocol.domains import FORK
from mycelia.protocol.economy import Economy
from mycelia.protocol.quorum import bitmap_indices
from mycelia.protocol.reasons import Reason, Refused

__all__ = ["MAX_EVIDENCE_BYTES", "ForkEvidence", "forked", "refuse_forked"]

#: Two certificates and the array around them.
MAX_EVIDENCE_BYTES = 2 * MAX_CERT_BYTES + 64


def forked(fork_seq: int | None, seq: int) -> bool:
    """The rule after a fork: may an entry at ``seq`` of an author whose
    lowest known forked slot is ``fork_seq`` (None: no fork known) still be
    voted for or applied? No, at or past the fork."""
    return fork_seq is not None and seq >= fork_seq


def refuse_forked(fork_seq: int, seq: int) -> Refused:
    """The ``forked`` refusal for an entry at ``seq``."""
    return Refused(
        Reason.FORKED,
        f"the author's chain forked at seq {fork_seq}; nothing at or past it "
        f"(this entry is at {seq}) is applied",
    )


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two certificates offered as proof of a fork, lower entry id first.
    Build with :meth:`of`; nothing is checked until :meth:`verify` (or the
    structural :meth:`check`)."""

    first: Certificate
    second: Certificate

    def __post_init__(self) -> None:
        if self.first.entry_id > self.second.entry_id:
            raise Refused(Reason.NON_CANONICAL, "fork evidence lists its certificates out of order")

    @classmethod
    def of(cls, a: Certificate, b: Certificate) -> ForkEvidence:
        """The evidence of ``a`` and ``b`` in canonical order; raises
        ``not_a_fork`` unless they name one slot with different entries."""
        evidence = cls(a, b) if a.entry_id <= b.entry_id else cls(b, a)
        evidence.check()
        return evidence

    # -- the slot -------------------------------------------------------------------

    @property
    def economy(self) -> bytes:
        return self.first.entry.economy

    @property
    def author(self) -> bytes:
        return self.first.entry.author

    @property
    def seq(self) -> int:
        return self.first.entry.seq

    @property
    def entry_ids(self) -> tuple[bytes, bytes]:
        return self.first.entry_id, self.second.entry_id

    @property
    def id(self) -> bytes:
        return FORK.id(self.encode())

    # -- the rules --------------------------------------------------------------------

    def check(self) -> None:
        """The structural part of :meth:`verify` (no signature checked):
        one slot, two different entries; else ``not_a_fork``."""
        a, b = self.first.entry, self.second.entry
        if (a.economy, a.author, a.seq) != (b.economy, b.author, b.seq):
            raise Refused(
                Reason.NOT_A_FORK,
                f"the certificates are for different slots (seq {a.seq} and {b.seq}, "
                f"{'same' if a.author == b.author else 'different'} author, "
                f"{'same' if a.economy == b.economy else 'different'} economy)",
            )
        if self.first.entry_id == self.second.entry_id:
            raise Refused(Reason.NOT_A_FORK, "both certificates are for the same entry")

    def verify(self, economy: Economy) -> tuple[bytes, ...]:
        """Raise :class:`Refused` unless this is evidence of a fork in
        ``economy`` (module docstring); return the guilty validators' keys.
        Pure and offline."""
        self.check()
        self.first.verify(economy)
        self.second.verify(economy)
        return self.guilty(economy)

    def guilty(self, economy: Economy) -> tuple[bytes, ...]:
        """The keys of the validators that signed both certificates, in the
        order of the first one's committee (each certificate's signers are
        read in the committee of its own epoch, so a fork across a
        committee change names the keys that signed both sides).
        Meaningful for verified evidence only."""
        first = economy.committee(self.first.epoch).keys
        second = economy.committee(self.second.epoch).keys
        signed_second = {second[i] for i in bitmap_indices(self.second.bitmap, len(second))}
        return tuple(
            first[i]
            for i in bitmap_indices(self.first.bitmap, len(first))
            if first[i] in signed_second
        )

    # -- encoding ---------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        return ["fork", 1, self.first.encode(), self.second.encode()]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> ForkEvidence:
        """Strict and bounded; checks the form only (order included), not
        what it proves: call :meth:`verify`."""
        return cls.from_wire(codec.decode(data, max_size=MAX_EVIDENCE_BYTES))

    @classmethod
    def from_wire(cls, value: Any) -> ForkEvidence:
        f = schema.array(value, "fork", 1, 4, "fork evidence")
        first = Certificate.decode(schema.bytes_(f[2], "certificate", max_size=MAX_CERT_BYTES))
        second = Certificate.decode(schema.bytes_(f[3], "certificate", max_size=MAX_CERT_BYTES))
        return cls(first, second)
