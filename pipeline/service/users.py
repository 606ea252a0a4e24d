"""CreateUser, DeleteUser, ListUsers, AssociateFaces, DisassociateFaces.

AssociateFaces compares each candidate face with the centroid (normalised mean) of the user's
faces before the call, as the store keeps it (refreshed by every change of the user's faces):
Confidence = engine.similarity(cosine). A user holds at most MAX_FACES_PER_USER faces. When a
call would pass the limit, the candidates that pass the threshold are taken in order of
decreasing Confidence until the user is full; the others are returned in
UnsuccessfulFaceAssociations with reason LOW_MATCH_CONFIDENCE and their Confidence (the model
has no reason code for the limit; they are the lowest-confidence candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConflictException, ServiceQuotaExceededException
from pipeline.service import responses
from pipeline.service.common import check_threshold, engine_for, idempotent_write, operation
from pipeline.service.pagination import Paginator
from pipeline.service.results import AssociationResult, FaceFailure, User, UserPage, user_status
from pipeline.store import CollectionRow, Tx

if TYPE_CHECKING:
    from pipeline.service import FacePipe

MAX_FACES_PER_USER = 100
"""Faces one user may hold (Rekognition's limit)."""

ASSOCIATE_FACES_MATCH_THRESHOLD = 75.0
"""AssociateFaces' default UserMatchThreshold (Confidence, 0-100); the user searches have their own
(pipeline.service.search.SEARCH_USERS_MATCH_THRESHOLD)."""

DEFAULT_LIST_USERS = 500
"""ListUsers' page size when MaxResults is not given."""


def _request(collection_id: str, user_id: str, **members: Any) -> dict[str, Any]:
    """The request as the operation takes it (what a repeated ClientRequestToken is compared
    with); members given as None are left out, as a request without them."""
    given = {name: value for name, value in members.items() if value is not None}
    return {"CollectionId": collection_id, "UserId": user_id, **given}


# cores ------------------------------------------------------------------------------------------
def create_user(
    fp: FacePipe, collection_id: str, user_id: str, *, client_request_token: str | None = None
) -> None:
    """Create a user without faces (UserStatus CREATED); ConflictException if it exists."""

    def work(tx: Tx, coll: CollectionRow) -> None:
        if tx.find_user(coll, user_id) is not None:
            raise ConflictException(f"The user id: {user_id} already exists in collection {coll.name}")
        tx.insert_user(coll, user_id)

    request = _request(collection_id, user_id)
    idempotent_write(
        fp,
        "CreateUser",
        request,
        client_request_token,
        work,
        responses.empty_to_api,
        responses.empty_from_api,
    )


def delete_user(
    fp: FacePipe, collection_id: str, user_id: str, *, client_request_token: str | None = None
) -> None:
    """Disassociate the user's faces (they stay in the collection) and delete the user."""

    def work(tx: Tx, coll: CollectionRow) -> None:
        tx.user(coll, user_id)
        tx.delete_user(coll, user_id)

    request = _request(collection_id, user_id)
    idempotent_write(
        fp,
        "DeleteUser",
        request,
        client_request_token,
        work,
        responses.empty_to_api,
        responses.empty_from_api,
    )


def list_users(
    fp: FacePipe, collection_id: str, *, limit: int = DEFAULT_LIST_USERS, next_token: str | None = None
) -> UserPage:
    """Up to ``limit`` users in UserId order, after the page ``next_token`` ended."""
    with fp.store.read() as tx:
        coll = tx.collection(collection_id)
        pages = Paginator("ListUsers", coll.id, str)
        rows = tx.list_users(coll, pages.resume(next_token), limit + 1)
    page, token = pages.page(rows, limit, key=lambda row: row.user_id)
    return UserPage([User.of(row) for row in page], token)


def associate(
    fp: FacePipe,
    collection_id: str,
    user_id: str,
    face_ids: Sequence[str],
    threshold: float | None = None,
    *,
    client_request_token: str | None = None,
) -> AssociationResult:
    """Associate faces with a user when they match the user's faces (see the module docstring).

    ``threshold``: UserMatchThreshold, 0-100 (None: ASSOCIATE_FACES_MATCH_THRESHOLD). Repeated
    FaceIds count once. ``client_request_token``: the call is done once per token (a repeat gets
    the first call's result; another request with it is IdempotentParameterMismatchException).
    """
    bar = (
        ASSOCIATE_FACES_MATCH_THRESHOLD
        if threshold is None
        else check_threshold(threshold, "UserMatchThreshold")
    )
    requested = list(dict.fromkeys(face_ids))
    fp.engine  # noqa: B018 - loaded before the write transaction, not while holding it

    def work(tx: Tx, coll: CollectionRow) -> AssociationResult:
        engine = engine_for(fp, coll)
        user = tx.user(coll, user_id)
        if user.face_count >= MAX_FACES_PER_USER:
            raise ServiceQuotaExceededException(
                f"User {user_id} already has {user.face_count} faces, the most a user may have"
            )
        centroid = tx.user_centroid(coll, user_id)
        found = tx.faces_by_id(coll, requested)
        confidences: dict[str, float] = {}
        others = {face_id: row.label for face_id, row in found.items() if row.user_id != user_id}
        if centroid is not None and others:
            vectors = tx.face_vectors(list(others.values()))
            for face_id, label in others.items():
                cosine = float(np.dot(vectors[label], centroid))
                confidences[face_id] = float(engine.similarity(cosine))
        failures: dict[str, FaceFailure] = {}
        candidates: list[str] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                failures[face_id] = FaceFailure(face_id, ("FACE_NOT_FOUND",), user_id)
                continue
            if row.user_id == user_id:
                continue
            reasons = []
            if row.user_id is not None:
                reasons.append("ASSOCIATED_TO_A_DIFFERENT_USER")
            if face_id in confidences and confidences[face_id] < bar:
                reasons.append("LOW_MATCH_CONFIDENCE")
            if reasons:
                failures[face_id] = FaceFailure(face_id, tuple(reasons), user_id, confidences.get(face_id))
            else:
                candidates.append(face_id)
        room = MAX_FACES_PER_USER - user.face_count
        if len(candidates) > room:
            ranked = sorted(candidates, key=lambda f: -confidences.get(f, 100.0))
            for face_id in ranked[room:]:
                failures[face_id] = FaceFailure(
                    face_id, ("LOW_MATCH_CONFIDENCE",), user_id, confidences.get(face_id)
                )
            keep = set(ranked[:room])
            candidates = [f for f in candidates if f in keep]
        tx.set_face_user(coll, [found[f].label for f in candidates], user_id)
        count = tx.refresh_user(coll, user_id) if candidates else user.face_count
        unsuccessful = [failures[f] for f in requested if f in failures]
        return AssociationResult(candidates, unsuccessful, user_status(count))

    request = _request(collection_id, user_id, FaceIds=face_ids, UserMatchThreshold=threshold)
    return idempotent_write(
        fp,
        "AssociateFaces",
        request,
        client_request_token,
        work,
        responses.association_to_api,
        responses.association_from_api,
    )


def disassociate(
    fp: FacePipe,
    collection_id: str,
    user_id: str,
    face_ids: Sequence[str],
    *,
    client_request_token: str | None = None,
) -> AssociationResult:
    """Remove faces from a user. Faces of other users are ASSOCIATED_TO_A_DIFFERENT_USER; unknown
    ids are FACE_NOT_FOUND; faces of the collection that belong to no user are ignored."""
    requested = list(dict.fromkeys(face_ids))

    def work(tx: Tx, coll: CollectionRow) -> AssociationResult:
        user = tx.user(coll, user_id)
        found = tx.faces_by_id(coll, requested)
        done: list[str] = []
        failures: list[FaceFailure] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                failures.append(FaceFailure(face_id, ("FACE_NOT_FOUND",), user_id))
            elif row.user_id == user_id:
                done.append(face_id)
            elif row.user_id is not None:
                failures.append(FaceFailure(face_id, ("ASSOCIATED_TO_A_DIFFERENT_USER",), user_id))
        tx.set_face_user(coll, [found[f].label for f in done], None)
        count = tx.refresh_user(coll, user_id) if done else user.face_count
        return AssociationResult(done, failures, user_status(count))

    request = _request(collection_id, user_id, FaceIds=face_ids)
    return idempotent_write(
        fp,
        "DisassociateFaces",
        request,
        client_request_token,
        work,
        responses.disassociation_to_api,
        responses.disassociation_from_api,
    )


# operations -------------------------------------------------------------------------------------
@operation("CreateUser")
def create_user_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Create a user without faces (UserStatus CREATED); ConflictException if it exists."""
    create_user(
        fp, params["CollectionId"], params["UserId"], client_request_token=params.get("ClientRequestToken")
    )
    return {}


@operation("DeleteUser")
def delete_user_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Disassociate the user's faces (they stay in the collection) and delete the user."""
    delete_user(
        fp, params["CollectionId"], params["UserId"], client_request_token=params.get("ClientRequestToken")
    )
    return {}


@operation("ListUsers")
def list_users_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users in UserId order with their status; MaxResults (default 500) at a time."""
    page = list_users(
        fp,
        params["CollectionId"],
        limit=params.get("MaxResults") or DEFAULT_LIST_USERS,
        next_token=params.get("NextToken"),
    )
    return responses.user_page_to_api(page)


@operation("AssociateFaces")
def associate_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Associate faces with a user when they match the user's faces (see the module docstring)."""
    result = associate(
        fp,
        params["CollectionId"],
        params["UserId"],
        params["FaceIds"],
        params.get("UserMatchThreshold"),
        client_request_token=params.get("ClientRequestToken"),
    )
    return responses.association_to_api(result)


@operation("DisassociateFaces")
def disassociate_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Remove faces from a user (see :func:`disassociate`)."""
    result = disassociate(
        fp,
        params["CollectionId"],
        params["UserId"],
        params["FaceIds"],
        client_request_token=params.get("ClientRequestToken"),
    )
    return responses.disassociation_to_api(result)
