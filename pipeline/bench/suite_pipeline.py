"""Pipeline suite: detection, alignment and embedding per stage, and images end to end.

Stages run on the model pack's own detector and embedder objects (the ones the engine uses). The
peer is OpenCV's DNN engine on the same prepared model files: ``cv2.FaceDetectorYN`` for detection
and ``cv2.dnn`` with a batched blob for SFace, with the same thread count, timed run by run
interleaved with ours. Faces come from the sample photos shipped with insightface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from pipeline.bench.context import BenchContext
from pipeline.bench.machine import confirm_provider, float32_peak
from pipeline.bench.report import Figure, SuiteResult
from pipeline.bench.stats import speedups, spread, time_paired, time_runs
from pipeline.vision.align import align_face
from pipeline.vision.detect import YuNetDetector, letterbox
from pipeline.vision.model_cache import prepared_path
from pipeline.vision.packs import LoadedPack, read_manifest, verified_file
from pipeline.vision.samples import sample_photos
from pipeline.vision.streams import usable_cores

U8 = npt.NDArray[np.uint8]

SFACE_GFLOP_PER_FACE = 1.15
"""SFace's float32 compute per face, GFLOP."""


def prepared_model_files(cache_dir: Path) -> tuple[Path, Path]:
    """The prepared (detector, embedder) ONNX files of the default pack, as the engine loads them."""
    manifest = read_manifest("default")
    source = manifest["source"]
    paths = []
    for spec in (manifest["detector"], manifest["embedder"]):
        original = verified_file(source["package"], source["version"], spec["path"], spec["sha256"])
        paths.append(prepared_path(original, spec["sha256"], spec["prepare"], cache_dir))
    return paths[0], paths[1]


def _crops(pack: LoadedPack, photos: list[U8]) -> U8:
    """Aligned crops of every face the pack's detector finds in ``photos``."""
    crops = []
    for bgr in photos:
        found = pack.detector.detect(bgr)
        crops += [align_face(bgr, lm) for lm in found.landmarks]
    if not crops:
        raise RuntimeError("no face found in the sample photos")
    return np.stack(crops)


def _tile(crops: U8, n: int) -> U8:
    reps = -(-n // len(crops))
    return np.ascontiguousarray(np.concatenate([crops] * reps)[:n])


def run_pipeline(ctx: BenchContext) -> SuiteResult:
    """Run the pipeline suite with the context's provider, threads and batch sizes."""
    result = SuiteResult("pipeline")
    from pipeline.vision.engine import get_engine

    pack = get_engine(ctx.settings).pack
    ctx.provider = confirm_provider(ctx.provider, list(pack.providers))
    details: dict[str, Any] = {
        "providers": list(pack.providers),
        "model_version": pack.model_version,
        "embedder_variant": pack.embedder_variant,
    }
    if ctx.threads > 0:
        cv2.setNumThreads(ctx.threads)
    photos_dir = sample_photos()
    read = cv2.imread(str(photos_dir / "t1.jpg"))
    if read is None:
        raise RuntimeError(f"cannot read {photos_dir / 't1.jpg'}")
    group: U8 = np.asarray(read, dtype=np.uint8)
    photos = [group]
    crops = _crops(pack, photos)
    details["sample_faces"] = len(crops)
    peer_ok = ctx.settings.model_pack == "default"
    det_path, emb_path = prepared_model_files(ctx.settings.cache_dir) if peer_ok else (None, None)

    # Detection at several input sizes: the same letterboxed canvas for both.
    sizes = [320] if ctx.quick else [256, 320, 480, 640]
    assert isinstance(pack.detector, YuNetDetector) or not peer_ok
    for size in sizes:
        canvas, _ = letterbox(group, size)
        if isinstance(pack.detector, YuNetDetector):
            ours = YuNetDetector(
                pack.detector.session, pack.detector.score_threshold, pack.detector.nms_iou, size
            )
        else:
            ours = pack.detector  # type: ignore[assignment]
        params = {"size": size, "input": f"{canvas.shape[1]}x{canvas.shape[0]}"}

        def run_ours(canvas: U8 = canvas, ours: YuNetDetector = ours) -> object:
            return ours.detect(canvas)

        if det_path is not None:
            yunet = cv2.FaceDetectorYN.create(
                str(det_path),
                "",
                (canvas.shape[1], canvas.shape[0]),
                ours.score_threshold,
                ours.nms_iou,
                5000,
            )

            def run_peer(canvas: U8 = canvas, yunet: Any = yunet) -> object:
                return yunet.detect(canvas)

            ours_s, peer_s = time_paired(run_ours, run_peer, ctx.repeat, ctx.warmup)
            result.add(
                Figure(
                    f"detect.opencv_ms.{size}",
                    f"detect, OpenCV FaceDetectorYN, {params['input']} input",
                    "ms",
                    "lower",
                    spread(peer_s).scaled(1000),
                    params,
                )
            )
            result.add(
                Figure(
                    f"detect.speedup_vs_opencv.{size}",
                    f"detect speed vs OpenCV, {params['input']} input",
                    "x",
                    "higher",
                    spread(speedups(ours_s, peer_s)),
                    params,
                )
            )
        else:
            ours_s = time_runs(run_ours, ctx.repeat, ctx.warmup)
        result.add(
            Figure(
                f"detect.ms.{size}",
                f"detect, {params['input']} input (one image)",
                "ms",
                "lower",
                spread(ours_s).scaled(1000),
                params,
            )
        )

    # Alignment: one 5-point warp per face.
    landmarks = pack.detector.detect(group).landmarks
    align_s = time_runs(lambda: [align_face(group, lm) for lm in landmarks], ctx.repeat, ctx.warmup)
    result.add(
        Figure(
            "align.ms_per_face",
            "align (similarity warp to 112x112), per face",
            "ms",
            "lower",
            spread([s / len(landmarks) for s in align_s]).scaled(1000),
            {"faces": len(landmarks)},
        )
    )

    # Embedding by batch size.
    batches = ctx.pick("pipeline", [1, 2, 4, 8, 16, 32, 64], [1, 8])
    net = cv2.dnn.readNet(str(emb_path)) if emb_path is not None else None
    for batch in batches:
        batch_crops = _tile(crops, batch)
        params = {"batch": batch}

        def embed_ours(batch_crops: U8 = batch_crops) -> object:
            return pack.embedder.embed(batch_crops)

        if net is not None:
            blob = cv2.dnn.blobFromImages(
                list(batch_crops), 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False
            )

            def embed_peer(blob: Any = blob, net: Any = net) -> object:
                net.setInput(blob)
                return net.forward()

            ours_s, peer_s = time_paired(embed_ours, embed_peer, ctx.repeat, ctx.warmup)
            result.add(
                Figure(
                    f"embed.opencv_ms_per_face.b{batch}",
                    f"embed, OpenCV DNN, batch {batch}, per face",
                    "ms",
                    "lower",
                    spread([s / batch for s in peer_s]).scaled(1000),
                    params,
                )
            )
            result.add(
                Figure(
                    f"embed.speedup_vs_opencv.b{batch}",
                    f"embed speed vs OpenCV DNN, batch {batch}",
                    "x",
                    "higher",
                    spread(speedups(ours_s, peer_s)),
                    params,
                )
            )
        else:
            ours_s = time_runs(embed_ours, ctx.repeat, ctx.warmup)
        result.add(
            Figure(
                f"embed.ms_per_face.b{batch}",
                f"embed, batch {batch}, per face",
                "ms",
                "lower",
                spread([s / batch for s in ours_s]).scaled(1000),
                params,
            )
        )
        if batch == batches[-1]:
            # achieved rate against the machine's real float32 peak (measured sgemm or the
            # microarchitecture's FLOP/cycle, whichever is higher); an int8 embedder's figure is
            # an effective rate (the float32 model's FLOPs per face)
            peak = float32_peak(ctx.threads if ctx.threads > 0 else usable_cores())
            details["float32_peak"] = peak
            result.add(
                Figure(
                    f"embed.fraction_of_peak.b{batch}",
                    f"embed, batch {batch}: share of the CPU's float32 peak ({peak['peak_gflop_per_s']:.0f} GFLOP/s)",
                    "x",
                    "higher",
                    spread([SFACE_GFLOP_PER_FACE * batch / (s * peak["peak_gflop_per_s"]) for s in ours_s]),
                    params,
                )
            )

    _end_to_end(ctx, result, photos_dir, details)
    result.details = details
    result.note = (
        f"Provider {', '.join(pack.providers)}; threads {ctx.threads or 'library default'}. "
        f"Embedder {pack.embedder_variant}. Sample photo t1.jpg ({group.shape[1]}x{group.shape[0]}, {len(landmarks)} faces); embedding batches "
        "tile its aligned faces. OpenCV runs the same prepared ONNX files."
    )
    return result


def _end_to_end(ctx: BenchContext, result: SuiteResult, photos_dir: Path, details: dict[str, Any]) -> None:
    """Bytes in, embedded faces out, through the engine the service uses (decode, detect, align, embed)."""
    from pipeline.vision.engine import get_engine

    engine = get_engine(ctx.settings)
    data = (photos_dir / "t1.jpg").read_bytes()

    def one() -> object:
        return engine.analyze(engine.decode(data), max_faces=100, embed=True)

    faces = len(engine.analyze(engine.decode(data), max_faces=100, embed=True))
    seconds = time_runs(one, ctx.repeat, ctx.warmup)
    result.add(
        Figure(
            "e2e.ms_per_image",
            f"end to end (decode, detect, align, embed), t1.jpg with {faces} faces",
            "ms",
            "lower",
            spread(seconds).scaled(1000),
            {"faces": faces},
        )
    )
    result.add(
        Figure(
            "e2e.images_per_s",
            f"end to end, images per second (t1.jpg, {faces} faces)",
            "images/s",
            "higher",
            spread([1.0 / s for s in seconds]),
            {"faces": faces},
        )
    )
    details["e2e_faces"] = faces
