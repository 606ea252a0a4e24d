"""MemoryService: an in-memory fake of the service contract (call/operations) for protocol tests."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, ClassVar

from botocore.validate import ParamValidator

from pipeline.errors import (
    InvalidParameterException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from pipeline.service import rekognition_model


class MemoryService:
    """A small in-memory service with the FacePipe contract (call/operations) for protocol tests.

    It keeps collections in a dict and records every call, so tests can check what the protocol
    layer handed over (types, decoded blobs) and that rejected requests never reached it.
    """

    operations: ClassVar[list[str]] = [
        "CreateCollection",
        "DeleteCollection",
        "DescribeCollection",
        "ListCollections",
        "DetectFaces",
    ]

    def __init__(self) -> None:
        self.collections: dict[str, datetime] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        # like the real service, check the params against botocore's model first
        report = ParamValidator().validate(params, rekognition_model().operation_model(operation).input_shape)
        if report.has_errors():
            raise InvalidParameterException(report.generate_report())
        with self.lock:
            self.calls.append((operation, params))
            if operation == "CreateCollection":
                cid = params["CollectionId"]
                if not isinstance(cid, str) or not cid or len(cid) > 255:
                    raise InvalidParameterException("CollectionId must be 1-255 characters.")
                if cid in self.collections:
                    raise ResourceAlreadyExistsException(f"The collection id: {cid} already exists")
                self.collections[cid] = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
                return {
                    "StatusCode": 200,
                    "CollectionArn": f"aws:rekognition:us-east-1:000000000000:collection/{cid}",
                    "FaceModelVersion": "7.0",
                }
            if operation == "DescribeCollection":
                cid = params["CollectionId"]
                if cid not in self.collections:
                    raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
                return {
                    "FaceCount": 0,
                    "UserCount": 0,
                    "FaceModelVersion": "7.0",
                    "CreationTimestamp": self.collections[cid],
                    "CollectionARN": f"aws:rekognition:us-east-1:000000000000:collection/{cid}",
                }
            if operation == "DeleteCollection":
                cid = params["CollectionId"]
                if cid not in self.collections:
                    raise ResourceNotFoundException(f"The collection id: {cid} does not exist")
                del self.collections[cid]
                return {"StatusCode": 200}
            if operation == "ListCollections":
                ids = sorted(self.collections)
                return {"CollectionIds": ids, "FaceModelVersions": ["7.0"] * len(ids)}
            if operation == "DetectFaces":
                data = params["Image"]["Bytes"]
                if not isinstance(data, bytes):
                    raise InvalidParameterException("Image.Bytes must be bytes")
                if data == b"boom":
                    raise RuntimeError("simulated bug")
                # one "face" per byte value 0xFF, so tests can see the exact bytes arrived
                return {
                    "FaceDetails": [
                        {"Confidence": 99.5, "BoundingBox": {"Width": len(data) / 1000}}
                        for _ in range(data.count(b"\xff"))
                    ]
                }
            raise AssertionError(f"unexpected operation {operation}")
