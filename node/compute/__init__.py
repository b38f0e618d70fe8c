"""Compute jobs: run a provider's runtime for a consumer and meter it from the OS.

Why this exists: a provider node sells CPU time to consumers it does not
trust, paid through channels as the job runs (docs/compute-runner.md,
DESIGN.md section 6). The runner starts a job for a runtime the provider
configured, gives it the consumer's bounded input and nothing else from the
consumer, measures what the whole process tree uses — however it forks —
and can freeze and kill it at any time.

| module | holds |
|---|---|
| ``runner`` | the trio API: :class:`~mycelia.node.compute.runner.Runner`, jobs, results |
| ``metering`` | the tiers (cgroup, shim): choosing one, live and final usage |
| ``cgroup`` | cgroup v2: finding the node's delegated cgroup, job leaves |
| ``shim`` | the per-job subreaper process (standard library only) |
| ``proctree`` | the process tree under a pid, from ``/proc``; race-free signals |
| ``isolation`` | the job user and the private work directories |
| ``reasons`` | the runner's refusal codes |

Nothing is imported here: the shim imports ``proctree`` from this package
and must start quickly.
"""
