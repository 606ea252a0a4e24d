"""Association jobs: create users and associate faces with them in bulk, safely repeatable.

For each user of the manifest (in order of first appearance) the job creates the user unless it
exists, then calls AssociateFaces with the user's FaceIds in manifest order, at most 100 per call.
Every CreateUser and AssociateFaces call carries a ClientRequestToken derived from the request's
content (collection, user, threshold, FaceIds), so running the same job again after a crash, or
twice, repeats each call as the same idempotent request: nothing is done twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.errors import (
    ConflictException,
    InvalidParameterException,
    RekognitionError,
)
from pipeline.jobs.calls import stored_faces
from pipeline.jobs.manifest import ManifestRow
from pipeline.jobs.naming import client_request_token
from pipeline.service import users as user_cores
from pipeline.service.responses import failure_to_api
from pipeline.service.results import FaceFailure
from pipeline.service.users import ASSOCIATE_FACES_MATCH_THRESHOLD

if TYPE_CHECKING:
    from pipeline.service import FacePipe

MAX_FACES_PER_CALL = 100
"""Most FaceIds one AssociateFaces call takes."""


ImageResolver = Callable[[list[Path]], dict[Path, tuple[str | None, str]]]
"""Indexes image files and returns, per path, (FaceId of its largest face or None, explanation)."""


@dataclass
class UserReport:
    """What the job did for one user: one JSONL report line."""

    user_id: str
    created: bool = False
    associated: list[str] = field(default_factory=list)
    unsuccessful: list[FaceFailure] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    user_status: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The report line (AssociateFaces' field names where they exist)."""
        return {
            "UserId": self.user_id,
            "UserCreated": self.created,
            "UserStatus": self.user_status,
            "AssociatedFaces": [{"FaceId": face_id} for face_id in self.associated],
            "UnsuccessfulFaceAssociations": [failure_to_api(f) for f in self.unsuccessful],
            "UnresolvedReferences": self.unresolved,
            "Errors": self.errors,
        }


@dataclass
class AssociateSummary:
    """Totals of an association job."""

    users: int = 0
    users_created: int = 0
    faces_associated: int = 0
    faces_unsuccessful: int = 0
    references_unresolved: int = 0
    calls_failed: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary as printed at the end of the job."""
        return {
            "Users": self.users,
            "UsersCreated": self.users_created,
            "FacesAssociated": self.faces_associated,
            "FacesUnsuccessful": self.faces_unsuccessful,
            "ReferencesUnresolved": self.references_unresolved,
            "CallsFailed": self.calls_failed,
        }


def _largest_face_by_external_id(fp: FacePipe, collection_id: str, wanted: set[str]) -> dict[str, str]:
    """ExternalImageId -> FaceId of its largest face (by box area), for the ids in ``wanted``."""
    best: dict[str, tuple[float, str]] = {}
    for face in stored_faces(fp, collection_id):
        external_id = face.external_image_id
        if external_id is None or external_id not in wanted:
            continue
        area = face.bounding_box.area
        current = best.get(external_id)
        # Largest area wins; equal areas are broken by FaceId so the choice is deterministic.
        if current is None or (area, face.face_id) > current:
            best[external_id] = (area, face.face_id)
    return {external_id: face_id for external_id, (_, face_id) in best.items()}


def resolve_rows(
    fp: FacePipe,
    collection_id: str,
    rows: list[ManifestRow],
    manifest_dir: Path,
    resolve_images: ImageResolver | None,
) -> tuple[dict[str, list[str]], dict[str, list[dict[str, Any]]]]:
    """Each user's FaceIds (manifest order, no repeats) and the references that found no face."""
    wanted_external = {row.value for row in rows if row.kind == "external_image_id"}
    by_external = _largest_face_by_external_id(fp, collection_id, wanted_external) if wanted_external else {}
    image_paths = sorted(
        {(manifest_dir / row.value).resolve() for row in rows if row.kind == "image"}, key=str
    )
    by_image: dict[Path, tuple[str | None, str]] = {}
    if image_paths:
        if resolve_images is None:
            raise InvalidParameterException("the manifest names image files, but no image indexer was given")
        by_image = resolve_images(image_paths)

    faces: dict[str, list[str]] = {}
    unresolved: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        user_faces = faces.setdefault(row.user_id, [])
        unresolved.setdefault(row.user_id, [])
        face_id: str | None
        if row.kind == "face_id":
            face_id, why = row.value, ""
        elif row.kind == "external_image_id":
            face_id = by_external.get(row.value)
            why = "no face in the collection has this ExternalImageId"
        else:
            face_id, why = by_image[(manifest_dir / row.value).resolve()]
        if face_id is None:
            unresolved[row.user_id].append({**row.reference(), "Reason": why})
        elif face_id not in user_faces:
            user_faces.append(face_id)
    return faces, unresolved


def _error_json(exc: RekognitionError, face_ids: list[str] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"Code": exc.code, "Message": exc.message}
    if face_ids is not None:
        error["FaceIds"] = face_ids
    return error


def associate_user(
    fp: FacePipe, collection_id: str, user_id: str, face_ids: list[str], threshold: float
) -> UserReport:
    """Create ``user_id`` if needed and associate ``face_ids`` in chunks of at most 100.

    The manifest's rows are checked (pipeline.jobs.manifest) before they reach the service's cores."""
    report = UserReport(user_id=user_id)
    try:
        user_cores.create_user(
            fp,
            collection_id,
            user_id,
            client_request_token=client_request_token("CreateUser", collection_id, user_id),
        )
        report.created = True
    except ConflictException:
        report.created = False  # the user already exists: associate with it
    except RekognitionError as exc:
        report.errors.append(_error_json(exc))
        return report
    for start in range(0, len(face_ids), MAX_FACES_PER_CALL):
        chunk = face_ids[start : start + MAX_FACES_PER_CALL]
        token = client_request_token("AssociateFaces", collection_id, user_id, f"{threshold:g}", *chunk)
        try:
            result = user_cores.associate(
                fp, collection_id, user_id, chunk, threshold, client_request_token=token
            )
        except RekognitionError as exc:
            report.errors.append(_error_json(exc, chunk))
            continue
        report.associated.extend(result.associated)
        report.unsuccessful.extend(result.unsuccessful)
        report.user_status = result.user_status
    return report


def run_associate_job(
    fp: FacePipe,
    collection_id: str,
    rows: list[ManifestRow],
    manifest_dir: Path,
    *,
    user_match_threshold: float = ASSOCIATE_FACES_MATCH_THRESHOLD,
    report: TextIO | None = None,
    resolve_images: ImageResolver | None = None,
) -> AssociateSummary:
    """Run an association job over validated manifest ``rows``; one report line per user.

    ``manifest_dir`` anchors relative image paths; ``resolve_images`` indexes image rows (the
    associate job's resolver is in pipeline.jobs.runner). Raises ResourceNotFoundException when the
    collection does not exist; per-call failures are reported, not raised.
    """
    if not 0.0 <= user_match_threshold <= 100.0:
        raise InvalidParameterException(
            f"user match threshold must be between 0 and 100, got {user_match_threshold}"
        )
    fp.call("DescribeCollection", {"CollectionId": collection_id})  # the CollectionId checked too
    faces, unresolved = resolve_rows(fp, collection_id, rows, manifest_dir, resolve_images)
    summary = AssociateSummary()
    for user_id, face_ids in faces.items():
        if face_ids:
            user_report = associate_user(fp, collection_id, user_id, face_ids, user_match_threshold)
        else:
            user_report = UserReport(user_id=user_id)
        user_report.unresolved = unresolved[user_id]
        summary.users += 1
        summary.users_created += int(user_report.created)
        summary.faces_associated += len(user_report.associated)
        summary.faces_unsuccessful += len(user_report.unsuccessful)
        summary.references_unresolved += len(user_report.unresolved)
        summary.calls_failed += len(user_report.errors)
        if report is not None:
            report.write(json.dumps(user_report.to_json(), default=str) + "\n")
            report.flush()
    return summary
