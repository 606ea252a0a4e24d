"""Hypothesis state machine: operations in any order, with reopenings, keep the store's invariants,
SearchFaces returns what an exact search over the model's vectors returns (on the exact index and,
past the test store's small ANN threshold, on the quantized one), and no byte of the data
directory ever holds a deleted face's vector or a deleted user's centroid."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pipeline.config import Settings
from pipeline.service import FacePipe
from pipeline.store.index import MIN_ANN_THRESHOLD
from tests.support.erasure import files_holding
from tests.support.synthetic_faces import DIM, LinearEngine, index_vectors, unit

USERS = ["u1", "u2", "u3"]
KINDS_SEEN: set[str] = set()
"""Index kinds the machine's runs searched with (checked by the last test of this module)."""
SEARCHES = ((0.0, 4096), (20.0, 3))
"""(FaceMatchThreshold, MaxFaces) of the searches checked after every step: every other face, and
the best few above a threshold."""


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="facepipe-machine-"))
        self.fp = self._open()
        self.fp.call("CreateCollection", {"CollectionId": "c"})
        self.faces: dict[str, str | None] = {}  # FaceId -> UserId
        self.vectors: dict[str, np.ndarray] = {}  # FaceId -> unit vector as stored
        self.users: set[str] = set()
        self.counter = 0
        # start just below the ANN threshold: the first indexing steps cross into the quantized
        # index, and deletions cross back
        start = np.random.default_rng(0).normal(size=(MIN_ANN_THRESHOLD - 1, DIM))
        for face_id, vector in zip(
            index_vectors(self.fp, "c", list(start), prefix="start-"), start, strict=True
        ):
            self.faces[face_id] = None
            self.vectors[face_id] = unit(vector)
        self.kinds: set[str] = set()
        self.erased: list[np.ndarray] = []  # vectors and centroids deleted so far

    def _open(self) -> FacePipe:
        # a small ANN threshold, so that runs cross into the quantized index and back
        settings = Settings(data_dir=self.dir, cache_dir=self.dir / "cache", ann_threshold=MIN_ANN_THRESHOLD)
        return FacePipe(settings, engine=LinearEngine())

    @rule(seed=st.integers(0, 10_000), count=st.integers(1, 3))
    def index(self, seed: int, count: int) -> None:
        self.counter += 1
        rng = np.random.default_rng([seed, self.counter])  # never the same vector twice
        vectors = [rng.normal(size=DIM) for _ in range(count)]
        for face_id, vector in zip(
            index_vectors(self.fp, "c", vectors, prefix=f"m{self.counter}-"), vectors, strict=True
        ):
            self.faces[face_id] = None
            self.vectors[face_id] = unit(vector)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        if not self.faces:
            return
        face_id = data.draw(st.sampled_from(sorted(self.faces)))
        with self.fp.store.read() as tx:
            found = tx.faces_by_id(tx.collection("c"), [face_id])[face_id]
            vector = tx.face_vector(found.label)
        out = self.fp.call("DeleteFaces", {"CollectionId": "c", "FaceIds": [face_id]})
        if self.faces[face_id] is None:
            assert out["DeletedFaces"] == [face_id]
            del self.faces[face_id]
            del self.vectors[face_id]
            self.erased.append(vector)
        else:
            assert out["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]

    @rule(user=st.sampled_from(USERS))
    def create_user(self, user: str) -> None:
        if user not in self.users:
            self.fp.call("CreateUser", {"CollectionId": "c", "UserId": user})
            self.users.add(user)

    @rule(user=st.sampled_from(USERS))
    def delete_user(self, user: str) -> None:
        if user in self.users:
            with self.fp.store.read() as tx:
                centroid = tx.user_centroid(tx.collection("c"), user)
            self.fp.call("DeleteUser", {"CollectionId": "c", "UserId": user})
            if centroid is not None and sum(u == user for u in self.faces.values()) >= 2:
                self.erased.append(centroid)  # (with one face the centroid is that kept face)
            self.users.discard(user)
            self.faces = {f: (None if u == user else u) for f, u in self.faces.items()}

    @rule(user=st.sampled_from(USERS), data=st.data())
    def associate(self, user: str, data: st.DataObject) -> None:
        if user not in self.users or not self.faces:
            return
        picked = data.draw(st.lists(st.sampled_from(sorted(self.faces)), min_size=1, max_size=4, unique=True))
        params = {"CollectionId": "c", "UserId": user, "FaceIds": picked, "UserMatchThreshold": 0}
        out = self.fp.call("AssociateFaces", params)
        for face in out["AssociatedFaces"]:
            assert self.faces[face["FaceId"]] is None
            self.faces[face["FaceId"]] = user
        for failed in out["UnsuccessfulFaceAssociations"]:
            assert failed["Reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]

    @rule(user=st.sampled_from(USERS))
    def disassociate_all(self, user: str) -> None:
        mine = [f for f, u in self.faces.items() if u == user]
        if user in self.users and mine:
            out = self.fp.call(
                "DisassociateFaces", {"CollectionId": "c", "UserId": user, "FaceIds": mine[:100]}
            )
            assert {f["FaceId"] for f in out["DisassociatedFaces"]} == set(mine[:100])
            for f in mine[:100]:
                self.faces[f] = None

    @rule()
    def reopen(self) -> None:
        self.fp.close()
        self.fp = self._open()

    @invariant()
    def nothing_deleted_remains_on_disk(self) -> None:
        assert files_holding(self.dir, self.erased) == {}

    @invariant()
    def store_matches_model(self) -> None:
        listed = self.fp.call("ListFaces", {"CollectionId": "c", "MaxResults": 4096})["Faces"]
        assert {f["FaceId"]: f.get("UserId") for f in listed} == self.faces
        described = self.fp.call("DescribeCollection", {"CollectionId": "c"})
        assert described["FaceCount"] == len(self.faces) and described["UserCount"] == len(self.users)
        users = self.fp.call("ListUsers", {"CollectionId": "c"})["Users"]
        expected = {
            u: ("ACTIVE" if any(v == u for v in self.faces.values()) else "CREATED") for u in self.users
        }
        assert {u["UserId"]: u["UserStatus"] for u in users} == expected
        store = self.fp.store
        with store.read() as tx:
            coll = tx.collection("c")
            labels = {r.label for r in tx.list_faces(coll, 0, 100_000)}
        index = store.index_of(coll)
        assert set(index.labels().tolist()) == labels

    def exact_matches(self, face_id: str, threshold: float, max_faces: int) -> list[tuple[str, float]]:
        """(FaceId, Similarity) that SearchFaces must return, by exact search over the model's vectors."""
        query = self.vectors[face_id]
        others = sorted(
            ((other, float(np.dot(query, v))) for other, v in self.vectors.items() if other != face_id),
            key=lambda pair: -pair[1],
        )
        similarities = [(other, min(100.0, max(0.0, 100.0 * cosine))) for other, cosine in others]
        return [(other, s) for other, s in similarities if s >= threshold][:max_faces]

    @invariant()
    def search_matches_exact_search(self) -> None:
        if not self.faces:
            return
        for face_id in (min(self.faces), max(self.faces)):
            for threshold, max_faces in SEARCHES:
                params = {"CollectionId": "c", "FaceId": face_id, "FaceMatchThreshold": threshold}
                out = self.fp.call("SearchFaces", {**params, "MaxFaces": max_faces})
                found = [(m["Face"]["FaceId"], m["Similarity"]) for m in out["FaceMatches"]]
                expected = self.exact_matches(face_id, threshold, max_faces)
                assert [f for f, _ in found] == [f for f, _ in expected], (threshold, max_faces)
                assert np.allclose([s for _, s in found], [s for _, s in expected], atol=1e-3)
        with self.fp.store.read() as tx:
            coll = tx.collection("c")
        self.kinds.add(self.fp.store.index_of(coll).kind)

    def teardown(self) -> None:
        KINDS_SEEN.update(self.kinds)
        self.fp.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_machine_runs_reached_both_index_kinds() -> None:
    """The runs above crossed the ANN threshold: searches were checked on the quantized index, not
    only on the exact one."""
    if not KINDS_SEEN:
        pytest.skip("run together with TestStoreMachine")
    assert {"flat", "pq"} == KINDS_SEEN
