"""FACEPIPE_FLIP_EMBEDDINGS: each face's vector is the normalised mean of its crop's and its mirror's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.engine import FaceEngine, get_engine
from pipeline.vision.packs import read_manifest


@pytest.fixture(scope="module")
def flip_engine(model_cache: Path) -> FaceEngine:
    return get_engine(Settings(cache_dir=model_cache, provider="cpu", threads=2, flip_embeddings=True))


def _crops(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


def test_flip_averaged_vector_is_mean_of_crop_and_mirror(engine: FaceEngine, flip_engine: FaceEngine) -> None:
    crops = _crops()
    plain = engine.embed_aligned(crops)
    mirrored = engine.embed_aligned(np.ascontiguousarray(crops[:, :, ::-1]))
    expected = (plain + mirrored) / np.linalg.norm(plain + mirrored, axis=1, keepdims=True)
    flipped = flip_engine.embed_aligned(crops)
    assert flipped.shape == plain.shape and flipped.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(flipped, expected, atol=1e-5)
    # a crop and its mirror image get the same vector
    np.testing.assert_allclose(
        flip_engine.embed_aligned(np.ascontiguousarray(crops[:, :, ::-1])), flipped, atol=1e-5
    )
    assert not np.allclose(plain, flipped, atol=1e-3)


def test_flip_is_off_by_default_and_a_separate_engine(engine: FaceEngine, flip_engine: FaceEngine) -> None:
    assert Settings().flip_embeddings is False
    assert flip_engine is not engine
    assert flip_engine.embedding_dim == engine.embedding_dim
    assert flip_engine.model_version == engine.model_version


def test_flip_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPIPE_FLIP_EMBEDDINGS", "1")
    assert Settings.from_env().flip_embeddings is True
    monkeypatch.setenv("FACEPIPE_FLIP_EMBEDDINGS", "false")
    assert Settings.from_env().flip_embeddings is False
    monkeypatch.setenv("FACEPIPE_FLIP_EMBEDDINGS", "maybe")
    with pytest.raises(ValueError, match="FACEPIPE_FLIP_EMBEDDINGS"):
        Settings.from_env()


def test_flip_engine_scores_with_the_calibration_fitted_on_flip_averaged_vectors(
    engine: FaceEngine, flip_engine: FaceEngine
) -> None:
    """Flip-averaged vectors have their own fit (models/calibration-flip.md): 80 and 99 keep their
    stated false-accept rates with the setting on."""
    manifest = read_manifest("default")
    assert manifest["calibration_flip"]["embeddings"] == "flip-averaged"
    assert flip_engine.calibration == SimilarityMap.from_manifest(manifest["calibration_flip"])
    assert engine.calibration == SimilarityMap.from_manifest(manifest["calibration"])
    assert flip_engine.cosine_at(80) > engine.cosine_at(80)
    assert flip_engine.cosine_at(99) > engine.cosine_at(99)
