"""The REST server as the model server runs it: the API, extra pages, response headers and OPTIONS."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .framing import json_bytes
from .routes import API_PATH, OnRequest, RestApi
from .server import HttpServer, RestOptions

logger = logging.getLogger(__name__)

Route = Callable[[str, bytes], tuple[int, str, bytes]]  # (method, body) -> (status, type, body)

# ``--rest_api_enable_cors_support``: any origin may call the API from a browser.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
}


def make_app(api: RestApi, routes: Mapping[str, Route], *, answer_options: bool) -> Callable[..., Any]:
    """``(method, target, headers, body) -> (status, content type, body)`` over ``api`` and ``routes``.

    ``routes`` are exact paths; other ``/v1/`` paths go to the API, the rest answer 404. With
    ``answer_options``, OPTIONS (a browser's preflight) is answered 200 with an empty body.
    """

    def app(method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if method == "OPTIONS" and answer_options:
            return 200, "text/plain", b""
        if path in routes:
            return routes[path](method, body)
        if not API_PATH.fullmatch(path):
            return 404, "application/json", json_bytes({"error": f"Not found: {path}"})
        status, answer = api.handle(method, path, body)
        return status, "application/json", json_bytes(answer)

    return app


def make_server(
    manager: Any,
    host: str,
    port: int,
    *,
    num_threads: int | None = None,
    read_timeout_s: float | None = None,
    max_body_bytes: int | None = None,
    max_connections: int | None = None,
    routes: Mapping[str, Route] | None = None,
    on_request: OnRequest | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[HttpServer, int]:
    """The REST API serving in the background; returns the server and its bound port.

    Args:
        manager: the model manager the API answers from.
        host: the address to bind.
        port: the port (0: a free one).
        num_threads: see :class:`RestOptions` (None: ``YELLOWSTONE_TFSERVING_REST_THREADS``, else
            the default); so are the next three, each with its ``YELLOWSTONE_TFSERVING_REST_*``.
        read_timeout_s: see :class:`RestOptions`.
        max_body_bytes: see :class:`RestOptions`.
        max_connections: see :class:`RestOptions`.
        routes: other exact paths (e.g. the Prometheus page): ``(method, body) -> (status,
            content type, body)``.
        on_request: called after each API request with (model, API, status code, latency µs).
        headers: added to every response (e.g. :data:`CORS_HEADERS`); when given, OPTIONS
            requests are answered 200 with them.
    """
    options = RestOptions.from_env(
        num_threads=num_threads,
        read_timeout_s=read_timeout_s,
        max_body_bytes=max_body_bytes,
        max_connections=max_connections,
    )
    app = make_app(RestApi(manager, on_request=on_request), dict(routes or {}), answer_options=bool(headers))
    server = HttpServer(app, host, port, options, headers=headers)
    logger.debug("REST server on %s:%d with %d workers", host, server.server_address[1], options.threads)
    return server, server.server_address[1]
