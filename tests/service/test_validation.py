"""Request validation beyond botocore's: non-finite numbers, lone surrogates, Unicode-class patterns."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidParameterException
from pipeline.service import FacePipe

FACE_ID = "11111111-1111-1111-1111-111111111111"


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_threshold_is_invalid_parameter(fp: FacePipe, threshold: float) -> None:
    fp.call("CreateCollection", {"CollectionId": "c"})
    with pytest.raises(InvalidParameterException, match=r"(?i)facematchthreshold"):
        fp.call("SearchFaces", {"CollectionId": "c", "FaceId": FACE_ID, "FaceMatchThreshold": threshold})


def test_tag_key_with_lone_surrogate_is_invalid_parameter(fp: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="Unicode") as caught:
        fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"k\ud800": "v"}})
    caught.value.message.encode("utf-8")  # the message itself is printable UTF-8


def test_tag_patterns_use_unicode_classes(fp: FacePipe) -> None:
    with pytest.raises(InvalidParameterException, match="regular expression pattern"):
        fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"aws:reserved": "v"}})
    created = fp.call("CreateCollection", {"CollectionId": "c", "Tags": {"équipe 1": "Zoë"}})
    assert created["StatusCode"] == 200
