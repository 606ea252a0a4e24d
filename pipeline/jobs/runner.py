"""The batch jobs as typed entry points: index a folder, run an association manifest, propose users.

Each job is a frozen dataclass run by one function, which opens the store, runs the models where
its EngineOptions say, and returns the job's summary. They raise RekognitionError for what the
service refuses (InvalidParameterException for an invalid parameter) and let KeyboardInterrupt
through: a job run again resumes where it stopped. `facepipe index-folder` and
`facepipe associate-job` (pipeline.cli.jobs) are their command lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import Settings
from pipeline.errors import InvalidParameterException
from pipeline.jobs.analyzers import Analyzer, LocalAnalyzer, engine_threads
from pipeline.jobs.associate import AssociateSummary, ImageResolver, run_associate_job
from pipeline.jobs.cluster import (
    DEFAULT_CLUSTER_THRESHOLD,
    DEFAULT_MIN_CLUSTER_SIZE,
    propose_users,
    write_proposals,
)
from pipeline.jobs.index_folder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IMAGE_BYTES,
    IndexOptions,
    IndexSummary,
    ensure_collection,
    index_folder,
)
from pipeline.jobs.ledger import DONE, JobLedger
from pipeline.jobs.manifest import read_manifest
from pipeline.service import FacePipe
from pipeline.service.users import ASSOCIATE_FACES_MATCH_THRESHOLD
from pipeline.vision.streams import usable_cores

DEFAULT_LOCAL_WORKERS = usable_cores()
"""Parallel streams of the local engine: one single-threaded model stream per usable core."""

DEFAULT_RAY_ACTORS = 2
"""Model actors of the Ray engine."""


@dataclass(frozen=True)
class EngineOptions:
    """Where a job's store is and where its models run.

    data_dir, store: the store (None: $FACEPIPE_HOME or the user data dir; $FACEPIPE_STORE, else
    SQLite in the data directory). engine: "local" (this process) or "ray" (Ray actors, on the
    cluster at ray_address or a local one). workers: local: the engine's streams (None:
    FACEPIPE_THREADS, else DEFAULT_LOCAL_WORKERS); ray: model actors (None: DEFAULT_RAY_ACTORS).
    batch_size: images per store transaction and per Ray actor call. max_image_bytes: largest
    image file indexed, in bytes. show_progress: progress lines on stderr.
    """

    data_dir: Path | None = None
    store: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    show_progress: bool = True

    def settings(self) -> Settings:
        """Settings for the job: the local engine's thread budget (its streams) is ``workers`` if
        given; with the Ray engine the driver only needs the engine's quality checks: one thread."""
        settings = Settings.from_env(data_dir=self.data_dir, store=self.store)
        if self.engine == "ray":
            return replace(settings, threads=1)
        return replace(settings, threads=engine_threads(settings.threads, self.workers))

    def analyzer(self, settings: Settings, engine: Callable[[], Any]) -> Analyzer:
        """The analyzer these options ask for; ``engine`` gives the local engine when it is needed."""
        if self.engine == "ray":
            from pipeline.jobs.ray_engine import RayAnalyzer

            return RayAnalyzer(
                settings,
                actors=self.workers or DEFAULT_RAY_ACTORS,
                batch_size=self.batch_size,
                max_image_bytes=self.max_image_bytes,
                address=self.ray_address,
                threads_per_actor=Settings.from_env().threads or 1,
            )
        if self.ray_address:
            raise InvalidParameterException("--ray-address needs --engine ray")
        return LocalAnalyzer(engine(), batch_size=self.batch_size, max_image_bytes=self.max_image_bytes)

    def progress_stream(self) -> TextIO | None:
        """Where progress goes: stderr, or nowhere."""
        return sys.stderr if self.show_progress else None


@dataclass(frozen=True)
class IndexFolderJob:
    """Index every image of ``folder`` into ``collection_id`` (created first when
    ``create_collection``); ``index``: how (its max_image_bytes is the engine's); ``report``: a JSONL
    file with one line per image (truncated: each run reports every image)."""

    folder: Path
    collection_id: str
    create_collection: bool = False
    index: IndexOptions = field(default_factory=IndexOptions)
    report: Path | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class AssociateJob:
    """Associate the faces a manifest (CSV or JSONL) names with its users, creating users as needed;
    ``report``: a JSONL file with one line per user."""

    manifest: Path
    collection_id: str
    user_match_threshold: float = ASSOCIATE_FACES_MATCH_THRESHOLD
    report: Path | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class ProposeUsersJob:
    """Write to ``out_csv`` a manifest proposing users: clusters of the faces no user holds yet
    (``cluster_threshold``: Similarity 0-100 linking two faces; at least ``min_cluster_size`` faces)."""

    out_csv: Path
    collection_id: str
    cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE
    user_id_prefix: str = "person-"
    engine: EngineOptions = field(default_factory=EngineOptions)


@dataclass(frozen=True)
class ProposedManifest:
    """What a ProposeUsersJob wrote: users proposed, face rows, the manifest's path."""

    users: int
    faces: int
    manifest: Path

    def to_json(self) -> dict[str, Any]:
        """The summary `facepipe associate-job --propose-users` prints."""
        return {"ProposedUsers": self.users, "Faces": self.faces, "Manifest": str(self.manifest)}


@contextmanager
def _report_file(path: Path | None) -> Iterator[TextIO | None]:
    """The JSONL report opened for writing (truncated: each run reports every image), or None."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        yield out


def run_index_folder_job(job: IndexFolderJob) -> IndexSummary:
    """Run ``job``; its summary (files that could not be indexed are counted, never fatal)."""
    settings = job.engine.settings()
    with closing(FacePipe(settings)) as fp:
        options = replace(job.index, max_image_bytes=job.engine.max_image_bytes)
        options.validate()
        if not job.folder.is_dir():
            raise InvalidParameterException(f"folder not found or not a directory: {job.folder}")
        ensure_collection(fp, job.collection_id, job.create_collection)
        analyzer = job.engine.analyzer(settings, lambda: fp.engine)
        try:
            with JobLedger.in_data_dir(settings.data_dir) as ledger, _report_file(job.report) as report:
                return index_folder(
                    fp,
                    ledger,
                    job.collection_id,
                    job.folder,
                    analyzer,
                    options=options,
                    report=report,
                    progress_stream=job.engine.progress_stream(),
                )
        finally:
            analyzer.close()


def _image_resolver(
    fp: FacePipe,
    ledger: JobLedger,
    collection_id: str,
    root: Path,
    analyzer_factory: Callable[[], Analyzer],
    engine: EngineOptions,
) -> ImageResolver:
    """Index manifest images (largest face only, resumable like index-folder) and name their FaceIds."""

    def resolve(paths: list[Path]) -> dict[Path, tuple[str | None, str]]:
        rel_paths = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
        options = IndexOptions(max_faces=1, max_image_bytes=engine.max_image_bytes)
        analyzer = analyzer_factory()
        try:
            summary = index_folder(
                fp,
                ledger,
                collection_id,
                root,
                analyzer,
                options=options,
                progress_stream=engine.progress_stream(),
                rel_paths=rel_paths,
            )
        finally:
            analyzer.close()
        job_id = summary.job_id
        resolved: dict[Path, tuple[str | None, str]] = {}
        for path, rel_path in zip(paths, rel_paths, strict=True):
            entry = ledger.get(job_id, rel_path)
            if entry is None:
                resolved[path] = (None, "the image was not processed")
            elif entry.state == DONE and entry.face_ids:
                resolved[path] = (entry.face_ids[0], "")
            else:
                result = entry.result or {}
                if result.get("Error"):
                    why = f"{result['Error']['Code']}: {result['Error']['Message']}"
                elif result.get("UnindexedFaces"):
                    why = "no face indexed: " + ", ".join(result["UnindexedFaces"][0].get("Reasons", []))
                else:
                    why = "no face detected in the image"
                resolved[path] = (None, why)
        return resolved

    return resolve


def run_associate_manifest_job(job: AssociateJob) -> AssociateSummary:
    """Run ``job``: every manifest row resolved (images indexed first) and associated; safe to rerun."""
    settings = job.engine.settings()
    with closing(FacePipe(settings)) as fp:
        rows = read_manifest(job.manifest)
        root = job.manifest.resolve().parent
        with JobLedger.in_data_dir(settings.data_dir) as ledger, _report_file(job.report) as report:
            resolver = _image_resolver(
                fp,
                ledger,
                job.collection_id,
                root,
                lambda: job.engine.analyzer(settings, lambda: fp.engine),
                job.engine,
            )
            return run_associate_job(
                fp,
                job.collection_id,
                rows,
                root,
                user_match_threshold=job.user_match_threshold,
                report=report,
                resolve_images=resolver,
            )


def run_propose_users_job(job: ProposeUsersJob) -> ProposedManifest:
    """Run ``job``: cluster the unassociated faces and write the proposed manifest."""
    with closing(FacePipe(job.engine.settings())) as fp:
        proposals = propose_users(
            fp,
            job.collection_id,
            threshold=job.cluster_threshold,
            min_cluster_size=job.min_cluster_size,
            user_id_prefix=job.user_id_prefix,
        )
        rows = write_proposals(job.out_csv, proposals)
    return ProposedManifest(users=len(proposals), faces=rows, manifest=job.out_csv)
