"""The ``fake_pipe`` fixture: a FacePipe on a fresh data directory with the synthetic engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.service import FacePipe
from tests.support.synthetic_faces import LinearEngine


@pytest.fixture()
def fake_pipe(tmp_path: Path) -> Iterator[FacePipe]:
    pipe = FacePipe(Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"), engine=LinearEngine())
    yield pipe
    pipe.close()
