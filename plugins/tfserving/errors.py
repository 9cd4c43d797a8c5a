"""TF Serving's error model: a gRPC status code name plus message, and its HTTP mapping."""

from __future__ import annotations

from yellowstone.errors import YellowstoneError

# The HTTP status TF Serving's REST API answers for each canonical code.
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
_CODE_OF_HTTP = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 422: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}


class ServingError(Exception):
    """An error answered to the client: ``code`` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API uses for this code."""
        return HTTP_STATUS.get(self.code, 500)


def from_exception(exc: BaseException) -> ServingError:
    """Map any exception from serving a request to a ServingError."""
    if isinstance(exc, ServingError):
        return exc
    if isinstance(exc, YellowstoneError):
        return ServingError(_CODE_OF_HTTP.get(exc.http_status, "INTERNAL"), str(exc))
    name = type(exc).__name__
    if name == "InvalidArgumentError" or isinstance(exc, (TypeError, ValueError)):
        return ServingError("INVALID_ARGUMENT", str(exc).strip().splitlines()[0] if str(exc) else name)
    return ServingError("INTERNAL", f"{name}: {exc}")
