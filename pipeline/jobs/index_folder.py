"""Index a folder of images into a collection: resumable, idempotent, batched.

Each image's faces are indexed as IndexFaces would index them (the same code path), with an
ExternalImageId derived from the file's path (pipeline.jobs.naming). The job ledger
(pipeline.jobs.ledger) makes the job safe to interrupt at any point:

1. the files of a batch are recorded as *pending* (one ledger transaction);
2. the faces of the files' previous content, if they changed, are deleted;
3. the batch's faces are written (one store transaction);
4. the files are recorded as *done* with their FaceIds (one ledger transaction), and only then
   reported.

A crash between 1 and 4 leaves pending rows; the next run deletes whatever faces those files may
have got (found by their ExternalImageIds) and indexes them again. So a rerun skips every file
that is done with unchanged content, never duplicates a face, and re-indexes changed files.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.config import DEFAULT_MAX_S3_IMAGE_BYTES
from pipeline.errors import InvalidParameterException
from pipeline.jobs.analyzers import Analyzer, FileOutcome, FileTask
from pipeline.jobs.calls import Service, collection_incarnation, delete_faces, stored_faces
from pipeline.jobs.ledger import DONE, FAILED, PENDING, FinishedFile, JobLedger, PendingWrite
from pipeline.jobs.naming import disambiguate, external_image_id_for, walk_images
from pipeline.jobs.progress import Progress
from pipeline.service import faces as face_cores
from pipeline.service.results import IndexedFace
from pipeline.service.selection import FaceChoice

if TYPE_CHECKING:
    from pipeline.service import FacePipe

QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")
"""IndexFaces' QualityFilter values."""

DEFAULT_BATCH_SIZE = 32
"""Images per store transaction (and per ledger update and report flush)."""

DEFAULT_MAX_IMAGE_BYTES = DEFAULT_MAX_S3_IMAGE_BYTES
"""Largest image file indexed (15 MB, Rekognition's limit for images read from S3)."""


@dataclass(frozen=True)
class IndexOptions:
    """How a folder is indexed.

    max_faces: IndexFaces' MaxFaces (None: every face that passes the filter, up to 100).
    quality_filter: IndexFaces' QualityFilter. id_source: 'path' or 'name' (pipeline.jobs.naming).
    """

    recursive: bool = False
    id_source: str = "path"
    max_faces: int | None = None
    quality_filter: str = "AUTO"
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES

    def validate(self) -> None:
        """Raise InvalidParameterException for an option out of range."""
        if self.id_source not in ("path", "name"):
            raise InvalidParameterException(
                f"external image id source must be path or name, got {self.id_source!r}"
            )
        if self.max_faces is not None and self.max_faces < 1:
            raise InvalidParameterException(f"max faces must be at least 1, got {self.max_faces}")
        if self.quality_filter not in QUALITY_FILTERS:
            raise InvalidParameterException(
                f"quality filter must be one of {', '.join(QUALITY_FILTERS)}, got {self.quality_filter!r}"
            )
        if self.max_image_bytes < 1:
            raise InvalidParameterException(f"max image bytes must be positive, got {self.max_image_bytes}")


@dataclass
class IndexSummary:
    """Totals of one run: images seen, indexed now, skipped (done before), failed; faces; timing."""

    images: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    faces_indexed: int = 0
    faces_unindexed: int = 0
    recovered: int = 0
    seconds: float = 0.0
    job_id: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary as printed at the end of the job."""
        processed = self.indexed + self.failed
        return {
            "Images": self.images,
            "Indexed": self.indexed,
            "Skipped": self.skipped,
            "Failed": self.failed,
            "FacesIndexed": self.faces_indexed,
            "FacesUnindexed": self.faces_unindexed,
            "RecoveredFromInterruptedRun": self.recovered,
            "Seconds": round(self.seconds, 3),
            "ImagesPerSecond": round(processed / self.seconds, 3) if self.seconds > 0 else 0.0,
        }


def _compact_face(record: IndexedFace) -> dict[str, Any]:
    """An indexed face as a report line gives it: FaceId, ImageId, box and confidence as stored."""
    face = record.face
    return {
        "FaceId": face.face_id,
        "ImageId": face.image_id,
        "BoundingBox": face.bounding_box.to_api(),
        "Confidence": face.confidence,
    }


def _compact_unindexed(choice: FaceChoice) -> dict[str, Any]:
    """A face left out as a report line gives it: its reasons, box and detector confidence."""
    return {
        "Reasons": list(choice.reasons),
        "BoundingBox": choice.face.bounding_box.to_api(),
        "Confidence": choice.face.confidence,
    }


class FolderJob:
    """One run of a folder indexing job against an open ledger (see the module docstring)."""

    def __init__(
        self,
        fp: FacePipe,
        ledger: JobLedger,
        collection_id: str,
        root: Path,
        options: IndexOptions,
        report: TextIO | None,
    ) -> None:
        options.validate()
        self.fp = fp
        self.ledger = ledger
        self.collection_id = collection_id
        self.root = root.resolve()
        self.options = options
        self.report = report
        self.job_id = ledger.open_job(
            collection_id, str(self.root), collection_incarnation(fp, collection_id)
        )
        self.summary = IndexSummary(job_id=self.job_id)

    # ----------------------------------------------------------------- recovery

    def recover_interrupted(self) -> int:
        """Undo the possibly half-acknowledged writes of an interrupted run; returns files recovered.

        Deletes the faces that carry a pending file's ExternalImageId (unless the ledger records
        them for another file) and the faces of its previous content, then marks it failed so
        this run indexes it again.
        """
        pending = list(self.ledger.entries(self.job_id, PENDING))
        if not pending:
            return 0
        wanted = {entry.external_image_id for entry in pending}
        owned_elsewhere = self.ledger.face_ids_held_elsewhere(self.collection_id, wanted)
        doomed = {f for entry in pending for f in entry.replaced_face_ids}
        doomed.update(entry_face for entry in pending for entry_face in entry.face_ids)
        for face in stored_faces(self.fp, self.collection_id):
            if face.external_image_id in wanted and face.face_id not in owned_elsewhere:
                doomed.add(face.face_id)
        if doomed:
            delete_faces(self.fp, self.collection_id, doomed)
        self.ledger.finish(
            self.job_id,
            (
                FinishedFile(
                    rel_path=entry.rel_path,
                    external_image_id=entry.external_image_id,
                    sha256=entry.sha256,
                    state=FAILED,
                    face_ids=(),
                    result={"Status": "INTERRUPTED"},
                )
                for entry in pending
            ),
        )
        return len(pending)

    # ----------------------------------------------------------------- naming

    def tasks(self, rel_paths: Iterable[str]) -> Iterator[FileTask]:
        """FileTasks with their ledger rows, for relative paths under the job's folder."""
        for rel_path in rel_paths:
            yield FileTask(
                rel_path=rel_path, path=self.root / rel_path, previous=self.ledger.get(self.job_id, rel_path)
            )

    def _external_image_id(self, outcome: FileOutcome, taken_in_batch: dict[str, str]) -> str:
        """The file's ExternalImageId: the one it had, or a fresh one that no other file holds."""
        task = outcome.task
        if task.previous is not None:
            return task.previous.external_image_id
        candidate = external_image_id_for(task.rel_path, self.options.id_source)
        holder = taken_in_batch.get(candidate) or self.ledger.holder_of(self.job_id, candidate)
        if holder is not None and holder != task.rel_path:
            candidate = disambiguate(candidate, task.rel_path)
        taken_in_batch[candidate] = task.rel_path
        return candidate

    # ----------------------------------------------------------------- writing

    def write_batch(self, outcomes: list[FileOutcome]) -> None:
        """Write one batch's faces, ledger rows and report lines (see the module docstring)."""
        taken: dict[str, str] = {}
        deleted: set[str] = set()
        ids = [self._external_image_id(outcome, taken) for outcome in outcomes]
        to_index = [(o, i) for o, i in zip(outcomes, ids, strict=True) if o.analysis is not None]
        if to_index:
            self.ledger.mark_pending(
                self.job_id,
                [
                    PendingWrite(
                        rel_path=o.task.rel_path,
                        external_image_id=i,
                        sha256=o.sha256 or "",
                        replaced_face_ids=o.task.previous.face_ids if o.task.previous else (),
                    )
                    for o, i in to_index
                ],
            )
            replaced = [f for o, _ in to_index if o.task.previous for f in o.task.previous.face_ids]
            deleted = set(delete_faces(self.fp, self.collection_id, replaced)) if replaced else set()
            items = []
            for outcome, external_image_id in to_index:
                analysis = outcome.analysis
                assert analysis is not None
                items.append(
                    face_cores.AnalyzedImage(
                        external_image_id=external_image_id,
                        width=analysis.width,
                        height=analysis.height,
                        faces=analysis.faces,
                        max_faces=self.options.max_faces,
                        quality_filter=self.options.quality_filter,
                    )
                )
            results = iter(face_cores.index_images(self.fp, self.collection_id, items))
        finished: list[FinishedFile] = []
        lines: list[dict[str, Any]] = []
        for outcome, external_image_id in zip(outcomes, ids, strict=True):
            task = outcome.task
            line: dict[str, Any] = {"Path": task.rel_path, "ExternalImageId": external_image_id}
            if outcome.skipped:
                assert task.previous is not None
                line.update(task.previous.result or {})
                line["Status"] = "ALREADY_INDEXED"
                self.summary.skipped += 1
                lines.append(line)
                continue
            line["Sha256"] = outcome.sha256
            if outcome.analysis is not None:
                result = next(results)
                face_records = [_compact_face(r) for r in result.faces]
                line.update(
                    Status="INDEXED",
                    FaceRecords=face_records,
                    UnindexedFaces=[_compact_unindexed(u) for u in result.unindexed],
                )
                kept = sorted(set(task.previous.face_ids) - deleted) if task.previous else []
                if kept:
                    # DeleteFaces refuses faces associated with a user; they stay until disassociated.
                    line["PreviousFacesKept"] = kept
                face_ids = tuple(r.face.face_id for r in result.faces)
                finished.append(
                    FinishedFile(task.rel_path, external_image_id, outcome.sha256, DONE, face_ids, line)
                )
                self.summary.indexed += 1
                self.summary.faces_indexed += len(face_records)
                self.summary.faces_unindexed += len(line["UnindexedFaces"])
            else:
                error = outcome.error
                assert error is not None
                line.update(Status="FAILED", Error=error.to_json())
                # A file that broke keeps the faces of its earlier content until it is fixed.
                held = task.previous.face_ids if task.previous else ()
                finished.append(
                    FinishedFile(task.rel_path, external_image_id, outcome.sha256, FAILED, held, line)
                )
                self.summary.failed += 1
            lines.append(line)
        if finished:
            self.ledger.finish(self.job_id, finished)
        if self.report is not None:
            for line in lines:
                self.report.write(json.dumps(line, sort_keys=True) + "\n")
            self.report.flush()

    # ----------------------------------------------------------------- running

    def run(
        self, analyzer: Analyzer, rel_paths: Iterable[str], total: int, progress_stream: TextIO | None
    ) -> IndexSummary:
        """Process ``rel_paths`` (``total`` of them) through ``analyzer``; returns the summary."""
        started = time.monotonic()
        # Everything alive now (models, the service's API model, the store) lives for the whole
        # job: moved out of the cyclic collector's view, so that its collections, triggered by the
        # job's many short-lived objects, stop walking it (about 4% of a job's CPU time otherwise).
        # Garbage first (frozen, it would never be freed); thawed when the job ends, so that a
        # process running several jobs (the server, tests) does not keep each one's leftovers.
        gc.collect()
        gc.freeze()
        try:
            self.summary.recovered = self.recover_interrupted()
            progress = Progress(total, progress_stream)
            try:
                for outcomes in analyzer.run(self.tasks(rel_paths)):
                    self.write_batch(outcomes)
                    skipped = sum(1 for o in outcomes if o.skipped)
                    progress.advance(len(outcomes), len(outcomes) - skipped)
                    self.summary.images += len(outcomes)
            finally:
                progress.close()
                self.summary.seconds = time.monotonic() - started
        finally:
            gc.unfreeze()
        return self.summary


def ensure_collection(fp: Service, collection_id: str, create: bool) -> None:
    """Create the collection when ``create`` and it does not exist; otherwise require it.

    Raises ResourceNotFoundException when it is missing and ``create`` is False.
    """
    from pipeline.errors import ResourceNotFoundException

    try:
        fp.call("DescribeCollection", {"CollectionId": collection_id})
    except ResourceNotFoundException:
        if not create:
            raise
        fp.call("CreateCollection", {"CollectionId": collection_id})


def index_folder(
    fp: FacePipe,
    ledger: JobLedger,
    collection_id: str,
    root: Path,
    analyzer: Analyzer,
    *,
    options: IndexOptions | None = None,
    report: TextIO | None = None,
    progress_stream: TextIO | None = sys.stderr,
    rel_paths: list[str] | None = None,
) -> IndexSummary:
    """Index every image under ``root`` (or only ``rel_paths``) into an existing collection.

    Returns the run's summary; the JSONL ``report`` gets one line per image in walk order.
    """
    options = options or IndexOptions()
    job = FolderJob(fp, ledger, collection_id, root, options, report)
    with _exclusive_job(ledger, job.job_id, collection_id, job.root):
        if rel_paths is None:
            total = sum(1 for _ in walk_images(job.root, options.recursive))
            paths: Iterable[str] = walk_images(job.root, options.recursive)
        else:
            total, paths = len(rel_paths), rel_paths
        return job.run(analyzer, paths, total, progress_stream)


@contextlib.contextmanager
def _exclusive_job(ledger: JobLedger, job_id: int, collection_id: str, root: Path) -> Iterator[None]:
    """Hold the job's lock file for the run: a second run on the same folder and collection would
    take the first one's pending files for an interrupted run's and delete their faces."""
    from pipeline.errors import ResourceInUseException

    with ledger.lock_file(job_id).open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResourceInUseException(
                f"another run is indexing {root} into collection {collection_id}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
