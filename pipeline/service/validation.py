"""Request validation driven by botocore's Rekognition model.

botocore's ParamValidator checks types, required members, unknown members and minimum lengths;
:func:`validate_request` adds what it leaves out: maximum lengths, list sizes, numeric ranges,
regular-expression patterns and enums (image bytes excepted: their size limit is
Settings.max_image_bytes, ImageTooLargeException), walking the operation's input shape. Failures raise
InvalidParameterException with a message in AWS's words, naming each field and rule.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import regex
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from pipeline.errors import InvalidParameterException


@cache
def _pattern(expression: str) -> regex.Pattern[str]:
    """The model's pattern, compiled with `regex` (it has \\p{L}-style classes, as in Java)."""
    return regex.compile(expression)


def _field_name(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    text = "[" + ", ".join(str(v) for v in value) + "]" if isinstance(value, list) else str(value)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates shown escaped
    return text if len(text) <= 200 else text[:200] + "..."


def _is_valid_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (they cannot be stored or sent as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _constraint_errors(shape: Shape, value: Any, path: str, errors: list[str]) -> None:
    meta = shape.metadata
    type_name = shape.type_name

    def fail(rule: str) -> None:
        errors.append(f"Value '{_show(value)}' at '{_show(path)}' failed to satisfy constraint: {rule}")

    if type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                child = f"{path}.{_field_name(name)}" if path else _field_name(name)
                _constraint_errors(member, value[name], child, errors)
        return

    def check_length(size: int) -> None:
        if "max" in meta and size > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
        if "min" in meta and size < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")

    if type_name == "list" and isinstance(value, list):
        check_length(len(value))
        for i, item in enumerate(value, start=1):
            _constraint_errors(shape.member, item, f"{path}.{i}.member", errors)
        return
    if type_name == "map" and isinstance(value, dict):
        check_length(len(value))
        for key, item in value.items():
            _constraint_errors(shape.key, key, f"{path}.{key}.key", errors)
            _constraint_errors(shape.value, item, f"{path}.{key}.value", errors)
        return
    if type_name == "string" and isinstance(value, str):
        check_length(len(value))
        if not _is_valid_unicode(value):
            fail("Member must be valid Unicode text (no lone surrogates)")
            return
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            fail(f"Member must satisfy regular expression pattern: {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            fail(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        return
    if type_name in ("integer", "long", "float", "double") and isinstance(value, int | float | Decimal):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            fail("Member must be a finite number")
            return
        if "max" in meta and value > meta["max"]:
            fail(f"Member must have value less than or equal to {meta['max']}")
        if "min" in meta and value < meta["min"]:
            fail(f"Member must have value greater than or equal to {meta['min']}")
        return
    # Blobs: only the minimum here; image size limits are Settings' (ImageTooLargeException).
    if type_name == "blob" and isinstance(value, bytes | bytearray) and len(value) < meta.get("min", 0):
        fail(f"Member must have length greater than or equal to {meta['min']}")


def validate_request(operation: OperationModel, params: dict[str, Any]) -> None:
    """Raise InvalidParameterException unless ``params`` satisfy the operation's input shape."""
    if not isinstance(params, dict):
        raise InvalidParameterException("The request must be a JSON object")
    shape = operation.input_shape
    if shape is None:
        if params:
            raise InvalidParameterException(f"{operation.name} takes no parameters")
        return
    try:
        report = ParamValidator().validate(params, shape)
    except InvalidOperation:  # botocore's range check compares a Decimal NaN: reported below
        report = None
    if report is not None and report.has_errors():
        raise InvalidParameterException(report.generate_report())
    errors: list[str] = []
    _constraint_errors(shape, params, "", errors)
    if report is None and not errors:
        raise InvalidParameterException("The request holds a number that is not finite")
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise InvalidParameterException(f"{count} validation {noun} detected: " + "; ".join(errors))
