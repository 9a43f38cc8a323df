"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default: ``ci``).

- ``ci``: 50 derandomized examples, no deadline; the whole suite stays under a minute on 2 cores.
- ``dev``: 100 random examples for local work.
- ``thorough``: many examples for long runs (``HYPOTHESIS_PROFILE=thorough pytest``).

Every test runs with one thread in numpy's BLAS and in torch (``pytest_runtest_setup`` below): the suite's
matrices are tiny, so a second thread only adds synchronisation, and on a busy 2-core machine threads that
wait for a descheduled partner made torch's oracles run 4-7x slower (measured). No test times anything, and no
result depends on the thread count beyond the rounding every tolerance allows (the benchmarks and the
subprocess tests set their own threads; nothing here reaches a subprocess, no environment variable is set).
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

_ONE_THREAD = {"blas": False, "torch": False}


def pytest_runtest_setup(item):
    """One BLAS thread once numpy is loaded, one torch thread once torch is (either may come late)."""
    if not _ONE_THREAD["blas"] and "numpy" in sys.modules:
        _ONE_THREAD["blas"] = True
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # the test extra has it; without it the suite only runs slower
            pass
        else:
            threadpool_limits(limits=1, user_api="blas")
    if not _ONE_THREAD["torch"] and "torch" in sys.modules:
        _ONE_THREAD["torch"] = True
        sys.modules["torch"].set_num_threads(1)


def pytest_collection_modifyitems(session, config, items):
    """The docs site's build (tests/test_docs.py) starts in a background process as soon as the tests are
    collected, and its tests run last: the build (about 10 s of one core) overlaps the rest of the suite,
    which runs on one thread (above). Only when the docs tests run with others; alone, they build as usual."""
    docs = [item for item in items if item.path.name == "test_docs.py"]
    if not docs or len(docs) == len(items) or sys.version_info < (3, 11):
        return
    import tempfile

    from tests.test_docs import Build

    items[:] = [item for item in items if item.path.name != "test_docs.py"] + docs
    folder = tempfile.mkdtemp(prefix="manual-bp-site-")
    config.docs_build = Build(folder)
    config.docs_build_folder = folder


def pytest_unconfigure(config):
    build = getattr(config, "docs_build", None)
    if build is not None:
        import shutil

        build.stop()
        shutil.rmtree(config.docs_build_folder, ignore_errors=True)
