"""Messages between nodes: gossip batches and the vote and sync protocols.

Why this exists: every byte a peer sends is untrusted, so each message type
has one encoder and one strict decoder here, built on the protocol's
canonical codec (bounded size and depth, re-encode-and-compare) and schema
helpers. A decoder refuses with :class:`~mycelia.protocol.Refused` (reason
``non_canonical``, ``too_large`` or ``malformed``); the services answer or
drop accordingly and keep serving.

Everything is batched (DESIGN §7, notes/py-libp2p.md: py-libp2p spends
milliseconds per message whatever its size):

* gossip, topic ``/mycelia/certs/1/<economy hex>``::

      ["certs", 1, [cert_bytes, ...]]

  Certificates travel as their own canonical bytes (msgpack bin) inside
  batches, so a node serves them straight from its store and the receiver
  decodes each one strictly (``Certificate.decode``).

* ``/mycelia/vote/1`` — entries in, votes or reasons out::

      request  = ["vote-req", 1, economy, [[signed_entry, [cert_bytes, ...]], ...]]
      response = ["vote-resp", 1, [result, ...]]         # one per item, same order
      result   = ["vote", vote] | ["refused", reason, detail, [need, ...]]
      need     = ["chain", author, after_seq, through] | ["admission", account]
               | ["cert", id]

  The certificates beside an entry are what its submitter attached after a
  ``missing`` answer (predecessors, an admission).

  Governance (``docs/governance.md``) adds two requests on the same
  protocol, answered by a validator::

      ["seal-req", 1, economy, proposal]              -> ["seal", 1, signed_seal]
      ["snapshot-req", 1, economy, epoch, part]       -> ["snapshot", 1, signed_lock_snapshot]
      anything refused                                -> ["error", reason, detail]

  A seal is the validator's seal of the proposal in its current epoch
  (``voting_open`` before the close by its clock, ``missing`` for a
  proposal it has not applied); a snapshot part is one part of its lock
  snapshot at the end of ``epoch`` (``missing`` until it has applied the
  enactment that ends it). Responses are bounded by ``MAX_SEAL_BYTES`` and
  ``MAX_PART_BYTES`` plus :data:`GOV_RESPONSE_SLACK`.

* ``/mycelia/sync/1``::

      ["summary", economy]                      -> ["summary", [certified, chains, heads_digest,
                                                                fork_slots, forks_digest]]
      ["heads", economy]                        -> ["heads", [[author, seq], ...]]
      ["range", economy, author, first, limit]  -> ["certs", [cert_bytes, ...]]
      ["by-id", [id, ...]]                      -> ["certs", [cert_bytes, ...]]
      ["genesis", economy]                      -> ["genesis", signed_genesis | b""]
      ["forks", economy]                        -> ["forks", [[author, seq], ...]]
      ["fork", economy, author, seq]            -> ["fork", evidence | b""]
      ["chain", economy, first_epoch]           -> ["chain", committee_chain]
      anything refused                          -> ["error", reason, detail]

  ``summary`` is what a round asks first (``node/store/summary.py``; the
  exact bytes in ``docs/sync.md``): the certified entries applied, the
  chains and a 32-byte digest of their heads, the fork slots held and a
  digest of them. Equal heads parts mean equal heads, so the round skips
  ``heads`` (O(authors) on both sides); equal fork parts skip ``forks``.
  It was added after the others: a peer that predates it answers
  ``["error", "malformed", ...]`` (an unknown request), and is synced
  through ``heads`` and ``forks`` as before. Its answer is at most 105
  bytes; the requester reads at most :data:`MAX_SUMMARY_RESPONSE_BYTES`
  (room for an ``error`` answer, whose detail is at most 500 characters).

  ``chain`` is the committee chain (``docs/governance.md``) from
  ``first_epoch`` (≥ 1) to the peer's epoch, at most ``MAX_CHAIN_LINKS``
  links (ask again from the next epoch for more); ``wrong_epoch`` for a
  first epoch past the peer's next one. It verifies from the economy at
  ``first_epoch - 1`` (the genesis for 1), whoever serves it.

  ``forks`` lists the slots the peer holds fork evidence for (at most
  :data:`MAX_FORK_SLOTS`, in (author, seq) order); ``fork`` fetches one
  slot's evidence, the canonical ``["fork", 1, cert, cert]`` bytes of
  ``protocol/forks.py`` (at most ``MAX_EVIDENCE_BYTES``; ``b""`` if the peer
  has none). Two requests rather than one: every sync round asks each peer
  for its list, which is empty or a few slots, and fetches only the
  evidence it lacks — the evidence itself (up to ~13 KB each) crosses the
  network once. Gossip needs no message of its own for evidence: a node
  that finds a fork publishes the two certificates as an ordinary
  ``certs`` batch, and every receiver's ledger finds the same conflict.

* ``/mycelia/audit/1`` — a host's stored readings with their proofs
  (``docs/sensors.md``, "Audit stream protocol")::

      ["readings", 1, economy, device, first, last, limit]
          -> ["readings", 1, [[signed_reading, attestation_id, proof], ...], next]
      anything refused -> ["error", reason, detail]

  The codec has no nil: an empty ``attestation_id`` means "not attested
  yet", an empty ``proof`` "no proof", and ``next`` = -1 "no more".
  Readings are in counter order, counters within ``[first, last]``, at most
  ``limit`` (1 … :data:`MAX_AUDIT_READINGS`); nothing here is verified —
  the client checks each reading against its attestation certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mycelia.node.store.summary import Summary
from mycelia.protocol import Certificate, Reason, Refused, SignedEntry, SignedGenesis, Vote, codec
from mycelia.protocol import schema as s
from mycelia.protocol.certificates import MAX_CERT_BYTES
from mycelia.protocol.domains import ID_SIZE
from mycelia.protocol.epochs import MAX_CHAIN_BYTES, CommitteeChain
from mycelia.protocol.forks import MAX_EVIDENCE_BYTES, ForkEvidence
from mycelia.protocol.handover import MAX_PART_BYTES, MAX_PARTS, LockSnapshot
from mycelia.protocol.merkle import MAX_PROOF_BYTES
from mycelia.protocol.reasons import Need, NeedAdmission, NeedCertificate, NeedChain
from mycelia.protocol.seals import MAX_SEAL_BYTES, Seal
from mycelia.protocol.sensors import MAX_SIGNED_READING_BYTES

__all__ = [
    "AUDIT_PROTOCOL",
    "MAX_AUDIT_READINGS",
    "MAX_BATCH",
    "MAX_CHAIN_RESPONSE_BYTES",
    "MAX_FORK_SLOTS",
    "MAX_SEAL_RESPONSE_BYTES",
    "MAX_SNAPSHOT_RESPONSE_BYTES",
    "MAX_SUMMARY_RESPONSE_BYTES",
    "SYNC_PROTOCOL",
    "VOTE_PROTOCOL",
    "AuditItem",
    "AuditRequest",
    "SealRequest",
    "SnapshotRequest",
    "VoteItem",
    "VoteResult",
    "certs_topic",
]

VOTE_PROTOCOL = "/mycelia/vote/1"
SYNC_PROTOCOL = "/mycelia/sync/1"
AUDIT_PROTOCOL = "/mycelia/audit/1"
#: Most readings in one audit response: each with its proof is at most
#: ~1.4 KB, so a full response stays far below a frame.
MAX_AUDIT_READINGS = 1000
#: Most entries in one vote request, certificates in one gossip message or
#: sync response, ids in one by-id request.
MAX_BATCH = 2048
MAX_ATTACHED = 256
MAX_HEADS = 100_000
#: Most slots one ``forks`` answer lists (a fork is rare; this bounds what a
#: peer can make us hold, ~45 bytes a slot).
MAX_FORK_SLOTS = 4096
#: Most bytes read for a ``summary`` answer: the answer itself is at most
#: 105 bytes, an ``error`` answer (detail up to 500 characters of UTF-8)
#: at most ~2 KB.
MAX_SUMMARY_RESPONSE_BYTES = 4096
#: Bound on any one message; the p2p layer bounds frames too.
MAX_MESSAGE_BYTES = 4 << 20


def certs_topic(economy: bytes) -> str:
    return f"/mycelia/certs/1/{economy.hex()}"


#: Nesting bound of a message: a vote request carries signed entries inline
#: (request, items, item, signed entry, entry, body), and a ``sensor.attest``
#: body nests three more levels (rows, a row, its aggregates, an aggregate),
#: beyond the codec's default of 8.
MAX_MESSAGE_DEPTH = 12


def _decode(data: bytes) -> Any:
    return codec.decode(data, max_size=MAX_MESSAGE_BYTES, max_depth=MAX_MESSAGE_DEPTH)


def _id(value: Any, name: str) -> bytes:
    return s.bytes_(value, name, ID_SIZE)


# -- gossip ---------------------------------------------------------------------


def encode_certs(blobs: list[bytes]) -> bytes:
    """A gossip batch of certificates given as their canonical bytes."""
    return codec.encode_trusted(["certs", 1, blobs])


def decode_certs(data: bytes) -> list[Certificate]:
    f = s.array(_decode(data), "certs", 1, 3, "certificate batch")
    return _certs(f[2])


def _certs(value: Any, max_len: int = MAX_BATCH) -> list[Certificate]:
    raw = s.list_(value, "certificates", max_len=max_len)
    return [Certificate.decode(s.bytes_(c, "certificate", max_size=MAX_CERT_BYTES)) for c in raw]


# -- needs ----------------------------------------------------------------------


def need_to_wire(need: Need) -> list[Any]:
    if isinstance(need, NeedChain):
        return ["chain", need.author, need.after_seq, need.through]
    if isinstance(need, NeedAdmission):
        return ["admission", need.account]
    return ["cert", need.id]


def need_from_wire(value: Any) -> Need:
    f = s.list_(value, "need", min_len=2, max_len=4)
    if f[0] == "chain" and len(f) == 4:
        return NeedChain(
            s.bytes_(f[1], "author", 32), s.int_(f[2], "after_seq", 0), _id(f[3], "id")
        )
    if f[0] == "admission" and len(f) == 2:
        return NeedAdmission(s.bytes_(f[1], "account", 32))
    if f[0] == "cert" and len(f) == 2:
        return NeedCertificate(_id(f[1], "id"))
    raise Refused(Reason.MALFORMED, f"unknown need {f[0]!r}")


# -- vote protocol ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoteItem:
    signed: SignedEntry
    attached: tuple[Certificate, ...] = ()


@dataclass(frozen=True, slots=True)
class VoteResult:
    """A vote, or a refusal with the protocol reason and what would cure it."""

    vote: Vote | None = None
    reason: Reason | None = None
    detail: str = ""
    needs: tuple[Need, ...] = ()


def encode_vote_request(economy: bytes, items: list[VoteItem]) -> bytes:
    return codec.encode_trusted(
        [
            "vote-req",
            1,
            economy,
            [[i.signed.to_wire(), [c.encode() for c in i.attached]] for i in items],
        ]
    )


def decode_vote_request(data: bytes) -> tuple[bytes, list[VoteItem]]:
    f = s.array(_decode(data), "vote-req", 1, 4, "vote request")
    economy = _id(f[2], "economy")
    items = []
    for raw in s.list_(f[3], "entries", min_len=1, max_len=MAX_BATCH):
        pair = s.list_(raw, "item", min_len=2, max_len=2)
        attached = tuple(_certs(pair[1], MAX_ATTACHED))
        items.append(VoteItem(SignedEntry.from_wire(pair[0]), attached))
    return economy, items


def encode_vote_response(results: list[VoteResult]) -> bytes:
    out = []
    for r in results:
        if r.vote is not None:
            out.append(["vote", r.vote.to_wire()])
        else:
            assert r.reason is not None
            needs = [need_to_wire(n) for n in r.needs]
            out.append(["refused", r.reason.value, r.detail[:500], needs])
    return codec.encode_trusted(["vote-resp", 1, out])


def decode_vote_response(data: bytes, expected: int) -> list[VoteResult]:
    f = s.array(_decode(data), "vote-resp", 1, 3, "vote response")
    raw = s.list_(f[2], "results", min_len=expected, max_len=expected)
    out = []
    for r in raw:
        item = s.list_(r, "result", min_len=2, max_len=4)
        if item[0] == "vote" and len(item) == 2:
            out.append(VoteResult(vote=Vote.from_wire(item[1])))
        elif item[0] == "refused" and len(item) == 4:
            try:
                reason = Reason(s.str_(item[1], "reason", max_bytes=64))
            except ValueError:
                raise Refused(Reason.MALFORMED, f"unknown reason {item[1]!r}") from None
            detail = s.str_(item[2], "detail", max_bytes=2048)
            needs = tuple(need_from_wire(n) for n in s.list_(item[3], "needs", max_len=16))
            out.append(VoteResult(reason=reason, detail=detail, needs=needs))
        else:
            raise Refused(Reason.MALFORMED, "vote result is neither a vote nor a refusal")
    return out


# -- governance requests on the vote protocol ----------------------------------------

#: Room beyond a seal or a part for the envelope or an ``error`` answer.
GOV_RESPONSE_SLACK = 4096
MAX_SEAL_RESPONSE_BYTES = MAX_SEAL_BYTES + GOV_RESPONSE_SLACK
MAX_SNAPSHOT_RESPONSE_BYTES = MAX_PART_BYTES + GOV_RESPONSE_SLACK


@dataclass(frozen=True, slots=True)
class SealRequest:
    economy: bytes
    proposal: bytes


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    economy: bytes
    epoch: int
    part: int


def encode_seal_request(economy: bytes, proposal: bytes) -> bytes:
    return codec.encode_trusted(["seal-req", 1, economy, proposal])


def encode_snapshot_request(economy: bytes, epoch: int, part: int) -> bytes:
    return codec.encode_trusted(["snapshot-req", 1, economy, epoch, part])


def decode_validator_request(
    data: bytes,
) -> tuple[bytes, list[VoteItem]] | SealRequest | SnapshotRequest:
    """A ``/mycelia/vote/1`` request: entries to vote on, or a seal or a
    snapshot part to serve."""
    value = _decode(data)
    tag = value[0] if isinstance(value, list) and value else None
    if tag == "seal-req":
        f = s.array(value, "seal-req", 1, 4, "seal request")
        return SealRequest(_id(f[2], "economy"), _id(f[3], "proposal"))
    if tag == "snapshot-req":
        f = s.array(value, "snapshot-req", 1, 5, "snapshot request")
        return SnapshotRequest(
            _id(f[2], "economy"),
            s.int_(f[3], "epoch", 0, s.UINT64_MAX),
            s.int_(f[4], "part", 0, MAX_PARTS - 1),
        )
    return decode_vote_request(data)


def encode_seal(seal: Seal) -> bytes:
    return codec.encode_trusted(["seal", 1, seal.encode()])


def _gov_response(data: bytes, tag: str) -> bytes:
    f = s.list_(_decode(data), f"{tag} response", min_len=3, max_len=3)
    if f[0] == "error":
        _expect_ok(f, tag)
    s.array(f, tag, 1, 3, f"{tag} response")
    return s.bytes_(f[2], tag, max_size=max(MAX_SEAL_BYTES, MAX_PART_BYTES))


def decode_seal(data: bytes) -> Seal:
    return Seal.decode(_gov_response(data, "seal"))


def encode_snapshot(part: bytes) -> bytes:
    return codec.encode_trusted(["snapshot", 1, part])


def decode_snapshot(data: bytes) -> LockSnapshot:
    return LockSnapshot.decode(_gov_response(data, "snapshot"))


# -- sync protocol ------------------------------------------------------------------


def encode_sync_request(op: str, *args: Any) -> bytes:
    return codec.encode([op, *args])


def decode_sync_request(data: bytes) -> tuple[str, list[Any]]:
    f = s.list_(_decode(data), "sync request", min_len=1, max_len=5)
    op = s.str_(f[0], "op", max_bytes=16)
    args = f[1:]
    if op in ("summary", "heads") and len(args) == 1:
        return op, [_id(args[0], "economy")]
    if op == "range" and len(args) == 4:
        return op, [
            _id(args[0], "economy"),
            s.bytes_(args[1], "author", 32),
            s.int_(args[2], "first", 1),
            s.int_(args[3], "limit", 1, MAX_BATCH),
        ]
    if op == "by-id" and len(args) == 1:
        return op, [[_id(i, "id") for i in s.list_(args[0], "ids", max_len=MAX_BATCH)]]
    if op == "genesis" and len(args) == 1:
        return op, [_id(args[0], "economy")]
    if op == "forks" and len(args) == 1:
        return op, [_id(args[0], "economy")]
    if op == "chain" and len(args) == 2:
        return op, [_id(args[0], "economy"), s.int_(args[1], "first_epoch", 1, s.UINT64_MAX)]
    if op == "fork" and len(args) == 3:
        return op, [
            _id(args[0], "economy"),
            s.bytes_(args[1], "author", 32),
            s.int_(args[2], "seq", 1, s.UINT64_MAX),
        ]
    raise Refused(Reason.MALFORMED, f"unknown sync request {op!r} with {len(args)} arguments")


def encode_cert_response(blobs: list[bytes]) -> bytes:
    return codec.encode_trusted(["certs", blobs])


def encode_summary(summary: Summary) -> bytes:
    x = summary
    return codec.encode_trusted(
        ["summary", [x.certified, x.chains, x.heads, x.forks, x.fork_digest]]
    )


def decode_summary(data: bytes) -> Summary:
    """A peer's summary of one economy (bounded, strict); :class:`Refused`
    if it answered ``error`` — as a peer that predates ``summary`` does."""
    raw = codec.decode(data, max_size=MAX_SUMMARY_RESPONSE_BYTES)
    f = s.list_(raw, "summary response", min_len=2, max_len=3)
    _expect_ok(f, "summary")
    x = s.list_(f[1], "summary", min_len=5, max_len=5)
    return Summary(
        s.int_(x[0], "certified", 0, s.UINT64_MAX),
        s.int_(x[1], "chains", 0, s.UINT64_MAX),
        _id(x[2], "heads digest"),
        s.int_(x[3], "fork slots", 0, s.UINT64_MAX),
        _id(x[4], "forks digest"),
    )


def encode_heads(heads: dict[bytes, int]) -> bytes:
    return codec.encode_trusted(["heads", [[a, n] for a, n in heads.items()]])


def decode_heads(data: bytes) -> dict[bytes, int]:
    f = s.list_(_decode(data), "heads response", min_len=2, max_len=3)
    _expect_ok(f, "heads")
    out = {}
    for pair in s.list_(f[1], "heads", max_len=MAX_HEADS):
        p = s.list_(pair, "head", min_len=2, max_len=2)
        out[s.bytes_(p[0], "author", 32)] = s.int_(p[1], "seq", 1)
    return out


def decode_cert_response(data: bytes) -> list[Certificate]:
    f = s.list_(_decode(data), "certs response", min_len=2, max_len=3)
    _expect_ok(f, "certs")
    return _certs(f[1])


MAX_CHAIN_RESPONSE_BYTES = MAX_CHAIN_BYTES + GOV_RESPONSE_SLACK


def encode_chain(chain: CommitteeChain) -> bytes:
    return codec.encode_trusted(["chain", chain.encode()])


def decode_chain(data: bytes) -> CommitteeChain:
    f = s.list_(_decode(data), "chain response", min_len=2, max_len=3)
    _expect_ok(f, "chain")
    return CommitteeChain.decode(s.bytes_(f[1], "chain", max_size=MAX_CHAIN_BYTES))


def encode_genesis(signed: SignedGenesis | None) -> bytes:
    return codec.encode_trusted(["genesis", signed.to_wire() if signed else b""])


def decode_genesis(data: bytes) -> SignedGenesis | None:
    f = s.list_(_decode(data), "genesis response", min_len=2, max_len=3)
    _expect_ok(f, "genesis")
    if f[1] == b"":
        return None
    value = f[1]
    return SignedGenesis.decode(codec.encode_trusted(value))


def encode_fork_slots(slots: list[tuple[bytes, int]]) -> bytes:
    return codec.encode_trusted(["forks", [[a, n] for a, n in slots[:MAX_FORK_SLOTS]]])


def decode_fork_slots(data: bytes) -> list[tuple[bytes, int]]:
    """The ``(author, seq)`` slots a peer holds fork evidence for."""
    f = s.list_(_decode(data), "forks response", min_len=2, max_len=3)
    _expect_ok(f, "forks")
    out = []
    for pair in s.list_(f[1], "forks", max_len=MAX_FORK_SLOTS):
        p = s.list_(pair, "fork slot", min_len=2, max_len=2)
        out.append((s.bytes_(p[0], "author", 32), s.int_(p[1], "seq", 1, s.UINT64_MAX)))
    return out


def encode_fork(evidence: bytes | None) -> bytes:
    """One slot's evidence as stored (canonical already), or none."""
    return codec.encode_trusted(["fork", evidence or b""])


def decode_fork(data: bytes) -> ForkEvidence | None:
    """A peer's evidence for one slot (decoded strictly and bounded, not
    verified: ``ForkEvidence.verify``), or None if it has none."""
    f = s.list_(_decode(data), "fork response", min_len=2, max_len=3)
    _expect_ok(f, "fork")
    raw = s.bytes_(f[1], "evidence", max_size=MAX_MESSAGE_BYTES)
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise Refused(Reason.TOO_LARGE, f"evidence of {len(raw)} bytes > {MAX_EVIDENCE_BYTES}")
    return ForkEvidence.decode(raw) if raw else None


def encode_error(reason: Reason, detail: str) -> bytes:
    return codec.encode_trusted(["error", reason.value, detail[:500]])


def _expect_ok(f: list[Any], tag: str) -> None:
    if f[0] == "error" and len(f) == 3:
        known = f[1] in Reason._value2member_map_
        raise Refused(Reason(f[1]) if known else Reason.MALFORMED, f"peer refused: {f[2]}")
    if f[0] != tag or len(f) != 2:
        raise Refused(Reason.MALFORMED, f"expected a {tag!r} response")


# -- audit protocol -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRequest:
    economy: bytes
    device: bytes
    first: int
    last: int
    limit: int


@dataclass(frozen=True, slots=True)
class AuditItem:
    """One stored reading: its signed-reading bytes and, once attested, the
    attestation's entry id and the reading's Merkle proof bytes (else b"")."""

    signed: bytes
    attestation: bytes = b""
    proof: bytes = b""


def encode_audit_request(request: AuditRequest) -> bytes:
    r = request
    return codec.encode_trusted(["readings", 1, r.economy, r.device, r.first, r.last, r.limit])


def decode_audit_request(data: bytes) -> AuditRequest:
    f = s.array(_decode(data), "readings", 1, 7, "audit request")
    return AuditRequest(
        _id(f[2], "economy"),
        _id(f[3], "device"),
        s.int_(f[4], "first", 0, s.UINT64_MAX),
        s.int_(f[5], "last", 0, s.UINT64_MAX),
        s.int_(f[6], "limit", 1, MAX_AUDIT_READINGS),
    )


def encode_audit_response(items: list[AuditItem], next_counter: int | None) -> bytes:
    rows = [[i.signed, i.attestation, i.proof] for i in items]
    return codec.encode_trusted(["readings", 1, rows, -1 if next_counter is None else next_counter])


def decode_audit_response(data: bytes, limit: int) -> tuple[list[AuditItem], int | None]:
    """The items (at most ``limit``) and the next counter (None: no more).
    Bounds every field; verifies nothing (the client does)."""
    f = s.list_(_decode(data), "audit response", min_len=3, max_len=4)
    if f[0] == "error" and len(f) == 3:
        _expect_ok(f, "readings")
    f = s.array(f, "readings", 1, 4, "audit response")
    items = []
    for raw in s.list_(f[2], "readings", max_len=limit):
        row = s.list_(raw, "reading", min_len=3, max_len=3)
        attestation = s.bytes_(row[1], "attestation", max_size=ID_SIZE)
        if attestation and len(attestation) != ID_SIZE:
            raise Refused(Reason.MALFORMED, "attestation: an id of 32 bytes or empty")
        items.append(
            AuditItem(
                s.bytes_(row[0], "signed reading", max_size=MAX_SIGNED_READING_BYTES),
                attestation,
                s.bytes_(row[2], "proof", max_size=MAX_PROOF_BYTES),
            )
        )
    next_counter = s.int_(f[3], "next", -1, s.UINT64_MAX)
    return items, None if next_counter < 0 else next_counter
