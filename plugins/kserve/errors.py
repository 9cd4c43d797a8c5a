"""Any exception while serving -> KServe's answer: the serving layer's HTTP status and gRPC code.

KServe 0.21 maps its own exception classes to fixed statuses: ``InvalidInput`` 400 (REST) and
``INVALID_ARGUMENT`` (gRPC), ``InferenceError`` 500 and ``INVALID_ARGUMENT``, ``ModelNotReady``
503 and ``UNAVAILABLE``; none answers 422, and every one of them is logged with a traceback at
ERROR. So the predictor raises one exception, :class:`StatusError`, carrying
``yellowstone.serving.status_of(exc)``:

- gRPC: it is a ``grpc_interceptor`` ``GrpcException``, which KServe's
  ``ExceptionToStatusInterceptor`` aborts with as is (``status.grpc_code``, no log line);
- REST: :func:`install` registers a handler for it on KServe's FastAPI app that answers
  ``status.http`` in KServe's envelope, ``{"error": message}``, without logging; and one that
  answers a V2 body FastAPI rejects (a dimension ``1.5``) with 400 rather than 422.

The predictor logs each error once (:func:`log_error`): a client's error (4xx) in one line, a
server fault (5xx) with its traceback. KServe's own answer to a client's error it finds before
the predictor runs (a gRPC request whose raw contents do not match its inputs), logged by KServe
at ERROR with a traceback, becomes one WARNING line through :class:`ClientErrorLogFilter`, which
the entry point puts on KServe's logger.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc
from grpc_interceptor.exceptions import GrpcException

from yellowstone.serving import Status, status_of

logger = logging.getLogger(__name__)

_lock = threading.Lock()


class StatusError(GrpcException):
    """An error answered with ``status.http`` over REST and ``status.grpc_code`` over gRPC.

    Attributes:
        status: the serving layer's status for the original exception (``__cause__``).
        reason: the message, as KServe's own errors carry it.
    """

    def __init__(self, status: Status):
        super().__init__(details=status.message,
                         status_code=getattr(grpc.StatusCode, status.grpc_code,
                                             grpc.StatusCode.INTERNAL))
        self.status = status
        self.reason = status.message

    @property
    def http_status(self) -> int:
        return self.status.http

    def __str__(self) -> str:
        return self.status.message


def to_kserve(exc: BaseException) -> StatusError:
    """The exception the predictor raises for ``exc`` (raise it ``from exc``)."""
    if isinstance(exc, StatusError):
        return exc
    error = StatusError(status_of(exc))
    error.__cause__ = exc  # log_error shows the original traceback for a server fault
    return error


def log_error(model: str, error: StatusError) -> None:
    """Log once: a client's error in one line at WARNING, a server fault with its traceback."""
    status = error.status
    if status.client_fault:
        logger.warning("%s: %d %s: %s", model, status.http, status.grpc_code,
                       _one_line(status.message))
    else:
        cause = error.__cause__ or error
        logger.error("%s: %d %s: %s", model, status.http, status.grpc_code,
                     _one_line(status.message), exc_info=cause)


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class ClientErrorLogFilter(logging.Filter):
    """On KServe's logger: a record of KServe's ``InvalidInput`` becomes one WARNING line.

    ``InvalidInput`` is the client's error (KServe answers 400 / ``INVALID_ARGUMENT``), so the
    record loses its traceback and says ``400 INVALID_ARGUMENT: <message>``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput

        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if not isinstance(exc, InvalidInput):
            return True
        message = record.getMessage()
        text = str(exc.reason) if message.strip() in ("", "Exception:") else message
        record.msg, record.args = "400 INVALID_ARGUMENT: %s", (_one_line(text),)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_log_filter(kserve_logger: logging.Logger | None = None) -> None:
    """Put :class:`ClientErrorLogFilter` on KServe's logger (``kserve``), once."""
    target = kserve_logger or logging.getLogger("kserve")
    with _lock:
        if not any(isinstance(f, ClientErrorLogFilter) for f in target.filters):
            target.addFilter(ClientErrorLogFilter())


async def _rest_handler(_request: Any, exc: Exception) -> Any:
    from fastapi.responses import JSONResponse

    http = exc.status.http if isinstance(exc, StatusError) else 500
    return JSONResponse(status_code=http, content={"error": str(exc)})


async def _body_handler(request: Any, exc: Exception) -> Any:
    """A V2 body that does not fit the protocol (a dimension 1.5, a missing field): 400."""
    from fastapi.responses import JSONResponse

    problems = []
    for err in getattr(exc, "errors", list)():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "InferenceRequest")]
        if loc and loc[0] == "bytes":  # the raw-bytes alternative of KServe's body union
            continue
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(
            err["input"], dict | list) else ""
        problems.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}{got}")
    message = "request body does not fit the protocol: " + ("; ".join(problems[:5]) or str(exc))
    logger.warning("%s %s: 400 INVALID_ARGUMENT: %s", request.method, request.url.path,
                   _one_line(message))
    return JSONResponse(status_code=400, content={"error": message})


def install(app: Any = None) -> None:
    """Register the REST handlers on ``app`` (default: KServe's ``kserve.model_server.app``), once.

    :class:`StatusError` is answered with its status; a request body FastAPI cannot validate
    (KServe's V2 model: a dimension ``1.5``, a missing ``datatype``) with 400 instead of
    FastAPI's 422, both in KServe's envelope. Call before the server answers its first request
    (Starlette fixes its handlers then); ``BoostModel`` calls it when it is built and when a
    REST worker process unpickles it.
    """
    from fastapi.exceptions import RequestValidationError

    if app is None:
        from kserve import model_server

        app = model_server.app
    with _lock:
        for cls, handler in ((StatusError, _rest_handler), (RequestValidationError, _body_handler)):
            if app.exception_handlers.get(cls) is not handler:
                app.add_exception_handler(cls, handler)
