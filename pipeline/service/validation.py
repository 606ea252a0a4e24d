"""Request validation driven by botocore's Rekognition model.

botocore's ParamValidator checks types, required members, unknown members and minimum lengths;
:func:`validate_request` adds what it leaves out: maximum lengths, list sizes, numeric ranges,
regular-expression patterns and enums (image bytes excepted: their size limit is
Settings.max_image_bytes, ImageTooLargeException), walking the operation's input shape. Failures raise
InvalidParameterException with a message in AWS's words, naming each field and rule.

The work is bounded by the limits it checks: list and map sizes are checked before their members
(a list over its maximum is reported once, its members are not looked at), and a message names
at most MAX_REPORTED violations, then says how many more there are.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import regex
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from pipeline.errors import InvalidParameterException

MAX_REPORTED = 10
"""Violations a validation message spells out; the rest are counted ("... and 12 more")."""

MAX_SHOWN = 200
"""Characters of a value shown in a message before it is cut with "..."."""


@cache
def _pattern(expression: str) -> regex.Pattern[str]:
    """The model's pattern, compiled with `regex` (it has \\p{L}-style classes, as in Java)."""
    return regex.compile(expression)


def _field_name(name: str) -> str:
    return name[:1].lower() + name[1:]


def show_value(value: Any) -> str:
    """A request value as AWS messages show it (never a Python repr), at most MAX_SHOWN characters.

    Strings as they are (lone surrogates escaped), numbers as numbers, booleans as true/false,
    None as null, binary data by its size, lists as ``[a, b]`` and maps as ``{k=v}`` (as AWS's
    Java services print them); only as much of a long list or map is rendered as is shown.
    """
    parts: list[str] = []
    size = 0

    def put(text: str) -> bool:
        nonlocal size
        parts.append(text)
        size += len(text)
        return size <= MAX_SHOWN

    def render(item: Any) -> bool:
        if isinstance(item, list | tuple):
            if not put("["):
                return False
            for i, member in enumerate(item):
                if (i and not put(", ")) or not render(member):
                    return False
            return put("]")
        if isinstance(item, dict):
            if not put("{"):
                return False
            for i, (key, member) in enumerate(item.items()):
                if (i and not put(", ")) or not render(key) or not put("=") or not render(member):
                    return False
            return put("}")
        return put(_scalar(item))

    render(value)
    text = "".join(parts).encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates escaped
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        size = len(value)
        return "" if size == 0 else f"{size} bytes of binary data"
    if isinstance(value, str | int | float | Decimal):
        return str(value)
    if hasattr(value, "read"):
        return "a file object"
    return f"a value of type {type(value).__name__}"


class _Violations:
    """Violation messages, the first MAX_REPORTED kept in full and the rest only counted."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < MAX_REPORTED:
            self.messages.append(message)

    def constraint(self, value: Any, path: str, rule: str) -> None:
        """AWS's form: Value '...' at 'path' failed to satisfy constraint: <rule>."""
        self.count += 1
        if len(self.messages) < MAX_REPORTED:  # formatted only when it will be shown
            self.messages.append(
                f"Value '{show_value(value)}' at '{show_value(path)}' failed to satisfy constraint: {rule}"
            )

    def raise_if_any(self) -> None:
        if not self.count:
            return
        noun = "error" if self.count == 1 else "errors"
        text = f"{self.count} validation {noun} detected: " + "; ".join(self.messages)
        if self.count > len(self.messages):
            text += f"; ... and {self.count - len(self.messages)} more"
        raise InvalidParameterException(text)


def is_valid_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (they cannot be stored or sent as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _child(path: str, name: str) -> str:
    return f"{path}.{_field_name(name)}" if path else _field_name(name)


def _oversized(shape: Shape, value: Any, path: str, found: _Violations) -> None:
    """Lists and maps longer than their maximum, found before anything looks at their members."""
    type_name = shape.type_name
    if type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if value.get(name) is not None and member.type_name in ("structure", "list", "map"):
                _oversized(member, value[name], _child(path, name), found)
    elif type_name in ("list", "map") and isinstance(value, list | dict):
        limit = shape.metadata.get("max")
        if limit is not None and len(value) > limit:
            found.constraint(value, path, f"Member must have length less than or equal to {limit}")
        elif type_name == "list" and shape.member.type_name in ("structure", "list", "map"):
            for i, item in enumerate(value, start=1):
                _oversized(shape.member, item, f"{path}.{i}.member", found)


def _constraint_errors(shape: Shape, value: Any, path: str, found: _Violations) -> None:
    meta = shape.metadata
    type_name = shape.type_name

    def fail(rule: str) -> None:
        found.constraint(value, path, rule)

    if type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                _constraint_errors(member, value[name], _child(path, name), found)
        return

    def length_ok(size: int) -> bool:
        if "max" in meta and size > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
            return False
        if "min" in meta and size < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")
            return False
        return True

    if type_name == "list" and isinstance(value, list):
        if length_ok(len(value)):  # an oversized list's members are not looked at
            for i, item in enumerate(value, start=1):
                _constraint_errors(shape.member, item, f"{path}.{i}.member", found)
        return
    if type_name == "map" and isinstance(value, dict):
        if length_ok(len(value)):
            for key, item in value.items():
                _constraint_errors(shape.key, key, f"{path}.{key}.key", found)
                _constraint_errors(shape.value, item, f"{path}.{key}.value", found)
        return
    if type_name == "string" and isinstance(value, str):
        if not length_ok(len(value)):
            return
        if not is_valid_unicode(value):
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


_BOTOCORE_INDEX = re.compile(r"\[(\d+)\]")
_TYPE_NAMES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "Decimal": "number",
    "bool": "boolean",
    "list": "list",
    "tuple": "list",
    "dict": "structure",
    "bytes": "binary data",
    "bytearray": "binary data",
    "file-like object": "binary data",
}


def _aws_path(name: str) -> str:
    """botocore's parameter name (``.Image.S3Object``, ``FaceIds[0]``) as AWS's path
    (``image.s3Object``, ``faceIds.1.member``)."""
    dotted = _BOTOCORE_INDEX.sub(lambda m: f".{int(m.group(1)) + 1}.member", name)
    return ".".join(
        part if part.isdigit() or part == "member" else _field_name(part)
        for part in dotted.split(".")
        if part
    )


def _valid_types(names: list[str]) -> str:
    shown = []
    for name in names:
        bare = name.removeprefix("<class '").removesuffix("'>").rsplit(".", 1)[-1]
        label = _TYPE_NAMES.get(bare, bare)
        if label not in shown:
            shown.append(label)
    return " or ".join(shown)


def _botocore_violations(errors: list[tuple[str, str, dict[str, Any]]], found: _Violations) -> None:
    """botocore's ValidationErrors in AWS's words (its own report shows Python reprs and types)."""
    for reason, name, extra in errors:
        path = _aws_path(name)
        if reason == "missing required field":
            member = _child(path, extra["required_name"])
            found.add(
                f"Value null at '{show_value(member)}' failed to satisfy constraint: Member must not be null"
            )
        elif reason == "unknown field":
            found.add(
                f"Unknown parameter '{show_value(extra['unknown_param'])}' at '{path or 'input'}'; "
                f"valid parameters: {', '.join(extra['valid_names'])}"
            )
        elif reason in ("invalid type", "invalid type for document"):
            found.constraint(
                extra.get("param"), path, f"Member must be of type {_valid_types(list(extra['valid_types']))}"
            )
        elif reason == "invalid range":
            found.constraint(
                extra.get("param"),
                path,
                f"Member must have value greater than or equal to {extra['min_allowed']}",
            )
        elif reason == "invalid length":
            found.constraint(
                extra.get("param"),
                path,
                f"Member must have length greater than or equal to {extra['min_allowed']}",
            )
        elif reason in ("more than one input", "empty input"):
            found.add(f"Exactly one of {', '.join(extra['members'])} must be set at '{path or 'input'}'")
        else:
            found.add(f"Invalid value at '{path or 'input'}'")


def validate_request(operation: OperationModel, params: dict[str, Any]) -> None:
    """Raise InvalidParameterException unless ``params`` satisfy the operation's input shape."""
    if not isinstance(params, dict):
        raise InvalidParameterException("The request must be a JSON object")
    shape = operation.input_shape
    if shape is None:
        if params:
            raise InvalidParameterException(f"{operation.name} takes no parameters")
        return
    oversized = _Violations()
    _oversized(shape, params, "", oversized)
    oversized.raise_if_any()
    try:
        report = ParamValidator().validate(params, shape)
    except InvalidOperation:  # botocore's range check compares a Decimal NaN: reported below
        report = None
    if report is not None and report.has_errors():
        typed = _Violations()
        _botocore_violations(report._errors, typed)
        typed.raise_if_any()
    found = _Violations()
    _constraint_errors(shape, params, "", found)
    if report is None and not found.count:
        raise InvalidParameterException("The request holds a number that is not finite")
    found.raise_if_any()
