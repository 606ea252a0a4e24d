"""IndexFaces, ListFaces, DeleteFaces: the cores (index_images, list_faces, delete_faces) and
their operation handlers.

Re-indexing: a face is not stored twice when the same image is indexed again with the same
ExternalImageId (an absent ExternalImageId counts as one value). A new face is a duplicate of a
stored face of the collection that has the same ExternalImageId, the same image size, the same
bounding box to within 1% of the image (the key below) and a cosine of at least
DUPLICATE_COSINE between their vectors; the stored face's record is returned instead.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InvalidParameterException
from pipeline.service import responses
from pipeline.service.analysis import check_attributes
from pipeline.service.common import engine_for, operation
from pipeline.service.images import decoded_image
from pipeline.service.pagination import Paginator
from pipeline.service.results import Face, FaceDeletion, FaceFailure, FacePage, IndexedFace, IndexedImage
from pipeline.service.selection import FaceChoice, choose_faces, embed_chosen
from pipeline.store import CollectionRow, FaceRow, NewFace, Tx
from pipeline.types import MAX_FACES_PER_IMAGE, DetectedFace

if TYPE_CHECKING:
    from pipeline.service import FacePipe

DUPLICATE_COSINE = 0.98
"""Two faces with the same de-duplication key are one face when their cosine is at least this."""

DEFAULT_LIST_FACES = 1000
"""ListFaces' page size when MaxResults is not given."""


@dataclass(frozen=True)
class AnalyzedImage:
    """One image ready to index: its faces from engine.analyze (largest first, with embeddings).

    width, height: the source image's size in pixels after EXIF orientation, before any reduced
    decoding (DecodedImage.source_width/source_height: part of the de-duplication key). max_faces: the most faces to index
    (None: all that pass the quality filter). quality_filter: NONE, AUTO, LOW, MEDIUM or HIGH.
    detection_attributes: as IndexFaces' DetectionAttributes (DEFAULT, ALL, ...; checked once, by
    :func:`index_images`): the FaceDetail of each face is analysis.face_detail's for these.
    """

    external_image_id: str | None
    width: int
    height: int
    faces: list[DetectedFace]
    max_faces: int | None = None
    quality_filter: str = "AUTO"
    detection_attributes: Sequence[str] = field(default=("DEFAULT",))


def dedup_key(external_image_id: str | None, width: int, height: int, face: DetectedFace) -> str:
    """The de-duplication key of a face: ExternalImageId, source image size (``width`` x ``height``
    pixels, upright, before reduced decoding) and box rounded to 0.01."""
    box = face.bounding_box
    parts = [external_image_id or "", f"{width}x{height}"]
    parts += [f"{round(v, 2):.2f}" for v in (box.left, box.top, box.width, box.height)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _plan(fp: FacePipe, item: AnalyzedImage) -> tuple[list[DetectedFace], list[FaceChoice]]:
    """Split an image's faces into those to index (largest first) and those left out."""
    choices = choose_faces(fp.engine, item.faces, item.quality_filter or "AUTO", item.max_faces)
    return [c.face for c in choices if c.chosen], [c for c in choices if not c.chosen]


def _index_one(
    tx: Tx, coll: CollectionRow, item: AnalyzedImage, to_index: list[DetectedFace]
) -> list[IndexedFace]:
    """Store the faces of one image (re-using duplicates), largest first."""
    pending: list[tuple[DetectedFace, str, FaceRow | None]] = []
    image_id: str | None = None
    for face in to_index:
        key = dedup_key(item.external_image_id, item.width, item.height, face)
        vector = np.asarray(face.embedding, dtype=np.float32)
        existing = None
        for row, stored in tx.faces_with_dedup_key(coll, key):
            if float(np.dot(stored, vector)) >= DUPLICATE_COSINE:
                existing = row
                image_id = image_id or row.image_id
                break
        pending.append((face, key, existing))
    image_id = image_id or str(uuid.uuid4())
    stored_faces: list[IndexedFace] = []
    for face, key, existing in pending:
        if existing is not None:
            stored_faces.append(IndexedFace(Face.of(existing), face))
            continue
        box = face.bounding_box
        new = NewFace(
            face_id=str(uuid.uuid4()),
            image_id=image_id,
            external_image_id=item.external_image_id,
            dedup_key=key,
            box_left=box.left,
            box_top=box.top,
            box_width=box.width,
            box_height=box.height,
            confidence=float(face.confidence),
            vector=np.asarray(face.embedding, dtype=np.float32),
        )
        tx.insert_face(coll, new)
        indexed = Face(new.face_id, image_id, new.external_image_id, box, new.confidence)
        stored_faces.append(IndexedFace(indexed, face))
    return stored_faces


def index_images(fp: FacePipe, collection_id: str, items: Sequence[AnalyzedImage]) -> list[IndexedImage]:
    """Index the faces of many analysed images in ONE store transaction; one result per item.

    Each image's faces are chosen by pipeline.service.selection (QualityFilter, then MaxFaces);
    a face already stored for the same image (see the module docstring) is returned, not stored
    again. Raises ResourceNotFoundException for a missing collection, InvalidParameterException
    for unknown DetectionAttributes, vectors of another size than the collection's or, when there
    are faces to store, an engine of another model (see common.engine_for).
    """
    attributes = [check_attributes(item.detection_attributes, "DetectionAttributes") for item in items]
    plans = [_plan(fp, item) for item in items]
    results: list[IndexedImage] = []
    with fp.store.write() as tx:
        coll = tx.collection(collection_id)
        for to_index, _ in plans:
            for face in to_index:
                if face.embedding is not None and len(face.embedding) != coll.dim:
                    raise InvalidParameterException(
                        f"Collection {coll.name} holds {coll.dim}-dimensional vectors of model"
                        f" {coll.model_version}; this engine makes {len(face.embedding)}-dimensional ones"
                    )
        if any(to_index for to_index, _ in plans):
            engine_for(fp, coll)  # another model's vectors of the same size cannot be compared with these
        for item, (to_index, unindexed), wanted in zip(items, plans, attributes, strict=True):
            stored = _index_one(tx, coll, item, to_index)
            results.append(IndexedImage(stored, unindexed, coll.model_version, wanted))
    return results


def index_analyzed_images(
    fp: FacePipe, collection_id: str, items: Sequence[AnalyzedImage]
) -> list[dict[str, Any]]:
    """:func:`index_images` with each result as an IndexFaces response."""
    return [responses.indexed_image_to_api(result) for result in index_images(fp, collection_id, items)]


def list_faces(
    fp: FacePipe,
    collection_id: str,
    *,
    user_id: str | None = None,
    face_ids: Sequence[str] | None = None,
    limit: int = DEFAULT_LIST_FACES,
    next_token: str | None = None,
) -> FacePage:
    """Up to ``limit`` faces in indexing order, optionally only those of ``user_id`` or among
    ``face_ids``, after the page ``next_token`` ended (a token of the same filters). Raises
    ResourceNotFoundException for a missing collection or user, InvalidPaginationTokenException."""
    filters = {"UserId": user_id, "FaceIds": None if face_ids is None else list(face_ids)}
    with fp.store.read() as tx:
        coll = tx.collection(collection_id)
        pages = Paginator("ListFaces", coll.id, int, filters)
        after = pages.resume(next_token)
        if user_id is not None:
            tx.user(coll, user_id)
        rows = tx.list_faces(coll, after or 0, limit + 1, user_id=user_id, face_ids=face_ids)
    page, token = pages.page(rows, limit, key=lambda row: row.label)
    return FacePage([Face.of(row) for row in page], coll.model_version, token)


def delete_faces(fp: FacePipe, collection_id: str, face_ids: Sequence[str]) -> FaceDeletion:
    """Delete faces; faces associated with a user are refused (ASSOCIATED_TO_AN_EXISTING_USER),
    unknown ones are FACE_NOT_FOUND. Repeated ids count once."""
    requested = list(dict.fromkeys(face_ids))
    with fp.store.write() as tx:
        coll = tx.collection(collection_id)
        found = tx.faces_by_id(coll, requested)
        deleted: list[str] = []
        unsuccessful: list[FaceFailure] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                unsuccessful.append(FaceFailure(face_id, ("FACE_NOT_FOUND",)))
            elif row.user_id is not None:
                unsuccessful.append(FaceFailure(face_id, ("ASSOCIATED_TO_AN_EXISTING_USER",), row.user_id))
            else:
                deleted.append(face_id)
        tx.delete_faces(coll, [found[f].label for f in deleted])
    return FaceDeletion(deleted, unsuccessful)


# operations -------------------------------------------------------------------------------------
@operation("IndexFaces")
def index_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Detect, check and embed the faces of one image and add them to the collection."""
    with fp.store.read() as tx:
        tx.collection(params["CollectionId"])  # ResourceNotFoundException before any image work
    image = decoded_image(fp, params["Image"])
    quality_filter, max_faces = params.get("QualityFilter", "AUTO"), params.get("MaxFaces")
    faces = fp.engine.analyze(  # embeds only the faces that will be indexed
        image, max_faces=MAX_FACES_PER_IMAGE, embed=embed_chosen(fp.engine, quality_filter, max_faces)
    )
    item = AnalyzedImage(
        external_image_id=params.get("ExternalImageId"),
        width=int(image.source_width),
        height=int(image.source_height),
        faces=faces,
        max_faces=max_faces,
        quality_filter=quality_filter,
        detection_attributes=params.get("DetectionAttributes") or (),
    )
    (result,) = index_images(fp, params["CollectionId"], [item])
    return responses.indexed_image_to_api(result)


@operation("ListFaces")
def list_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces in indexing order, optionally of one UserId or among FaceIds; MaxResults (default 1000)."""
    page = list_faces(
        fp,
        params["CollectionId"],
        user_id=params.get("UserId"),
        face_ids=params.get("FaceIds"),
        limit=params.get("MaxResults") or DEFAULT_LIST_FACES,
        next_token=params.get("NextToken"),
    )
    return responses.face_page_to_api(page)


@operation("DeleteFaces")
def delete_faces_operation(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Delete faces; faces associated with a user are refused (ASSOCIATED_TO_AN_EXISTING_USER)."""
    return responses.deletion_to_api(delete_faces(fp, params["CollectionId"], params["FaceIds"]))
