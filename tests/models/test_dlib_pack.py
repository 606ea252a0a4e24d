"""The optional dlib_fused pack: dlib's ResNet converted to ONNX, its chips, the fused vectors, and a
collection's pack fixed at creation.

The tests that need dlib's weights skip where face-recognition-models is not installed (a 100 MB
sdist, so it is not in the test extra): pip install 'facepipe[dlib]'.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from pipeline.config import Settings
from pipeline.errors import InternalServerError, InvalidParameterException
from pipeline.service import FacePipe
from pipeline.vision import packs
from pipeline.vision.align import align_face
from pipeline.vision.dlib_align import CHIP_TEMPLATE, CROP_TO_CHIP, chips_from_crops
from pipeline.vision.dlib_convert import DlibFormatError, converted_path, read_dlib_resnet
from pipeline.vision.engine import FaceEngine, get_engine
from pipeline.vision.packs import DLIB_FUSED_PACK, read_manifest, verified_file

HAS_WEIGHTS = importlib.util.find_spec("face_recognition_models") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS,
    reason="face-recognition-models is not installed (pip install 'facepipe[dlib]'; 100 MB, not in the test extra)",
)

DLIB_REFERENCE = (
    "QyiIMMgs+iYQr4IsDq+/oE4w/KzfMduunLL8oS6ogDCVr1SnbK9NIgEcpyVgpngozK4CtzKuGqxwnSyxra4KJGqwHK2OoKQm"
    "VKlppHEskCucsgsrmSZ1NBYztixyKTCuuDBfsiQtOTBRMJ0tVjATsOqknDEXsaUqHyLcLPspwqOoMHEuaazCsCMv6LAFJZAo"
    "oq3Qsmy1gie1NUYvPbPWqXGp5KzTLDUsZK2gmRuscCqQMd6olSmZMhumv6r1J/ctKLIPKX6wK6mUKHuuBakBLi+0+DHXjYem"
    "JiCrnx+vLp2aMx+0ay4VMS6VTi/wKAYrjaQ8rKuwpqmKJMCqZ6u9oiOr9yx2LEWwXax3Jsigp6pJMwivJzFQqya0TCzvpvMw"
    "xLAcr1Oy0a0Jpj0x1Cf8Lb+xdrSRobGn3CgJrxAsHizmsIYl8ishL62sLrFzMiKiDLSbq24waDRQNMepgRyLsFwwFbYiKTIw"
    "lKjTLlkwgrEqo4Yyu7AXLJAsxquco9GtPjKHKSGygbGIMZKyBKwpMEyr0rKxtMwoqzUAMjKwCi+Yq6mhSCTXMP+ZpKmwq2Ys"
    "CDSJqLwl1DRwI6qtOqWoL1Wy2CbmsUmYJy69Jz8s6zDjsfkzLKWuqz4uf6hvq8eqczJvtC8wjC+xLUAx0i3ELwsuiCYDscOq"
    "xh5zqP+ghCsYsPUxgyklqlSyGCMFrsquGjG0q94yfakfsgQn/azQLd+wZbA1qrKqvCyvJUAg2i72sLa0xq0DsKAtnbBwJ7at"
    "KbG2q5AfXy10r2CvSTPrFq6v2TCsLfI0GzBAKMcu4K9kMKuzGC0LMQcySCyaLLSxYCsLM0qyrTK8MJ0myKR1JR80uzCProCv"
    "gTAMsMarMS/vrfWx0LBhLP03ZTCYsSSl666lJVCVXiUJsTewkrA9LNQz0iXkKcAzHDG5n+glIiNisSamzqsQp5qmFa+glCws"
    "GLTnMZeTQqxYpocs+KztJCkyobRNMikxPC+RMEAtiCr/KWCip690rAum4q1CKBcrM6snJ0UtTq6orw2qWK6nrfQxHbBlLWoV"
    "rrL3Lw+s7TGNsQOyb65HsY2lsDDnIqEtVq6Eso2udqx0LSWu5CZALFixfC34K3wp0aW6sYIzgCx7s8yqSy8XNNQy2KQGKIqs"
    "PzIBtdcoUTFCKO8s4inls58pqjAdsk8xdC5UsP+mLqgFNG8v5bDcslQzr7KVp4gxS7C1sC+zD6ZaN0gs+KmvLiWqiKgLphoy"
    "T6xrqPWs/ikQNQil3JkjNMCYZZe9qOovPa97qjeq2CRaqV2sJaKRL5ywnjFCqhGmqKwUIgerFqmcMSi0SzHoMFEtyy+7pY4w"
    "YCg5qhexV6zkpbmsZqgtLhCy5TAWLuermbAIptMk4q3kLkKtBjOgrii00yijLBswc693rlawF67qqVupWSd6KIGwmbQUruWo"
    "vyo2q9kpzigusb2taqH6Ko6twatJNLGsorEBKhEtXDQzMPSkVi2LsBMvMLHQLEcwdjCWLq8qw6/SLYwxCrI7LewwCadWJeyo"
    "hTMaLzut07A4MvGsRqxdLTqwKLGytVosEjXLLtix7qg9rFempCshLqyxDa7VqtQrcjM+HAGs5jFHMbapeypULgWvm6uFsQoq"
    "3yfIr8OeGzHEs9gy8h51qGutJysCrKudvjAJtLgwUTKEJf4t2y0VLDUajCpmryOsDC2cnFYscDAPsFYwnC8NsYuwL6ErqrCu"
    "1TGEpc0xG61WtKSjcZ/SMrOy2LMNrW6twRG9H8wgGSyes6q0uKyLrksp7LB9KDApRLIhJpovCjAAIHWxsjDCq+yy5KRKMPAy"
    "iTENK14qGKzzMIq00S18MM8qZyyYLLWxHSW4McazYjBGLZKwbqlvrhoyMC82sdmxGDKesUarPCwSr6GwcbTmqI01Vi/esYoo"
    "sKVOohCwHjHFqLOhaq+/Ixw1iKyyLf40raO1qHOtSivSsCOrGaV/qvCjK6RdqJ0wJrOIMPupH6eBrcCYRiYZrykxSrSOMVA0"
    "nCyfLUyk5ipJL0Cjeq7Erg+g1a4rqsEt"
)
"""dlib's own descriptors (dlib-bin 20.0.1, ``face_recognition_model_v1.compute_face_descriptor``)
of the chips :func:`sample_chips` makes from t1.jpg, largest face first: (6, 128) float16, base64."""


def sample_chips(engine: FaceEngine, photo: Path) -> npt.NDArray[np.uint8]:
    """150x150 BGR dlib chips of every face of ``photo``, largest first, made as the pack makes them
    (YuNet landmarks -> ArcFace crop -> chip)."""
    image = engine.decode(photo.read_bytes())
    faces = engine.analyze(image, embed=False)
    crops = [
        align_face(
            image.bgr,
            np.array([[p.x * image.width, p.y * image.height] for p in face.landmarks], np.float32),
        )
        for face in faces
    ]
    return chips_from_crops(np.stack(crops))


def _cosines(a: npt.NDArray[np.floating], b: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray(
        (a64 * b64).sum(1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1), np.float64
    )


@pytest.fixture(scope="module")
def weights() -> Path:
    if not HAS_WEIGHTS:
        pytest.skip("face-recognition-models is not installed (pip install 'facepipe[dlib]')")
    spec = read_manifest(DLIB_FUSED_PACK)["dlib"]
    return verified_file(spec["package"], spec["version"], spec["path"], spec["sha256"])


@pytest.fixture(scope="module")
def fused_engine(weights: Path, model_cache: Path) -> FaceEngine:
    return get_engine(
        Settings(
            model_pack=DLIB_FUSED_PACK,
            cache_dir=model_cache,
            provider="cpu",
            threads=2,
            embedder_precision="float32",
        )
    )


@pytest.fixture(scope="module")
def dlib_session(weights: Path, model_cache: Path) -> ort.InferenceSession:
    sha = read_manifest(DLIB_FUSED_PACK)["dlib"]["sha256"]
    return ort.InferenceSession(
        str(converted_path(weights, sha, model_cache)), providers=["CPUExecutionProvider"]
    )


def _run(session: ort.InferenceSession, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    rgb = np.ascontiguousarray(chips[..., ::-1].transpose(0, 3, 1, 2), np.float32)
    return np.asarray(session.run(None, {"chip": rgb})[0], np.float32)


def test_reader_rejects_what_is_not_the_network() -> None:
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(b"")
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(b"\x01\x01\x05con_4" + bytes(64))


@needs_weights
def test_reader_rejects_a_truncated_file(weights: Path) -> None:
    data = weights.read_bytes()
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="bytes left"):
        read_dlib_resnet(data + b"\x00")


@needs_weights
def test_conversion_matches_dlib_on_sample_photo_chips(
    fused_engine: FaceEngine, dlib_session: ort.InferenceSession, sample_images: Path
) -> None:
    chips = sample_chips(fused_engine, sample_images / "t1.jpg")
    reference = np.frombuffer(base64.b64decode(DLIB_REFERENCE), np.float16).reshape(-1, 128)
    assert chips.shape == (len(reference), 150, 150, 3)
    ours = _run(dlib_session, chips)
    assert ours.shape == reference.shape
    assert _cosines(ours, reference).min() >= 0.999
    # dlib's own scale is kept (its 0.6 distance threshold means something on these vectors)
    np.testing.assert_allclose(
        np.linalg.norm(ours, axis=1), np.linalg.norm(reference.astype(np.float32), axis=1), rtol=0.01
    )


@needs_weights
def test_conversion_matches_dlib_itself_when_installed(
    fused_engine: FaceEngine, dlib_session: ort.InferenceSession, sample_images: Path, weights: Path
) -> None:
    dlib = pytest.importorskip("dlib", reason="dlib is not installed (only needed for this cross-check)")
    chips = sample_chips(fused_engine, sample_images / "t1.jpg")
    model = dlib.face_recognition_model_v1(str(weights))
    theirs = np.array([model.compute_face_descriptor(np.ascontiguousarray(c[..., ::-1])) for c in chips])
    assert _cosines(_run(dlib_session, chips), theirs).min() >= 0.999


def test_missing_weights_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = read_manifest(DLIB_FUSED_PACK)
    missing = {
        "package": "face_recognition_models_absent",
        "path": "face_recognition_models_absent/models/x.dat",
    }
    absent = {**manifest, "dlib": {**manifest["dlib"], **missing}}
    monkeypatch.setattr(
        packs, "read_manifest", lambda name: absent if name == DLIB_FUSED_PACK else read_manifest(name)
    )
    with pytest.raises(InternalServerError, match=r"dlib_fused.*pip install 'facepipe\[dlib\]'"):
        packs.load_pack(DLIB_FUSED_PACK, ["CPUExecutionProvider"], 1, tmp_path)
    # nothing was prepared: the weights are looked for before any model loads
    assert not (tmp_path / "models").exists()


def test_chip_template_maps_the_arcface_template() -> None:
    # the crop -> chip transform is the least-squares fit of the two templates
    from pipeline.vision.align import ARCFACE_TEMPLATE

    mapped = ARCFACE_TEMPLATE @ CROP_TO_CHIP[:, :2].T + CROP_TO_CHIP[:, 2]
    assert np.abs(mapped - CHIP_TEMPLATE).max() < 4.0  # the two templates differ by up to 3.4 px
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    assert chips_from_crops(crops).shape == (2, 150, 150, 3)
    with pytest.raises(ValueError, match="112"):
        chips_from_crops(np.zeros((1, 150, 150, 3), np.uint8))


@needs_weights
def test_fused_vector_is_the_weighted_concatenation(fused_engine: FaceEngine, model_cache: Path) -> None:
    sface = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="float32")
    )
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    fused = fused_engine.embed_aligned(crops)
    w = float(read_manifest(DLIB_FUSED_PACK)["fusion"]["sface_weight"])
    assert fused.shape == (3, 256) and fused_engine.embedding_dim == 256
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(fused[:, :128] / np.sqrt(w), sface.embed_aligned(crops), atol=1e-5)
    # inner products are w * SFace cosine + (1 - w) * dlib cosine
    s, d = fused[:, :128] / np.sqrt(w), fused[:, 128:] / np.sqrt(1 - w)
    np.testing.assert_allclose(fused @ fused.T, w * (s @ s.T) + (1 - w) * (d @ d.T), atol=1e-5)
    assert (
        fused_engine.model_version == read_manifest(DLIB_FUSED_PACK)["model_version"] != sface.model_version
    )
    # its own calibration: 80 sits much higher on the fused cosine than on SFace's
    assert fused_engine.cosine_at(80.0) > sface.cosine_at(80.0) + 0.1


def _face_crop(photo: Path, box: dict[str, float], margin: float = 0.6) -> bytes:
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    left, top = box["Left"] * w, box["Top"] * h
    bw, bh = box["Width"] * w, box["Height"] * h
    x1, y1 = max(0, int(left - margin * bw)), max(0, int(top - margin * bh))
    x2, y2 = min(w, int(left + (1 + margin) * bw)), min(h, int(top + (1 + margin) * bh))
    ok, png = cv2.imencode(".png", image[y1:y2, x1:x2])
    assert ok
    return png.tobytes()


@needs_weights
def test_pack_round_trip_through_facepipe(
    fused_engine: FaceEngine, tmp_path: Path, sample_images: Path
) -> None:
    photo = sample_images / "t1.jpg"
    pipe = FacePipe(Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache"), engine=fused_engine)
    try:
        created = pipe.call("CreateCollection", {"CollectionId": "fused"})
        assert created["FaceModelVersion"] == fused_engine.model_version
        indexed = pipe.call("IndexFaces", {"CollectionId": "fused", "Image": {"Bytes": photo.read_bytes()}})
        records = indexed["FaceRecords"]
        assert len(records) == 6 and indexed["FaceModelVersion"] == fused_engine.model_version
        described = pipe.call("DescribeCollection", {"CollectionId": "fused"})
        assert described["FaceCount"] == 6 and described["FaceModelVersion"] == fused_engine.model_version
        for record in records[:3]:
            face = record["Face"]
            found = pipe.call(
                "SearchFacesByImage",
                {"CollectionId": "fused", "Image": {"Bytes": _face_crop(photo, face["BoundingBox"])}},
            )
            matches = found["FaceMatches"]
            assert matches and matches[0]["Face"]["FaceId"] == face["FaceId"]
            assert matches[0]["Similarity"] >= 99.0
            assert all(m["Similarity"] < 80.0 for m in matches[1:])
    finally:
        pipe.close()


@pytest.fixture()
def plain_and_fused(
    fused_engine: FaceEngine, model_cache: Path, tmp_path: Path
) -> Iterator[tuple[FacePipe, FacePipe]]:
    """Two FacePipes on one store: the default pack's engine and the fused pack's."""
    settings = Settings(data_dir=tmp_path / "home", cache_dir=tmp_path / "cache")
    plain_engine = get_engine(
        Settings(cache_dir=model_cache, provider="cpu", threads=2, embedder_precision="float32")
    )
    plain, fused = FacePipe(settings, engine=plain_engine), FacePipe(settings, engine=fused_engine)
    try:
        yield plain, fused
    finally:
        plain.close()
        fused.close()


@needs_weights
def test_a_collection_keeps_the_pack_it_was_created_with(
    plain_and_fused: tuple[FacePipe, FacePipe], sample_images: Path
) -> None:
    plain, fused = plain_and_fused
    photo = {"Bytes": (sample_images / "t1.jpg").read_bytes()}
    plain.call("CreateCollection", {"CollectionId": "plain"})
    fused.call("CreateCollection", {"CollectionId": "fused"})
    for pipe, other in ((fused, "plain"), (plain, "fused")):
        with pytest.raises(InvalidParameterException) as refused:
            pipe.call("IndexFaces", {"CollectionId": other, "Image": photo})
        message = refused.value.message
        assert "-dimensional vectors of model" in message and other in message
    # nothing was written by the refused calls
    assert plain.call("DescribeCollection", {"CollectionId": "plain"})["FaceCount"] == 0
    assert fused.call("DescribeCollection", {"CollectionId": "fused"})["FaceCount"] == 0


@needs_weights
def test_searching_a_collection_of_another_pack_is_refused(
    plain_and_fused: tuple[FacePipe, FacePipe], sample_images: Path
) -> None:
    plain, fused = plain_and_fused
    photo = {"Bytes": (sample_images / "t1.jpg").read_bytes()}
    plain.call("CreateCollection", {"CollectionId": "plain"})
    plain.call("IndexFaces", {"CollectionId": "plain", "Image": photo, "MaxFaces": 1})
    with pytest.raises(InvalidParameterException, match="holds faces of model"):
        fused.call("SearchFacesByImage", {"CollectionId": "plain", "Image": photo})
