"""The Rekognition response shapes, written in one place: the cores' results (pipeline.service.
results) as boto3 returns them, in botocore's member order. ``*_from_api`` reads a stored
response back (idempotent writes replay the response they stored)."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cache
from typing import Any

from pipeline.service.analysis import face_detail
from pipeline.service.results import (
    AssociationResult,
    CollectionPage,
    Face,
    FaceDeletion,
    FaceFailure,
    FacePage,
    FaceSearch,
    IndexedImage,
    User,
    UserPage,
    UserSearch,
)
from pipeline.store import CollectionRow


@cache
def _is_numeric_version(version: str) -> bool:
    """Whether a model version is Rekognition-style (digits and dots); once per version."""
    return bool(version) and all(ch.isdigit() or ch == "." for ch in version)


def face_to_api(face: Face, model_version: str) -> dict[str, Any]:
    """The Face shape of a stored face (IndexFacesModelVersion only for a numeric model version)."""
    out: dict[str, Any] = {
        "FaceId": face.face_id,
        "BoundingBox": face.bounding_box.to_api(),
        "ImageId": face.image_id,
    }
    if face.external_image_id is not None:
        out["ExternalImageId"] = face.external_image_id
    out["Confidence"] = face.confidence
    if _is_numeric_version(model_version):
        out["IndexFacesModelVersion"] = model_version
    if face.user_id is not None:
        out["UserId"] = face.user_id
    return out


def user_to_api(user: User) -> dict[str, Any]:
    """The User shape (UserId, UserStatus) of ListUsers and the user searches."""
    return {"UserId": user.user_id, "UserStatus": user.status}


def failure_to_api(failure: FaceFailure) -> dict[str, Any]:
    """An Unsuccessful{Deletion,Association,Disassociation} entry."""
    out: dict[str, Any] = {"FaceId": failure.face_id}
    if failure.user_id is not None:
        out["UserId"] = failure.user_id
    if failure.confidence is not None:
        out["Confidence"] = failure.confidence
    out["Reasons"] = list(failure.reasons)
    return out


def failure_from_api(entry: dict[str, Any]) -> FaceFailure:
    """A FaceFailure read back from :func:`failure_to_api`'s shape."""
    confidence = entry.get("Confidence")
    return FaceFailure(
        face_id=str(entry["FaceId"]),
        reasons=tuple(entry.get("Reasons", ())),
        user_id=entry.get("UserId"),
        confidence=None if confidence is None else float(confidence),
    )


# collections ------------------------------------------------------------------------------------
def created_collection_to_api(coll: CollectionRow) -> dict[str, Any]:
    """CreateCollection's response."""
    return {"StatusCode": 200, "CollectionArn": coll.arn, "FaceModelVersion": coll.model_version}


def described_collection_to_api(coll: CollectionRow) -> dict[str, Any]:
    """DescribeCollection's response (CreationTimestamp as a UTC datetime)."""
    return {
        "FaceCount": coll.face_count,
        "FaceModelVersion": coll.model_version,
        "CollectionARN": coll.arn,
        "CreationTimestamp": datetime.fromtimestamp(coll.created_at, tz=timezone.utc),
        "UserCount": coll.user_count,
    }


def collection_page_to_api(page: CollectionPage) -> dict[str, Any]:
    """ListCollections' response."""
    out: dict[str, Any] = {"CollectionIds": page.collection_ids, "FaceModelVersions": page.model_versions}
    if page.next_token is not None:
        out["NextToken"] = page.next_token
    return out


# faces ------------------------------------------------------------------------------------------
def indexed_image_to_api(image: IndexedImage) -> dict[str, Any]:
    """IndexFaces' response: FaceRecords (largest box first), FaceModelVersion, UnindexedFaces."""
    attributes = image.detection_attributes
    return {
        "FaceRecords": [
            {
                "Face": face_to_api(record.face, image.model_version),
                "FaceDetail": face_detail(record.detected, attributes),
            }
            for record in image.faces
        ],
        "FaceModelVersion": image.model_version,
        "UnindexedFaces": [
            {"Reasons": list(choice.reasons), "FaceDetail": face_detail(choice.face, attributes)}
            for choice in image.unindexed
        ],
    }


def face_page_to_api(page: FacePage) -> dict[str, Any]:
    """ListFaces' response."""
    out: dict[str, Any] = {
        "Faces": [face_to_api(face, page.model_version) for face in page.faces],
        "FaceModelVersion": page.model_version,
    }
    if page.next_token is not None:
        out["NextToken"] = page.next_token
    return out


def deletion_to_api(deletion: FaceDeletion) -> dict[str, Any]:
    """DeleteFaces' response."""
    return {
        "DeletedFaces": deletion.deleted,
        "UnsuccessfulFaceDeletions": [failure_to_api(f) for f in deletion.unsuccessful],
    }


# users ------------------------------------------------------------------------------------------
def user_page_to_api(page: UserPage) -> dict[str, Any]:
    """ListUsers' response."""
    out: dict[str, Any] = {"Users": [user_to_api(user) for user in page.users]}
    if page.next_token is not None:
        out["NextToken"] = page.next_token
    return out


def association_to_api(result: AssociationResult) -> dict[str, Any]:
    """AssociateFaces' response."""
    return {
        "AssociatedFaces": [{"FaceId": face_id} for face_id in result.associated],
        "UnsuccessfulFaceAssociations": [failure_to_api(f) for f in result.unsuccessful],
        "UserStatus": result.user_status,
    }


def association_from_api(response: dict[str, Any]) -> AssociationResult:
    """An AssociationResult read back from :func:`association_to_api`'s shape."""
    return AssociationResult(
        associated=[str(face["FaceId"]) for face in response.get("AssociatedFaces", [])],
        unsuccessful=[failure_from_api(f) for f in response.get("UnsuccessfulFaceAssociations", [])],
        user_status=str(response.get("UserStatus", "")),
    )


def disassociation_to_api(result: AssociationResult) -> dict[str, Any]:
    """DisassociateFaces' response."""
    return {
        "DisassociatedFaces": [{"FaceId": face_id} for face_id in result.associated],
        "UnsuccessfulFaceDisassociations": [failure_to_api(f) for f in result.unsuccessful],
        "UserStatus": result.user_status,
    }


def disassociation_from_api(response: dict[str, Any]) -> AssociationResult:
    """An AssociationResult read back from :func:`disassociation_to_api`'s shape."""
    return AssociationResult(
        associated=[str(face["FaceId"]) for face in response.get("DisassociatedFaces", [])],
        unsuccessful=[failure_from_api(f) for f in response.get("UnsuccessfulFaceDisassociations", [])],
        user_status=str(response.get("UserStatus", "")),
    )


def empty_to_api(_: None) -> dict[str, Any]:
    """The empty response of CreateUser and DeleteUser."""
    return {}


def empty_from_api(_: dict[str, Any]) -> None:
    """CreateUser's and DeleteUser's stored response carries nothing."""
    return None


# searches ---------------------------------------------------------------------------------------
def face_search_to_api(search: FaceSearch) -> dict[str, Any]:
    """SearchFaces' response (a stored face searched) or SearchFacesByImage's (an image's face)."""
    matches = [
        {"Similarity": match.similarity, "Face": face_to_api(match.face, search.model_version)}
        for match in search.matches
    ]
    if search.searched is not None:
        return {
            "SearchedFaceBoundingBox": search.searched.bounding_box.to_api(),
            "SearchedFaceConfidence": search.searched.confidence,
            "FaceMatches": matches,
            "FaceModelVersion": search.model_version,
        }
    return {
        "SearchedFaceId": search.searched_face_id,
        "FaceMatches": matches,
        "FaceModelVersion": search.model_version,
    }


def user_search_to_api(search: UserSearch) -> dict[str, Any]:
    """SearchUsers' response, or SearchUsersByImage's when ``search.unsearched`` is set."""
    out: dict[str, Any] = {
        "UserMatches": [
            {"Similarity": match.similarity, "User": user_to_api(match.user)} for match in search.matches
        ],
        "FaceModelVersion": search.model_version,
    }
    if search.searched_face_id is not None:
        out["SearchedFace"] = {"FaceId": search.searched_face_id}
    elif search.searched_user_id is not None:
        out["SearchedUser"] = {"UserId": search.searched_user_id}
    if search.unsearched is not None:
        if search.searched is not None:
            out["SearchedFace"] = {"FaceDetail": face_detail(search.searched)}
        out["UnsearchedFaces"] = [
            {"FaceDetails": face_detail(choice.face), "Reasons": list(choice.reasons)}
            for choice in search.unsearched
        ]
    return out
