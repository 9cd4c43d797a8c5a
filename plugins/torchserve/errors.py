"""How the boost handler tells a client's error from a server fault, and answers each as TorchServe.

A request the wrapped handler's ``preprocess`` refuses is :class:`RequestRejected` (400); a
``PredictionException`` carries the status the handler or the serving layer chose. TorchServe
answers a failed request with ``{"code", "type", "message"}``; :func:`error_body` writes the same
body for one request of a batch whose other requests are answered.
"""

from __future__ import annotations

import json
from typing import Any


class RequestRejected(Exception):
    """The wrapped handler's ``preprocess`` refused a request (the client's error)."""


# What TorchServe's frontend names the error of a request its worker failed with a status.
ERROR_TYPE = "InternalServerException"


def is_prediction_exception(exc: BaseException) -> bool:
    """True for TorchServe's ``PredictionException`` (False where TorchServe is absent)."""
    try:
        from ts.utils.util import PredictionException
    except ImportError:
        return False
    return isinstance(exc, PredictionException)


def prediction_exception(message: str, code: int) -> Exception:
    """The ``PredictionException`` TorchServe answers every request of the batch with."""
    from ts.utils.util import PredictionException

    return PredictionException(message, code)


def client_error(exc: BaseException) -> tuple[int, str] | None:
    """``(status, message)`` when ``exc`` is the client's error (4xx), None for a server fault."""
    if isinstance(exc, RequestRejected):
        return 400, str(exc)
    if is_prediction_exception(exc):
        code = int(getattr(exc, "error_code", 500) or 500)
        if 400 <= code < 500:
            return code, str(getattr(exc, "message", exc))
    return None


def failure(exc: BaseException) -> tuple[int, str]:
    """``(status, message)`` for any error of one request: the client's (4xx) or a server fault."""
    error = client_error(exc)
    if error is not None:
        return error
    if is_prediction_exception(exc):
        return int(getattr(exc, "error_code", 500) or 500), str(getattr(exc, "message", exc))
    from yellowstone.serving import status_of

    status = status_of(exc)
    return status.http, status.message


def error_body(code: int, message: str) -> str:
    """TorchServe's error response body, for one request of a batch."""
    return json.dumps({"code": code, "type": ERROR_TYPE, "message": message})


def set_error(context: Any, idx: int, code: int, message: str) -> str:
    """Mark request ``idx`` of the batch as failed with ``code``; return its body."""
    context.set_response_status(code, message[:200], idx)
    context.set_response_content_type(idx, "application/json")
    return error_body(code, message)
