"""The error-status table every server plugin (and the interposer) is tested against.

Each row: an error the core can raise while serving, and the HTTP status and gRPC code that
every server answers for it. ``yellowstone.errors`` is the source; this table states it again
on purpose, so a change to either is a visible, reviewed change.
"""

from __future__ import annotations

from yellowstone import errors

ERROR_CASES = [
    (errors.BadRequestError("input 'x': expected shape batchx16, got 1x7"), 400, "INVALID_ARGUMENT"),
    (errors.ConfigError("option 'precision' is not one of fp32, bf16"), 400, "INVALID_ARGUMENT"),
    (errors.BackendUnavailableError("openvino is not installed"), 503, "UNAVAILABLE"),
    (errors.ConversionError("cannot convert op Foo"), 422, "FAILED_PRECONDITION"),
    (errors.CompilationError("backend failed to compile"), 422, "FAILED_PRECONDITION"),
    (errors.ValidationError("outputs differ"), 422, "FAILED_PRECONDITION"),
    (errors.ShapeMismatchError("output 0 shape differs"), 422, "FAILED_PRECONDITION"),
    (errors.ToleranceError("output 0 beyond tolerance"), 422, "FAILED_PRECONDITION"),
    (errors.CacheError("entry is corrupt"), 500, "INTERNAL"),
    (errors.ModelLoadError("not a model"), 422, "FAILED_PRECONDITION"),
    (RuntimeError("something unexpected"), 500, "INTERNAL"),
    # A Python error from outside the tree is a fault of ours (the codecs word every client
    # mistake as a BadRequestError or the server's own error), so it is a 500 everywhere too.
    (ValueError("operands could not be broadcast together"), 500, "INTERNAL"),
]
ERROR_IDS = [type(e).__name__ for e, _, _ in ERROR_CASES]
