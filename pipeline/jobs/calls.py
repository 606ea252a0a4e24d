"""Small helpers over the service's operations that jobs use: pagination and chunked deletes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

MAX_DELETE_FACES = 4096
"""Most FaceIds one DeleteFaces call takes."""

PAGE_SIZE = 4096
"""ListFaces page size (its maximum)."""

USER_PAGE_SIZE = 500
"""ListUsers page size (its maximum)."""


class Service(Protocol):
    """What jobs need from pipeline.service.FacePipe: one operation call, boto3-shaped."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


def iter_faces(fp: Service, collection_id: str) -> Iterator[dict[str, Any]]:
    """Every face of the collection (ListFaces' Face records), page by page."""
    params: dict[str, Any] = {"CollectionId": collection_id, "MaxResults": PAGE_SIZE}
    while True:
        page = fp.call("ListFaces", params)
        yield from page.get("Faces", [])
        token = page.get("NextToken")
        if not token:
            return
        params = {**params, "NextToken": token}


def iter_user_ids(fp: Service, collection_id: str) -> Iterator[str]:
    """Every UserId of the collection, page by page."""
    params: dict[str, Any] = {"CollectionId": collection_id, "MaxResults": USER_PAGE_SIZE}
    while True:
        page = fp.call("ListUsers", params)
        for user in page.get("Users", []):
            yield str(user["UserId"])
        token = page.get("NextToken")
        if not token:
            return
        params = {**params, "NextToken": token}


def delete_faces(fp: Service, collection_id: str, face_ids: Iterable[str]) -> list[str]:
    """Delete ``face_ids`` (in chunks DeleteFaces accepts); returns the FaceIds really deleted.

    FaceIds that no longer exist are ignored, so deleting twice is harmless.
    """
    unique = sorted(set(face_ids))
    deleted: list[str] = []
    for start in range(0, len(unique), MAX_DELETE_FACES):
        chunk = unique[start : start + MAX_DELETE_FACES]
        response = fp.call("DeleteFaces", {"CollectionId": collection_id, "FaceIds": chunk})
        deleted.extend(response.get("DeletedFaces", []))
    return deleted


def collection_incarnation(fp: Service, collection_id: str) -> str:
    """A string that changes when the collection is deleted and created again (its creation time).

    Raises ResourceNotFoundException when the collection does not exist.
    """
    described = fp.call("DescribeCollection", {"CollectionId": collection_id})
    created: Any = described.get("CreationTimestamp")
    stamp = created.isoformat() if hasattr(created, "isoformat") else str(created)
    return f"{described.get('CollectionARN', '')}@{stamp}"
