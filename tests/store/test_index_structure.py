"""The quantized index's structure at a face embedding's size (128-d: 64 sub-quantizers, 32-byte
codes): removals erase codes and float vectors, the measured candidate count survives a save and
load, and incremental adds keep it in proportion."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from pipeline.store import NewFace, Store
from pipeline.store.index import (
    PQ_CANDIDATES,
    CollectionIndex,
    IndexSet,
    build_collection_index,
    erase,
    faiss,
)
from tests.support.erasure import files_holding

DIM = 128


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add_faces(store: Store, vectors: np.ndarray) -> list[int]:
    with store.write() as tx:
        coll = tx.find_collection("c") or tx.insert_collection("c", "arn:c", "1.0", DIM, {})
        return [
            tx.insert_face(
                coll, NewFace(f"f-{coll.id}-{i}-{v[0]:.7f}", "img", None, "k", 0, 0, 1, 1, 99.0, v)
            )
            for i, v in enumerate(vectors)
        ]


def parts(idx: CollectionIndex) -> tuple[object, np.ndarray, np.ndarray]:
    """The fast-scan index, its packed code blocks, and the float vectors the re-ranking holds."""
    refine = faiss.downcast_index(idx.index.index)
    quantized = faiss.downcast_index(refine.base_index)
    exact = faiss.downcast_index(refine.refine_index)
    packer = quantized.get_CodePacker()
    blocks = faiss.rev_swig_ptr(quantized.codes.get(), quantized.codes.size()).reshape(-1, packer.block_size)
    rows = faiss.rev_swig_ptr(exact.get_xb(), exact.ntotal * DIM).reshape(-1, DIM)
    return quantized, blocks, rows


def test_codes_are_32_bytes_and_erased_faces_leave_codes_vectors_and_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    store = Store(tmp_path, ann_threshold=1_000)
    vectors = unit_rows(rng, 1_500)
    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    idx = store.index_of(coll)
    assert idx.kind == "pq" and PQ_CANDIDATES <= idx.candidates <= 1_500  # never more than it holds
    quantized, _, _ = parts(idx)
    assert quantized.pq.M == DIM // 2 and quantized.pq.code_size == 32
    gone = labels[::4]
    with store.write() as tx:
        tx.delete_faces(coll, gone)
    idx = store.index_of(coll)
    quantized, blocks, rows = parts(idx)
    packer = quantized.get_CodePacker()
    # the scan walks blocks up to ntotal2: it shrinks with the codes
    assert quantized.ntotal2 == -(-quantized.ntotal // packer.nvec) * packer.nvec
    assert quantized.codes.size() == quantized.ntotal2 // packer.nvec * packer.block_size
    slots = {packer.unpack_1(blocks, i).tobytes() for i in range(len(blocks) * packer.nvec)}
    erased_codes = {c.tobytes() for c in quantized.pq.compute_codes(vectors[::4])}
    kept_codes = {c.tobytes() for c in quantized.pq.compute_codes(np.delete(vectors, np.s_[::4], axis=0))}
    assert slots <= kept_codes | {bytes(packer.code_size)}
    assert not (slots & erased_codes) - kept_codes
    held = {row.tobytes() for row in rows}
    assert not held & {v.tobytes() for v in vectors[::4]}
    assert sorted(idx.labels().tolist()) == sorted(set(labels) - set(gone))
    store.close()  # saves the caught-up quantized index
    assert files_holding(tmp_path / "indexes", list(vectors[::4])) == {}
    assert len(files_holding(tmp_path / "indexes", list(vectors[1:40:4]))) == 10
    # the kept faces are still found, with their exact scores
    reopened = Store(tmp_path, ann_threshold=1_000)
    for i in range(1, 60, 4):
        (label, score), *_ = reopened.search(coll, vectors[i], 5, -1.0)
        assert label == labels[i] and abs(score - 1.0) < 1e-5
    reopened.close()


def test_save_and_load_keep_the_measured_candidates(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    store = Store(tmp_path, ann_threshold=1_000)
    vectors = unit_rows(rng, 3_000)
    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    built = store.index_of(coll)
    assert built.tuned_faces == 3_000 and PQ_CANDIDATES <= built.candidates <= 3_000
    before = [store.search(coll, q, 20, 0.1) for q in vectors[:30]]
    store.close()
    (saved,) = (tmp_path / "indexes").glob("*.faiss")
    reopened = Store(tmp_path, ann_threshold=1_000)
    loaded = reopened.index_of(coll)
    assert loaded is not built and loaded.saved
    assert (loaded.candidates, loaded.tuned_faces) == (built.candidates, built.tuned_faces)
    assert [reopened.search(coll, q, 20, 0.1) for q in vectors[:30]] == before
    reopened.close()

    # a file saved before candidates were measured loads with the fixed count it was searched with
    data = saved.read_bytes()
    size = struct.unpack_from("<Q", data, 6)[0]
    header = json.loads(data[14 : 14 + size])
    del header["candidates"], header["tuned_faces"]
    old_header = json.dumps(header).encode()
    saved.write_bytes(data[:6] + struct.pack("<Q", len(old_header)) + old_header + data[14 + size :])
    legacy = Store(tmp_path, ann_threshold=1_000)
    idx = legacy.index_of(coll)
    assert idx.saved and (idx.candidates, idx.tuned_faces) == (PQ_CANDIDATES, 0)
    assert idx.candidates_now() == PQ_CANDIDATES
    assert legacy.search(coll, vectors[5], 1, -1.0)[0][0] == labels[5]
    legacy.close()


def test_incremental_adds_and_removals_keep_candidates_in_proportion(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    vectors = unit_rows(rng, 2_000)
    labels = np.arange(1, 2_001, dtype=np.int64)
    idx = build_collection_index(1, DIM, "pq", labels, vectors, 0)
    idx.candidates = 1_200  # as if measured at 2,000 faces
    assert idx.candidates_now() == 1_200
    more = unit_rows(rng, 1_000)
    idx.index.add_with_ids(more, np.arange(3_001, 4_001, dtype=np.int64))
    assert idx.candidates_now() == 1_800  # 3,000 faces: half as many again
    assert erase(idx, np.arange(1, 1_501, dtype=np.int64)) == 1_500
    assert idx.live_count == 1_500 and idx.candidates_now() == 1_200  # never fewer than measured
    searcher = IndexSet(None)
    for i in (0, 500, 999):
        assert searcher.search(idx, more[i], 1, -1.0)[0][0] == 3_001 + i
    assert searcher.search(idx, vectors[1_700], 1, -1.0)[0][0] == 1_701
    assert not {label for label, _ in searcher.search(idx, vectors[3], 50, -1.0)} & set(range(1, 1_501))
