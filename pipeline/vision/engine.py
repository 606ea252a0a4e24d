"""The face engine: the one object the service layer uses for everything visual.

CONTRACT (the service layer relies on exactly this):

    engine = get_engine(settings)            # cached per (model_pack, provider, threads, cache_dir)
    engine.streams -> int                    # parallel single-threaded streams (settings.threads,
                                             # 0 = usable cores); see pipeline.vision.streams
    engine.model_version -> str              # FaceModelVersion reported by the API
    engine.embedding_dim -> int              # D of every vector
    image = engine.decode(data: bytes, max_bytes=None)
                                             # DecodedImage (.width, .height, .bgr); raises
                                             # InvalidImageFormatException, ImageTooLargeException,
                                             # InvalidParameterException
    faces = engine.analyze(image, max_faces=100, embed=True)
                                             # list[DetectedFace], largest box first; embed: True
                                             # (all), False (none) or a function of the faces
                                             # giving the indices of those to embed
    many = engine.analyze_many(images, max_faces=100)   # analyze() of many images: chunks of
                                             # CHUNK_IMAGES on the streams, embeddings batched per chunk
    results = engine.map_chunks(work, items) # work(chunk) on the streams, results in order (lazy)
    engine.embed_aligned(crops) -> (N, D)    # (N,112,112,3) BGR uint8 aligned crops -> unit vectors
    engine.similarity(cosine) -> float       # calibrated 0-100 Similarity/Confidence
    engine.cosine_at(similarity) -> float    # inverse: the cosine whose Similarity is `similarity`
    engine.quality_reasons(face, level) -> list[str]
                                             # IndexFaces QualityFilter reasons for one face
                                             # (level NONE/AUTO/LOW/MEDIUM/HIGH; [] = passes)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from pipeline.config import Settings
from pipeline.errors import InternalServerError, InvalidParameterException
from pipeline.types import LANDMARK_TYPES, BoundingBox, DetectedFace, Landmark
from pipeline.vision.align import CROP_SIZE, align_face
from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.detect import Detections
from pipeline.vision.embed import FlipAveragedEmbedder
from pipeline.vision.image import DecodedImage, decode_image
from pipeline.vision.packs import LoadedPack, load_pack, read_manifest
from pipeline.vision.precision import check_precision
from pipeline.vision.providers import CPU, choose_providers
from pipeline.vision.quality import estimate_pose, measure_quality, quality_reasons
from pipeline.vision.streams import Streams, usable_cores

__all__ = ["DecodedImage", "FaceEngine", "get_engine"]

T = TypeVar("T")
R = TypeVar("R")

EmbedChoice = Callable[[list[DetectedFace]], Iterable[int]]
"""analyze()'s ``embed`` as a function: the detected faces in, the indices of those to embed out."""

MAX_FACES_LIMIT = 4096
"""Largest max_faces accepted by analyze()."""

CHUNK_IMAGES = 4
"""Images one stream analyzes at a time, their faces embedded in one batch. A single-threaded
session embeds a face fastest in small batches (SFace, one thread: about 13.0 ms per face in
batches of 2-4, 13.9 in 8, 14.7 in 16, as larger activations leave the cache)."""


@dataclass(frozen=True)
class _Found:
    """One detection of one image, aligned, before embedding."""

    face: DetectedFace
    crop: npt.NDArray[np.uint8]


class FaceEngine:
    """Decode, detect, align, embed and score faces with one loaded model pack.

    Thread-safe: ONNX Runtime sessions may be run from several threads at once. Two session sets:
    ``pack`` runs each model on ``streams`` intra-op threads, for the lowest latency of one call
    (analyze, embed_aligned); ``stream_pack`` runs them on one thread each, for the batch work that
    runs on the streams (analyze_many, map_chunks), where whole images run in parallel instead.
    On one core, or on a GPU, both are the same sessions. ``pack`` may be given as a function that
    loads it: it then loads on first use, so batch work (index-folder) never opens sessions it
    does not run.
    """

    def __init__(
        self,
        pack: LoadedPack | Callable[[], LoadedPack],
        stream_pack: LoadedPack,
        max_image_bytes: int,
        streams: Streams,
    ) -> None:
        self._pack = pack if isinstance(pack, LoadedPack) else None
        self._load_pack = pack if not isinstance(pack, LoadedPack) else None
        self._pack_lock = threading.Lock()
        self.stream_pack = stream_pack
        self._streams = streams
        self.streams: int = streams.count
        self.max_image_bytes = max_image_bytes
        self.model_version: str = stream_pack.model_version
        self.embedding_dim: int = stream_pack.embedder.embedding_dim
        self.calibration: SimilarityMap = stream_pack.calibration

    @property
    def pack(self) -> LoadedPack:
        """The single-call session set (``streams`` intra-op threads), loaded on first use."""
        if self._pack is None:
            with self._pack_lock:
                if self._pack is None:
                    assert self._load_pack is not None
                    self._pack = self._load_pack()
        return self._pack

    def decode(self, data: bytes, max_bytes: int | None = None) -> DecodedImage:
        """JPEG/PNG bytes -> upright BGR image; Rekognition errors for anything else.

        ``max_bytes`` defaults to the settings' max_image_bytes (5 MB unless configured).
        """
        return decode_image(data, self.max_image_bytes if max_bytes is None else max_bytes)

    @staticmethod
    def _check_max_faces(max_faces: int) -> None:
        if (
            isinstance(max_faces, bool)
            or not isinstance(max_faces, int)
            or not 1 <= max_faces <= MAX_FACES_LIMIT
        ):
            raise InvalidParameterException(
                f"MaxFaces must be an integer from 1 to {MAX_FACES_LIMIT}; got {max_faces!r}"
            )

    def _sessions(self) -> LoadedPack:
        """The session set for the calling thread: single-threaded on a stream, else the latency set."""
        return self.stream_pack if self._streams.in_stream() else self.pack

    def _found(self, image: DecodedImage, max_faces: int, pack: LoadedPack) -> list[_Found]:
        detections: Detections = pack.detector.detect(image.bgr)
        width, height = float(image.width), float(image.height)
        boxes = detections.boxes
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        # largest first; ties broken by detector score, then position, so the order is stable
        order = sorted(
            range(len(detections)),
            key=lambda i: (
                -float(areas[i]),
                -float(detections.scores[i]),
                float(boxes[i, 1]),
                float(boxes[i, 0]),
            ),
        )[:max_faces]
        found = []
        for i in order:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            points = detections.landmarks[i]
            crop = align_face(image.bgr, points)
            face = DetectedFace(
                bounding_box=BoundingBox(
                    left=x1 / width, top=y1 / height, width=(x2 - x1) / width, height=(y2 - y1) / height
                ),
                landmarks=tuple(
                    Landmark(type=name, x=float(points[k, 0]) / width, y=float(points[k, 1]) / height)
                    for k, name in enumerate(LANDMARK_TYPES)
                ),
                pose=estimate_pose(points, self.stream_pack.frontal_nose_height),
                quality=measure_quality(crop),
                confidence=round(min(100.0, max(0.0, float(detections.scores[i]) * 100.0)), 4),
            )
            found.append(_Found(face, crop))
        return found

    @staticmethod
    def _with_embeddings(found: list[_Found], vectors: npt.NDArray[np.float32]) -> list[DetectedFace]:
        return [
            DetectedFace(
                f.face.bounding_box, f.face.landmarks, f.face.pose, f.face.quality, f.face.confidence, v
            )
            for f, v in zip(found, vectors, strict=True)
        ]

    def analyze(
        self, image: DecodedImage, max_faces: int = 100, embed: bool | EmbedChoice = True
    ) -> list[DetectedFace]:
        """Faces in ``image``, largest bounding box first, at most ``max_faces`` (the largest).

        ``embed``: True gives each face its unit-length float32 embedding, False none; a function
        of the faces (without embeddings) returns the indices of the faces to embed, so a caller
        that returns only some of them pays only for those.
        """
        self._check_max_faces(max_faces)
        pack = self._sessions()
        found = self._found(image, max_faces, pack)
        if embed is False or not found:
            return [f.face for f in found]
        if embed is True:
            return self._with_embeddings(found, pack.embedder.embed(np.stack([f.crop for f in found])))
        faces = [f.face for f in found]
        chosen = sorted({int(i) for i in embed(faces)})
        if chosen:
            picked = [found[i] for i in chosen]
            vectors = pack.embedder.embed(np.stack([f.crop for f in picked]))
            for i, face in zip(chosen, self._with_embeddings(picked, vectors), strict=True):
                faces[i] = face
        return faces

    def analyze_many(self, images: Iterable[DecodedImage], max_faces: int = 100) -> list[list[DetectedFace]]:
        """analyze() for each image, in order: chunks of CHUNK_IMAGES images run on the streams, each
        chunk's faces embedded in one batch."""
        self._check_max_faces(max_faces)
        return [
            faces
            for chunk in self.map_chunks(lambda chunk: self._analyze_chunk(chunk, max_faces), images)
            for faces in chunk
        ]

    def _analyze_chunk(self, images: list[DecodedImage], max_faces: int) -> list[list[DetectedFace]]:
        """analyze() of a few images in the calling thread, their faces embedded in one batch."""
        pack = self._sessions()
        per_image = [self._found(image, max_faces, pack) for image in images]
        crops = [f.crop for found in per_image for f in found]
        if not crops:
            return [[] for _ in images]
        vectors = pack.embedder.embed(np.stack(crops))
        result, start = [], 0
        for found in per_image:
            result.append(self._with_embeddings(found, vectors[start : start + len(found)]))
            start += len(found)
        return result

    def map_chunks(
        self, work: Callable[[list[T]], R], items: Iterable[T], chunk_size: int = CHUNK_IMAGES
    ) -> Generator[R, None, None]:
        """``work(chunk)`` for consecutive chunks of ``items`` on the engine's streams, results in
        order; lazy and bounded (at most two chunks per stream in flight). Inside ``work`` the
        engine's methods run in the calling stream."""
        return self._streams.map_chunks(work, items, chunk_size)

    def embed_aligned(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 crops aligned on the ArcFace template -> (N, D) unit vectors."""
        return self._sessions().embedder.embed(np.asarray(crops))

    def similarity(self, cosine: float) -> float:
        """Calibrated Similarity/Confidence (0-100, monotone increasing) of a cosine similarity."""
        return self.calibration.similarity(cosine)

    def cosine_at(self, similarity: float) -> float:
        """The cosine whose Similarity is ``similarity``: inverse of similarity()."""
        return self.calibration.cosine_at(similarity)

    def quality_reasons(self, face: DetectedFace, level: str) -> list[str]:
        """QualityFilter ``level`` (NONE/AUTO/LOW/MEDIUM/HIGH) reasons for ``face``; [] passes."""
        return quality_reasons(face, level)


_PACKS: dict[tuple[str, str, Path, str, int], LoadedPack] = {}
_STREAMS: dict[tuple[str, str, Path, int], Streams] = {}
_ENGINES: dict[tuple[str, str, Path, str, int, int, bool], FaceEngine] = {}
_LOCK = threading.Lock()


def flip_calibration(model_pack: str, plain: SimilarityMap) -> SimilarityMap:
    """The pack's calibration fitted on flip-averaged embeddings (its manifest's
    ``calibration_flip``), else ``plain``."""
    try:
        fitted = read_manifest(model_pack).get("calibration_flip")
    except InternalServerError:  # a pack without a manifest of its own
        return plain
    return SimilarityMap.from_manifest(fitted) if fitted else plain


def engine_streams(threads: int) -> int:
    """Streams for Settings.threads: ``threads`` when > 0, else the usable CPU cores."""
    return int(threads) if int(threads) > 0 else usable_cores()


def _loaded(settings: Settings, threads: int) -> LoadedPack:
    """The settings' model pack with ``threads`` intra-op threads per session (loaded once; call
    with _LOCK held)."""
    key = (
        settings.model_pack,
        settings.provider,
        Path(settings.cache_dir),
        settings.embedder_precision,
        threads,
    )
    pack = _PACKS.get(key)
    if pack is None:
        providers = choose_providers(settings.provider)
        check_precision(settings.embedder_precision)
        pack = load_pack(
            settings.model_pack, providers, threads, Path(settings.cache_dir), settings.embedder_precision
        )
        _PACKS[key] = pack
    return pack


def get_engine(settings: Settings | None = None) -> FaceEngine:
    """The engine for these settings; models load once per (model_pack, provider, cache_dir,
    embedder_precision).

    The first call locates and verifies the model files, prepares them into the cache directory
    when needed, and opens the ONNX Runtime sessions: single-threaded ones that the engine runs on
    ``settings.threads`` streams (0 = one per usable core), and, with more than one stream on the
    CPU, ones with that many intra-op threads for single calls (on their first use). Later calls return the same
    object (one per threads, max_image_bytes and flip_embeddings, sharing the loaded models and
    the streams). The embedder's precision (pipeline.vision.precision) is measured once per
    machine and cached with the prepared models.
    """
    settings = settings if settings is not None else Settings.from_env()
    pack_key = (settings.model_pack, settings.provider, Path(settings.cache_dir))
    streams = engine_streams(settings.threads)
    with _LOCK:
        engine_key = (
            *pack_key,
            settings.embedder_precision,
            streams,
            settings.max_image_bytes,
            settings.flip_embeddings,
        )
        engine = _ENGINES.get(engine_key)
        if engine is None:
            stream_pack = _loaded(settings, 1)
            flip_map = (
                flip_calibration(settings.model_pack, stream_pack.calibration)
                if settings.flip_embeddings
                else None
            )

            def as_configured(pack: LoadedPack) -> LoadedPack:
                if flip_map is None:
                    return pack
                return replace(pack, embedder=FlipAveragedEmbedder(pack.embedder), calibration=flip_map)

            stream_pack = as_configured(stream_pack)
            latency: LoadedPack | Callable[[], LoadedPack] = stream_pack
            if streams > 1 and stream_pack.providers[0] == CPU:

                def load_latency_pack() -> LoadedPack:
                    """The single-call sessions, opened on first use (batch jobs never need them)."""
                    with _LOCK:
                        return as_configured(_loaded(settings, streams))

                latency = load_latency_pack
            pool = _STREAMS.setdefault((*pack_key, streams), Streams(streams))
            engine = FaceEngine(latency, stream_pack, settings.max_image_bytes, pool)
            _ENGINES[engine_key] = engine
    return engine


CROP_SHAPE = (CROP_SIZE, CROP_SIZE, 3)
"""Shape of one aligned crop accepted by embed_aligned()."""
