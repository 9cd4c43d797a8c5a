"""The ports: gRPC and REST listening where and how ``tensorflow_model_server``'s flags ask."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Sequence
from typing import Any

from yellowstone.serving import host_cores

from .errors import ServingError
from .textproto import StartupError

logger = logging.getLogger(__name__)

DEADLINE_MESSAGE = "Timed out waiting for notification"  # a TF session's DEADLINE_EXCEEDED
_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """``--grpc_channel_arguments``: ``k=v,k=v``; a value that parses as int32 is passed as an int."""
    out: list[tuple[str, int | str]] = []
    for item in (s for s in text.split(",") if s.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StartupError(
                "INVALID_ARGUMENT", f"--grpc_channel_arguments: '{item}' is not of the form key=value"
            )
        try:
            number = int(value)
            out.append((key.strip(), number) if -(2**31) <= number < 2**31 else (key.strip(), value))
        except ValueError:
            out.append((key.strip(), value))
    return out


# ------------------------------------------------------------------------------------- gRPC
def _health_handler() -> Any:
    """grpc.health.v1.Health: SERVING for the server ("") and its two services (as gRPC's default)."""
    import grpc

    from .textproto import message_class

    request_cls, response_cls = message_class("HealthCheckRequest"), message_class("HealthCheckResponse")
    known = ("", *_SERVICES)

    def check(request: Any, context: Any) -> Any:
        if request.service not in known:
            context.abort(grpc.StatusCode.NOT_FOUND, "service name unknown")
        return response_cls(status=1)  # SERVING

    def watch(request: Any, context: Any) -> Any:
        yield response_cls(status=1 if request.service in known else 3)  # SERVING / SERVICE_UNKNOWN
        while context.is_active():
            time.sleep(1.0)

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                check,
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            ),
            "Watch": grpc.unary_stream_rpc_method_handler(
                watch,
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            ),
        },
    )


def start_grpc(
    manager: Any,
    *,
    host: str,
    port: int,
    socket_path: str = "",
    credentials: Any = None,
    channel_arguments: Sequence[tuple[str, Any]] = (),
    max_threads: int = 16,
    interceptors: Sequence[Any] = (),
    health: bool = False,
    tensor_content: bool = False,
) -> tuple[Any, int]:
    """A started gRPC server (:func:`.grpc_api.make_server`) on ``host:port`` and/or ``unix:socket_path``.

    Port 0 with a socket: the socket only. Every listening port uses ``credentials`` (None:
    plaintext). Returns the server and the bound TCP port (0 when there is none).
    """
    from .grpc_api import make_server

    try:
        return make_server(
            manager,
            host,
            port if (port or not socket_path) else None,
            max_threads,
            credentials=credentials,
            interceptors=interceptors,
            options=channel_arguments,
            extra_addresses=(f"unix:{socket_path}",) if socket_path else (),
            generic_handlers=(_health_handler(),) if health else (),
            tensor_content=tensor_content,
        )
    except OSError as exc:
        raise StartupError("INVALID_ARGUMENT", f"Failed to BuildAndStart gRPC server: {exc}") from exc


# ------------------------------------------------------------------------------------- REST
class _DeadlineServable:
    """A servable whose inferences answer DEADLINE_EXCEEDED after ``timeout_s`` (the run goes on)."""

    def __init__(self, servable: Any, timeout_s: float, pool: concurrent.futures.ThreadPoolExecutor):
        self._servable, self._timeout_s, self._pool = servable, timeout_s, pool

    def _bounded(self, api: str) -> Any:
        inner = getattr(self._servable, api)

        def run(*args: Any, **kwargs: Any) -> Any:
            future = self._pool.submit(inner, *args, **kwargs)
            try:
                return future.result(timeout=self._timeout_s)
            except concurrent.futures.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED", DEADLINE_MESSAGE) from None

        return run

    def __getattr__(self, name: str) -> Any:
        if name in ("predict", "classify", "regress", "multi_inference"):
            return self._bounded(name)
        return getattr(self._servable, name)


class DeadlineView:
    """The model manager as the REST API sees it: servables whose runs have a deadline.

    ``--rest_api_timeout_in_ms`` is the RunOptions timeout TF Serving gives each REST
    inference; a run past it is answered with the session's DEADLINE_EXCEEDED (HTTP 504).
    """

    def __init__(self, manager: Any, timeout_ms: int, threads: int):
        self._manager = manager
        self._timeout_s = timeout_ms / 1000
        self._pool = concurrent.futures.ThreadPoolExecutor(max(threads, 1), thread_name_prefix="ys-rest-run")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return _DeadlineServable(self._manager.get(*args, **kwargs), self._timeout_s, self._pool)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


_COUNTED = ("Predict", "Classify", "Regress")


def start_rest(
    manager: Any,
    *,
    host: str,
    port: int,
    threads: int,
    timeout_ms: int,
    prometheus: Any = None,
    metrics: Any = None,
    cors: bool = False,
) -> tuple[Any, int]:
    """The REST API (:func:`.rest.make_server`) with the server's deadline, metrics, page and CORS.

    Args:
        manager: the model manager.
        host: the address to bind.
        port: the REST port.
        threads: ``--rest_api_num_threads`` (0: TF Serving's default).
        timeout_ms: ``--rest_api_timeout_in_ms``; <= 0: no deadline.
        prometheus: the PrometheusSettings; when enabled its path answers ``metrics.page()``.
        metrics: the ServingMetrics REST requests are counted in (entrypoint REST).
        cors: ``--rest_api_enable_cors_support``: CORS headers on every response, OPTIONS answered.
    """
    from . import rest

    routes: dict[str, Any] = {}
    if prometheus is not None and prometheus.enable and metrics is not None:
        routes[prometheus.path] = lambda method, body: (200, "text/plain", metrics.page().encode())

    def on_request(model: str, api: str, code: str, latency_us: float) -> None:
        if metrics is not None and api in _COUNTED:
            metrics.record_request(model, api, "REST", code, latency_us)

    pool = threads or 4 * host_cores()
    view = DeadlineView(manager, timeout_ms, pool) if timeout_ms > 0 else manager
    return rest.make_server(
        view, host, port, num_threads=threads or None, routes=routes, on_request=on_request,
        headers=rest.CORS_HEADERS if cors else None,
    )
