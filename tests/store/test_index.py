"""The FAISS side: exact and quantized search, catch-up across processes' stores, removals, disk copies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.store import NewFace, Store
from pipeline.store.index import MIN_ANN_THRESHOLD, PQ_CANDIDATES, faiss, new_index


def unit_rows(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add_faces(store: Store, vectors: np.ndarray) -> list[int]:
    with store.write() as tx:
        coll = tx.find_collection("c") or tx.insert_collection("c", "arn:c", "1.0", vectors.shape[1], {})
        return [
            tx.insert_face(
                coll,
                NewFace(
                    f"{coll.id}-{i}-{v[0]:.6f}", "img", None, "k", 0, 0, 1, 1, 99.0, v.astype(np.float32)
                ),
            )
            for i, v in enumerate(vectors)
        ]


def test_two_stores_on_one_dir_stay_in_step(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = Store(tmp_path), Store(tmp_path)
    vectors = unit_rows(rng, 50)
    labels = add_faces(a, vectors)
    with a.read() as tx:
        coll = tx.collection("c")
    assert a.search(coll, vectors[3], 1, -1.0)[0][0] == labels[3]
    more = unit_rows(rng, 5)
    new_labels = add_faces(b, more)
    with b.write() as tx:
        tx.delete_faces(coll, [labels[3]])
    assert a.search(coll, more[2], 1, -1.0)[0][0] == new_labels[2]
    assert labels[3] not in [label for label, _ in a.search(coll, vectors[3], 60, -1.0)]
    assert len(a.search(coll, vectors[0], 100, -1.0)) == 54
    a.close()
    b.close()


def test_quantized_index_above_threshold_matches_exact_and_erases_removed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = Store(tmp_path, ann_threshold=100)
    vectors = unit_rows(rng, 400)
    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    assert store.index_of(coll).kind == "pq"
    with store.write() as tx:
        tx.delete_faces(coll, labels[:20])
    live = vectors[20:]
    found = 0
    for q in vectors[20:60]:
        exact = np.argsort(-(live @ q))[:10]
        expected = {labels[20 + i] for i in exact}
        got = {label for label, _ in store.search(coll, q, 10, -1.0)}
        assert not got & set(labels[:20])
        found += len(got & expected)
    assert found / 400 >= 0.95
    threshold_hits = store.search(coll, vectors[30], 400, 0.5)
    assert all(score >= 0.5 for _, score in threshold_hits)
    assert len(threshold_hits) == int((live @ vectors[30] >= 0.5).sum())
    store.close()  # saves the quantized index
    assert list((tmp_path / "indexes").glob("*.faiss"))
    reopened = Store(tmp_path, ann_threshold=100)
    index = reopened.index_of(coll)
    assert index.kind == "pq" and index.live_count == 380
    reopened.close()


def test_new_index_kinds_answer_like_exact_search() -> None:
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 300)
    labels = np.arange(1000, 1300, dtype=np.int64)
    expected = np.argsort(-(vectors @ vectors[7]))[:5] + 1000
    for kind in ("flat", "pq"):
        index = new_index(kind, 16, vectors if kind == "pq" else None)
        index.add_with_ids(vectors, labels)
        # the quantized scan hands PQ_CANDIDATES candidates to the exact re-ranking, as the store does
        params = faiss.IndexRefineSearchParameters(k_factor=PQ_CANDIDATES / 5) if kind == "pq" else None
        _, found = index.search(vectors[7:8], 5, params=params)
        assert found[0].tolist() == expected.tolist()
    with pytest.raises(ValueError, match="kind"):
        new_index("ivf", 16)
    with pytest.raises(ValueError, match="training"):
        new_index("pq", 16)


def test_quantized_index_counts_only_faces_it_holds(tmp_path: Path) -> None:
    """A face added and deleted between two searches never entered the index: nothing to erase."""
    rng = np.random.default_rng(2)
    store = Store(tmp_path, ann_threshold=100)
    add_faces(store, unit_rows(rng, 300))
    with store.read() as tx:
        coll = tx.collection("c")
    assert store.index_of(coll).kind == "pq"
    transient = add_faces(store, unit_rows(rng, 50))
    with store.write() as tx:
        tx.delete_faces(coll, transient)
    index = store.index_of(coll)
    assert index.live_count == 300
    assert not set(index.labels().tolist()) & set(transient)
    store.close()


def test_damaged_saved_index_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    store = Store(tmp_path, ann_threshold=100)
    vectors = unit_rows(rng, 200)
    labels = add_faces(store, vectors)
    with store.read() as tx:
        coll = tx.collection("c")
    store.index_of(coll)
    store.close()  # saves the quantized index
    (saved,) = (tmp_path / "indexes").glob("*.faiss")
    data = saved.read_bytes()
    # same magic and layout, but a header without its keys (a tampered or foreign file)
    saved.write_bytes(
        data[:6] + (2).to_bytes(8, "little") + b"{}" + data[6 + 8 + int.from_bytes(data[6:14], "little") :]
    )
    reopened = Store(tmp_path, ann_threshold=100)
    assert reopened.search(coll, vectors[7], 1, -1.0)[0][0] == labels[7]
    assert reopened.index_of(coll).live_count == 200
    reopened.close()


def test_purging_one_collection_leaves_another_collections_save_in_progress(tmp_path: Path) -> None:
    """A deletion in one collection (or a catch-up that purges its stale file) removes that
    collection's half-written index files only: another collection's save goes on to its file."""
    rng = np.random.default_rng(3)
    store = Store(tmp_path, ann_threshold=100)
    add_faces(store, unit_rows(rng, 200))
    with store.write() as tx:
        other = tx.insert_collection("other", "arn:other", "1.0", 16, {})
    with store.read() as tx:
        coll = tx.collection("c")
    idx = store.index_of(coll)  # built and saved: pq
    assert idx.kind == "pq" and idx.saved
    real_replace = os.replace

    def replace_after_other_is_purged(src: str, dst: Path) -> None:
        store.indexes.purge_saved(other.id)  # between the temp file's creation and its rename
        real_replace(src, dst)

    idx.saved = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace_after_other_is_purged)
        store.indexes.save(idx)
    assert idx.saved
    assert [p.name for p in (tmp_path / "indexes").iterdir()] == [f"collection-{coll.id}.faiss"]
    # a half-written file of an older facepipe (no collection in its name) goes with any purge
    legacy = tmp_path / "indexes" / ".tmp-k3x_9q2z"
    legacy.write_bytes(b"old")
    store.indexes.purge_saved(other.id)
    assert not legacy.exists() and (tmp_path / "indexes" / f"collection-{coll.id}.faiss").exists()
    # another process purging this very collection meanwhile: the save is dropped, not an error
    purged = coll.id
    idx.saved = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            os, "replace", lambda src, dst: (store.indexes.purge_saved(purged), real_replace(src, dst))
        )
        store.indexes.save(idx)
    assert not idx.saved and not idx.save_due
    assert list((tmp_path / "indexes").iterdir()) == []
    store.close()


def test_an_index_replaced_by_a_rebuild_is_zeroed(tmp_path: Path) -> None:
    """Crossing the ANN threshold rebuilds the collection's index: the exact one it replaces is
    erased (each vector overwritten with zeros, then removed) rather than dropped holding them."""
    rng = np.random.default_rng(4)
    store = Store(tmp_path, ann_threshold=MIN_ANN_THRESHOLD)
    add_faces(store, unit_rows(rng, MIN_ANN_THRESHOLD - 4))
    with store.read() as tx:
        coll = tx.collection("c")
    old = store.index_of(coll)
    assert old.kind == "flat" and old.live_count == MIN_ANN_THRESHOLD - 4
    add_faces(store, unit_rows(rng, 20))
    new = store.index_of(coll)
    assert new is not old and new.kind == "pq" and new.live_count == MIN_ANN_THRESHOLD + 16
    assert old.live_count == 0  # erase() zeroed each vector before removing it
    store.close()
