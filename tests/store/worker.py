"""Child process for the crash and concurrency tests: runs a write loop and acknowledges each write.

python -m tests.store.worker DATA_DIR MODE SEED   (MODE: crash | concurrent; from the repository root)
Every line "ACK <kind> <face_id>" is printed (and flushed) only after the call has returned;
"ACK try-delete <face_id>" is printed before a DeleteFaces call (it may or may not have happened).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import numpy as np

from pipeline.config import Settings
from pipeline.errors import ConflictException, ResourceAlreadyExistsException
from pipeline.service import FacePipe
from tests.support.synthetic_faces import LinearEngine, index_vectors, person


def ack(kind: str, face_id: str) -> None:
    sys.stdout.write(f"ACK {kind} {face_id}\n")
    sys.stdout.flush()


def open_pipe(data_dir: str) -> FacePipe:
    fp = FacePipe(
        Settings(data_dir=Path(data_dir), cache_dir=Path(data_dir) / "cache"), engine=LinearEngine()
    )
    for call, params, exc in (
        ("CreateCollection", {"CollectionId": "c"}, ResourceAlreadyExistsException),
        ("CreateUser", {"CollectionId": "c", "UserId": "u"}, ConflictException),
    ):
        with contextlib.suppress(exc):
            fp.call(call, params)
    return fp


def crash_loop(data_dir: str, seed: int) -> None:
    fp = open_pipe(data_dir)
    rng = np.random.default_rng(seed)
    free: list[str] = []
    i = 0
    while True:
        i += 1
        (face_id,) = index_vectors(fp, "c", person(rng, 1), prefix=f"s{seed}-{i}-")
        ack("index", face_id)
        if i % 3 == 0:
            slot = i // 3 - 1
            user = f"u{seed}-{slot // 50}"  # 50 faces per user, well under the 100-face limit
            if slot % 50 == 0:
                fp.call("CreateUser", {"CollectionId": "c", "UserId": user})
            fp.call(
                "AssociateFaces",
                {"CollectionId": "c", "UserId": user, "FaceIds": [face_id], "UserMatchThreshold": 0},
            )
            ack("assoc", face_id)
        else:
            free.append(face_id)
        if i % 5 == 0 and free:
            victim = free.pop(0)
            ack("try-delete", victim)
            fp.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [victim]})
            ack("delete", victim)
        fp.call("SearchFaces", {"CollectionId": "c", "FaceId": face_id, "MaxFaces": 5})


def concurrent_loop(data_dir: str, seed: int, per_thread: int = 15) -> None:
    fp = open_pipe(data_dir)

    def work(t: int) -> None:
        rng = np.random.default_rng(seed * 100 + t)
        for j in range(per_thread):
            (face_id,) = index_vectors(fp, "c", person(rng, 1), prefix=f"p{seed}-t{t}-{j}-")
            ack("index", face_id)
            user = f"u{seed}-{t}"
            if j == 0:
                fp.call("CreateUser", {"CollectionId": "c", "UserId": user})
            fp.call(
                "AssociateFaces",
                {"CollectionId": "c", "UserId": user, "FaceIds": [face_id], "UserMatchThreshold": 0},
            )
            ack("assoc", face_id)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    fp.close()


if __name__ == "__main__":
    directory, mode, seed_text = sys.argv[1:4]
    if mode == "crash":
        crash_loop(directory, int(seed_text))
    else:
        concurrent_loop(directory, int(seed_text))
