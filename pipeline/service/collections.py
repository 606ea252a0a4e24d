"""CreateCollection, DescribeCollection, ListCollections, DeleteCollection: cores and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.service import responses
from pipeline.service.common import operation
from pipeline.service.pagination import Paginator
from pipeline.service.results import CollectionPage
from pipeline.store import CollectionRow

if TYPE_CHECKING:
    from pipeline.service import FacePipe

ARN_PREFIX = "arn:aws:rekognition:local:000000000000:collection/"
"""Collection ARNs are ``ARN_PREFIX + CollectionId`` (region "local", account 000000000000)."""

DEFAULT_LIST_COLLECTIONS = 1000
"""ListCollections' page size when MaxResults is not given."""

ACCOUNT_SCOPE = 0
"""The pagination scope of ListCollections (collection ids are positive)."""


# cores ------------------------------------------------------------------------------------------
def create_collection(fp: FacePipe, collection_id: str, tags: dict[str, str] | None = None) -> CollectionRow:
    """Create an empty collection bound to the engine's model version and vector size;
    ResourceAlreadyExistsException when the name is taken."""
    engine = fp.engine
    with fp.store.write() as tx:
        return tx.insert_collection(
            collection_id, ARN_PREFIX + collection_id, engine.model_version, engine.embedding_dim, tags or {}
        )


def describe_collection(fp: FacePipe, collection_id: str) -> CollectionRow:
    """The collection (face and user counts, model version, ARN, creation time in Unix seconds)."""
    with fp.store.read() as tx:
        return tx.collection(collection_id)


def list_collections(
    fp: FacePipe, *, limit: int = DEFAULT_LIST_COLLECTIONS, next_token: str | None = None
) -> CollectionPage:
    """Up to ``limit`` collections in CollectionId order, after the page ``next_token`` ended."""
    pages = Paginator("ListCollections", ACCOUNT_SCOPE, str)
    after = pages.resume(next_token)
    with fp.store.read() as tx:
        rows = tx.list_collections(after, limit + 1)
    page, token = pages.page(rows, limit, key=lambda row: row.name)
    return CollectionPage([c.name for c in page], [c.model_version for c in page], token)


def delete_collection(fp: FacePipe, collection_id: str) -> None:
    """Delete a collection with all its faces and users (erased from disk and memory on return)."""
    with fp.store.write() as tx:
        tx.delete_collection(tx.collection(collection_id))


# operations -------------------------------------------------------------------------------------
@operation("CreateCollection")
def create_collection_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Create an empty collection bound to the engine's model version and vector size."""
    coll = create_collection(fp, params["CollectionId"], params.get("Tags"))
    return responses.created_collection_to_api(coll)


@operation("DescribeCollection")
def describe_collection_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Face and user counts, model version, ARN and creation time of a collection."""
    return responses.described_collection_to_api(describe_collection(fp, params["CollectionId"]))


@operation("ListCollections")
def list_collections_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Collection ids in name order, MaxResults (default 1000) at a time."""
    page = list_collections(
        fp, limit=params.get("MaxResults") or DEFAULT_LIST_COLLECTIONS, next_token=params.get("NextToken")
    )
    return responses.collection_page_to_api(page)


@operation("DeleteCollection")
def delete_collection_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a collection with all its faces and users (erased from disk and memory on return)."""
    delete_collection(fp, params["CollectionId"])
    return {"StatusCode": 200}
