"""Folder indexing on real photos: everything good indexed once, bad files reported, resumable."""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import pipeline.service.faces as service_faces
from pipeline.errors import ResourceInUseException
from pipeline.jobs.analyzers import LocalAnalyzer
from pipeline.jobs.index_folder import IndexOptions, index_folder
from pipeline.jobs.ledger import JobLedger
from pipeline.service import FacePipe
from tests.support.photos import BROKEN_FILES


def run_job(
    model_pipe: FacePipe, ledger: JobLedger, folder: Path, report: Path, **options: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Index ``folder`` into 'photos'; returns the summary and the report lines."""
    analyzer = LocalAnalyzer(model_pipe.engine, batch_size=2, max_image_bytes=15 * 2**20)
    try:
        with report.open("w") as out:
            summary = index_folder(
                model_pipe,
                ledger,
                "photos",
                folder,
                analyzer,
                options=IndexOptions(**options),
                report=out,
                progress_stream=None,
            )
    finally:
        analyzer.close()
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    return summary.to_json(), lines


def faces_by_image(model_pipe: FacePipe) -> dict[str, list[str]]:
    """ExternalImageId -> FaceIds of every face in 'photos'."""
    faces: dict[str, list[str]] = collections.defaultdict(list)
    for face in model_pipe.call("ListFaces", {"CollectionId": "photos", "MaxResults": 4096})["Faces"]:
        faces[face["ExternalImageId"]].append(face["FaceId"])
    return dict(faces)


def reported_face_ids(lines: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {
        line["ExternalImageId"]: sorted(r["FaceId"] for r in line.get("FaceRecords", []))
        for line in lines
        if line.get("FaceRecords")
    }


def test_folder_indexed_once_and_bad_files_reported(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path
) -> None:
    summary, lines = run_job(model_pipe, ledger, photo_folder, tmp_path / "r1.jsonl", recursive=True)
    by_path = {line["Path"]: line for line in lines}
    assert sorted(by_path) == sorted(
        ["Tom_Hanks_54745.png", "t1.jpg", "tom_16bit.png", "sub/t1.jpg", *BROKEN_FILES]
    )
    for name in BROKEN_FILES:
        assert by_path[name]["Status"] == "FAILED"
        assert by_path[name]["Error"]["Code"] == "InvalidImageFormatException", by_path[name]
    assert "empty" in by_path["empty.jpg"]["Error"]["Message"]
    assert "truncated" in by_path["truncated.jpg"]["Error"]["Message"]
    assert len(by_path["t1.jpg"]["FaceRecords"]) == 6
    assert len(by_path["sub/t1.jpg"]["FaceRecords"]) == 6
    assert len(by_path["Tom_Hanks_54745.png"]["FaceRecords"]) == 1
    assert len(by_path["tom_16bit.png"]["FaceRecords"]) == 1
    assert by_path["sub/t1.jpg"]["ExternalImageId"] == "sub:t1.jpg"
    assert summary["Images"] == 7 and summary["Indexed"] == 4 and summary["Failed"] == 3
    assert summary["FacesIndexed"] == 14
    stored = faces_by_image(model_pipe)
    assert {k: sorted(v) for k, v in stored.items()} == reported_face_ids(lines)

    # A rerun skips everything done, retries the bad files, and reports every image again.
    summary2, lines2 = run_job(model_pipe, ledger, photo_folder, tmp_path / "r2.jsonl", recursive=True)
    assert summary2["Skipped"] == 4 and summary2["Indexed"] == 0 and summary2["Failed"] == 3
    assert reported_face_ids(lines2) == reported_face_ids(lines)
    assert {line["Path"]: line["Status"] for line in lines2 if line["Status"] != "FAILED"} == {
        p: "ALREADY_INDEXED" for p in ("Tom_Hanks_54745.png", "t1.jpg", "tom_16bit.png", "sub/t1.jpg")
    }
    assert faces_by_image(model_pipe) == stored


def test_non_recursive_walk_and_name_ids_with_collisions(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path
) -> None:
    _, flat = run_job(model_pipe, ledger, photo_folder, tmp_path / "flat.jsonl")
    assert "sub/t1.jpg" not in {line["Path"] for line in flat}
    # The sub-folder's t1.jpg, met later in walk order, must not take the name t1.jpg.
    _, lines = run_job(
        model_pipe, ledger, photo_folder, tmp_path / "named.jsonl", recursive=True, id_source="name"
    )
    ids = {line["Path"]: line["ExternalImageId"] for line in lines}
    assert ids["t1.jpg"] == "t1.jpg"
    assert ids["sub/t1.jpg"].startswith("t1.jpg_") and len(ids["sub/t1.jpg"]) == len("t1.jpg_") + 8
    assert len(faces_by_image(model_pipe)[ids["sub/t1.jpg"]]) == 6


def test_changed_file_is_reindexed_without_leftovers(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, sample_images: Path, tmp_path: Path
) -> None:
    run_job(model_pipe, ledger, photo_folder, tmp_path / "r1.jsonl")
    before = faces_by_image(model_pipe)
    assert len(before["t1.jpg"]) == 6
    shutil.copy(sample_images / "Tom_Hanks_54745.png", photo_folder / "t1.jpg")
    summary, lines = run_job(model_pipe, ledger, photo_folder, tmp_path / "r2.jsonl")
    assert summary["Indexed"] == 1 and summary["Skipped"] == 2
    after = faces_by_image(model_pipe)
    assert len(after["t1.jpg"]) == 1
    assert not set(after["t1.jpg"]) & set(before["t1.jpg"])
    assert after["Tom_Hanks_54745.png"] == before["Tom_Hanks_54745.png"]
    line = next(line for line in lines if line["Path"] == "t1.jpg")
    assert line["Status"] == "INDEXED" and [r["FaceId"] for r in line["FaceRecords"]] == after["t1.jpg"]


def test_crash_after_store_commit_is_recovered_without_duplicates(
    model_pipe: FacePipe,
    ledger: JobLedger,
    photo_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Faces committed, ledger not yet: the next run undoes and redoes exactly those files."""
    real_index = service_faces.index_images
    calls = []

    def index_then_die(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        result = real_index(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed right after the store transaction
        return result

    monkeypatch.setattr(service_faces, "index_images", index_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_job(model_pipe, ledger, photo_folder, tmp_path / "r1.jsonl", recursive=True)
    monkeypatch.setattr(service_faces, "index_images", real_index)

    summary, lines = run_job(model_pipe, ledger, photo_folder, tmp_path / "r2.jsonl", recursive=True)
    assert summary["RecoveredFromInterruptedRun"] >= 1
    assert summary["Skipped"] + summary["Indexed"] == 4
    stored = faces_by_image(model_pipe)
    assert {k: sorted(v) for k, v in stored.items()} == reported_face_ids(lines)
    assert {k: len(v) for k, v in stored.items()} == {
        "Tom_Hanks_54745.png": 1,
        "t1.jpg": 6,
        "tom_16bit.png": 1,
        "sub:t1.jpg": 6,
    }


def test_recreated_collection_is_indexed_again(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path
) -> None:
    run_job(model_pipe, ledger, photo_folder, tmp_path / "r1.jsonl")
    model_pipe.call("DeleteCollection", {"CollectionId": "photos"})
    model_pipe.call("CreateCollection", {"CollectionId": "photos"})
    summary, _ = run_job(model_pipe, ledger, photo_folder, tmp_path / "r2.jsonl")
    assert summary["Indexed"] == 3 and summary["Skipped"] == 0
    assert sum(len(v) for v in faces_by_image(model_pipe).values()) == 8


def test_non_utf8_file_name_is_indexed_and_resumed(
    model_pipe: FacePipe, ledger: JobLedger, tmp_path: Path, sample_images: Path
) -> None:
    folder = tmp_path / "latin1"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # not valid UTF-8: held with a surrogate escape
    shutil.copy(sample_images / "Tom_Hanks_54745.png", folder / name)
    summary, lines = run_job(model_pipe, ledger, folder, tmp_path / "first.jsonl")
    assert summary["Indexed"] == 1 and lines[0]["Path"] == name
    assert lines[0]["ExternalImageId"] == "caf_.png"
    again, _ = run_job(model_pipe, ledger, folder, tmp_path / "second.jsonl")
    assert again["Skipped"] == 1 and again["Indexed"] == 0


def test_oversized_file_is_reported_without_being_read_whole(
    model_pipe: FacePipe,
    ledger: JobLedger,
    tmp_path: Path,
    sample_images: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    data = (sample_images / "t1.jpg").read_bytes()
    (folder / "huge.jpg").write_bytes(data + b"\0" * 4096)
    read_whole = Path.read_bytes

    def refuse_whole_reads(path: Path) -> bytes:
        assert path.name != "huge.jpg", "the oversized file was read whole"
        return read_whole(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_whole_reads)
    analyzer = LocalAnalyzer(model_pipe.engine, batch_size=2, max_image_bytes=len(data))
    try:
        with (tmp_path / "r.jsonl").open("w") as out:
            summary = index_folder(
                model_pipe, ledger, "photos", folder, analyzer, report=out, progress_stream=None
            ).to_json()
    finally:
        analyzer.close()
    line = json.loads((tmp_path / "r.jsonl").read_text())
    assert summary["Failed"] == 1
    assert line["Error"]["Code"] == "ImageTooLargeException"


def test_second_run_on_the_same_folder_and_collection_is_refused_while_one_runs(
    model_pipe: FacePipe, ledger: JobLedger, photo_folder: Path, tmp_path: Path
) -> None:
    seen: list[str] = []

    class SecondRunInside(LocalAnalyzer):
        def run(self, tasks: Any) -> Any:
            with JobLedger(ledger.path) as other_ledger, pytest.raises(ResourceInUseException) as refused:
                index_folder(model_pipe, other_ledger, "photos", photo_folder, self, progress_stream=None)
            seen.append(str(refused.value))
            return super().run(tasks)

    analyzer = SecondRunInside(model_pipe.engine, batch_size=2, max_image_bytes=15 * 2**20)
    summary = index_folder(
        model_pipe, ledger, "photos", photo_folder, analyzer, progress_stream=None
    ).to_json()
    assert seen and "another run" in seen[0]
    assert summary["Indexed"] == 3 and summary["Failed"] == len(BROKEN_FILES)
    again, _ = run_job(model_pipe, ledger, photo_folder, tmp_path / "after.jsonl")
    assert again["Skipped"] == 3
