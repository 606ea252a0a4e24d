"""`facepipe bench` end to end at tiny sizes: files written, schema valid, --compare, --readme-section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.bench.report import validate_run
from pipeline.bench.synthetic import face_cloud
from pipeline.cli.bench import bench_main


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPIPE_CACHE", str(tmp_path / "cache"))


def run_search(out: Path, seed: int = 0) -> dict:
    code = bench_main(
        [
            "--suite",
            "search",
            "--quick",
            "--sizes",
            "search=500",
            "--repeat",
            "2",
            "--seed",
            str(seed),
            "--provider",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads((out / "results.json").read_text())


def test_search_suite_quick_run_writes_a_valid_report(tmp_path: Path, cache: None) -> None:
    run = run_search(tmp_path / "a")
    assert validate_run(run) == []
    assert run["provider"] == {"requested": "cpu", "used": "cpu", "note": ""}
    suite = run["suites"]["search"]
    assert suite["status"] == "ok"
    figs = {f["id"]: f for f in suite["figures"]}
    # exact search finds every match; the figures are medians over 2 runs
    assert figs["exact.recall_above_threshold.500"]["median"] == 1.0
    assert figs["exact.recall_at_10.500"]["median"] == 1.0
    assert 0.9 <= figs["ann.recall_at_10.500"]["median"] <= 1.0
    assert figs["exact.p50_ms.500"]["n"] == 2
    assert (
        figs["exact.p50_ms.500"]["min"]
        <= figs["exact.p50_ms.500"]["median"]
        <= figs["exact.p50_ms.500"]["max"]
    )
    assert "faiss_flat.p99_ms.500" in figs and "ann.speedup_vs_faiss_flat.500" in figs
    # 500 faces: the store searches exactly, through its own path, and finds every match
    assert suite["details"]["store_index_by_size"] == {"500": "flat"}
    assert figs["store.recall_above_threshold.500"]["median"] == 1.0
    assert "(the store's index at this size)" in figs["exact.p50_ms.500"]["label"]
    assert "store's index" not in figs["ann.p50_ms.500"]["label"]
    # 128 float32 + an int64 id per face in the flat index; the quantized index adds 64 B of codes, under 1 KiB
    assert 520 <= figs["exact.memory_bytes_per_face.500"]["median"] < 530
    assert 520 < figs["ann.memory_bytes_per_face.500"]["median"] < 1024
    disk = figs["store.disk_bytes_per_face.500"]
    assert disk["median"] >= 512 and disk["params"]["sqlite_bytes"] == disk["params"]["total_bytes"]
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "## search" in summary and "![search](search.png)" in summary
    assert (tmp_path / "a" / "search.png").stat().st_size > 1000


def test_compare_two_runs_and_readme_section(
    tmp_path: Path, cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_search(tmp_path / "old")
    capsys.readouterr()
    code = bench_main(
        [
            "--suite",
            "search",
            "--quick",
            "--sizes",
            "search=500",
            "--repeat",
            "2",
            "--provider",
            "cpu",
            "--out",
            str(tmp_path / "new"),
            "--compare",
            str(tmp_path / "old" / "results.json"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| figure | old | new | change | verdict |" in printed
    assert "recall@10, 500 faces" in printed
    assert (tmp_path / "new" / "compare.md").read_text() == printed
    assert (
        bench_main(
            ["--compare", str(tmp_path / "old" / "results.json"), str(tmp_path / "new" / "results.json")]
        )
        == 0
    )
    assert "search latency p50" in capsys.readouterr().out
    assert bench_main(["--readme-section", str(tmp_path / "new" / "results.json")]) == 0
    section = capsys.readouterr().out
    assert section.startswith("## Performance") and "summary.md" in section


def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--suite", "nope"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert bench_main(["--sizes", "search=ten"]) == 2
    assert "sizes must be integers" in capsys.readouterr().err
    assert bench_main(["--repeat", "0"]) == 2
    assert bench_main(["--pairs", str(tmp_path / "none.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x.json").write_text("{}")
    assert bench_main(["--compare", str(tmp_path / "x.json")]) == 2
    assert "not a facepipe benchmark run" in capsys.readouterr().err


def test_pipeline_suite_quick_run(tmp_path: Path, cache: None) -> None:
    code = bench_main(
        [
            "--suite",
            "pipeline",
            "--quick",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--provider",
            "cpu",
            "--out",
            str(tmp_path),
        ]
    )
    run = json.loads((tmp_path / "results.json").read_text())
    assert code == 0, run["suites"]["pipeline"]["note"]
    figs = {f["id"]: f for f in run["suites"]["pipeline"]["figures"]}
    for fid in (
        "detect.ms.320",
        "detect.opencv_ms.320",
        "align.ms_per_face",
        "embed.ms_per_face.b8",
        "embed.speedup_vs_opencv.b8",
        "e2e.images_per_s",
    ):
        assert figs[fid]["median"] > 0, fid
    assert run["suites"]["pipeline"]["details"]["e2e_faces"] == 6
    assert run["provider"]["used"] == "cpu"


def test_synthetic_faces_look_like_face_embeddings() -> None:
    cloud = face_cloud(4000, 200, seed=1)
    assert cloud.vectors.shape == (4000, 128) and cloud.vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(cloud.vectors, axis=1), 1.0, atol=1e-5)
    # identities of 1-6 faces, every size present
    faces_per_identity = np.bincount(cloud.identity)
    assert faces_per_identity.min() >= 1 and faces_per_identity.max() == 6
    assert set(faces_per_identity.tolist()) == {1, 2, 3, 4, 5, 6}
    assert set(cloud.query_identity.tolist()) <= set(cloud.identity.tolist())
    sims = cloud.queries @ cloud.vectors.T
    same = cloud.query_identity[:, None] == cloud.identity[None, :]
    # same person mostly 0.45-0.85, strangers near 0
    low, median, high = np.percentile(sims[same], [5, 50, 95])
    assert low >= 0.45 and high <= 0.85 and 0.55 < median < 0.75
    assert abs(np.median(sims[~same])) < 0.1 and np.percentile(sims[~same], 99.9) < 0.4
    again = face_cloud(4000, 200, seed=1)
    assert np.array_equal(again.vectors, cloud.vectors)
    assert not np.array_equal(face_cloud(4000, 200, seed=2).vectors, cloud.vectors)
