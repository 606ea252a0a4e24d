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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.errors import ImageTooLargeException, RekognitionError
from pipeline.jobs.ledger import DONE, LedgerEntry
from pipeline.types import MAX_FACES_PER_IMAGE, DetectedFace
from pipeline.vision.engine import CHUNK_IMAGES
from pipeline.vision.image import DecodedImage
from pipeline.vision.streams import batched, ordered_window, usable_cores

__all__ = [
    "MODEL_CHUNK_IMAGES",
    "Analyzer",
    "FileOutcome",
    "FileTask",
    "LocalAnalyzer",
    "analyze_blobs",
    "batched",
    "engine_threads",
    "ordered_window",
    "read_task",
]

MODEL_CHUNK_IMAGES = CHUNK_IMAGES
"""Images read, decoded and analyzed at a time by one engine stream, their faces embedded in one
batch (the engine's chunk size: on 2 cores chunks of 4 indexed 105-108 images/s against 82-88
for chunks of 16, with a lower peak memory)."""

READ_ERROR_CODE = "FileReadError"
"""Error code reported for a file the operating system could not read."""


@dataclass(frozen=True)
class FileTask:
    """A file to process: path relative to the job's folder, absolute path, and its ledger row."""

    rel_path: str
    path: Path
    previous: LedgerEntry | None


@dataclass(frozen=True)
class ImageAnalysis:
    """An analyzed image: the upright source image's size in pixels (before reduced decoding: what
    identifies the image) and its faces (largest first, with embeddings)."""

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


def read_task(task: FileTask, max_bytes: int | None = None) -> FileOutcome:
    """Read and hash a file; mark it skipped when the ledger already indexed this exact content.

    On success the outcome carries the bytes in ``data`` for the next stage. A file of more than
    ``max_bytes`` bytes is not read into memory: its outcome is an ImageTooLargeException error.
    """
    try:
        with task.path.open("rb") as file:
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except OSError as exc:
        return FileOutcome(task=task, error=FileError(READ_ERROR_CODE, f"cannot read {task.rel_path}: {exc}"))
    if max_bytes is not None and len(data) > max_bytes:
        too_large = ImageTooLargeException(f"the file {task.rel_path} is larger than {max_bytes} bytes")
        return FileOutcome(task=task, error=FileError(too_large.code, too_large.message))
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
    in chunks of MODEL_CHUNK_IMAGES images on the engine's streams."""

    def analyze_chunk(chunk: list[bytes]) -> list[ImageAnalysis | FileError]:
        decoded: list[DecodedImage] = []
        errors: list[FileError | None] = []
        for data in chunk:
            try:
                decoded.append(engine.decode(data, max_bytes=max_image_bytes))
                errors.append(None)
            except RekognitionError as exc:
                errors.append(FileError(exc.code, exc.message))
        analyses = iter(analyze_images(engine, decoded))
        return [next(analyses) if error is None else error for error in errors]

    return [result for chunk in engine.map_chunks(analyze_chunk, blobs) for result in chunk]


def analyze_images(engine: Any, images: list[DecodedImage]) -> list[ImageAnalysis]:
    """Each image's size and faces (up to MAX_FACES_PER_IMAGE, before IndexFaces' MaxFaces and
    QualityFilter apply), the faces of all embedded in one batch when called on one of the
    engine's streams."""
    if not images:
        return []
    faces_per_image = engine.analyze_many(images, max_faces=MAX_FACES_PER_IMAGE)
    return [
        ImageAnalysis(width=image.source_width, height=image.source_height, faces=list(faces))
        for image, faces in zip(images, faces_per_image, strict=True)
    ]


class LocalAnalyzer:
    """The engine's streams (one single-threaded model stream per core of its thread budget, see
    pipeline.vision.streams), each reading, hashing, decoding and analyzing a chunk of
    ``chunk_size`` images at a time, so the cores run whole images in parallel and one stream
    decodes while another runs the models; each chunk's faces are embedded in one batch.
    Outcomes come back in walk order, regrouped into batches of ``batch_size`` images, each
    written in one store transaction; at most two chunks per stream are in flight.
    """

    def __init__(
        self, engine: Any, *, batch_size: int, max_image_bytes: int, chunk_size: int = MODEL_CHUNK_IMAGES
    ) -> None:
        self.engine = engine
        self.batch_size = max(1, batch_size)
        self.chunk_size = max(1, min(chunk_size, self.batch_size))
        self.max_image_bytes = max_image_bytes

    def _process(self, tasks: list[FileTask]) -> list[FileOutcome]:
        outcomes = [read_task(task, self.max_image_bytes) for task in tasks]
        decoded = [(o, decode_outcome(self.engine, o, self.max_image_bytes)) for o in outcomes]
        analyses = iter(analyze_images(self.engine, [image for _, image in decoded if image is not None]))
        for outcome, image in decoded:
            if image is not None:
                outcome.analysis = next(analyses)
        return outcomes

    def run(self, tasks: Iterable[FileTask]) -> Iterator[list[FileOutcome]]:
        """Ordered batches of ``batch_size`` outcomes."""
        chunks = self.engine.map_chunks(self._process, tasks, self.chunk_size)
        try:
            yield from batched((outcome for chunk in chunks for outcome in chunk), self.batch_size)
        finally:
            chunks.close()

    def close(self) -> None:
        """Nothing to stop: the streams belong to the engine (queued chunks of an abandoned run
        are cancelled when its iterator closes)."""


def engine_threads(settings_threads: int, workers: int | None) -> int:
    """The job's thread budget (the engine's streams): ``workers`` if given, else
    ``settings_threads`` if set (> 0), else the usable cores."""
    return workers or settings_threads or usable_cores()
