"""The one rule that picks which detected faces of an image an operation uses.

Faces are taken largest box first. A face fails the QualityFilter with the engine's reasons (NONE
lets every face pass); of the faces that pass, the ``max_faces`` largest are chosen and the others
get ``over_limit`` (IndexFaces: EXCEEDS_MAX_FACES past MaxFaces; the ByImage searches choose one
face, the others are FACE_NOT_LARGEST). A chosen face without an embedding, where one is needed,
is LOW_FACE_QUALITY (its place is not given to a smaller face). IndexFaces, SearchFacesByImage,
SearchUsersByImage and CompareFaces all choose with :func:`choose_faces`, and before embedding
with :func:`embed_chosen` (only the faces an operation will use are embedded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.service.common import EmbedChoice
from pipeline.types import DetectedFace

EXCEEDS_MAX_FACES = "EXCEEDS_MAX_FACES"
FACE_NOT_LARGEST = "FACE_NOT_LARGEST"
LOW_FACE_QUALITY = "LOW_FACE_QUALITY"


class QualityJudge(Protocol):
    """What the rule needs of the engine: QualityFilter reasons of one face ([] passes)."""

    def quality_reasons(self, face: DetectedFace, level: str) -> list[str]: ...


@dataclass(frozen=True)
class FaceChoice:
    """One detected face and why it is not used: ``reasons`` is empty for a chosen face."""

    face: DetectedFace
    reasons: tuple[str, ...]

    @property
    def chosen(self) -> bool:
        """Whether the operation uses this face."""
        return not self.reasons


def _by_area(faces: Sequence[DetectedFace]) -> list[int]:
    """Indices of ``faces``, largest box first (equal areas keep their order)."""
    return sorted(range(len(faces)), key=lambda i: faces[i].area, reverse=True)


def _reasons(
    engine: QualityJudge,
    faces: Sequence[DetectedFace],
    quality_filter: str,
    max_faces: int | None,
    over_limit: str,
    need_embedding: bool,
) -> list[tuple[str, ...]]:
    """Why each face of ``faces`` (already largest first) is not chosen; () for the chosen."""
    level = quality_filter.upper()
    kept = 0
    out: list[tuple[str, ...]] = []
    for face in faces:
        reasons = () if level == "NONE" else tuple(engine.quality_reasons(face, level))
        if not reasons and max_faces is not None and kept >= max_faces:
            reasons = (over_limit,)
        kept += not reasons
        if not reasons and need_embedding and face.embedding is None:
            reasons = (LOW_FACE_QUALITY,)
        out.append(reasons)
    return out


def choose_faces(
    engine: QualityJudge,
    faces: Sequence[DetectedFace],
    quality_filter: str,
    max_faces: int | None,
    over_limit: str = EXCEEDS_MAX_FACES,
) -> list[FaceChoice]:
    """Every face of ``faces``, largest first, with why it is not used (see the module docstring).

    ``quality_filter``: NONE, AUTO, LOW, MEDIUM or HIGH. ``max_faces``: the most faces chosen
    (None: every face that passes). Chosen faces must carry their embedding.
    """
    ordered = [faces[i] for i in _by_area(faces)]
    reasons = _reasons(engine, ordered, quality_filter, max_faces, over_limit, need_embedding=True)
    return [FaceChoice(face, why) for face, why in zip(ordered, reasons, strict=True)]


def embed_chosen(engine: QualityJudge, quality_filter: str, max_faces: int | None) -> EmbedChoice:
    """The engine's embed choice (analyze(embed=...)) for :func:`choose_faces` with the same
    arguments: the indices of the faces it will choose."""

    def choose(faces: list[DetectedFace]) -> list[int]:
        order = _by_area(faces)
        reasons = _reasons(
            engine,
            [faces[i] for i in order],
            quality_filter,
            max_faces,
            EXCEEDS_MAX_FACES,
            need_embedding=False,
        )
        return [i for i, why in zip(order, reasons, strict=True) if not why]

    return choose
