"""Shared fixtures: where the real face photos are, the session's prepared-model cache, and a fresh
data directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.vision.samples import find_sample_photos
from tests.support import REPO_ROOT

SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"


SAMPLE_IMAGES = find_sample_photos()
"""Photos shipped inside the installed insightface package (t1.jpg: a group of 6 faces); None where
insightface is not installed."""


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """Folder of sample photos that ship inside an installed package."""
    if SAMPLE_IMAGES is None:
        pytest.skip("insightface is not installed: its sample photos are missing")
    return SAMPLE_IMAGES


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """../shared/data/faces (labeled photos and pairs.csv); the test skips where it is absent."""
    if not (SHARED_FACES / "labels.csv").is_file():
        pytest.skip(f"labeled face photos not found at {SHARED_FACES} (only in the development checkout)")
    return SHARED_FACES


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cache directory for the models prepared in this test session (shared by its engines)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty data directory, also exported as FACEPIPE_HOME."""
    d = tmp_path / "facepipe-home"
    d.mkdir()
    monkeypatch.setenv("FACEPIPE_HOME", str(d))
    return d
