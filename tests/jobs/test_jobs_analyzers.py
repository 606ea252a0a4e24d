"""The local engine's scheduling: walk order, write batches, small model chunks, same faces as IndexFaces."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.jobs.analyzers import FileTask, LocalAnalyzer
from pipeline.service import FacePipe
from pipeline.vision.image import DecodedImage


class RecordingEngine:
    """The real engine, recording how many images each analyze_many call got and how many ran at once."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.chunk_sizes: list[int] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def decode(self, data: bytes, max_bytes: int | None = None) -> DecodedImage:
        decoded: DecodedImage = self.engine.decode(data, max_bytes=max_bytes)
        return decoded

    def map_chunks(self, work: Any, items: Any, chunk_size: int) -> Any:
        return self.engine.map_chunks(work, items, chunk_size)

    def analyze_many(self, images: list[DecodedImage], max_faces: int = 100) -> Any:
        with self._lock:
            self.chunk_sizes.append(len(images))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            return self.engine.analyze_many(images, max_faces=max_faces)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture()
def image_folder(tmp_path: Path, sample_images: Path) -> Path:
    """11 image files: the sample photos (one with 6 faces) repeated, plus one that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    sources = sorted(p for p in sample_images.iterdir() if p.suffix in (".jpg", ".png"))
    for i in range(10):
        source = sources[i % len(sources)]
        shutil.copy(source, folder / f"{i:02d}{source.suffix}")
    (folder / "10.jpg").write_text("not an image")
    return folder


def test_batches_in_walk_order_chunks_small_faces_as_index_faces(
    model_pipe: FacePipe, image_folder: Path
) -> None:
    engine = RecordingEngine(model_pipe.engine)
    paths = sorted(image_folder.iterdir())
    tasks = [FileTask(rel_path=p.name, path=p, previous=None) for p in paths]
    analyzer = LocalAnalyzer(engine, batch_size=4, max_image_bytes=15 * 2**20, chunk_size=3)
    try:
        batches = list(analyzer.run(iter(tasks)))
    finally:
        analyzer.close()

    assert [len(b) for b in batches] == [4, 4, 3]
    outcomes = [o for b in batches for o in b]
    assert [o.task.rel_path for o in outcomes] == [p.name for p in paths]
    # each stream analyzes at most chunk_size images at a time, at most one chunk per stream at once
    assert max(engine.chunk_sizes) <= 3
    assert sum(engine.chunk_sizes) == 10
    assert engine.most_running <= model_pipe.engine.streams == 2

    broken = outcomes[-1]
    assert broken.analysis is None and broken.error is not None
    assert broken.error.code == "InvalidImageFormatException"
    for outcome, path in zip(outcomes[:-1], paths[:-1], strict=True):
        assert outcome.error is None and outcome.analysis is not None and outcome.data is None
        alone = model_pipe.engine.analyze(model_pipe.engine.decode(path.read_bytes()), max_faces=100)
        batched_faces = outcome.analysis.faces
        assert [f.bounding_box for f in batched_faces] == [f.bounding_box for f in alone]
        assert [f.confidence for f in batched_faces] == [f.confidence for f in alone]
        for together, single in zip(batched_faces, alone, strict=True):
            assert together.embedding is not None and single.embedding is not None
            assert float(np.dot(together.embedding, single.embedding)) > 0.9999
    assert max(len(o.analysis.faces) for o in outcomes if o.analysis) == 6  # t1.jpg's group, batched


def test_chunk_never_exceeds_the_write_batch(model_pipe: FacePipe) -> None:
    analyzer = LocalAnalyzer(model_pipe.engine, batch_size=2, max_image_bytes=1024, chunk_size=8)
    try:
        assert analyzer.chunk_size == 2
    finally:
        analyzer.close()
