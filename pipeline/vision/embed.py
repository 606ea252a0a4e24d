"""Face embedders: aligned 112x112 BGR crops in, L2-normalised float32 vectors out."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pipeline.errors import InvalidParameterException
from pipeline.vision.align import CROP_SIZE


class Embedder(Protocol):
    """What the engine needs from a face embedder."""

    embedding_dim: int

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 aligned crops -> (N, D) unit vectors."""
        ...


def l2_normalise(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (all-zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def check_crops(crops: npt.NDArray[np.uint8]) -> None:
    """Raise InvalidParameterException unless crops is (N, 112, 112, 3) uint8."""
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3):
        raise InvalidParameterException(
            f"aligned face crops must be (N, {CROP_SIZE}, {CROP_SIZE}, 3) uint8 BGR; got {crops.shape} {crops.dtype}"
        )


class OnnxEmbedder:
    """An embedding network with a dynamic batch axis: input N x 3 x 112 x 112 float.

    ``rgb``: the network wants RGB (else BGR); the input is ``(pixel - mean) / std``.
    Crops are run in chunks of ``batch_size``; the result does not depend on the chunking. Small
    chunks keep each layer's activations in the CPU caches: on one thread SFace embeds a face in
    about 13.0 ms in chunks of 2-4, 13.9 in 8 and 14.7 in 16.
    """

    def __init__(
        self, session: ort.InferenceSession, rgb: bool, mean: float, std: float, batch_size: int = 4
    ) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.rgb = rgb
        self.mean = mean
        self.std = std
        self.batch_size = batch_size
        probe = self.session.run(None, {self.input_name: np.zeros((1, 3, CROP_SIZE, CROP_SIZE), np.float32)})[
            0
        ]
        self.embedding_dim = int(probe.shape[1])

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 aligned crops -> (N, D) unit vectors."""
        check_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        pixels = crops[..., ::-1] if self.rgb else crops
        out = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start : start + self.batch_size].transpose(0, 3, 1, 2).astype(np.float32)
            if self.mean != 0.0 or self.std != 1.0:
                chunk = (chunk - self.mean) / self.std
            out.append(self.session.run(None, {self.input_name: np.ascontiguousarray(chunk)})[0])
        return l2_normalise(np.concatenate(out).astype(np.float32))


class FlipAveragedEmbedder:
    """Wraps an embedder: each face's vector is the normalised mean of the vectors of its aligned
    crop and of the crop's horizontal mirror (test-time augmentation; twice the embedding work)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.embedding_dim = inner.embedding_dim

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(N, 112, 112, 3) BGR uint8 aligned crops -> (N, D) unit vectors, flip-averaged."""
        check_crops(crops)
        mirrored = np.ascontiguousarray(crops[:, :, ::-1])
        return l2_normalise(self.inner.embed(crops) + self.inner.embed(mirrored))
