"""IndexFaces, ListFaces, DeleteFaces, and batch indexing of already analysed images.

Re-indexing: a face is not stored twice when the same image is indexed again with the same
ExternalImageId (an absent ExternalImageId counts as one value). A new face is a duplicate of a
stored face of the collection that has the same ExternalImageId, the same image size, the same
bounding box to within 1% of the image (the key below) and a cosine of at least
DUPLICATE_COSINE between their vectors; the stored face's record is returned instead.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import InvalidPaginationTokenException, InvalidParameterException
from pipeline.service.analysis import check_attributes, face_detail
from pipeline.service.common import EmbedChoice, decode_token, encode_token, face_to_api, operation
from pipeline.service.images import decoded_image
from pipeline.service.validation import show_value
from pipeline.store import CollectionRow, FaceRow, NewFace, Tx
from pipeline.types import DetectedFace

if TYPE_CHECKING:
    from pipeline.service import FacePipe

DUPLICATE_COSINE = 0.98
"""Two faces with the same de-duplication key are one face when their cosine is at least this."""

MAX_FACES_PER_IMAGE = 100
"""Faces detected per image (Rekognition indexes at most 100 faces of one image)."""

DEFAULT_LIST_FACES = 1000


@dataclass(frozen=True)
class AnalyzedImage:
    """One image ready to index: its faces from engine.analyze (largest first, with embeddings).

    width, height: the source image's size in pixels after EXIF orientation, before any reduced
    decoding (DecodedImage.source_width/source_height: part of the de-duplication key). max_faces: the most faces to index
    (None: all that pass the quality filter). quality_filter: NONE, AUTO, LOW, MEDIUM or HIGH.
    detection_attributes: as IndexFaces' DetectionAttributes (DEFAULT, ALL, ...): the FaceDetail of
    each face is analysis.face_detail's for these.
    """

    external_image_id: str | None
    width: int
    height: int
    faces: list[DetectedFace]
    max_faces: int | None = None
    quality_filter: str = "AUTO"
    detection_attributes: tuple[str, ...] = field(default=("DEFAULT",))


def dedup_key(external_image_id: str | None, width: int, height: int, face: DetectedFace) -> str:
    """The de-duplication key of a face: ExternalImageId, source image size (``width`` x ``height``
    pixels, upright, before reduced decoding) and box rounded to 0.01."""
    box = face.bounding_box
    parts = [external_image_id or "", f"{width}x{height}"]
    parts += [f"{round(v, 2):.2f}" for v in (box.left, box.top, box.width, box.height)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _unindexed_reasons(
    fp: FacePipe, faces: list[DetectedFace], quality_filter: str | None, max_faces: int | None
) -> list[list[str]]:
    """Why each face (largest first) is not indexed: the QualityFilter's reasons, then
    EXCEEDS_MAX_FACES past the MaxFaces largest that pass it; [] for the faces to index."""
    level = (quality_filter or "AUTO").upper()
    kept = 0
    out: list[list[str]] = []
    for face in faces:
        reasons = [] if level == "NONE" else list(fp.engine.quality_reasons(face, level))
        if not reasons and max_faces is not None and kept >= max_faces:
            reasons = ["EXCEEDS_MAX_FACES"]
        kept += not reasons
        out.append(reasons)
    return out


def indexable_faces(fp: FacePipe, quality_filter: str | None, max_faces: int | None) -> EmbedChoice:
    """The engine's embed choice for IndexFaces: only the faces that will be indexed."""

    def choose(faces: list[DetectedFace]) -> list[int]:
        order = sorted(range(len(faces)), key=lambda i: faces[i].area, reverse=True)
        reasons = _unindexed_reasons(fp, [faces[i] for i in order], quality_filter, max_faces)
        return [i for i, why in zip(order, reasons, strict=True) if not why]

    return choose


def _plan(fp: FacePipe, item: AnalyzedImage) -> tuple[list[DetectedFace], list[dict[str, Any]]]:
    """Split an image's faces into those to index and the UnindexedFaces entries."""
    faces = sorted(item.faces, key=lambda f: f.area, reverse=True)
    to_index: list[DetectedFace] = []
    unindexed: list[dict[str, Any]] = []
    for face, reasons in zip(
        faces, _unindexed_reasons(fp, faces, item.quality_filter, item.max_faces), strict=True
    ):
        if not reasons and face.embedding is None:
            reasons = ["LOW_FACE_QUALITY"]
        if reasons:
            unindexed.append({"Reasons": reasons, "FaceDetail": face_detail(face, item.detection_attributes)})
        else:
            to_index.append(face)
    return to_index, unindexed


def _index_one(
    tx: Tx, coll: CollectionRow, item: AnalyzedImage, to_index: list[DetectedFace]
) -> list[tuple[FaceRow, DetectedFace]]:
    """Store the faces of one image (re-using duplicates); returns (stored face, detection) pairs."""
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
    stored_faces: list[tuple[FaceRow, DetectedFace]] = []
    for face, key, existing in pending:
        if existing is None:
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
            label = tx.insert_face(coll, new)
            existing = FaceRow(
                label,
                new.face_id,
                image_id,
                new.external_image_id,
                box.left,
                box.top,
                box.width,
                box.height,
                new.confidence,
                None,
            )
        stored_faces.append((existing, face))
    return stored_faces


def index_analyzed_images(
    fp: FacePipe, collection_id: str, items: list[AnalyzedImage]
) -> list[dict[str, Any]]:
    """Index the faces of many analysed images in ONE store transaction.

    Returns one IndexFaces response per item (FaceRecords largest box first, UnindexedFaces,
    FaceModelVersion)."""
    for item in items:
        check_attributes(item.detection_attributes, "DetectionAttributes")
    plans = [_plan(fp, item) for item in items]
    responses: list[dict[str, Any]] = []
    with fp.store.write() as tx:
        coll = tx.collection(collection_id)
        for to_index, _ in plans:
            for face in to_index:
                if face.embedding is not None and len(face.embedding) != coll.dim:
                    raise InvalidParameterException(
                        f"Collection {coll.name} holds {coll.dim}-dimensional vectors of model"
                        f" {coll.model_version}; this engine makes {len(face.embedding)}-dimensional ones"
                    )
        for item, (to_index, unindexed) in zip(items, plans, strict=True):
            stored = _index_one(tx, coll, item, to_index)
            responses.append(
                {
                    "FaceRecords": [
                        {
                            "Face": face_to_api(row, coll.model_version),
                            "FaceDetail": face_detail(face, item.detection_attributes),
                        }
                        for row, face in stored
                    ],
                    "FaceModelVersion": coll.model_version,
                    "UnindexedFaces": unindexed,
                }
            )
    return responses


@operation("IndexFaces")
def index_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Detect, check and embed the faces of one image and add them to the collection."""
    with fp.store.read() as tx:
        tx.collection(params["CollectionId"])  # ResourceNotFoundException before any image work
    image = decoded_image(fp, params["Image"])
    quality_filter, max_faces = params.get("QualityFilter", "AUTO"), params.get("MaxFaces")
    faces = fp.engine.analyze(  # embeds only the faces that will be indexed
        image, max_faces=MAX_FACES_PER_IMAGE, embed=indexable_faces(fp, quality_filter, max_faces)
    )
    item = AnalyzedImage(
        external_image_id=params.get("ExternalImageId"),
        width=int(image.source_width),
        height=int(image.source_height),
        faces=faces,
        max_faces=max_faces,
        quality_filter=quality_filter,
        detection_attributes=check_attributes(params.get("DetectionAttributes"), "DetectionAttributes"),
    )
    return index_analyzed_images(fp, params["CollectionId"], [item])[0]


@operation("ListFaces")
def list_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces in indexing order, optionally of one UserId or among FaceIds; MaxResults (default 1000)."""
    limit = params.get("MaxResults") or DEFAULT_LIST_FACES
    with fp.store.read() as tx:
        coll = tx.collection(params["CollectionId"])
        after = 0
        if params.get("NextToken"):
            key = decode_token(params["NextToken"], "ListFaces", coll.id)
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < 2**63:
                raise InvalidPaginationTokenException(
                    f"Invalid pagination token: {show_value(params['NextToken'][:64])}"
                )
            after = key
        if params.get("UserId") is not None:
            tx.user(coll, params["UserId"])
        rows = tx.list_faces(
            coll, after, limit + 1, user_id=params.get("UserId"), face_ids=params.get("FaceIds")
        )
    page = rows[:limit]
    out: dict[str, Any] = {
        "Faces": [face_to_api(row, coll.model_version) for row in page],
        "FaceModelVersion": coll.model_version,
    }
    if len(rows) > limit:
        out["NextToken"] = encode_token("ListFaces", coll.id, page[-1].label)
    return out


@operation("DeleteFaces")
def delete_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Delete faces; faces associated with a user are refused (ASSOCIATED_TO_AN_EXISTING_USER)."""
    requested = list(dict.fromkeys(params["FaceIds"]))
    with fp.store.write() as tx:
        coll = tx.collection(params["CollectionId"])
        found = tx.faces_by_id(coll, requested)
        deleted: list[str] = []
        unsuccessful: list[dict[str, Any]] = []
        for face_id in requested:
            row = found.get(face_id)
            if row is None:
                unsuccessful.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
            elif row.user_id is not None:
                unsuccessful.append(
                    {"FaceId": face_id, "UserId": row.user_id, "Reasons": ["ASSOCIATED_TO_AN_EXISTING_USER"]}
                )
            else:
                deleted.append(face_id)
        tx.delete_faces(coll, [found[f].label for f in deleted])
    return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": unsuccessful}
