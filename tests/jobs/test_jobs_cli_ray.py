"""The command-line entry points' exit statuses and messages, and the Ray engine on a local Ray."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline.cli.jobs import associate_job_main, index_folder_main


def test_missing_collection_is_a_service_error(
    tmp_path: Path, photo_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = index_folder_main(
        [str(photo_folder), "--collection-id", "nope", "--data-dir", str(tmp_path / "h")]
    )
    assert status == 255
    assert "ResourceNotFoundException" in capsys.readouterr().err


def test_bad_folder_and_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--data-dir", str(tmp_path / "h")]
    assert (
        index_folder_main([str(tmp_path / "missing"), "--collection-id", "c", "--create-collection", *home])
        == 2
    )
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        index_folder_main([str(tmp_path), "--collection-id", "c", "--max-faces", "0", *home])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        associate_job_main(["--collection-id", "c", *home])
    assert exit_info.value.code == 2
    manifest = tmp_path / "m.csv"
    manifest.write_text("user_id,face_id\nalice,bad\n")
    assert associate_job_main([str(manifest), "--collection-id", "c", *home]) == 2
    assert "line 2: face_id" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_engine_indexes_like_the_local_engine(
    tmp_path: Path,
    photo_folder: Path,
    model_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'facepipe[ray]')")
    monkeypatch.setenv("FACEPIPE_CACHE", str(model_cache))
    monkeypatch.setenv("FACEPIPE_PROVIDER", "cpu")
    results = {}
    for engine in ("local", "ray"):
        report = tmp_path / f"{engine}.jsonl"
        argv = [str(photo_folder), "--collection-id", "c", "--create-collection", "--recursive", "--quiet"]
        argv += ["--data-dir", str(tmp_path / engine), "--report", str(report), "--engine", engine]
        argv += ["--workers", "1", "--batch-size", "3"]
        assert index_folder_main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        results[engine] = (
            {k: summary[k] for k in ("Images", "Indexed", "Failed", "FacesIndexed")},
            [(line["Path"], line["Status"], len(line.get("FaceRecords", []))) for line in lines],
        )
    assert results["ray"] == results["local"]
    assert results["ray"][0] == {"Images": 7, "Indexed": 4, "Failed": 3, "FacesIndexed": 14}
