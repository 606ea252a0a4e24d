"""A real SIGKILL in the middle of `facepipe index-folder`, then a rerun: nothing lost, nothing twice."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.service import FacePipe
from tests.support import REPO_ROOT

COPIES = 24


def cli_command(folder: Path, data_dir: Path, report: Path, cache: Path) -> tuple[list[str], dict[str, str]]:
    code = "import sys; from pipeline.cli.jobs import index_folder_main; sys.exit(index_folder_main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, str(folder), "--collection-id", "photos", "--create-collection"]
    argv += ["--data-dir", str(data_dir), "--report", str(report), "--batch-size", "2", "--workers", "1"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "FACEPIPE_CACHE": str(cache),
        "FACEPIPE_PROVIDER": "cpu",
    }
    return argv, env


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path: Path, sample_images: Path, model_cache: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    data = (sample_images / "t1.jpg").read_bytes()
    for i in range(COPIES):  # distinct bytes, same pixels: 6 faces each
        (folder / f"group_{i:02d}.jpg").write_bytes(data + b"\0" * (i + 1))
    data_dir = tmp_path / "home"
    report = tmp_path / "report.jsonl"
    argv, env = cli_command(folder, data_dir, report, model_cache)

    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if report.exists() and len(report.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the job ended before it could be killed; use a bigger folder"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    done_before = len(report.read_text().splitlines())
    assert 4 <= done_before < COPIES

    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["Images"] == COPIES and summary["Failed"] == 0
    assert summary["Skipped"] >= 4 and summary["Skipped"] + summary["Indexed"] == COPIES

    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(line["Path"] for line in lines) == sorted(p.name for p in folder.iterdir())
    assert all(len(line["FaceRecords"]) == 6 for line in lines)
    model_pipe = FacePipe(Settings(data_dir=data_dir, cache_dir=model_cache, provider="cpu"))
    try:
        faces = model_pipe.call("ListFaces", {"CollectionId": "photos", "MaxResults": 4096})["Faces"]
    finally:
        model_pipe.close()
    per_image = collections.Counter(face["ExternalImageId"] for face in faces)
    assert per_image == {f"group_{i:02d}.jpg": 6 for i in range(COPIES)}
    reported = {r["FaceId"] for line in lines for r in line["FaceRecords"]}
    assert reported == {face["FaceId"] for face in faces}
