"""Pieces every operation family shares: the registry, the engine's interface and idempotency
tokens (pagination: pipeline.service.pagination; the response shapes: pipeline.service.responses)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipeline.errors import IdempotentParameterMismatchException, InvalidParameterException
from pipeline.service.validation import show_value
from pipeline.store import CollectionRow, Tx
from pipeline.types import MAX_FACES_PER_IMAGE, DetectedFace

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


R = TypeVar("R")


class FaceEngine(Protocol):
    """What the service layer uses of pipeline.vision.engine.FaceEngine (the one interface:
    collection operations, DetectFaces and CompareFaces alike)."""

    @property
    def model_version(self) -> str: ...

    @property
    def embedding_dim(self) -> int: ...

    def decode(self, data: bytes, max_bytes: int | None = None) -> Any: ...

    def analyze(
        self, image: Any, max_faces: int = MAX_FACES_PER_IMAGE, embed: bool | EmbedChoice = True
    ) -> list[DetectedFace]: ...

    def similarity(self, cosine: float) -> float: ...

    def cosine_at(self, similarity: float) -> float: ...

    def quality_reasons(self, face: DetectedFace, level: str) -> list[str]: ...


# idempotency ------------------------------------------------------------------------------------
def request_hash(params: dict[str, Any]) -> str:
    """Hash of a request without its ClientRequestToken (compares two requests for equality)."""
    body = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def idempotent_write(
    fp: FacePipe,
    operation_name: str,
    request: dict[str, Any],
    client_request_token: str | None,
    work: Callable[[Tx, CollectionRow], R],
    to_api: Callable[[R], dict[str, Any]],
    from_api: Callable[[dict[str, Any]], R],
) -> R:
    """Run ``work(tx, collection)`` in one write transaction, once per ClientRequestToken.

    ``request``: the request's members as the operation takes them (CollectionId included, the
    token left out), what a repeated token is compared with. A request carrying a token already
    used for ``operation_name`` in this collection gets the stored response (``from_api`` of it)
    and does nothing; the same token with a different request raises
    IdempotentParameterMismatchException. A new token is stored with the response (``to_api`` of
    the result), in the same transaction as the work. Missing collection: ResourceNotFoundException.
    """
    token = client_request_token
    with fp.store.write() as tx:
        coll = tx.collection(request["CollectionId"])
        found = tx.find_token(coll, operation_name, token) if token else None
        if found is not None:
            stored_hash, stored_response = found
            if stored_hash != request_hash(request):
                raise IdempotentParameterMismatchException(
                    f"ClientRequestToken {token} was already used with a different {operation_name} request"
                )
            return from_api(json.loads(stored_response))
        result = work(tx, coll)
        if token:
            tx.insert_token(coll, operation_name, token, request_hash(request), json.dumps(to_api(result)))
        return result


def engine_for(fp: FacePipe, coll: CollectionRow) -> FaceEngine:
    """``fp.engine`` when it runs the model the collection's vectors were made with (a
    collection keeps the model pack it was created with); InvalidParameterException otherwise:
    another pack's vectors and calibration cannot be compared with this engine's."""
    engine = fp.engine
    if engine.model_version != coll.model_version:
        raise InvalidParameterException(
            f"Collection {coll.name} holds faces of model {coll.model_version}; this engine runs"
            f" {engine.model_version} (FACEPIPE_MODEL_PACK): use the pack the collection was created with"
        )
    return engine


def check_threshold(value: float, name: str) -> float:
    """``value`` as a float when it is a number from 0 to 100 (a Similarity or Confidence bar);
    InvalidParameterException naming ``name`` otherwise (NaN and booleans included). The operations
    get this from the model's validation; the typed cores check it for direct callers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameterException(f"{name} must be a number from 0 to 100; got {show_value(value)}")
    number = float(value)
    if not 0.0 <= number <= 100.0:
        raise InvalidParameterException(f"{name} must be from 0 to 100; got {number}")
    return number
