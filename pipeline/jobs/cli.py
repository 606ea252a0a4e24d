"""`facepipe index-folder` and `facepipe associate-job`: argument parsing and exit statuses.

Exit status: 0 when the job ran to the end (files that could not be indexed are reported in the
JSONL report and counted in the summary, never fatal), 2 for a usage error or an invalid
parameter, 255 when a Rekognition error stopped the job (e.g. the collection does not exist),
130 when interrupted (Ctrl-C): run the same command again to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from pipeline.cli.arguments import int_at_least
from pipeline.config import Settings
from pipeline.errors import InvalidParameterException, RekognitionError
from pipeline.jobs.analyzers import MODEL_CHUNK_IMAGES, Analyzer, LocalAnalyzer, engine_threads
from pipeline.jobs.associate import ImageResolver, run_associate_job
from pipeline.jobs.cluster import (
    DEFAULT_CLUSTER_THRESHOLD,
    DEFAULT_MIN_CLUSTER_SIZE,
    propose_users,
    write_proposals,
)
from pipeline.jobs.index_folder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IMAGE_BYTES,
    QUALITY_FILTERS,
    IndexOptions,
    ensure_collection,
    index_folder,
)
from pipeline.jobs.ledger import DONE, JobLedger
from pipeline.jobs.manifest import read_manifest
from pipeline.service import FacePipe
from pipeline.service.users import ASSOCIATE_FACES_MATCH_THRESHOLD
from pipeline.vision.streams import usable_cores

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SERVICE_ERROR = 255
EXIT_INTERRUPTED = 130

DEFAULT_LOCAL_WORKERS = usable_cores()
"""Parallel streams of the local engine: one single-threaded model stream per usable core."""

DEFAULT_RAY_ACTORS = 2
"""Model actors of the Ray engine."""


_positive_int = int_at_least(1)


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (default: $FACEPIPE_HOME or the user data dir)"
    )
    parser.add_argument(
        "--store",
        help="the PostgreSQL store several servers and jobs share, postgresql://user@host:port/db (default: $FACEPIPE_STORE, else SQLite in the data directory; keep the password in $FACEPIPE_STORE or ~/.pgpass, not on the command line)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the models run: this process (local) or Ray actors (ray)",
    )
    parser.add_argument(
        "--ray-address",
        help="address of an existing Ray cluster ('auto', 'ray://head:10001'); default: start Ray locally",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        help=f"parallel workers: local: the engine's streams, each reading, decoding and analyzing its own "
        f"images on one thread (default FACEPIPE_THREADS, else one per usable core: {DEFAULT_LOCAL_WORKERS}); "
        f"ray: model actors (default {DEFAULT_RAY_ACTORS})",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per store transaction and per Ray actor call (default {DEFAULT_BATCH_SIZE}); "
        f"the models analyze {MODEL_CHUNK_IMAGES} images at a time",
    )
    parser.add_argument(
        "--max-image-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_IMAGE_BYTES,
        help=f"largest image file indexed, in bytes (default {DEFAULT_MAX_IMAGE_BYTES})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")


def _job_settings(args: argparse.Namespace) -> Settings:
    """Settings for the job: the local engine's thread budget (its streams) is --workers if given.

    With the Ray engine the driver only needs the engine's quality checks: one thread.
    """
    settings = Settings.from_env(data_dir=args.data_dir, store=args.store)
    if args.engine == "ray":
        return replace(settings, threads=1)
    return replace(settings, threads=engine_threads(settings.threads, args.workers))


def _make_analyzer(args: argparse.Namespace, settings: Settings, engine: Callable[[], Any]) -> Analyzer:
    """The analyzer asked for on the command line."""
    if args.engine == "ray":
        from pipeline.jobs.ray_engine import RayAnalyzer

        return RayAnalyzer(
            settings,
            actors=args.workers or DEFAULT_RAY_ACTORS,
            batch_size=args.batch_size,
            max_image_bytes=args.max_image_bytes,
            address=args.ray_address,
            threads_per_actor=Settings.from_env().threads or 1,
        )
    if args.ray_address:
        raise InvalidParameterException("--ray-address needs --engine ray")
    return LocalAnalyzer(
        engine(),
        batch_size=args.batch_size,
        max_image_bytes=args.max_image_bytes,
    )


@contextmanager
def _report_file(path: Path | None) -> Iterator[TextIO | None]:
    """The JSONL report opened for writing (truncated: each run reports every image), or None."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        yield out


def _run_guarded(command: str, body: Callable[[], int]) -> int:
    """Run a command body, turning errors into a message on stderr and an exit status."""
    try:
        return body()
    except InvalidParameterException as exc:
        print(f"facepipe {command}: error ({exc.code}): {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except RekognitionError as exc:
        print(f"facepipe {command}: error ({exc.code}): {exc.message}", file=sys.stderr)
        return EXIT_SERVICE_ERROR
    except KeyboardInterrupt:
        print(f"facepipe {command}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def index_folder_parser() -> argparse.ArgumentParser:
    """The argument parser of `facepipe index-folder`."""
    parser = argparse.ArgumentParser(
        prog="facepipe index-folder",
        description="Index the faces of every JPEG/PNG image in a folder into a collection. Resumable: "
        "a rerun skips images already indexed with unchanged content, re-indexes changed ones and "
        "never duplicates a face.",
    )
    parser.add_argument("folder", type=Path, help="folder of images")
    parser.add_argument("--collection-id", required=True, help="collection to index into")
    parser.add_argument(
        "--create-collection", action="store_true", help="create the collection if it is missing"
    )
    parser.add_argument("--recursive", action="store_true", help="include sub-folders")
    parser.add_argument(
        "--external-image-id-from",
        choices=("path", "name"),
        default="path",
        help="derive each ExternalImageId from the relative path (default) or the file name",
    )
    parser.add_argument(
        "--max-faces", type=_positive_int, help="IndexFaces MaxFaces per image (default: all)"
    )
    parser.add_argument(
        "--quality-filter",
        choices=QUALITY_FILTERS,
        default="AUTO",
        help="IndexFaces QualityFilter (default AUTO)",
    )
    parser.add_argument("--report", type=Path, help="write one JSON line per image to this file")
    _add_engine_options(parser)
    return parser


def index_folder_main(argv: list[str]) -> int:
    """`facepipe index-folder DIR --collection-id C ...`; prints the summary as JSON on stdout."""
    args = index_folder_parser().parse_args(argv)

    def body() -> int:
        settings = _job_settings(args)
        with closing(FacePipe(settings)) as fp:
            return run(settings, fp)

    def run(settings: Settings, fp: FacePipe) -> int:
        options = IndexOptions(
            recursive=args.recursive,
            id_source=args.external_image_id_from,
            max_faces=args.max_faces,
            quality_filter=args.quality_filter,
            max_image_bytes=args.max_image_bytes,
        )
        options.validate()
        if not args.folder.is_dir():
            raise InvalidParameterException(f"folder not found or not a directory: {args.folder}")
        ensure_collection(fp, args.collection_id, args.create_collection)
        analyzer = _make_analyzer(args, settings, lambda: fp.engine)
        try:
            with JobLedger.in_data_dir(settings.data_dir) as ledger, _report_file(args.report) as report:
                summary = index_folder(
                    fp,
                    ledger,
                    args.collection_id,
                    args.folder,
                    analyzer,
                    options=options,
                    report=report,
                    progress_stream=None if args.quiet else sys.stderr,
                )
        finally:
            analyzer.close()
        print(json.dumps(summary.to_json(), indent=2))
        return EXIT_OK

    return _run_guarded("index-folder", body)


def associate_job_parser() -> argparse.ArgumentParser:
    """The argument parser of `facepipe associate-job`."""
    parser = argparse.ArgumentParser(
        prog="facepipe associate-job",
        description="Associate faces with users from a manifest (CSV or JSONL with user_id and one of "
        "face_id, external_image_id, image), creating users as needed; safe to rerun. With "
        "--propose-users, write a manifest proposing users from the faces no user holds yet.",
    )
    parser.add_argument("manifest", type=Path, nargs="?", help="manifest file (CSV or JSONL)")
    parser.add_argument("--collection-id", required=True, help="collection holding the faces and users")
    parser.add_argument(
        "--user-match-threshold",
        type=float,
        default=ASSOCIATE_FACES_MATCH_THRESHOLD,
        help=f"AssociateFaces UserMatchThreshold, 0-100 (default {ASSOCIATE_FACES_MATCH_THRESHOLD:g})",
    )
    parser.add_argument("--report", type=Path, help="write one JSON line per user to this file")
    parser.add_argument(
        "--propose-users",
        type=Path,
        metavar="OUT_CSV",
        help="instead of associating, write a manifest of proposed users (clusters of unassociated faces)",
    )
    parser.add_argument(
        "--cluster-threshold",
        type=float,
        default=DEFAULT_CLUSTER_THRESHOLD,
        help=f"Similarity (0-100) linking two faces into one proposed user (default {DEFAULT_CLUSTER_THRESHOLD:g})",
    )
    parser.add_argument(
        "--min-cluster-size",
        type=_positive_int,
        default=DEFAULT_MIN_CLUSTER_SIZE,
        help=f"fewest faces of a proposed user (default {DEFAULT_MIN_CLUSTER_SIZE})",
    )
    parser.add_argument(
        "--user-id-prefix", default="person-", help="prefix of proposed UserIds (default person-)"
    )
    _add_engine_options(parser)
    return parser


def _image_resolver(
    fp: Any,
    ledger: JobLedger,
    collection_id: str,
    root: Path,
    analyzer_factory: Callable[[], Analyzer],
    args: Any,
) -> ImageResolver:
    """Index manifest images (largest face only, resumable like index-folder) and name their FaceIds."""

    def resolve(paths: list[Path]) -> dict[Path, tuple[str | None, str]]:
        rel_paths = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
        options = IndexOptions(max_faces=1, max_image_bytes=args.max_image_bytes)
        analyzer = analyzer_factory()
        try:
            summary = index_folder(
                fp,
                ledger,
                collection_id,
                root,
                analyzer,
                options=options,
                progress_stream=None if args.quiet else sys.stderr,
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


def associate_job_main(argv: list[str]) -> int:
    """`facepipe associate-job MANIFEST --collection-id C ...` or `... --propose-users OUT.csv`."""
    parser = associate_job_parser()
    args = parser.parse_args(argv)
    if (args.manifest is None) == (args.propose_users is None):
        parser.error("give a MANIFEST to run, or --propose-users OUT_CSV to propose one (not both)")

    def body() -> int:
        settings = _job_settings(args)
        with closing(FacePipe(settings)) as fp:
            return run(settings, fp)

    def run(settings: Settings, fp: FacePipe) -> int:
        if args.propose_users is not None:
            proposals = propose_users(
                fp,
                args.collection_id,
                threshold=args.cluster_threshold,
                min_cluster_size=args.min_cluster_size,
                user_id_prefix=args.user_id_prefix,
            )
            rows = write_proposals(args.propose_users, proposals)
            print(
                json.dumps(
                    {"ProposedUsers": len(proposals), "Faces": rows, "Manifest": str(args.propose_users)}
                )
            )
            return EXIT_OK
        rows_in = read_manifest(args.manifest)
        root = args.manifest.resolve().parent
        with JobLedger.in_data_dir(settings.data_dir) as ledger, _report_file(args.report) as report:
            resolver = _image_resolver(
                fp,
                ledger,
                args.collection_id,
                root,
                lambda: _make_analyzer(args, settings, lambda: fp.engine),
                args,
            )
            summary = run_associate_job(
                fp,
                args.collection_id,
                rows_in,
                root,
                user_match_threshold=args.user_match_threshold,
                report=report,
                resolve_images=resolver,
            )
        print(json.dumps(summary.to_json(), indent=2))
        return EXIT_OK

    return _run_guarded("associate-job", body)
