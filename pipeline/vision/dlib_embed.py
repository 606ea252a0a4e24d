"""Embedders of the ``dlib_fused`` pack: dlib's ResNet in ONNX Runtime, and its fusion with SFace.

The fused vector of a face is ``[sqrt(w) * s, sqrt(1 - w) * d]`` for its unit SFace vector ``s``
and unit dlib descriptor ``d`` (renormalised), so the inner product of two fused vectors is
``w * cos_sface + (1 - w) * cos_dlib``: the store's cosine search and the -1..1 calibration map
apply unchanged. ``w`` is the manifest's ``fusion.sface_weight``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline.vision.dlib_align import chips_from_crops
from pipeline.vision.dlib_convert import CHIP_SIZE
from pipeline.vision.embed import Embedder, check_crops, l2_normalise


class DlibEmbedder:
    """dlib's face-recognition ResNet (pipeline.vision.dlib_convert) on 112x112 ArcFace crops:
    each crop becomes a 150x150 chip (pipeline.vision.dlib_align), the graph gives a 128-d
    descriptor, returned L2-normalised."""

    def __init__(self, session: ort.InferenceSession, batch_size: int = 4) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.batch_size = batch_size
        probe = session.run(None, {self.input_name: np.zeros((1, 3, CHIP_SIZE, CHIP_SIZE), np.float32)})[0]
        self.embedding_dim = int(probe.shape[1])

    def descriptors(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 150, 150, 3) BGR uint8 dlib chips -> (N, 128) raw descriptors (dlib's own scale)."""
        rgb = chips[..., ::-1]
        out = [np.zeros((0, self.embedding_dim), np.float32)]
        for start in range(0, len(rgb), self.batch_size):
            batch = np.ascontiguousarray(
                rgb[start : start + self.batch_size].transpose(0, 3, 1, 2), np.float32
            )
            out.append(self.session.run(None, {self.input_name: batch})[0])
        return np.concatenate(out).astype(np.float32)

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 aligned crops -> (N, 128) unit vectors."""
        check_crops(crops)
        return l2_normalise(self.descriptors(chips_from_crops(crops)))


class FusedEmbedder:
    """Two embedders' unit vectors concatenated with weights sqrt(w) and sqrt(1 - w)."""

    def __init__(self, first: Embedder, second: Embedder, first_weight: float) -> None:
        if not 0.0 < first_weight < 1.0:
            raise ValueError(f"fusion weight must be between 0 and 1, got {first_weight}")
        self.first = first
        self.second = second
        self.first_weight = first_weight
        self.embedding_dim = first.embedding_dim + second.embedding_dim

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 aligned crops -> (N, D1 + D2) unit vectors."""
        check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        first = self.first.embed(crops) * math.sqrt(self.first_weight)
        second = self.second.embed(crops) * math.sqrt(1.0 - self.first_weight)
        return l2_normalise(np.concatenate([first, second], axis=1))
