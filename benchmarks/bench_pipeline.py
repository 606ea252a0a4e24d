"""End-to-end face pipeline throughput: facepipe's engine against OpenCV's DNN module.

Both run the same prepared models (YuNet + SFace) on the same images with the same thread count,
in one process: decode -> detect (same letterboxed input size) -> align -> embed, every face.
OpenCV uses cv2.FaceDetectorYN + cv2.FaceRecognizerSF (one face at a time, as its API takes);
facepipe uses FaceEngine.analyze_many (embeddings batched across images).

Reported: images/s (median of --runs runs, with min and max) for each and the ratio; facepipe's
per-stage latency; agreement (face counts, cosine between the two embeddings of each face);
peak resident memory; and achieved GFLOP/s against the CPU's float32 peak
(cores x GHz x 32 FLOP/cycle for AVX2 FMA; 64 with AVX-512).

Usage: python benchmarks/bench_pipeline.py [--images 20] [--runs 3] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.vision.align import align_face  # noqa: E402
from pipeline.vision.detect import input_geometry, letterbox  # noqa: E402
from pipeline.vision.engine import FaceEngine, get_engine  # noqa: E402
from pipeline.vision.packs import read_manifest  # noqa: E402

YUNET_GFLOPS_640 = 0.69
"""YuNet GFLOPs at a 640x640 input (scales with input area)."""
SFACE_GFLOPS = 1.15
"""SFace GFLOPs per face."""


def pick_images(data: Path, count: int) -> list[Path]:
    """``count`` photos: the photos/ set first, then celeb5/, in a fixed order."""
    files = sorted((data / "photos").glob("*/*.jpg")) + sorted((data / "celeb5").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {data}")
    return files[:count]


def peak_flops(threads: int) -> tuple[float, str]:
    """Float32 peak FLOP/s of ``threads`` cores and how it was computed."""
    mhz, flags = 0.0, ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz") and not mhz:
            mhz = float(line.split(":")[1])
        if line.startswith("flags") and not flags:
            flags = line
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 16
    return threads * mhz * 1e6 * per_cycle, f"{threads} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"


def run_ours(
    engine: FaceEngine, blobs: list[bytes], batch: int
) -> tuple[float, list[list[Any]], dict[str, float]]:
    """Seconds for the whole set, faces per image, and per-stage seconds from a separate timed pass."""
    start = time.perf_counter()
    results: list[list[Any]] = []
    for first in range(0, len(blobs), batch):
        images = [engine.decode(b, max_bytes=len(b)) for b in blobs[first : first + batch]]
        results.extend(engine.analyze_many(images))
    total = time.perf_counter() - start
    return total, results, stage_times(engine, blobs)


def stage_times(engine: FaceEngine, blobs: list[bytes]) -> dict[str, float]:
    """Seconds spent per stage over the set: decode, detect, align (+ pose/quality), embed."""
    stages = dict.fromkeys(("decode", "detect", "align", "embed"), 0.0)
    for blob in blobs:
        t0 = time.perf_counter()
        image = engine.decode(blob, max_bytes=len(blob))
        t1 = time.perf_counter()
        detections = engine.pack.detector.detect(image.bgr)
        t2 = time.perf_counter()
        crops = [align_face(image.bgr, lm) for lm in detections.landmarks]
        t3 = time.perf_counter()
        if crops:
            engine.embed_aligned(np.stack(crops))
        t4 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[key] += dt
    return stages


def run_opencv(
    detector: Any, recognizer: Any, blobs: list[bytes], max_side: int
) -> tuple[float, list[list[np.ndarray]]]:
    """Seconds for the whole set with OpenCV DNN, and the embeddings per image (largest box first)."""
    start = time.perf_counter()
    results = []
    for blob in blobs:
        bgr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        canvas, scale = letterbox(bgr, max_side)  # the same detector input as facepipe's
        detector.setInputSize((canvas.shape[1], canvas.shape[0]))
        _, faces = detector.detect(canvas)
        vectors = []
        if faces is not None:
            faces = faces[np.argsort(-(faces[:, 2] * faces[:, 3]))]
            for face in faces:
                full = face.copy()
                full[:14] /= scale
                crop = recognizer.alignCrop(bgr, full)
                feature = recognizer.feature(crop).reshape(-1)
                vectors.append(feature / np.linalg.norm(feature))
        results.append(vectors)
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    """Run both pipelines, print and save the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="images per analyze_many call")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)

    files = pick_images(args.data, args.images)
    blobs = [f.read_bytes() for f in files]
    engine = get_engine(Settings(provider="cpu", threads=args.threads))
    manifest = read_manifest("default")["detector"]
    cv2.setNumThreads(args.threads)
    model_dir = Path(engine.pack.detector.session._model_path).parent  # type: ignore[attr-defined]
    yunet = next(model_dir.glob("face_detection_yunet*.onnx"))
    sface = next(model_dir.glob("face_recognition_sface*.onnx"))
    detector = cv2.FaceDetectorYN.create(
        str(yunet), "", (320, 320), float(manifest["score_threshold"]), float(manifest["nms_iou"]), 5000
    )
    recognizer = cv2.FaceRecognizerSF.create(str(sface), "")

    run_ours(engine, blobs[:2], args.batch)  # warm-up
    run_opencv(detector, recognizer, blobs[:2], int(manifest["max_side"]))
    ours_times, cv_times = [], []
    for _ in range(args.runs):
        seconds, ours_faces, stages = run_ours(engine, blobs, args.batch)
        ours_times.append(seconds)
        seconds, cv_faces = run_opencv(detector, recognizer, blobs, int(manifest["max_side"]))
        cv_times.append(seconds)

    n = len(blobs)
    ours_ips = [n / t for t in ours_times]
    cv_ips = [n / t for t in cv_times]
    same_count = sum(len(a) == len(b) for a, b in zip(ours_faces, cv_faces, strict=True))
    cosines = [
        float(face.embedding @ vec)
        for a, b in zip(ours_faces, cv_faces, strict=True)
        if len(a) == len(b)
        for face, vec in zip(a, b, strict=True)
    ]
    total_faces = sum(len(a) for a in ours_faces)
    gflop = 0.0
    for blob in blobs:
        image = engine.decode(blob, max_bytes=len(blob))
        _, in_w, in_h = input_geometry(image.width, image.height, int(manifest["max_side"]))
        gflop += YUNET_GFLOPS_640 * in_w * in_h / (640 * 640)
    gflop += SFACE_GFLOPS * total_faces
    peak, peak_note = peak_flops(args.threads)
    achieved = gflop * 1e9 / statistics.median(ours_times)
    result = {
        "images": n,
        "faces": total_faces,
        "threads": args.threads,
        "runs": args.runs,
        "facepipe_images_per_s": {
            "median": statistics.median(ours_ips),
            "min": min(ours_ips),
            "max": max(ours_ips),
        },
        "opencv_images_per_s": {"median": statistics.median(cv_ips), "min": min(cv_ips), "max": max(cv_ips)},
        "ratio": statistics.median(ours_ips) / statistics.median(cv_ips),
        "facepipe_stage_ms_per_image": {k: 1000 * v / n for k, v in stages.items()},
        "same_face_count_images": same_count,
        "embedding_cosine_ours_vs_opencv": {
            "min": min(cosines, default=float("nan")),
            "mean": float(np.mean(cosines)) if cosines else float("nan"),
        },
        "gflop_per_pass": gflop,
        "achieved_gflop_per_s": achieved / 1e9,
        "peak_gflop_per_s": peak / 1e9,
        "peak_basis": peak_note,
        "fraction_of_peak": achieved / peak if peak else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
