"""Proposing users from faces no user holds yet: clusters of faces that match each other.

Two unassociated faces are linked when SearchFaces (the collection's vector index) finds one
for the other with a Similarity at or above the threshold; each connected component of at least
``min_cluster_size`` faces becomes a proposed user. Linking is transitive (A~B and B~C put A and
C together), so the manifest is written for a person to review before running it with
``facepipe associate-job``; AssociateFaces then still checks each face against the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidParameterException
from pipeline.jobs.calls import Service, iter_faces, iter_user_ids
from pipeline.jobs.manifest import write_manifest_csv

DEFAULT_CLUSTER_THRESHOLD = 80.0
"""Similarity (percent) two faces need to be linked: SearchFaces' default FaceMatchThreshold."""

DEFAULT_MIN_CLUSTER_SIZE = 2
"""Fewest faces a proposed user has."""

DEFAULT_NEIGHBOURS = 100
"""Matches asked of SearchFaces per face; enough to connect clusters of any size through chains."""

PROPOSAL_COLUMNS = ["user_id", "face_id", "external_image_id_for_review", "cluster_size", "best_similarity"]
"""Columns of a proposed manifest; only user_id and face_id are read back by associate-job."""


@dataclass(frozen=True)
class ProposedUser:
    """One cluster: its proposed UserId and members (FaceId, ExternalImageId, best Similarity)."""

    user_id: str
    members: tuple[tuple[str, str, float], ...]


class _DisjointSets:
    """Union-find over FaceIds with path halving."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The smaller FaceId becomes the root: the result does not depend on visit order.
            low, high = sorted((root_a, root_b))
            self.parent[high] = low


def propose_users(
    fp: Service,
    collection_id: str,
    *,
    threshold: float = DEFAULT_CLUSTER_THRESHOLD,
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    user_id_prefix: str = "person-",
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> list[ProposedUser]:
    """Clusters of the collection's unassociated faces, largest first, with fresh UserIds.

    ``threshold`` is a Similarity in percent (0-100); proposed UserIds are ``user_id_prefix``
    plus a 4-digit number, skipping ids the collection already has.
    """
    if not 0.0 <= threshold <= 100.0:
        raise InvalidParameterException(f"cluster threshold must be between 0 and 100, got {threshold}")
    if min_cluster_size < 1:
        raise InvalidParameterException(f"min cluster size must be at least 1, got {min_cluster_size}")
    if not re.fullmatch(r"[a-zA-Z0-9_.\-:]{1,100}", user_id_prefix):
        raise InvalidParameterException(
            f"user id prefix {user_id_prefix!r} must be 1-100 characters from [a-zA-Z0-9_.\\-:]"
        )
    if not 1 <= neighbours <= 4096:
        raise InvalidParameterException(f"neighbours must be between 1 and 4096, got {neighbours}")
    unassociated: dict[str, str] = {}
    for face in iter_faces(fp, collection_id):
        if not face.get("UserId"):
            unassociated[str(face["FaceId"])] = str(face.get("ExternalImageId") or "")
    sets = _DisjointSets()
    best: dict[str, float] = {}
    for face_id in sorted(unassociated):
        sets.find(face_id)
        response = fp.call(
            "SearchFaces",
            {
                "CollectionId": collection_id,
                "FaceId": face_id,
                "FaceMatchThreshold": threshold,
                "MaxFaces": neighbours,
            },
        )
        for match in response.get("FaceMatches", []):
            other = str(match["Face"]["FaceId"])
            if other == face_id or other not in unassociated:
                continue
            similarity = float(match["Similarity"])
            sets.union(face_id, other)
            best[face_id] = max(best.get(face_id, 0.0), similarity)
            best[other] = max(best.get(other, 0.0), similarity)
    clusters: dict[str, list[str]] = {}
    for face_id in sorted(unassociated):
        clusters.setdefault(sets.find(face_id), []).append(face_id)
    kept = [members for members in clusters.values() if len(members) >= min_cluster_size]
    kept.sort(key=lambda members: (-len(members), members[0]))
    existing = set(iter_user_ids(fp, collection_id))
    proposals: list[ProposedUser] = []
    number = 0
    for members in kept:
        number += 1
        while f"{user_id_prefix}{number:04d}" in existing:
            number += 1
        proposals.append(
            ProposedUser(
                user_id=f"{user_id_prefix}{number:04d}",
                members=tuple((f, unassociated[f], round(best.get(f, 0.0), 3)) for f in members),
            )
        )
    return proposals


def write_proposals(path: Path, proposals: list[ProposedUser]) -> int:
    """Write ``proposals`` as a CSV manifest for review; returns the number of rows written."""
    rows: list[dict[str, Any]] = []
    for proposal in proposals:
        for face_id, external_image_id, similarity in proposal.members:
            rows.append(
                {
                    "user_id": proposal.user_id,
                    "face_id": face_id,
                    "external_image_id_for_review": external_image_id,
                    "cluster_size": len(proposal.members),
                    "best_similarity": similarity,
                }
            )
    write_manifest_csv(path, rows, PROPOSAL_COLUMNS)
    return len(rows)
