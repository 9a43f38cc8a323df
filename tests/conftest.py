"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default: ``ci``).

- ``ci``: 50 derandomized examples, no deadline; the whole suite stays under a minute on 2 cores.
- ``dev``: 100 random examples for local work.
- ``thorough``: many examples for long runs (``HYPOTHESIS_PROFILE=thorough pytest``).
"""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# The repository root (for ``reference`` and ``benchmarks``) when the suite runs from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=50, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=100, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=400, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
