"""Indexing keeps a collection to the model it was created with: faces embedded by another model
of the same vector size are refused (InvalidParameterException), as the searches and AssociateFaces
refuse that engine, instead of being stored among vectors they cannot be compared with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidParameterException
from pipeline.service import FacePipe
from pipeline.service.faces import AnalyzedImage, index_images
from tests.support.synthetic_faces import LinearEngine, index_vectors, make_face, person


class OtherModelEngine(LinearEngine):
    """The same vectors' size under another model's name."""

    model_version = "2.0"


def test_faces_of_another_model_of_the_same_size_are_not_indexed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache")
    made, other = FacePipe(settings, engine=LinearEngine()), FacePipe(settings, engine=OtherModelEngine())
    try:
        made.call("CreateCollection", {"CollectionId": "c"})
        vectors = person(np.random.default_rng(3), 3)
        index_vectors(made, "c", vectors[:1])
        item = AnalyzedImage("other", 640, 480, [make_face(vectors[1])])
        with pytest.raises(
            InvalidParameterException, match=r"holds faces of model 1\.0; this engine runs 2\.0"
        ):
            index_images(other, "c", [item])
        assert made.call("DescribeCollection", {"CollectionId": "c"})["FaceCount"] == 1
        # an image without faces stores nothing and is answered as before
        (empty,) = index_images(other, "c", [AnalyzedImage("none", 640, 480, [])])
        assert empty.faces == [] and empty.unindexed == []
        # the collection's own model still indexes
        (indexed,) = index_images(made, "c", [AnalyzedImage("own", 640, 480, [make_face(vectors[2])])])
        assert len(indexed.faces) == 1
    finally:
        made.close()
        other.close()
