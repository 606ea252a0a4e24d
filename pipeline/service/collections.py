"""CreateCollection, DescribeCollection, ListCollections, DeleteCollection."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pipeline.service.common import decode_token, encode_token, operation

if TYPE_CHECKING:
    from pipeline.service import FacePipe

ARN_PREFIX = "arn:aws:rekognition:local:000000000000:collection/"
"""Collection ARNs are ``ARN_PREFIX + CollectionId`` (region "local", account 000000000000)."""

DEFAULT_LIST_COLLECTIONS = 1000


@operation("CreateCollection")
def create_collection(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Create an empty collection bound to the engine's model version and vector size."""
    name = params["CollectionId"]
    engine = fp.engine
    with fp.store.write() as tx:
        coll = tx.insert_collection(
            name, ARN_PREFIX + name, engine.model_version, engine.embedding_dim, params.get("Tags") or {}
        )
    return {"StatusCode": 200, "CollectionArn": coll.arn, "FaceModelVersion": coll.model_version}


@operation("DescribeCollection")
def describe_collection(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Face and user counts, model version, ARN and creation time of a collection."""
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
    return {
        "FaceCount": coll.face_count,
        "FaceModelVersion": coll.model_version,
        "CollectionARN": coll.arn,
        "CreationTimestamp": datetime.fromtimestamp(coll.created_at, tz=timezone.utc),
        "UserCount": coll.user_count,
    }


@operation("ListCollections")
def list_collections(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Collection ids in name order, MaxResults (default 1000) at a time."""
    limit = params.get("MaxResults") or DEFAULT_LIST_COLLECTIONS
    after = None
    if params.get("NextToken"):
        after = str(decode_token(params["NextToken"], "ListCollections", 0))
    with fp.store.read() as tx:
        rows = tx.list_collections(after, limit + 1)
    page = rows[:limit]
    out: dict[str, Any] = {
        "CollectionIds": [c.name for c in page],
        "FaceModelVersions": [c.model_version for c in page],
    }
    if len(rows) > limit:
        out["NextToken"] = encode_token("ListCollections", 0, page[-1].name)
    return out


@operation("DeleteCollection")
def delete_collection(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Delete a collection with all its faces and users (erased from disk and memory on return)."""
    with fp.store.write() as tx:
        tx.delete_collection(tx.collection(params["CollectionId"]))
    return {"StatusCode": 200}
