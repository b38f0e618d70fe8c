"""mycelia's sans-IO protocol core.

Every rule that decides whether something is valid or what it does to a
balance lives in this package, and nothing here does I/O: no sockets, no
files, no clocks (time is a parameter), no threads. The daemon (``node/``)
moves and stores bytes and asks this package what they mean.

Modules, from the bottom up:

=================  ==========================================================
``reasons``        the stable refusal codes and the ``Verdict`` value
``codec``          the one canonical msgpack encoding and strict decoder
``domains``        domain-separated ids and signature messages
``keys``           Ed25519 keys, strict verification, ``did:key``
``schema``         field checks shared by every decoder
``merkle``         Merkle trees, roots and proofs over attested batches
``state``          accounts, keyed records, ``Changes`` and ``StateView``
``devices``        sensor device keys (Ed25519, P-256), device ids, the
                   strict check of device signatures
``sensor_bodies``  the ``device.register``, ``sensor.attest`` and
                   ``impact.claim`` bodies; the registered device record
``readings``       sensor readings, their bounds and the host's ingest check
``attestations``   building a batch's ``sensor.attest`` bodies and tree
``audit``          checking readings against a certified attestation
``sensors``        the sensor API in one import (re-exports the five above)
``quorum``         signer bitmaps and quorum-signature verification
``economy``        genesis documents and the derived ``Economy``
``context``        the rule ``Context`` and the ``Kind`` base
``impact``         the sensor kinds' rules and records
``channels``       compute payment channels: vouchers, releases, the channel
                   bodies and records, the provider's and consumer's checks
``channel_kinds``  the ``channel.open`` / ``close`` / ``refund`` rules
``kinds``          each entry kind's body schema and rules; the registry
``entries``        entries and signed entries
``certificates``   votes and certificates
``locks``          resources and the validator lock rule
``forks``          fork evidence (two certificates for one slot), the guilty
                   validators, and the rule after a fork
``gov_bodies``     governance bodies, the action registry, governance records
``electorate``     who votes on a proposal; the member count
``tally``          counting ballots and delegations; each method's pass rule
``seals``          validators' seals of closed proposals, the sealed union
``governance``     the ``gov.*`` kinds' rules
``epochs``         the next epoch from an enactment; the committee chain
``handover``       lock snapshots and seeding a new committee's locks
``ledger``         ``check`` / ``apply`` and the in-memory ``Ledger``
``framing``        the varint length prefix of stream frames, bounded
``pricing``        integer prices of metered usage (one rounding)
``offers``         provider-signed compute offers and their runtimes
``usage``          provider-signed cumulative usage reports
``compute_frames`` the ``/mycelia/compute/1`` requests (JOB, VOUCHER, POLL,
                   CANCEL) and answers (USAGE, RESULT, ERROR)
``compute``        the job and channel checks, billing, the consumer's and
                   provider's rules, and each side's state of a job
``offer_book``     offer gossip batches and the bounded book of offers
=================  ==========================================================
"""

from mycelia.protocol import channels, codec, keys, merkle, sensors
from mycelia.protocol.certificates import Certificate, Vote, assemble, vote_id
from mycelia.protocol.channels import (
    ChannelClose,
    ChannelOpen,
    ChannelRefund,
    ChannelState,
    Release,
    SignedRelease,
    SignedVoucher,
    Voucher,
    channel_state,
)
from mycelia.protocol.economy import (
    Economy,
    EpochRecord,
    Genesis,
    GovSettings,
    ImpactPolicy,
    SignedGenesis,
    Validator,
    smallest_quorum,
)
from mycelia.protocol.entries import Entry, SignedEntry
from mycelia.protocol.epochs import CommitteeChain
from mycelia.protocol.forks import ForkEvidence
from mycelia.protocol.gov_bodies import (
    CommitteeSet,
    GovDelegate,
    GovEnact,
    GovObject,
    GovPropose,
    GovVote,
    Method,
    PolicySet,
    Tally,
)
from mycelia.protocol.handover import LockSnapshot
from mycelia.protocol.impact import AttestationRecord, ClaimCursor, credits_for
from mycelia.protocol.keys import SigningKey, did_decode, did_encode
from mycelia.protocol.kinds import Burn, CreditSet, MemberAdmit, Mint, Transfer, entry_accounts
from mycelia.protocol.ledger import (
    GapBuffer,
    Ledger,
    apply,
    check,
    entry_for,
    next_entry,
    transition,
)
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.merkle import MerkleProof, MerkleTree, check_proof, merkle_root, verify_proof
from mycelia.protocol.reasons import OK, Reason, Refused, Verdict
from mycelia.protocol.seals import Seal
from mycelia.protocol.sensors import (
    ED25519,
    P256,
    Aggregate,
    AttestationAudit,
    AttestedDevice,
    DeviceKey,
    DeviceRecord,
    DeviceRegister,
    Ed25519DeviceKey,
    ImpactClaim,
    Metric,
    P256DeviceKey,
    Reading,
    SensorAttest,
    SignedReading,
    build_attestation,
    build_attestations,
    check_device_key,
    check_reading,
    device_id,
    verify_device_signature,
)
from mycelia.protocol.state import ZERO_ID, Account, Changes

__all__ = [
    "ED25519",
    "OK",
    "P256",
    "ZERO_ID",
    "Account",
    "Aggregate",
    "AttestationAudit",
    "AttestationRecord",
    "AttestedDevice",
    "Burn",
    "Certificate",
    "Changes",
    "ChannelClose",
    "ChannelOpen",
    "ChannelRefund",
    "ChannelState",
    "ClaimCursor",
    "CommitteeChain",
    "CommitteeSet",
    "CreditSet",
    "DeviceKey",
    "DeviceRecord",
    "DeviceRegister",
    "Economy",
    "Ed25519DeviceKey",
    "Entry",
    "EpochRecord",
    "ForkEvidence",
    "GapBuffer",
    "Genesis",
    "GovDelegate",
    "GovEnact",
    "GovObject",
    "GovPropose",
    "GovSettings",
    "GovVote",
    "ImpactClaim",
    "ImpactPolicy",
    "Ledger",
    "LockSnapshot",
    "MemberAdmit",
    "MerkleProof",
    "MerkleTree",
    "Method",
    "Metric",
    "Mint",
    "P256DeviceKey",
    "PolicySet",
    "Reading",
    "Reason",
    "Refused",
    "Release",
    "Seal",
    "SensorAttest",
    "SignedEntry",
    "SignedGenesis",
    "SignedReading",
    "SignedRelease",
    "SignedVoucher",
    "SigningKey",
    "Tally",
    "Transfer",
    "Validator",
    "Verdict",
    "Vote",
    "Voucher",
    "apply",
    "assemble",
    "build_attestation",
    "build_attestations",
    "channel_state",
    "channels",
    "check",
    "check_device_key",
    "check_proof",
    "check_reading",
    "codec",
    "credits_for",
    "device_id",
    "did_decode",
    "did_encode",
    "entry_accounts",
    "entry_for",
    "keys",
    "lock_decision",
    "merkle",
    "merkle_root",
    "next_entry",
    "resources",
    "sensors",
    "smallest_quorum",
    "transition",
    "verify_device_signature",
    "verify_proof",
    "vote_id",
]
