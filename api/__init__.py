"""The wallet RPC's contract in Python, declared once (``docs/rpc.md``).

Both sides are made from it: the node's RPC server (``mycelia.node.rpc``)
builds these values and writes them; the Python client (``mycelia.client``)
reads them back; the OpenRPC document that ``rpc.discover`` returns is
generated from the same declarations. It imports only ``mycelia.protocol``
(and the standard library), so a wallet needs none of the daemon.

Modules, from the bottom up:

===============  ==============================================================
``contract``     constants: datadir files, paths, error codes, the RPC's reasons
``encoding``     the JSON of scalars: hex, did:key, amounts as decimal strings…
``codecs``       how a value is declared once (:class:`Record`, :class:`Codec`)
``scalars``      the scalars as codecs, and their schemas
``bodies``       entry bodies in JSON, one form per entry kind (:data:`BODIES`)
``types``        every result shape: entry views, statuses, accounts, economies…
``methods``      every method: params, result, errors; the OpenRPC document
===============  ==============================================================

A new entry kind is a protocol body (``protocol/kinds.py``) and one
``BodyForm`` in ``bodies.py``: the ``Kind`` and ``Body`` schemas, the
server's parsing and views and the client's follow from it.
"""

from mycelia.api import contract
from mycelia.api.codecs import Codec, Json, Record, member
from mycelia.api.encoding import NOT_UNICODE, ParamError
from mycelia.api.methods import COMPONENTS, METHODS, MethodSpec, Param, openrpc_document
from mycelia.api.types import (
    AccountHistory,
    AccountInfo,
    Attestation,
    CertifiedEntry,
    Claimable,
    ClaimableAttestation,
    Created,
    EconomySummary,
    EconomyView,
    EntryStatus,
    EntryView,
    Followed,
    Fork,
    ForksPage,
    GenesisSignature,
    HostedDevice,
    ImpactTerms,
    Issuer,
    NodeInfo,
    Peer,
    Prepared,
    ReadingsPage,
    StoredReading,
    Submitted,
    ValidatorWeight,
)

__all__ = [
    "COMPONENTS",
    "METHODS",
    "NOT_UNICODE",
    "AccountHistory",
    "AccountInfo",
    "Attestation",
    "CertifiedEntry",
    "Claimable",
    "ClaimableAttestation",
    "Codec",
    "Created",
    "EconomySummary",
    "EconomyView",
    "EntryStatus",
    "EntryView",
    "Followed",
    "Fork",
    "ForksPage",
    "GenesisSignature",
    "HostedDevice",
    "ImpactTerms",
    "Issuer",
    "Json",
    "MethodSpec",
    "NodeInfo",
    "Param",
    "ParamError",
    "Peer",
    "Prepared",
    "ReadingsPage",
    "Record",
    "StoredReading",
    "Submitted",
    "ValidatorWeight",
    "contract",
    "member",
    "openrpc_document",
]
