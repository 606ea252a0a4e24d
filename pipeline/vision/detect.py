"""Face detectors: image in, boxes + 5 landmarks + scores out, in the image's pixel coordinates.

Every detector letterboxes the image into an input whose sides are multiples of 32 (scaled down
so the longer side is at most ``max_side``, never scaled up; padded at the right and bottom),
decodes its anchor-free/anchor-based outputs, applies NMS and maps the results back. The work is
bounded whatever the image holds: the input is at most ``max_side`` pixels a side, and at most
MAX_CANDIDATES detections (the highest scores) go into NMS.
Landmark order: eye on the image's left, other eye, nose tip, mouth corner on the image's left,
other mouth corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

FloatArray = npt.NDArray[np.float32]

MAX_CANDIDATES = 4096
"""Detections above the score threshold that go into NMS, the highest-scoring first (a 640x640
YuNet input has 8,400 cells; an image of 1,024 small faces gives about 3,700 candidates)."""


@dataclass(frozen=True)
class Detections:
    """Faces found in one image: ``boxes`` (N,4) x1,y1,x2,y2 pixels, ``scores`` (N,) 0-1,
    ``landmarks`` (N,5,2) x,y pixels; sorted by score, highest first."""

    boxes: FloatArray
    scores: FloatArray
    landmarks: FloatArray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class Detector(Protocol):
    """What the engine needs from a face detector."""

    def detect(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        """Faces in a (H, W, 3) BGR uint8 image."""
        ...


def input_geometry(width: int, height: int, max_side: int) -> tuple[float, int, int]:
    """Scale factor and the (input_width, input_height) for an image, both multiples of 32.

    The image is shrunk so its longer side is at most ``max_side`` pixels (never enlarged), then
    padded up to the next multiple of 32.
    """
    scale = min(1.0, max_side / max(width, height))
    scaled_w = max(1, round(width * scale))
    scaled_h = max(1, round(height * scale))
    return scale, int(np.ceil(scaled_w / 32) * 32), int(np.ceil(scaled_h / 32) * 32)


def shrink(bgr: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    """Downscale to (width, height): pixel-area averaging by the largest whole factor (OpenCV's
    fast path), then bilinear for the remaining factor below 2; close to INTER_AREA, many times faster."""
    factor = int(min(bgr.shape[1] / width, bgr.shape[0] / height))
    if factor >= 2:
        bgr = np.asarray(
            cv2.resize(bgr, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
        )
    if bgr.shape[1] == width and bgr.shape[0] == height:
        return bgr
    return np.asarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR))


def letterbox(bgr: npt.NDArray[np.uint8], max_side: int) -> tuple[npt.NDArray[np.uint8], float]:
    """The image resized by the scale of :func:`input_geometry` and zero-padded to its input size."""
    height, width = bgr.shape[:2]
    scale, in_w, in_h = input_geometry(width, height, max_side)
    scaled_w, scaled_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = bgr if scale == 1.0 else shrink(bgr, scaled_w, scaled_h)
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:scaled_h, :scaled_w] = resized
    return canvas, scale


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float) -> npt.NDArray[np.intp]:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def _finish(
    boxes: FloatArray,
    scores: FloatArray,
    landmarks: FloatArray,
    scale: float,
    iou: float,
    size: tuple[int, int],
) -> Detections:
    if scores.shape[0] > MAX_CANDIDATES:
        best = np.argpartition(-scores, MAX_CANDIDATES - 1)[:MAX_CANDIDATES]
        boxes, scores, landmarks = boxes[best], scores[best], landmarks[best]
    keep = nms(boxes, scores, iou)
    width, height = size
    boxes = boxes[keep] / scale
    landmarks = landmarks[keep] / scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return Detections(
        boxes=boxes.astype(np.float32),
        scores=scores[keep].astype(np.float32),
        landmarks=landmarks.astype(np.float32),
    )


class YuNetDetector:
    """YuNet (OpenCV Zoo, 2023mar): BGR float 0-255 input, anchor-free outputs at strides 8/16/32.

    score = sqrt(cls * obj); box centre (col + dx) * stride, size exp(dw) * stride; landmarks
    (col + kx) * stride. The outputs of all strides are decoded at once against a cached grid of
    cell positions, only for the cells above the score threshold.
    """

    STRIDES = (8, 16, 32)

    def __init__(
        self, session: ort.InferenceSession, score_threshold: float, nms_iou: float, max_side: int
    ) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_side = max_side

        self._grids: dict[tuple[int, int], FloatArray] = {}

    def _grid(self, in_w: int, in_h: int) -> FloatArray:
        """(N, 3) column, row and stride of every output cell of an input size, strides in order."""
        grid = self._grids.get((in_w, in_h))
        if grid is None:
            parts = []
            for stride in self.STRIDES:
                rows, cols = np.mgrid[: in_h // stride, : in_w // stride]
                parts.append(
                    np.stack([cols.ravel(), rows.ravel(), np.full(cols.size, stride)], axis=1).astype(
                        np.float32
                    )
                )
            grid = np.concatenate(parts)
            if len(self._grids) < 64:  # a few input sizes recur; bounded whatever the images
                self._grids[(in_w, in_h)] = grid
        return grid

    def detect(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        """Faces in a (H, W, 3) BGR uint8 image."""
        canvas, scale = letterbox(bgr, self.max_side)
        in_h, in_w = canvas.shape[:2]
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        outputs = dict(
            zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob}), strict=True)
        )
        grid = self._grid(in_w, in_h)

        def joined(kind: str) -> FloatArray:
            return np.concatenate([outputs[f"{kind}_{stride}"][0] for stride in self.STRIDES])

        cls, obj = np.clip(joined("cls")[:, 0], 0, 1), np.clip(joined("obj")[:, 0], 0, 1)
        if cls.shape[0] != grid.shape[0]:
            raise ValueError(
                f"YuNet gave {cls.shape[0]} cells for a {in_w}x{in_h} input; expected {grid.shape[0]}"
            )
        score = np.sqrt(cls * obj)
        hit = np.nonzero(score >= self.score_threshold)[0]
        if hit.size == 0:
            return Detections(
                np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
            )
        col, row, stride = grid[hit, 0], grid[hit, 1], grid[hit, 2]
        bbox = joined("bbox")[hit]
        kps = joined("kps")[hit].reshape(-1, 5, 2)
        cx = (col + bbox[:, 0]) * stride
        cy = (row + bbox[:, 1]) * stride
        w = np.exp(bbox[:, 2]) * stride
        h = np.exp(bbox[:, 3]) * stride
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        points = np.stack(
            [
                (col[:, None] + kps[:, :, 0]) * stride[:, None],
                (row[:, None] + kps[:, :, 1]) * stride[:, None],
            ],
            axis=2,
        )
        return _finish(
            boxes.astype(np.float32),
            score[hit].astype(np.float32),
            points.astype(np.float32),
            scale,
            self.nms_iou,
            (bgr.shape[1], bgr.shape[0]),
        )


class ScrfdDetector:
    """SCRFD (insightface packs): RGB (x - 127.5) / 128 input, 2 anchors per cell at strides
    8/16/32, outputs score/bbox/kps per stride as distances from the anchor centre in strides."""

    STRIDES = (8, 16, 32)
    ANCHORS_PER_CELL = 2

    def __init__(
        self, session: ort.InferenceSession, score_threshold: float, nms_iou: float, max_side: int
    ) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]
        if len(self.output_names) != 9:
            raise ValueError(
                f"SCRFD model with {len(self.output_names)} outputs; expected 9 (score, bbox, kps at 3 strides)"
            )
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_side = max_side

    def detect(self, bgr: npt.NDArray[np.uint8]) -> Detections:
        """Faces in a (H, W, 3) BGR uint8 image."""
        canvas, scale = letterbox(bgr, self.max_side)
        in_h, in_w = canvas.shape[:2]
        blob = ((canvas[:, :, ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(blob)})
        all_boxes, all_scores, all_kps = [], [], []
        for level, stride in enumerate(self.STRIDES):
            score = outs[level].reshape(-1)
            dist = outs[level + 3].reshape(-1, 4) * stride
            kps = outs[level + 6].reshape(-1, 5, 2) * stride
            rows, cols = in_h // stride, in_w // stride
            ys, xs = np.mgrid[:rows, :cols]
            centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            centres = np.repeat(centres, self.ANCHORS_PER_CELL, axis=0)
            hit = np.nonzero(score >= self.score_threshold)[0]
            if hit.size == 0:
                continue
            c = centres[hit]
            d = dist[hit]
            all_boxes.append(
                np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1)
            )
            all_scores.append(score[hit])
            all_kps.append(c[:, None, :] + kps[hit])
        if not all_scores:
            return Detections(
                np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)
            )
        return _finish(
            np.concatenate(all_boxes).astype(np.float32),
            np.concatenate(all_scores).astype(np.float32),
            np.concatenate(all_kps).astype(np.float32),
            scale,
            self.nms_iou,
            (bgr.shape[1], bgr.shape[0]),
        )
