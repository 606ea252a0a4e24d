"""Small helpers over the service that jobs use: pagination, chunked deletes, collection identity.

The typed ones (:func:`stored_faces`, :func:`delete_faces`, :func:`collection_incarnation`) call
the service's cores on a FacePipe; :func:`iter_faces` and :func:`iter_user_ids` need only a
:class:`Service` (anything with FacePipe's ``call``) and yield what ListFaces and ListUsers return.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.service import collections as collection_cores
from pipeline.service import faces as face_cores
from pipeline.service.results import Face

if TYPE_CHECKING:
    from pipeline.service import FacePipe

MAX_DELETE_FACES = 4096
"""Most FaceIds deleted in one store transaction (DeleteFaces' limit)."""

PAGE_SIZE = 4096
"""ListFaces page size (its maximum)."""

USER_PAGE_SIZE = 500
"""ListUsers page size (its maximum)."""


class Service(Protocol):
    """What jobs need from pipeline.service.FacePipe: one operation call, boto3-shaped."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


def stored_faces(fp: FacePipe, collection_id: str) -> Iterator[Face]:
    """Every face of the collection in indexing order, page by page (ResourceNotFoundException
    when the collection does not exist)."""
    token: str | None = None
    while True:
        page = face_cores.list_faces(fp, collection_id, limit=PAGE_SIZE, next_token=token)
        yield from page.faces
        token = page.next_token
        if token is None:
            return


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


def delete_faces(fp: FacePipe, collection_id: str, face_ids: Iterable[str]) -> list[str]:
    """Delete ``face_ids`` (MAX_DELETE_FACES per transaction); returns the FaceIds really deleted.

    FaceIds that no longer exist are ignored, so deleting twice is harmless; faces associated with
    a user are kept (DeleteFaces refuses them).
    """
    unique = sorted(set(face_ids))
    deleted: list[str] = []
    for start in range(0, len(unique), MAX_DELETE_FACES):
        deleted += face_cores.delete_faces(
            fp, collection_id, unique[start : start + MAX_DELETE_FACES]
        ).deleted
    return deleted


def collection_incarnation(fp: FacePipe, collection_id: str) -> str:
    """A string that changes when the collection is deleted and created again (its ARN and
    creation time, ISO 8601 in UTC). Raises ResourceNotFoundException when it does not exist."""
    coll = collection_cores.describe_collection(fp, collection_id)
    created = datetime.fromtimestamp(coll.created_at, tz=timezone.utc)
    return f"{coll.arn}@{created.isoformat()}"
