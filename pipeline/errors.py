"""One exception class per Rekognition error code.

Every error the service raises is a :class:`RekognitionError` subclass whose class name is the
Rekognition error code (``err.code``), with a message that says what is wrong and the HTTP
status the JSON protocol answers with. The protocol and CLI layers render these; nothing else
should reach a user.
"""

from __future__ import annotations


class RekognitionError(Exception):
    """Base class: ``code`` is the Rekognition error code, ``http_status`` the HTTP status."""

    code: str = "InternalServerError"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = cls.__name__


class AccessDeniedException(RekognitionError):
    http_status = 400


class ConflictException(RekognitionError):
    http_status = 400


class IdempotentParameterMismatchException(RekognitionError):
    http_status = 400


class ImageTooLargeException(RekognitionError):
    http_status = 400


class InternalServerError(RekognitionError):
    http_status = 500


class InvalidImageFormatException(RekognitionError):
    http_status = 400


class InvalidPaginationTokenException(RekognitionError):
    http_status = 400


class InvalidParameterException(RekognitionError):
    http_status = 400


class InvalidS3ObjectException(RekognitionError):
    http_status = 400


class ProvisionedThroughputExceededException(RekognitionError):
    http_status = 400


class ResourceAlreadyExistsException(RekognitionError):
    http_status = 400


class ResourceInUseException(RekognitionError):
    http_status = 400


class ResourceNotFoundException(RekognitionError):
    http_status = 400


class ServiceQuotaExceededException(RekognitionError):
    http_status = 400


class ThrottlingException(RekognitionError):
    http_status = 400


# Protocol-level errors (authentication and request routing), not modelled per operation.
class MissingAuthenticationTokenException(RekognitionError):
    http_status = 403


class InvalidSignatureException(RekognitionError):
    http_status = 403


class UnrecognizedClientException(RekognitionError):
    http_status = 403


class UnknownOperationException(RekognitionError):
    http_status = 400


class SerializationException(RekognitionError):
    http_status = 400


class RequestEntityTooLargeException(RekognitionError):
    http_status = 413


class RequestTimeoutException(RekognitionError):
    """The client did not send the request (headers or body) within the server's time limit."""

    http_status = 408


ERRORS_BY_CODE: dict[str, type[RekognitionError]] = {
    cls.code: cls for cls in RekognitionError.__subclasses__()
}
