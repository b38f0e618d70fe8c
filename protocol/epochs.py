"""Epochs: how an enacted proposal becomes the next epoch, and the
committee chain that lets anyone verify a certificate of any epoch offline.

Why this exists: every vote and certificate names its epoch, and a
certificate is verified against the committee of *its* epoch
(``certificates.py``). A node learns the committees by applying certified
``gov.enact`` entries; a wallet or another economy learns them from the
genesis plus a :class:`CommitteeChain`. Both derive each epoch the same
way, here.

Theory of operation
-------------------

A certified ``gov.enact`` of epoch *e* whose body names epoch *e + 1*
writes the fact ``epoch/<e + 1>`` = ``[enact id, proposal id]``
(``governance.py``; the ``("epoch", e + 1)`` lock makes it unique while at
most ``f`` of *e*'s weight is faulty). The next :class:`~mycelia.protocol.economy.EpochRecord`
is the proposal's action applied to epoch *e*'s record
(:func:`next_record`): ``policy.set`` changes policy fields and settings,
``committee.set`` the validators and quorum. It needs the proposal's body,
which is another author's fact: :func:`follow` advances an
:class:`~mycelia.protocol.economy.Economy` over every epoch whose
enactment *and* proposal the state holds, and stops at the first that
lacks either (a node then fetches the missing certificate). Nothing of a
later epoch can be verified before, so certificates of epoch *e + 1* wait
(``wrong_epoch``) until their epoch is known. Were a certified enactment's
action ever invalid (only a faulty quorum certifies one), its epoch still
exists, with the previous epoch's committee and policy: every node derives
the same.

The committee chain (:class:`CommitteeChain`)::

    chain = ["committee-chain", 1, first_epoch, [[enact_cert, proposal_cert], ...]]

has one link per epoch from ``first_epoch`` (1 from the genesis), each the
enactment's certificate and the enacted proposal's certificate (canonical
bytes). :meth:`CommitteeChain.verify` walks it from an economy at
``first_epoch - 1`` (``Economy.from_signed`` for the genesis): each
enactment must be of the epoch reached, verify under its committee and name
the next epoch; its proposal must be the one it names and verify under the
committee of its own (earlier or same) epoch; the action then gives the next
record. A policy-only epoch is a link too: the numbering must have no gaps,
or a hidden ``committee.set`` could be skipped. The result verifies any
certificate of any epoch it reached, offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mycelia.protocol import codec, schema
from mycelia.protocol.certificates import MAX_CERT_BYTES, Certificate
from mycelia.protocol.economy import Economy, EpochRecord
from mycelia.protocol.gov_bodies import ACTIONS, GovEnact, GovPropose, ProposalRecord
from mycelia.protocol.governance import EPOCH_FACT, PROPOSAL_FACT, epoch_key
from mycelia.protocol.reasons import Reason, Refused
from mycelia.protocol.state import StateView, fact_key

__all__ = [
    "MAX_CHAIN_LINKS",
    "ChainLink",
    "CommitteeChain",
    "EpochLink",
    "epoch_link",
    "follow",
    "next_record",
    "proposal_record",
]

#: Most links one chain holds (a longer history is verified in segments,
#: each from the economy the one before reached).
MAX_CHAIN_LINKS = 256
MAX_CHAIN_BYTES = 64 + MAX_CHAIN_LINKS * 2 * (MAX_CERT_BYTES + 8)


@dataclass(frozen=True, slots=True)
class EpochLink:
    """The ``epoch/<n>`` fact: the enactment that created epoch ``n`` and
    the proposal it enacted."""

    epoch: int
    enact: bytes
    proposal: bytes


def epoch_link(view: StateView, epoch: int) -> EpochLink | None:
    raw = view.get_record(fact_key(EPOCH_FACT, epoch_key(epoch)))
    if raw is None:
        return None
    f = schema.list_(codec.decode(raw, max_size=128), "epoch fact", min_len=2, max_len=2)
    return EpochLink(epoch, schema.bytes_(f[0], "enact", 32), schema.bytes_(f[1], "proposal", 32))


def next_record(
    economy: Economy, proposal: ProposalRecord, enact: bytes, proposal_id: bytes
) -> EpochRecord:
    """Epoch ``economy.epoch + 1`` as ``proposal``'s action makes it."""
    body = proposal.body
    record = economy.current
    try:
        return ACTIONS[body.action].next_epoch(
            economy.genesis, record, body.payload, enact, proposal_id
        )
    except Refused:
        # Validators refuse an invalid action (bad_payload) before voting:
        # only a faulty quorum certifies one. Keep what was in force.
        return EpochRecord(
            record.number + 1,
            record.validators,
            record.quorum,
            record.policy,
            record.settings,
            enact,
            proposal_id,
        )


def follow(economy: Economy, view: StateView) -> Economy:
    """``economy`` advanced over every later epoch ``view`` holds the
    enactment and the proposal of (module docstring)."""
    while (link := epoch_link(view, economy.epoch + 1)) is not None:
        raw = view.get_record(fact_key(PROPOSAL_FACT, link.proposal))
        if raw is None:
            break
        p = ProposalRecord.decode(raw)
        economy = economy.advanced(next_record(economy, p, link.enact, link.proposal))
    return economy


def proposal_record(cert: Certificate) -> ProposalRecord:
    """The record a certified proposal writes (``governance.py``)."""
    entry = cert.entry
    if not isinstance(entry.body, GovPropose):
        raise Refused(Reason.MALFORMED, "a committee link's proposal is not a gov.propose")
    return ProposalRecord(entry.author, entry.ts_ms, cert.epoch, entry.body)


@dataclass(frozen=True, slots=True)
class ChainLink:
    enact: Certificate
    proposal: Certificate


@dataclass(frozen=True, slots=True)
class CommitteeChain:
    """Certified enactments, one per epoch from ``first_epoch``."""

    first_epoch: int
    links: tuple[ChainLink, ...]

    def __post_init__(self) -> None:
        schema.int_(self.first_epoch, "first_epoch", 1, schema.UINT64_MAX)
        if len(self.links) > MAX_CHAIN_LINKS:
            raise Refused(Reason.TOO_LARGE, f"more than {MAX_CHAIN_LINKS} links")

    def verify(self, economy: Economy) -> Economy:
        """``economy`` (at ``first_epoch - 1``) advanced through every link;
        raises :class:`Refused` at the first link that does not verify."""
        if economy.epoch != self.first_epoch - 1:
            raise Refused(
                Reason.WRONG_EPOCH,
                f"the chain starts at epoch {self.first_epoch}; the economy is at {economy.epoch}",
            )
        for link in self.links:
            enact, prop = link.enact, link.proposal
            body = enact.entry.body
            if not isinstance(body, GovEnact):
                raise Refused(Reason.MALFORMED, "a committee link's enactment is not a gov.enact")
            if enact.epoch != economy.epoch or body.epoch != economy.epoch + 1:
                raise Refused(
                    Reason.WRONG_EPOCH,
                    f"link certified in epoch {enact.epoch} enacts epoch {body.epoch}; "
                    f"the chain is at {economy.epoch}",
                )
            enact.verify(economy)
            if prop.entry_id != body.proposal:
                raise Refused(
                    Reason.MALFORMED, "a link's proposal is not the one its enactment names"
                )
            prop.verify(economy)
            record = next_record(economy, proposal_record(prop), enact.entry_id, prop.entry_id)
            economy = economy.advanced(record)
        return economy

    @classmethod
    def build(
        cls,
        economy: Economy,
        certificate: Callable[[bytes], Certificate | None],
        first_epoch: int = 1,
    ) -> CommitteeChain:
        """The chain of ``economy``'s epochs from ``first_epoch``, with the
        certificates ``certificate(entry_id)`` looks up (a node's store)."""
        links = []
        for record in economy.epochs[first_epoch:]:
            enact, prop = certificate(record.enact), certificate(record.proposal)
            if enact is None or prop is None:
                raise Refused(Reason.MISSING, f"the certificates of epoch {record.number}")
            links.append(ChainLink(enact, prop))
        return cls(first_epoch, tuple(links))

    def to_wire(self) -> list[Any]:
        return [
            "committee-chain",
            1,
            self.first_epoch,
            [[link.enact.encode(), link.proposal.encode()] for link in self.links],
        ]

    def encode(self) -> bytes:
        return codec.encode_trusted(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> CommitteeChain:
        value = codec.decode(data, max_size=MAX_CHAIN_BYTES)
        f = schema.array(value, "committee-chain", 1, 4, "committee chain")
        raw = schema.list_(f[3], "links", max_len=MAX_CHAIN_LINKS)
        links = []
        for item in raw:
            pair = schema.list_(item, "link", min_len=2, max_len=2)
            links.append(
                ChainLink(
                    Certificate.decode(schema.bytes_(pair[0], "enact", max_size=MAX_CERT_BYTES)),
                    Certificate.decode(schema.bytes_(pair[1], "proposal", max_size=MAX_CERT_BYTES)),
                )
            )
        return cls(f[2], tuple(links))
