"""The operations, independent of HTTP and argv.

CONTRACT used by protocol/, cli/ and jobs/:

    from pipeline.service import FacePipe
    fp = FacePipe(settings)                     # or FacePipe() for Settings.from_env()
    response = fp.call("AssociateFaces", {"CollectionId": "c", "UserId": "u", "FaceIds": [...]})

``call`` takes the operation's botocore name and the request as boto3 takes it (blobs as
bytes), validates it against botocore's Rekognition model plus the constraints botocore does not
check (max lengths, list sizes, ranges, patterns), runs it, and returns the response as boto3
returns it (without ResponseMetadata; timestamps as datetime). Errors are
pipeline.errors.RekognitionError subclasses.

Inside, one module per family (collections, faces, users, search) holds typed cores that jobs
and tests call directly (``faces.index_images``, ``faces.list_faces``, ``users.associate``,
``search.search_faces``, ...; they return the dataclasses of ``results``) and thin handlers
registered with ``@operation`` that read params, call the core and shape the response with
``responses``; DetectFaces and CompareFaces (``analysis``, handlers in ``analysis_ops``) return
their response bodies directly. ``selection`` is the one rule that picks an image's faces,
``pagination`` the one NextToken scheme, ``common`` the registry, the engine's interface and
idempotent writes; the cores do not check requests against botocore's model (``call`` does).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel

from pipeline.config import Settings
from pipeline.errors import UnknownOperationException
from pipeline.service import analysis_ops, collections, faces, search, users
from pipeline.service.common import OPERATIONS, FaceEngine
from pipeline.service.validation import validate_request
from pipeline.store import FaceStore, open_store

__all__ = ["FacePipe"]

_FAMILIES = (analysis_ops, collections, faces, search, users)  # importing them registers the operations


@cache
def rekognition_model() -> ServiceModel:
    """botocore's Rekognition service model (the contract)."""
    return botocore.session.get_session().get_service_model("rekognition")


class FacePipe:
    """Runs Rekognition face-collection operations on a local store.

    settings: None means Settings.from_env(). engine: the face engine to use; None means
    pipeline.vision.engine.get_engine(settings), loaded on first use. The store under
    settings.data_dir is opened on first use. Safe to share between threads.
    """

    def __init__(self, settings: Settings | None = None, engine: FaceEngine | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self._engine = engine
        self._store: FaceStore | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> FaceEngine:
        """The face engine (loaded on first use)."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    from pipeline.vision.engine import get_engine

                    self._engine = get_engine(self.settings)
        return self._engine

    @property
    def store(self) -> FaceStore:
        """The store under settings.data_dir (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
        return self._store

    @property
    def operations(self) -> list[str]:
        """Names of the implemented operations, sorted."""
        return sorted(OPERATIONS)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate and run one operation; returns its response as boto3 returns it."""
        handler = OPERATIONS.get(operation)
        if handler is None:
            raise UnknownOperationException(f"Unknown operation: {operation}")
        validate_request(_operation_model(operation), params)
        return handler(self, params)

    def close(self) -> None:
        """Close the store (large indexes are saved for a fast next open)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


@cache
def _operation_model(operation: str) -> OperationModel:
    return rekognition_model().operation_model(operation)
