"""Fixtures for the batch-job tests: a FacePipe on the real models and folders of real photos."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.jobs.ledger import JobLedger
from pipeline.service import FacePipe

BROKEN_FILES = ("empty.jpg", "notes.jpg", "truncated.jpg")
"""Files of the photo folder that cannot be indexed."""


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared-model cache shared by the session's engines."""
    return tmp_path_factory.mktemp("jobs-model-cache")


@pytest.fixture()
def settings(tmp_path: Path, model_cache: Path) -> Settings:
    """Settings with a fresh data directory, CPU provider."""
    return Settings(data_dir=tmp_path / "home", cache_dir=model_cache, provider="cpu", threads=2)


@pytest.fixture()
def model_pipe(settings: Settings) -> Iterator[FacePipe]:
    """A FacePipe on the real default models, with collection 'photos' created."""
    pipe = FacePipe(settings)
    pipe.call("CreateCollection", {"CollectionId": "photos"})
    yield pipe
    pipe.close()


@pytest.fixture()
def ledger(settings: Settings) -> Iterator[JobLedger]:
    """The job ledger of the test's data directory."""
    with JobLedger.in_data_dir(settings.data_dir) as opened:
        yield opened


@pytest.fixture()
def photo_folder(tmp_path: Path, sample_images: Path) -> Path:
    """A folder of real photos plus broken files.

    Top level: t1.jpg (a group of 6 faces), Tom_Hanks_54745.png, the same photo as a 16-bit PNG
    (indexed: 16-bit samples are accepted), and BROKEN_FILES (an empty file, a text file named
    .jpg, a truncated JPEG). sub/: another copy of t1.jpg, only picked up by a recursive walk.
    """
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(sample_images / "t1.jpg", folder / "t1.jpg")
    shutil.copy(sample_images / "Tom_Hanks_54745.png", folder / "Tom_Hanks_54745.png")
    tom = cv2.imread(str(sample_images / "Tom_Hanks_54745.png"), cv2.IMREAD_COLOR)
    assert cv2.imwrite(str(folder / "tom_16bit.png"), tom.astype(np.uint16) * 257)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image\n")
    data = (sample_images / "t1.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "sub" / "t1.jpg").write_bytes(data + b"\0copy")
    return folder
