"""The Rekognition JSON 1.1 protocol, independent of any HTTP server.

:func:`handle_request` turns one request (the ``X-Amz-Target`` header and the raw JSON body) into
one response (status, headers, body), exactly as the HTTP server and the command line's local mode
answer it. Requests are decoded against botocore's Rekognition model (blobs base64, timestamps as
epoch seconds), handed to the service as boto3 would pass them, and the service's answer is
encoded back against the operation's output shape. Every failure becomes the protocol's error
shape ``{"__type": "<Code>", "Message": "..."}``; nothing else ever reaches the client.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from pipeline.errors import (
    InternalServerError,
    InvalidParameterException,
    RekognitionError,
    SerializationException,
    UnknownOperationException,
)
from pipeline.service import rekognition_model

logger = logging.getLogger("pipeline.protocol")

CONTENT_TYPE = "application/x-amz-json-1.1"
"""Content type of every request and response body."""

TARGET_PREFIX = "RekognitionService"
"""``X-Amz-Target`` is ``RekognitionService.<Operation>``."""


class Service(Protocol):
    """What the protocol needs from the service (pipeline.service.FacePipe)."""

    @property
    def operations(self) -> list[str]:
        """Names of the operations the service implements (botocore names)."""
        ...

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one operation on boto3-shaped params; raise RekognitionError subclasses."""
        ...


@dataclass(frozen=True)
class ProtocolResponse:
    """One HTTP response: status code, headers (names as sent) and the JSON body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


def new_request_id() -> str:
    """A fresh request id (a UUID4 string, as AWS uses)."""
    return str(uuid.uuid4())


def operation_from_target(target: str | None) -> str | None:
    """The operation name in an ``X-Amz-Target`` header, or None when it names no known operation."""
    if not target:
        return None
    prefix, dot, name = target.partition(".")
    if not dot or prefix != TARGET_PREFIX or name not in rekognition_model().operation_names:
        return None
    return name


def error_response(error: RekognitionError, request_id: str) -> ProtocolResponse:
    """The protocol's error shape for ``error``: status, ``x-amzn-ErrorType`` and a JSON body."""
    body = json.dumps({"__type": error.code, "Message": error.message}).encode()
    headers = {
        "Content-Type": CONTENT_TYPE,
        "x-amzn-RequestId": request_id,
        "x-amzn-ErrorType": error.code,
    }
    return ProtocolResponse(status=error.http_status, headers=headers, body=body)


def handle_request(
    fp: Service, target: str | None, body: bytes, request_id: str | None = None
) -> ProtocolResponse:
    """Answer one JSON 1.1 request.

    target: the ``X-Amz-Target`` header (``RekognitionService.<Operation>``); body: the raw request
    body (a JSON object; an empty body counts as ``{}``). Client errors answer 4xx with the error
    code; an unexpected failure is logged and answered 500 InternalServerError.
    """
    request_id = request_id or new_request_id()
    try:
        operation = _resolve_operation(fp, target)
        params = decode_request(operation, body)
        result = fp.call(operation.name, params)
        payload = encode_output(operation, result)
    except RekognitionError as error:
        return error_response(error, request_id)
    except Exception:
        logger.exception("internal error answering %s (request id %s)", target, request_id)
        internal = InternalServerError(f"Internal server error (request id {request_id}).")
        return error_response(internal, request_id)
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}
    return ProtocolResponse(status=200, headers=headers, body=payload)


def _resolve_operation(fp: Service, target: str | None) -> OperationModel:
    name = operation_from_target(target)
    if name is None:
        shown = "missing" if not target else repr(target[:200])
        raise UnknownOperationException(
            f"X-Amz-Target is {shown}; expected '{TARGET_PREFIX}.<Operation>' naming a Rekognition operation."
        )
    if name not in fp.operations:
        raise UnknownOperationException(f"Operation {name} is not implemented by this server.")
    return rekognition_model().operation_model(name)


def decode_request(operation: OperationModel, body: bytes) -> dict[str, Any]:
    """The request body as boto3 params: JSON parsed and checked against the input shape.

    Malformed JSON, JSON of the wrong type for a member and invalid base64 raise
    SerializationException; members the model does not know raise InvalidParameterException.
    """
    if not body.strip():
        document: object = {}
    else:
        try:
            document = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationException(f"Request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise SerializationException("Request body is not valid JSON: nested too deeply.") from None
    if not isinstance(document, dict):
        raise SerializationException(f"Request body must be a JSON object, got {_json_type(document)}.")
    shape = operation.input_shape
    if shape is None:
        if document:
            raise InvalidParameterException(f"{operation.name} takes no parameters.")
        return {}
    params = _decode(shape, document, "")
    assert isinstance(params, dict)
    return params


def encode_output(operation: OperationModel, result: Mapping[str, Any]) -> bytes:
    """The service's response as JSON bytes for the operation's output shape.

    Blobs become base64, timestamps epoch seconds; members outside the shape are left out.
    """
    shape = operation.output_shape
    document = _encoder(shape)(result) if shape is not None else {}
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _checked_string(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationException(f"{path} is not valid Unicode (lone surrogate).") from None
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(path: str, expected: str, value: object) -> SerializationException:
    where = path or "request body"
    return SerializationException(f"Expected {expected} for {where}, got {_json_type(value)}.")


def _decode(shape: Shape, value: object, path: str) -> object:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise _wrong_type(path, "an object", value)
        decoded: dict[str, object] = {}
        for key, item in value.items():
            member = shape.members.get(key)
            if member is None:
                valid = ", ".join(shape.members) or "none"
                where = f" in {path}" if path else ""
                raise InvalidParameterException(
                    f"Unknown parameter {key!r}{where}; valid parameters: {valid}."
                )
            if item is not None:
                decoded[key] = _decode(member, item, f"{path}.{key}" if path else key)
        return decoded
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            raise _wrong_type(path, "an array", value)
        return [_decode(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            raise _wrong_type(path, "an object", value)
        return {
            _checked_string(key, path): _decode(shape.value, item, f"{path}.{key}")
            for key, item in value.items()
        }
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong_type(path, "a string", value)
        return _checked_string(value, path)
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(path, "an integer", value)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(path, "a number", value)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise SerializationException(f"{path} must be a finite number.")
        return number
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _wrong_type(path, "a boolean", value)
        return value
    if kind == "blob":
        if not isinstance(value, str):
            raise _wrong_type(path, "a base64 string", value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationException(f"{path} is not valid base64.") from None
    if kind == "timestamp":
        return _decode_timestamp(value, path)
    raise SerializationException(f"Unsupported member type {kind} at {path}.")


def _decode_timestamp(value: object, path: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise SerializationException(f"{path} is not a valid timestamp.") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SerializationException(f"{path} is not a valid timestamp.") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise _wrong_type(path, "a timestamp (epoch seconds)", value)


Encoder = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _encode_blob(value: Any) -> Any:
    return base64.b64encode(value).decode("ascii")


def _encode_timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return round(moment.timestamp(), 3)
    return float(value)


def _encode_float(value: Any) -> Any:
    return float(value)


_encoders: dict[str, Encoder] = {}


def _encoder(shape: Shape) -> Encoder:
    """A function turning a boto3-shaped value of ``shape`` into JSON-ready data (built once per shape)."""
    kind = shape.type_name
    if kind == "blob":
        return _encode_blob
    if kind == "timestamp":
        return _encode_timestamp
    if kind in ("float", "double"):
        return _encode_float
    if kind not in ("structure", "list", "map"):
        return _identity
    cached = _encoders.get(shape.name)
    if cached is not None:
        return cached
    if isinstance(shape, StructureShape):
        members = shape.members
        resolved: dict[str, Encoder] = {}

        def encode_structure(value: Any) -> Any:
            if not resolved:
                resolved.update({name: _encoder(member) for name, member in members.items()})
            out = {}
            for key, item in value.items():
                member_encoder = resolved.get(key)
                if member_encoder is not None and item is not None:
                    out[key] = member_encoder(item)
            return out

        encoder: Encoder = encode_structure
    elif isinstance(shape, ListShape):
        item_shape = shape.member

        def encode_list(value: Any) -> Any:
            item_encoder = _encoder(item_shape)
            return [item_encoder(item) for item in value]

        encoder = encode_list
    else:
        assert isinstance(shape, MapShape)
        value_shape = shape.value

        def encode_map(value: Any) -> Any:
            value_encoder = _encoder(value_shape)
            return {key: value_encoder(item) for key, item in value.items()}

        encoder = encode_map
    _encoders[shape.name] = encoder
    return encoder
