"""Association jobs and proposed users on real faces: chunking, rerun safety, clustering."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.jobs import associate_job_main
from pipeline.errors import ResourceNotFoundException
from pipeline.jobs.analyzers import LocalAnalyzer
from pipeline.jobs.associate import run_associate_job
from pipeline.jobs.cluster import propose_users, write_proposals
from pipeline.jobs.index_folder import index_folder
from pipeline.jobs.ledger import JobLedger
from pipeline.jobs.manifest import read_manifest
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_analyzed_images


def index_photos(model_pipe: FacePipe, ledger: JobLedger, folder: Path) -> dict[str, list[str]]:
    """Index ``folder`` (not recursive) into 'photos'; ExternalImageId -> FaceIds."""
    analyzer = LocalAnalyzer(model_pipe.engine, batch_size=4, max_image_bytes=15 * 2**20)
    report = io.StringIO()
    try:
        index_folder(model_pipe, ledger, "photos", folder, analyzer, report=report, progress_stream=None)
    finally:
        analyzer.close()
    lines = [json.loads(line) for line in report.getvalue().splitlines()]
    return {line["ExternalImageId"]: [r["FaceId"] for r in line.get("FaceRecords", [])] for line in lines}


def user_faces(model_pipe: FacePipe, user_id: str) -> set[str]:
    faces = model_pipe.call("ListFaces", {"CollectionId": "photos", "UserId": user_id, "MaxResults": 4096})[
        "Faces"
    ]
    return {face["FaceId"] for face in faces}


def run_manifest(
    model_pipe: FacePipe, ledger: JobLedger, manifest: Path, data_dir: Path, report: Path
) -> dict[str, Any]:
    status = associate_job_main(
        [
            str(manifest),
            "--collection-id",
            "photos",
            "--data-dir",
            str(data_dir),
            "--report",
            str(report),
            "--quiet",
        ]
    )
    assert status == 0
    return {line["UserId"]: line for line in map(json.loads, report.read_text().splitlines())}


def test_manifest_job_creates_users_and_is_safe_to_rerun(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path, sample_images: Path
) -> None:
    ids = index_photos(model_pipe, ledger, photo_folder)
    tom_face = ids["Tom_Hanks_54745.png"][0]
    manifest = tmp_path / "manifest.csv"
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "tom_again.png").write_bytes((sample_images / "Tom_Hanks_54745.png").read_bytes())
    manifest.write_text(
        "user_id,face_id,external_image_id,image\n"
        f"tom,{tom_face},,\n"
        "tom,,tom_16bit.png,\n"
        "tom,,,more/tom_again.png\n"
        "tom,,,photos/notes.jpg\n"
        "ghost,,no-such-image.jpg,\n"
    )
    model_pipe.close()  # the CLI opens the same data directory
    first = run_manifest(model_pipe, ledger, manifest, model_pipe.settings.data_dir, tmp_path / "r1.jsonl")
    tom = first["tom"]
    assert tom["UserCreated"] is True and tom["UserStatus"] == "ACTIVE"
    assert len(tom["AssociatedFaces"]) == 3 and tom["UnsuccessfulFaceAssociations"] == []
    assert [u["Line"] for u in tom["UnresolvedReferences"]] == [5]
    assert "InvalidImageFormatException" in tom["UnresolvedReferences"][0]["Reason"]
    assert first["ghost"]["AssociatedFaces"] == [] and first["ghost"]["UnresolvedReferences"][0]["Line"] == 6
    associated = user_faces(model_pipe, "tom")
    assert tom_face in associated and len(associated) == 3

    faces_before = model_pipe.call("DescribeCollection", {"CollectionId": "photos"})["FaceCount"]
    model_pipe.close()
    second = run_manifest(model_pipe, ledger, manifest, model_pipe.settings.data_dir, tmp_path / "r2.jsonl")
    assert second == first  # idempotent tokens replay the same responses
    assert user_faces(model_pipe, "tom") == associated
    assert model_pipe.call("DescribeCollection", {"CollectionId": "photos"})["FaceCount"] == faces_before
    with pytest.raises(ResourceNotFoundException):
        model_pipe.call("ListFaces", {"CollectionId": "photos", "UserId": "ghost"})


def test_faces_go_in_chunks_of_100_and_the_limit_is_reported(
    model_pipe: FacePipe, sample_images: Path, tmp_path: Path
) -> None:
    image = model_pipe.engine.decode((sample_images / "Tom_Hanks_54745.png").read_bytes())
    faces = model_pipe.engine.analyze(image)
    items = [AnalyzedImage(f"tom-{i:03d}", image.width, image.height, faces) for i in range(101)]
    face_ids = [
        r["FaceRecords"][0]["Face"]["FaceId"] for r in index_analyzed_images(model_pipe, "photos", items)
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"user_id": "tom", "face_id": f}) + "\n" for f in face_ids))
    rows = read_manifest(manifest)

    out = io.StringIO()
    summary = run_associate_job(model_pipe, "photos", rows, tmp_path, report=out)
    line = json.loads(out.getvalue())
    assert len(line["AssociatedFaces"]) == 100 and summary.faces_associated == 100
    # The 101st face went in a second call, refused because the user is full.
    assert [e["Code"] for e in line["Errors"]] == ["ServiceQuotaExceededException"]
    assert line["Errors"][0]["FaceIds"] == face_ids[100:]
    out2 = io.StringIO()
    run_associate_job(model_pipe, "photos", rows, tmp_path, report=out2)
    assert json.loads(out2.getvalue())["AssociatedFaces"] == line["AssociatedFaces"]
    assert user_faces(model_pipe, "tom") == set(face_ids[:100])


def test_proposed_users_cluster_matching_faces(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path
) -> None:
    ids = index_photos(model_pipe, ledger, photo_folder)
    proposals = propose_users(model_pipe, "photos", threshold=80, min_cluster_size=2)
    # The two Tom Hanks photos match; the six strangers of the group photo match no one.
    assert [sorted(m[0] for m in p.members) for p in proposals] == [
        sorted(ids["Tom_Hanks_54745.png"] + ids["tom_16bit.png"])
    ]
    assert proposals[0].user_id == "person-0001"
    out = tmp_path / "proposed.csv"
    assert write_proposals(out, proposals) == 2
    rows = read_manifest(out)
    assert {r.kind for r in rows} == {"face_id"} and {r.user_id for r in rows} == {"person-0001"}
    run_associate_job(model_pipe, "photos", rows, tmp_path)
    assert len(user_faces(model_pipe, "person-0001")) == 2
    assert propose_users(model_pipe, "photos", threshold=80, min_cluster_size=2) == []
    singles = propose_users(model_pipe, "photos", threshold=80, min_cluster_size=1)
    assert len(singles) == 6 and singles[0].user_id == "person-0002"
