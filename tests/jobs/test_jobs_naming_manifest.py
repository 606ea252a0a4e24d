"""ExternalImageIds, folder walks, request tokens and manifests (no models)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from pipeline.errors import InvalidParameterException
from pipeline.jobs.cluster import propose_users
from pipeline.jobs.manifest import parse_manifest, read_manifest
from pipeline.jobs.naming import (
    client_request_token,
    disambiguate,
    external_image_id_for,
    walk_images,
)
from pipeline.jobs.progress import Progress

EXTERNAL_ID = re.compile(r"[a-zA-Z0-9_.\-:]+")
TOKEN = re.compile(r"^[a-zA-Z0-9-_]+$")


@pytest.mark.parametrize(
    ("rel_path", "source", "expected"),
    [
        ("a/b/photo 1.jpg", "path", "a:b:photo_1.jpg"),
        ("a/b/photo 1.jpg", "name", "photo_1.jpg"),
        ("été/ß.png", "path", "_t_:_.png"),
        ("plain-name_1.2.jpg", "path", "plain-name_1.2.jpg"),
    ],
)
def test_external_image_id_is_sanitised(rel_path: str, source: str, expected: str) -> None:
    assert external_image_id_for(rel_path, source) == expected


def test_long_paths_keep_their_end_and_stay_unique() -> None:
    a = external_image_id_for("x" * 300 + "/one.jpg")
    b = external_image_id_for("y" * 300 + "/one.jpg")
    for value in (a, b):
        assert len(value) == 255 and EXTERNAL_ID.fullmatch(value) and value.endswith(":one.jpg")
    assert a != b


def test_disambiguated_id_is_valid_and_depends_on_the_path() -> None:
    first = disambiguate("t1.jpg", "sub/t1.jpg")
    assert first != disambiguate("t1.jpg", "other/t1.jpg")
    assert first == disambiguate("t1.jpg", "sub/t1.jpg")
    assert EXTERNAL_ID.fullmatch(first) and len(disambiguate("z" * 255, "p")) == 255


def test_bad_id_source_is_refused() -> None:
    with pytest.raises(InvalidParameterException, match="path"):
        external_image_id_for("a.jpg", "stem")


def test_walk_is_sorted_filtered_and_optionally_recursive(tmp_path: Path) -> None:
    for name in ("b.JPG", "a.png", "c.txt", ".hidden.jpg", "d/e.jpeg", "d/f/g.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list(walk_images(tmp_path, recursive=False)) == ["a.png", "b.JPG"]
    assert list(walk_images(tmp_path, recursive=True)) == ["a.png", "b.JPG", "d/e.jpeg", "d/f/g.jpg"]
    with pytest.raises(InvalidParameterException, match="not a directory"):
        list(walk_images(tmp_path / "missing", recursive=False))


def test_client_request_token_is_deterministic_and_valid() -> None:
    token = client_request_token("AssociateFaces", "c", "u", "75", "f1", "f2")
    assert token == client_request_token("AssociateFaces", "c", "u", "75", "f1", "f2")
    assert token != client_request_token("AssociateFaces", "c", "u", "75", "f2", "f1")
    assert TOKEN.match(token) and len(token) <= 64


FACE = "0b7f31d2-3a1c-4c8e-9a34-5f7d2b9c1e01"


def test_csv_and_jsonl_manifests(tmp_path: Path) -> None:
    csv_text = f"user_id,face_id,external_image_id,image,note\n# comment\nalice,{FACE},,,x\nbob,,img:1.jpg,,\ncarol,,,p/a.jpg,\n"
    rows = parse_manifest(csv_text, tmp_path / "m.csv")
    assert [(r.line, r.user_id, r.kind, r.value) for r in rows] == [
        (3, "alice", "face_id", FACE),
        (4, "bob", "external_image_id", "img:1.jpg"),
        (5, "carol", "image", "p/a.jpg"),
    ]
    jsonl = f'{{"user_id": "alice", "face_id": "{FACE}"}}\n\n{{"user_id": "bob", "image": "b.png"}}\n'
    rows = parse_manifest(jsonl, tmp_path / "m.jsonl")
    assert [(r.line, r.kind) for r in rows] == [(1, "face_id"), (3, "image")]


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("user_id,face_id\nalice,not-a-uuid\n", "m.csv", "line 2: face_id"),
        (f"user_id,face_id\nal ice,{FACE}\n", "m.csv", "line 2: user_id"),
        ("user_id,face_id,image\nalice,{FACE},a.jpg\n".replace("{FACE}", FACE), "m.csv", "exactly one"),
        ("name,face\nalice,x\n", "m.csv", "header"),
        ('{"user_id": "alice"}\n', "m.jsonl", "exactly one"),
        ("{not json\n", "m.jsonl", "not valid JSON"),
    ],
)
def test_bad_manifests_name_the_line_and_problem(tmp_path: Path, text: str, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidParameterException, match=message):
        read_manifest(path)


def test_empty_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("user_id,face_id\n")
    with pytest.raises(InvalidParameterException, match="no rows"):
        read_manifest(path)


def test_progress_writes_plain_lines_with_rate_and_eta() -> None:
    out = io.StringIO()
    progress = Progress(10, out, plain_interval=0.0)
    progress.advance(3, 3)
    progress.advance(2, 0)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("3/10 images (30%)") and "/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("5/10 images (50%)") and "\r" not in out.getvalue()


def test_proposal_prefix_must_make_valid_user_ids() -> None:
    with pytest.raises(InvalidParameterException, match="user id prefix"):
        propose_users(None, "c", user_id_prefix="bad prefix")  # type: ignore[arg-type]
