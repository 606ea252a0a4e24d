"""One engine for the model tests, its prepared models in the session's model_cache (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.vision.engine import FaceEngine, get_engine


@pytest.fixture(scope="session")
def engine(model_cache: Path) -> FaceEngine:
    """The default pack on CPU, 2 threads."""
    return get_engine(Settings(cache_dir=model_cache, provider="cpu", threads=2))
