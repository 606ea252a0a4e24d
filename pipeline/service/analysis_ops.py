"""DetectFaces and CompareFaces: image operations without a collection (see analysis.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.service import analysis
from pipeline.service.common import operation
from pipeline.service.images import decoded_image

if TYPE_CHECKING:
    from pipeline.service import FacePipe


@operation("DetectFaces")
def detect_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """Faces of one image with the requested Attributes."""
    image = decoded_image(fp, params["Image"])
    return analysis.detect_faces(fp.engine, image, list(params.get("Attributes") or ["DEFAULT"]))


@operation("CompareFaces")
def compare_faces(fp: FacePipe, params: dict[str, Any]) -> dict[str, Any]:
    """The largest face of SourceImage compared with every face of TargetImage."""
    source = decoded_image(fp, params["SourceImage"], "SourceImage")
    target = decoded_image(fp, params["TargetImage"], "TargetImage")
    return analysis.compare_faces(
        fp.engine,
        source,
        target,
        float(params.get("SimilarityThreshold", analysis.DEFAULT_SIMILARITY_THRESHOLD)),
        str(params.get("QualityFilter", "NONE")),
    )
