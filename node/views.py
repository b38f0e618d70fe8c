"""Node-internal values as API values: what only the node has a view of
(a submission's :class:`~mycelia.node.submitter.Status`). Everything that
comes from the protocol is made into API values by ``mycelia.api.types``."""

from __future__ import annotations

from mycelia.api import types
from mycelia.node.submitter import PENDING, REFUSED, Status

__all__ = ["status_view"]


def status_view(status: Status) -> types.EntryStatus:
    """The ``entry_get`` result (and an ``entry`` notification) for a status."""
    if status.state == PENDING:
        reason = status.reason
        return types.EntryStatus(
            id=status.entry_id,
            status=types.PENDING,
            reason=None if reason is None else reason.value,
            detail=None if reason is None else status.detail,
            waiting_on=status.waiting_on,
        )
    if status.state == REFUSED:
        return types.EntryStatus(
            id=status.entry_id,
            status=types.REFUSED,
            reason=status.reason.value if status.reason else "",
            detail=status.detail,
            retryable=not status.final,
        )
    cert = status.certificate
    return types.EntryStatus(
        id=status.entry_id,
        status=types.CERTIFIED,
        certificate=cert,
        view=None if cert is None else types.EntryView.of(cert.entry, cert.entry_id),
    )
