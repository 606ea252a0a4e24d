"""`facepipe quickstart`: a first run on the sample photos that ship with insightface, offline.

It indexes a group photo (t1.jpg, six people) and a portrait (Tom_Hanks_54745.png) into a
collection, creates a user for the portrait, then searches and compares real faces: a mirrored,
half-size crop of one group face finds that face again; the portrait is compared with everyone
in the group; a mirrored portrait finds its user. Every number printed is computed by the
models. The store is a temporary directory unless --data-dir names one to keep.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.cli.exit_status import ExitStatus
from pipeline.errors import RekognitionError
from pipeline.vision.samples import sample_photos

GROUP_PHOTO = "t1.jpg"
PORTRAIT = "Tom_Hanks_54745.png"
NO_FACE_PHOTO = "mask_white.jpg"
USER_ID = "tom-hanks"


@dataclass
class QuickstartReport:
    """What the quickstart measured.

    Similarities and confidences are Rekognition's 0-100 scale; boxes are ratios of the image's
    width and height.
    """

    collection_id: str
    group_faces: list[dict[str, Any]] = field(default_factory=list)
    """FaceRecords of the group photo, largest face first."""
    unindexed_group_faces: int = 0
    portrait_face_id: str = ""
    faces_in_no_face_photo: int = 0
    probe_face_id: str = ""
    """The group face whose mirrored, half-size crop is searched for."""
    probe_matches: list[dict[str, Any]] = field(default_factory=list)
    """SearchFacesByImage FaceMatches for the crop (threshold 0: every face, best first)."""
    portrait_vs_group: list[float] = field(default_factory=list)
    """CompareFaces similarity of the portrait to each face of the group photo."""
    user_matches: list[dict[str, Any]] = field(default_factory=list)
    """SearchUsersByImage UserMatches for the mirrored portrait."""
    face_count: int = 0
    user_count: int = 0


def run_quickstart(fp: Any, images: Path, collection_id: str, out: Any = sys.stdout) -> QuickstartReport:
    """Run the quickstart on service ``fp`` (a FacePipe) with photos from ``images``; print as it goes."""
    report = QuickstartReport(collection_id)

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    group = (images / GROUP_PHOTO).read_bytes()
    portrait = (images / PORTRAIT).read_bytes()

    created = fp.call("CreateCollection", {"CollectionId": collection_id})
    say(
        f"1. CreateCollection {collection_id}: {created['CollectionArn']} (model {created['FaceModelVersion']})"
    )

    indexed = fp.call(
        "IndexFaces",
        {"CollectionId": collection_id, "Image": {"Bytes": group}, "ExternalImageId": GROUP_PHOTO},
    )
    report.group_faces = indexed["FaceRecords"]
    report.unindexed_group_faces = len(indexed.get("UnindexedFaces", []))
    say(
        f"2. IndexFaces {GROUP_PHOTO}: {len(report.group_faces)} faces indexed, {report.unindexed_group_faces} left out"
    )
    say("   #  FaceId                                 Left   Top    Width  Height  Confidence")
    for number, record in enumerate(report.group_faces, 1):
        face = record["Face"]
        box = face["BoundingBox"]
        say(
            f"   {number:<2} {face['FaceId']}  {box['Left']:.3f}  {box['Top']:.3f}  "
            f"{box['Width']:.3f}  {box['Height']:.3f}   {face['Confidence']:.2f}"
        )

    indexed = fp.call(
        "IndexFaces",
        {
            "CollectionId": collection_id,
            "Image": {"Bytes": portrait},
            "ExternalImageId": PORTRAIT,
            "MaxFaces": 1,
        },
    )
    if indexed["FaceRecords"]:
        report.portrait_face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
        say(f"3. IndexFaces {PORTRAIT}: face {report.portrait_face_id}")
    else:
        say(f"3. IndexFaces {PORTRAIT}: no face indexed")

    detected = fp.call("DetectFaces", {"Image": {"Bytes": (images / NO_FACE_PHOTO).read_bytes()}})
    report.faces_in_no_face_photo = len(detected["FaceDetails"])
    say(
        f"4. DetectFaces {NO_FACE_PHOTO} (a face mask, no person): {_count(report.faces_in_no_face_photo, 'face')}"
    )

    if report.portrait_face_id:
        fp.call("CreateUser", {"CollectionId": collection_id, "UserId": USER_ID})
        associated = fp.call(
            "AssociateFaces",
            {"CollectionId": collection_id, "UserId": USER_ID, "FaceIds": [report.portrait_face_id]},
        )
        say(
            f"5. CreateUser {USER_ID} + AssociateFaces: {_count(len(associated['AssociatedFaces']), 'face')} associated, "
            f"user {associated['UserStatus']}"
        )

    if report.group_faces:
        probe = report.group_faces[0]["Face"]
        report.probe_face_id = probe["FaceId"]
        crop = mirrored_crop(group, probe["BoundingBox"], scale=0.5)
        searched = fp.call(
            "SearchFacesByImage",
            {
                "CollectionId": collection_id,
                "Image": {"Bytes": crop},
                "FaceMatchThreshold": 0,
                "MaxFaces": 10,
            },
        )
        report.probe_matches = searched["FaceMatches"]
        say(f"6. SearchFacesByImage with a mirrored, half-size crop of face 1 ({report.probe_face_id}),")
        say("   FaceMatchThreshold 0 to show every face (the default, 80, keeps matches only):")
        for match in report.probe_matches:
            face = match["Face"]
            same = "  <- the same face" if face["FaceId"] == report.probe_face_id else ""
            say(
                f"   Similarity {match['Similarity']:6.2f}  {face['FaceId']}  {face.get('ExternalImageId', '')}{same}"
            )

        compared = fp.call(
            "CompareFaces",
            {"SourceImage": {"Bytes": portrait}, "TargetImage": {"Bytes": group}, "SimilarityThreshold": 0},
        )
        report.portrait_vs_group = sorted((m["Similarity"] for m in compared["FaceMatches"]), reverse=True)
        shown = ", ".join(f"{s:.2f}" for s in report.portrait_vs_group)
        say(f"7. CompareFaces {PORTRAIT} with each face of {GROUP_PHOTO}: Similarity {shown}")

    if report.portrait_face_id:
        mirrored = encode_png(cv2.flip(decode(portrait), 1))
        users = fp.call(
            "SearchUsersByImage",
            {"CollectionId": collection_id, "Image": {"Bytes": mirrored}, "UserMatchThreshold": 0},
        )
        report.user_matches = users["UserMatches"]
        best = (
            ", ".join(f"{m['User']['UserId']} ({m['Similarity']:.2f})" for m in report.user_matches) or "none"
        )
        say(f"8. SearchUsersByImage with the mirrored portrait: {best}")

    described = fp.call("DescribeCollection", {"CollectionId": collection_id})
    report.face_count, report.user_count = described["FaceCount"], described["UserCount"]
    say(
        f"9. DescribeCollection {collection_id}: {_count(report.face_count, 'face')}, "
        f"{_count(report.user_count, 'user')}"
    )
    return report


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def decode(data: bytes) -> np.ndarray:
    """BGR pixels of an encoded image."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise ValueError("not a decodable image")
    return pixels


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of BGR pixels."""
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(encoded.tobytes())


def mirrored_crop(data: bytes, box: dict[str, float], scale: float, margin: float = 0.6) -> bytes:
    """The face in ``box`` (ratios of width/height) with ``margin`` x its size around it, mirrored
    left-right and resized by ``scale``, as PNG bytes."""
    pixels = decode(data)
    height, width = pixels.shape[:2]
    left, top = box["Left"] * width, box["Top"] * height
    box_width, box_height = box["Width"] * width, box["Height"] * height
    x0, y0 = max(0, int(left - margin * box_width)), max(0, int(top - margin * box_height))
    x1 = min(width, int(left + (1 + margin) * box_width))
    y1 = min(height, int(top + (1 + margin) * box_height))
    crop = cv2.flip(pixels[y0:y1, x0:x1], 1)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    return encode_png(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))


def quickstart_main(argv: Sequence[str]) -> int:
    """`facepipe quickstart [--data-dir DIR] [--collection-id ID]`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="facepipe quickstart",
        description="Index the sample photos shipped with insightface, then search and compare them.",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="store to keep the collection in (default: a temporary one)"
    )
    parser.add_argument(
        "--collection-id", default="quickstart", help="collection to create (default: quickstart)"
    )
    args = parser.parse_args(argv)

    from pipeline.config import Settings
    from pipeline.service import FacePipe

    temporary = args.data_dir is None
    data_dir = (
        Path(tempfile.mkdtemp(prefix="facepipe-quickstart-")) if temporary else args.data_dir.expanduser()
    )
    fp = FacePipe(Settings.from_env(data_dir=data_dir))
    try:
        run_quickstart(fp, sample_photos(), args.collection_id)
    except RekognitionError as error:
        print(f"facepipe quickstart: {error.code}: {error.message}", file=sys.stderr)
        return ExitStatus.FAILED
    except (FileNotFoundError, ValueError) as error:
        print(f"facepipe quickstart: {error}", file=sys.stderr)
        return ExitStatus.FAILED
    finally:
        close = getattr(fp, "close", None)
        if callable(close):
            close()
        if temporary:
            shutil.rmtree(data_dir, ignore_errors=True)
    print()
    if temporary:
        print("The store was temporary. Keep one with `facepipe quickstart --data-dir DIR`, then try:")
        where = " --data-dir DIR"
    else:
        print("Try next:")
        where = f" --data-dir {data_dir}"
    print(f"  facepipe list-faces --collection-id {args.collection_id}{where} --output table")
    print(f"  facepipe search-users --collection-id {args.collection_id} --user-id {USER_ID}{where}")
    return ExitStatus.OK
