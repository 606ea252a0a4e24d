"""End-to-end face pipeline throughput: facepipe's engine against OpenCV's DNN module.

Both run the same prepared models (YuNet + SFace) on the same images with the same total thread
count (--threads), in one process: decode -> detect (same letterboxed input size) -> align ->
embed, every face. OpenCV uses cv2.FaceDetectorYN + cv2.FaceRecognizerSF (one face at a time, as
its API takes) with cv2.setNumThreads(threads); facepipe uses its engine's streams as the
index-folder job does (FaceEngine.map_chunks: ``threads`` single-threaded streams, each decoding
and analyzing chunks of a few images, their faces embedded in one batch). Runs alternate between
the two, so both see the same machine load.

Reported: images/s (median of --runs runs, with min and max) for each and the ratio; the threads
each side used; facepipe's per-stage latency of one call (the single-call sessions, ``threads``
intra-op threads); agreement (face counts, boxes, cosine between the two embeddings of each face);
peak resident memory; and achieved GFLOP/s against the CPU's float32 peak: the larger of
cores x nominal GHz x FLOP/cycle (32 for AVX2 FMA and for AMD Zen 4's AVX-512 on 256-bit pipes;
64 for 512-bit FMA pipes) and numpy's measured sgemm rate on the same thread count.

Usage: python benchmarks/bench_pipeline.py [--images 113] [--runs 5] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
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


def flop_per_cycle(vendor: str, family: int, flags: set[str]) -> tuple[int, str]:
    """Float32 FLOP per cycle per core from FMA throughput, and the reason.

    AVX2 + FMA: 2 FMA pipes x 8 lanes x 2 = 32. AVX-512 doubles that only where the pipes are
    512 bits wide (Intel server cores, AMD Zen 5 and later); AMD Zen 4 (family 25) runs AVX-512 on
    256-bit pipes, so its peak stays 32.
    """
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family <= 25:
            return 32, "AVX-512 on 256-bit FMA pipes (AMD Zen 4): 2 x 8 lanes x 2"
        return 64, "AVX-512: 2 FMA pipes x 16 lanes x 2"
    if "fma" in flags and "avx2" in flags:
        return 32, "AVX2 + FMA: 2 FMA pipes x 8 lanes x 2"
    if "avx" in flags:
        return 16, "AVX without FMA"
    return 8, "SSE"


def measured_sgemm(threads: int) -> float:
    """Best float32 matrix-multiply rate (FLOP/s) of numpy's BLAS on ``threads`` threads: a floor
    for the real peak (the nominal clock in /proc/cpuinfo can be below the boost clock)."""
    code = (
        "import numpy as np, time\n"
        "a = np.random.rand(2048, 2048).astype(np.float32)\n"
        "a @ a\n"
        "best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(6))\n"
        "print(2 * 2048**3 / best)\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def peak_flops(threads: int) -> tuple[float, float, str]:
    """(nominal float32 peak FLOP/s of ``threads`` cores, measured sgemm FLOP/s, how it was computed)."""
    mhz, vendor, family = 0.0, "", 0
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "cpu MHz" and not mhz:
            mhz = float(value)
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "vendor_id" and not vendor:
            vendor = value
        elif key == "cpu family" and not family:
            family = int(value)
    per_cycle, why = flop_per_cycle(vendor, family, flags)
    nominal = threads * mhz * 1e6 * per_cycle
    note = f"{threads} cores x {mhz / 1000:.2f} GHz (nominal) x {per_cycle} FLOP/cycle ({why})"
    return nominal, measured_sgemm(threads), note


def run_ours(engine: FaceEngine, blobs: list[bytes]) -> tuple[float, list[list[Any]]]:
    """Seconds for the whole set on the engine's streams, and the faces per image."""

    def decode_and_analyze(chunk: list[bytes]) -> list[list[Any]]:
        return engine.analyze_many([engine.decode(b, max_bytes=len(b)) for b in chunk])

    start = time.perf_counter()
    results = [faces for chunk in engine.map_chunks(decode_and_analyze, blobs) for faces in chunk]
    return time.perf_counter() - start, results


def stage_times(engine: FaceEngine, blobs: list[bytes]) -> dict[str, float]:
    """Seconds spent per stage over the set, one image at a time on the single-call sessions:
    decode, detect, align, embed."""
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
        bgr = np.asarray(cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR), dtype=np.uint8)
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
    parser.add_argument("--images", type=int, default=113)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="total threads of each side")
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

    run_ours(engine, blobs[: 4 * engine.streams])  # warm-up
    run_opencv(detector, recognizer, blobs[:4], int(manifest["max_side"]))
    ours_times, cv_times = [], []
    for _ in range(args.runs):
        seconds, ours_faces = run_ours(engine, blobs)
        ours_times.append(seconds)
        seconds, cv_faces = run_opencv(detector, recognizer, blobs, int(manifest["max_side"]))
        cv_times.append(seconds)
    stages = stage_times(engine, blobs)

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
    nominal, sgemm, peak_note = peak_flops(args.threads)
    peak = max(nominal, sgemm)  # a measured rate above the nominal peak means the cores boost
    achieved = gflop * 1e9 / statistics.median(ours_times)
    opencv_achieved = gflop * 1e9 / statistics.median(cv_times)
    result = {
        "images": n,
        "faces": total_faces,
        "threads": args.threads,
        "facepipe_threads": {
            "streams": engine.streams,
            "intra_op_threads_per_stream": 1,
            "total": engine.streams,
        },
        "opencv_threads": cv2.getNumThreads(),
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
        "opencv_achieved_gflop_per_s": opencv_achieved / 1e9,
        "nominal_peak_gflop_per_s": nominal / 1e9,
        "peak_basis": peak_note,
        "measured_sgemm_gflop_per_s": sgemm / 1e9,
        "peak_gflop_per_s": peak / 1e9,
        "fraction_of_peak": achieved / peak,
        "opencv_fraction_of_peak": opencv_achieved / peak,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
