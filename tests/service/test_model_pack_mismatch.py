"""A collection keeps the model its vectors were made with: an engine of another model (another
FACEPIPE_MODEL_PACK) may not score them, because its vectors and calibration mean something else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Settings
from pipeline.errors import InvalidParameterException
from pipeline.service import FacePipe
from tests.support.synthetic_faces import LinearEngine, index_vectors, person


class OtherModelEngine(LinearEngine):
    """The same vectors' size under another model's name."""

    model_version = "2.0"


def test_an_engine_of_another_model_is_refused_by_every_scoring_operation(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache")
    made, other = FacePipe(settings, engine=LinearEngine()), FacePipe(settings, engine=OtherModelEngine())
    try:
        made.call("CreateCollection", {"CollectionId": "c"})
        face_ids = index_vectors(made, "c", person(np.random.default_rng(7), 3))
        made.call("CreateUser", {"CollectionId": "c", "UserId": "u"})
        made.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": face_ids[:1]})
        calls = [
            ("SearchFaces", {"CollectionId": "c", "FaceId": face_ids[0]}),
            ("SearchUsers", {"CollectionId": "c", "FaceId": face_ids[0]}),
            ("SearchUsers", {"CollectionId": "c", "UserId": "u"}),
            ("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": face_ids[1:]}),
        ]
        for operation, params in calls:
            with pytest.raises(
                InvalidParameterException, match=r"holds faces of model 1\.0; this engine runs 2\.0"
            ):
                other.call(operation, params)
        # nothing was written by the refused AssociateFaces; the collection's own engine still works
        listed = made.call("ListFaces", {"CollectionId": "c", "UserId": "u"})
        assert [f["FaceId"] for f in listed["Faces"]] == face_ids[:1]
        found = made.call(
            "SearchFaces", {"CollectionId": "c", "FaceId": face_ids[0], "FaceMatchThreshold": 0}
        )
        assert {m["Face"]["FaceId"] for m in found["FaceMatches"]} == set(face_ids[1:])
    finally:
        made.close()
        other.close()
