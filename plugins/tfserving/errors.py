"""TF Serving's error envelope: a gRPC status code name plus message, and the REST status for it."""

from __future__ import annotations

from yellowstone.errors import YellowstoneError
from yellowstone.serving import status_of

# The HTTP status TF Serving's REST API answers for each canonical code (http_server.cc).
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# Canonical codes by number (tensorflow/core/protobuf/error_codes.proto, grpc's StatusCode).
CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


class ServingError(Exception):
    """An error answered to the client.

    Attributes:
        code: a ``grpc.StatusCode`` name (what the gRPC API answers).
        message: the text both APIs answer.
        http_status: what the REST API answers: TF Serving's status for ``code`` unless given.
    """

    def __init__(self, code: str, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = HTTP_STATUS.get(code, 500) if http_status is None else http_status


def is_tensorflow_error(exc: BaseException) -> bool:
    """A ``tf.errors.OpError`` (checked by class name: this module never imports TensorFlow)."""
    return any(c.__name__ == "OpError" for c in type(exc).__mro__) and hasattr(exc, "error_code")


def tensorflow_error(exc: BaseException) -> ServingError:
    """TensorFlow's status as TF Serving forwards it: its canonical code and whole message."""
    code_num = int(getattr(exc, "error_code", 2))
    code = CODE_NAMES[code_num] if 0 < code_num < len(CODE_NAMES) else "UNKNOWN"
    message = (getattr(exc, "message", None) or str(exc)).strip()
    return ServingError(code, message)


def from_exception(exc: BaseException) -> ServingError:
    """Map any exception raised while serving a request to the ServingError both APIs answer.

    Three sources, one rule each: TF Serving's own errors (:class:`ServingError`: unknown model,
    bad signature key, malformed JSON, ...) keep TF Serving's wording and its code -> HTTP table
    (:data:`HTTP_STATUS`); TensorFlow's own errors (``tf.errors.OpError``, from the session) keep
    their canonical code and whole message, as TF Serving passes them on; a ``YellowstoneError``
    answers with the statuses its class carries, through ``yellowstone.serving.status_of`` (so a
    422 stays 422 on REST, with the class's gRPC code).
    """
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, YellowstoneError):
        status = status_of(exc)
        return ServingError(status.grpc_code, status.message, http_status=status.http)
    if is_tensorflow_error(exc):
        return tensorflow_error(exc)
    status = status_of(exc)
    return ServingError(status.grpc_code, status.message, http_status=status.http)
