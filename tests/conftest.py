"""Test-wide settings: hypothesis profiles.

``ci`` (set by .ci/run) runs more examples and prints reproduction blobs;
``dev`` is the quick default. No deadlines: these machines are shared and
noisy, and timing belongs in bench/.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
