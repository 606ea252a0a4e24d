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
peak resident memory; embedding alone per face (facepipe's embedder, in the precision the engine
chose on this CPU, against OpenCV DNN running the prepared float32 graph on batched blobs, both on
--threads threads, interleaved); and achieved GFLOP/s against the CPU's float32 peak
(pipeline.bench.machine.float32_peak: the larger of cores x nominal GHz x the
microarchitecture's FLOP/cycle, 16 on Zen 1, 32 on Zen 2-4 and AVX2 Intel, 64 with 512-bit FMA
units, and numpy's measured sgemm rate), and against the measured sgemm rate alone. With an int8
embedder the FLOP count is the float32 model's: the figure is then an effective rate.

Usage: python benchmarks/bench_pipeline.py [--images 113] [--runs 5] [--threads 2] [--out benchmarks/results]
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

from pipeline.bench.machine import cpu_flags, cpu_model, float32_peak  # noqa: E402
from pipeline.bench.suite_pipeline import SFACE_GFLOP_PER_FACE, prepared_model_files  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.vision.align import align_face  # noqa: E402
from pipeline.vision.detect import input_geometry, letterbox  # noqa: E402
from pipeline.vision.engine import FaceEngine, get_engine  # noqa: E402
from pipeline.vision.packs import read_manifest  # noqa: E402

YUNET_GFLOPS_640 = 0.69
"""YuNet GFLOPs at a 640x640 input (scales with input area)."""
SFACE_GFLOPS = SFACE_GFLOP_PER_FACE


def pick_images(data: Path, count: int) -> list[Path]:
    """``count`` photos: the photos/ set first, then celeb5/, in a fixed order."""
    files = sorted((data / "photos").glob("*/*.jpg")) + sorted((data / "celeb5").glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no photos under {data}")
    return files[:count]


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


def embed_comparison(
    engine: FaceEngine, net: Any, crops: np.ndarray, runs: int, batch: int = 32
) -> dict[str, float]:
    """Milliseconds per face embedding ``batch`` aligned crops: facepipe's single-call embedder
    (--threads intra-op threads) against OpenCV DNN's forward of one batched blob, interleaved,
    the median of ``runs`` runs each."""
    reps = -(-batch // len(crops))
    faces = np.ascontiguousarray(np.concatenate([crops] * reps)[:batch])
    blob = cv2.dnn.blobFromImages(list(faces), 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
    ours_s, cv_s = [], []
    engine.embed_aligned(faces)
    net.setInput(blob)
    net.forward()
    for _ in range(runs):
        start = time.perf_counter()
        engine.embed_aligned(faces)
        ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        net.setInput(blob)
        net.forward()
        cv_s.append(time.perf_counter() - start)
    ours, peer = statistics.median(ours_s), statistics.median(cv_s)
    return {
        "batch": batch,
        "facepipe_ms_per_face": 1000 * ours / batch,
        "opencv_dnn_ms_per_face": 1000 * peer / batch,
        "ratio": peer / ours,
    }


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
    settings = Settings(provider="cpu", threads=args.threads)
    engine = get_engine(settings)
    manifest = read_manifest("default")["detector"]
    cv2.setNumThreads(args.threads)
    yunet, sface = prepared_model_files(settings.cache_dir)  # the prepared float32 files
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
    crops = []
    for blob in blobs[:16]:
        image = engine.decode(blob, max_bytes=len(blob))
        crops += [align_face(image.bgr, lm) for lm in engine.pack.detector.detect(image.bgr).landmarks]
    embed = embed_comparison(engine, cv2.dnn.readNet(str(sface)), np.stack(crops), args.runs * 3)

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
    peak_figures = float32_peak(args.threads)
    peak = peak_figures["peak_gflop_per_s"] * 1e9
    sgemm = peak_figures["measured_sgemm_gflop_per_s"] * 1e9
    achieved = gflop * 1e9 / statistics.median(ours_times)
    opencv_achieved = gflop * 1e9 / statistics.median(cv_times)
    result = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "embedder_variant": engine.pack.embedder_variant,
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
        "embed_per_face": embed,
        "same_face_count_images": same_count,
        "embedding_cosine_ours_vs_opencv": {
            "min": min(cosines, default=float("nan")),
            "mean": float(np.mean(cosines)) if cosines else float("nan"),
        },
        "gflop_per_pass": gflop,
        "achieved_gflop_per_s": achieved / 1e9,
        "opencv_achieved_gflop_per_s": opencv_achieved / 1e9,
        "nominal_peak_gflop_per_s": peak_figures["nominal_gflop_per_s"],
        "peak_basis": peak_figures["basis"],
        "measured_sgemm_gflop_per_s": sgemm / 1e9,
        "peak_gflop_per_s": peak / 1e9,
        "fraction_of_peak": achieved / peak,
        "opencv_fraction_of_peak": opencv_achieved / peak,
        "fraction_of_measured_sgemm": achieved / sgemm,
        "opencv_fraction_of_measured_sgemm": opencv_achieved / sgemm,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
