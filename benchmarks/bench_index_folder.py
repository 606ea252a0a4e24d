"""Folder indexing benchmark: images/s and peak memory, `index-folder` against a plain IndexFaces loop.

    python benchmarks/bench_index_folder.py --images 1000 [--modes loop,local,ray] [--out results.json]

A temporary folder of ``--images`` photos is built from the labeled photos in
../shared/data/faces (photos/ and celeb5/), or from insightface's sample photos when those are
absent, repeated with distinct bytes (a few bytes appended after the image data) so that every
file is a new image to the job. Each mode runs in its own process on a fresh data directory, so
its peak resident memory (ru_maxrss) is its own:

- loop: one FacePipe.call("IndexFaces") per image, one after the other (what a shell loop over
  `facepipe index-faces` or boto3 does, without the process start-up per image), with ONNX
  Runtime's thread setting as the user has it (FACEPIPE_THREADS, default: ONNX Runtime's own);
- local: pipeline.jobs with the local engine (parallel workers, cores shared out between them,
  batched embeddings, batched writes);
- ray: pipeline.jobs with the Ray engine on a local Ray instance (needs `pip install ray`).

Every mode indexes the same files with the same models; the result records images/s, faces indexed, wall seconds and peak RSS per mode, and the speed-up
of each job mode over the loop.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = REPO_ROOT.parent / "shared" / "data" / "faces"


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
    import insightface

    samples = Path(insightface.__file__).parent / "data" / "images"
    return sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def build_folder(folder: Path, count: int) -> int:
    """Fill ``folder`` with ``count`` distinct image files; returns their total size in bytes."""
    sources = source_images()
    total = 0
    for i in range(count):
        src = sources[i % len(sources)]
        data = src.read_bytes() + b"\0" * (1 + i // len(sources))
        (folder / f"{i:06d}{src.suffix.lower()}").write_bytes(data)
        total += len(data)
    return total


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_mode(mode: str, folder: Path, data_dir: Path, workers: int, batch_size: int) -> dict[str, Any]:
    """Index ``folder`` into collection 'bench' with ``mode``; runs in the child process."""
    from pipeline.config import Settings
    from pipeline.errors import RekognitionError
    from pipeline.jobs.analyzers import Analyzer, LocalAnalyzer, engine_threads
    from pipeline.jobs.index_folder import index_folder
    from pipeline.jobs.ledger import JobLedger
    from pipeline.service import FacePipe

    settings = Settings.from_env(data_dir=data_dir)
    if mode == "local":  # the job shares the cores out between its workers, as `index-folder` does
        settings = replace(settings, threads=engine_threads(settings.threads, workers))
    fp = FacePipe(settings)
    fp.call("CreateCollection", {"CollectionId": "bench"})
    fp.engine.analyze(fp.engine.decode(sorted(folder.iterdir())[0].read_bytes()))  # load models untimed
    files = sorted(folder.iterdir())
    started = time.perf_counter()
    faces = failed = 0
    if mode == "loop":
        for path in files:
            try:
                response = fp.call(
                    "IndexFaces",
                    {
                        "CollectionId": "bench",
                        "Image": {"Bytes": path.read_bytes()},
                        "ExternalImageId": path.name,
                    },
                )
                faces += len(response["FaceRecords"])
            except RekognitionError:
                failed += 1
    else:
        analyzer: Analyzer
        if mode == "ray":
            from pipeline.jobs.ray_engine import RayAnalyzer

            analyzer = RayAnalyzer(
                settings,
                actors=workers,
                batch_size=batch_size,
                max_image_bytes=settings.max_s3_image_bytes,
                threads_per_actor=max(1, (os.cpu_count() or 2) // workers),
            )
        else:
            analyzer = LocalAnalyzer(
                fp.engine, workers=workers, batch_size=batch_size, max_image_bytes=settings.max_s3_image_bytes
            )
        try:
            with JobLedger.in_data_dir(data_dir) as ledger:
                summary = index_folder(
                    fp, ledger, "bench", folder, analyzer, report=io.StringIO(), progress_stream=None
                )
        finally:
            analyzer.close()
        faces, failed = summary.faces_indexed, summary.failed
    seconds = time.perf_counter() - started
    fp.close()
    return {
        "mode": mode,
        "images": len(files),
        "faces_indexed": faces,
        "failed": failed,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(files) / seconds, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "onnxruntime_threads": settings.threads,
    }


def main(argv: list[str] | None = None) -> int:
    """Build the folder, run each mode in its own process, print and optionally save the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000, help="images in the folder (default 1000)")
    parser.add_argument("--modes", default="loop,local,ray", help="comma-separated: loop, local, ray")
    parser.add_argument("--workers", type=int, default=2, help="decode threads (local) or actors (ray)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (local, ray)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--run-mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_mode:
        print(json.dumps(run_mode(args.run_mode, args.folder, args.data_dir, args.workers, args.batch_size)))
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-folder-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        folder_bytes = build_folder(folder, args.images)
        for mode in modes:
            if mode == "ray":
                import importlib.util

                if importlib.util.find_spec("ray") is None:
                    print("ray: skipped (ray is not installed)", file=sys.stderr)
                    continue
            command = [sys.executable, __file__, "--run-mode", mode, "--folder", str(folder)]
            command += ["--data-dir", str(Path(tmp) / f"home-{mode}"), "--workers", str(args.workers)]
            command += ["--batch-size", str(args.batch_size)]
            child = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
            if child.returncode != 0:
                print(f"{mode}: failed\n{child.stderr}", file=sys.stderr)
                continue
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{mode:>5}: {result['images_per_second']:7.2f} images/s  {result['faces_indexed']} faces  "
                f"{result['seconds']:.1f} s  peak RSS {result['peak_rss_mib']:.0f} MiB"
            )
    loop = next((r for r in results if r["mode"] == "loop"), None)
    if loop:
        for result in results:
            result["speedup_over_loop"] = round(result["images_per_second"] / loop["images_per_second"], 2)
    report = {
        "benchmark": "index_folder",
        "images": args.images,
        "folder_mib": round(folder_bytes / 2**20, 1),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
