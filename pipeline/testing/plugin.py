"""pytest plugin installed with facepipe (entry point ``pytest11``): in-process Rekognition fixtures.

- ``rekognition``: :func:`pipeline.testing.rekognition` around the test, on a fresh store under
  the test's ``tmp_path``; gives the :class:`pipeline.testing.InProcessRekognition` (``.service``,
  ``.data_dir``, ``.client()``, ``.attach(client)``). Every Rekognition client the application
  creates during the test is answered by a real facepipe in the test's process.
- ``rekognition_client``: a boto3 Rekognition client (region us-east-1) answered the same way.

Nothing is imported until a test asks for a fixture, so the plugin costs nothing elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipeline.testing import InProcessRekognition


@pytest.fixture()
def rekognition(tmp_path: Path) -> Iterator[InProcessRekognition]:
    """A real facepipe answering this test's Rekognition clients in process (store in tmp_path)."""
    from pipeline.testing import rekognition as in_process

    with in_process(data_dir=tmp_path / "facepipe") as fp:
        yield fp


@pytest.fixture()
def rekognition_client(rekognition: InProcessRekognition) -> Any:
    """A boto3 Rekognition client answered by the ``rekognition`` fixture's facepipe."""
    return rekognition.client()
