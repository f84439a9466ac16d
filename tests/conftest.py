"""Test-wide settings: caches and runs go to a per-session temporary folder, never ~/.cache."""
import os
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "serengeti-samples"


def pytest_configure(config):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="camtrap_ssl_tests_"))
    os.environ.setdefault("CAMTRAP_SSL_CACHE", str(base / "cache"))
    os.environ.setdefault("CAMTRAP_SSL_RUNS", str(base / "runs"))
    os.environ.setdefault("CAMTRAP_SSL_WEIGHTS", str(base / "weights"))
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def serengeti_samples():
    """The real Snapshot Serengeti JPEGs in ../shared, or a skip where they are absent."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real camera-trap samples not found at {SAMPLES}")
    return SAMPLES


from book_fixture import tiny_book  # noqa: E402,F401  (the session-wide tiny build of the book)
