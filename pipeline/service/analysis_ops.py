"""DetectFaces and CompareFaces: image operations without a collection (see analysis.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.service import analysis
from pipeline.service.common import operation
from pipeline.service.images import decoded_image

if TYPE_CHECKING:
    from pipeline.service import FacePipe


def _vision_engine(fp: FacePipe) -> Any:
    """The engine as analysis.py types it (the vision package's class; FacePipe types it by interface)."""
    return fp.engine


@operation("DetectFaces")
def detect_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of one image with the requested Attributes."""
    image = decoded_image(fp, params["Image"])
    response: dict[str, Any] = analysis.detect_faces(
        _vision_engine(fp), image, list(params.get("Attributes") or ["DEFAULT"])
    )
    return response


@operation("CompareFaces")
def compare_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """The largest face of SourceImage compared with every face of TargetImage."""
    source = decoded_image(fp, params["SourceImage"], "SourceImage")
    target = decoded_image(fp, params["TargetImage"], "TargetImage")
    response: dict[str, Any] = analysis.compare_faces(
        _vision_engine(fp),
        source,
        target,
        float(params.get("SimilarityThreshold", 80.0)),
        str(params.get("QualityFilter", "NONE")),
    )
    return response
