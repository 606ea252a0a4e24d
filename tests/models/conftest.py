"""One engine for the model tests, with its prepared models in a per-session cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.vision.engine import FaceEngine, get_engine


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache directory for the prepared models of this test session."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def engine(model_cache: Path) -> FaceEngine:
    """The default pack on CPU, 2 threads."""
    return get_engine(Settings(cache_dir=model_cache, provider="cpu", threads=2))
