"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default: ``ci``).

- ``ci``: few examples, no deadline; keeps the whole suite well under 2 minutes on 2 cores.
- ``dev``: a few more examples for local work.
- ``thorough``: many examples for long runs (``HYPOTHESIS_PROFILE=thorough pytest``).
"""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# The repository root (for ``reference`` and ``benchmarks``) when the suite runs from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=12, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=40, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=400, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
