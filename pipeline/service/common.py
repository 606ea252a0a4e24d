"""Pieces every operation family shares: the registry, the engine's interface, pagination tokens,
idempotency tokens and the Face shape."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import IdempotentParameterMismatchException, InvalidPaginationTokenException
from pipeline.service.validation import show_value
from pipeline.store import CollectionRow, FaceRow, Tx
from pipeline.types import DetectedFace

if TYPE_CHECKING:
    from pipeline.service import FacePipe

Handler = Callable[["FacePipe", dict[str, Any]], dict[str, Any]]
OPERATIONS: dict[str, Handler] = {}
"""Implemented operations by botocore name."""


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for the operation ``name`` (its botocore name)."""

    def register(handler: Handler) -> Handler:
        OPERATIONS[name] = handler
        return handler

    return register


EmbedChoice = Callable[[list[DetectedFace]], Iterable[int]]
"""The engine's analyze(embed=...) as a function: detected faces in, indices of those to embed out
(only faces a response can carry are embedded)."""


class FaceEngine(Protocol):
    """What the service layer uses of pipeline.vision.engine's engine."""

    @property
    def model_version(self) -> str: ...

    @property
    def embedding_dim(self) -> int: ...

    def decode(self, data: bytes, max_bytes: int | None = None) -> Any: ...

    def analyze(
        self, image: Any, max_faces: int = 100, embed: bool | EmbedChoice = True
    ) -> list[DetectedFace]: ...

    def similarity(self, cosine: float) -> float: ...

    def cosine_at(self, similarity: float) -> float: ...

    def quality_reasons(self, face: DetectedFace, level: str) -> list[str]: ...


# pagination -------------------------------------------------------------------------------------
def encode_token(operation_name: str, scope: int, key: str | int) -> str:
    """An opaque NextToken for resuming ``operation_name`` after ``key`` in ``scope`` (a collection)."""
    raw = json.dumps([operation_name, scope, key], separators=(",", ":")).encode()
    check = hashlib.sha256(raw).hexdigest()[:8]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + check


def decode_token(token: str, operation_name: str, scope: int) -> str | int:
    """The key stored by :func:`encode_token`; InvalidPaginationTokenException for anything else."""
    bad = InvalidPaginationTokenException(f"Invalid pagination token: {show_value(token[:64])}")
    body, _, check = token.partition(".")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad from None
    if hashlib.sha256(raw).hexdigest()[:8] != check or not isinstance(value, list) or len(value) != 3:
        raise bad
    if value[0] != operation_name or value[1] != scope or not isinstance(value[2], str | int):
        raise bad
    key: str | int = value[2]
    if isinstance(key, str) and ("\x00" in key or not _encodable(key)):
        raise bad  # forged: no stored name holds NUL or a lone surrogate
    return key


def _encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate: it encodes as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# idempotency ------------------------------------------------------------------------------------
def request_hash(params: dict[str, Any]) -> str:
    """Hash of a request without its ClientRequestToken (compares two requests for equality)."""
    body = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def idempotent_write(
    fp: FacePipe,
    operation_name: str,
    params: dict[str, Any],
    work: Callable[[Tx, CollectionRow], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``work(tx, collection)`` in one write transaction, once per ClientRequestToken.

    A request carrying a token already used for ``operation_name`` in this collection gets the
    stored response and does nothing; the same token with a different request raises
    IdempotentParameterMismatchException. A new token is stored with the response, in the same
    transaction as the work. Missing collection: ResourceNotFoundException.
    """
    token = params.get("ClientRequestToken")
    with fp.store.write() as tx:
        coll = tx.collection(params["CollectionId"])
        found = tx.find_token(coll, operation_name, token) if token else None
        if found is not None:
            stored_hash, stored_response = found
            if stored_hash != request_hash(params):
                raise IdempotentParameterMismatchException(
                    f"ClientRequestToken {token} was already used with a different {operation_name} request"
                )
            stored: dict[str, Any] = json.loads(stored_response)
            return stored
        response = work(tx, coll)
        if token:
            tx.insert_token(coll, operation_name, token, request_hash(params), json.dumps(response))
        return response


# shapes -----------------------------------------------------------------------------------------
def face_to_api(face: FaceRow, model_version: str) -> dict[str, Any]:
    """The Rekognition Face shape of a stored face."""
    out: dict[str, Any] = {
        "FaceId": face.face_id,
        "BoundingBox": {
            "Width": face.box_width,
            "Height": face.box_height,
            "Left": face.box_left,
            "Top": face.box_top,
        },
        "ImageId": face.image_id,
    }
    if face.external_image_id is not None:
        out["ExternalImageId"] = face.external_image_id
    out["Confidence"] = face.confidence
    if _is_numeric_version(model_version):
        out["IndexFacesModelVersion"] = model_version
    if face.user_id is not None:
        out["UserId"] = face.user_id
    return out


def _is_numeric_version(version: str) -> bool:
    return bool(version) and all(ch.isdigit() or ch == "." for ch in version)


def user_status(face_count: int) -> str:
    """UserStatus: CREATED for a user without faces, ACTIVE otherwise (operations are synchronous)."""
    return "ACTIVE" if face_count > 0 else "CREATED"
