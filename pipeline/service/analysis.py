"""The stateless operations: DetectFaces and CompareFaces.

The operations layer validates the request and resolves Image{Bytes|S3Object} to a decoded image
(each source with its own size limit) before calling these; they also take image bytes, decoded
with the engine's limit, and still check what they use, so a direct library call gets the same
errors.
Responses are shaped as botocore's Rekognition model (FaceDetail, ComparedFace, ...).

Attributes (DetectFaces' Attributes, IndexFaces' DetectionAttributes): :func:`face_detail` is the
one place a FaceDetail is made. The models give a box, 5 landmarks, a detector confidence, and
from those a pose and image quality: the DEFAULT set. ALL and the single attributes (AGE_RANGE,
EMOTIONS, ...) return exactly what the models compute, which is that same set: nothing here
estimates age, gender, emotions, eye direction, occlusion or the other attributes, so those
fields are left out rather than invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.errors import InvalidParameterException
from pipeline.service.common import FaceEngine, check_threshold
from pipeline.service.selection import choose_faces, embed_chosen
from pipeline.service.validation import show_value
from pipeline.types import MAX_FACES_PER_IMAGE, DetectedFace
from pipeline.vision.quality import QUALITY_LEVELS

ATTRIBUTES = (
    "DEFAULT",
    "ALL",
    "AGE_RANGE",
    "BEARD",
    "EMOTIONS",
    "EYE_DIRECTION",
    "EYEGLASSES",
    "EYES_OPEN",
    "GENDER",
    "MOUTH_OPEN",
    "MUSTACHE",
    "FACE_OCCLUDED",
    "SMILE",
    "SUNGLASSES",
)
"""DetectFaces Attributes values accepted (botocore's Attribute enum)."""

DEFAULT_SIMILARITY_THRESHOLD = 80.0
"""CompareFaces' default SimilarityThreshold (Similarity, 0-100)."""


def check_attributes(values: Sequence[str] | None, field: str = "Attributes") -> tuple[str, ...]:
    """The requested attributes as a tuple, ("DEFAULT",) when none are given.

    ``field`` names the request member in the error (DetectFaces' Attributes, IndexFaces'
    DetectionAttributes). An unknown value is InvalidParameterException.
    """
    if values is None:
        return ("DEFAULT",)
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidParameterException(
            f"{field} must be a list of attribute names; got {show_value(values)}"
        )
    for value in values:
        if value not in ATTRIBUTES:
            raise InvalidParameterException(
                f"{field} values must be among {', '.join(ATTRIBUTES)}; got {show_value(value)}"
            )
    return tuple(values) or ("DEFAULT",)


def face_detail(face: DetectedFace, attributes: Sequence[str] = ("DEFAULT",)) -> dict[str, Any]:
    """The FaceDetail of one face for the requested attributes (already checked, once per request,
    with :func:`check_attributes`).

    Every request gets the DEFAULT fields: BoundingBox and Landmarks (ratios of the image's width
    and height), Pose (degrees), Quality (Brightness and Sharpness, 0-100) and Confidence (0-100,
    that the box holds a face). ALL and the single attributes add the fields the models compute
    beyond those, which today is none: no age, gender, emotion or other estimate is made up.
    """
    return face.to_face_detail()


def _decoded(engine: FaceEngine, image: Any) -> Any:
    """Image bytes decoded by the engine (its size limit); an already decoded image as it is."""
    return engine.decode(bytes(image)) if isinstance(image, bytes | bytearray | memoryview) else image


def detect_faces(engine: FaceEngine, image: Any, attributes: list[str] | None = None) -> dict[str, Any]:
    """DetectFaces response body: FaceDetails of the MAX_FACES_PER_IMAGE largest faces, largest first.

    ``image``: bytes or an engine-decoded image. ``attributes``: DetectFaces Attributes (default
    ["DEFAULT"]); see :func:`face_detail`.
    """
    requested = check_attributes(attributes)
    faces = engine.analyze(_decoded(engine, image), max_faces=MAX_FACES_PER_IMAGE, embed=False)
    return {"FaceDetails": [face_detail(face, requested) for face in faces]}


def _compared_face(face: DetectedFace) -> dict[str, Any]:
    """The ComparedFace shape: box, confidence, landmarks, pose, quality."""
    detail = face_detail(face)
    return {key: detail[key] for key in ("BoundingBox", "Confidence", "Landmarks", "Pose", "Quality")}


def compare_faces(
    engine: FaceEngine,
    source: Any,
    target: Any,
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD,
    quality_filter: str = "NONE",
) -> dict[str, Any]:
    """CompareFaces response body: the source image's largest face against the target's
    MAX_FACES_PER_IMAGE largest.

    ``source``, ``target``: bytes or engine-decoded images.
    Faces whose Similarity is at least ``similarity_threshold`` (0-100) are FaceMatches (highest
    Similarity first), the others UnmatchedFaces (largest first). With ``quality_filter`` other
    than NONE, faces failing that bar are not compared and appear in neither list. A source
    image without a usable face, or a target image without any face, is InvalidParameterException
    (as Rekognition documents).
    """
    threshold = check_threshold(similarity_threshold, "SimilarityThreshold")
    if quality_filter not in QUALITY_LEVELS:
        raise InvalidParameterException(
            f"QualityFilter must be one of {', '.join(QUALITY_LEVELS)}; got {show_value(quality_filter)}"
        )
    source_image = _decoded(engine, source)
    target_image = _decoded(engine, target)
    source_faces = engine.analyze(source_image, max_faces=1)
    target_faces = engine.analyze(  # only the faces that pass the filter are compared: embedded
        target_image, max_faces=MAX_FACES_PER_IMAGE, embed=embed_chosen(engine, quality_filter, None)
    )
    if not source_faces:
        raise InvalidParameterException("No face was detected in the source image")
    if not target_faces:
        raise InvalidParameterException("No face was detected in the target image")
    (source,) = choose_faces(engine, source_faces, quality_filter, 1)
    source_face = source.face
    if not source.chosen:
        raise InvalidParameterException(
            f"The largest face in the source image does not pass QualityFilter {quality_filter}:"
            f" {', '.join(source.reasons)}"
        )
    compared = [c.face for c in choose_faces(engine, target_faces, quality_filter, None) if c.chosen]
    matches: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    if compared:
        assert source_face.embedding is not None
        vectors = np.stack([face.embedding for face in compared if face.embedding is not None])
        cosines = vectors @ source_face.embedding
        for face, cosine in zip(compared, cosines, strict=True):
            similarity = engine.similarity(float(cosine))
            if similarity >= threshold:
                matches.append({"Similarity": similarity, "Face": _compared_face(face)})
            else:
                unmatched.append(_compared_face(face))
    matches.sort(key=lambda match: -float(match["Similarity"]))
    return {
        "SourceImageFace": {
            "BoundingBox": source_face.bounding_box.to_api(),
            "Confidence": source_face.confidence,
        },
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }
