"""Search and server suite building blocks: store-backed collections, bytes per face, load runs,
the lean HTTP client, the server suite end to end at tiny sizes, and the benchmarks/ entry points."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pipeline.bench.report import validate_run
from pipeline.bench.suite_server import LoadRun, json_body, run_clients
from pipeline.bench.synthetic import face_cloud
from pipeline.bench.vectors import (
    bytes_per_face,
    data_dir_bytes,
    fill_store,
    index_memory_bytes,
    store_indexes,
)
from pipeline.cli.bench import bench_main
from pipeline.store.index import DEFAULT_ANN_THRESHOLD
from tests.support import REPO_ROOT


def test_bytes_per_face() -> None:
    assert bytes_per_face(1000, 4) == 250.0
    assert bytes_per_face(0, 1) == 0.0
    with pytest.raises(ValueError, match="faces >= 1"):
        bytes_per_face(100, 0)


def test_store_collection_indexes_sizes_and_search(tmp_path: Path) -> None:
    cloud = face_cloud(300, 5, seed=3)
    collection = fill_store(tmp_path, cloud.vectors)
    try:
        labels = collection.labels
        assert len(set(labels.tolist())) == 300
        indexes = {ix.name: ix for ix in store_indexes(collection, cloud.vectors)}
        # far below the quantized threshold the store searches exactly: its own index is the flat one
        assert DEFAULT_ANN_THRESHOLD >= 300
        assert indexes["exact"].used_by_store and not indexes["ann"].used_by_store
        assert indexes["exact"].index.kind == "flat" and indexes["ann"].index.kind == "pq"
        flat_bytes = index_memory_bytes(indexes["exact"].index) / 300
        hnsw_bytes = index_memory_bytes(indexes["ann"].index) / 300
        assert 128 * 4 + 8 <= flat_bytes < 128 * 4 + 8 + 10  # vector + int64 id, a small header
        assert flat_bytes < hnsw_bytes < 1024
        q = cloud.queries[0]
        expected = sorted(((int(labels[i]), float(s)) for i, s in enumerate(cloud.vectors @ q) if s >= 0.3),
                          key=lambda h: -h[1])  # fmt: skip
        for got in (collection.search(q, 100, 0.3), indexes["exact"].search(q, 100, 0.3)):
            assert [h[0] for h in got] == [h[0] for h in expected]
    finally:
        collection.store.close()
    disk = data_dir_bytes(tmp_path)
    assert disk["indexes"] == 0  # flat indexes are rebuilt from SQLite, never saved
    assert disk["sqlite"] / 300 >= 128 * 4  # every vector is stored in SQLite


def test_above_the_threshold_the_store_searches_its_quantized_index_and_saves_it(tmp_path: Path) -> None:
    cloud = face_cloud(300, 5, seed=4)
    collection = fill_store(tmp_path, cloud.vectors, ann_threshold=100)
    try:
        indexes = {ix.name: ix for ix in store_indexes(collection, cloud.vectors)}
        assert indexes["ann"].used_by_store and not indexes["exact"].used_by_store
        q = cloud.queries[0]
        assert collection.search(q, 10, -1.0) == indexes["ann"].search(q, 10, -1.0)
    finally:
        collection.store.close()
    disk = data_dir_bytes(tmp_path)
    assert disk["indexes"] > 300 * 128 * 4  # the quantized index is saved next to SQLite


def test_load_run_figures() -> None:
    run = LoadRun(wall_seconds=2.0, latencies=[0.001, 0.002, 0.003, 0.004], cpu_seconds=0.05, calls=5)
    assert run.requests_per_s == 2.0
    assert run.latency_ms(50) == pytest.approx(2.5)
    assert run.latency_ms(100) == pytest.approx(4.0)
    assert run.cpu_ms_per_request == pytest.approx(10.0)
    assert LoadRun(1.0, [0.1], None, 1).cpu_ms_per_request is None


def test_run_clients_splits_requests_and_warms_up_each_client() -> None:
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def make() -> object:
        def call(operation: str, params: dict) -> dict:
            with lock:
                seen.append((threading.get_ident(), operation))
            return {}

        return call

    run = run_clients(make, "ListFaces", {}, clients=4, requests=40)  # type: ignore[arg-type]
    assert len(run.latencies) == 40 and run.calls == 44 and len(seen) == 44
    assert len({ident for ident, _ in seen}) == 4
    assert run.cpu_seconds is None

    def failing() -> object:
        def call(operation: str, params: dict) -> dict:
            raise OSError("connection refused")

        return call

    with pytest.raises(RuntimeError, match="connection refused"):
        run_clients(failing, "ListFaces", {}, clients=2, requests=4)  # type: ignore[arg-type]


def test_json_body_encodes_blobs_as_base64() -> None:
    body = json.loads(json_body({"CollectionId": "c", "Image": {"Bytes": b"\x00\xff"}, "FaceIds": ["a"]}))
    assert body == {"CollectionId": "c", "Image": {"Bytes": "AP8="}, "FaceIds": ["a"]}


@pytest.mark.slow
def test_server_suite_quick_run(tmp_path: Path) -> None:
    code = bench_main(
        ["--suite", "server", "--quick", "--sizes", "server=1,2", "--repeat", "1", "--warmup", "0",
         "--provider", "cpu", "--out", str(tmp_path)]
    )  # fmt: skip
    run = json.loads((tmp_path / "results.json").read_text())
    suite = run["suites"]["server"]
    assert code == 0, suite["note"]
    assert validate_run(run) == []
    figs = {f["id"]: f for f in suite["figures"]}
    for operation in ("SearchUsers", "ListFaces", "SearchFacesByImage"):
        for clients in (1, 2):
            for mode in ("http", "in_process"):
                assert figs[f"{mode}.{operation}.requests_per_s.c{clients}"]["median"] > 0
                p50 = figs[f"{mode}.{operation}.p50_ms.c{clients}"]["median"]
                assert 0 < p50 <= figs[f"{mode}.{operation}.p99_ms.c{clients}"]["median"]
            assert figs[f"http.{operation}.ratio_to_in_process.c{clients}"]["median"] > 0
    assert figs["http.ListFaces.cpu_ms_per_request.c1"]["median"] > 0
    assert suite["details"]["auth"] is True and suite["details"]["client"] == "http"
    assert (tmp_path / "server.png").stat().st_size > 1000


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_scripts_are_facepipe_bench_runs() -> None:
    store = _script("bench_store")
    assert store.bench_args(["--sizes", "10000", "100000", "1000000", "--out", "x"]) == [
        "--suite", "search", "--suite", "associate", "--sizes", "search=10000,100000,1000000", "--out", "x",
    ]  # fmt: skip
    assert store.bench_args([]) == ["--suite", "search", "--suite", "associate"]
    server = _script("bench_server")
    assert server.bench_args(["--clients", "1", "4", "16", "--client", "boto3", "--no-auth", "--quick"]) == [
        "--suite", "server", "--sizes", "server=1,4,16", "--server-client", "boto3", "--server-no-auth", "--quick",
    ]  # fmt: skip


def test_ground_truth_above_threshold_is_capped_at_max_faces() -> None:
    from pipeline.bench.suite_search import _ground_truth

    vectors = np.eye(4, dtype=np.float32)[[0, 0, 0, 1]] * np.array(
        [[1.0], [0.9], [0.8], [1.0]], dtype=np.float32
    )
    query = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    _, _, above = _ground_truth(vectors, query, cosine=0.5, k=1, max_faces=2)
    assert above == [{0, 1}]  # three vectors pass 0.5; a search returning 2 faces owes the best 2
    _, _, above = _ground_truth(vectors, query, cosine=0.5, k=1, max_faces=10)
    assert above == [{0, 1, 2}]
