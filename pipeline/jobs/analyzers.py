"""Turning a stream of files into faces: the local thread-pool engine and the shared file loading.

An analyzer takes FileTasks in walk order and yields batches of FileOutcomes in the same order:
each file read and hashed, skipped when the ledger already holds it with the same content,
otherwise decoded and analyzed (faces detected, embeddings computed in batches across images),
or reported with the error that stopped it. Memory is bounded: at most a fixed window of files
is in flight, whatever the folder size. The Ray engine (pipeline.jobs.ray_engine) yields the same
outcomes from actors.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pipeline.errors import RekognitionError
from pipeline.jobs.ledger import DONE, LedgerEntry
from pipeline.types import DetectedFace
from pipeline.vision.image import DecodedImage

DETECT_MAX_FACES = 100
"""Faces detected per image before IndexFaces' MaxFaces and quality filter apply (Rekognition's 100)."""

MODEL_CHUNK_IMAGES = 4
"""Images analyzed at a time by one local worker (or Ray actor), their faces embedded in one
batch. A single-threaded session embeds a face fastest in small batches (SFace, one thread:
about 13.0 ms per face in batches of 2-4, 13.9 in 8, 14.7 in 16, as larger activations leave
the cache); on 2 cores chunks of 4 indexed 105-108 images/s against 82-88 for chunks of 16, with
a lower peak memory."""

READ_ERROR_CODE = "FileReadError"
"""Error code reported for a file the operating system could not read."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FileTask:
    """A file to process: path relative to the job's folder, absolute path, and its ledger row."""

    rel_path: str
    path: Path
    previous: LedgerEntry | None


@dataclass(frozen=True)
class ImageAnalysis:
    """An analyzed image: upright size in pixels and its faces (largest first, with embeddings)."""

    width: int
    height: int
    faces: list[DetectedFace]


@dataclass(frozen=True)
class FileError:
    """Why a file produced no faces: a Rekognition error code (or FileReadError) and a message."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        """The error as reported: {"Code", "Message"}."""
        return {"Code": self.code, "Message": self.message}


@dataclass
class FileOutcome:
    """What became of one file. Exactly one of ``skipped``, ``analysis`` and ``error`` is set."""

    task: FileTask
    sha256: str | None = None
    skipped: bool = False
    analysis: ImageAnalysis | None = None
    error: FileError | None = None
    data: bytes | None = field(default=None, repr=False)


class Analyzer(Protocol):
    """Something that turns FileTasks into ordered batches of FileOutcomes."""

    def run(self, tasks: Iterable[FileTask]) -> Iterator[list[FileOutcome]]: ...

    def close(self) -> None: ...


def read_task(task: FileTask) -> FileOutcome:
    """Read and hash a file; mark it skipped when the ledger already indexed this exact content.

    On success the outcome carries the bytes in ``data`` for the next stage.
    """
    try:
        data = task.path.read_bytes()
    except OSError as exc:
        return FileOutcome(task=task, error=FileError(READ_ERROR_CODE, f"cannot read {task.rel_path}: {exc}"))
    sha256 = hashlib.sha256(data).hexdigest()
    previous = task.previous
    if previous is not None and previous.state == DONE and previous.sha256 == sha256:
        return FileOutcome(task=task, sha256=sha256, skipped=True)
    return FileOutcome(task=task, sha256=sha256, data=data)


def decode_outcome(engine: Any, outcome: FileOutcome, max_image_bytes: int) -> DecodedImage | None:
    """Decode the bytes of a read outcome (releasing them); on failure set ``outcome.error``."""
    data, outcome.data = outcome.data, None
    if data is None:
        return None
    try:
        decoded: DecodedImage = engine.decode(data, max_bytes=max_image_bytes)
        return decoded
    except RekognitionError as exc:
        outcome.error = FileError(exc.code, exc.message)
        return None


def analyze_blobs(engine: Any, blobs: list[bytes], max_image_bytes: int) -> list[ImageAnalysis | FileError]:
    """Decode and analyze a batch of image bytes with ``engine`` (the Ray actors' unit of work),
    MODEL_CHUNK_IMAGES images per model batch."""
    decoded: list[DecodedImage] = []
    results: list[ImageAnalysis | FileError | None] = []
    for data in blobs:
        try:
            decoded.append(engine.decode(data, max_bytes=max_image_bytes))
            results.append(None)
        except RekognitionError as exc:
            results.append(FileError(exc.code, exc.message))
    faces_per_image = [
        faces
        for chunk in batched(decoded, MODEL_CHUNK_IMAGES)
        for faces in engine.analyze_many(chunk, max_faces=DETECT_MAX_FACES)
    ]
    pending = iter(zip(decoded, faces_per_image, strict=True))
    out: list[ImageAnalysis | FileError] = []
    for result in results:
        if result is None:
            image, faces = next(pending)
            out.append(ImageAnalysis(width=image.width, height=image.height, faces=list(faces)))
        else:
            out.append(result)
    return out


def ordered_window(
    submit: Callable[[T], Future[R]], items: Iterable[T], window: int
) -> Generator[R, None, None]:
    """Results of ``submit(item)`` in item order, with at most ``window`` futures in flight."""
    in_flight: deque[Future[R]] = deque()
    try:
        for item in items:
            in_flight.append(submit(item))
            if len(in_flight) >= window:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
    finally:
        for future in in_flight:
            future.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class LocalAnalyzer:
    """``workers`` threads, each reading, decoding and analyzing a chunk of ``chunk_size`` images
    at a time with single-threaded model sessions (ONNX Runtime, OpenCV and hashlib release the
    GIL), so the cores run whole images in parallel and one worker decodes while another runs the
    models; each chunk's faces are embedded in one batch. Outcomes come back in walk order,
    regrouped into batches of ``batch_size`` images, each written in one store transaction.
    Give the engine ONNX Runtime threads = cores / workers (see engine_threads) so the workers do
    not oversubscribe the CPU.
    """

    def __init__(
        self,
        engine: Any,
        *,
        workers: int,
        batch_size: int,
        max_image_bytes: int,
        chunk_size: int = MODEL_CHUNK_IMAGES,
    ) -> None:
        self.engine = engine
        self.workers = max(1, workers)
        self.batch_size = max(1, batch_size)
        self.chunk_size = max(1, min(chunk_size, self.batch_size))
        self.max_image_bytes = max_image_bytes
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="facepipe-worker")

    def _process(self, tasks: list[FileTask]) -> list[FileOutcome]:
        outcomes = [read_task(task) for task in tasks]
        decoded = [(o, decode_outcome(self.engine, o, self.max_image_bytes)) for o in outcomes]
        images = [image for _, image in decoded if image is not None]
        faces_per_image = iter(self.engine.analyze_many(images, max_faces=DETECT_MAX_FACES) if images else [])
        for outcome, image in decoded:
            if image is not None:
                outcome.analysis = ImageAnalysis(image.width, image.height, list(next(faces_per_image)))
        return outcomes

    def run(self, tasks: Iterable[FileTask]) -> Iterator[list[FileOutcome]]:
        """Ordered batches of ``batch_size`` outcomes; at most two chunks per worker are in flight."""

        def submit(chunk: list[FileTask]) -> Future[list[FileOutcome]]:
            return self._pool.submit(self._process, chunk)

        chunks = ordered_window(submit, batched(tasks, self.chunk_size), 2 * self.workers)
        try:
            yield from batched((outcome for chunk in chunks for outcome in chunk), self.batch_size)
        finally:
            chunks.close()

    def close(self) -> None:
        """Stop the workers (queued chunks are cancelled)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def engine_threads(settings_threads: int, workers: int) -> int:
    """ONNX Runtime threads per worker: ``settings_threads`` if set (> 0), else cores / workers."""
    if settings_threads > 0:
        return settings_threads
    return max(1, (os.cpu_count() or 1) // max(1, workers))
