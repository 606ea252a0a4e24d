"""`facepipe quickstart`: what a new user runs first, end to end, with the real models."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from pipeline.cli.quickstart import mirrored_crop, run_quickstart
from pipeline.config import Settings
from pipeline.service import FacePipe
from tests.support.cli import Runner


def test_quickstart_as_a_new_user_runs_it(facepipe_process: Runner, tmp_path: Path) -> None:
    home = tmp_path / "untouched-home"
    result = facepipe_process("quickstart", env={"FACEPIPE_HOME": str(home)})
    assert result.status == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("2. IndexFaces t1.jpg: 6 faces indexed") for line in lines), result.stdout
    assert any("<- the same face" in line for line in lines)
    assert any(
        line.startswith("8. SearchUsersByImage with the mirrored portrait: tom-hanks") for line in lines
    )
    assert any(line.startswith("9. DescribeCollection quickstart: 7 faces, 1 user") for line in lines)
    assert not home.exists(), "the quickstart's default store is temporary"


def test_quickstart_keeps_its_store_with_data_dir(facepipe_process: Runner, tmp_path: Path) -> None:
    store = tmp_path / "kept"
    assert facepipe_process("quickstart", "--data-dir", str(store)).status == 0
    listed = facepipe_process(
        "list-users",
        "--collection-id",
        "quickstart",
        "--data-dir",
        str(store),
        "--query",
        "Users[].UserId",
        "--output",
        "text",
    )
    assert listed.status == 0 and listed.stdout.split() == ["tom-hanks"]
    again = facepipe_process("quickstart", "--data-dir", str(store))
    assert again.status == 1
    assert "ResourceAlreadyExistsException" in again.stderr and "Traceback" not in again.stderr


def test_quickstart_results_mean_what_they_say(sample_images: Path, tmp_path: Path) -> None:
    fp = FacePipe(Settings.from_env(data_dir=tmp_path / "store"))
    printed = io.StringIO()
    try:
        report = run_quickstart(fp, sample_images, "qs", out=printed)
    finally:
        fp.close()
    assert len(report.group_faces) == 6
    assert len(report.probe_matches) == 7, "FaceMatchThreshold 0 returns every face of the collection"
    for match in report.probe_matches:  # and the quickstart prints each, as it says
        assert f"Similarity {match['Similarity']:6.2f}  {match['Face']['FaceId']}" in printed.getvalue()
    assert report.portrait_face_id and report.faces_in_no_face_photo == 0
    best, runner_up = report.probe_matches[0], report.probe_matches[1]
    assert best["Face"]["FaceId"] == report.probe_face_id
    assert best["Similarity"] >= 90, "a mirrored, half-size crop of a face matches that face"
    assert runner_up["Similarity"] < 80, "the other people in the photo stay below the default threshold"
    assert len(report.portrait_vs_group) == 6
    assert max(report.portrait_vs_group) < 80, "the portrait's person is not in the group photo"
    assert [match["User"]["UserId"] for match in report.user_matches][:1] == ["tom-hanks"]
    assert report.user_matches[0]["Similarity"] >= 80
    assert (report.face_count, report.user_count) == (7, 1)


def test_mirrored_crop_is_the_face_region_flipped_and_scaled(sample_images: Path) -> None:
    data = (sample_images / "t1.jpg").read_bytes()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    height, width = pixels.shape[:2]
    box = {"Left": 0.25, "Top": 0.25, "Width": 0.1, "Height": 0.2}
    crop = cv2.imdecode(
        np.frombuffer(mirrored_crop(data, box, scale=0.5, margin=0.5), np.uint8), cv2.IMREAD_COLOR
    )
    x0, x1 = int(0.2 * width), int(0.4 * width)  # the box widened by half its size on each side
    y0, y1 = int(0.15 * height), int(0.55 * height)
    region = cv2.flip(pixels[y0:y1, x0:x1], 1)
    expected = cv2.resize(
        region, (round((x1 - x0) * 0.5), round((y1 - y0) * 0.5)), interpolation=cv2.INTER_AREA
    )
    assert crop.shape == expected.shape
    assert np.array_equal(crop, expected)
