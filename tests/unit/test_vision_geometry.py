"""Detection geometry, NMS, alignment and pose, on synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.vision.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from pipeline.vision.detect import input_geometry, letterbox, nms
from pipeline.vision.quality import TEMPLATE_NOSE_HEIGHT, estimate_pose


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1280, 886), (0.5, 640, 448)),
        ((135, 135), (1.0, 160, 160)),
        ((640, 480), (1.0, 640, 480)),
        ((80, 3000), (640 / 3000, 32, 640)),
    ],
)
def test_input_geometry_multiples_of_32(size: tuple[int, int], expected: tuple[float, int, int]) -> None:
    scale, w, h = input_geometry(*size, max_side=640)
    assert scale == pytest.approx(expected[0]) and (w, h) == expected[1:]
    assert w % 32 == 0 and h % 32 == 0


def test_letterbox_keeps_content_top_left() -> None:
    image = np.full((100, 200, 3), 9, np.uint8)
    canvas, scale = letterbox(image, 640)
    assert scale == 1.0 and canvas.shape == (128, 224, 3)
    assert canvas[:100, :200].min() == 9 and canvas[100:].max() == 0 and canvas[:, 200:].max() == 0


def test_nms_drops_overlaps_keeps_separate() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.1], np.float32)
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(boxes, scores, 1.0).tolist() == [1, 0, 2, 3]


def test_similarity_transform_recovers_rotation_scale_shift() -> None:
    angle, scale, shift = np.radians(20), 2.5, np.array([30.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE.astype(np.float64)
    dst = src @ rot.T + shift
    m = similarity_transform(src.astype(np.float32), dst.astype(np.float32))
    assert np.allclose(m[:, :2], rot, atol=1e-6) and np.allclose(m[:, 2], shift, atol=1e-5)


def test_align_face_puts_landmarks_on_template() -> None:
    # a 400x400 image with bright dots where the landmarks are: after alignment they sit on the template
    points = ARCFACE_TEMPLATE * 2.5 + np.array([80.0, 60.0], np.float32)
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in points:
        image[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] = 255
    crop = align_face(image, points.astype(np.float32))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].max() > 200


def frontal(nose_height: float = TEMPLATE_NOSE_HEIGHT) -> np.ndarray:
    pts = ARCFACE_TEMPLATE.copy()
    pts[2, 1] = pts[:2, 1].mean() + nose_height * (pts[3:, 1].mean() - pts[:2, 1].mean())
    pts[2, 0] = pts[[0, 1, 3, 4], 0].mean()
    return pts


def test_pose_frontal_is_near_zero_and_roll_follows_rotation() -> None:
    pose = estimate_pose(frontal())
    assert abs(pose.roll) < 1 and abs(pose.yaw) < 1 and abs(pose.pitch) < 1
    angle = np.radians(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = estimate_pose((frontal() @ rot.T).astype(np.float32))
    assert rolled.roll == pytest.approx(25, abs=0.5) and abs(rolled.yaw) < 1 and abs(rolled.pitch) < 1


def test_pose_yaw_and_pitch_signs() -> None:
    turned = frontal()
    turned[2, 0] += 10  # nose towards the image's right
    assert estimate_pose(turned).yaw > 20
    up = frontal()
    up[2, 1] -= 8  # nose tip closer to the eye line: face looks up
    assert estimate_pose(up).pitch > 15
    assert abs(estimate_pose(frontal(0.57), frontal_nose_height=0.57).pitch) < 1
