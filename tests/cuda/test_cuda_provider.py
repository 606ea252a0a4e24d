"""The CUDA provider for real: it is the one used, and it agrees with the CPU.

Marked ``cuda``; skipped, with ONNX Runtime's own reason, where the CUDA provider does not load
(no onnxruntime-gpu, no GPU, missing CUDA/cuDNN libraries). ``benchmarks/gpu_run.sh`` runs them
on a GPU machine. Photos: the folder named by ``FACEPIPE_TEST_PHOTOS`` when that variable is
set, else insightface's sample photos. Both engines run the float32 embedder (``auto`` could pick
int8 on the CPU, which would not agree with CUDA's float32 to 0.999).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.types import DetectedFace
from pipeline.vision.align import align_face
from pipeline.vision.engine import FaceEngine, get_engine
from pipeline.vision.providers import CUDA, cuda_load_error

pytestmark = pytest.mark.cuda

_REASON = cuda_load_error()
requires_cuda = pytest.mark.skipif(_REASON is not None, reason=f"CUDA provider does not load: {_REASON}")


MAX_PHOTO_BYTES = 15 * 1024 * 1024


@pytest.fixture(scope="module")
def photos(request: pytest.FixtureRequest) -> list[Path]:
    """JPEG/PNG photos: FACEPIPE_TEST_PHOTOS's folder, else insightface's sample photos."""
    named = os.environ.get("FACEPIPE_TEST_PHOTOS")
    folder = Path(named) if named else request.getfixturevalue("sample_images")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not found:
        pytest.skip(f"no JPEG/PNG photos in {folder}")
    return found


def _box_pixels(face: DetectedFace, width: int, height: int) -> np.ndarray:
    """(left, top, width, height) of a face's box in pixels."""
    box = face.bounding_box
    return np.array([box.left * width, box.top * height, box.width * width, box.height * height])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[FaceEngine, FaceEngine]:
    """(CPU engine, CUDA engine) on one prepared-model cache, both with the float32 embedder."""
    cache = tmp_path_factory.mktemp("model-cache")
    cpu = get_engine(Settings(cache_dir=cache, provider="cpu", threads=2, embedder_precision="float32"))
    cuda = get_engine(Settings(cache_dir=cache, provider="cuda", threads=2, embedder_precision="float32"))
    return cpu, cuda


@requires_cuda
def test_cuda_provider_is_the_one_used(engines: tuple[FaceEngine, FaceEngine]) -> None:
    _, cuda = engines
    assert cuda.pack.providers[0] == CUDA
    for model in (cuda.pack.detector, cuda.pack.embedder):
        session = getattr(model, "session")  # noqa: B009 - both ONNX wrappers hold their session here
        assert session.get_providers()[0] == CUDA


@requires_cuda
def test_cuda_detections_and_embeddings_agree_with_cpu(
    engines: tuple[FaceEngine, FaceEngine], photos: list[Path]
) -> None:
    """Same faces, boxes within 1 px, and each face's embedding at cosine >= 0.999 to the CPU's."""
    cpu, cuda = engines
    compared = 0
    for path in photos:
        image = cpu.decode(path.read_bytes(), max_bytes=MAX_PHOTO_BYTES)
        on_cpu = cpu.analyze(image)
        on_cuda = cuda.analyze(image)
        assert len(on_cuda) == len(on_cpu), path.name
        for a, b in zip(on_cpu, on_cuda, strict=True):
            assert (
                np.abs(
                    _box_pixels(a, image.width, image.height) - _box_pixels(b, image.width, image.height)
                ).max()
                <= 1.0
            ), path.name
            assert a.embedding is not None and b.embedding is not None
            assert float(np.dot(a.embedding, b.embedding)) >= 0.999, path.name
            compared += 1
    assert compared > 0, "the photos held no face to compare"


@requires_cuda
def test_cuda_batched_embeddings_agree_with_cpu(
    engines: tuple[FaceEngine, FaceEngine], photos: list[Path]
) -> None:
    """Large batches (as the GPU benchmark runs them) give the CPU's embeddings, face by face."""
    cpu, cuda = engines
    crops = []
    for path in photos:
        image = cpu.decode(path.read_bytes(), max_bytes=MAX_PHOTO_BYTES)
        crops += [align_face(image.bgr, points) for points in cpu.pack.detector.detect(image.bgr).landmarks]
    if not crops:
        pytest.skip("the photos hold no face")
    batch = np.stack([crops[i % len(crops)] for i in range(256)])
    cosines = np.sum(cpu.embed_aligned(batch) * cuda.embed_aligned(batch), axis=1)
    assert float(cosines.min()) >= 0.999
