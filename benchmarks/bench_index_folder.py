"""Folder indexing benchmark: `facepipe index-folder` against the loops people write around IndexFaces.

    python benchmarks/bench_index_folder.py --images 1000 --rounds 3 [--shell-images 30]
        [--modes loop,job,shell,ray] [--out-dir benchmarks/results/index-folder --name NAME]

A temporary folder of ``--images`` photos (with ``--small``: 250x250 one-face JPEGs made from the
shared aligned crops and celeb5 photos, see small_photos()) is built from the labeled photos in
../shared/data/faces (photos/ and celeb5/), or from insightface's sample photos when those are
absent, repeated with distinct bytes (a few bytes appended after the image data) so that every
file is a new image to the job. Each run of a mode is its own process on a fresh data directory,
so its peak resident memory (ru_maxrss) is its own. The modes:

- loop (the strict peer): one in-process FacePipe.call("IndexFaces") per image, one after the
  other, with the engine's thread budget as the user has it (FACEPIPE_THREADS, default: the
  usable cores, as intra-op threads of one call); models loaded before the clock starts.
- job: `facepipe index-folder DIR --collection-id bench --create-collection --report R.jsonl`
  run in-process through its command-line entry point with default options (local engine: one
  single-threaded stream per usable core, chunks of images in parallel); models loaded before
  the clock starts.
- shell (what users of comparable tools write): one `facepipe index-faces --image-bytes
  fileb://IMAGE` command per image, on the first ``--shell-images`` images; each command pays
  the process start and the model load, as a shell loop does.
- ray: index-folder with ``--engine ray`` on a local Ray instance (needs `pip install ray`); Ray's
  start-up and the actors' model load are inside the clock.
- cli: `facepipe index-folder` with default options as its own process, the models loading inside
  it (the prepared files and the embedder's precision choice come from the cache);
- opencv: a plain OpenCV DNN loop (cv2.FaceDetectorYN + cv2.FaceRecognizerSF on the prepared
  float32 files) over the same files, as its own process.

Every mode's whole process is timed too (process_images_per_second); cli over opencv compares
whole processes. Rounds interleave the modes (the order rotates every round) so that all of them see the same
machine load; each round's ratios job/loop and job/shell are recorded, and the figures reported
are medians over the rounds. Each run also records the faces it indexed; the job's faces (count,
boxes, confidences per ExternalImageId) must equal the loop's and the shell loop's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"
COLLECTION_ID = "bench"
MODES = ("loop", "job", "shell", "ray", "cli", "opencv")
SMALL_SIDE = 250
"""Side of the small one-face photos (--small), pixels."""


def source_images() -> list[Path]:
    """The photos to repeat: the shared labeled photos if present, else insightface's samples."""
    found = sorted(
        p
        for sub in ("photos", "celeb5")
        for p in (SHARED_FACES / sub).rglob("*")
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stat().st_size <= 5 * 2**20
    )
    if found:
        return found
    from pipeline.vision.samples import sample_photos

    return sorted(p for p in sample_photos().iterdir() if p.suffix.lower() in (".jpg", ".png"))


def small_photos() -> list[bytes]:
    """250x250 one-face JPEGs made from the shared data: the aligned 112x112 crops with a replicated
    border (the face then fills about half the photo) rescaled, and the celeb5 photos
    centre-cropped to a square and rescaled."""
    import cv2

    photos = []
    for path in sorted((SHARED_FACES / "aligned").glob("*/*")):
        crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if crop is None:
            continue
        padded = cv2.copyMakeBorder(crop, 50, 50, 50, 50, cv2.BORDER_REPLICATE)
        photos.append(cv2.resize(padded, (SMALL_SIDE, SMALL_SIDE), interpolation=cv2.INTER_AREA))
    for path in sorted((SHARED_FACES / "celeb5").glob("*/*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        h, w = image.shape[:2]
        side = min(h, w)
        square = image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        photos.append(cv2.resize(square, (SMALL_SIDE, SMALL_SIDE), interpolation=cv2.INTER_AREA))
    if not photos:
        raise SystemExit(f"--small needs the shared faces at {SHARED_FACES}")
    return [cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for photo in photos]


def build_folder(folder: Path, count: int, small: bool = False) -> tuple[int, int]:
    """Fill ``folder`` with ``count`` distinct image files (the labeled photos, or with ``small``
    the 250x250 one-face photos); returns (their total size in bytes, distinct sources)."""
    if small:
        sources = [(data, ".jpg") for data in small_photos()]
    else:
        sources = [(path.read_bytes(), path.suffix.lower()) for path in source_images()]
    total = 0
    for i in range(count):
        raw, suffix = sources[i % len(sources)]
        data = raw + b"\0" * (1 + i // len(sources))
        (folder / f"{i:06d}{suffix}").write_bytes(data)
        total += len(data)
    return total, len(sources)


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or its largest waited-for child), MiB."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def facepipe_command() -> list[str]:
    """How a shell runs facepipe: the installed console script, else this Python on its entry point."""
    script = shutil.which("facepipe") or str(Path(sys.executable).with_name("facepipe"))
    if Path(script).is_file():
        return [script]
    return [sys.executable, "-c", "import sys; from pipeline.cli.main import main; sys.exit(main())"]


def faces_digest(fp: Any) -> dict[str, list[list[float]]]:
    """Per ExternalImageId, its faces as sorted [left, top, width, height, confidence] rows."""
    from pipeline.jobs.calls import iter_faces

    digest: dict[str, list[list[float]]] = {}
    for face in iter_faces(fp, COLLECTION_ID):
        box = face["BoundingBox"]
        row = [round(float(box[k]), 4) for k in ("Left", "Top", "Width", "Height")]
        digest.setdefault(str(face.get("ExternalImageId")), []).append(
            [*row, round(float(face["Confidence"]), 2)]
        )
    return {key: sorted(rows) for key, rows in sorted(digest.items())}


_LAST_SECONDS = [0.0, 0.0]
"""Wall seconds and CPU seconds (user + system) of the timed part of the last run."""


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Clock:
    """Times a block: wall and CPU seconds go to _LAST_SECONDS."""

    def __enter__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def __exit__(self, *exc: object) -> None:
        _LAST_SECONDS[:] = [time.perf_counter() - self.wall, _cpu_seconds() - self.cpu]


def _loop(folder: Path, data_dir: Path) -> tuple[int, int, int]:
    """Strict peer: IndexFaces per image in this process; returns (images, faces, failed)."""
    from pipeline.config import Settings
    from pipeline.errors import RekognitionError
    from pipeline.service import FacePipe

    files = sorted(folder.iterdir())
    with contextlib.closing(FacePipe(Settings.from_env(data_dir=data_dir))) as fp:
        fp.call("CreateCollection", {"CollectionId": COLLECTION_ID})
        fp.engine.analyze(fp.engine.decode(files[0].read_bytes()))  # load the models untimed
        faces = failed = 0
        with _Clock():
            for path in files:
                try:
                    response = fp.call(
                        "IndexFaces",
                        {
                            "CollectionId": COLLECTION_ID,
                            "Image": {"Bytes": path.read_bytes()},
                            "ExternalImageId": path.name,
                        },
                    )
                    faces += len(response["FaceRecords"])
                except RekognitionError:
                    failed += 1
    return len(files), faces, failed


def _job(folder: Path, data_dir: Path, engine: str, preload: bool = True) -> tuple[int, int, int]:
    """`facepipe index-folder` through its entry point; returns (images, faces, failed). Without
    ``preload`` the models load inside the job, as in a `facepipe index-folder` process."""
    from pipeline.cli.jobs import index_folder_main
    from pipeline.config import Settings
    from pipeline.jobs.analyzers import engine_threads
    from pipeline.jobs.runner import DEFAULT_LOCAL_WORKERS
    from pipeline.vision.engine import get_engine

    settings = Settings.from_env(data_dir=data_dir)
    if engine == "local" and preload:  # load the models the job will use (same settings), untimed
        job_settings = replace(settings, threads=engine_threads(settings.threads, DEFAULT_LOCAL_WORKERS))
        warm = get_engine(job_settings)
        warm.analyze(warm.decode(sorted(folder.iterdir())[0].read_bytes()))
    argv = [str(folder), "--collection-id", COLLECTION_ID, "--create-collection", "--quiet"]
    argv += ["--data-dir", str(data_dir), "--report", str(data_dir / "report.jsonl"), "--engine", engine]
    out = io.StringIO()
    with _Clock(), contextlib.redirect_stdout(out):
        status = index_folder_main(argv)
    if status != 0:
        raise RuntimeError(f"index-folder exited with status {status}")
    summary = json.loads(out.getvalue())
    return int(summary["Images"]), int(summary["FacesIndexed"]), int(summary["Failed"])


def _opencv(folder: Path) -> tuple[int, int, int]:
    """Plain OpenCV DNN loop (the whole-process peer): cv2.FaceDetectorYN + cv2.FaceRecognizerSF on
    the prepared float32 model files, every file read, decoded, detected (longer side at most the
    detector's max_side, as facepipe does), each face aligned and embedded; returns (images,
    faces, failed)."""
    import cv2
    import numpy as np

    from pipeline.bench.suite_pipeline import prepared_model_files
    from pipeline.config import Settings
    from pipeline.vision.packs import read_manifest

    spec = read_manifest("default")["detector"]
    yunet, sface = prepared_model_files(Settings.from_env().cache_dir)
    detector = cv2.FaceDetectorYN.create(
        str(yunet), "", (320, 320), float(spec["score_threshold"]), float(spec["nms_iou"]), 5000
    )
    recognizer = cv2.FaceRecognizerSF.create(str(sface), "")
    max_side = int(spec["max_side"])
    files = sorted(folder.iterdir())
    faces = failed = 0
    vectors = []
    with _Clock():
        for path in files:
            bgr = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                failed += 1
                continue
            scale = min(1.0, max_side / max(bgr.shape[:2]))
            small = (
                bgr
                if scale == 1.0
                else cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            )
            detector.setInputSize((small.shape[1], small.shape[0]))
            _, found = detector.detect(small)
            for face in found if found is not None else []:
                full = face.copy()
                full[:14] /= scale
                vectors.append(recognizer.feature(recognizer.alignCrop(bgr, full)).reshape(-1))
                faces += 1
    return len(files), faces, failed


def _shell(folder: Path, data_dir: Path, images: int) -> tuple[int, int, int]:
    """Shell peer: one `facepipe index-faces` process per image; returns (images, faces, failed)."""
    base = [*facepipe_command(), "--data-dir", str(data_dir)]
    subprocess.run(
        [*base, "create-collection", "--collection-id", COLLECTION_ID], check=True, capture_output=True
    )
    files = sorted(folder.iterdir())[:images]
    faces = failed = 0
    with _Clock():
        for path in files:
            operation = ["index-faces", "--collection-id", COLLECTION_ID, "--image-bytes", f"fileb://{path}"]
            child = subprocess.run(
                [*base, *operation, "--external-image-id", path.name], capture_output=True, text=True
            )
            if child.returncode == 0:
                faces += len(json.loads(child.stdout)["FaceRecords"])
            else:
                failed += 1
    return len(files), faces, failed


def run_mode(mode: str, folder: Path, data_dir: Path, shell_images: int) -> dict[str, Any]:
    """Run one mode once (in this child process) and describe it; writes the faces digest."""
    from pipeline.config import Settings
    from pipeline.service import FacePipe

    load_before = os.getloadavg()[0]
    if mode == "loop":
        images, faces, failed = _loop(folder, data_dir)
    elif mode == "opencv":
        images, faces, failed = _opencv(folder)
    elif mode == "cli":
        images, faces, failed = _job(folder, data_dir, "local", preload=False)
    elif mode == "shell":
        images, faces, failed = _shell(folder, data_dir, shell_images)
    else:
        images, faces, failed = _job(folder, data_dir, "ray" if mode == "ray" else "local")
    seconds, cpu_seconds = _LAST_SECONDS
    peak = peak_rss_mib(resource.RUSAGE_CHILDREN if mode == "shell" else resource.RUSAGE_SELF)
    if mode != "opencv":
        with contextlib.closing(FacePipe(Settings.from_env(data_dir=data_dir))) as fp:
            (data_dir / "digest.json").write_text(json.dumps(faces_digest(fp)))
    return {
        "mode": mode,
        "images": images,
        "faces_indexed": faces,
        "failed": failed,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 3),
        "cpu_ms_per_image": round(1000 * cpu_seconds / images, 2),
        "peak_rss_mib": round(peak, 1),
        "load_average_1min_before": round(load_before, 2),
    }


def source_state() -> dict[str, Any]:
    """The commit measured and the files changed on top of it (the working tree is what runs)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in status.splitlines() if len(line) > 3]
    return {"commit": git("rev-parse", "HEAD").strip(), "changed_files": changed}


def _cpu_name() -> str:
    """The CPU's model name and SIMD flags, as the reports name it."""
    from pipeline.bench.machine import cpu_flags, cpu_model

    return f"{cpu_model()} ({', '.join(cpu_flags())})"


def _same_faces(ours: dict[str, Any], peer: dict[str, Any]) -> bool:
    """True when every image the peer indexed has the same faces in ours (boxes, confidences)."""
    return bool(peer) and all(ours.get(image_id) == faces for image_id, faces in peer.items())


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def summarize(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Medians per mode and of the per-round ratios of the job over each peer."""
    modes = sorted({mode for r in rounds for mode in r}, key=MODES.index)
    medians = {
        mode: {
            "images": rounds[0][mode]["images"] if mode in rounds[0] else None,
            "images_per_second": _median([r[mode]["images_per_second"] for r in rounds if mode in r]),
            "process_images_per_second": _median(
                [r[mode]["process_images_per_second"] for r in rounds if mode in r]
            ),
            "cpu_ms_per_image": _median([r[mode]["cpu_ms_per_image"] for r in rounds if mode in r]),
            "peak_rss_mib": max(r[mode]["peak_rss_mib"] for r in rounds if mode in r),
        }
        for mode in modes
    }
    ratios: dict[str, Any] = {}
    # job over the in-process peers: the timed part; cli over opencv: whole processes
    for ours, peer, key in (
        ("job", "loop", "images_per_second"),
        ("job", "shell", "images_per_second"),
        ("cli", "opencv", "process_images_per_second"),
    ):
        per_round = [round(r[ours][key] / r[peer][key], 2) for r in rounds if ours in r and peer in r]
        if per_round:
            ratios[f"{ours}_over_{peer}"] = {"per_round": per_round, "median": _median(per_round)}
    return {"medians": medians, "ratios": ratios}


def markdown(report: dict[str, Any]) -> str:
    """A short human summary of the report."""
    lines = [
        f"# index-folder benchmark ({report['images']} images, {report['cpus']} CPUs, {report['rounds']} rounds)",
        "",
        f"Folder: {report['images']} distinct JPEG/PNG files ({report['folder_mib']} MiB) built from "
        f"{report['source_images']} "
        + (
            "one-face 250x250 photos (aligned crops and celeb5, rescaled)"
            if report.get("small_photos")
            else "labeled photos"
        )
        + (
            f"; shell loop on the first {report['shell_images']} of them. "
            if "shell" in report["summary"]["medians"]
            else ". "
        )
        + "Rounds interleave the modes; figures are medians over the rounds. Whole process: the "
        "mode's own process from start to exit (imports, model load from the cache, the work).",
        f"CPU: {report.get('cpu', '?')}.",
        "",
        "| mode | what runs | images/s (median) | whole process, images/s | CPU ms per image | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    what = {
        "loop": 'in-process `FacePipe.call("IndexFaces")` per image (models preloaded)',
        "job": "`facepipe index-folder` (local engine, default options, models preloaded)",
        "shell": "one `facepipe index-faces --image-bytes fileb://...` process per image",
        "ray": "`facepipe index-folder --engine ray` (Ray start and model load included; CPU, RSS: driver only)",
        "cli": "`facepipe index-folder` as its own process (models load inside it)",
        "opencv": "plain OpenCV DNN loop (FaceDetectorYN + FaceRecognizerSF, prepared float32 files) as its own process",
    }
    for mode, figures in report["summary"]["medians"].items():
        lines.append(
            f"| {mode} | {what[mode]} | {figures['images_per_second']:.2f} | "
            f"{figures['process_images_per_second']:.2f} | {figures['cpu_ms_per_image']:.1f} "
            f"| {figures['peak_rss_mib']:.0f} |"
        )
    lines += ["", "| ratio | per round | median |", "|---|---|---|"]
    for name, ratio in report["summary"]["ratios"].items():
        per_round = ", ".join(f"{r:.2f}x" for r in ratio["per_round"])
        lines.append(f"| {name.replace('_', ' ')} | {per_round} | **{ratio['median']:.2f}x** |")
    equal = report["equal_results"]
    lines += [
        "",
        "ONNX Runtime threads: loop and shell as the user has them (FACEPIPE_THREADS, unset: ONNX Runtime's "
        "default, one per core); job: one worker per core, one thread each. CPU ms per image: user + system "
        "time of the timed part (the job spreads about the same CPU time per image over all cores).",
        "",
        "Equal results (same faces, boxes and confidences per image as the job): "
        + ", ".join(f"{peer}: {'yes' if ok else 'NO'}" for peer, ok in equal.items()),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the folder, run the rounds (each mode in its own process), print and save the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000, help="images in the folder (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--shell-images", type=int, default=30, help="images of the shell loop (default 30)")
    parser.add_argument("--modes", default="loop,job,shell", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument(
        "--small",
        action="store_true",
        help="250x250 one-face photos made from the shared aligned crops and celeb5",
    )
    parser.add_argument("--out-dir", type=Path, help="write NAME.json and NAME.md here")
    parser.add_argument("--name", help="file name stem of the results (default: <date>-cpu-<images>)")
    parser.add_argument("--run-mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_mode:
        print(json.dumps(run_mode(args.run_mode, args.folder, args.data_dir, args.shell_images)))
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
    if "ray" in modes:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            print("ray: skipped (ray is not installed)", file=sys.stderr)
            modes.remove("ray")
    rounds: list[dict[str, dict[str, Any]]] = []
    equal: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-folder-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        folder_bytes, distinct = build_folder(folder, args.images, small=args.small)
        for round_index in range(args.rounds):
            order = modes[round_index % len(modes) :] + modes[: round_index % len(modes)]
            results: dict[str, dict[str, Any]] = {}
            digests: dict[str, Any] = {}
            for mode in order:
                data_dir = Path(tmp) / f"home-{mode}-{round_index}"
                command = [sys.executable, __file__, "--run-mode", mode, "--folder", str(folder)]
                command += ["--data-dir", str(data_dir), "--shell-images", str(args.shell_images)]
                env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
                started = time.perf_counter()
                child = subprocess.run(command, capture_output=True, text=True, env=env)
                process_seconds = time.perf_counter() - started
                if child.returncode != 0:
                    print(f"{mode}: failed\n{child.stderr}", file=sys.stderr)
                    return 1
                result = json.loads(child.stdout.strip().splitlines()[-1])
                # the whole child process: start, imports, model load (cached preparation), the work
                # and, except for opencv, the faces digest written after it
                result["process_seconds"] = round(process_seconds, 3)
                result["process_images_per_second"] = round(result["images"] / process_seconds, 3)
                results[mode] = result
                if (data_dir / "digest.json").is_file():
                    digests[mode] = json.loads((data_dir / "digest.json").read_text())
                shutil.rmtree(data_dir, ignore_errors=True)
                print(
                    f"round {round_index + 1} {mode:>5}: {result['images_per_second']:7.2f} images/s  "
                    f"{result['images']} images  {result['faces_indexed']} faces  {result['seconds']:.1f} s  "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB  load {result['load_average_1min_before']}",
                    file=sys.stderr,
                )
            ours = digests.get("job", digests.get("cli"))
            if ours is not None:
                for peer in ("loop", "shell", "ray", "cli"):
                    if peer in digests and digests[peer] is not ours:
                        same = _same_faces(ours, digests[peer])
                        equal[peer] = equal.get(peer, True) and same
            rounds.append(results)
    report = {
        "benchmark": "index_folder",
        "images": args.images,
        "shell_images": args.shell_images,
        "source_images": distinct,
        "small_photos": args.small,
        "folder_mib": round(folder_bytes / 2**20, 1),
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "cpu": _cpu_name(),
        "facepipe_threads_env": os.environ.get("FACEPIPE_THREADS", ""),
        "source": source_state(),
        "runs": rounds,
        "summary": summarize(rounds),
        "equal_results": equal,
    }
    text = markdown(report)
    print(json.dumps(report, indent=2))
    print(text, file=sys.stderr)
    if args.out_dir:
        name = args.name or f"{time.strftime('%Y-%m-%d')}-cpu-{args.images}"
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out_dir / f"{name}.md").write_text(text)
    return 0 if all(equal.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
