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
from pipeline.service import responses
from pipeline.service.common import check_threshold, engine_for, operation
from pipeline.service.images import decoded_image
from pipeline.service.results import Face, FaceMatch, FaceSearch, User, UserMatch, UserSearch
from pipeline.service.selection import FACE_NOT_LARGEST, FaceChoice, choose_faces, embed_chosen
from pipeline.store import CollectionRow, Tx
from pipeline.types import MAX_FACES_PER_IMAGE, DetectedFace

if TYPE_CHECKING:
    from pipeline.service import FacePipe

DEFAULT_FACE_MATCH_THRESHOLD = 80.0
"""SearchFaces' and SearchFacesByImage's default FaceMatchThreshold (Similarity, 0-100)."""

SEARCH_USERS_MATCH_THRESHOLD = 80.0
"""SearchUsers' and SearchUsersByImage's default UserMatchThreshold (Similarity, 0-100); AssociateFaces
has its own (pipeline.service.users.ASSOCIATE_FACES_MATCH_THRESHOLD)."""

DEFAULT_MAX_FACES = 4096
"""SearchFaces' default MaxFaces (its maximum)."""

DEFAULT_MAX_USERS = 500
"""SearchUsers' default MaxUsers (its maximum)."""

DEFAULT_SEARCH_QUALITY_FILTER = "NONE"
"""The ByImage searches' default QualityFilter."""


def _face_matches(
    fp: FacePipe,
    coll: CollectionRow,
    vector: np.ndarray,
    threshold: float,
    max_faces: int,
    skip_label: int | None,
) -> list[FaceMatch]:
    """Faces of ``coll`` with Similarity >= ``threshold`` to ``vector``, best first, at most
    ``max_faces``, the face labelled ``skip_label`` left out."""
    threshold = check_threshold(threshold, "FaceMatchThreshold")
    engine = engine_for(fp, coll)
    min_cosine = float(engine.cosine_at(threshold))
    hits = fp.store.search(coll, vector, max_faces + (skip_label is not None), min_cosine)
    hits = [(label, cosine) for label, cosine in hits if label != skip_label][:max_faces]
    with fp.store.read() as tx:
        rows = tx.faces_by_label([label for label, _ in hits])
    matches = []
    for label, cosine in hits:
        row = rows.get(label)
        similarity = float(engine.similarity(cosine))
        if row is not None and similarity >= threshold:
            matches.append(FaceMatch(similarity, Face.of(row)))
    return matches


def _stored_face(tx: Tx, coll: CollectionRow, face_id: str) -> tuple[int, np.ndarray]:
    """(label, vector) of a face of the collection; ResourceNotFoundException when it is not there."""
    found = tx.faces_by_id(coll, [face_id]).get(face_id)
    if found is None:
        raise ResourceNotFoundException(f"Face {face_id} does not exist in collection {coll.name}")
    return found.label, tx.face_vector(found.label)


def _searched_face(
    fp: FacePipe, collection_id: str, image: dict[str, Any], quality_filter: str
) -> tuple[CollectionRow, DetectedFace | None, list[FaceChoice]]:
    """For the ByImage searches: the collection (checked first), the largest face of the image
    that passes ``quality_filter`` (None when there is none; only it is embedded) and the image's
    other faces with why they were not searched."""
    with fp.store.read() as tx:
        coll = tx.collection(collection_id)
    engine = engine_for(fp, coll)
    decoded = decoded_image(fp, image)
    faces = engine.analyze(
        decoded, max_faces=MAX_FACES_PER_IMAGE, embed=embed_chosen(engine, quality_filter, 1)
    )
    choices = choose_faces(engine, faces, quality_filter, 1, FACE_NOT_LARGEST)
    searched = next((c.face for c in choices if c.chosen), None)
    return coll, searched, [c for c in choices if not c.chosen]


def _user_matches(
    fp: FacePipe,
    coll: CollectionRow,
    vector: np.ndarray,
    threshold: float,
    max_users: int,
    exclude: str | None,
) -> list[UserMatch]:
    """Users of ``coll`` whose centroid has Similarity >= ``threshold`` to ``vector``, best first."""
    threshold = check_threshold(threshold, "UserMatchThreshold")
    engine = engine_for(fp, coll)
    min_cosine = float(engine.cosine_at(threshold))
    matches = []
    for hit in fp.store.match_users(coll, vector, min_cosine, max_users, exclude):
        similarity = float(engine.similarity(hit.cosine))
        if similarity >= threshold:
            matches.append(UserMatch(similarity, User(hit.user_id, hit.face_count)))
    return matches


# cores ------------------------------------------------------------------------------------------
def search_faces(
    fp: FacePipe,
    collection_id: str,
    face_id: str,
    threshold: float = DEFAULT_FACE_MATCH_THRESHOLD,
    max_faces: int = DEFAULT_MAX_FACES,
) -> FaceSearch:
    """Faces of the collection whose Similarity to the stored face ``face_id`` is at least
    ``threshold`` (0-100), best first, at most ``max_faces``, the face itself left out.
    ResourceNotFoundException for a missing collection or face."""
    with fp.store.read() as tx:
        coll = tx.collection(collection_id)
        label, vector = _stored_face(tx, coll, face_id)
    matches = _face_matches(fp, coll, vector, threshold, max_faces, label)
    return FaceSearch(matches, coll.model_version, searched_face_id=face_id)


def search_faces_by_image(
    fp: FacePipe,
    collection_id: str,
    image: dict[str, Any],
    threshold: float = DEFAULT_FACE_MATCH_THRESHOLD,
    max_faces: int = DEFAULT_MAX_FACES,
    quality_filter: str = DEFAULT_SEARCH_QUALITY_FILTER,
) -> FaceSearch:
    """Faces matching the largest face of ``image`` (an Image parameter: Bytes or S3Object) that
    passes ``quality_filter``; InvalidParameterException when the image has no such face."""
    coll, face, _ = _searched_face(fp, collection_id, image, quality_filter)
    if face is None or face.embedding is None:
        raise InvalidParameterException("There are no faces in the image. Should be at least 1.")
    matches = _face_matches(fp, coll, face.embedding, threshold, max_faces, None)
    return FaceSearch(matches, coll.model_version, searched=face)


def search_users(
    fp: FacePipe,
    collection_id: str,
    *,
    face_id: str | None = None,
    user_id: str | None = None,
    threshold: float = SEARCH_USERS_MATCH_THRESHOLD,
    max_users: int = DEFAULT_MAX_USERS,
) -> UserSearch:
    """Users whose centroid matches the stored face ``face_id`` or the centroid of ``user_id``
    (exactly one; that user is left out), Similarity at least ``threshold``, best first. A user
    without faces matches nothing."""
    if (face_id is None) == (user_id is None):
        raise InvalidParameterException("SearchUsers needs exactly one of FaceId and UserId")
    with fp.store.read() as tx:
        coll = tx.collection(collection_id)
        if face_id is not None:
            _, vector = _stored_face(tx, coll, face_id)
        else:
            assert user_id is not None
            tx.user(coll, user_id)
            centroid = tx.user_centroid(coll, user_id)
            if centroid is None:
                return UserSearch([], coll.model_version, searched_user_id=user_id)
            vector = centroid
    matches = _user_matches(fp, coll, vector, threshold, max_users, user_id)
    return UserSearch(matches, coll.model_version, searched_face_id=face_id, searched_user_id=user_id)


def search_users_by_image(
    fp: FacePipe,
    collection_id: str,
    image: dict[str, Any],
    threshold: float = SEARCH_USERS_MATCH_THRESHOLD,
    max_users: int = DEFAULT_MAX_USERS,
    quality_filter: str = DEFAULT_SEARCH_QUALITY_FILTER,
) -> UserSearch:
    """Users matching the largest face of ``image`` that passes ``quality_filter``; an image
    without such a face gives no matches (``searched`` None)."""
    coll, face, unsearched = _searched_face(fp, collection_id, image, quality_filter)
    if face is None or face.embedding is None:
        return UserSearch([], coll.model_version, unsearched=unsearched)
    matches = _user_matches(fp, coll, face.embedding, threshold, max_users, None)
    return UserSearch(matches, coll.model_version, searched=face, unsearched=unsearched)


# operations -------------------------------------------------------------------------------------
@operation("SearchFaces")
def search_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of the collection that match a stored face (the face itself excluded)."""
    search = search_faces(
        fp,
        params["CollectionId"],
        params["FaceId"],
        float(params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD)),
        int(params.get("MaxFaces", DEFAULT_MAX_FACES)),
    )
    return responses.face_search_to_api(search)


@operation("SearchFacesByImage")
def search_faces_by_image_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of the collection that match the largest face of an image."""
    search = search_faces_by_image(
        fp,
        params["CollectionId"],
        params["Image"],
        float(params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD)),
        int(params.get("MaxFaces", DEFAULT_MAX_FACES)),
        str(params.get("QualityFilter", DEFAULT_SEARCH_QUALITY_FILTER)),
    )
    return responses.face_search_to_api(search)


@operation("SearchUsers")
def search_users_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users whose centroid matches a stored face (FaceId) or another user's centroid (UserId)."""
    search = search_users(
        fp,
        params["CollectionId"],
        face_id=params.get("FaceId"),
        user_id=params.get("UserId"),
        threshold=float(params.get("UserMatchThreshold", SEARCH_USERS_MATCH_THRESHOLD)),
        max_users=int(params.get("MaxUsers", DEFAULT_MAX_USERS)),
    )
    return responses.user_search_to_api(search)


@operation("SearchUsersByImage")
def search_users_by_image_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users matching the largest usable face of an image; no usable face gives no matches."""
    search = search_users_by_image(
        fp,
        params["CollectionId"],
        params["Image"],
        float(params.get("UserMatchThreshold", SEARCH_USERS_MATCH_THRESHOLD)),
        int(params.get("MaxUsers", DEFAULT_MAX_USERS)),
        str(params.get("QualityFilter", DEFAULT_SEARCH_QUALITY_FILTER)),
    )
    return responses.user_search_to_api(search)
