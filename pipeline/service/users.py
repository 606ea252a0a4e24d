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

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConflictException, ServiceQuotaExceededException
from pipeline.service.common import decode_token, encode_token, idempotent_write, operation, user_status
from pipeline.store import CollectionRow, Tx

if TYPE_CHECKING:
    from pipeline.service import FacePipe

MAX_FACES_PER_USER = 100
DEFAULT_USER_MATCH_THRESHOLD = 75.0
DEFAULT_LIST_USERS = 500


@operation("CreateUser")
def create_user(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Create a user without faces (UserStatus CREATED); ConflictException if it exists."""

    def work(tx: Tx, coll: CollectionRow) -> dict[str, Any]:
        if tx.find_user(coll, params["UserId"]) is not None:
            raise ConflictException(
                f"The user id: {params['UserId']} already exists in collection {coll.name}"
            )
        tx.insert_user(coll, params["UserId"])
        return {}

    return idempotent_write(fp, "CreateUser", params, work)


@operation("DeleteUser")
def delete_user(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Disassociate the user's faces (they stay in the collection) and delete the user."""

    def work(tx: Tx, coll: CollectionRow) -> dict[str, Any]:
        tx.user(coll, params["UserId"])
        tx.delete_user(coll, params["UserId"])
        return {}

    return idempotent_write(fp, "DeleteUser", params, work)


@operation("ListUsers")
def list_users(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Users in UserId order with their status; MaxResults (default 500) at a time."""
    limit = params.get("MaxResults") or DEFAULT_LIST_USERS
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
        after = None
        if params.get("NextToken"):
            after = str(decode_token(params["NextToken"], "ListUsers", coll.id))
        rows = tx.list_users(coll, after, limit + 1)
    page = rows[:limit]
    out: dict[str, Any] = {
        "Users": [{"UserId": u.user_id, "UserStatus": user_status(u.face_count)} for u in page]
    }
    if len(rows) > limit:
        out["NextToken"] = encode_token("ListUsers", coll.id, page[-1].user_id)
    return out


@operation("AssociateFaces")
def associate_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Associate faces with a user when they match the user's faces (see the module docstring)."""
    user_id = params["UserId"]
    threshold = float(params.get("UserMatchThreshold", DEFAULT_USER_MATCH_THRESHOLD))
    requested = list(dict.fromkeys(params["FaceIds"]))
    engine = fp.engine

    def work(tx: Tx, coll: CollectionRow) -> dict[str, Any]:
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
        failures: dict[str, dict[str, Any]] = {}
        candidates: list[str] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                failures[face_id] = {"FaceId": face_id, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]}
                continue
            if row.user_id == user_id:
                continue
            reasons = []
            if row.user_id is not None:
                reasons.append("ASSOCIATED_TO_A_DIFFERENT_USER")
            if face_id in confidences and confidences[face_id] < threshold:
                reasons.append("LOW_MATCH_CONFIDENCE")
            if reasons:
                failures[face_id] = _failure(face_id, user_id, reasons, confidences.get(face_id))
            else:
                candidates.append(face_id)
        room = MAX_FACES_PER_USER - user.face_count
        if len(candidates) > room:
            ranked = sorted(candidates, key=lambda f: -confidences.get(f, 100.0))
            for face_id in ranked[room:]:
                failures[face_id] = _failure(
                    face_id, user_id, ["LOW_MATCH_CONFIDENCE"], confidences.get(face_id)
                )
            keep = set(ranked[:room])
            candidates = [f for f in candidates if f in keep]
        tx.set_face_user(coll, [found[f].label for f in candidates], user_id)
        count = tx.refresh_user(coll, user_id) if candidates else user.face_count
        response = {
            "AssociatedFaces": [{"FaceId": f} for f in candidates],
            "UnsuccessfulFaceAssociations": [failures[f] for f in requested if f in failures],
            "UserStatus": user_status(count),
        }
        return response

    return idempotent_write(fp, "AssociateFaces", params, work)


def _failure(face_id: str, user_id: str, reasons: list[str], confidence: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"FaceId": face_id, "UserId": user_id}
    if confidence is not None:
        out["Confidence"] = confidence
    out["Reasons"] = reasons
    return out


@operation("DisassociateFaces")
def disassociate_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Remove faces from a user. Faces of other users are ASSOCIATED_TO_A_DIFFERENT_USER; unknown
    ids are FACE_NOT_FOUND; faces of the collection that belong to no user are ignored."""
    user_id = params["UserId"]
    requested = list(dict.fromkeys(params["FaceIds"]))

    def work(tx: Tx, coll: CollectionRow) -> dict[str, Any]:
        user = tx.user(coll, user_id)
        found = tx.faces_by_id(coll, requested)
        done: list[str] = []
        failures: list[dict[str, Any]] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                failures.append({"FaceId": face_id, "UserId": user_id, "Reasons": ["FACE_NOT_FOUND"]})
            elif row.user_id == user_id:
                done.append(face_id)
            elif row.user_id is not None:
                failures.append(
                    {"FaceId": face_id, "UserId": user_id, "Reasons": ["ASSOCIATED_TO_A_DIFFERENT_USER"]}
                )
        tx.set_face_user(coll, [found[f].label for f in done], None)
        count = tx.refresh_user(coll, user_id) if done else user.face_count
        response = {
            "DisassociatedFaces": [{"FaceId": f} for f in done],
            "UnsuccessfulFaceDisassociations": failures,
            "UserStatus": user_status(count),
        }
        return response

    return idempotent_write(fp, "DisassociateFaces", params, work)
