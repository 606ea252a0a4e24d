"""Fixtures for the batch-job tests: a FacePipe on the real models and folders of real photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.jobs.ledger import JobLedger
from pipeline.service import FacePipe
from tests.support.photos import photo_folder_with_broken_files


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
    """A folder of real photos plus broken files (tests.support.photos.photo_folder_with_broken_files)."""
    return photo_folder_with_broken_files(tmp_path / "photos", sample_images)
