"""Hypothesis profiles: ``ci`` (the default, deterministic) and ``thorough`` for local runs; the ``slow`` marker.

Select a profile with ``HYPOTHESIS_PROFILE=thorough python -m pytest``.
Run the fast tests only with ``python -m pytest -m "not slow"``.
"""

import os

import pytest
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

# Whole modules that start kernels, worker processes, training runs or timers: most of the
# suite's minute, and little of it on the core layers. Marked here, in one place, so
# `-m "not slow"` (and scripts/mutate.py) get a fast suite without a list to keep in sync.
SLOW_MODULES = {"test_notebooks.py", "test_verify_impl.py", "test_bench.py", "test_train_cli.py", "test_course_layouts.py",
                "test_grades.py", "test_grading_integrity.py"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: notebooks, worker processes, training runs (deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
