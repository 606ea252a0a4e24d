"""SearchFaces, SearchFacesByImage, SearchUsers, SearchUsersByImage.

Similarity is engine.similarity(cosine), 0-100. Thresholds are turned into cosines with
engine.cosine_at and applied in the index. A user's vector is the centroid (normalised mean) of
its faces; users without faces are never matched. SearchFaces never returns the searched face
itself, and SearchUsers by UserId never returns the searched user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InvalidParameterException, ResourceNotFoundException
from pipeline.service.analysis import face_detail
from pipeline.service.common import face_to_api, operation, user_status
from pipeline.service.images import decoded_image
from pipeline.store import CollectionRow, Tx
from pipeline.types import DetectedFace

if TYPE_CHECKING:
    from pipeline.service import FacePipe

DEFAULT_FACE_MATCH_THRESHOLD = 80.0
DEFAULT_USER_MATCH_THRESHOLD = 80.0
DEFAULT_MAX_FACES = 4096
DEFAULT_MAX_USERS = 500


def _search_faces(
    fp: FacePipe, coll: CollectionRow, vector: np.ndarray, params: dict[str, Any], skip_label: int | None
) -> list[dict[str, Any]]:
    threshold = float(params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD))
    max_faces = int(params.get("MaxFaces", DEFAULT_MAX_FACES))
    min_cosine = float(fp.engine.cosine_at(threshold))
    hits = fp.store.search(coll, vector, max_faces + (skip_label is not None), min_cosine)
    hits = [(label, cosine) for label, cosine in hits if label != skip_label][:max_faces]
    with fp.store.read() as tx:
        rows = tx.faces_by_label([label for label, _ in hits])
    matches = []
    for label, cosine in hits:
        row = rows.get(label)
        similarity = float(fp.engine.similarity(cosine))
        if row is not None and similarity >= threshold:
            matches.append({"Similarity": similarity, "Face": face_to_api(row, coll.model_version)})
    return matches


def _largest_usable_face(
    fp: FacePipe, faces: list[DetectedFace], level: str
) -> tuple[DetectedFace | None, list[dict[str, Any]]]:
    """The largest face passing the quality filter, and the UnsearchedFaces entries of the others."""
    searched: DetectedFace | None = None
    unsearched: list[dict[str, Any]] = []
    for face in sorted(faces, key=lambda f: f.area, reverse=True):
        reasons = [] if level == "NONE" else list(fp.engine.quality_reasons(face, level))
        if not reasons and searched is None and face.embedding is None:
            reasons = ["LOW_FACE_QUALITY"]
        if not reasons and searched is None:
            searched = face
            continue
        unsearched.append({"FaceDetails": face_detail(face), "Reasons": reasons or ["FACE_NOT_LARGEST"]})
    return searched, unsearched


def _image_faces(fp: FacePipe, params: dict[str, Any], level: str) -> list[DetectedFace]:
    """The image's 100 largest faces; only the largest that passes QualityFilter ``level`` is
    embedded (the only one searched)."""

    def largest_passing(faces: list[DetectedFace]) -> list[int]:
        for i in sorted(range(len(faces)), key=lambda i: faces[i].area, reverse=True):
            if level == "NONE" or not fp.engine.quality_reasons(faces[i], level):
                return [i]
        return []

    image = decoded_image(fp, params["Image"])
    return fp.engine.analyze(image, max_faces=100, embed=largest_passing)


def _stored_face(tx: Tx, coll: CollectionRow, face_id: str) -> tuple[int, np.ndarray]:
    """(label, vector) of a face of the collection; ResourceNotFoundException when it is not there."""
    found = tx.faces_by_id(coll, [face_id]).get(face_id)
    if found is None:
        raise ResourceNotFoundException(f"Face {face_id} does not exist in collection {coll.name}")
    return found.label, tx.face_vector(found.label)


@operation("SearchFaces")
def search_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of the collection that match a stored face (the face itself excluded)."""
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
        label, vector = _stored_face(tx, coll, params["FaceId"])
    return {
        "SearchedFaceId": params["FaceId"],
        "FaceMatches": _search_faces(fp, coll, vector, params, label),
        "FaceModelVersion": coll.model_version,
    }


def _searched_face(
    fp: FacePipe, params: dict[str, Any]
) -> tuple[CollectionRow, DetectedFace | None, list[dict[str, Any]]]:
    """For the ByImage searches: the collection (checked first), the largest face of the image that
    passes QualityFilter (default NONE; None when there is none) and the faces left unsearched."""
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
    level = str(params.get("QualityFilter", "NONE")).upper()
    face, unsearched = _largest_usable_face(fp, _image_faces(fp, params, level), level)
    return coll, face, unsearched


@operation("SearchFacesByImage")
def search_faces_by_image(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of the collection that match the largest face of an image."""
    coll, face, _ = _searched_face(fp, params)
    if face is None or face.embedding is None:
        raise InvalidParameterException("There are no faces in the image. Should be at least 1.")
    return {
        "SearchedFaceBoundingBox": face.bounding_box.to_api(),
        "SearchedFaceConfidence": face.confidence,
        "FaceMatches": _search_faces(fp, coll, face.embedding, params, None),
        "FaceModelVersion": coll.model_version,
    }


def _user_matches(
    fp: FacePipe, coll: CollectionRow, vector: np.ndarray, params: dict[str, Any], exclude: str | None
) -> list[dict[str, Any]]:
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_MATCH_THRESHOLD))
    limit = int(params.get("MaxUsers", DEFAULT_MAX_USERS))
    min_cosine = float(fp.engine.cosine_at(threshold))
    hits = fp.store.match_users(coll, vector, min_cosine, limit, exclude)
    matches = []
    for hit in hits:
        similarity = float(fp.engine.similarity(hit.cosine))
        if similarity >= threshold:
            matches.append(
                {
                    "Similarity": similarity,
                    "User": {"UserId": hit.user_id, "UserStatus": user_status(hit.face_count)},
                }
            )
    return matches


@operation("SearchUsers")
def search_users(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users whose centroid matches a stored face (FaceId) or another user's centroid (UserId)."""
    if (params.get("FaceId") is None) == (params.get("UserId") is None):
        raise InvalidParameterException("SearchUsers needs exactly one of FaceId and UserId")
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
        if params.get("FaceId") is not None:
            face_id = params["FaceId"]
            _, vector = _stored_face(tx, coll, face_id)
            exclude = None
            searched: dict[str, Any] = {"SearchedFace": {"FaceId": face_id}}
        else:
            user_id = params["UserId"]
            tx.user(coll, user_id)
            centroid = tx.user_centroid(coll, user_id)
            exclude = user_id
            searched = {"SearchedUser": {"UserId": user_id}}
            if centroid is None:
                return {"UserMatches": [], "FaceModelVersion": coll.model_version, **searched}
            vector = centroid
    return {
        "UserMatches": _user_matches(fp, coll, vector, params, exclude),
        "FaceModelVersion": coll.model_version,
        **searched,
    }


@operation("SearchUsersByImage")
def search_users_by_image(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users matching the largest usable face of an image; no usable face gives no matches."""
    coll, face, unsearched = _searched_face(fp, params)
    out: dict[str, Any] = {"UserMatches": [], "FaceModelVersion": coll.model_version}
    if face is not None and face.embedding is not None:
        out["UserMatches"] = _user_matches(fp, coll, face.embedding, params, None)
        out["SearchedFace"] = {"FaceDetail": face_detail(face)}
    out["UnsearchedFaces"] = unsearched
    return out
