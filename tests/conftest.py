"""Test-wide settings."""

import os

import pytest

# Tiny models gain nothing from threads, and OpenMP threads spinning against
# other busy processes can make a 5 ms training step take seconds.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as the CLI runs it (mtools.runtime)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Parsed corpora and runs go to a temporary cache, never ~/.cache."""
    saved = os.environ.get("MTOOLS_CACHE")
    os.environ["MTOOLS_CACHE"] = str(tmp_path_factory.mktemp("mtools-cache"))
    yield
    if saved is None:
        os.environ.pop("MTOOLS_CACHE", None)
    else:
        os.environ["MTOOLS_CACHE"] = saved
