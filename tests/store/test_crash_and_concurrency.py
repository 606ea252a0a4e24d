"""Real SIGKILLs in the middle of write loops, and several processes and threads on one data dir."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.store import Store
from tests.support import REPO_ROOT


def start(data_dir: Path, mode: str, seed: int) -> subprocess.Popen[str]:
    """tests/store/worker.py in ``mode`` as a child process (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.worker", str(data_dir), mode, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )


def acks(output: str) -> list[tuple[str, str]]:
    lines = [line.split() for line in output.splitlines() if line.startswith("ACK ")]
    return [(parts[1], parts[2]) for parts in lines if len(parts) == 3]


def check_consistent(data_dir: Path, acknowledged: list[tuple[str, str]]) -> int:
    """Every acknowledged write is in SQLite, and FAISS built from it agrees; returns the face count."""
    store = Store(data_dir)
    try:
        with store.read() as tx:
            coll = tx.collection("c")
            rows = tx.list_faces(coll, 0, 1_000_000)
            counted = tx.conn.execute(
                "SELECT count(*) FROM faces WHERE collection_id = ?", (coll.id,)
            ).fetchone()[0]
            users = tx.list_users(coll, None, 10_000)
        faces = {r.face_id: r for r in rows}
        assert coll.face_count == counted == len(rows)
        maybe_deleted = {f for kind, f in acknowledged if kind == "try-delete"}
        for kind, face_id in acknowledged:
            if kind == "index" and face_id not in maybe_deleted:
                assert face_id in faces, f"acknowledged face {face_id} lost"
            if kind == "assoc":
                assert faces[face_id].user_id is not None
            if kind == "delete":
                assert face_id not in faces
        for user in users:
            assert user.face_count == sum(r.user_id == user.user_id for r in rows)
        index = store.index_of(coll)
        labels = set(index.labels().tolist())
        assert labels == {r.label for r in rows}
        return len(rows)
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(11)
    acknowledged: list[tuple[str, str]] = []
    for round_number in range(4):
        child = start(tmp_path, "crash", round_number)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (tmp_path / "facepipe.sqlite3").exists():
            time.sleep(0.05)
        time.sleep(1.0 + rng.random() * 1.5)
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, err[-2000:]
        acknowledged += acks(out)
        check_consistent(tmp_path, acknowledged)
    assert sum(kind == "index" for kind, _ in acknowledged) > 10, "the loops did too little to test anything"


@pytest.mark.slow
def test_processes_and_threads_share_one_data_dir(tmp_path: Path) -> None:
    children = [start(tmp_path, "concurrent", seed) for seed in (1, 2)]
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
    acknowledged = [a for out, _ in outputs for a in acks(out)]
    assert sum(kind == "index" for kind, _ in acknowledged) == 2 * 2 * 15
    store = Store(tmp_path)
    try:
        with store.read() as tx:
            coll = tx.collection("c")
            users = tx.list_users(coll, None, 100)
        assert coll.face_count == 60
        assert sorted(u.face_count for u in users if u.user_id != "u") == [15] * 4
    finally:
        store.close()
