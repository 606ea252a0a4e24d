"""Folders of real photos (insightface's samples) for the job tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

BROKEN_FILES = ("empty.jpg", "notes.jpg", "truncated.jpg")
"""Files of photo_folder_with_broken_files that cannot be indexed."""


def photo_folder_with_broken_files(folder: Path, sample_images: Path) -> Path:
    """``folder`` made into a folder of real photos plus broken files.

    Top level: t1.jpg (a group of 6 faces), Tom_Hanks_54745.png, the same photo as a 16-bit PNG
    (indexed: 16-bit samples are accepted), and BROKEN_FILES (an empty file, a text file named
    .jpg, a truncated JPEG). sub/: another copy of t1.jpg, only picked up by a recursive walk.
    """
    (folder / "sub").mkdir(parents=True)
    shutil.copy(sample_images / "t1.jpg", folder / "t1.jpg")
    shutil.copy(sample_images / "Tom_Hanks_54745.png", folder / "Tom_Hanks_54745.png")
    tom = cv2.imread(str(sample_images / "Tom_Hanks_54745.png"), cv2.IMREAD_COLOR)
    assert cv2.imwrite(str(folder / "tom_16bit.png"), tom.astype(np.uint16) * 257)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image\n")
    data = (sample_images / "t1.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "sub" / "t1.jpg").write_bytes(data + b"\0copy")
    return folder
