"""The runner's refusals: why a job did not start, as stable codes.

Why this exists: the compute service answers a consumer's ``JOB`` with an
``ERROR`` frame carrying a reason code, and an operator reads the same code
in the logs. Two are the protocol's own codes (``unknown_runtime``,
``over_limits``: the same refusal as the compute session's, whichever
layer sees it first); the others are the node's own reasons — a provider's
policy and state, not a protocol rule (as the ingest's ``rate_limited``) —
so they live here beside the runner. Codes never change meaning once
released.
"""

from __future__ import annotations

import enum

from mycelia.protocol.reasons import Reason

__all__ = ["RunnerReason", "RunnerRefused"]


class RunnerReason(enum.StrEnum):
    """Why a job was not started. The value is the stable code."""

    #: this node runs no jobs (``compute.enabled = false``).
    COMPUTE_DISABLED = "compute_disabled"
    #: no runtime of that name is configured here (the protocol's code).
    UNKNOWN_RUNTIME = Reason.UNKNOWN_RUNTIME.value
    #: the input is larger than the runtime's ``max_input_bytes`` (the
    #: protocol's code for a JOB beyond the runtime's limits).
    OVER_LIMITS = Reason.OVER_LIMITS.value
    #: ``compute.max_jobs`` jobs are running already; ask again later.
    RUNNER_BUSY = "runner_busy"
    #: the asking peer has ``compute.max_jobs_per_peer`` jobs running here
    #: already (the compute service's limit, so one peer cannot take every
    #: slot); ask again once one ended.
    PEER_BUSY = "peer_busy"
    #: the runtime's process could not be started (the detail names the step
    #: and the error); a provider's problem, nothing ran.
    START_FAILED = "start_failed"


class RunnerRefused(Exception):
    """A job was not started: ``reason`` the code, ``detail`` for humans."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: RunnerReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
