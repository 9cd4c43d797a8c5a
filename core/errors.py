"""The exception tree every part of yellowstone raises, each carrying its HTTP and gRPC status.

    class                            HTTP  gRPC                 meaning
    YellowstoneError                 500   INTERNAL             root; never raised bare
    ├── ConfigError                  400   INVALID_ARGUMENT     an option or option value is invalid
    ├── BackendUnavailableError      503   UNAVAILABLE          a backend is not installed / no device
    ├── ConversionError              422   FAILED_PRECONDITION  a model cannot be converted
    ├── CompilationError             422   FAILED_PRECONDITION  a backend failed to compile a model
    ├── ValidationError              422   FAILED_PRECONDITION  compiled outputs differ from the framework's
    │   ├── ShapeMismatchError       422   FAILED_PRECONDITION  ... in shape or dtype
    │   └── ToleranceError           422   FAILED_PRECONDITION  ... in value, beyond the tolerance
    ├── CacheError                   500   INTERNAL             a cache entry is corrupt or unwritable
    ├── ModelLoadError               422   FAILED_PRECONDITION  a model file or directory cannot be read
    └── BadRequestError              400   INVALID_ARGUMENT     an inference request does not fit the model

Every server plugin answers an error with these two attributes (``exc.http_status``,
``exc.grpc_code``, a ``grpc.StatusCode`` name), through ``yellowstone.serving.status_of``;
a plugin only wraps the message in its protocol's envelope.
"""

from __future__ import annotations


class YellowstoneError(Exception):
    """Root of all yellowstone errors."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"


class ConfigError(YellowstoneError, ValueError):
    """An option or option value is invalid."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class BackendUnavailableError(YellowstoneError):
    """A backend is not installed, not importable, or has no usable device."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class ConversionError(YellowstoneError):
    """A model could not be converted to the format a backend reads."""

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"


class CompilationError(YellowstoneError):
    """A backend failed to compile or load a model."""

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"


class ValidationError(YellowstoneError):
    """Compiled outputs do not match the framework's outputs.

    Attributes:
        mismatches: every mismatch found, one line each, collected before raising.
    """

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, message: str, mismatches: list[str] | None = None):
        self.mismatches = list(mismatches or [])
        if self.mismatches:
            message = message + ": " + "; ".join(self.mismatches)
        super().__init__(message)


class ShapeMismatchError(ValidationError):
    """Compiled outputs differ from the framework's in shape, dtype or count."""


class ToleranceError(ValidationError):
    """Compiled outputs differ from the framework's beyond the stated tolerance."""


class CacheError(YellowstoneError):
    """A cache entry or artifact directory is corrupt, tampered with, or unwritable."""

    http_status = 500
    grpc_code = "INTERNAL"


class ModelLoadError(YellowstoneError):
    """A model file or directory cannot be read as any supported format."""

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"


class BadRequestError(YellowstoneError, ValueError):
    """An inference request does not match the model's inputs (name, shape, dtype)."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


def missing_extra(module: str, extra: str) -> BackendUnavailableError:
    """Build the error raised when an optional dependency is absent."""
    return BackendUnavailableError(
        f"{module} is not installed; install `yellowstone[{extra}]` to use it"
    )
