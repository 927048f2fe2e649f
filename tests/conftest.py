"""Hypothesis profiles: ``ci`` (the default, deterministic) and ``thorough`` for local runs.

Select with ``HYPOTHESIS_PROFILE=thorough python -m pytest``.
"""

import os

from hypothesis import HealthCheck, settings

# autograd traces every call, so the first examples are slow: no deadline.
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,  # the same examples on every run: CI failures reproduce
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
