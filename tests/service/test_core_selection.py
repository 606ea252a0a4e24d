"""The one face-selection rule (pipeline.service.selection) that IndexFaces, the ByImage
searches and CompareFaces use."""

from __future__ import annotations

import numpy as np

from pipeline.service.selection import EXCEEDS_MAX_FACES, FACE_NOT_LARGEST, choose_faces, embed_chosen
from pipeline.types import DetectedFace
from tests.support.synthetic_faces import LinearEngine, make_face


def faces() -> list[DetectedFace]:
    """Four faces, not in size order: sizes 0.1, 0.4 (detector confidence 20: fails quality), 0.3, 0.2."""
    rng = np.random.default_rng(0)
    sizes = ((0.1, 99.0), (0.4, 20.0), (0.3, 99.0), (0.2, 99.0))
    return [make_face(rng.normal(size=16), size=s, confidence=c) for s, c in sizes]


def test_largest_first_quality_then_max_faces() -> None:
    engine = LinearEngine()
    choices = choose_faces(engine, faces(), "AUTO", 2)
    assert [c.face.bounding_box.width for c in choices] == [0.4, 0.3, 0.2, 0.1]
    assert [c.reasons for c in choices] == [("LOW_CONFIDENCE",), (), (), (EXCEEDS_MAX_FACES,)]
    searched = choose_faces(engine, faces(), "AUTO", 1, FACE_NOT_LARGEST)
    assert [c.reasons for c in searched] == [
        ("LOW_CONFIDENCE",),
        (),
        (FACE_NOT_LARGEST,),
        (FACE_NOT_LARGEST,),
    ]
    assert all(c.chosen for c in choose_faces(engine, faces(), "NONE", None))


def test_embed_choice_names_exactly_the_faces_chosen() -> None:
    engine = LinearEngine()
    found = faces()
    for level, limit in (("AUTO", 2), ("AUTO", 1), ("NONE", None), ("HIGH", 3)):
        picked = sorted(embed_chosen(engine, level, limit)(found))
        chosen = [c.face for c in choose_faces(engine, found, level, limit) if c.chosen]
        assert sorted(found.index(face) for face in chosen) == picked


def test_a_chosen_face_without_embedding_is_low_quality_and_keeps_its_place() -> None:
    engine = LinearEngine()
    found = faces()
    unembedded = DetectedFace(
        found[2].bounding_box, found[2].landmarks, found[2].pose, found[2].quality, 99.0
    )
    found[2] = unembedded
    reasons = [c.reasons for c in choose_faces(engine, found, "AUTO", 2)]
    assert reasons == [("LOW_CONFIDENCE",), ("LOW_FACE_QUALITY",), (), (EXCEEDS_MAX_FACES,)]
