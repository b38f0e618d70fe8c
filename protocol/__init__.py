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
``quorum``         signer bitmaps and quorum-signature verification
``economy``        genesis documents and the derived ``Economy``
``state``          account records and the ``StateView`` protocol
``kinds``          each entry kind's body schema and rules
``entries``        entries and signed entries
``certificates``   votes and certificates
``locks``          resources and the validator lock rule
``ledger``         ``check`` / ``apply`` and the in-memory ``Ledger``
=================  ==========================================================
"""

from mycelia.protocol import codec, keys
from mycelia.protocol.certificates import Certificate, Vote, assemble, vote_id
from mycelia.protocol.economy import Economy, Genesis, SignedGenesis, Validator
from mycelia.protocol.entries import Entry, SignedEntry
from mycelia.protocol.keys import SigningKey, did_decode, did_encode
from mycelia.protocol.kinds import Burn, CreditSet, MemberAdmit, Mint, Transfer
from mycelia.protocol.ledger import GapBuffer, Ledger, apply, check, transition
from mycelia.protocol.locks import lock_decision, resources
from mycelia.protocol.reasons import OK, Reason, Refused, Verdict
from mycelia.protocol.state import ZERO_ID, Account

__all__ = [
    "OK",
    "ZERO_ID",
    "Account",
    "Burn",
    "Certificate",
    "CreditSet",
    "Economy",
    "Entry",
    "GapBuffer",
    "Genesis",
    "Ledger",
    "MemberAdmit",
    "Mint",
    "Reason",
    "Refused",
    "SignedEntry",
    "SignedGenesis",
    "SigningKey",
    "Transfer",
    "Validator",
    "Verdict",
    "Vote",
    "apply",
    "assemble",
    "check",
    "codec",
    "did_decode",
    "did_encode",
    "keys",
    "lock_decision",
    "resources",
    "transition",
    "vote_id",
]
