"""`facepipe index-folder` and `facepipe associate-job`: argument parsing and exit statuses.

The jobs themselves are pipeline.jobs.runner's. Exit status: 0 when the job ran to the end (files
that could not be indexed are reported in the JSONL report and counted in the summary, never
fatal), 2 for a usage error or an invalid parameter, 255 when a Rekognition error stopped the job
(e.g. the collection does not exist), 130 when interrupted (Ctrl-C): run the same command again
to resume.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.cli.arguments import int_at_least
from pipeline.cli.exit_status import ExitStatus
from pipeline.errors import InvalidParameterException, RekognitionError
from pipeline.jobs.analyzers import MODEL_CHUNK_IMAGES
from pipeline.jobs.cluster import DEFAULT_CLUSTER_THRESHOLD, DEFAULT_MIN_CLUSTER_SIZE
from pipeline.jobs.index_folder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IMAGE_BYTES,
    QUALITY_FILTERS,
    IndexOptions,
)
from pipeline.jobs.runner import (
    DEFAULT_LOCAL_WORKERS,
    DEFAULT_RAY_ACTORS,
    AssociateJob,
    EngineOptions,
    IndexFolderJob,
    ProposeUsersJob,
    run_associate_manifest_job,
    run_index_folder_job,
    run_propose_users_job,
)
from pipeline.service.users import ASSOCIATE_FACES_MATCH_THRESHOLD

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


def _engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(
        data_dir=args.data_dir,
        store=args.store,
        engine=args.engine,
        ray_address=args.ray_address,
        workers=args.workers,
        batch_size=args.batch_size,
        max_image_bytes=args.max_image_bytes,
        show_progress=not args.quiet,
    )


def _run_guarded(command: str, body: Callable[[], str]) -> int:
    """Run a job, print the summary it returns on stdout, and turn its errors into a message on
    stderr and an exit status."""
    try:
        print(body())
    except InvalidParameterException as exc:
        print(f"facepipe {command}: error ({exc.code}): {exc.message}", file=sys.stderr)
        return ExitStatus.USAGE_ERROR
    except RekognitionError as exc:
        print(f"facepipe {command}: error ({exc.code}): {exc.message}", file=sys.stderr)
        return ExitStatus.SERVICE_ERROR
    except KeyboardInterrupt:
        print(f"facepipe {command}: interrupted; run the same command again to resume", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK


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
    engine = _engine_options(args)
    job = IndexFolderJob(
        folder=args.folder,
        collection_id=args.collection_id,
        create_collection=args.create_collection,
        index=IndexOptions(
            recursive=args.recursive,
            id_source=args.external_image_id_from,
            max_faces=args.max_faces,
            quality_filter=args.quality_filter,
        ),
        report=args.report,
        engine=engine,
    )
    return _run_guarded("index-folder", lambda: json.dumps(run_index_folder_job(job).to_json(), indent=2))


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


def associate_job_main(argv: list[str]) -> int:
    """`facepipe associate-job MANIFEST --collection-id C ...` or `... --propose-users OUT.csv`."""
    parser = associate_job_parser()
    args = parser.parse_args(argv)
    if (args.manifest is None) == (args.propose_users is None):
        parser.error("give a MANIFEST to run, or --propose-users OUT_CSV to propose one (not both)")
    engine = _engine_options(args)
    if args.propose_users is not None:
        proposal = ProposeUsersJob(
            out_csv=args.propose_users,
            collection_id=args.collection_id,
            cluster_threshold=args.cluster_threshold,
            min_cluster_size=args.min_cluster_size,
            user_id_prefix=args.user_id_prefix,
            engine=engine,
        )
        return _run_guarded("associate-job", lambda: json.dumps(run_propose_users_job(proposal).to_json()))
    job = AssociateJob(
        manifest=args.manifest,
        collection_id=args.collection_id,
        user_match_threshold=args.user_match_threshold,
        report=args.report,
        engine=engine,
    )
    return _run_guarded(
        "associate-job", lambda: json.dumps(run_associate_manifest_job(job).to_json(), indent=2)
    )
