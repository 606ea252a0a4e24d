"""Associate suite: AssociateFaces calls per second by the size of the user.

A temporary collection is filled by IndexFaces on the sample group photo (six faces a call), then
for each user size u a user gets u faces; each timed call associates one more face with
UserMatchThreshold 0 (so every call takes the full write path: centroid, comparison, association
and the user's new centroid), and an untimed DisassociateFaces brings the user back to u faces.
Every call is a durable commit; what that guarantees is read back from the store
(FaceStore.durability: SQLite's journal mode and synchronous level, or PostgreSQL's
synchronous_commit) and recorded.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2

from pipeline.bench.context import BenchContext
from pipeline.bench.report import Figure, SuiteResult
from pipeline.bench.stats import spread, time_runs
from pipeline.vision.samples import sample_photos

Call = Callable[[str, dict[str, Any]], dict[str, Any]]
"""An operation runner: (operation name, request) -> response, as FacePipe.call."""

MAX_USER_FACES = 100


def sample_variant(index: int) -> bytes:
    """JPEG bytes of the sample group photo shifted by a few pixels: a distinct image per ``index``.

    IndexFaces recognises an image it has already indexed, so repeated calls need distinct images.
    """
    bgr = cv2.imread(str(sample_photos() / "t1.jpg"))
    if bgr is None:
        raise RuntimeError("cannot read the sample photo t1.jpg")
    dx, dy = index % 16, index // 16
    ok, encoded = cv2.imencode(".jpg", bgr[dy:, dx:], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError("cannot encode a JPEG")
    return encoded.tobytes()


def index_sample_faces(call: Call, collection: str, at_least: int) -> list[str]:
    """Create ``collection`` and index variants of the sample group photo until it holds ``at_least``
    distinct faces; their FaceIds."""
    call("CreateCollection", {"CollectionId": collection})
    face_ids: list[str] = []
    variant = 0
    while len(face_ids) < at_least:
        response = call(
            "IndexFaces",
            {"CollectionId": collection, "Image": {"Bytes": sample_variant(variant)}, "MaxFaces": 100},
        )
        variant += 1
        records = response["FaceRecords"]
        if not records:
            raise RuntimeError("IndexFaces found no face in the sample photo")
        face_ids += [r["Face"]["FaceId"] for r in records if r["Face"]["FaceId"] not in face_ids]
    return face_ids


def run_associate(ctx: BenchContext) -> SuiteResult:
    """Run the associate suite at the context's user sizes (faces already associated, 1-99)."""
    from pipeline.service import FacePipe

    result = SuiteResult("associate")
    sizes = ctx.pick("associate", [1, 10, 50, 99], [1, 10])
    if any(not 1 <= u < MAX_USER_FACES for u in sizes):
        raise ValueError(f"associate sizes are faces already on the user: 1 to {MAX_USER_FACES - 1}")
    with tempfile.TemporaryDirectory(prefix="facepipe-bench-") as tmp:
        fp = FacePipe(replace(ctx.settings, data_dir=Path(tmp)))
        try:
            faces = index_sample_faces(fp.call, "bench", sum(sizes) + len(sizes))
            durability = fp.store.durability
            offset = 0
            for u in sizes:
                mine, candidate = faces[offset : offset + u], faces[offset + u]
                offset += u + 1
                user = f"user-{u}"
                fp.call("CreateUser", {"CollectionId": "bench", "UserId": user})
                first = fp.call(
                    "AssociateFaces",
                    {"CollectionId": "bench", "UserId": user, "FaceIds": mine, "UserMatchThreshold": 0},
                )
                if len(first["AssociatedFaces"]) != u:
                    raise RuntimeError(
                        f"could not give the user {u} faces: {first['UnsuccessfulFaceAssociations']}"
                    )

                def associate(user: str = user, candidate: str = candidate) -> None:
                    response = fp.call(
                        "AssociateFaces",
                        {
                            "CollectionId": "bench",
                            "UserId": user,
                            "FaceIds": [candidate],
                            "UserMatchThreshold": 0,
                        },
                    )
                    if len(response["AssociatedFaces"]) != 1:
                        raise RuntimeError(f"AssociateFaces did not associate the candidate: {response}")

                def undo(user: str = user, candidate: str = candidate) -> None:
                    fp.call(
                        "DisassociateFaces", {"CollectionId": "bench", "UserId": user, "FaceIds": [candidate]}
                    )

                seconds: list[float] = []
                for _ in range(ctx.warmup):
                    associate()
                    undo()
                for _ in range(ctx.repeat * 4):
                    seconds += time_runs(associate, 1, 0)
                    undo()
                result.add(
                    Figure(
                        f"calls_per_s.u{u}",
                        f"AssociateFaces calls/s, user with {u} face{'s' if u > 1 else ''}",
                        "calls/s",
                        "higher",
                        spread([1.0 / s for s in seconds]),
                        {"user_faces": u, "durability": durability},
                    )
                )
                result.add(
                    Figure(
                        f"ms_per_call.u{u}",
                        f"AssociateFaces latency, user with {u} face{'s' if u > 1 else ''}",
                        "ms",
                        "lower",
                        spread(seconds).scaled(1000),
                        {"user_faces": u},
                    )
                )
        finally:
            fp.close()
    result.details = {"durability": durability}
    result.note = (
        "In process (FacePipe.call) on a temporary data directory: one candidate face per call "
        "(each figure over 4 x --repeat calls), UserMatchThreshold 0 so every call associates; "
        f"every call is a durable commit ({durability})."
    )
    return result
