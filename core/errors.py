"""The exception tree every part of yellowstone raises, each carrying an HTTP status.

    YellowstoneError                 500  root; never raised bare
    ├── ConfigError                  400  an option or option value is invalid
    ├── BackendUnavailableError      503  a backend is not installed or has no device
    ├── ConversionError              422  a model cannot be converted (e.g. torch -> ONNX)
    ├── CompilationError             422  a backend failed to compile a converted model
    ├── ValidationError              422  compiled outputs differ from the framework's
    │   ├── ShapeMismatchError       422  ... in shape or dtype
    │   └── ToleranceError           422  ... in value, beyond the precision's tolerance
    ├── CacheError                   500  a cache entry is corrupt or cannot be written
    ├── ModelLoadError               422  a model file or directory cannot be read
    └── BadRequestError              400  an inference request does not fit the model

Plugins map any of these to their server's error format with ``exc.http_status``.
"""

from __future__ import annotations


class YellowstoneError(Exception):
    """Root of all yellowstone errors."""

    http_status: int = 500


class ConfigError(YellowstoneError, ValueError):
    """An option or option value is invalid."""

    http_status = 400


class BackendUnavailableError(YellowstoneError):
    """A backend is not installed, not importable, or has no usable device."""

    http_status = 503


class ConversionError(YellowstoneError):
    """A model could not be converted to the format a backend reads."""

    http_status = 422


class CompilationError(YellowstoneError):
    """A backend failed to compile or load a model."""

    http_status = 422


class ValidationError(YellowstoneError):
    """Compiled outputs do not match the framework's outputs.

    Attributes:
        mismatches: every mismatch found, one line each, collected before raising.
    """

    http_status = 422

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


class ModelLoadError(YellowstoneError):
    """A model file or directory cannot be read as any supported format."""

    http_status = 422


class BadRequestError(YellowstoneError, ValueError):
    """An inference request does not match the model's inputs (name, shape, dtype)."""

    http_status = 400


def missing_extra(module: str, extra: str) -> BackendUnavailableError:
    """Build the error raised when an optional dependency is absent."""
    return BackendUnavailableError(
        f"{module} is not installed; install `yellowstone[{extra}]` to use it"
    )
