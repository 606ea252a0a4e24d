"""Does the int8 embedder keep the verification figures, and what does it buy? float32 against
int8 on the shared labeled faces, speed against OpenCV DNN, in one run.

    python benchmarks/bench_embedder_precision.py [--data ../shared/data/faces] [--out FILE.json]
        [--rounds 5] [--noise-seeds 8]
    python benchmarks/bench_embedder_precision.py --layers [--out FILE.json]

Embeds every photo of labels.csv twice, through the engine with FACEPIPE_EMBEDDER_PRECISION
float32 and int8 (the fastest int8 variant measured on this CPU), as scripts/calibrate.py does
(largest face of each photo, aligned crops as they are), then compares, with the engine's
calibration:

* per image: cosine of the int8 embedding to the float32 one (mean, min);
* all pairs of labels.csv (about 330,000 stranger and 11,000 genuine pairs): true-accept rate at
  measured false-accept rates 1e-3 and 1e-4, false-accept and false-reject rates at each
  Similarity level;
* the pairs of pairs.csv: accuracy, false-accept and false-reject rates at each level, and 10-fold
  accuracy (the best threshold of 9 folds applied to the 10th);
* the noise floor of those figures: the float32 embeddings perturbed by isotropic noise of the
  same mean cosine as int8's (``--noise-seeds`` draws), the change of each figure (mean, sd). A
  change of int8 within that spread cannot be told from any other perturbation of that size;
* speed: milliseconds per face at batch 1, 4 and 32 of the engine's single-call embedder in
  float32 and int8 and of OpenCV DNN running the prepared float32 graph, same threads, runs
  interleaved (``--rounds`` rounds, medians), and the ratios to OpenCV.

``--layers`` measures instead what 8 bits cost each layer: for each layer group of SFace (a
depthwise or pointwise convolution with its PRelu, or the final BatchNormalization + FC), an int8
graph quantized only there (the int8 embedder's recipe: quantize_static, QOperator, per-channel
int8 weights, uint8 activations with min-max ranges calibrated on the sample photos' faces), and
the mean cosine drop of its embeddings to float32's on every third shared aligned face.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import calibrate  # noqa: E402

from pipeline.bench.machine import cpu_flags, cpu_model  # noqa: E402
from pipeline.bench.suite_pipeline import prepared_model_files  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.vision.engine import FaceEngine, get_engine  # noqa: E402
from pipeline.vision.packs import read_manifest, verified_file  # noqa: E402
from pipeline.vision.precision import calibration_faces  # noqa: E402

LEVELS = (50, 75, 80, 90, 95, 99)
BATCHES = (1, 4, 32)


def ten_fold_accuracy(cosine: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    """Mean accuracy over ``folds`` interleaved folds of the threshold that is best on the others."""
    fold = np.arange(len(cosine)) % folds
    accuracies = []
    for k in range(folds):
        train = fold != k
        order = np.argsort(cosine[train])
        ranked, labels = cosine[train][order], same[train][order]
        # threshold at ranked[i]: accept i.. ; correct = genuine at/above + strangers below
        genuine_above = np.cumsum(labels[::-1])[::-1]
        strangers_below = np.concatenate([[0], np.cumsum(~labels)[:-1]])
        correct = genuine_above + strangers_below
        correct[1:][ranked[1:] == ranked[:-1]] = -1  # a tied value accepts its whole run
        best = ranked[int(np.argmax(correct))]
        test = fold == k
        accuracies.append(float(((cosine[test] >= best) == same[test]).mean()))
    return float(np.mean(accuracies))


class Labeled:
    """The labeled images and pairs of the shared data."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.labels = calibrate.read_labels(data)
        self.paths = [row["path"] for row in self.labels]
        index = {p: i for i, p in enumerate(self.paths)}
        with (data / "pairs.csv").open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        self.pair_a = np.array([index[r["path_a"]] for r in rows])
        self.pair_b = np.array([index[r["path_b"]] for r in rows])
        self.pair_same = np.array([r["same"] == "1" for r in rows])


def figures(labeled: Labeled, vectors: np.ndarray, found: np.ndarray, engine: FaceEngine) -> dict[str, Any]:
    """The verification figures of one set of embeddings (labels.csv order)."""
    pairs = calibrate.all_pairs(labeled.labels, vectors, found)
    a, b, same = labeled.pair_a, labeled.pair_b, labeled.pair_same
    cosine = np.einsum("ij,ij->i", vectors[a], vectors[b])
    cosine[~(found[a] & found[b])] = -1.0
    strangers, genuine = pairs.cosine[~pairs.same], pairs.cosine[pairs.same]
    levels = {}
    for level in LEVELS:
        threshold = engine.calibration.cosine_at(level)
        accept = cosine >= threshold
        levels[str(level)] = {
            "pairs_csv_accuracy_pct": 100 * float((accept == same).mean()),
            "pairs_csv_far_pct": 100 * float((accept & ~same).sum() / (~same).sum()),
            "pairs_csv_frr_pct": 100 * float((~accept & same).sum() / same.sum()),
            "all_pairs_far_pct": 100 * float((strangers >= threshold).mean()),
            "all_pairs_frr_pct": 100 * float((genuine < threshold).mean()),
        }
    ranked = np.sort(strangers)[::-1]
    tar = {}
    for far in (1e-3, 1e-4):
        k = math.floor(far * ranked.size + 1e-9)
        tar[f"tar_pct_at_far_{far:g}"] = 100 * float((genuine > ranked[k]).mean())
    return {
        "levels": levels,
        "all_pairs": tar,
        "pairs_csv_10_fold_accuracy_pct": 100 * ten_fold_accuracy(cosine, same),
        "stranger_pairs": int(strangers.size),
        "genuine_pairs": int(genuine.size),
        "pairs_csv": len(same),
    }


def changes(base: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """other - base of every figure, in points, flattened ('80.all_pairs_frr_pct', ...)."""
    out = {k: other["all_pairs"][k] - v for k, v in base["all_pairs"].items()}
    out["pairs_csv_10_fold_accuracy_pct"] = (
        other["pairs_csv_10_fold_accuracy_pct"] - base["pairs_csv_10_fold_accuracy_pct"]
    )
    for level, at in base["levels"].items():
        out.update({f"{level}.{k}": other["levels"][level][k] - v for k, v in at.items()})
    return out


def noise_floor(
    labeled: Labeled, vectors: np.ndarray, found: np.ndarray, engine: FaceEngine, cosine: float, seeds: int
) -> dict[str, dict[str, float]]:
    """Changes of the figures when the float32 embeddings get isotropic noise of mean cosine
    ``cosine`` to themselves: mean and sd over ``seeds`` draws."""
    base = figures(labeled, vectors, found, engine)
    sigma = math.sqrt(2 * (1 - cosine) / vectors.shape[1])
    draws = []
    for seed in range(seeds):
        noisy = vectors + sigma * np.random.default_rng(seed).standard_normal(vectors.shape).astype(
            np.float32
        )
        noisy /= np.maximum(np.linalg.norm(noisy, axis=1, keepdims=True), 1e-12)
        noisy[~found] = 0.0
        draws.append(changes(base, figures(labeled, noisy, found, engine)))
    return {
        k: {
            "mean": round(statistics.fmean(d[k] for d in draws), 3),
            "sd": round(statistics.pstdev(d[k] for d in draws), 3),
        }
        for k in draws[0]
    }


def speed(
    engines: dict[str, FaceEngine], sface: Path, crops: np.ndarray, rounds: int
) -> list[dict[str, Any]]:
    """Milliseconds per face of each engine's single-call embedder and of OpenCV DNN (prepared
    float32 graph, one batched blob), interleaved, medians of ``rounds`` runs per batch size."""
    net = cv2.dnn.readNet(str(sface))
    rows = []
    for batch in BATCHES:
        faces = np.ascontiguousarray(np.concatenate([crops] * -(-batch // len(crops)))[:batch])
        blob = cv2.dnn.blobFromImages(list(faces), 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
        times: dict[str, list[float]] = {name: [] for name in [*engines, "opencv_dnn"]}
        for _ in range(rounds + 1):  # the first round warms up
            for name, engine in engines.items():
                start = time.perf_counter()
                engine.embed_aligned(faces)
                times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            net.setInput(blob)
            net.forward()
            times["opencv_dnn"].append(time.perf_counter() - start)
        ms = {name: 1000 * statistics.median(t[1:]) / batch for name, t in times.items()}
        rows.append(
            {
                "batch": batch,
                "ms_per_face": {k: round(v, 3) for k, v in ms.items()},
                "ratio_to_opencv_dnn": {
                    k: round(ms["opencv_dnn"] / v, 3) for k, v in ms.items() if k != "opencv_dnn"
                },
            }
        )
    return rows


def read_crops(data: Path, paths: list[str]) -> np.ndarray:
    """The 112x112 aligned crops among ``paths`` (relative to ``data``), BGR uint8."""
    crops = [cv2.imread(str(data / p)) for p in paths]
    return np.stack([c for c in crops if c is not None and c.shape == (112, 112, 3)])


def layer_groups(node_names: list[str]) -> dict[str, list[str]]:
    """SFace's nodes by layer: 'conv_4_dw' (depthwise 3x3 and its PRelu), 'conv_4' (pointwise
    and its PRelu), 'tail' (BatchNormalization, Flatten, FC); the input scaling is left out."""
    groups: dict[str, list[str]] = {}
    for name in node_names:
        match = re.match(r"^(conv_\d+(?:_dw)?)_", name)
        if match:
            groups.setdefault(match.group(1), []).append(name)
        elif not name.startswith("_"):
            groups.setdefault("tail", []).append(name)
    return groups


def layer_sensitivity(engine: FaceEngine, faces: np.ndarray) -> list[dict[str, Any]]:
    """Mean cosine drop to float32 on ``faces`` of int8 graphs quantized one layer group at a time."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from pipeline.vision.prepare import prepare_model

    manifest = read_manifest("default")
    spec = manifest["embedder"]
    source = verified_file(
        manifest["source"]["package"], manifest["source"]["version"], spec["path"], spec["sha256"]
    )
    steps = [("prelu_to_depthwise" if s == "prelu_to_relu" else s) for s in spec["prepare"]]
    calibration = calibration_faces(engine.pack.detector)
    reference = engine.embed_aligned(faces)

    def blob(crops: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32))

    class Reader(CalibrationDataReader):
        """The calibration faces in equal batches."""

        def __init__(self, name: str) -> None:
            size = max(d for d in range(1, 9) if len(calibration) % d == 0)
            self.name = name
            self.batches = iter([blob(calibration[i : i + size]) for i in range(0, len(calibration), size)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {self.name: batch}

    rows = []
    with tempfile.TemporaryDirectory(prefix="facepipe-layers-") as tmp:
        float_file, pre_file = Path(tmp) / "float.onnx", Path(tmp) / "pre.onnx"
        onnx.save(prepare_model(onnx.load(str(source)), steps), str(float_file))
        quant_pre_process(str(float_file), str(pre_file), skip_symbolic_shape=True)
        model = onnx.load(str(pre_file))
        input_name, ranges = model.graph.input[0].name, Path(tmp) / "ranges.json"
        options = ort.SessionOptions()
        options.intra_op_num_threads = engine.streams
        for group, nodes in layer_groups([n.name for n in model.graph.node]).items():
            out = Path(tmp) / "one.onnx"
            quantize_static(
                str(pre_file),
                str(out),
                None if ranges.is_file() else Reader(input_name),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=nodes,
                calibration_cache_path=str(ranges),
            )
            session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
            vectors = np.concatenate(
                [
                    session.run(None, {input_name: blob(faces[i : i + 16])})[0]
                    for i in range(0, len(faces), 16)
                ]
            )
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            drop = 1.0 - float(np.sum(vectors * reference, axis=1).mean())
            rows.append({"layers": group, "nodes": len(nodes), "mean_cosine_drop": round(drop, 6)})
            print(f"{group:12s} {drop:.6f}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Measure both precisions, print the differences, save the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per batch size and embedder")
    parser.add_argument("--noise-seeds", type=int, default=8, help="noise draws of the noise floor")
    parser.add_argument("--threads", type=int, default=2, help="engine threads and OpenCV threads")
    parser.add_argument("--layers", action="store_true", help="per-layer sensitivity instead (see above)")
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        print(f"no labels.csv under {args.data}", file=sys.stderr)
        return 2
    labeled = Labeled(args.data)
    if args.layers:
        engine = get_engine(Settings(provider="cpu", threads=args.threads, embedder_precision="float32"))
        aligned = [p for p in labeled.paths if p.startswith("aligned/")][::3]
        faces = read_crops(args.data, aligned)
        result: dict[str, Any] = {
            "cpu": cpu_model(),
            "faces": len(faces),
            "layers": layer_sensitivity(engine, faces),
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    engines = {
        precision: get_engine(Settings(provider="cpu", threads=args.threads, embedder_precision=precision))
        for precision in ("float32", "int8")
    }
    embedded = {
        name: calibrate.embed_all(engine, args.data, labeled.paths) for name, engine in engines.items()
    }
    base_vectors, found = embedded["float32"]
    int8_vectors = embedded["int8"][0]
    base = figures(labeled, base_vectors, found, engines["float32"])
    int8 = figures(labeled, int8_vectors, found, engines["float32"])
    agreement = np.sum(base_vectors * int8_vectors, axis=1)[found]
    cv2.setNumThreads(args.threads)
    aligned = [p for p in labeled.paths if p.startswith("aligned/")][:32]
    crops = read_crops(args.data, aligned)
    report = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": args.threads,
        "int8_variant": engines["int8"].stream_pack.embedder_variant,
        "auto_variant": get_engine(
            Settings(provider="cpu", threads=args.threads)
        ).stream_pack.embedder_variant,
        "float32": base,
        "int8": int8,
        "per_image_cosine_int8_to_float32": {"mean": float(agreement.mean()), "min": float(agreement.min())},
        "change_in_points": {k: round(v, 3) for k, v in changes(base, int8).items()},
        "noise_floor_at_int8_cosine": noise_floor(
            labeled, base_vectors, found, engines["float32"], float(agreement.mean()), args.noise_seeds
        ),
        "speed": speed(engines, prepared_model_files(Settings().cache_dir)[1], crops, args.rounds),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
